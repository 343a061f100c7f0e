//! CPU twins of `kernels/xy.cu` and the CPU colour passes of the XY model; the per-site
//! arithmetic is the kernel's, operation by operation.

use std::f64::consts::TAU;
use std::sync::atomic::{AtomicU64, Ordering};

use super::wrap;
use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::philox::{self, key_from_seed, uniform_from_words};
use crate::theory::checkerboard::{check_batch, for_colour, ColourPass, Steps};

/// Σ over the 2d neighbours of cos(a − θ_n), forward then backward per axis (`xy_bond_sum`).
#[inline(always)]
fn bond_sum(steps: &Steps, th: &[f64], s: usize, a: f64) -> f64 {
    let mut acc = 0.0;
    for mu in 0..steps.dim() {
        let x = steps.coord(s, mu);
        acc += (a - th[steps.step(s, x, mu, true)]).cos();
        acc += (a - th[steps.step(s, x, mu, false)]).cos();
    }
    acc
}

/// CPU twin of `xy_metropolis_dD`: `hits` Metropolis proposals (uniform new angles) at every
/// site of `colour`, hit h drawing [`philox::local_block`] at step `step0 + h`; adds each
/// chain's acceptances to `accepted`.
#[allow(clippy::too_many_arguments)]
pub fn metropolis_colour(
    dev: &CpuDevice,
    lat: &Lattice,
    theta: &mut [f64],
    beta: f64,
    colour: u32,
    step0: u64,
    hits: u32,
    seed: u64,
    accepted: &mut [u64],
) -> Result<()> {
    let chains = check_batch(lat, theta, accepted.len(), colour)?;
    philox::counter_words(
        step0 + hits.max(1) as u64 - 1,
        philox::STREAM_LOCAL + colour,
    )?;
    let key = key_from_seed(seed);
    let steps = Steps::new(lat);
    let counts: Vec<AtomicU64> = (0..chains).map(|_| AtomicU64::new(0)).collect();
    for_colour(dev, lat, theta, colour, |chain, s, th| {
        let mut cur = th[s];
        let mut acc = 0;
        for h in 0..hits as u64 {
            let b = philox::local_block(key, s as u32, chain as u32, step0 + h, colour);
            let prop = TAU * uniform_from_words(b[0], b[1]);
            let ds = -beta * (bond_sum(&steps, th, s, prop) - bond_sum(&steps, th, s, cur));
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
    colour: u32,
) -> Result<()> {
    check_batch(lat, theta, theta.len() / lat.volume(), colour)?;
    let steps = Steps::new(lat);
    for_colour(dev, lat, theta, colour, |_, s, th| {
        let (mut sx, mut sy) = (0.0, 0.0);
        for mu in 0..steps.dim() {
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

/// Refuses angles outside [0, 2π).
pub fn check_angles(field: &[f64]) -> Result<()> {
    match field.iter().find(|t| !(0.0..TAU).contains(*t)) {
        Some(bad) => Err(Error::InvalidInput(format!(
            "an XY angle must lie in [0, 2 pi), got {bad}"
        ))),
        None => Ok(()),
    }
}

/// The XY colour passes on the CPU.
pub struct XyCpu {
    dev: CpuDevice,
    lattice: Lattice,
    beta: f64,
    seed: u64,
    theta: Vec<f64>,
}

impl XyCpu {
    /// `chains` chains of `lattice` at coupling β, all angles 0.
    pub fn new(dev: CpuDevice, lattice: Lattice, chains: usize, beta: f64, seed: u64) -> Self {
        XyCpu {
            dev,
            theta: vec![0.0; chains * lattice.volume()],
            lattice,
            beta,
            seed,
        }
    }
}

impl ColourPass for XyCpu {
    fn metropolis(
        &mut self,
        colour: u32,
        step0: u64,
        hits: u32,
        accepted: &mut [u64],
    ) -> Result<()> {
        let (dev, lat) = (&self.dev, &self.lattice);
        metropolis_colour(
            dev,
            lat,
            &mut self.theta,
            self.beta,
            colour,
            step0,
            hits,
            self.seed,
            accepted,
        )
    }

    fn overrelax(&mut self, colour: u32) -> Result<()> {
        overrelax_colour(&self.dev, &self.lattice, &mut self.theta, colour)
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.theta.clone())
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        self.theta.copy_from_slice(field);
        Ok(())
    }
}
