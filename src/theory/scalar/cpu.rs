//! CPU twin of `kernels/scalar_local.cu` and the CPU colour passes of the scalar theories.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::action::ScalarCouplings;
use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::philox::{self, key_from_seed, uniform_from_words};
use crate::theory::checkerboard::{
    check_batch, check_steps, for_colour, take_counters, ColourPass, Steps,
};

/// Σ of φ over the 2d neighbours of s, forward then backward per axis (`neighbour_sum`).
#[inline(always)]
fn neighbour_sum(steps: &Steps, phi: &[f64], s: usize) -> f64 {
    let mut acc = 0.0;
    for mu in 0..steps.dim() {
        let x = steps.coord(s, mu);
        acc += phi[steps.step(s, x, mu, true)];
        acc += phi[steps.step(s, x, mu, false)];
    }
    acc
}

/// CPU twin of `scalar_metropolis_dD`: `hits` proposals φ' = φ + δ(2u − 1) at every site of
/// `colour`, hit h drawing [`philox::local_block`] at step `step0 + h`, accepted with
/// min(1, e^{−ΔS}); adds each chain's acceptances to `accepted`. Chain c of the batch is the
/// ensemble's chain `chain0 + c` (which keys its random numbers).
#[allow(clippy::too_many_arguments)]
pub fn metropolis_colour(
    dev: &CpuDevice,
    lat: &Lattice,
    phi: &mut [f64],
    c: &ScalarCouplings,
    delta: f64,
    colour: u32,
    step0: u64,
    hits: u32,
    seed: u64,
    chain0: u32,
    accepted: &mut [u64],
) -> Result<()> {
    let chains = check_batch(lat, phi, accepted.len(), colour)?;
    check_steps(step0, hits, colour)?;
    let key = key_from_seed(seed);
    let steps = Steps::new(lat);
    let counts: Vec<AtomicU64> = (0..chains).map(|_| AtomicU64::new(0)).collect();
    for_colour(dev, lat, phi, colour, |chain, s, pc| {
        let nb = neighbour_sum(&steps, pc, s);
        let mut cur = pc[s];
        let mut acc = 0;
        for h in 0..hits as u64 {
            let b = philox::local_block(key, s as u32, chain0 + chain as u32, step0 + h, colour);
            let prop = cur + delta * (2.0 * uniform_from_words(b[0], b[1]) - 1.0);
            let (p2, c2) = (prop * prop, cur * cur);
            let ds = -c.hop * (prop - cur) * nb + (p2 - c2) * (c.u2 + c.u4 * (p2 + c2));
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

/// The scalar colour passes on the CPU.
pub struct ScalarCpu {
    dev: CpuDevice,
    lattice: Lattice,
    couplings: ScalarCouplings,
    delta: f64,
    seed: u64,
    chain0: u32,
    phi: Vec<f64>,
    accepted: Vec<u64>,
}

impl ScalarCpu {
    /// `chains` chains of `lattice`, φ = 0, proposals of half-width `delta`.
    pub fn new(
        dev: CpuDevice,
        lattice: Lattice,
        chains: usize,
        couplings: ScalarCouplings,
        delta: f64,
        seed: u64,
    ) -> Self {
        ScalarCpu {
            dev,
            phi: vec![0.0; chains * lattice.volume()],
            accepted: vec![0; chains],
            lattice,
            couplings,
            delta,
            seed,
            chain0: 0,
        }
    }
}

impl ColourPass for ScalarCpu {
    fn metropolis(&mut self, colour: u32, step0: u64, hits: u32) -> Result<()> {
        let (c, delta, seed) = (self.couplings, self.delta, self.seed);
        metropolis_colour(
            &self.dev,
            &self.lattice,
            &mut self.phi,
            &c,
            delta,
            colour,
            step0,
            hits,
            seed,
            self.chain0,
            &mut self.accepted,
        )
    }

    fn take_accepted(&mut self) -> Result<Vec<u64>> {
        Ok(take_counters(&mut self.accepted))
    }

    fn overrelax(&mut self, _colour: u32) -> Result<()> {
        Err(Error::InvalidInput(
            "the scalar theories have no overrelaxation".into(),
        ))
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.phi.clone())
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        self.phi.copy_from_slice(field);
        Ok(())
    }

    fn set_first_chain(&mut self, chain0: u32) {
        self.chain0 = chain0;
    }
}
