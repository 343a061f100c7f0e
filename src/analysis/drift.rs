//! Did a chain drift at its start? The mean of the first tenth of each chain's measurements
//! against the mean of its own second half, in units of the error that the second halves, taken
//! as stationary, predict for the difference (Geweke's diagnostic, in: Bayesian Statistics 4
//! (1992) 169). The fluctuations (variance and τ_int, by the Γ-method) are those of the second
//! halves of *all* chains together: under the null hypothesis every part samples one stationary
//! process, a head still thermalising would inflate its own error estimate and hide itself, and
//! one chain's second half may have missed the rare bursts of a heavy-tailed observable that the
//! others saw.
//!
//! It catches what the replica χ² misses: a chain that starts in a slowly decaying state (a twisted
//! XY configuration, a wrong sector) and leaves it early in the measurements. Its whole-run mean
//! is only mildly off, and its own Γ-method error, inflated by the drift, absorbs that.

use super::gamma::{gamma_primary, NOTE_CONSTANT, NOTE_TOO_SHORT};

/// The head is the first 1/`HEAD_FRACTION` of a chain's measurements.
pub const HEAD_FRACTION: usize = 10;

/// Fewest measurements in a head for a test.
pub const MIN_HEAD: usize = 10;

/// |z| above which a run warns: far out, since a run makes a test per chain and observable and
/// some observables are heavy-tailed. Measured: the largest |z| of healthy runs (HMC, Metropolis,
/// cluster, and 32-chain independence samplers whose results agreed with Metropolis) was 5.9 (an
/// XY independence chain that sat on one twisted draw for 100 steps); starts that had not
/// thermalised gave 32 to 183.
pub const WARN_Z: f64 = 8.0;

/// Deviation, in units of its error, beyond which a block of the first half has not settled.
pub const SETTLED_Z: f64 = 5.0;

/// The head of one chain against its second half.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DriftCheck {
    /// (mean of the head − mean of the chain's second half) / the predicted error of that
    /// difference; ±∞ when no second half fluctuates and the head differs (a stuck chain).
    pub z: f64,
    /// Measurements in the head.
    pub head: usize,
    /// Measurements in the chain's second half.
    pub tail: usize,
    /// Measurements after which the chain has settled: the end of the last block (a tenth of the
    /// head long) of its first half whose mean lies more than [`SETTLED_Z`] of its error from the
    /// second half's mean; 0 when none does.
    pub settled: usize,
}

impl DriftCheck {
    /// Why `z` is infinite, when it is.
    pub fn note(&self) -> Option<&'static str> {
        (!self.z.is_finite()).then_some(NOTE_CONSTANT)
    }

    /// Whether the run should warn.
    pub fn alarming(&self) -> bool {
        self.z.abs() > WARN_Z
    }
}

/// The test of every chain, in order. A chain gets `None` when its head would be shorter than
/// [`MIN_HEAD`], when one of its values is not finite, or when neither part fluctuates and they
/// agree; every chain does when the second halves are too short for their autocorrelation (the
/// Γ-method's [`NOTE_TOO_SHORT`]: then no error, and no test, can be trusted).
pub fn drift_checks(per_chain: &[&[f64]]) -> Vec<Option<DriftCheck>> {
    let usable = |s: &[f64]| s.len() / HEAD_FRACTION >= MIN_HEAD && s.iter().all(|x| x.is_finite());
    let tails: Vec<&[f64]> = per_chain
        .iter()
        .filter(|s| usable(s))
        .map(|s| &s[s.len() / 2..])
        .collect();
    if tails.is_empty() {
        return vec![None; per_chain.len()];
    }
    let pooled = gamma_primary(&tails);
    if pooled.note == Some(NOTE_TOO_SHORT) {
        return vec![None; per_chain.len()];
    }
    // spread² = error² × N = 2 τ_int σ²: a mean over n measurements has variance spread²/n.
    let n_tails: usize = tails.iter().map(|t| t.len()).sum();
    let spread = pooled.error * (n_tails as f64).sqrt();
    per_chain
        .iter()
        .map(|s| usable(s).then(|| check(s, spread)).flatten())
        .collect()
}

/// One chain's test, given the pooled √(2 τ_int σ²) of the second halves.
fn check(series: &[f64], spread: f64) -> Option<DriftCheck> {
    let head = series.len() / HEAD_FRACTION;
    let (first, second) = (&series[..head], &series[series.len() / 2..]);
    let tail_mean = mean(second);
    let fluctuates = spread > 0.0 && spread.is_finite();
    // The deviation of a mean over n measurements from the tail's, in units of its error.
    let pull = |x: &[f64]| {
        let diff = mean(x) - tail_mean;
        if fluctuates {
            diff / (spread * (1.0 / x.len() as f64 + 1.0 / second.len() as f64).sqrt())
        } else if diff != 0.0 {
            f64::INFINITY.copysign(diff)
        } else {
            0.0
        }
    };
    let z = pull(first);
    if z == 0.0 && !fluctuates {
        return None;
    }
    let block = (head / 10).max(1);
    let settled = series[..series.len() / 2]
        .chunks_exact(block)
        .rposition(|b| pull(b).abs() > SETTLED_Z)
        .map_or(0, |i| (i + 1) * block);
    Some(DriftCheck {
        z,
        head,
        tail: second.len(),
        settled,
    })
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// The chain whose head drifts most, with its check; `None` when no chain could be tested.
pub fn worst_drift(per_chain: &[&[f64]]) -> Option<(usize, DriftCheck)> {
    drift_checks(per_chain)
        .into_iter()
        .enumerate()
        .filter_map(|(c, d)| d.map(|d| (c, d)))
        .max_by(|a, b| a.1.z.abs().total_cmp(&b.1.z.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::philox::fill_normals;

    /// A stationary AR(1) series x_t = a x_{t−1} + √(1 − a²) ε_t, τ_int = (1 + a)/(2(1 − a)).
    fn ar1(n: usize, a: f64, seed: u64) -> Vec<f64> {
        let mut eps = vec![0.0; n];
        fill_normals(&mut eps, seed, 0, 0, 0);
        let mut x = eps[0];
        eps.iter()
            .map(|e| {
                x = a * x + (1.0 - a * a).sqrt() * e;
                x
            })
            .collect()
    }

    #[test]
    fn stationary_chains_pass_and_a_decaying_start_is_caught() {
        // Eight stationary, correlated chains (τ_int = 9.5), five times: |z| stays small.
        for set in 0..5 {
            let chains: Vec<Vec<f64>> = (0..8).map(|c| ar1(20_000, 0.9, 8 * set + c)).collect();
            let refs: Vec<&[f64]> = chains.iter().map(|c| c.as_slice()).collect();
            let (_, worst) = worst_drift(&refs).unwrap();
            assert!(worst.z.abs() < 4.0, "stationary AR(1) flagged: {worst:?}");
        }
        // Chain 3 starts 20σ away, in a state that decays over ~300 steps (a twisted XY
        // configuration from a hot start is 50σ away in its link currents): far beyond the
        // warning level, though the head's own Γ-method error, inflated by the drift, would
        // hide it; the other chains stay quiet.
        let mut chains: Vec<Vec<f64>> = (0..8).map(|c| ar1(20_000, 0.9, 100 + c)).collect();
        for (t, v) in chains[3].iter_mut().enumerate() {
            *v += 20.0 * (-(t as f64) / 300.0).exp();
        }
        let refs: Vec<&[f64]> = chains.iter().map(|c| c.as_slice()).collect();
        let checks = drift_checks(&refs);
        for (c, d) in checks.iter().enumerate() {
            let d = d.unwrap();
            assert_eq!((d.head, d.tail), (2_000, 10_000));
            assert_eq!(d.alarming(), c == 3, "chain {c}: {d:?}");
        }
        // Its blocks of 200 deviate by 14.6 e^{−t/300} (t the block's start) against an error of
        // 0.31: beyond 5σ up to t ≈ 670, give or take the noise; the stationary chains have
        // settled from the start, or within their first blocks.
        let d = checks[3].unwrap();
        assert!(d.z > 10.0);
        assert!((600..=1200).contains(&d.settled), "{d:?}");
        let quiet = checks.iter().enumerate().filter(|(c, _)| *c != 3);
        assert!(
            quiet.map(|(_, d)| d.unwrap().settled).all(|s| s <= 400),
            "{checks:?}"
        );
        let x = &chains[3];
        let (h, t) = (
            gamma_primary(&[&x[..2_000]]),
            gamma_primary(&[&x[10_000..]]),
        );
        let own = (h.value - t.value) / h.error.hypot(t.error);
        assert!(own < WARN_Z, "Geweke's z with each part's own error: {own}");
    }

    #[test]
    fn stuck_short_and_broken_series() {
        // No second half fluctuates, one head differs: a stuck chain, infinitely far.
        let flat = vec![1.0; 200];
        let mut kicked = flat.clone();
        kicked[3] = 5.0;
        let d = drift_checks(&[&flat, &kicked]);
        assert_eq!(d[0], None);
        let d = d[1].unwrap();
        assert!(d.z == f64::INFINITY && d.alarming() && d.note().is_some());
        // Heads under MIN_HEAD measurements, or a NaN: that chain is not tested.
        let a = ar1(1_000, 0.5, 1);
        let mut nan = ar1(1_000, 0.5, 2);
        nan[500] = f64::NAN;
        let d = drift_checks(&[&a, &nan, &a[..99]]);
        assert!(d[0].is_some() && d[1].is_none() && d[2].is_none());
        // Second halves far shorter than 50 τ_int (τ_int ≈ 1000 here): no test at all.
        let slow: Vec<Vec<f64>> = (0..4).map(|c| ar1(2_000, 0.999, c)).collect();
        let refs: Vec<&[f64]> = slow.iter().map(|c| c.as_slice()).collect();
        assert!(drift_checks(&refs).iter().all(Option::is_none));
        assert_eq!(worst_drift(&refs), None);
    }
}
