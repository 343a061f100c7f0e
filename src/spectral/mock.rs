//! Mock spectral functions and seeded mock data.

use super::data::Correlator;
use super::kernel::{KernelKind, OmegaGrid};
use super::linalg::{cholesky, Matrix};
use crate::error::{Error, Result};
use crate::philox;

/// One peak of a mock spectral function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Peak {
    /// Breit–Wigner ρ(ω) = 4AΓω / ((M² + Γ² − ω²)² + 4Γ²ω²).
    BreitWigner {
        /// Amplitude A.
        a: f64,
        /// Mass M.
        m: f64,
        /// Width Γ.
        gamma: f64,
    },
    /// Gaussian A·exp(−(ω−μ)²/(2σ²)).
    Gaussian {
        /// Amplitude.
        a: f64,
        /// Centre.
        mu: f64,
        /// Width.
        sigma: f64,
    },
}

impl Peak {
    /// ρ(ω) of this peak.
    pub fn eval(&self, w: f64) -> f64 {
        match *self {
            Peak::BreitWigner { a, m, gamma } => {
                let d = m * m + gamma * gamma - w * w;
                4.0 * a * gamma * w / (d * d + 4.0 * gamma * gamma * w * w)
            }
            Peak::Gaussian { a, mu, sigma } => {
                a * (-(w - mu).powi(2) / (2.0 * sigma * sigma)).exp()
            }
        }
    }
}

/// A sum of peaks.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrum {
    /// The peaks.
    pub peaks: Vec<Peak>,
}

impl Spectrum {
    /// ρ(ω).
    pub fn eval(&self, w: f64) -> f64 {
        self.peaks.iter().map(|p| p.eval(w)).sum()
    }

    /// ρ on a grid.
    pub fn on(&self, grid: &OmegaGrid) -> Vec<f64> {
        grid.omega.iter().map(|&w| self.eval(w)).collect()
    }

    /// The built-in mocks: `bw1` (one Breit–Wigner, M = 2, Γ = 0.5), `bw2` (the Shi–Wang–Zhou
    /// benchmark 0.8·BW(2, 0.5) + 1.0·BW(5, 0.5)), `gauss2` (two Gaussians), `nonpositive`
    /// (a Breit–Wigner minus a smaller one: ρ changes sign).
    pub fn named(name: &str) -> Result<Self> {
        let bw = |a, m, gamma| Peak::BreitWigner { a, m, gamma };
        let peaks = match name {
            "bw1" => vec![bw(1.0, 2.0, 0.5)],
            "bw2" => vec![bw(0.8, 2.0, 0.5), bw(1.0, 5.0, 0.5)],
            "gauss2" => vec![
                Peak::Gaussian {
                    a: 0.6,
                    mu: 2.0,
                    sigma: 0.3,
                },
                Peak::Gaussian {
                    a: 0.4,
                    mu: 5.0,
                    sigma: 0.6,
                },
            ],
            "nonpositive" => vec![bw(1.0, 2.0, 0.5), bw(-0.4, 3.5, 0.5)],
            _ => {
                return Err(Error::InvalidInput(format!(
                    "unknown mock '{name}': use bw1, bw2, gauss2 or nonpositive"
                )))
            }
        };
        Ok(Spectrum { peaks })
    }

    /// ∫ |ρ| dω over [lo, hi] by the composite Simpson rule on `n` (even) intervals.
    pub fn abs_integral(&self, lo: f64, hi: f64, n: usize) -> f64 {
        let h = (hi - lo) / n as f64;
        (0..=n)
            .map(|i| {
                let w = if i == 0 || i == n {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                w * self.eval(lo + i as f64 * h).abs()
            })
            .sum::<f64>()
            * h
            / 3.0
    }
}

/// How the mock data's errors are set.
#[derive(Clone, Debug)]
pub enum Noise {
    /// σᵢ = r·|Gᵢ|.
    Relative(f64),
    /// σᵢ = s.
    Absolute(f64),
    /// σᵢ = r·Gᵢ·pᵢ/Δp, the Shi–Wang–Zhou benchmark's errors (Δp the data spacing).
    MomentumScaled(f64),
    /// Correlated noise with this covariance.
    Covariance(Matrix),
}

/// Exact data ∫K ρ dω on the points `x`, evaluated on a fine grid (independent of the reconstruction grid).
pub fn exact_data(kind: KernelKind, spectrum: &Spectrum, x: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    let n = 200_000;
    let h = (hi - lo) / n as f64;
    x.iter()
        .map(|&xi| {
            (0..=n)
                .map(|i| {
                    let w = lo + i as f64 * h;
                    let c = if i == 0 || i == n {
                        1.0
                    } else if i % 2 == 1 {
                        4.0
                    } else {
                        2.0
                    };
                    c * kind.eval(xi, w) * spectrum.eval(w)
                })
                .sum::<f64>()
                * h
                / 3.0
        })
        .collect()
}

/// Data G = A ρ_true (the same discretisation as the reconstruction) plus seeded Gaussian noise.
pub fn mock_data(
    a: &Matrix,
    truth: &[f64],
    x: &[f64],
    noise: &Noise,
    seed: u64,
) -> Result<Correlator> {
    let g = a.mul_vec(truth);
    let n = g.len();
    let mut z = vec![0.0; n];
    philox::fill_normals(&mut z, seed, 0, 0, 7);
    let (error, cov, noisy) = match noise {
        Noise::Covariance(c) => {
            let l = cholesky(c)?;
            let e: Vec<f64> = l.mul_vec(&z);
            (
                (0..n).map(|i| c.at(i, i).sqrt()).collect(),
                Some(c.clone()),
                g.iter().zip(&e).map(|(g, e)| g + e).collect(),
            )
        }
        _ => {
            let dp = if x.len() > 1 { x[1] - x[0] } else { 1.0 };
            let s: Vec<f64> = (0..n)
                .map(|i| match noise {
                    Noise::Relative(r) => r * g[i].abs(),
                    Noise::Absolute(s) => *s,
                    Noise::MomentumScaled(r) => r * g[i].abs() * x[i] / dp,
                    Noise::Covariance(_) => unreachable!("handled above"),
                })
                .collect();
            let v = g
                .iter()
                .zip(&s)
                .zip(&z)
                .map(|((g, s), z)| g + s * z)
                .collect();
            (s, None, v)
        }
    };
    let c = Correlator {
        x: x.to_vec(),
        value: noisy,
        error,
        cov,
    };
    c.validate()?;
    Ok(c)
}
