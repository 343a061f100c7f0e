//! Spectral functions from Euclidean correlators: G = K ρ solved for ρ(ω) by neural-network
//! representations trained through the autodiff tape, beside MEM, Tikhonov and TSVD — all through
//! one interface, [`reconstruct`].

pub mod aim;
pub mod band;
pub mod bench;
pub mod br;
pub mod classical;
pub mod data;
pub mod kernel;
pub mod linalg;
pub mod mock;
pub mod neural;
pub mod report;
pub mod vae;
pub mod vae_job;
pub mod vae_prior;

use std::time::Instant;

pub use band::{
    band_coverage, band_ratios, calibration_scale, reconstruct_with_band, widen, BandKind,
};
use classical::{AlphaRule, MemAlpha, MemOptions};
use data::Correlator;
use kernel::{kernel_matrix, KernelKind, OmegaGrid};
use linalg::Matrix;
use neural::{NnKind, NnOptions};

use crate::device::Device;
use crate::error::{Error, Result};

/// A reconstruction method.
#[derive(Clone, Debug)]
pub enum Method {
    /// Neural network, list or point-to-point representation.
    Neural(NnOptions),
    /// Maximum entropy (Bryan's algorithm); `default_model` is a constant m(ω) (fitted when `None`).
    Mem {
        /// α selection.
        alpha: MemAlpha,
        /// Constant default model.
        default_model: Option<f64>,
    },
    /// The Bayesian reconstruction of Burnier and Rothkopf ([`br`]) with a constant default model
    /// (fitted when `None`).
    Br {
        /// Constant default model.
        default_model: Option<f64>,
    },
    /// Tikhonov with α by GCV or the L-curve.
    Tikhonov(AlphaRule),
    /// Truncated SVD, cut by the discrepancy principle.
    Tsvd,
}

impl Method {
    /// `nn`, `nn-p2p`, `nn-p2p-signfree`, `mem`, `mem-classic`, `br`, `tikhonov`, `tikhonov-lcurve` or `tsvd`.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "nn" => Method::Neural(NnOptions::new(NnKind::List)),
            "nn-p2p" => Method::Neural(NnOptions::new(NnKind::PointToPoint { positive: true })),
            "nn-p2p-signfree" => Method::Neural(NnOptions::new(NnKind::PointToPoint { positive: false })),
            "mem" => Method::Mem { alpha: MemAlpha::Bryan, default_model: None },
            "mem-classic" => Method::Mem { alpha: MemAlpha::Classic, default_model: None },
            "br" => Method::Br { default_model: None },
            "tikhonov" => Method::Tikhonov(AlphaRule::Gcv),
            "tikhonov-lcurve" => Method::Tikhonov(AlphaRule::LCurve),
            "tsvd" => Method::Tsvd,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "unknown method '{name}': use nn, nn-p2p, nn-p2p-signfree, mem, mem-classic, br, tikhonov, tikhonov-lcurve, tsvd or all"
                )))
            }
        })
    }

    /// Short name.
    pub fn name(&self) -> String {
        match self {
            Method::Neural(o) => match o.kind {
                NnKind::List => "nn".into(),
                NnKind::PointToPoint { positive: true } => "nn-p2p".into(),
                NnKind::PointToPoint { positive: false } => "nn-p2p-signfree".into(),
            },
            Method::Mem {
                alpha: MemAlpha::Bryan,
                ..
            } => "mem".into(),
            Method::Mem {
                alpha: MemAlpha::Classic,
                ..
            } => "mem-classic".into(),
            Method::Br { .. } => "br".into(),
            Method::Tikhonov(AlphaRule::Gcv) => "tikhonov".into(),
            Method::Tikhonov(AlphaRule::LCurve) => "tikhonov-lcurve".into(),
            Method::Tsvd => "tsvd".into(),
        }
    }
}

/// The inverse problem: data, kernel and grid.
#[derive(Clone, Debug)]
pub struct Problem {
    /// The measured correlator.
    pub data: Correlator,
    /// The kernel.
    pub kind: KernelKind,
    /// The ω-grid.
    pub grid: OmegaGrid,
}

/// The lower and upper edge of an uncertainty band.
pub type Band = (Vec<f64>, Vec<f64>);

/// A regularisation parameter as chosen by a method, e.g. ("alpha", 1e-6) or ("cut", 12).
pub type Choice = (&'static str, f64);

/// The result of one method.
#[derive(Clone, Debug)]
pub struct Reconstruction {
    /// Method name.
    pub method: String,
    /// ω-grid.
    pub omega: Vec<f64>,
    /// ρ(ω).
    pub rho: Vec<f64>,
    /// Lower and upper edge of the uncertainty band, where the method gives one.
    pub band: Option<Band>,
    /// The data reproduced by ρ (A ρ).
    pub reproduced: Vec<f64>,
    /// χ² of the reproduced data.
    pub chi2: f64,
    /// χ²/N.
    pub chi2_per_point: f64,
    /// The regularisation chosen, e.g. ("alpha", 1e-6) or ("cut", 12).
    pub choice: Option<Choice>,
    /// Why the result should not be trusted, where the method itself knows (e.g. BR without a
    /// stationary point).
    pub warning: Option<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

fn chi2(p: &Problem, a: &Matrix, rho: &[f64]) -> Result<(Vec<f64>, f64)> {
    let rep = a.mul_vec(rho);
    let (aw, gw) = p.data.whiten(a)?;
    let r: Vec<f64> = aw
        .mul_vec(rho)
        .iter()
        .zip(&gw)
        .map(|(x, g)| x - g)
        .collect();
    Ok((rep, linalg::dot(&r, &r)))
}

/// ρ ± σ as the (lower, upper) band.
fn band_of(rho: &[f64], sd: &[f64]) -> Band {
    (
        rho.iter().zip(sd).map(|(r, s)| r - s).collect(),
        rho.iter().zip(sd).map(|(r, s)| r + s).collect(),
    )
}

/// The mean of several networks' spectra, with their standard deviation as the band.
fn restart_mean(rhos: &[Vec<f64>]) -> (Vec<f64>, Band) {
    let k = rhos.len() as f64;
    let nw = rhos.first().map_or(0, |r| r.len());
    let mean: Vec<f64> = (0..nw)
        .map(|j| rhos.iter().map(|x| x[j]).sum::<f64>() / k)
        .collect();
    let sd: Vec<f64> = (0..nw)
        .map(|j| {
            (rhos.iter().map(|x| (x[j] - mean[j]).powi(2)).sum::<f64>() / (k - 1.0).max(1.0)).sqrt()
        })
        .collect();
    let band = band_of(&mean, &sd);
    (mean, band)
}

/// What a BR result without a finite-α stationary point says (see [`br::br`]).
const BR_WITHOUT_STATIONARY_POINT: &str = "BR has no stationary point at finite alpha for these data: \
     they are too weak to hold rho away from the pole of the alpha-marginalised prior, so the result \
     is the default model. Use mem, or data with smaller errors";

/// Reconstructs ρ by `method`; `device` runs the neural methods.
pub fn reconstruct(p: &Problem, method: &Method, device: &Device) -> Result<Reconstruction> {
    p.data.validate()?;
    let start = Instant::now();
    let a = kernel_matrix(p.kind, &p.data.x, &p.grid)?;
    let (aw, gw) = p.data.whiten(&a)?;
    let mut warning = None;
    let (rho, band, choice) = match method {
        Method::Tikhonov(rule) => {
            let s = classical::tikhonov(&aw, &gw, *rule)?;
            let band = s.sigma.as_ref().map(|sd| band_of(&s.rho, sd));
            (s.rho, band, Some(s.choice))
        }
        Method::Tsvd => {
            let s = classical::tsvd(&aw, &gw)?;
            let band = s.sigma.as_ref().map(|sd| band_of(&s.rho, sd));
            (s.rho, band, Some(s.choice))
        }
        Method::Br { default_model } => {
            let m0 = default_model_of(*default_model, &aw, &gw)?;
            let s = br::br(&aw, &p.grid.weights, &gw, &vec![m0; p.grid.len()])?;
            if s.alpha.is_none() {
                warning = Some(BR_WITHOUT_STATIONARY_POINT.to_string());
            }
            (s.rho, None, s.alpha.map(|a| ("alpha", a)))
        }
        Method::Mem {
            alpha,
            default_model,
        } => {
            let m0 = default_model_of(*default_model, &aw, &gw)?;
            // B = A_w without the quadrature weights.
            let mut b = aw.clone();
            for i in 0..b.rows {
                for (j, w) in p.grid.weights.iter().enumerate() {
                    b.data[i * b.cols + j] /= w;
                }
            }
            let opts = MemOptions {
                default_model: vec![m0; p.grid.len()],
                alpha: *alpha,
            };
            let s = classical::mem(&b, &p.grid.weights, &gw, &opts)?;
            let band = s.sigma.as_ref().map(|sd| band_of(&s.rho, sd));
            (s.rho, band, Some(s.choice))
        }
        Method::Neural(opts) => {
            let (mean, band) = restart_mean(&neural::train(device, &aw, &gw, &p.grid, opts)?.rhos);
            (mean, Some(band), None)
        }
    };
    if rho.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite(format!(
            "{} produced a non-finite spectral function",
            method.name()
        )));
    }
    let (reproduced, c2) = chi2(p, &a, &rho)?;
    Ok(Reconstruction {
        method: method.name(),
        omega: p.grid.omega.clone(),
        rho,
        band,
        reproduced,
        chi2: c2,
        chi2_per_point: c2 / p.data.x.len() as f64,
        choice,
        warning,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Methods without a batched form (MEM, BR, the point-to-point networks): one data vector per
/// CPU thread at a time, each reconstruction running on its thread alone (nested parallel loops
/// run serially inside a pool task), so the results are those of the one-by-one order; on a GPU,
/// in order. `progress` hears the data vectors done.
fn one_by_one(
    template: &Problem,
    values: &[Vec<f64>],
    method: &Method,
    device: &Device,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Reconstruction>> {
    let alone = |v: &[f64]| {
        let data = Correlator {
            value: v.to_vec(),
            ..template.data.clone()
        };
        reconstruct(
            &Problem {
                data,
                ..template.clone()
            },
            method,
            device,
        )
    };
    let total = values.len() as u64;
    let Device::Cpu(cpu) = device else {
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            out.push(alone(v)?);
            progress(i as u64 + 1, total);
        }
        return Ok(out);
    };
    let mut out: Vec<Result<Reconstruction>> = values
        .iter()
        .map(|_| Err(Error::InvalidInput("not reconstructed".into())))
        .collect();
    let width = cpu.threads().max(1);
    for (b, slots) in out.chunks_mut(width).enumerate() {
        let first = b * width;
        cpu.for_heavy_chunks(1, slots, |i, chunk, _| {
            for (k, slot) in chunk.iter_mut().enumerate() {
                *slot = alone(&values[first + i + k]);
            }
        })?;
        let failed = slots.iter().any(Result::is_err);
        progress((first + slots.len()) as u64, total);
        if failed {
            break;
        }
    }
    // The first error is a real one: only slots after the failed round still hold the placeholder.
    out.into_iter().collect()
}

/// Reconstructs many data vectors measured at the same points with the same errors (e.g. bootstrap
/// samples of one correlator, given by `template`), in one batched run where the method allows:
/// the list networks train together ([`neural::train_list_batched`], one set of launches on the
/// GPU) and Tikhonov and TSVD share one SVD; other methods run one by one, a data vector per CPU
/// thread. `progress` hears (done, total): the networks' Adam steps and LM iterations, or the data
/// vectors done.
pub fn reconstruct_many(
    template: &Problem,
    values: &[Vec<f64>],
    method: &Method,
    device: &Device,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Reconstruction>> {
    template.data.validate()?;
    let start = Instant::now();
    let a = kernel_matrix(template.kind, &template.data.x, &template.grid)?;
    let (aw, _) = template.data.whiten(&a)?;
    let gws: Vec<Vec<f64>> = values
        .iter()
        .map(|v| template.data.whiten_values(v))
        .collect::<Result<_>>()?;
    let rhos: Vec<(Vec<f64>, Option<Band>, Option<Choice>)> = match method {
        Method::Neural(o) if o.kind == NnKind::List => {
            neural::train_list_batched(device, &aw, &gws, o, progress)?
                .iter()
                .map(|r| {
                    let (mean, band) = restart_mean(r);
                    (mean, Some(band), None)
                })
                .collect()
        }
        Method::Tikhonov(_) | Method::Tsvd => {
            let d = linalg::svd(&aw);
            gws.iter()
                .map(|g| {
                    let s = match method {
                        Method::Tikhonov(rule) => classical::tikhonov_svd(&d, g, *rule)?,
                        _ => classical::tsvd_svd(&d, g)?,
                    };
                    let band = s.sigma.as_ref().map(|sd| band_of(&s.rho, sd));
                    Ok((s.rho, band, Some(s.choice)))
                })
                .collect::<Result<_>>()?
        }
        _ => return one_by_one(template, values, method, device, progress),
    };
    let per = start.elapsed().as_secs_f64() / values.len().max(1) as f64;
    rhos.into_iter()
        .zip(values)
        .map(|((rho, band, choice), v)| {
            let data = Correlator {
                value: v.clone(),
                ..template.data.clone()
            };
            let (reproduced, c2) = chi2(
                &Problem {
                    data,
                    ..template.clone()
                },
                &a,
                &rho,
            )?;
            Ok(Reconstruction {
                method: method.name(),
                omega: template.grid.omega.clone(),
                rho,
                band,
                reproduced,
                chi2: c2,
                chi2_per_point: c2 / v.len() as f64,
                choice,
                warning: None,
                seconds: per,
            })
        })
        .collect()
}

/// The constant m₀ that best fits the data alone (least squares), floored at a small positive value.
/// The constant default model given, or fitted to the data ([`flat_default`]).
fn default_model_of(given: Option<f64>, aw: &Matrix, gw: &[f64]) -> Result<f64> {
    match given {
        Some(m) if m > 0.0 && m.is_finite() => Ok(m),
        Some(m) => Err(Error::InvalidInput(format!(
            "default model {m} must be positive"
        ))),
        None => Ok(flat_default(aw, gw)),
    }
}

pub(crate) fn flat_default(aw: &Matrix, gw: &[f64]) -> f64 {
    let col: Vec<f64> = (0..aw.rows).map(|i| aw.row(i).iter().sum()).collect();
    let m = linalg::dot(&col, gw) / linalg::dot(&col, &col).max(1e-300);
    if m > 0.0 && m.is_finite() {
        m
    } else {
        1e-3
    }
}

/// How close a reconstruction is to a known truth.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// ‖ρ̂ − ρ‖ in L²(dω).
    pub l2: f64,
    /// ‖ρ̂ − ρ‖ / ‖ρ‖.
    pub relative_l2: f64,
    /// Σⱼ (ρ̂ⱼ − ρⱼ)² (the unnormalised MSE of the benchmark paper).
    pub mse: f64,
    /// KL divergence of the normalised spectra (ρ/Σρ against ρ̂/Σρ̂, ρ̂ clipped at a tiny positive value).
    pub kl: f64,
    /// Peaks of the reconstruction: (position, full width at half maximum).
    pub peaks: Vec<(f64, f64)>,
    /// The fraction of ω-points where the band holds the truth, for a method with a band
    /// ([`band_coverage`]); every band here is ±1σ, nominally 68.3 %.
    pub coverage: Option<f64>,
}

/// Compares `rho` with `truth` on `grid`.
pub fn metrics(grid: &OmegaGrid, rho: &[f64], truth: &[f64]) -> Metrics {
    let l2 = grid
        .weights
        .iter()
        .zip(rho.iter().zip(truth))
        .map(|(w, (a, b))| w * (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm = grid
        .weights
        .iter()
        .zip(truth)
        .map(|(w, b)| w * b * b)
        .sum::<f64>()
        .sqrt();
    let mse = rho.iter().zip(truth).map(|(a, b)| (a - b).powi(2)).sum();
    let (sp, sq) = (
        truth.iter().map(|x| x.max(0.0)).sum::<f64>(),
        rho.iter().map(|x| x.max(1e-300)).sum::<f64>(),
    );
    let kl = truth
        .iter()
        .zip(rho)
        .filter(|(p, _)| **p > 0.0)
        .map(|(p, q)| (p / sp) * ((p / sp) / (q.max(1e-300) / sq)).ln())
        .sum();
    Metrics {
        l2,
        relative_l2: l2 / norm.max(1e-300),
        mse,
        kl,
        peaks: peaks(&grid.omega, rho),
        coverage: None,
    }
}

/// Local maxima above 10% of the global maximum, with their FWHM (linear interpolation).
pub fn peaks(omega: &[f64], rho: &[f64]) -> Vec<(f64, f64)> {
    let top = rho.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let n = rho.len();
    let mut out = Vec::new();
    for j in 1..n.saturating_sub(1) {
        if rho[j] > rho[j - 1] && rho[j] >= rho[j + 1] && rho[j] > 0.1 * top {
            let half = rho[j] / 2.0;
            let cross = |range: &mut dyn Iterator<Item = usize>| -> f64 {
                for k in range {
                    let (a, b) = if k < j { (k, k + 1) } else { (k, k - 1) };
                    if rho[a] <= half {
                        let t = (half - rho[a]) / (rho[b] - rho[a]);
                        return omega[a] + t * (omega[b] - omega[a]);
                    }
                }
                f64::NAN
            };
            let left = cross(&mut (0..j).rev());
            let right = cross(&mut (j + 1..n));
            out.push((omega[j], right - left));
        }
    }
    out
}
