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
    /// The real-input transforms, when the last extent is even (else the complex ones below).
    real: Option<RealPlan>,
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

/// The transforms of a real batch whose last extent L is even: along the last axis a real
/// transform by one complex FFT of length L/2 per row (the even and odd sites as real and
/// imaginary parts, separated by symmetry), leaving the L/2 + 1 independent frequencies of each
/// row; along the other axes complex FFTs of that half spectrum. Half the work of the complex
/// transform, and every pass is spread over the threads by rows or lines, also within one chain.
/// Each line's arithmetic is fixed, so results do not depend on the threads.
struct RealPlan {
    /// Last extent L and the half-spectrum row length L/2 + 1.
    l: usize,
    h: usize,
    row_forward: Arc<dyn Fft<f64>>,
    row_inverse: Arc<dyn Fft<f64>>,
    /// e^{−2πik/L}, k = 0..=L/2.
    twiddle: Vec<Complex<f64>>,
    /// Every axis but the last.
    axes: Vec<HalfAxis>,
    /// The filters on the half spectrum of one chain.
    half: Vec<f64>,
    inv: Vec<f64>,
    /// The half spectra of the batch being filtered.
    spectrum: std::sync::Mutex<Vec<Complex<f64>>>,
}

/// An axis other than the last, on the half spectrum.
struct HalfAxis {
    extent: usize,
    /// Its stride in the half-spectrum layout.
    stride: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
}

/// The spectrum shared by the tasks of one pass, each writing its own lines.
#[derive(Clone, Copy)]
struct Lines(*mut Complex<f64>);
// SAFETY: the tasks of a pass touch disjoint lines of the spectrum, which outlives the pass.
unsafe impl Send for Lines {}
unsafe impl Sync for Lines {}

impl Lines {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    fn get(self) -> *mut Complex<f64> {
        self.0
    }
}

/// Lines gathered per FFT call along a strided axis (neighbouring lines share cache lines).
const LINE_BATCH: usize = 16;

/// Batches of fewer values are filtered on the calling thread.
const SERIAL_BELOW: usize = 1 << 14;

impl RealPlan {
    fn new(
        lat: &Lattice,
        planner: &mut FftPlanner<f64>,
        half: &[f64],
        inv: &[f64],
    ) -> Option<Self> {
        let ext = lat.extents();
        let l = *ext.last()?;
        if l % 2 != 0 {
            return None;
        }
        let (m, h) = (l / 2, l / 2 + 1);
        let rows = lat.volume() / l;
        let mut stride = h;
        let mut axes: Vec<_> = ext[..ext.len() - 1]
            .iter()
            .rev()
            .map(|&extent| {
                let axis = HalfAxis {
                    extent,
                    stride,
                    forward: planner.plan_fft_forward(extent),
                    inverse: planner.plan_fft_inverse(extent),
                };
                stride *= extent;
                axis
            })
            .collect();
        axes.reverse();
        let on_half =
            |f: &[f64]| -> Vec<f64> { (0..rows * h).map(|i| f[(i / h) * l + i % h]).collect() };
        Some(RealPlan {
            l,
            h,
            row_forward: planner.plan_fft_forward(m),
            row_inverse: planner.plan_fft_inverse(m),
            twiddle: (0..h)
                .map(|k| Complex::from_polar(1.0, -2.0 * PI * k as f64 / l as f64))
                .collect(),
            axes,
            half: on_half(half),
            inv: on_half(inv),
            spectrum: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn apply(&self, dev: &CpuDevice, x: &mut [f64], power: Power) -> Result<()> {
        let (l, h) = (self.l, self.h);
        let mut guard = self
            .spectrum
            .lock()
            .map_err(|_| Error::InvalidInput("a Fourier filter panicked earlier".into()))?;
        let spec: &mut Vec<Complex<f64>> = &mut guard;
        spec.resize(x.len() / l * h, Complex::new(0.0, 0.0));
        let input: &[f64] = x;
        // Small batches run on the calling thread (the pool's wake-ups would cost more).
        let serial = x.len() < SERIAL_BELOW;
        dev.for_chunks(h, spec, None, |first, part, _| {
            let mut work = Work::default();
            for (r, out) in part.chunks_mut(h).enumerate() {
                self.forward_row(&input[(first + r) * l..][..l], out, &mut work);
            }
        })?;
        for a in &self.axes {
            self.lines_pass(dev, spec, (a.extent, a.stride), a.forward.as_ref(), serial);
        }
        let filter = match power {
            Power::Half => &self.half,
            Power::Inverse => &self.inv,
        };
        let per_chain = filter.len();
        dev.for_chunks(per_chain, spec, None, |_, part, _| {
            for chain in part.chunks_mut(per_chain) {
                for (c, &f) in chain.iter_mut().zip(filter) {
                    *c *= f;
                }
            }
        })?;
        for a in &self.axes {
            self.lines_pass(dev, spec, (a.extent, a.stride), a.inverse.as_ref(), serial);
        }
        let spec: &[Complex<f64>] = spec;
        dev.for_chunks(l, x, None, |first, part, _| {
            let mut work = Work::default();
            for (r, row) in part.chunks_mut(l).enumerate() {
                self.inverse_row(&spec[(first + r) * h..][..h], row, &mut work);
            }
        })
    }

    /// The half spectrum X_k, k = 0..=L/2, of one real row: Z = FFT_{L/2}(x_{2n} + i x_{2n+1}),
    /// then X_k = E_k + e^{−2πik/L} O_k with E_k = (Z_k + Z̄_{L/2−k})/2, O_k = (Z_k − Z̄_{L/2−k})/2i.
    fn forward_row(&self, row: &[f64], out: &mut [Complex<f64>], work: &mut Work) {
        let m = self.l / 2;
        work.lines.clear();
        work.lines
            .extend(row.chunks(2).map(|p| Complex::new(p[0], p[1])));
        self.fft(self.row_forward.as_ref(), work);
        let z = &work.lines;
        for (k, o) in out.iter_mut().enumerate() {
            let (zk, zc) = (z[k % m], z[(m - k) % m].conj());
            let even = (zk + zc) * 0.5;
            let odd = (zk - zc) * Complex::new(0.0, -0.5);
            *o = even + self.twiddle[k] * odd;
        }
    }

    /// The real row from its half spectrum, times L (the unnormalised inverse): Z_k = F_k + i G_k
    /// with F_k = X_k + X̄_{L/2−k} and G_k = e^{2πik/L}(X_k − X̄_{L/2−k}), then FFT⁻¹_{L/2}.
    fn inverse_row(&self, spec: &[Complex<f64>], row: &mut [f64], work: &mut Work) {
        let m = self.l / 2;
        work.lines.clear();
        work.lines.extend((0..m).map(|k| {
            let (xk, xc) = (spec[k], spec[m - k].conj());
            let odd = (xk - xc) * self.twiddle[k].conj();
            (xk + xc) + Complex::new(0.0, 1.0) * odd
        }));
        self.fft(self.row_inverse.as_ref(), work);
        for (p, z) in row.chunks_mut(2).zip(&work.lines) {
            p[0] = z.re;
            p[1] = z.im;
        }
    }

    fn fft(&self, plan: &dyn Fft<f64>, work: &mut Work) {
        work.scratch
            .resize(plan.get_inplace_scratch_len(), Complex::new(0.0, 0.0));
        plan.process_with_scratch(&mut work.lines, &mut work.scratch);
    }

    /// Transforms every line along an axis of extent `e` and half-layout stride `st`, the lines
    /// spread over the threads (unless `serial`) in batches of neighbours.
    fn lines_pass(
        &self,
        dev: &CpuDevice,
        spec: &mut [Complex<f64>],
        (e, st): (usize, usize),
        plan: &dyn Fft<f64>,
        serial: bool,
    ) {
        let lines = spec.len() / e;
        let batches = lines.div_ceil(LINE_BATCH);
        let tasks = if serial {
            1
        } else {
            (4 * dev.threads()).min(batches).max(1)
        };
        let per = batches.div_ceil(tasks);
        let shared = Lines(spec.as_mut_ptr());
        let start = |line: usize| (line / st) * st * e + line % st;
        dev.parallel_for(tasks, |t| {
            let mut work = Work::default();
            let first = (t * per * LINE_BATCH).min(lines);
            let last = ((t + 1) * per * LINE_BATCH).min(lines);
            for lo in (first..last).step_by(LINE_BATCH) {
                let group = lo..(lo + LINE_BATCH).min(last);
                work.lines.clear();
                for line in group.clone() {
                    let s = start(line);
                    // SAFETY: the element lies in the spectrum; this task alone owns its lines.
                    work.lines
                        .extend((0..e).map(|n| unsafe { *shared.get().add(s + n * st) }));
                }
                self.fft(plan, &mut work);
                for (line, values) in group.zip(work.lines.chunks(e)) {
                    let s = start(line);
                    for (n, &v) in values.iter().enumerate() {
                        // SAFETY: as above: in bounds, and no other task touches this line.
                        unsafe { *shared.get().add(s + n * st) = v };
                    }
                }
            }
        });
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
        let half: Vec<f64> = kernel.iter().map(|m| m.sqrt() / v as f64).collect();
        let inv: Vec<f64> = kernel.iter().map(|m| 1.0 / (m * v as f64)).collect();
        Ok(FourierMass {
            real: RealPlan::new(lattice, &mut planner, &half, &inv),
            lattice: lattice.clone(),
            m2,
            forward,
            inverse,
            half,
            inv,
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
        if !x.len().is_multiple_of(v) {
            return Err(Error::InvalidInput(format!(
                "a batch of {} values is not whole chains of {v} sites",
                x.len()
            )));
        }
        if let Some(real) = &self.real {
            return real.apply(dev, x, power);
        }
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
