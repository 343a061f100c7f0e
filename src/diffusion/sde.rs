//! The variance-exploding SDE of the score-based diffusion models (Song et al., ICLR 2021; on the
//! lattice Wang, Aarts, Zhou, arXiv:2309.17082): dx = σᵗ dw for t ∈ [0, 1], so the marginal at
//! time t is the data smeared by a Gaussian of variance σ_t² = (σ^{2t} − 1)/(2 ln σ).
//!
//! The reverse process, with the score s(x, t) = ∇ ln p_t(x), is sampled from the h-interpolated
//! family of the path-integral view, dx = −½(1 + h²) g² s dt + h g dw̄ with g(t) = σᵗ: h = 1 the
//! reverse SDE (Euler–Maruyama), h = 0 the probability-flow ODE (here by Heun's method).

use crate::error::{Error, Result};
use crate::philox;

/// The VE SDE with parameter σ (25 in the papers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VeSde {
    /// σ > 1.
    pub sigma: f64,
}

impl VeSde {
    /// The SDE of `sigma` (> 1, finite).
    pub fn new(sigma: f64) -> Result<Self> {
        if !(sigma.is_finite() && sigma > 1.0) {
            return Err(Error::InvalidInput(format!(
                "sigma = {sigma}: the VE SDE needs a finite sigma > 1 (25 in the papers)"
            )));
        }
        Ok(VeSde { sigma })
    }

    /// g(t) = σᵗ.
    pub fn g(&self, t: f64) -> f64 {
        self.sigma.powf(t)
    }

    /// The marginal standard deviation σ_t = √((σ^{2t} − 1)/(2 ln σ)).
    pub fn marginal_std(&self, t: f64) -> f64 {
        ((self.sigma.powf(2.0 * t) - 1.0) / (2.0 * self.sigma.ln())).sqrt()
    }
}

/// How the reverse process is integrated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Integrator {
    /// Euler–Maruyama of the h-interpolated family (h = 1: the reverse SDE).
    Euler {
        /// The interpolation h ∈ [0, 1].
        h: f64,
    },
    /// Heun's method for the probability-flow ODE (h = 0), second order.
    Heun,
}

/// Integrates the reverse process from t = 1 to `t_end` in `steps` equal steps for `batch`
/// configurations of `volume` sites, starting from N(0, σ_1²) and calling `score(x, t)` for
/// s(x, t) `[batch][volume]`. The draws are keyed by (site, sample, step): sample `sample0 + b`
/// of `seed`'s `stream`, step words `first_step..first_step + steps + 1`. Returns x
/// `[batch][volume]`.
#[allow(clippy::too_many_arguments)]
pub fn reverse<F>(
    sde: &VeSde,
    integrator: Integrator,
    steps: usize,
    t_end: f64,
    (batch, volume): (usize, usize),
    (seed, stream, sample0, first_step): (u64, u32, u32, u64),
    mut score: F,
) -> Result<Vec<f64>>
where
    F: FnMut(&[f64], f64) -> Result<Vec<f64>>,
{
    if steps == 0 || !(0.0..1.0).contains(&t_end) {
        return Err(Error::InvalidInput(format!(
            "{steps} steps down to t = {t_end}: give at least one step and 0 <= t_end < 1"
        )));
    }
    if first_step + steps as u64 >= 1 << 32 {
        return Err(Error::InvalidInput(
            "more reverse-process steps than the 2^32 the draws can tell apart".into(),
        ));
    }
    if let Integrator::Euler { h } = integrator {
        if !(0.0..=1.0).contains(&h) {
            return Err(Error::InvalidInput(format!("--h {h}: use 0 <= h <= 1")));
        }
    }
    let normals = |step: usize| -> Vec<f64> {
        let mut z = vec![0.0; batch * volume];
        for (b, row) in z.chunks_mut(volume.max(1)).enumerate() {
            let word = (first_step + step as u64) as u32;
            philox::fill_normals(row, seed, sample0 + b as u32, word, stream);
        }
        z
    };
    let mut x: Vec<f64> = normals(0)
        .into_iter()
        .map(|z| z * sde.marginal_std(1.0))
        .collect();
    let dt = (1.0 - t_end) / steps as f64;
    for i in 0..steps {
        let t = 1.0 - i as f64 * dt;
        let g2 = sde.g(t).powi(2);
        let s = score(&x, t)?;
        match integrator {
            Integrator::Euler { h } => {
                let z = normals(i + 1);
                let (drift, noise) = (0.5 * (1.0 + h * h) * g2 * dt, h * sde.g(t) * dt.sqrt());
                for ((xi, si), zi) in x.iter_mut().zip(&s).zip(&z) {
                    *xi += drift * si + noise * zi;
                }
            }
            Integrator::Heun => {
                let (t2, g2b) = (t - dt, sde.g(t - dt).powi(2));
                let pred: Vec<f64> = x
                    .iter()
                    .zip(&s)
                    .map(|(xi, si)| xi + 0.5 * g2 * dt * si)
                    .collect();
                let s2 = score(&pred, t2)?;
                for ((xi, a), b) in x.iter_mut().zip(&s).zip(&s2) {
                    *xi += 0.25 * dt * (g2 * a + g2b * b);
                }
            }
        }
    }
    Ok(x)
}

/// The probability-flow ODE from t = 1 to `t_end` by Heun's method with the log-density along
/// the path: d ln p_t(x(t))/dt = −∇·f = ½ g² ∇·s, so
/// ln q(x_end) = ln N(x_1; 0, σ_1²) − ½ ∫_{t_end}^1 g² ∇·s dt, integrated by the same Heun steps
/// (exact up to the integrator's O(Δt²) error: the Metropolis correction built on it is exact up
/// to that). `score_div(x, t)` gives s `[B][V]` and ∇·s `[B]`. Draws keyed as in [`reverse`].
/// Returns x `[B][V]` and ln q `[B]`.
pub fn reverse_ode_with_density<F>(
    sde: &VeSde,
    steps: usize,
    t_end: f64,
    (batch, volume): (usize, usize),
    (seed, stream, sample0, first_step): (u64, u32, u32, u64),
    mut score_div: F,
) -> Result<(Vec<f64>, Vec<f64>)>
where
    F: FnMut(&[f64], f64) -> Result<(Vec<f64>, Vec<f64>)>,
{
    if steps == 0 || !(0.0..1.0).contains(&t_end) || first_step >= 1 << 32 {
        return Err(Error::InvalidInput(format!(
            "{steps} steps down to t = {t_end}: give at least one step and 0 <= t_end < 1"
        )));
    }
    let s1 = sde.marginal_std(1.0);
    let mut x = vec![0.0; batch * volume];
    for (b, row) in x.chunks_mut(volume.max(1)).enumerate() {
        philox::fill_normals(row, seed, sample0 + b as u32, first_step as u32, stream);
    }
    x.iter_mut().for_each(|z| *z *= s1);
    let gauss = |row: &[f64]| -> f64 {
        let n = row.len() as f64;
        -0.5 * row.iter().map(|v| v * v).sum::<f64>() / (s1 * s1)
            - 0.5 * n * (2.0 * std::f64::consts::PI * s1 * s1).ln()
    };
    let mut log_q: Vec<f64> = x.chunks(volume.max(1)).map(gauss).collect();
    let dt = (1.0 - t_end) / steps as f64;
    for i in 0..steps {
        let t = 1.0 - i as f64 * dt;
        let (g2, g2b) = (sde.g(t).powi(2), sde.g(t - dt).powi(2));
        let (s, d) = score_div(&x, t)?;
        let pred: Vec<f64> = x
            .iter()
            .zip(&s)
            .map(|(a, b)| a + 0.5 * g2 * dt * b)
            .collect();
        let (s2, d2) = score_div(&pred, t - dt)?;
        for ((xi, a), b) in x.iter_mut().zip(&s).zip(&s2) {
            *xi += 0.25 * dt * (g2 * a + g2b * b);
        }
        for ((l, a), b) in log_q.iter_mut().zip(&d).zip(&d2) {
            *l -= 0.25 * dt * (g2 * a + g2b * b);
        }
    }
    Ok((x, log_q))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For Gaussian data N(0, v) per site the smeared marginal is N(0, v + σ_t²) and the exact
    /// score is −x/(v + σ_t²): every member of the family ends at variance v (to O(Δt)).
    #[test]
    fn the_reverse_process_with_the_exact_score_recovers_gaussian_data() {
        let sde = VeSde::new(25.0).unwrap();
        let v = 0.7;
        for (integrator, steps) in [
            (Integrator::Euler { h: 1.0 }, 1000),
            (Integrator::Euler { h: 0.5 }, 1000),
            (Integrator::Euler { h: 0.0 }, 1000),
            (Integrator::Heun, 200),
        ] {
            let x = reverse(
                &sde,
                integrator,
                steps,
                1e-3,
                (4000, 4),
                (1, 9, 0, 0),
                |x, t| {
                    let var = v + sde.marginal_std(t).powi(2);
                    Ok(x.iter().map(|xi| -xi / var).collect())
                },
            )
            .unwrap();
            let got = x.iter().map(|a| a * a).sum::<f64>() / x.len() as f64;
            // 16 000 values: the variance's relative error is about √(2/16000) ≈ 1.1 %.
            assert!(
                (got / v - 1.0).abs() < 0.05,
                "{integrator:?}: variance {got} vs {v}"
            );
        }
        assert!(VeSde::new(1.0).is_err());
        let f = |x: &[f64], _| Ok(x.to_vec());
        assert!(reverse(
            &sde,
            Integrator::Euler { h: 2.0 },
            10,
            0.0,
            (1, 1),
            (1, 9, 0, 0),
            f
        )
        .is_err());
    }

    #[test]
    fn marginal_std_and_g_match_the_sde() {
        let sde = VeSde::new(25.0).unwrap();
        assert_eq!(sde.marginal_std(0.0), 0.0);
        // dσ_t²/dt = g(t)².
        for t in [0.1, 0.5, 0.9] {
            let e = 1e-6;
            let d = (sde.marginal_std(t + e).powi(2) - sde.marginal_std(t - e).powi(2)) / (2.0 * e);
            assert!((d / sde.g(t).powi(2) - 1.0).abs() < 1e-6);
        }
    }

    /// With the exact score of N(0, v) data the ODE's map is linear,
    /// x_end = x_1 √((v + σ_end²)/(v + σ_1²)), so from x_1 ~ N(0, σ_1²) the draws have the exact
    /// density N(0, σ_1² (v + σ_end²)/(v + σ_1²)): what the integrated log-density must give.
    #[test]
    fn the_ode_density_is_the_exact_gaussian_density() {
        let sde = VeSde::new(25.0).unwrap();
        let (v, n, t_end) = (0.7, 3, 1e-3);
        let (x, lq) = reverse_ode_with_density(&sde, 400, t_end, (50, n), (2, 9, 0, 0), |x, t| {
            let var = v + sde.marginal_std(t).powi(2);
            let s = x.iter().map(|xi| -xi / var).collect();
            Ok((s, vec![-(n as f64) / var; x.len() / n]))
        })
        .unwrap();
        let s1 = sde.marginal_std(1.0).powi(2);
        let var = s1 * (v + sde.marginal_std(t_end).powi(2)) / (v + s1);
        for (row, l) in x.chunks(n).zip(&lq) {
            let exact = -0.5 * row.iter().map(|a| a * a).sum::<f64>() / var
                - 0.5 * n as f64 * (2.0 * std::f64::consts::PI * var).ln();
            assert!(
                (l - exact).abs() < 1e-4 * exact.abs().max(1.0),
                "{l} vs {exact}"
            );
        }
    }
}
