//! CPU twins of `kernels/xy.cu` and the CPU colour passes of the XY model; the per-site
//! arithmetic is the kernel's, operation by operation. Each site's unit vector (cos θ, sin θ) is
//! kept beside θ, so a local field is a sum and a proposal costs one sin_cos.

use std::f64::consts::TAU;
use std::sync::atomic::{AtomicU64, Ordering};

use super::wrap;
use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::philox::{self, key_from_seed, uniform_from_words};
use crate::theory::checkerboard::{
    check_batch, check_steps, for_colour, take_counters, ColourPass, Steps,
};

/// The unit vectors (cos θ, sin θ) of a batch, interleaved: the CPU twin of `xy_units`.
pub fn unit_vectors(theta: &[f64]) -> Vec<f64> {
    theta
        .iter()
        .flat_map(|t| {
            let (s, c) = t.sin_cos();
            [c, s]
        })
        .collect()
}

/// The local field Σ over the 2d neighbours of (cos θ_n, sin θ_n), forward then backward per
/// axis (`xy_field`), from one chain's unit vectors `u`.
#[inline(always)]
fn field(steps: &Steps, u: &[f64], s: usize) -> (f64, f64) {
    let (mut c, mut sn) = (0.0, 0.0);
    for mu in 0..steps.dim() {
        let x = steps.coord(s, mu);
        let (f, b) = (steps.step(s, x, mu, true), steps.step(s, x, mu, false));
        c += u[2 * f] + u[2 * b];
        sn += u[2 * f + 1] + u[2 * b + 1];
    }
    (c, sn)
}

/// Sets the unit vectors of the sites of `colour` to (cos θ, sin θ) after a colour pass.
fn refresh_units(
    dev: &CpuDevice,
    lat: &Lattice,
    theta: &[f64],
    unit: &mut [f64],
    colour: u32,
) -> Result<()> {
    let (v, steps) = (lat.volume(), Steps::new(lat));
    dev.for_chunks(2, unit, None, |first, part, _| {
        for (k, pair) in part.chunks_mut(2).enumerate() {
            let i = first + k;
            if steps.colour(i % v) == colour {
                let (s, c) = theta[i].sin_cos();
                pair[0] = c;
                pair[1] = s;
            }
        }
    })
}

fn check_units(theta: &[f64], unit: &[f64]) -> Result<()> {
    if unit.len() != 2 * theta.len() {
        return Err(Error::InvalidInput(format!(
            "{} unit-vector components for {} angles",
            unit.len(),
            theta.len()
        )));
    }
    Ok(())
}

/// CPU twin of `xy_metropolis_dD`: `hits` Metropolis proposals (uniform new angles) at every
/// site of `colour`, hit h drawing [`philox::local_block`] at step `step0 + h`, with the unit
/// vectors `unit` (interleaved (cos θ, sin θ), kept equal to those of θ); adds each chain's
/// acceptances to `accepted`. Chain c of the batch is the ensemble's chain `chain0 + c`.
#[allow(clippy::too_many_arguments)]
pub fn metropolis_colour(
    dev: &CpuDevice,
    lat: &Lattice,
    theta: &mut [f64],
    unit: &mut [f64],
    beta: f64,
    colour: u32,
    step0: u64,
    hits: u32,
    seed: u64,
    chain0: u32,
    accepted: &mut [u64],
) -> Result<()> {
    let chains = check_batch(lat, theta, accepted.len(), colour)?;
    check_units(theta, unit)?;
    check_steps(step0, hits, colour)?;
    let (key, v) = (key_from_seed(seed), lat.volume());
    let steps = Steps::new(lat);
    let counts: Vec<AtomicU64> = (0..chains).map(|_| AtomicU64::new(0)).collect();
    let units: &[f64] = unit;
    for_colour(dev, lat, theta, colour, |chain, s, th| {
        let u = &units[2 * chain * v..2 * (chain + 1) * v];
        let (fc, fs) = field(&steps, u, s);
        let (mut cur, mut c, mut sn) = (th[s], u[2 * s], u[2 * s + 1]);
        let mut acc = 0;
        for h in 0..hits as u64 {
            let b = philox::local_block(key, s as u32, chain0 + chain as u32, step0 + h, colour);
            let prop = TAU * uniform_from_words(b[0], b[1]);
            let (ps, pc) = prop.sin_cos();
            let ds = -beta * ((pc - c) * fc + (ps - sn) * fs);
            if uniform_from_words(b[2], b[3]) < (-ds).exp() {
                (cur, c, sn) = (prop, pc, ps);
                acc += 1;
            }
        }
        counts[chain].fetch_add(acc, Ordering::Relaxed);
        cur
    })?;
    refresh_units(dev, lat, theta, unit, colour)?;
    for (a, c) in accepted.iter_mut().zip(counts) {
        *a += c.into_inner();
    }
    Ok(())
}

/// CPU twin of `xy_overrelax_dD`: θ → 2 arg(C + iS) − θ at every site of `colour`, (C, S) the
/// local field of the unit vectors (unchanged where it vanishes).
pub fn overrelax_colour(
    dev: &CpuDevice,
    lat: &Lattice,
    theta: &mut [f64],
    unit: &mut [f64],
    colour: u32,
) -> Result<()> {
    check_batch(lat, theta, theta.len() / lat.volume(), colour)?;
    check_units(theta, unit)?;
    let (steps, v) = (Steps::new(lat), lat.volume());
    let units: &[f64] = unit;
    for_colour(dev, lat, theta, colour, |chain, s, th| {
        let (fc, fs) = field(&steps, &units[2 * chain * v..2 * (chain + 1) * v], s);
        if fc != 0.0 || fs != 0.0 {
            wrap(2.0 * fs.atan2(fc) - th[s])
        } else {
            th[s]
        }
    })?;
    refresh_units(dev, lat, theta, unit, colour)
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
    chain0: u32,
    theta: Vec<f64>,
    accepted: Vec<u64>,
    unit: Vec<f64>,
}

impl XyCpu {
    /// `chains` chains of `lattice` at coupling β, all angles 0.
    pub fn new(dev: CpuDevice, lattice: Lattice, chains: usize, beta: f64, seed: u64) -> Self {
        let theta = vec![0.0; chains * lattice.volume()];
        XyCpu {
            dev,
            unit: unit_vectors(&theta),
            theta,
            accepted: vec![0; chains],
            lattice,
            beta,
            seed,
            chain0: 0,
        }
    }
}

impl ColourPass for XyCpu {
    fn metropolis(&mut self, colour: u32, step0: u64, hits: u32) -> Result<()> {
        let (dev, lat) = (&self.dev, &self.lattice);
        metropolis_colour(
            dev,
            lat,
            &mut self.theta,
            &mut self.unit,
            self.beta,
            colour,
            step0,
            hits,
            self.seed,
            self.chain0,
            &mut self.accepted,
        )
    }

    fn take_accepted(&mut self) -> Result<Vec<u64>> {
        Ok(take_counters(&mut self.accepted))
    }

    fn overrelax(&mut self, colour: u32) -> Result<()> {
        overrelax_colour(
            &self.dev,
            &self.lattice,
            &mut self.theta,
            &mut self.unit,
            colour,
        )
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.theta.clone())
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        self.theta.copy_from_slice(field);
        self.unit = unit_vectors(field);
        Ok(())
    }

    fn set_first_chain(&mut self, chain0: u32) {
        self.chain0 = chain0;
    }
}
