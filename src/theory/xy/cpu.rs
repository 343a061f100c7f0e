//! CPU twins of `kernels/xy.cu` and the CPU XY sweeper. Each colour pass reads the other colour
//! from a snapshot (which that pass does not change), so rows can be split across threads; the
//! per-site arithmetic is the kernel's, operation by operation.

use std::f64::consts::TAU;
use std::sync::atomic::{AtomicU64, Ordering};

use super::wrap;
use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::philox::{self, key_from_seed, philox4x32_10, uniform_from_words};
use crate::theory::{LocalAlgorithm, Sweeper};

/// Everything that defines an XY sweeper.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The lattice (even extents).
    pub lattice: Lattice,
    /// Chains.
    pub chains: usize,
    /// Coupling β.
    pub beta: f64,
    /// Metropolis (with its hits) or overrelaxation.
    pub algorithm: LocalAlgorithm,
    /// Philox key.
    pub seed: u64,
}

/// Neighbour arithmetic of one chain, as `site_coord`/`site_step` in `kernels/lattice.cuh`.
struct Steps {
    ext: Vec<usize>,
    stride: Vec<usize>,
}

impl Steps {
    fn new(lat: &Lattice) -> Self {
        Steps {
            ext: lat.extents().to_vec(),
            stride: lat.strides(),
        }
    }

    #[inline(always)]
    fn coord(&self, s: usize, mu: usize) -> usize {
        (s / self.stride[mu]) % self.ext[mu]
    }

    #[inline(always)]
    fn step(&self, s: usize, x: usize, mu: usize, forward: bool) -> usize {
        let (st, l) = (self.stride[mu], self.ext[mu]);
        match (forward, x) {
            (true, x) if x == l - 1 => s - (l - 1) * st,
            (true, _) => s + st,
            (false, 0) => s + (l - 1) * st,
            (false, _) => s - st,
        }
    }

    fn colour(&self, s: usize) -> usize {
        (0..self.ext.len())
            .map(|mu| self.coord(s, mu))
            .sum::<usize>()
            % 2
    }

    /// Σ over the 2d neighbours of cos(a − θ_n), forward then backward per axis.
    #[inline(always)]
    fn bond_sum(&self, th: &[f64], s: usize, a: f64) -> f64 {
        let mut acc = 0.0;
        for mu in 0..self.ext.len() {
            let x = self.coord(s, mu);
            acc += (a - th[self.step(s, x, mu, true)]).cos();
            acc += (a - th[self.step(s, x, mu, false)]).cos();
        }
        acc
    }
}

fn check(lat: &Lattice, theta: &[f64], counters: usize, colour: usize) -> Result<usize> {
    let v = lat.volume();
    if theta.is_empty() || !theta.len().is_multiple_of(v) || colour > 1 {
        return Err(Error::InvalidInput(format!(
            "xy update: {} angles are not whole chains of {v} sites (colour {colour})",
            theta.len()
        )));
    }
    if counters != theta.len() / v {
        return Err(Error::InvalidInput(format!(
            "xy update: {counters} counters for {} chains",
            theta.len() / v
        )));
    }
    Ok(theta.len() / v)
}

/// Calls `f(chain, site, old, snapshot_of_chain)` for every site of `colour` and stores its
/// result, rows spread over the threads.
fn for_colour(
    dev: &CpuDevice,
    lat: &Lattice,
    theta: &mut [f64],
    colour: usize,
    f: impl Fn(usize, usize, &[f64]) -> f64 + Sync,
) -> Result<()> {
    let snapshot = theta.to_vec();
    let (v, row) = (lat.volume(), lat.extents()[lat.dim() - 1]);
    let steps = Steps::new(lat);
    dev.for_chunks(row, theta, None, |first_row, rows, _| {
        for (k, t) in rows.iter_mut().enumerate() {
            let i = first_row * row + k;
            let (chain, s) = (i / v, i % v);
            if steps.colour(s) == colour {
                *t = f(chain, s, &snapshot[chain * v..(chain + 1) * v]);
            }
        }
    })
}

/// CPU twin of `xy_metropolis_dD`: `hits` Metropolis proposals (uniform new angles) at every
/// site of `colour`, hit h drawing at local step `step0 + h`; adds acceptances to `accepted`.
#[allow(clippy::too_many_arguments)]
pub fn metropolis_colour(
    dev: &CpuDevice,
    lat: &Lattice,
    theta: &mut [f64],
    beta: f64,
    colour: usize,
    step0: u64,
    hits: u32,
    seed: u64,
    accepted: &mut [u64],
) -> Result<()> {
    let chains = check(lat, theta, accepted.len(), colour)?;
    let last = step0 + hits.max(1) as u64 - 1;
    philox::counter_words(last, philox::STREAM_LOCAL + colour as u32)?;
    let key = key_from_seed(seed);
    let steps = Steps::new(lat);
    let counts: Vec<AtomicU64> = (0..chains).map(|_| AtomicU64::new(0)).collect();
    for_colour(dev, lat, theta, colour, |chain, s, th| {
        let mut cur = th[s];
        let mut acc = 0;
        for h in 0..hits as u64 {
            let t = step0 + h;
            let stream = philox::STREAM_LOCAL + colour as u32;
            let ctr = [
                s as u32,
                chain as u32,
                t as u32,
                stream | ((t >> 32) as u32) << 8,
            ];
            let b = philox4x32_10(ctr, key);
            let prop = TAU * uniform_from_words(b[0], b[1]);
            let ds = -beta * (steps.bond_sum(th, s, prop) - steps.bond_sum(th, s, cur));
            if uniform_from_words(b[2], b[3]) < (-ds).exp() {
                cur = prop;
                acc += 1;
            }
        }
        counts[chain].fetch_add(acc, Ordering::Relaxed);
        cur
    })?;
    for (a, c) in accepted.iter_mut().zip(counts) {
        *a += c.into_inner();
    }
    Ok(())
}

/// CPU twin of `xy_overrelax_dD`: θ → 2 arg(Σ_n e^{iθ_n}) − θ at every site of `colour`
/// (unchanged where the local field vanishes).
pub fn overrelax_colour(
    dev: &CpuDevice,
    lat: &Lattice,
    theta: &mut [f64],
    colour: usize,
) -> Result<()> {
    check(lat, theta, theta.len() / lat.volume().max(1), colour)?;
    let steps = Steps::new(lat);
    for_colour(dev, lat, theta, colour, |_, s, th| {
        let (mut sx, mut sy) = (0.0, 0.0);
        for mu in 0..lat.dim() {
            let x = steps.coord(s, mu);
            let (f, b) = (
                th[steps.step(s, x, mu, true)],
                th[steps.step(s, x, mu, false)],
            );
            sx += f.cos() + b.cos();
            sy += f.sin() + b.sin();
        }
        if sx != 0.0 || sy != 0.0 {
            wrap(2.0 * sy.atan2(sx) - th[s])
        } else {
            th[s]
        }
    })
}

/// The sweep schedule shared by both backends: Metropolis does both colours with `hits` each;
/// overrelaxation does one reflection sweep and then one Metropolis sweep (reflections keep S
/// fixed, so they need the Metropolis sweep to be ergodic).
pub fn schedule(algorithm: LocalAlgorithm) -> (bool, u32) {
    match algorithm {
        LocalAlgorithm::Overrelax => (true, 1),
        other => (false, other.hits()),
    }
}

/// Per-site angles of an XY batch, checked to lie in [0, 2π).
pub fn check_angles(field: &[f64], expected: usize) -> Result<()> {
    if field.len() != expected {
        return Err(Error::InvalidInput(format!(
            "{} angles for a batch of {expected} sites",
            field.len()
        )));
    }
    if let Some(bad) = field.iter().find(|t| !(0.0..TAU).contains(*t)) {
        return Err(Error::InvalidInput(format!(
            "an XY angle must lie in [0, 2 pi), got {bad}"
        )));
    }
    Ok(())
}

/// The XY sweeper on the CPU.
pub struct XyCpu {
    dev: CpuDevice,
    setup: Setup,
    theta: Vec<f64>,
}

impl XyCpu {
    /// All angles 0.
    pub fn new(dev: CpuDevice, setup: Setup) -> Self {
        XyCpu {
            dev,
            theta: vec![0.0; setup.chains * setup.lattice.volume()],
            setup,
        }
    }
}

impl Sweeper for XyCpu {
    fn sweep(&mut self, sweep: u64) -> Result<Vec<f64>> {
        let st = &self.setup;
        let (reflect, hits) = schedule(st.algorithm);
        let mut accepted = vec![0u64; st.chains];
        if reflect {
            for colour in 0..2 {
                overrelax_colour(&self.dev, &st.lattice, &mut self.theta, colour)?;
            }
        }
        let step0 = sweep
            .checked_mul(hits as u64)
            .ok_or_else(|| Error::InvalidInput("sweep count overflows".into()))?;
        for colour in 0..2 {
            metropolis_colour(
                &self.dev,
                &st.lattice,
                &mut self.theta,
                st.beta,
                colour,
                step0,
                hits,
                st.seed,
                &mut accepted,
            )?;
        }
        let proposals = (st.lattice.volume() as u64 * hits as u64) as f64;
        Ok(accepted.iter().map(|&a| a as f64 / proposals).collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.theta.clone())
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        check_angles(field, self.theta.len())?;
        self.theta.copy_from_slice(field);
        Ok(())
    }

    fn site_updates(&self) -> u64 {
        let (reflect, hits) = schedule(self.setup.algorithm);
        (self.theta.len() as u64) * (hits as u64 + reflect as u64)
    }

    fn chains(&self) -> usize {
        self.setup.chains
    }
}
