//! Fourier acceleration: HMC with the kinetic energy ½ Σ_k |p̃_k|²/M̃_k and the mass kernel
//! M̃_k = k̂² + m̃², k̂² = Σ_μ 4 sin²(k_μ/2) (the free lattice propagator's inverse; S. Duane,
//! R. Kenway, B. J. Pendleton, D. Roweth, Phys. Lett. B 176, 143 (1986)). In the variables
//! π = M^{−1/2} p the Hamiltonian is ½π² + S(φ) and the equations of motion are
//! π̇ = K F(φ), φ̇ = K π with K = M^{−1/2}: so the integrators, the unit-Gaussian momentum refresh
//! and the energies are those of plain HMC, and only the fused update filters the force and the
//! momentum through K, diagonal in momentum space. The filter is a d-dimensional FFT per chain
//! (`rustfft`, planned once per axis).

use std::f64::consts::PI;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::lattice::Lattice;

/// The filter K = M^{−1/2} of the mass kernel M̃_k = k̂² + m̃² on one lattice.
pub struct FourierMass {
    lattice: Lattice,
    m2: f64,
    forward: Vec<Arc<dyn Fft<f64>>>,
    inverse: Vec<Arc<dyn Fft<f64>>>,
    /// K(k)/V per momentum, row-major like the sites (1/V undoes the unnormalised FFT pair).
    filter: Vec<f64>,
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

/// The default m̃²: the smallest nonzero k̂² of the lattice, 4 sin²(π/L_max). Near a critical
/// point the physical mass is about that small on a finite lattice, so the slowest modes get
/// the largest acceleration.
pub fn default_mass(lattice: &Lattice) -> f64 {
    let l = lattice.extents().iter().copied().max().unwrap_or(2);
    4.0 * (PI / l as f64).sin().powi(2)
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
        let filter = (0..v)
            .map(|s| {
                let khat2: f64 = ext
                    .iter()
                    .zip(&strides)
                    .map(|(&l, &st)| {
                        let n = (s / st) % l;
                        4.0 * (PI * n as f64 / l as f64).sin().powi(2)
                    })
                    .sum();
                1.0 / ((khat2 + m2).sqrt() * v as f64)
            })
            .collect();
        Ok(FourierMass {
            lattice: lattice.clone(),
            m2,
            forward,
            inverse,
            filter,
        })
    }

    /// The mass m̃².
    pub fn m2(&self) -> f64 {
        self.m2
    }

    /// x ← K x for every chain of the batch `x` (`[chain][site]`), chains spread over threads.
    pub fn apply(&self, dev: &CpuDevice, x: &mut [f64]) -> Result<()> {
        let v = self.lattice.volume();
        dev.for_heavy_chunks(v, x, |_, part, _| {
            let mut buf = vec![Complex::new(0.0, 0.0); v];
            let mut line = Vec::new();
            for chain in part.chunks_mut(v) {
                for (b, &r) in buf.iter_mut().zip(chain.iter()) {
                    *b = Complex::new(r, 0.0);
                }
                self.transform(&mut buf, &mut line, &self.forward);
                for (b, &k) in buf.iter_mut().zip(&self.filter) {
                    *b *= k;
                }
                self.transform(&mut buf, &mut line, &self.inverse);
                // K is real and even in k, so K x is real for real x.
                for (r, b) in chain.iter_mut().zip(&buf) {
                    *r = b.re;
                }
            }
        })
    }

    /// The d-dimensional transform of one chain: 1D transforms along every axis.
    fn transform(
        &self,
        buf: &mut [Complex<f64>],
        line: &mut Vec<Complex<f64>>,
        plans: &[Arc<dyn Fft<f64>>],
    ) {
        let ext = self.lattice.extents();
        let strides = self.lattice.strides();
        for (mu, plan) in plans.iter().enumerate() {
            let (l, st) = (ext[mu], strides[mu]);
            line.resize(l, Complex::new(0.0, 0.0));
            // Lines along μ start at every site with x_μ = 0.
            for start in (0..buf.len()).filter(|s| (s / st) % l == 0) {
                for (k, c) in line.iter_mut().enumerate() {
                    *c = buf[start + k * st];
                }
                plan.process(line);
                for (k, c) in line.iter().enumerate() {
                    buf[start + k * st] = *c;
                }
            }
        }
    }
}
