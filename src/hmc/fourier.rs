//! Fourier acceleration: HMC with the kinetic energy ½ pᵀM⁻¹p, M̃_k = k̂² + m̃² in momentum space,
//! k̂² = Σ_μ 4 sin²(k_μ/2) (the free lattice propagator's inverse; S. Duane, R. Kenway,
//! B. J. Pendleton, D. Roweth, Phys. Lett. B 176, 143 (1986)). The kick p += εF is HMC's; the
//! drift is φ += ε M⁻¹p, the momenta are drawn as p = M^{1/2}η, and the kinetic energy needs
//! M⁻¹p: each a filter diagonal in momentum space, so one FFT pair per MD update plus three per
//! trajectory. Transforms are complex, d-dimensional, one chain at a time (`rustfft`, planned once
//! per axis, with its runtime choice of SIMD).

use std::f64::consts::PI;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::lattice::Lattice;

/// Buffers of one thread's transforms: a gathered line and the FFT scratch.
#[derive(Default)]
struct Work {
    lines: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
}

/// Which power of the mass matrix a filter applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    /// M^{1/2}: momenta p = M^{1/2}η from unit normals η.
    Half,
    /// M⁻¹: the drift φ̇ = M⁻¹p and the kinetic energy ½ pᵀM⁻¹p.
    Inverse,
}

/// The filters M^{1/2} and M⁻¹ of the mass kernel M̃_k = k̂² + m̃² on one lattice.
pub struct FourierMass {
    lattice: Lattice,
    m2: f64,
    forward: Vec<Arc<dyn Fft<f64>>>,
    inverse: Vec<Arc<dyn Fft<f64>>>,
    /// M̃(k)^{1/2}/V and M̃(k)^{−1}/V per momentum, row-major like the sites (1/V undoes the
    /// unnormalised FFT pair).
    half: Vec<f64>,
    inv: Vec<f64>,
}

impl std::fmt::Debug for FourierMass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FourierMass(m2 = {}, lattice {})",
            self.m2,
            self.lattice.label()
        )
    }
}

/// Refuses a mass m̃² that is not a positive number.
pub fn check_mass(m2: f64) -> Result<()> {
    if m2.is_finite() && m2 > 0.0 {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "the Fourier mass --fa-mass {m2} must be a positive number (M = k^2 + m2 must be \
         invertible at k = 0)"
    )))
}

/// The smallest default m̃² (see [`default_mass`]).
pub const MIN_DEFAULT_MASS: f64 = 0.01;

/// The default m̃²: the smallest nonzero k̂² of the lattice, 4 sin²(π/L_max), but at least
/// [`MIN_DEFAULT_MASS`]. Near a critical point the physical mass is about that small on a finite
/// lattice, so the slowest modes get the largest acceleration; the floor keeps the zero mode of a
/// large lattice from moving so fast that an interacting theory's trajectories blow up (measured:
/// m̃² = 0.0024 at L = 128, κ = 0.271 left the chains far from equilibrium; 0.0096 at L = 64 gave
/// τ_int(χ₂) = 13, 0.1 gave 25 and 0.47 gave 77).
pub fn default_mass(lattice: &Lattice) -> f64 {
    let l = lattice.extents().iter().copied().max().unwrap_or(2);
    (4.0 * (PI / l as f64).sin().powi(2)).max(MIN_DEFAULT_MASS)
}

impl FourierMass {
    /// The filter for `lattice` with mass m̃² > 0 (the zero mode needs it).
    pub fn new(lattice: &Lattice, m2: f64) -> Result<Self> {
        check_mass(m2)?;
        let mut planner = FftPlanner::new();
        let ext = lattice.extents();
        let forward = ext.iter().map(|&l| planner.plan_fft_forward(l)).collect();
        let inverse = ext.iter().map(|&l| planner.plan_fft_inverse(l)).collect();
        let strides = lattice.strides();
        let v = lattice.volume();
        let kernel: Vec<f64> = (0..v)
            .map(|s| {
                let khat2: f64 = ext
                    .iter()
                    .zip(&strides)
                    .map(|(&l, &st)| {
                        let n = (s / st) % l;
                        4.0 * (PI * n as f64 / l as f64).sin().powi(2)
                    })
                    .sum();
                khat2 + m2
            })
            .collect();
        Ok(FourierMass {
            lattice: lattice.clone(),
            m2,
            forward,
            inverse,
            half: kernel.iter().map(|m| m.sqrt() / v as f64).collect(),
            inv: kernel.iter().map(|m| 1.0 / (m * v as f64)).collect(),
        })
    }

    /// The mass m̃².
    pub fn m2(&self) -> f64 {
        self.m2
    }

    /// The lattice.
    pub fn lattice(&self) -> &Lattice {
        &self.lattice
    }

    /// The filter of `power` per momentum, row-major like the sites, including the 1/V of the
    /// unnormalised transform pair.
    pub fn filter(&self, power: Power) -> &[f64] {
        match power {
            Power::Half => &self.half,
            Power::Inverse => &self.inv,
        }
    }

    /// x ← M^power x for every chain of the batch `x` (`[chain][site]`), chains spread over
    /// the threads. Each chain is transformed on its own, so its result does not depend on the
    /// other chains (nor on how chains are split over threads or ranks).
    pub fn apply(&self, dev: &CpuDevice, x: &mut [f64], power: Power) -> Result<()> {
        let v = self.lattice.volume();
        let filter = match power {
            Power::Half => &self.half,
            Power::Inverse => &self.inv,
        };
        dev.for_heavy_chunks(v, x, |_, part, _| {
            let mut buf = vec![Complex::new(0.0, 0.0); v];
            let mut work = Work::default();
            for chain in part.chunks_mut(v) {
                for (c, &r) in buf.iter_mut().zip(chain.iter()) {
                    *c = Complex::new(r, 0.0);
                }
                self.transform(&mut buf, &mut work, &self.forward);
                for (c, &k) in buf.iter_mut().zip(filter) {
                    *c *= k;
                }
                self.transform(&mut buf, &mut work, &self.inverse);
                // The filter is real and even in k, so a real field stays real.
                for (r, c) in chain.iter_mut().zip(&buf) {
                    *r = c.re;
                }
            }
        })
    }

    /// The d-dimensional transform of one chain: 1D transforms along every axis.
    fn transform(&self, buf: &mut [Complex<f64>], work: &mut Work, plans: &[Arc<dyn Fft<f64>>]) {
        let ext = self.lattice.extents();
        let strides = self.lattice.strides();
        for (mu, plan) in plans.iter().enumerate() {
            let (l, st) = (ext[mu], strides[mu]);
            work.scratch
                .resize(plan.get_inplace_scratch_len(), Complex::new(0.0, 0.0));
            if st == 1 {
                // The last axis: the rows are contiguous, one call transforms them all.
                plan.process_with_scratch(buf, &mut work.scratch);
                continue;
            }
            // Lines along μ start at the sites with x_μ = 0; each is gathered, transformed and
            // scattered back (gathering all of them first is slower once they leave the cache).
            work.lines.resize(l, Complex::new(0.0, 0.0));
            for start in (0..buf.len()).filter(|s| (s / st) % l == 0) {
                for (k, c) in work.lines.iter_mut().enumerate() {
                    *c = buf[start + k * st];
                }
                plan.process_with_scratch(&mut work.lines, &mut work.scratch);
                for (k, c) in work.lines.iter().enumerate() {
                    buf[start + k * st] = *c;
                }
            }
        }
    }
}
