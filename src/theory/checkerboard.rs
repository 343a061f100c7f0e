//! Checkerboard sweeps of f64 fields (φ⁴, the oscillator, XY): the two colours updated in turn,
//! each colour pass one kernel launch on the GPU or one parallel pass on the CPU. A theory gives
//! its colour passes ([`ColourPass`]) for each backend; [`Checkerboard`] turns them into a
//! [`Sweeper`] with the schedule, the random-number steps and the acceptance bookkeeping.

use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::theory::{first_local_step, LocalAlgorithm, Sweeper};

/// One theory's colour passes on one backend, over a batch `[chain][site]` it holds.
pub trait ColourPass: Send {
    /// `hits` Metropolis proposals at every site of `colour`, hit h drawing at local step
    /// `step0 + h` ([`crate::philox::local_block`]); adds each chain's acceptances to the
    /// pass's counters.
    fn metropolis(&mut self, colour: u32, step0: u64, hits: u32) -> Result<()>;
    /// The acceptances counted since the last call, per chain (the counters restart at zero):
    /// read once per sweep, so a GPU pass pays one copy per sweep, not one per colour.
    fn take_accepted(&mut self) -> Result<Vec<u64>>;
    /// One overrelaxation pass over `colour` (theories without one refuse).
    fn overrelax(&mut self, colour: u32) -> Result<()>;
    /// The fields.
    fn fields(&self) -> Result<Vec<f64>>;
    /// Sets the fields (already checked).
    fn set_fields(&mut self, field: &[f64]) -> Result<()>;
    /// Keys the random numbers by the global chain index `chain0 + chain` (a share of an
    /// ensemble).
    fn set_first_chain(&mut self, chain0: u32);
    /// A Swendsen–Wang update of the embedded signs (coupling `hop`, update `t`) on the pass's
    /// own buffers, where it has a device path (`kernels/cluster.cu`); `false` when it has none
    /// and the caller updates the fields on the host.
    fn swendsen_wang(&mut self, hop: f64, seed: u64, t: u32) -> Result<bool> {
        let _ = (hop, seed, t);
        Ok(false)
    }
}

/// A [`Sweeper`] from colour passes: Metropolis does both colours with `hits` each;
/// overrelaxation does one reflection sweep and then one Metropolis sweep (reflections keep the
/// action fixed, so they need the Metropolis sweep to be ergodic).
pub struct Checkerboard {
    pass: Box<dyn ColourPass>,
    reflect: bool,
    hits: u32,
    chains: usize,
    volume: usize,
    check: fn(&[f64]) -> Result<()>,
}

impl Checkerboard {
    /// The sweeper of `algorithm` over `pass`, whose batch holds `chains` chains of `lat`;
    /// `check` validates the values of a new field.
    pub fn new(
        pass: Box<dyn ColourPass>,
        algorithm: LocalAlgorithm,
        lat: &Lattice,
        chains: usize,
        check: fn(&[f64]) -> Result<()>,
    ) -> Self {
        Checkerboard {
            pass,
            reflect: algorithm == LocalAlgorithm::Overrelax,
            hits: algorithm.hits(),
            chains,
            volume: lat.volume(),
            check,
        }
    }
}

impl Sweeper for Checkerboard {
    fn sweep(&mut self, sweep: u64) -> Result<Vec<f64>> {
        if self.reflect {
            self.pass.overrelax(0)?;
            self.pass.overrelax(1)?;
        }
        let step0 = first_local_step(sweep, self.hits)?;
        for colour in 0..2 {
            self.pass.metropolis(colour, step0, self.hits)?;
        }
        let accepted = self.pass.take_accepted()?;
        let proposals = (self.volume as u64 * self.hits as u64) as f64;
        Ok(accepted.iter().map(|&a| a as f64 / proposals).collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        self.pass.fields()
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        if field.len() != self.chains * self.volume {
            return Err(Error::InvalidInput(format!(
                "{} values for {} chains of {} sites",
                field.len(),
                self.chains,
                self.volume
            )));
        }
        (self.check)(field)?;
        self.pass.set_fields(field)
    }

    fn site_updates(&self) -> u64 {
        (self.chains * self.volume) as u64 * (self.hits as u64 + self.reflect as u64)
    }

    fn set_first_chain(&mut self, chain0: u32) {
        self.pass.set_first_chain(chain0)
    }

    fn swendsen_wang(&mut self, hop: f64, seed: u64, t: u32) -> Result<bool> {
        self.pass.swendsen_wang(hop, seed, t)
    }

    fn chains(&self) -> usize {
        self.chains
    }
}

/// Refuses a checkerboard on a lattice with an odd extent (neighbours of one colour would be
/// updated together).
pub fn require_even(lat: &Lattice, theory: &str) -> Result<()> {
    if lat.extents().iter().any(|l| l % 2 != 0) {
        return Err(Error::InvalidInput(format!(
            "the checkerboard updates of {theory} need even extents; got {}",
            lat.label()
        )));
    }
    Ok(())
}

/// Neighbour arithmetic of one chain, as `site_coord`/`site_step` in `kernels/lattice.cuh`.
pub struct Steps {
    ext: Vec<usize>,
    stride: Vec<usize>,
}

impl Steps {
    /// The steps of `lat`.
    pub fn new(lat: &Lattice) -> Self {
        Steps {
            ext: lat.extents().to_vec(),
            stride: lat.strides(),
        }
    }

    /// Dimension d.
    pub fn dim(&self) -> usize {
        self.ext.len()
    }

    /// Coordinate μ of site s.
    #[inline(always)]
    pub fn coord(&self, s: usize, mu: usize) -> usize {
        (s / self.stride[mu]) % self.ext[mu]
    }

    /// The neighbour s ± μ̂ of site s with coordinate x along μ.
    #[inline(always)]
    pub fn step(&self, s: usize, x: usize, mu: usize, forward: bool) -> usize {
        let (st, l) = (self.stride[mu], self.ext[mu]);
        match (forward, x) {
            (true, x) if x == l - 1 => s - (l - 1) * st,
            (true, _) => s + st,
            (false, 0) => s + (l - 1) * st,
            (false, _) => s - st,
        }
    }

    /// Checkerboard colour of site s.
    pub fn colour(&self, s: usize) -> u32 {
        ((0..self.ext.len())
            .map(|mu| self.coord(s, mu))
            .sum::<usize>()
            % 2) as u32
    }
}

/// Checks a batch of whole chains of `lat` and one counter per chain; returns the chains.
pub fn check_batch(lat: &Lattice, field: &[f64], counters: usize, colour: u32) -> Result<usize> {
    let v = lat.volume();
    if field.is_empty() || !field.len().is_multiple_of(v) || colour > 1 {
        return Err(Error::InvalidInput(format!(
            "colour pass: {} values are not whole chains of {v} sites (colour {colour})",
            field.len()
        )));
    }
    if counters != field.len() / v {
        return Err(Error::InvalidInput(format!(
            "colour pass: {counters} counters for {} chains",
            field.len() / v
        )));
    }
    Ok(field.len() / v)
}

/// Replaces every site of `colour` by `f(chain, site, chain's field)`, rows spread over the
/// threads. The other colour, which `f` reads, is not changed by the pass, so `f` reads a
/// snapshot and the result is that of any order.
pub fn for_colour(
    dev: &CpuDevice,
    lat: &Lattice,
    field: &mut [f64],
    colour: u32,
    f: impl Fn(usize, usize, &[f64]) -> f64 + Sync,
) -> Result<()> {
    let snapshot = field.to_vec();
    let (v, row) = (lat.volume(), lat.extents()[lat.dim() - 1]);
    let steps = Steps::new(lat);
    dev.for_chunks(row, field, None, |first_row, rows, _| {
        for (k, t) in rows.iter_mut().enumerate() {
            let i = first_row * row + k;
            let (chain, s) = (i / v, i % v);
            if steps.colour(s) == colour {
                *t = f(chain, s, &snapshot[chain * v..(chain + 1) * v]);
            }
        }
    })
}

/// Refuses local steps `step0 .. step0 + hits` that the random-number counters cannot tell
/// apart (beyond [`crate::philox::MAX_STEPS`]), for every colour pass.
pub fn check_steps(step0: u64, hits: u32, colour: u32) -> Result<()> {
    let last = step0.saturating_add((hits as u64).max(1) - 1);
    crate::philox::counter_words(last, crate::philox::STREAM_LOCAL + colour).map(|_| ())
}

/// Per-chain acceptance counters of a CPU colour pass, returned and restarted at zero.
pub(crate) fn take_counters(counters: &mut Vec<u64>) -> Vec<u64> {
    let zeros = vec![0; counters.len()];
    std::mem::replace(counters, zeros)
}

/// Per-chain acceptance counters of a GPU colour pass: read and cleared once per sweep.
pub(crate) fn take_device_counters(
    dev: &crate::device::CudaDevice,
    counters: &mut cudarc::driver::CudaSlice<u64>,
) -> Result<Vec<u64>> {
    let s = dev.stream();
    let out = s.clone_dtoh(counters)?;
    s.memset_zeros(counters)?;
    Ok(out)
}
