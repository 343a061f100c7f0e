//! The Bayesian reconstruction (BR) method of Burnier and Rothkopf (Phys. Rev. Lett. 111, 182003
//! (2013)): the prior exp(αS)/Z(α) with S = Σⱼ wⱼ (1 − ρⱼ/mⱼ + ln(ρⱼ/mⱼ)) — no flat directions,
//! unlike the Shannon–Jaynes entropy — and the hyperparameter α integrated out with a flat prior,
//! P(ρ) = ∫₀^∞ dα exp(αS(ρ))/Z(α). The posterior −χ²/2 + ln P(ρ) is maximised in the full
//! N_ω-dimensional space (no singular subspace). Its stationarity condition is that of fixed α
//! with α = ⟨α⟩, the mean of α given ρ; so the maximum is found by Newton's method at fixed α
//! (concave there), alternated with that update until α stops moving.

use super::linalg::{cholesky, dot, solve_lower, Matrix};
use crate::analysis::replicas::ln_gamma;
use crate::error::{Error, Result};

/// Points of the α quadrature (uniform in ln α).
const ALPHA_POINTS: usize = 400;
/// Its range in ln α around the scale N/2.
const LN_ALPHA_SPAN: f64 = 30.0;

/// A BR solution: ρ and the posterior mean ⟨α⟩ it is stationary at.
pub struct BrSolution {
    /// ρ on the grid; the default model where no stationary point exists.
    pub rho: Vec<f64>,
    /// ⟨α⟩ given ρ; `None` where the marginal posterior has no stationary point at finite α
    /// (its only maximum is then the pole at ρ = m, see [`br`]).
    pub alpha: Option<f64>,
}

/// The prior's pieces on the grid: quadrature weights w and default model m.
struct Prior<'a> {
    w: &'a [f64],
    m: &'a [f64],
}

impl Prior<'_> {
    /// S(ρ) = Σⱼ wⱼ (1 − ρⱼ/mⱼ + ln(ρⱼ/mⱼ)) ≤ 0, as ln(1 + d) − d with d = (ρ − m)/m: near
    /// ρ = m it is −d²/2, which 1 − x + ln x loses to rounding once |d| < 1e-8.
    fn s(&self, rho: &[f64]) -> f64 {
        (0..rho.len())
            .map(|j| {
                let d = (rho[j] - self.m[j]) / self.m[j];
                self.w[j] * (d.ln_1p() - d)
            })
            .sum()
    }

    /// ln Z(α) = Σⱼ ln ∫₀^∞ dρ exp(α wⱼ (1 − ρ/mⱼ + ln(ρ/mⱼ))) = Σⱼ [ln mⱼ + aⱼ + ln Γ(aⱼ + 1) −
    /// (aⱼ + 1) ln aⱼ] with aⱼ = α wⱼ (a Gamma integral).
    fn ln_z(&self, alpha: f64) -> f64 {
        (0..self.w.len())
            .map(|j| {
                let a = alpha * self.w[j];
                self.m[j].ln() + a + ln_gamma(a + 1.0) - (a + 1.0) * a.ln()
            })
            .sum()
    }

    /// The α quadrature at ρ: points ln α, uniform over ±[`LN_ALPHA_SPAN`] around the scale
    /// N/(2|S|) where the integrand peaks, with the log of the integrand in ln α,
    /// αS − ln Z(α) + ln α.
    fn alpha_quadrature(&self, rho: &[f64]) -> Vec<(f64, f64)> {
        let s = self.s(rho);
        let centre = (0.5 * self.w.len() as f64 / (-s).max(1e-300)).ln();
        (0..ALPHA_POINTS)
            .map(|i| {
                let la =
                    centre + LN_ALPHA_SPAN * (2.0 * i as f64 / (ALPHA_POINTS - 1) as f64 - 1.0);
                let a = la.exp();
                (la, a * s - self.ln_z(a) + la)
            })
            .collect()
    }

    /// The mean of α given ρ, with density ∝ exp(αS − ln Z(α)) dα.
    fn mean_alpha(&self, rho: &[f64]) -> f64 {
        let q = self.alpha_quadrature(rho);
        let top = q.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let (num, den) = q.iter().fold((0.0, 0.0), |(n, d), &(la, l)| {
            let p = (l - top).exp();
            (n + p * la.exp(), d + p)
        });
        num / den
    }
}

/// Maximises −½‖A_w ρ − g_w‖² + α S(ρ) over ρ > 0 by Newton's method from `rho` (the objective
/// is strictly concave). The Newton system (A_wᵀA_w + α diag(w/ρ²)) δ = ∇ is solved in the data
/// space by the Woodbury identity (N_τ × N_τ instead of N_ω × N_ω).
fn fixed_alpha(aw: &Matrix, gw: &[f64], prior: &Prior, alpha: f64, rho: &mut [f64]) -> Result<()> {
    let n = rho.len();
    let objective = |r: &[f64]| -> f64 {
        let res: Vec<f64> = aw.mul_vec(r).iter().zip(gw).map(|(a, g)| a - g).collect();
        -0.5 * dot(&res, &res) + alpha * prior.s(r)
    };
    for _ in 0..200 {
        let res: Vec<f64> = aw.mul_vec(rho).iter().zip(gw).map(|(a, g)| a - g).collect();
        let atr = aw.tmul_vec(&res);
        let grad: Vec<f64> = (0..n)
            .map(|j| -atr[j] + alpha * prior.w[j] * (1.0 / rho[j] - 1.0 / prior.m[j]))
            .collect();
        // D⁻¹ with D = α w/ρ².
        let dinv: Vec<f64> = (0..n)
            .map(|j| rho[j] * rho[j] / (alpha * prior.w[j]))
            .collect();
        let step = woodbury(aw, &dinv, &grad)?;
        let scale: f64 = rho.iter().map(|r| r * r).sum::<f64>().sqrt();
        if dot(&step, &step).sqrt() <= 1e-12 * scale {
            return Ok(());
        }
        // Stay positive: at most 90 % of the way to the nearest zero.
        let mut t = step
            .iter()
            .zip(rho.iter())
            .filter(|(d, _)| **d < 0.0)
            .map(|(d, r)| 0.9 * r / -d)
            .fold(1.0, f64::min);
        let q0 = objective(rho);
        let improved = loop {
            let trial: Vec<f64> = rho.iter().zip(&step).map(|(r, d)| r + t * d).collect();
            if objective(&trial) >= q0 {
                break Some(trial);
            }
            t *= 0.5;
            if t < 1e-12 {
                break None;
            }
        };
        match improved {
            Some(trial) => rho.copy_from_slice(&trial),
            None => return Ok(()),
        }
    }
    Ok(())
}

/// (AᵀA + D)⁻¹ v for diagonal D given as D⁻¹: D⁻¹v − D⁻¹Aᵀ (I + A D⁻¹ Aᵀ)⁻¹ A D⁻¹ v.
fn woodbury(a: &Matrix, dinv: &[f64], v: &[f64]) -> Result<Vec<f64>> {
    let (rows, cols) = (a.rows, a.cols);
    let mut k = Matrix::zeros(rows, rows);
    for i in 0..rows {
        for l in i..rows {
            let (ri, rl) = (a.row(i), a.row(l));
            let s: f64 = (0..cols).map(|j| ri[j] * dinv[j] * rl[j]).sum();
            k.data[i * rows + l] = s + if i == l { 1.0 } else { 0.0 };
            k.data[l * rows + i] = k.data[i * rows + l];
        }
    }
    let dv: Vec<f64> = v.iter().zip(dinv).map(|(x, d)| x * d).collect();
    let y = a.mul_vec(&dv);
    let l = cholesky(&k)?;
    let z = solve_upper_t(&l, &solve_lower(&l, &y));
    let atz = a.tmul_vec(&z);
    Ok((0..cols).map(|j| dv[j] - dinv[j] * atz[j]).collect())
}

/// Solves Lᵀ x = b for lower-triangular L.
fn solve_upper_t(l: &Matrix, b: &[f64]) -> Vec<f64> {
    let n = l.rows;
    let mut x = b.to_vec();
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l.at(k, i) * x[k]).sum();
        x[i] = (x[i] - s) / l.at(i, i);
    }
    x
}

/// Steps in α (a factor √10 each) searched below the strongly regularised start.
const ALPHA_STEPS: i32 = 40;

/// The BR reconstruction of whitened data g_w = A_w ρ (A_w including the quadrature weights
/// `w`) with the default model `m`.
///
/// The α-marginalised prior has a pole at ρ = m (∝ |S|^−(N/2+1), S quadratic there), so the
/// method's answer is the finite-α stationary point, α = ⟨α⟩(ρ_α) with ρ_α the maximum at fixed
/// α. The map α ↦ ⟨α⟩(ρ_α) has up to two fixed points: a repelling one near ρ = m, from above which
/// the plain iteration runs into the pole, and the attracting one that is the posterior's local
/// maximum. So α first steps down from a strongly regularised start until ⟨α⟩ ≤ α
/// (below the repeller), and the iteration then descends onto the maximum. Where ⟨α⟩ > α at
/// every α, weak data cannot hold ρ away from the pole: no stationary point exists, and the
/// default model is returned with `alpha: None`.
pub fn br(aw: &Matrix, w: &[f64], gw: &[f64], m: &[f64]) -> Result<BrSolution> {
    if m.len() != aw.cols || w.len() != aw.cols || gw.len() != aw.rows {
        return Err(Error::InvalidInput(format!(
            "BR: {} default-model values and {} weights for {} frequencies, {} data for {} rows",
            m.len(),
            w.len(),
            aw.cols,
            gw.len(),
            aw.rows
        )));
    }
    if m.iter().chain(w).any(|x| !(x.is_finite() && *x > 0.0)) {
        return Err(Error::InvalidInput(
            "BR needs a positive, finite default model and quadrature weights".into(),
        ));
    }
    let prior = Prior { w, m };
    // A strongly regularised start (ρ ≈ m): α of the size of the data's curvature, ‖A_w‖²
    // (Frobenius) per unit of quadrature weight.
    let start = aw.data.iter().map(|a| a * a).sum::<f64>() / w.iter().sum::<f64>();
    stationary_point(aw, gw, &prior, start)
}

/// The finite-α stationary point reached from `start` (see [`br`]).
fn stationary_point(aw: &Matrix, gw: &[f64], prior: &Prior, start: f64) -> Result<BrSolution> {
    let mut rho = prior.m.to_vec();
    let Some(mut alpha) = below_the_repeller(aw, gw, prior, start, &mut rho)? else {
        return Ok(BrSolution {
            rho: prior.m.to_vec(),
            alpha: None,
        });
    };
    for _ in 0..500 {
        fixed_alpha(aw, gw, prior, alpha, &mut rho)?;
        let next = prior.mean_alpha(&rho);
        if !next.is_finite() {
            return Err(Error::NonFinite("BR: the mean of alpha diverged".into()));
        }
        let done = (next / alpha - 1.0).abs() < 1e-8;
        alpha = next;
        if done {
            fixed_alpha(aw, gw, prior, alpha, &mut rho)?;
            return Ok(BrSolution {
                rho,
                alpha: Some(alpha),
            });
        }
    }
    Err(Error::NonFinite(
        "BR: alpha did not settle in 500 updates".into(),
    ))
}

/// The first α of `start`, `start`/√10, … (with `rho` its fixed-α maximum, each warm-started from
/// the last) at which ⟨α⟩ ≤ α. `None` once ⟨α⟩/α stops falling while still above 1: below its
/// minimum ⟨α⟩ levels off at about N/|S| while α keeps falling, so no fixed point lies further
/// down (and the Newton systems of very small α are needlessly ill-conditioned).
fn below_the_repeller(
    aw: &Matrix,
    gw: &[f64],
    prior: &Prior,
    start: f64,
    rho: &mut [f64],
) -> Result<Option<f64>> {
    let mut last_ratio = f64::INFINITY;
    for step in 0..=ALPHA_STEPS {
        let alpha = start * 10f64.powf(-0.5 * step as f64);
        fixed_alpha(aw, gw, prior, alpha, rho)?;
        let mean = prior.mean_alpha(rho);
        if !mean.is_finite() {
            // ρ sits on the pole (S = 0: data the default model reproduces): ⟨α⟩ = ∞ here and
            // no finite stationary point lies below.
            return Ok(None);
        }
        let ratio = mean / alpha;
        if ratio <= 1.0 {
            return Ok(Some(alpha));
        }
        if ratio >= last_ratio {
            break;
        }
        last_ratio = ratio;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Z(α) against direct quadrature of one point's prior, for small and large α wⱼ.
    #[test]
    fn the_priors_normalisation_is_the_gamma_integral() {
        for (alpha, w, m) in [(0.3, 0.5, 2.0), (40.0, 0.1, 0.7), (1e3, 1.0, 1.5)] {
            let prior = Prior { w: &[w], m: &[m] };
            let a: f64 = alpha * w;
            // ρ = m eᵘ: dρ = ρ du, integrand exp(a(1 − eᵘ + u)) m eᵘ.
            let h = 1e-4;
            let direct: f64 = (-400_000..400_000)
                .map(|k| {
                    let u = k as f64 * h;
                    (a * (1.0 - u.exp() + u)).exp() * m * u.exp() * h
                })
                .sum();
            assert!(
                (prior.ln_z(alpha) - direct.ln()).abs() < 1e-6,
                "{} vs {}",
                prior.ln_z(alpha),
                direct.ln()
            );
        }
    }

    /// The paper's double-peak mock (KL kernel, 100 momenta, 500 ω) with momentum-scaled noise,
    /// whitened, and its flat default model.
    fn paper_mock(noise: f64) -> (Matrix, Vec<f64>, Vec<f64>, Vec<f64>) {
        use crate::spectral::kernel::{kernel_matrix, KernelKind, OmegaGrid};
        use crate::spectral::mock::{mock_data, Noise, Spectrum};
        let grid = OmegaGrid::uniform(0.04, 20.0, 500).unwrap();
        let x: Vec<f64> = (0..100).map(|i| 0.2 + 0.2 * i as f64).collect();
        let a = kernel_matrix(KernelKind::KallenLehmann, &x, &grid).unwrap();
        let truth = Spectrum::named("bw2").unwrap().on(&grid);
        let data = mock_data(&a, &truth, &x, &Noise::MomentumScaled(noise), 1).unwrap();
        let (aw, gw) = data.whiten(&a).unwrap();
        let m = vec![crate::spectral::flat_default(&aw, &gw); grid.len()];
        (aw, gw, grid.weights, m)
    }

    /// From a start far above the repelling fixed point, where ⟨α⟩ > α and the plain iteration
    /// runs into the pole at ρ = m, the solution is the one reached from the usual start.
    #[test]
    fn the_stationary_point_does_not_depend_on_the_start() {
        let (aw, gw, w, m) = paper_mock(1e-3);
        let prior = Prior { w: &w, m: &m };
        let start = aw.data.iter().map(|a| a * a).sum::<f64>() / w.iter().sum::<f64>();
        let high = start * 1e6;
        let mut rho = m.clone();
        fixed_alpha(&aw, &gw, &prior, high, &mut rho).unwrap();
        assert!(
            prior.mean_alpha(&rho) > 10.0 * high,
            "the high start is not above the repeller"
        );
        let (usual, far) = (
            stationary_point(&aw, &gw, &prior, start).unwrap(),
            stationary_point(&aw, &gw, &prior, high).unwrap(),
        );
        let (a, b) = (usual.alpha.unwrap(), far.alpha.unwrap());
        assert!((a / b - 1.0).abs() < 1e-6, "alpha {a} vs {b}");
        let worst = usual
            .rho
            .iter()
            .zip(&far.rho)
            .map(|(x, y)| (x / y - 1.0).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "rho differs by {worst}");
    }

    /// Weak data: ⟨α⟩ > α at every α, so no stationary point; the default model comes back
    /// flagged. Ten times more precise data have one.
    #[test]
    fn weak_data_have_no_stationary_point() {
        let (aw, gw, w, m) = paper_mock(1e-2);
        let s = br(&aw, &w, &gw, &m).unwrap();
        assert!(s.alpha.is_none() && s.rho == m);
        let (aw, gw, w, m) = paper_mock(1e-3);
        let s = br(&aw, &w, &gw, &m).unwrap();
        assert!(s.alpha.is_some_and(|a| a > 0.0 && a.is_finite()));
    }

    /// Data the default model reproduces exactly (g = A m): ρ = m at every α, S = 0 and ⟨α⟩ = ∞,
    /// so no finite stationary point; the default model comes back flagged, not an error.
    #[test]
    fn data_of_the_default_model_have_no_stationary_point() {
        let (aw, _, w, m) = paper_mock(1e-3);
        let gw = aw.mul_vec(&m);
        let s = br(&aw, &w, &gw, &m).unwrap();
        assert!(s.alpha.is_none() && s.rho == m);
    }

    /// At the returned ρ the marginal posterior −χ²/2 + ln P(ρ) is stationary: its gradient,
    /// by central differences of the α quadrature itself, vanishes along random directions.
    #[test]
    fn the_solution_is_a_stationary_point_of_the_marginal_posterior() {
        let (nt, nw) = (12, 40);
        let omega: Vec<f64> = (0..nw).map(|j| 0.1 + 0.2 * j as f64).collect();
        let w = vec![0.2; nw];
        let mut aw = Matrix::zeros(nt, nw);
        for i in 0..nt {
            for j in 0..nw {
                aw.data[i * nw + j] = (-(i as f64 + 1.0) * 0.3 * omega[j]).exp() * w[j] * 50.0;
            }
        }
        let truth: Vec<f64> = omega
            .iter()
            .map(|o| (-(o - 2.0).powi(2)).exp() + 0.1)
            .collect();
        let gw: Vec<f64> = aw
            .mul_vec(&truth)
            .iter()
            .enumerate()
            .map(|(i, g)| g + 0.01 * ((i * 7 % 5) as f64 - 2.0))
            .collect();
        let m = vec![0.5; nw];
        let sol = br(&aw, &w, &gw, &m).unwrap();
        assert!(sol.rho.iter().all(|r| *r > 0.0));
        let prior = Prior { w: &w, m: &m };
        // ln P(ρ) by the same quadrature (uniform steps in ln α).
        let ln_marginal = |r: &[f64]| -> f64 {
            let q = prior.alpha_quadrature(r);
            let h = q[1].0 - q[0].0;
            let top = q.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            top + (q.iter().map(|p| (p.1 - top).exp()).sum::<f64>() * h).ln()
        };
        let post = |r: &[f64]| {
            let res: Vec<f64> = aw.mul_vec(r).iter().zip(&gw).map(|(a, g)| a - g).collect();
            -0.5 * dot(&res, &res) + ln_marginal(r)
        };
        // Directional slopes of the posterior at ρ along directions scaled by ρ.
        let slopes = |rho: &[f64]| -> f64 {
            (0..5)
                .map(|k| {
                    let dir: Vec<f64> = (0..nw)
                        .map(|j| rho[j] * (((j * 13 + k * 7) % 11) as f64 - 5.0) / 5.0)
                        .collect();
                    let e = 1e-5;
                    let at = |s: f64| -> Vec<f64> {
                        rho.iter().zip(&dir).map(|(r, d)| r + s * d).collect()
                    };
                    ((post(&at(e)) - post(&at(-e))) / (2.0 * e)).abs()
                })
                .fold(0.0, f64::max)
        };
        let (at_solution, at_start) = (slopes(&sol.rho), slopes(&m));
        assert!(
            at_solution < 1e-5 * at_start,
            "slope {at_solution} at the solution, {at_start} at the default model"
        );
    }
}
