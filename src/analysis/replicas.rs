//! Do independent chains (replicas) agree? The χ² of the per-chain estimates about their
//! error-weighted mean, with its Q-value: the probability of a χ² at least this large if the
//! chains sample one distribution. A tiny Q means a chain is stuck, or thermalisation was short.

use super::Estimate;

/// χ² of per-chain estimates about their weighted mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicaCheck {
    /// Σ_c (v_c − v̄)² / σ_c².
    pub chi2: f64,
    /// Degrees of freedom: chains − 1.
    pub dof: usize,
    /// P(χ²_dof ≥ chi2).
    pub q: f64,
}

/// The χ² test of `per_chain` (one estimate per chain); `None` with fewer than two chains or when
/// an error is not a positive number (a constant series: see [`Estimate::note`]).
pub fn replica_consistency(per_chain: &[Estimate]) -> Option<ReplicaCheck> {
    if per_chain.len() < 2
        || per_chain
            .iter()
            .any(|e| !(e.error > 0.0 && e.error.is_finite() && e.value.is_finite()))
    {
        return None;
    }
    let w: Vec<f64> = per_chain
        .iter()
        .map(|e| 1.0 / (e.error * e.error))
        .collect();
    let mean = per_chain
        .iter()
        .zip(&w)
        .map(|(e, w)| e.value * w)
        .sum::<f64>()
        / w.iter().sum::<f64>();
    let chi2: f64 = per_chain
        .iter()
        .zip(&w)
        .map(|(e, w)| (e.value - mean).powi(2) * w)
        .sum();
    let dof = per_chain.len() - 1;
    Some(ReplicaCheck {
        chi2,
        dof,
        q: chi2_q(chi2, dof),
    })
}

/// P(χ²_dof ≥ x) = Q(dof/2, x/2), the regularised upper incomplete gamma function.
pub fn chi2_q(x: f64, dof: usize) -> f64 {
    if dof == 0 || x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    gamma_q(dof as f64 / 2.0, x / 2.0)
}

/// ln Γ(x) for x > 0: Lanczos' approximation (g = 7, nine terms; relative error ~1e-15),
/// with the reflection-free form valid for x ≥ ½ and the recurrence below it.
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Γ(x) = Γ(x + 1) / x.
        return ln_gamma(x + 1.0) - x.ln();
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let sum = C[0] + (1..9).map(|i| C[i] / (x + i as f64)).sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// Q(a, x) = Γ(a, x)/Γ(a): the power series of P below x = a + 1, a continued fraction (modified
/// Lentz) above, as in Abramowitz & Stegun 6.5.29 and 6.5.31.
fn gamma_q(a: f64, x: f64) -> f64 {
    let log_prefactor = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_prefactor.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            d = if d.abs() < tiny { tiny } else { d };
            c = b + an / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (h * log_prefactor.exp()).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi2_q_matches_closed_forms() {
        // dof = 2: Q = e^{-x/2} exactly.
        for x in [0.1, 1.0, 3.0, 10.0, 40.0] {
            assert!(
                (chi2_q(x, 2) - (-x / 2.0f64).exp()).abs() < 1e-13,
                "x = {x}"
            );
        }
        // dof = 1: Q = erfc(√(x/2)); at x = 1 (one σ) 0.3173105078629141.
        assert!((chi2_q(1.0, 1) - 0.317_310_507_862_914_1).abs() < 1e-12);
        // dof = 4: Q = e^{-x/2}(1 + x/2).
        for x in [0.5, 4.0, 12.0] {
            let want = (-x / 2.0f64).exp() * (1.0 + x / 2.0);
            assert!((chi2_q(x, 4) - want).abs() < 1e-13, "x = {x}");
        }
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
    }

    #[test]
    fn disagreeing_chains_have_a_tiny_q() {
        let e = |v: f64| Estimate {
            value: v,
            error: 0.1,
            tau_int: 0.5,
            tau_int_error: 0.0,
            note: None,
        };
        let agree = replica_consistency(&[e(1.0), e(1.05), e(0.97), e(1.02)]).unwrap();
        assert!(agree.q > 0.5, "{agree:?}");
        let stuck = replica_consistency(&[e(1.0), e(1.05), e(0.97), e(3.0)]).unwrap();
        assert!(stuck.q < 1e-10, "{stuck:?}");
        assert_eq!(replica_consistency(&[e(1.0)]), None);
    }
}
