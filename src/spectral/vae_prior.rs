//! The trained VAE decoder as a prior for reconstructing impurity spectra from imaginary-time
//! data: G(τ) = ∫ K(τ, ω) ρ(ω) dω with the fermionic kernel K = e^{−τω}/(1 + e^{−βω})
//! ([`super::kernel::KernelKind::Fermionic`]), noise of relative size ε per τ.
//!
//! Three reconstructions of each spectrum, compared on mock data made from held-out library
//! spectra (the VAE never saw them):
//! - `mem`: maximum entropy (Bryan's α average) with a flat default model;
//! - `vae`: ρ̂(z*) with z* minimising χ²(z) over the latent space (Levenberg–Marquardt with a
//!   finite-difference Jacobian, from the origin and ±1.5 along every latent axis);
//! - `mem-vae`: maximum entropy with the default model ρ̂(z*) (the decoder's best spectrum as
//!   the prior's reference, the data free to correct it).

use super::classical::{mem, MemAlpha, MemOptions};
use super::kernel::KernelKind;
use super::linalg::Matrix;
use super::vae::Vae;
use crate::error::{Error, Result};
use crate::philox;

/// Mock-data settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorSettings {
    /// Inverse temperature β of the data (units of 1/Γ).
    pub beta: f64,
    /// τ points, equally spaced on [0, β].
    pub taus: usize,
    /// Relative noise ε: σ(τ) = ε·G(τ).
    pub noise: f64,
    /// Seed of the noise.
    pub seed: u64,
}

impl PriorSettings {
    /// Refuses settings that cannot make data.
    pub fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) || self.taus < 4 {
            return Err(Error::InvalidInput(format!(
                "--beta {} --taus {}: need beta > 0 and at least 4 tau points",
                self.beta, self.taus
            )));
        }
        if !(self.noise.is_finite() && self.noise > 0.0 && self.noise < 1.0) {
            return Err(Error::InvalidInput(format!(
                "--noise {}: give a relative noise in (0, 1)",
                self.noise
            )));
        }
        Ok(())
    }
}

/// One method's reconstruction of one spectrum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorRow {
    /// Which spectrum (row of the library).
    pub spectrum: usize,
    /// `mem`, `vae` or `mem-vae`.
    pub method: &'static str,
    /// χ²/N of the reconstruction.
    pub chi2: f64,
    /// Σ|ρ̂ − ρ|Δω.
    pub l1: f64,
    /// Σ(ρ̂ − ρ)²Δω.
    pub mse: f64,
}

/// The mock problem of one spectrum: whitened kernel B_ij = K(τ_i, ω_j)/σ_i and data g_i/σ_i.
struct Mock {
    b: Matrix,
    gw: Vec<f64>,
}

impl Mock {
    fn new(omega: &[f64], dw: f64, rho: &[f64], s: &PriorSettings, index: usize) -> Result<Self> {
        let kind = KernelKind::Fermionic { beta: s.beta };
        let taus: Vec<f64> = (0..s.taus)
            .map(|i| s.beta * i as f64 / (s.taus - 1) as f64)
            .collect();
        let mut noise = vec![0.0; s.taus];
        philox::fill_normals(&mut noise, s.seed, index as u32, 0, 23);
        let (mut b, mut gw) = (Vec::new(), Vec::new());
        for (&t, z) in taus.iter().zip(&noise) {
            let row: Vec<f64> = omega.iter().map(|&w| kind.eval(t, w)).collect();
            let g: f64 = row.iter().zip(rho).map(|(k, r)| k * r).sum::<f64>() * dw;
            let sigma = s.noise * g;
            if !(sigma.is_finite() && sigma > 0.0) {
                return Err(Error::InvalidInput(format!(
                    "spectrum {index}: G(tau = {t}) = {g} gives no usable error bar"
                )));
            }
            b.extend(row.iter().map(|k| k / sigma));
            gw.push(g / sigma + z);
        }
        Ok(Mock {
            b: Matrix {
                rows: s.taus,
                cols: omega.len(),
                data: b,
            },
            gw,
        })
    }

    /// χ² of ρ.
    fn chi2(&self, rho: &[f64], dw: f64) -> f64 {
        self.residual(rho, dw).iter().map(|r| r * r).sum()
    }

    fn residual(&self, rho: &[f64], dw: f64) -> Vec<f64> {
        self.b
            .data
            .chunks(self.b.cols)
            .zip(&self.gw)
            .map(|(row, g)| row.iter().zip(rho).map(|(k, r)| k * r).sum::<f64>() * dw - g)
            .collect()
    }
}

/// z* minimising χ² of the decoded spectrum, and that spectrum.
fn latent_fit(vae: &Vae, mock: &Mock) -> Result<(Vec<f64>, Vec<f64>)> {
    let l = vae.config.latent;
    let mut starts = vec![vec![0.0; l]];
    for d in 0..l {
        for sign in [-1.5, 1.5] {
            let mut z = vec![0.0; l];
            z[d] = sign;
            starts.push(z);
        }
    }
    let mut best: Option<(f64, Vec<f64>)> = None;
    for z0 in starts {
        let z = levenberg_marquardt(vae, mock, z0)?;
        let c = mock.chi2(&vae.decode(&z)?, vae.dw);
        if best.as_ref().is_none_or(|(b, _)| c < *b) {
            best = Some((c, z));
        }
    }
    let z = best.map(|(_, z)| z).unwrap_or_else(|| vec![0.0; l]);
    let rho = vae.decode(&z)?;
    Ok((z, rho))
}

/// Levenberg–Marquardt on the latent vector, the Jacobian by central differences (one batched
/// decode of 2L + 1 latents per iteration).
fn levenberg_marquardt(vae: &Vae, mock: &Mock, mut z: Vec<f64>) -> Result<Vec<f64>> {
    let (l, n, h) = (z.len(), mock.gw.len(), 1e-4);
    let mut lambda = 1e-2;
    let mut chi = mock.chi2(&vae.decode(&z)?, vae.dw);
    for _ in 0..40 {
        let mut batch = z.clone();
        for d in 0..l {
            for sign in [1.0, -1.0] {
                let mut y = z.clone();
                y[d] += sign * h;
                batch.extend(y);
            }
        }
        let decoded = vae.decode(&batch)?;
        let m = vae.points;
        let r0 = mock.residual(&decoded[..m], vae.dw);
        let jac: Vec<Vec<f64>> = (0..l)
            .map(|d| {
                let up = mock.residual(&decoded[(1 + 2 * d) * m..(2 + 2 * d) * m], vae.dw);
                let dn = mock.residual(&decoded[(2 + 2 * d) * m..(3 + 2 * d) * m], vae.dw);
                up.iter()
                    .zip(&dn)
                    .map(|(a, b)| (a - b) / (2.0 * h))
                    .collect()
            })
            .collect();
        // (JᵀJ + λ diag) δ = −Jᵀr, solved by Gaussian elimination (L ≤ 16).
        let mut a = vec![0.0; l * l];
        let mut rhs = vec![0.0; l];
        for p in 0..l {
            for q in 0..l {
                a[p * l + q] = (0..n).map(|i| jac[p][i] * jac[q][i]).sum();
            }
            rhs[p] = -(0..n).map(|i| jac[p][i] * r0[i]).sum::<f64>();
        }
        let mut improved = false;
        for _ in 0..8 {
            let mut damped = a.clone();
            for p in 0..l {
                damped[p * l + p] *= 1.0 + lambda;
                damped[p * l + p] += 1e-12;
            }
            let Some(step) = solve(damped, rhs.clone(), l) else {
                lambda *= 10.0;
                continue;
            };
            let trial: Vec<f64> = z.iter().zip(&step).map(|(a, b)| a + b).collect();
            let c = mock.chi2(&vae.decode(&trial)?, vae.dw);
            if c < chi {
                (z, chi, lambda, improved) = (trial, c, (lambda * 0.3).max(1e-8), true);
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    Ok(z)
}

/// Solves the l×l system by Gaussian elimination with partial pivoting (None if singular).
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, l: usize) -> Option<Vec<f64>> {
    for c in 0..l {
        let p = (c..l).max_by(|&i, &j| a[i * l + c].abs().total_cmp(&a[j * l + c].abs()))?;
        if a[p * l + c].abs() < 1e-300 {
            return None;
        }
        for k in 0..l {
            a.swap(c * l + k, p * l + k);
        }
        b.swap(c, p);
        for r in c + 1..l {
            let f = a[r * l + c] / a[c * l + c];
            for k in c..l {
                a[r * l + k] -= f * a[c * l + k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; l];
    for c in (0..l).rev() {
        let s: f64 = (c + 1..l).map(|k| a[c * l + k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c * l + c];
    }
    Some(x)
}

/// The three reconstructions of every spectrum in `which` (rows of `spectra`, on `omega`).
pub fn compare(
    vae: &Vae,
    omega: &[f64],
    spectra: &[f64],
    which: &[usize],
    settings: &PriorSettings,
) -> Result<Vec<PriorRow>> {
    settings.validate()?;
    let (m, dw) = (vae.points, vae.dw);
    if omega.len() != m || ((omega[1] - omega[0]) - dw).abs() > 1e-9 * dw {
        return Err(Error::InvalidInput(format!(
            "the library's grid ({} points, spacing {}) is not the model's ({m}, {dw})",
            omega.len(),
            omega[1] - omega[0]
        )));
    }
    let weights = vec![dw; m];
    let flat = 1.0 / (dw * m as f64);
    let mut rows = Vec::new();
    for &k in which {
        let truth = &spectra[k * m..(k + 1) * m];
        let mock = Mock::new(omega, dw, truth, settings, k)?;
        let n = mock.gw.len() as f64;
        let row = |method, rho: &[f64]| PriorRow {
            spectrum: k,
            method,
            chi2: mock.chi2(rho, dw) / n,
            l1: rho
                .iter()
                .zip(truth)
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>()
                * dw,
            mse: rho
                .iter()
                .zip(truth)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                * dw,
        };
        let with_default = |default_model: Vec<f64>| {
            let opts = MemOptions {
                default_model,
                alpha: MemAlpha::Bryan,
            };
            mem(&mock.b, &weights, &mock.gw, &opts).map(|s| s.rho)
        };
        rows.push(row("mem", &with_default(vec![flat; m])?));
        let (_, decoded) = latent_fit(vae, &mock)?;
        rows.push(row("vae", &decoded));
        let top = decoded.iter().cloned().fold(0.0, f64::max);
        let default: Vec<f64> = decoded.iter().map(|&x| x.max(1e-6 * top)).collect();
        rows.push(row("mem-vae", &with_default(default)?));
    }
    Ok(rows)
}
