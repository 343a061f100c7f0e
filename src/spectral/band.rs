//! Uncertainty bands of reconstructions and how often they hold the truth.
//!
//! A regularised reconstruction errs by its noise (variance) and by its regulariser (bias); the
//! spread of restarts or of reconstructions from resampled data sees only the first, and on the
//! Shi–Wang–Zhou benchmark such ±1σ bands hold the truth at 5–40 % of the points instead of 68 %.
//! [`bootstrap_band`] estimates both: it treats the reconstruction ρ̂ as the truth, draws new data
//! A ρ̂ + noise with the data's covariance, reconstructs them with the same method, and takes the
//! root-mean-square distance of those reconstructions *from ρ̂* (bias and variance of the method at
//! a spectrum like ρ̂) as the band's half-width — the parametric bootstrap estimate of the mean
//! squared error (Efron and Tibshirani, An Introduction to the Bootstrap (1993), ch. 10).

use super::data::Correlator;
use super::kernel::kernel_matrix;
use super::linalg::cholesky;
use super::neural::NnKind;
use super::{reconstruct, reconstruct_many, Band, Method, Problem, Reconstruction};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::philox;
use std::time::Instant;

/// Philox stream of the bootstrap's noise (the mock data's is 7).
const STREAM_BAND: u32 = 12;

/// How a reconstruction's band is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BandKind {
    /// The method's own: the restarts' spread (networks), the posterior (MEM), the propagated
    /// noise (Tikhonov, TSVD); BR gives none.
    Native,
    /// [`bootstrap_band`] with this many resampled data vectors, keyed by `seed`.
    Bootstrap {
        /// Resampled data vectors (≥ 2).
        samples: usize,
        /// Key of their noise.
        seed: u64,
    },
}

impl BandKind {
    /// `native` or `bootstrap` (with `samples` and `seed`).
    pub fn from_name(name: &str, samples: usize, seed: u64) -> Result<Self> {
        match name {
            "native" => Ok(BandKind::Native),
            "bootstrap" if samples >= 2 => Ok(BandKind::Bootstrap { samples, seed }),
            "bootstrap" => Err(Error::InvalidInput(format!(
                "a bootstrap band needs at least 2 samples, not {samples}: raise --band-samples"
            ))),
            _ => Err(Error::InvalidInput(format!(
                "unknown band '{name}': use native or bootstrap"
            ))),
        }
    }

    /// The default for `method`: the bootstrap for the list network (its restarts agree with
    /// each other far better than with the truth), the method's own band otherwise.
    pub fn default_for(method: &Method, samples: usize, seed: u64) -> Self {
        match method {
            Method::Neural(o) if o.kind == NnKind::List => BandKind::Bootstrap { samples, seed },
            _ => BandKind::Native,
        }
    }
}

/// [`reconstruct`] with the band made as `kind` says.
pub fn reconstruct_with_band(
    p: &Problem,
    method: &Method,
    kind: BandKind,
    device: &Device,
) -> Result<Reconstruction> {
    let start = Instant::now();
    let mut r = reconstruct(p, method, device)?;
    if let BandKind::Bootstrap { samples, seed } = kind {
        r.band = Some(bootstrap_band(p, method, &r.rho, samples, seed, device)?);
        r.seconds = start.elapsed().as_secs_f64();
    }
    Ok(r)
}

/// ρ̂ ± the root-mean-square distance from ρ̂ of `method`'s reconstructions of `samples` data
/// vectors A ρ̂ + L z (C = LLᵀ the data's covariance, z standard normal from Philox keyed by
/// `seed`, one counter per sample); networks train one restart per sample (all in one batch for
/// the list network).
pub fn bootstrap_band(
    p: &Problem,
    method: &Method,
    rho_hat: &[f64],
    samples: usize,
    seed: u64,
    device: &Device,
) -> Result<Band> {
    if rho_hat.len() != p.grid.len() || samples < 2 {
        return Err(Error::InvalidInput(format!(
            "a bootstrap band needs rho on the {} grid points and >= 2 samples",
            p.grid.len()
        )));
    }
    let exact = kernel_matrix(p.kind, &p.data.x, &p.grid)?.mul_vec(rho_hat);
    let values = (0..samples)
        .map(|k| resampled(&p.data, &exact, seed, k as u32))
        .collect::<Result<Vec<_>>>()?;
    let mut one = method.clone();
    if let Method::Neural(o) = &mut one {
        o.restarts = 1;
    }
    let rs = reconstruct_many(p, &values, &one, device, &mut |_, _| {})?;
    let half: Vec<f64> = (0..rho_hat.len())
        .map(|j| {
            let ms = rs
                .iter()
                .map(|r| (r.rho[j] - rho_hat[j]).powi(2))
                .sum::<f64>();
            (ms / samples as f64).sqrt()
        })
        .collect();
    Ok((
        rho_hat.iter().zip(&half).map(|(r, h)| r - h).collect(),
        rho_hat.iter().zip(&half).map(|(r, h)| r + h).collect(),
    ))
}

/// `exact` plus one draw of the data's noise.
fn resampled(data: &Correlator, exact: &[f64], seed: u64, k: u32) -> Result<Vec<f64>> {
    let mut z = vec![0.0; exact.len()];
    philox::fill_normals(&mut z, seed, k, 0, STREAM_BAND);
    let noise = match &data.cov {
        Some(c) => cholesky(c)?.mul_vec(&z),
        None => z.iter().zip(&data.error).map(|(z, s)| z * s).collect(),
    };
    Ok(exact.iter().zip(&noise).map(|(e, n)| e + n).collect())
}

/// The fraction of points j with lo_j ≤ truth_j ≤ hi_j.
pub fn band_coverage((lo, hi): &Band, truth: &[f64]) -> f64 {
    let inside = lo
        .iter()
        .zip(hi)
        .zip(truth)
        .filter(|((l, h), t)| *l <= *t && *t <= *h)
        .count();
    inside as f64 / truth.len().max(1) as f64
}

/// The band with its half-widths about `rho` multiplied by `scale` (a calibration factor, e.g.
/// [`calibration_scale`] of mock draws).
pub fn widen((lo, hi): &Band, rho: &[f64], scale: f64) -> Band {
    (
        lo.iter()
            .zip(rho)
            .map(|(l, r)| r - scale * (r - l))
            .collect(),
        hi.iter()
            .zip(rho)
            .map(|(h, r)| r + scale * (h - r))
            .collect(),
    )
}

/// How far the truth lies from `rho` in units of the band's half-width on its side, point by
/// point (infinite where the band is empty and the truth elsewhere).
pub fn band_ratios((lo, hi): &Band, rho: &[f64], truth: &[f64]) -> Vec<f64> {
    rho.iter()
        .zip(lo.iter().zip(hi))
        .zip(truth)
        .map(|((r, (l, h)), t)| {
            let (dev, half) = if t >= r {
                (t - r, h - r)
            } else {
                (r - t, r - l)
            };
            match (dev, half) {
                (0.0, _) => 0.0,
                (_, w) if w <= 0.0 => f64::INFINITY,
                (d, w) => d / w,
            }
        })
        .collect()
}

/// The factor c by which half-widths must grow for a fraction `level` of the points behind
/// `ratios` (pooled [`band_ratios`] of mock draws) to lie inside: their `level` quantile.
/// Simulation-based calibration: find c on mocks like the data, then widen the data's band by it.
pub fn calibration_scale(ratios: &[f64], level: f64) -> f64 {
    let mut r: Vec<f64> = ratios.iter().copied().filter(|x| !x.is_nan()).collect();
    if r.is_empty() {
        return f64::NAN;
    }
    r.sort_by(f64::total_cmp);
    let k = ((level * r.len() as f64).ceil() as usize).clamp(1, r.len());
    r[k - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectral::kernel::{KernelKind, OmegaGrid};
    use crate::spectral::linalg::solve;

    /// Known answer: on a well-posed problem (three ω points, 81 times, noise far below the
    /// signal) TSVD keeps every component and is the unbiased least-squares estimator, so the
    /// bootstrap half-widths are its standard errors √((AᵀC⁻¹A)⁻¹)ⱼⱼ, to the 1/√(2K) sampling
    /// error of K samples.
    #[test]
    fn the_bootstrap_band_of_least_squares_is_its_standard_error() {
        let grid = OmegaGrid::from_points(vec![0.5, 1.0, 1.5]).unwrap();
        let x: Vec<f64> = (0..81).map(|i| i as f64 * 0.05).collect();
        let kind = KernelKind::Exponential;
        let a = kernel_matrix(kind, &x, &grid).unwrap();
        let truth = [1.0, 0.5, 0.25];
        let sigma = 1e-3;
        let p = Problem {
            data: Correlator {
                value: a.mul_vec(&truth),
                error: vec![sigma; x.len()],
                x,
                cov: None,
            },
            kind,
            grid,
        };
        let device = Device::Cpu(crate::device::CpuDevice::with_threads(2));
        let samples = 400;
        let (lo, hi) = bootstrap_band(&p, &Method::Tsvd, &truth, samples, 5, &device).unwrap();
        let mut normal = a.t().matmul(&a);
        normal.data.iter_mut().for_each(|v| *v /= sigma * sigma);
        for j in 0..3 {
            let mut e = vec![0.0; 3];
            e[j] = 1.0;
            let sd = solve(&normal, &e).unwrap()[j].sqrt();
            let half = 0.5 * (hi[j] - lo[j]);
            let tol = 4.0 / (2.0 * samples as f64).sqrt();
            assert!((half / sd - 1.0).abs() < tol, "point {j}: {half} vs {sd}");
        }
    }

    /// `n` standard normals (seed `seed`) and the band ± `half` about them.
    fn noise_band(n: usize, seed: u64, half: f64) -> (Vec<f64>, Band) {
        let mut noise = vec![0.0; n];
        crate::philox::fill_normals(&mut noise, seed, 0, 0, 0);
        let band = (
            noise.iter().map(|z| z - half).collect(),
            noise.iter().map(|z| z + half).collect(),
        );
        (noise, band)
    }

    /// Coverage on a case with a known answer: a ±1σ band around Gaussian noise covers the
    /// truth at 68.3 % of the points (to the binomial error), and exact counts on a small case.
    #[test]
    fn band_coverage_counts_points_inside() {
        let truth = [1.0, 2.0, 3.0, 4.0];
        let band = (vec![0.5, 2.1, 2.0, 4.0], vec![1.5, 2.5, 3.0, 5.0]);
        assert_eq!(band_coverage(&band, &truth), 0.75);
        let n = 20_000;
        let (_, band) = noise_band(n, 3, 1.0);
        let c = band_coverage(&band, &vec![0.0; n]);
        let sd = (0.6827 * 0.3173 / n as f64).sqrt();
        assert!((c - 0.6827).abs() < 4.0 * sd, "{c}");
    }

    /// A band half as wide as the noise needs the factor 2 for 68 %; widened by it, it covers 68 %.
    #[test]
    fn calibration_finds_the_factor_that_restores_coverage() {
        let n = 20_000;
        let (noise, narrow) = noise_band(n, 4, 0.5);
        let truth = vec![0.0; n];
        let c = calibration_scale(&band_ratios(&narrow, &noise, &truth), 0.6827);
        assert!((c - 2.0).abs() < 0.05, "{c}");
        let cover = band_coverage(&widen(&narrow, &noise, c), &truth);
        assert!((cover - 0.6827).abs() < 1e-3, "{cover}");
        assert_eq!(
            band_ratios(&(vec![1.0], vec![3.0]), &[2.0], &[2.5]),
            vec![0.5]
        );
        assert_eq!(
            band_ratios(&(vec![2.0], vec![2.0]), &[2.0], &[2.5]),
            vec![f64::INFINITY]
        );
    }
}
