//! Spectral functions of the single-impurity Anderson model from second-order perturbation
//! theory in U around Hartree–Fock: the training library of the spectral-function VAE.
//!
//! H = Σ_σ ε_d n_σ + U n_↑ n_↓ + hybridisation with a bath, whose effect on the impurity is
//! Δ(ω) = −iΓ (a wide flat band) or Δ(ω) = ΓD/(ω + iD) (a Lorentzian band of half-width D, the
//! same Γ = πV²ρ_c(0)). Hartree–Fock: ε_HF = ε_d + U n_σ with n_σ the occupation of
//! G_HF(ω) = 1/(ω − ε_HF − Δ(ω)), solved self-consistently. The second-order self-energy with
//! the HF propagators (Yamada, Prog. Theor. Phys. 53, 970 (1975); Horvatić and Zlatić,
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
    /// The Hartree–Fock level ε_d + U n_σ.
    pub eps_hf: f64,
    /// The Hartree–Fock occupation per spin.
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

    /// ∫f(ω)ρ(ω)dω on the grid, plus the weight of the (occupied) tail below the grid, estimated
    /// from ρ's 1/ω² decay.
    fn occupation(&self, omega: &[f64], rho: &[f64], h: f64) -> f64 {
        let inside: f64 = omega
            .iter()
            .zip(rho)
            .map(|(&w, &r)| self.fermi(w) * r)
            .sum::<f64>()
            * h;
        inside + rho[0] * omega[0].abs()
    }

    /// The second-order solution on `grid`.
    pub fn solve(&self, grid: &FrequencyGrid) -> Result<ImpuritySolution> {
        self.validate(grid)?;
        let omega = grid.omegas();
        let h = grid.step();
        let zero = vec![Complex::new(0.0, 0.0); omega.len()];
        // Hartree–Fock: n − n_occ(ε_d + U n) decreases in n; bisect on [0, 1].
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..60 {
            let n = 0.5 * (lo + hi);
            let rho = self.spectral(&omega, self.eps_d + self.u * n, &zero);
            if self.occupation(&omega, &rho, h) > n {
                lo = n;
            } else {
                hi = n;
            }
        }
        let n_hf = 0.5 * (lo + hi);
        let eps_hf = self.eps_d + self.u * n_hf;
        let rho0 = self.spectral(&omega, eps_hf, &zero);
        let sigma = self.second_order(&omega, &rho0, h);
        let rho = self.spectral(&omega, eps_hf, &sigma);
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
    fn second_order(&self, omega: &[f64], rho0: &[f64], h: f64) -> Vec<Complex<f64>> {
        let n = omega.len();
        let empty: Vec<f64> = omega
            .iter()
            .zip(rho0)
            .map(|(&w, &r)| r * self.fermi(-w))
            .collect();
        let filled: Vec<f64> = omega
            .iter()
            .zip(rho0)
            .map(|(&w, &r)| r * self.fermi(w))
            .collect();
        // g(ω) ↦ g(−ω) on the grid: ω_{n−j} = −ω_j (j = 0 has no partner).
        let reflect = |g: &[f64]| {
            (0..n)
                .map(|j| if j == 0 { 0.0 } else { g[n - j] })
                .collect::<Vec<_>>()
        };
        let mut conv = Convolver::new(4 * n);
        // (a ∗ b ∗ c)(ω_j) sits at index j + n of the full linear convolution of three grids.
        let triple = |conv: &mut Convolver, a: &[f64], b: &[f64], c: &[f64]| -> Vec<f64> {
            let ab = conv.linear(a, b, h);
            let abc = conv.linear(&ab, c, h);
            abc[n..2 * n].to_vec()
        };
        let particles = triple(&mut conv, &empty, &empty, &reflect(&filled));
        let holes = triple(&mut conv, &filled, &filled, &reflect(&empty));
        let pi = std::f64::consts::PI;
        let im: Vec<f64> = particles
            .iter()
            .zip(&holes)
            .map(|(p, q)| -pi * self.u * self.u * (p + q))
            .collect();
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

/// Linear convolutions by FFT, planned once for a padded length.
struct Convolver {
    len: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
}

impl Convolver {
    fn new(len: usize) -> Self {
        let len = len.next_power_of_two();
        let mut planner = FftPlanner::new();
        Convolver {
            len,
            forward: planner.plan_fft_forward(len),
            inverse: planner.plan_fft_inverse(len),
        }
    }

    /// c[k] = h Σ_i a[i] b[k − i], k < a.len() + b.len() − 1 (which must fit the plan).
    fn linear(&mut self, a: &[f64], b: &[f64], h: f64) -> Vec<f64> {
        let out = a.len() + b.len() - 1;
        debug_assert!(out <= self.len);
        let pad = |x: &[f64]| {
            let mut v: Vec<Complex<f64>> = x.iter().map(|&r| Complex::new(r, 0.0)).collect();
            v.resize(self.len, Complex::new(0.0, 0.0));
            v
        };
        let (mut fa, mut fb) = (pad(a), pad(b));
        self.forward.process(&mut fa);
        self.forward.process(&mut fb);
        for (x, y) in fa.iter_mut().zip(&fb) {
            *x *= y;
        }
        self.inverse.process(&mut fa);
        let scale = h / self.len as f64;
        fa[..out].iter().map(|c| c.re * scale).collect()
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

    /// The spectral weight of Σ⁽²⁾ is U² n_σ(1 − n_σ) of the HF propagator, and ρ is normalised
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
            let tails = (s.sigma[0].im + s.sigma[n - 1].im) * grid().half_width;
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
