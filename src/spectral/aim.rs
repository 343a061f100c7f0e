//! Spectral functions of the single-impurity Anderson model from second-order perturbation
//! theory in U around Hartree–Fock: the training library of the spectral-function VAE.
//!
//! H = Σ_σ ε_d n_σ + U n_↑ n_↓ + hybridisation with a bath, whose effect on the impurity is
//! Δ(ω) = −iΓ (a wide flat band) or Δ(ω) = ΓD/(ω + iD) (a Lorentzian band of half-width D, the
//! same Γ = πV²ρ_c(0)). The Hartree level ε_H = ε_d + U n_σ defines G₀(ω) = 1/(ω − ε_H − Δ(ω));
//! n_σ is made self-consistent with the occupation of the final second-order G (charge
//! consistency: with n_σ from G₀ alone, plain Hartree–Fock plus second order violates it away
//! from half filling, e.g. n_d = 1.04 against 2n_σ = 0.59 at U = 8Γ, ε_d = −0.2U). The
//! second-order self-energy with the propagators G₀ (Yamada, Prog. Theor. Phys. 53, 970 (1975); Horvatić and Zlatić,
//! phys. stat. sol. (b) 111, 65 (1982)):
//!
//! Im Σ(ω) = −πU² ∫dε₁dε₂dε₃ ρ₀(ε₁)ρ₀(ε₂)ρ₀(ε₃) δ(ω + ε₃ − ε₁ − ε₂)
//!           × [f(−ε₁)f(−ε₂)f(ε₃) + f(ε₁)f(ε₂)f(−ε₃)],
//!
//! two triple convolutions (FFTs, rustfft), and Re Σ by Kramers–Kronig (one more convolution with
//! the principal-value kernel 1/ω). Then G = 1/(ω − ε_HF − Δ − Σ) and ρ = −Im G/π.
//!
//! The treatment is exact to O(U²): in the particle–hole symmetric case it gives the Hubbard
//! side bands and the central peak, with the quasi-particle weight
//! Z = 1/(1 + (3 − π²/4)u²), u = U/(πΓ), to that order; its Kondo scale is algebraic in U, not
//! exponential, and away from half filling it is the plain (not the interpolated, "IPT")
//! second order.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::error::{Error, Result};

/// The bath's hybridisation function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bath {
    /// A band much wider than every other scale: Δ(ω) = −iΓ.
    Flat,
    /// A Lorentzian band of half-width `width`: Δ(ω) = Γ·width/(ω + i·width).
    Lorentzian {
        /// Half-width D of the band.
        width: f64,
    },
}

/// One impurity: interaction, level, hybridisation strength Γ, temperature and bath.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impurity {
    /// On-site interaction U.
    pub u: f64,
    /// Impurity level ε_d.
    pub eps_d: f64,
    /// Hybridisation strength Γ (the half-width of the U = 0 resonance for a flat band).
    pub gamma: f64,
    /// Temperature T (> 0).
    pub temperature: f64,
    /// The bath.
    pub bath: Bath,
}

/// The frequency grid: `points` values ω_j = (j − points/2)·h, h = 2·half_width/points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrequencyGrid {
    /// Number of points (even).
    pub points: usize,
    /// ω runs over [−half_width, half_width).
    pub half_width: f64,
}

impl FrequencyGrid {
    /// The grid spacing.
    pub fn step(&self) -> f64 {
        2.0 * self.half_width / self.points as f64
    }

    /// The frequencies.
    pub fn omegas(&self) -> Vec<f64> {
        let h = self.step();
        (0..self.points)
            .map(|j| (j as f64 - (self.points / 2) as f64) * h)
            .collect()
    }
}

/// The solution for one impurity.
#[derive(Clone, Debug)]
pub struct ImpuritySolution {
    /// The frequencies of the grid.
    pub omega: Vec<f64>,
    /// ρ(ω) = −Im G(ω)/π per spin.
    pub rho: Vec<f64>,
    /// Re Σ⁽²⁾(ω) and Im Σ⁽²⁾(ω).
    pub sigma: Vec<Complex<f64>>,
    /// The Hartree level ε_d + U n_σ (n_σ = n_d/2, self-consistent).
    pub eps_hf: f64,
    /// The occupation per spin of the Hartree propagator G₀ that Σ⁽²⁾ is built on.
    pub n_hf: f64,
    /// The occupation n_d = 2∫f ρ (both spins) of the second-order spectral function.
    pub n_d: f64,
    /// The quasi-particle weight Z = 1/(1 − ∂Re Σ/∂ω) at ω = 0.
    pub z: f64,
    /// ∫ρ dω including the estimated tails beyond the grid (1 for a causal solution).
    pub weight: f64,
}

impl Impurity {
    /// Refuses non-finite or non-positive Γ, T or band width, negative U, and a grid that does not
    /// resolve the problem's scales.
    pub fn validate(&self, grid: &FrequencyGrid) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        let finite = [self.u, self.eps_d, self.gamma, self.temperature]
            .iter()
            .all(|x| x.is_finite());
        if !finite || self.gamma <= 0.0 || self.temperature <= 0.0 || self.u < 0.0 {
            return bad(format!(
                "impurity U = {}, eps_d = {}, Gamma = {}, T = {}: need finite U ≥ 0, Γ > 0, T > 0",
                self.u, self.eps_d, self.gamma, self.temperature
            ));
        }
        if let Bath::Lorentzian { width } = self.bath {
            if !(width.is_finite() && width > 0.0) {
                return bad(format!("bath width {width} must be positive"));
            }
        }
        let scale = self.eps_d.abs() + self.u + 10.0 * self.gamma;
        if grid.points < 64 || !grid.points.is_power_of_two() || grid.half_width < 2.0 * scale {
            return bad(format!(
                "frequency grid of {} points over ±{}: need a power of two ≥ 64 points and a \
                 half-width ≥ 2(|ε_d| + U + 10Γ) = {}",
                grid.points,
                grid.half_width,
                2.0 * scale
            ));
        }
        if grid.step() > self.gamma / 4.0 {
            return bad(format!(
                "grid step {} does not resolve Γ = {}: use more points",
                grid.step(),
                self.gamma
            ));
        }
        Ok(())
    }

    /// The hybridisation Δ(ω).
    fn delta(&self, w: f64) -> Complex<f64> {
        match self.bath {
            Bath::Flat => Complex::new(0.0, -self.gamma),
            Bath::Lorentzian { width } => {
                Complex::new(self.gamma * width, 0.0) / Complex::new(w, width)
            }
        }
    }

    /// The Fermi function.
    fn fermi(&self, w: f64) -> f64 {
        0.5 * (1.0 - (0.5 * w / self.temperature).tanh())
    }

    /// ρ(ω) of G = 1/(ω − level − Δ(ω) − σ) on the grid.
    fn spectral(&self, omega: &[f64], level: f64, sigma: &[Complex<f64>]) -> Vec<f64> {
        omega
            .iter()
            .zip(sigma)
            .map(|(&w, &s)| {
                let g = Complex::new(1.0, 0.0) / (Complex::new(w - level, 0.0) - self.delta(w) - s);
                (-g.im / std::f64::consts::PI).max(0.0)
            })
            .collect()
    }

    /// ∫f(ω)ρ(ω)dω = ½ − ½∫tanh(ω/2T)ρ(ω)dω (ρ has unit weight), the integral over the grid's
    /// symmetric part (ω_1 … ω_{n−1}) plus the tails beyond it estimated from ρ's 1/ω² decay, so
    /// that a particle–hole symmetric ρ gives exactly ½.
    fn occupation(&self, omega: &[f64], rho: &[f64], h: f64) -> f64 {
        let n = omega.len();
        let inside: f64 = omega[1..]
            .iter()
            .zip(&rho[1..])
            .map(|(&w, &r)| (0.5 * w / self.temperature).tanh() * r)
            .sum::<f64>()
            * h;
        let (below, above) = (rho[1] * omega[1].abs(), rho[n - 1] * omega[n - 1].abs());
        0.5 - 0.5 * (inside + above - below)
    }

    /// The Hartree–Fock occupation per spin: the root of n_occ(G₀(ε_d + U n)) − n, which
    /// decreases in n.
    fn hartree_fock(&self, omega: &[f64], h: f64) -> f64 {
        let zero = vec![Complex::new(0.0, 0.0); omega.len()];
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..60 {
            let n = 0.5 * (lo + hi);
            let rho = self.spectral(omega, self.eps_d + self.u * n, &zero);
            if self.occupation(omega, &rho, h) > n {
                lo = n;
            } else {
                hi = n;
            }
        }
        0.5 * (lo + hi)
    }

    /// The second-order solution on `grid`.
    pub fn solve(&self, grid: &FrequencyGrid) -> Result<ImpuritySolution> {
        self.validate(grid)?;
        let omega = grid.omegas();
        let h = grid.step();
        let zero = vec![Complex::new(0.0, 0.0); omega.len()];
        // The Hartree level ε_d + U n with n the occupation of the second-order G built on it:
        // n − n_occ decreases in n; bisect on [0, 1].
        let conv = std::cell::RefCell::new(Convolver::new(4 * omega.len()));
        let at = |n: f64| {
            let level = self.eps_d + self.u * n;
            let rho0 = self.spectral(&omega, level, &zero);
            let sigma = self.second_order(&omega, &rho0, h, &mut conv.borrow_mut());
            let rho = self.spectral(&omega, level, &sigma);
            (level, rho0, sigma, rho)
        };
        let excess = |n: f64| {
            let (_, _, _, rho) = at(n);
            self.occupation(&omega, &rho, h) - n
        };
        let n = root_near(excess, self.hartree_fock(&omega, h));
        let (eps_hf, rho0, sigma, rho) = at(n);
        let n_hf = self.occupation(&omega, &rho0, h);
        let mid = omega.len() / 2;
        let slope = (sigma[mid + 1].re - sigma[mid - 1].re) / (2.0 * h);
        let weight = rho.iter().sum::<f64>() * h
            + rho[0] * omega[0].abs()
            + rho[omega.len() - 1] * omega[omega.len() - 1].abs();
        Ok(ImpuritySolution {
            n_d: 2.0 * self.occupation(&omega, &rho, h),
            z: 1.0 / (1.0 - slope),
            weight,
            omega,
            rho,
            sigma,
            eps_hf,
            n_hf,
        })
    }

    /// Σ⁽²⁾(ω) from the HF spectral function ρ₀ (module documentation).
    fn second_order(
        &self,
        omega: &[f64],
        rho0: &[f64],
        h: f64,
        conv: &mut Convolver,
    ) -> Vec<Complex<f64>> {
        let n = omega.len();
        // Only ω_1 … ω_{n−1}, which are symmetric about 0, so that particle–hole symmetry is exact
        // on the grid (ω_0 has no partner).
        let part = |sign: f64| -> Vec<f64> {
            let mut v: Vec<f64> = omega
                .iter()
                .zip(rho0)
                .map(|(&w, &r)| r * self.fermi(sign * w))
                .collect();
            v[0] = 0.0;
            v
        };
        let (empty, filled) = (part(-1.0), part(1.0));
        // g(ω) ↦ g(−ω) on the grid: ω_{n−j} = −ω_j (j = 0 has no partner).
        let reflect = |g: &[f64]| {
            (0..n)
                .map(|j| if j == 0 { 0.0 } else { g[n - j] })
                .collect::<Vec<_>>()
        };
        // (a ∗ b ∗ c)(ω_j) sits at index j + n of the full linear convolution of three grids.
        let triple = |conv: &mut Convolver, a: &[f64], b: &[f64], c: &[f64]| -> Vec<f64> {
            let ab = conv.linear(a, b, h);
            let abc = conv.linear(&ab, c, h);
            abc[n..2 * n].to_vec()
        };
        let particles = triple(conv, &empty, &empty, &reflect(&filled));
        let holes = triple(conv, &filled, &filled, &reflect(&empty));
        let pi = std::f64::consts::PI;
        let mut im: Vec<f64> = particles
            .iter()
            .zip(&holes)
            .map(|(p, q)| -pi * self.u * self.u * (p + q))
            .collect();
        im[0] = 0.0;
        // Re Σ(ω) = −(1/π) ∫ Im Σ(ω′)/(ω − ω′) dω′, the principal value by a kernel zero at 0.
        let kernel: Vec<f64> = (0..2 * n)
            .map(|k| {
                let x = (k as f64 - n as f64) * h;
                if k == n {
                    0.0
                } else {
                    1.0 / x
                }
            })
            .collect();
        let hilbert = conv.linear(&im, &kernel, h);
        // im is on offset −n/2, the kernel on offset −n: ω_j at index j + n.
        (0..n)
            .map(|j| Complex::new(-hilbert[j + n] / pi, im[j]))
            .collect()
    }
}

/// Names of the physical parameters stored with each spectrum of a [`Library`].
pub const PARAM_NAMES: [&str; 5] = ["u_over_gamma", "eps_d_over_u", "n_d", "z", "mean_omega"];

/// What a [`Library`] spans: every (U/Γ, ε_d/U) pair of the two lists, in units of Γ.
#[derive(Clone, Debug, PartialEq)]
pub struct LibrarySpec {
    /// The values of U/Γ.
    pub u: Vec<f64>,
    /// The values of ε_d/U (−1/2: particle–hole symmetric).
    pub eps_ratio: Vec<f64>,
    /// Temperature T/Γ.
    pub temperature: f64,
    /// The bath (its width in units of Γ).
    pub bath: Bath,
    /// Output points, on [−half_width, half_width] (ends included).
    pub points: usize,
    /// Output range in units of Γ.
    pub half_width: f64,
}

/// Normalised spectral functions on one grid with the parameters of each.
#[derive(Clone, Debug)]
pub struct Library {
    /// The output frequencies (units of Γ).
    pub omega: Vec<f64>,
    /// `[spectrum][ω]`, each with Σ ρ Δω = 1 on the grid.
    pub spectra: Vec<f64>,
    /// `[spectrum][PARAM_NAMES]`.
    pub params: Vec<f64>,
}

impl Library {
    /// Number of spectra.
    pub fn len(&self) -> usize {
        self.params.len() / PARAM_NAMES.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

/// The spectra of every impurity of `spec`, solved with U = 0 excluded (U/Γ > 0 required).
pub fn library(spec: &LibrarySpec) -> Result<Library> {
    if spec.u.is_empty()
        || spec.eps_ratio.is_empty()
        || spec.u.iter().any(|&u| !(u.is_finite() && u > 0.0))
        || spec.eps_ratio.iter().any(|e| !e.is_finite())
    {
        return Err(Error::InvalidInput(
            "the library needs positive finite U/Γ values and finite ε_d/U values".into(),
        ));
    }
    if spec.points < 8 || !(spec.half_width.is_finite() && spec.half_width > 0.0) {
        return Err(Error::InvalidInput(format!(
            "output grid of {} points over ±{}: need at least 8 points and a positive range",
            spec.points, spec.half_width
        )));
    }
    let omega: Vec<f64> = (0..spec.points)
        .map(|j| spec.half_width * (2.0 * j as f64 / (spec.points - 1) as f64 - 1.0))
        .collect();
    let dw = omega[1] - omega[0];
    let pairs: Vec<(f64, f64)> = spec
        .u
        .iter()
        .flat_map(|&u| spec.eps_ratio.iter().map(move |&r| (u, r)))
        .collect();
    // One row per impurity: its spectrum, then its parameters; rows solved in parallel.
    let width = omega.len() + PARAM_NAMES.len();
    let mut rows = vec![0.0; pairs.len() * width];
    let failed = std::sync::Mutex::new(None);
    crate::device::CpuDevice::new().for_heavy_chunks(width, &mut rows, |first, part, _| {
        for (k, row) in part.chunks_mut(width).enumerate() {
            let (u, r) = pairs[first + k];
            match library_row(spec, &omega, dw, u, r) {
                Ok(v) => row.copy_from_slice(&v),
                Err(e) => *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
            }
        }
    })?;
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let m = omega.len();
    Ok(Library {
        spectra: rows.chunks(width).flat_map(|r| r[..m].to_vec()).collect(),
        params: rows.chunks(width).flat_map(|r| r[m..].to_vec()).collect(),
        omega,
    })
}

/// One impurity's normalised spectrum on `omega` followed by its [`PARAM_NAMES`].
fn library_row(spec: &LibrarySpec, omega: &[f64], dw: f64, u: f64, r: f64) -> Result<Vec<f64>> {
    let imp = Impurity {
        u,
        eps_d: r * u,
        gamma: 1.0,
        temperature: spec.temperature,
        bath: spec.bath,
    };
    let scale = 2.0 * (imp.eps_d.abs() + u + 10.0);
    let grid = FrequencyGrid {
        points: 1 << 14,
        half_width: scale.max(80.0).max(spec.half_width),
    };
    let s = imp.solve(&grid)?;
    let mut rho: Vec<f64> = omega
        .iter()
        .map(|&w| interpolate(&s.omega, &s.rho, w))
        .collect();
    let norm = rho.iter().sum::<f64>() * dw;
    rho.iter_mut().for_each(|x| *x /= norm);
    let mean = omega.iter().zip(&rho).map(|(w, x)| w * x).sum::<f64>() * dw;
    rho.extend([u, r, s.n_d, s.z, mean]);
    Ok(rho)
}

/// y(x) by linear interpolation on the increasing grid `xs` (0 outside it).
fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    let i = xs.partition_point(|&v| v <= x);
    if i == 0 || i == xs.len() {
        return 0.0;
    }
    let t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
    ys[i - 1] + t * (ys[i] - ys[i - 1])
}

/// A root of `f` on [0, 1] nearest `start` (within a factor of two): brackets of growing
/// half-width around `start` until `f` changes sign on one side, then bisection. The
/// second-order charge self-consistency can have three roots at strong coupling, the outer two
/// breaking particle–hole symmetry; this keeps the one continuously connected to Hartree–Fock
/// (at particle–hole symmetry, n = ½ itself, whichever way f crosses zero there).
fn root_near(f: impl Fn(f64) -> f64, start: f64) -> f64 {
    let f0 = f(start);
    if f0 == 0.0 {
        return start;
    }
    let changes = |x: f64| f(x).signum() != f0.signum();
    let mut step = 1e-3;
    let (mut a, mut b) = loop {
        let (lo, hi) = ((start - step).max(0.0), (start + step).min(1.0));
        if changes(lo) {
            break (lo, start);
        }
        if changes(hi) {
            break (start, hi);
        }
        if lo == 0.0 && hi == 1.0 {
            return start;
        }
        step *= 2.0;
    };
    let fa = f(a).signum();
    for _ in 0..34 {
        let m = 0.5 * (a + b);
        if f(m).signum() == fa {
            a = m;
        } else {
            b = m;
        }
    }
    0.5 * (a + b)
}

/// Linear convolutions by FFT, planned once for a padded length.
struct Convolver {
    len: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
    /// The two padded transforms and the transforms' scratch, reused by every convolution.
    fa: Vec<Complex<f64>>,
    fb: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
}

impl Convolver {
    fn new(len: usize) -> Self {
        let len = len.next_power_of_two();
        let mut planner = FftPlanner::new();
        let (forward, inverse) = (planner.plan_fft_forward(len), planner.plan_fft_inverse(len));
        let scratch = forward
            .get_inplace_scratch_len()
            .max(inverse.get_inplace_scratch_len());
        let zero = Complex::new(0.0, 0.0);
        Convolver {
            len,
            forward,
            inverse,
            fa: vec![zero; len],
            fb: vec![zero; len],
            scratch: vec![zero; scratch],
        }
    }

    /// c[k] = h Σ_i a[i] b[k − i], k < a.len() + b.len() − 1 (which must fit the plan).
    fn linear(&mut self, a: &[f64], b: &[f64], h: f64) -> Vec<f64> {
        let out = a.len() + b.len() - 1;
        debug_assert!(out <= self.len);
        let pad = |x: &[f64], v: &mut Vec<Complex<f64>>| {
            v.clear();
            v.extend(x.iter().map(|&r| Complex::new(r, 0.0)));
            v.resize(self.len, Complex::new(0.0, 0.0));
        };
        pad(a, &mut self.fa);
        pad(b, &mut self.fb);
        self.forward
            .process_with_scratch(&mut self.fa, &mut self.scratch);
        self.forward
            .process_with_scratch(&mut self.fb, &mut self.scratch);
        for (x, y) in self.fa.iter_mut().zip(&self.fb) {
            *x *= y;
        }
        self.inverse
            .process_with_scratch(&mut self.fa, &mut self.scratch);
        let scale = h / self.len as f64;
        self.fa[..out].iter().map(|c| c.re * scale).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> FrequencyGrid {
        FrequencyGrid {
            points: 1 << 14,
            half_width: 80.0,
        }
    }

    fn symmetric(u: f64) -> Impurity {
        Impurity {
            u,
            eps_d: -u / 2.0,
            gamma: 1.0,
            temperature: 0.002,
            bath: Bath::Flat,
        }
    }

    #[test]
    fn the_noninteracting_level_is_a_lorentzian() {
        let imp = Impurity {
            u: 0.0,
            eps_d: 0.7,
            ..symmetric(0.0)
        };
        let s = imp.solve(&grid()).unwrap();
        for (&w, &r) in s.omega.iter().zip(&s.rho).step_by(97) {
            let want = 1.0 / std::f64::consts::PI / ((w - 0.7).powi(2) + 1.0);
            assert!((r - want).abs() < 1e-12, "{w}: {r} vs {want}");
        }
        // n = 1/2 − atan(ε/Γ)/π per spin at T → 0.
        let n = 0.5 - (0.7f64).atan() / std::f64::consts::PI;
        assert!((s.n_d - 2.0 * n).abs() < 2e-3, "{} vs {}", s.n_d, 2.0 * n);
        assert!((s.weight - 1.0).abs() < 1e-3);
    }

    /// Particle–hole symmetry: n = 1, ε_HF = 0, ρ(0) = 1/(πΓ) (Friedel), and Yamada's O(u²)
    /// quasi-particle weight and Im Σ(ω) ≈ −U²(ω² + π²T²)/(2π²Γ³).
    #[test]
    fn the_symmetric_model_has_yamadas_low_energy_limit() {
        for u in [0.5, 1.0, 2.0] {
            let s = symmetric(u).solve(&grid()).unwrap();
            assert!(s.eps_hf.abs() < 1e-5, "u = {u}: ε_HF = {}", s.eps_hf);
            assert!((s.n_d - 1.0).abs() < 2e-3, "u = {u}: n_d = {}", s.n_d);
            let mid = s.omega.len() / 2;
            let pi = std::f64::consts::PI;
            assert!(
                (s.rho[mid] * pi - 1.0).abs() < 2e-3,
                "u = {u}: ρ(0) = {}",
                s.rho[mid]
            );
            let uu = u / pi;
            let z = 1.0 / (1.0 + (3.0 - pi * pi / 4.0) * uu * uu);
            assert!(
                (s.z - z).abs() < 3e-3 * (1.0 + u * u),
                "u = {u}: Z {} vs {z}",
                s.z
            );
            let w = s.omega[mid + 20];
            let want = -u * u * (w * w + pi * pi * 0.002f64.powi(2)) / (2.0 * pi * pi);
            let got = s.sigma[mid + 20].im;
            assert!(
                (got - want).abs() < 0.05 * want.abs(),
                "u = {u}: Im Σ({w}) {got} vs {want}"
            );
        }
    }

    /// The spectral weight of Σ⁽²⁾ is U² n₀(1 − n₀) of the propagator it is built on, ρ is normalised
    /// and causal, for symmetric, asymmetric and Lorentzian-bath impurities.
    #[test]
    fn sum_rules_hold() {
        let cases = [
            symmetric(3.0),
            Impurity {
                eps_d: -0.8,
                ..symmetric(2.5)
            },
            Impurity {
                eps_d: -1.5,
                bath: Bath::Lorentzian { width: 6.0 },
                ..symmetric(3.0)
            },
        ];
        for imp in cases {
            let s = imp.solve(&grid()).unwrap();
            let h = grid().step();
            // On the grid, plus the 1/ω² tails beyond it.
            let n = s.omega.len();
            let tails = (s.sigma[1].im + s.sigma[n - 1].im) * s.omega[n - 1];
            let weight =
                -(s.sigma.iter().map(|c| c.im).sum::<f64>() * h + tails) / std::f64::consts::PI;
            let want = imp.u * imp.u * s.n_hf * (1.0 - s.n_hf);
            assert!(
                (weight - want).abs() < 0.01 * want,
                "{imp:?}: {weight} vs {want}"
            );
            assert!((s.weight - 1.0).abs() < 2e-3, "{imp:?}: ∫ρ = {}", s.weight);
            assert!(s.sigma.iter().all(|c| c.im <= 1e-12), "{imp:?}: Im Σ > 0");
        }
    }

    #[test]
    fn a_library_is_normalised_and_symmetric_at_half_filling() {
        let spec = LibrarySpec {
            u: vec![1.0, 8.0],
            eps_ratio: vec![-0.5, -0.2],
            temperature: 0.01,
            bath: Bath::Flat,
            points: 101,
            half_width: 10.0,
        };
        let lib = library(&spec).unwrap();
        assert_eq!(lib.len(), 4);
        let m = lib.omega.len();
        for (k, rho) in lib.spectra.chunks(m).enumerate() {
            let w = rho.iter().sum::<f64>() * (lib.omega[1] - lib.omega[0]);
            assert!((w - 1.0).abs() < 1e-12 && rho.iter().all(|&x| x >= 0.0));
            let p = &lib.params[k * PARAM_NAMES.len()..(k + 1) * PARAM_NAMES.len()];
            if p[1] == -0.5 {
                // ρ(ω) = ρ(−ω), n_d = 1, ⟨ω⟩ = 0.
                assert!(
                    (0..m).all(|j| (rho[j] - rho[m - 1 - j]).abs() < 1e-6),
                    "{p:?}"
                );
                assert!((p[2] - 1.0).abs() < 2e-3 && p[4].abs() < 1e-6, "{p:?}");
            } else {
                // Level above the middle: less than half filled, weight shifted up.
                assert!(p[2] < 1.0 && p[4] > 0.0, "{p:?}");
            }
        }
        // U = 8Γ: Hubbard bands near ±U/2 beside a central peak.
        let rho = &lib.spectra[2 * m..3 * m];
        let at = |w: f64| rho[((w + 10.0) / 0.2).round() as usize];
        assert!(at(4.0) > at(2.4) && at(0.0) > at(2.4), "{:?}", &rho[50..81]);
    }

    #[test]
    fn bad_impurities_and_grids_are_refused() {
        let g = grid();
        assert!(Impurity {
            gamma: 0.0,
            ..symmetric(1.0)
        }
        .solve(&g)
        .is_err());
        assert!(Impurity {
            temperature: f64::NAN,
            ..symmetric(1.0)
        }
        .solve(&g)
        .is_err());
        let coarse = FrequencyGrid {
            points: 64,
            half_width: 80.0,
        };
        assert!(symmetric(1.0)
            .solve(&coarse)
            .unwrap_err()
            .to_string()
            .contains("more points"));
    }
}
