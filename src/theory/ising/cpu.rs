//! CPU twin of `kernels/ising.cu`: one sublattice colour of every chain updated word by word,
//! rows spread over the threads. Decisions are integer comparisons of Philox words, so the
//! result is bit-identical to the kernel's for any number of threads.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{draw_counter, update_word, Draws, Packing, Rule};
use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::philox::key_from_seed;
use crate::theory::{first_local_step, Sweeper};

#[allow(clippy::too_many_arguments)]
/// CPU twin of `ising_update`: updates colour `colour` of the packed batch `spins`
/// (`[colour][chain][row][word]`) with `rule` at local step `step`, adding each chain's number
/// of changed spins to `changed[chain]`.
pub fn update_colour(
    dev: &CpuDevice,
    pk: &Packing,
    spins: &mut [u64],
    colour: usize,
    rule: &Rule,
    seed: u64,
    step: u64,
    changed: &mut [u64],
) -> Result<()> {
    let n = pk.colour_words();
    if spins.len() != 2 * n || changed.len() != pk.chains || colour > 1 {
        return Err(Error::InvalidInput(format!(
            "ising update: {} words and {} counters for {} chains of {} x {} words (colour {colour})",
            spins.len(),
            changed.len(),
            pk.chains,
            pk.rows,
            pk.words
        )));
    }
    let (c2, c3) = draw_counter(step, colour)?;
    let key = key_from_seed(seed);
    let (first, second) = spins.split_at_mut(n);
    let (own, other): (&mut [u64], &[u64]) = if colour == 0 {
        (first, second)
    } else {
        (second, first)
    };
    let counts: Vec<AtomicU64> = (0..pk.chains).map(|_| AtomicU64::new(0)).collect();
    let w = pk.words;
    dev.for_heavy_chunks(w, own, |first_row, rows, _| {
        for (r, row) in rows.chunks_mut(w).enumerate() {
            let g = first_row + r;
            let (chain, y) = (g / pk.rows, g % pk.rows);
            let row_of = |yy: usize| &other[(chain * pk.rows + yy) * w..][..w];
            let (same, up) = (row_of(y), row_of((y + 1) % pk.rows));
            let down = row_of((y + pk.rows - 1) % pk.rows);
            let mut flips = 0;
            for (k, s) in row.iter_mut().enumerate() {
                let index = (y * w + k) as u32;
                let mut draws = Draws::new(key, index, pk.first_chain + chain as u32, c2, c3);
                let draw = |i| draws.word(i);
                let new = update_word(*s, same, up[k], down[k], k, y, colour, pk, rule, draw);
                flips += (new ^ *s).count_ones() as u64;
                *s = new;
            }
            counts[chain].fetch_add(flips, Ordering::Relaxed);
        }
    })?;
    for (c, a) in changed.iter_mut().zip(counts) {
        *c += a.into_inner();
    }
    Ok(())
}

/// Checkerboard Metropolis or heat-bath on the CPU.
pub struct IsingCpu {
    dev: CpuDevice,
    pk: Packing,
    rule: Rule,
    hits: u32,
    seed: u64,
    spins: Vec<u64>,
}

impl IsingCpu {
    /// `hits` updates per site per sweep with `rule`, all spins up.
    pub fn new(dev: CpuDevice, pk: Packing, rule: Rule, hits: u32, seed: u64) -> Self {
        IsingCpu {
            dev,
            spins: vec![0; 2 * pk.colour_words()],
            pk,
            rule,
            hits,
            seed,
        }
    }
}

impl Sweeper for IsingCpu {
    fn sweep(&mut self, sweep: u64) -> Result<Vec<f64>> {
        let mut changed = vec![0u64; self.pk.chains];
        for colour in 0..2 {
            for hit in 0..self.hits as u64 {
                let step = first_local_step(sweep, self.hits)? + hit;
                update_colour(
                    &self.dev,
                    &self.pk,
                    &mut self.spins,
                    colour,
                    &self.rule,
                    self.seed,
                    step,
                    &mut changed,
                )?;
            }
        }
        let proposals = (self.site_updates() / self.pk.chains as u64) as f64;
        Ok(changed.iter().map(|&c| c as f64 / proposals).collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.pk.unpack(&self.spins))
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        self.spins = self.pk.pack(field)?;
        Ok(())
    }

    fn site_updates(&self) -> u64 {
        (2 * self.pk.rows * self.pk.bits * self.pk.chains) as u64 * self.hits as u64
    }

    fn chains(&self) -> usize {
        self.pk.chains
    }

    fn set_first_chain(&mut self, chain0: u32) {
        self.pk.first_chain = chain0;
    }
}
