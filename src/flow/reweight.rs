//! Reweighting: estimates ⟨O⟩_p = Σ wᵢOᵢ / Σ wᵢ from independent proposals of a flow, w = e^{−S}/q
//! (the other exact use of a flow beside NMCMC), with the delta-method error of a ratio of means,
//! σ² = Σ wᵢ²(Oᵢ − Ô)² / (Σ wᵢ)², and the ESS per sample (Σw)²/(N Σw²). Sums are kept relative to
//! the largest log w seen, so no weight overflows; everything is accumulated in f64 in proposal
//! order, so a resumed run continues the same sums.

use crate::error::{Error, Result};

/// Running weighted sums over proposals.
#[derive(Clone, Debug, PartialEq)]
pub struct Reweighting {
    /// The largest log w so far (the reference of every sum).
    max: f64,
    /// Proposals seen.
    n: f64,
    /// Σw, Σw².
    w: [f64; 2],
    /// Per observable: Σw O, Σw² O, Σw² O².
    obs: Vec<[f64; 3]>,
}

impl Reweighting {
    /// Empty sums for `observables` observables.
    pub fn new(observables: usize) -> Self {
        Reweighting {
            max: f64::NEG_INFINITY,
            n: 0.0,
            w: [0.0; 2],
            obs: vec![[0.0; 3]; observables],
        }
    }

    /// Adds one proposal of weight e^{log_w} with observables `o` (one per observable). A
    /// proposal with log w = −∞ (zero weight) counts towards N only; NaN and +∞ are errors.
    pub fn add(&mut self, log_w: f64, o: &[f64]) -> Result<()> {
        let bad_weight = log_w.is_nan() || log_w == f64::INFINITY;
        if o.len() != self.obs.len() || bad_weight || o.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "a reweighting term with log w = {log_w} and {} observables (of {})",
                o.len(),
                self.obs.len()
            )));
        }
        if log_w == f64::NEG_INFINITY {
            // Weight zero: e^{log w − max} would be NaN while every weight so far is zero too.
            self.n += 1.0;
            return Ok(());
        }
        if log_w > self.max {
            let r = (self.max - log_w).exp();
            let r2 = r * r;
            self.w = [self.w[0] * r, self.w[1] * r2];
            for s in &mut self.obs {
                *s = [s[0] * r, s[1] * r2, s[2] * r2];
            }
            self.max = log_w;
        }
        self.n += 1.0;
        let w = (log_w - self.max).exp();
        let w2 = w * w;
        self.w[0] += w;
        self.w[1] += w2;
        for (s, &v) in self.obs.iter_mut().zip(o) {
            s[0] += w * v;
            s[1] += w2 * v;
            s[2] += w2 * v * v;
        }
        Ok(())
    }

    /// ESS per sample, (Σw)²/(N Σw²); 0 before any weight.
    pub fn ess_per_sample(&self) -> f64 {
        if self.w[1] > 0.0 {
            self.w[0] * self.w[0] / (self.n * self.w[1])
        } else {
            0.0
        }
    }

    /// ln of the mean weight, ln(Σw/N) — ln Z when w = e^{−S}/q — with the delta-method error
    /// √((Σw²/N − (Σw/N)²)/N) / (Σw/N); NaN before any weight.
    pub fn log_mean_weight(&self) -> (f64, f64) {
        if self.w[0] <= 0.0 {
            return (f64::NAN, f64::NAN);
        }
        let (m, m2) = (self.w[0] / self.n, self.w[1] / self.n);
        (
            self.max + m.ln(),
            ((m2 - m * m).max(0.0) / self.n).sqrt() / m,
        )
    }

    /// (value, error) of every observable; NaN before any weight.
    pub fn estimates(&self) -> Vec<(f64, f64)> {
        let sw = self.w[0];
        self.obs
            .iter()
            .map(|&[swo, sw2o, sw2o2]| {
                let mean = swo / sw;
                let var = (sw2o2 - 2.0 * mean * sw2o + mean * mean * self.w[1]).max(0.0);
                (mean, var.sqrt() / sw)
            })
            .collect()
    }

    /// Adds the sums of `other` (proposals of another batch, e.g. another MPI rank's chains),
    /// both brought to the larger reference log w.
    pub fn merge(&mut self, other: &Reweighting) -> Result<()> {
        if other.obs.len() != self.obs.len() {
            return Err(Error::InvalidInput(format!(
                "merging reweighting sums of {} and {} observables",
                other.obs.len(),
                self.obs.len()
            )));
        }
        let max = self.max.max(other.max);
        // A side without weights (max = −∞) contributes its count only.
        let scale = |m: f64| {
            if m == f64::NEG_INFINITY {
                0.0
            } else {
                (m - max).exp()
            }
        };
        let (a, b) = (scale(self.max), scale(other.max));
        let (a2, b2) = (a * a, b * b);
        self.w = [
            self.w[0] * a + other.w[0] * b,
            self.w[1] * a2 + other.w[1] * b2,
        ];
        for (s, o) in self.obs.iter_mut().zip(&other.obs) {
            *s = [
                s[0] * a + o[0] * b,
                s[1] * a2 + o[1] * b2,
                s[2] * a2 + o[2] * b2,
            ];
        }
        self.n += other.n;
        self.max = max;
        Ok(())
    }

    /// The sums as a flat list (for checkpoints).
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = vec![self.max, self.n, self.w[0], self.w[1]];
        v.extend(self.obs.iter().flatten());
        v
    }

    /// Sums saved by [`Reweighting::to_vec`] for `observables` observables.
    pub fn from_vec(v: &[f64], observables: usize) -> Result<Self> {
        if v.len() != 4 + 3 * observables {
            return Err(Error::InvalidInput(format!(
                "saved reweighting sums: {} values, {} expected",
                v.len(),
                4 + 3 * observables
            )));
        }
        Ok(Reweighting {
            max: v[0],
            n: v[1],
            w: [v[2], v[3]],
            obs: v[4..].chunks(3).map(|c| [c[0], c[1], c[2]]).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums over two halves merged equal the sums over the whole, whichever half holds the
    /// largest weight, and with a half of zero weights.
    #[test]
    fn merged_halves_equal_the_whole() {
        let terms: Vec<(f64, f64)> = (0..40)
            .map(|i| ((i as f64 * 0.37).sin() * 30.0, (i as f64 * 0.11).cos()))
            .collect();
        let sums = |t: &[(f64, f64)]| {
            let mut r = Reweighting::new(1);
            t.iter().for_each(|&(lw, o)| r.add(lw, &[o]).unwrap());
            r
        };
        let whole = sums(&terms);
        for cut in [0, 7, 20, 40] {
            let mut a = sums(&terms[..cut]);
            a.merge(&sums(&terms[cut..])).unwrap();
            for (x, y) in a.to_vec().iter().zip(whole.to_vec()) {
                assert!(
                    (x - y).abs() <= 1e-12 * y.abs().max(1e-300),
                    "cut {cut}: {x} vs {y}"
                );
            }
        }
        let mut zero = Reweighting::new(1);
        zero.add(f64::NEG_INFINITY, &[0.5]).unwrap();
        let mut a = whole.clone();
        a.merge(&zero).unwrap();
        let expected = whole.ess_per_sample() * 40.0 / 41.0;
        assert!(
            (a.ess_per_sample() - expected).abs() < 1e-14,
            "{}",
            a.ess_per_sample()
        );
        assert!(a.merge(&Reweighting::new(2)).is_err());
    }

    /// Importance sampling of a N(1, 1) target from N(0, 2²) proposals: ⟨x⟩ = 1, ⟨x²⟩ = 2 within
    /// the estimated errors, and the sums do not depend on the weights' overall scale.
    #[test]
    fn reweighting_recovers_a_shifted_gaussian() {
        let n = 40_000;
        let mut draws = vec![0.0; n];
        crate::philox::fill_normals(&mut draws, 5, 0, 0, 3);
        let (mut a, mut b) = (Reweighting::new(2), Reweighting::new(2));
        for z in draws {
            let x = 2.0 * z;
            let log_p = -0.5 * (x - 1.0) * (x - 1.0);
            let log_q = -0.5 * z * z - 2f64.ln();
            a.add(log_p - log_q, &[x, x * x]).unwrap();
            b.add(log_p - log_q + 700.0, &[x, x * x]).unwrap();
        }
        let est = a.estimates();
        for ((v, e), want) in est.iter().zip([1.0, 2.0]) {
            assert!((v - want).abs() < 4.0 * e, "{v} ± {e} vs {want}");
            assert!(*e < 0.05);
        }
        let other = b.estimates();
        assert!((est[0].0 - other[0].0).abs() < 1e-12);
        // Exact ESS of this pair: (E_q w)² / E_q w² = (√7/4) e^{−1/7} ≈ 0.5733.
        let ess = a.ess_per_sample();
        let exact = 7f64.sqrt() / 4.0 * (-1.0f64 / 7.0).exp();
        assert!((ess - exact).abs() < 0.02, "ess {ess} vs {exact}");
        // The partition functions of p and of the proposal's density (both √(2π) here) cancel:
        // E_q[w] = 1, and the shift of 700 comes back exactly.
        let (log_z, err) = a.log_mean_weight();
        assert!(
            log_z.abs() < 4.0 * err && err < 0.02,
            "ln Z = {log_z} ± {err}"
        );
        assert!((b.log_mean_weight().0 - log_z - 700.0).abs() < 1e-9);
        assert!(Reweighting::new(1).log_mean_weight().0.is_nan());
        assert_eq!(Reweighting::from_vec(&a.to_vec(), 2).unwrap(), a);
        assert!(a.add(f64::NAN, &[0.0, 0.0]).is_err());
        assert!(a.add(f64::INFINITY, &[0.0, 0.0]).is_err());
        // Zero weights count towards N only, also before any nonzero weight.
        let mut z = Reweighting::new(1);
        z.add(f64::NEG_INFINITY, &[5.0]).unwrap();
        z.add(0.0, &[2.0]).unwrap();
        z.add(f64::NEG_INFINITY, &[7.0]).unwrap();
        assert_eq!(z.estimates()[0].0, 2.0);
        assert!((z.ess_per_sample() - 1.0 / 3.0).abs() < 1e-15);
        assert!(Reweighting::from_vec(&[0.0; 5], 2).is_err());
    }
}
