//! The reference benchmark of the autoregressive networks: the 2D XY model at β = 1, the default
//! network (16 channels, mask A then 2 residual mask-B layers, 5×5 kernels, 4 Beta components,
//! SiLU), f32. Training steps per second at batch 64 (cached generation, energies, one forward
//! and backward pass, Adam), gradient steps per second on a fixed batch (the autodiff alone),
//! samples per second of cached generation, and of naive generation (a whole forward pass per
//! site) for the saving.

use super::generate::DrawKey;
use super::model::CanConfig;
use super::train::{CanStepStats, CanTrainConfig, CanTrainer, STREAM_CAN_SAMPLE};
use crate::device::Device;
use crate::error::Result;
use crate::lattice::Lattice;
use crate::nn::{Ctx, Tape};
use crate::theory::xy::Xy;
use crate::timing::units_per_second;

/// Training batch of the reference.
pub const TRAIN_BATCH: usize = 64;

/// What one benchmark measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CanFigures {
    /// Training steps per second (batch [`TRAIN_BATCH`]).
    pub train_steps_per_second: f64,
    /// Gradient steps per second on a fixed batch of [`TRAIN_BATCH`] (no drawing): log q
    /// forward, REINFORCE loss, backward.
    pub grad_steps_per_second: f64,
    /// Samples per second of cached generation in batches of `sample_batch`.
    pub samples_per_second: f64,
    /// Samples per second of naive generation (V forward passes per batch).
    pub naive_samples_per_second: f64,
    /// The sampling batch.
    pub sample_batch: usize,
}

/// A network ready to be timed.
pub struct CanBench {
    trainer: CanTrainer<f32>,
}

impl CanBench {
    /// The reference network on `device` for a 2D `lattice`.
    pub fn new(device: &Device, lattice: Lattice) -> Result<Self> {
        let xy = Xy::new(lattice, 1.0)?;
        let config = CanTrainConfig {
            batch: TRAIN_BATCH,
            lr: 1e-3,
            seed: 1,
            anneal: 0.995,
        };
        let ctx = Ctx::<f32>::new(device.clone());
        let trainer = CanTrainer::new(&ctx, &CanConfig::default(), xy, config)?;
        Ok(CanBench { trainer })
    }

    fn key(index: u64) -> DrawKey {
        DrawKey {
            seed: 1,
            stream: STREAM_CAN_SAMPLE,
            step: index as u32,
            sample0: 0,
        }
    }

    /// One training step (batch [`TRAIN_BATCH`]).
    pub fn train_step(&mut self) -> Result<CanStepStats> {
        self.trainer.step()
    }

    /// Draws `batch` samples by cached generation (the `index`-th batch of the sampling stream).
    pub fn draw(&self, index: u64, batch: usize) -> Result<Vec<f32>> {
        let (can, params) = (self.trainer.can(), self.trainer.params());
        Ok(can.generate(params, Self::key(index), batch)?.0)
    }

    /// As [`CanBench::draw`] by naive generation (a whole forward pass per site).
    pub fn draw_naive(&self, index: u64, batch: usize) -> Result<Vec<f32>> {
        let (can, params) = (self.trainer.can(), self.trainer.params());
        Ok(can.generate_naive(params, Self::key(index), batch)?.0)
    }

    /// The gradient of a REINFORCE loss on the configurations `u` (fixed weights): log q
    /// forward and backward, no drawing and no optimiser step.
    pub fn grad_step(&self, u: &[f32]) -> Result<()> {
        let (can, params) = (self.trainer.can(), self.trainer.params());
        let b = u.len() / can.volume();
        let weights: Vec<f64> = (0..b).map(|i| i as f64 / b as f64 - 0.5).collect();
        let tape = Tape::new(params.ctx());
        let lq = can.log_q(&tape, params, u)?;
        let w = tape.constant(params.ctx().from_f64(&[b], &weights)?);
        let loss = tape.sum_all(&tape.mul(&w, &lq)?)?;
        tape.backward(&loss).map(|_| ())
    }

    /// Times training for at least `seconds`, then the gradient alone, cached and naive
    /// generation for as long (each after one untimed warm-up call).
    pub fn run(&mut self, seconds: f64, sample_batch: usize) -> Result<CanFigures> {
        self.train_step()?;
        let train = units_per_second(seconds, || self.train_step().map(|_| 1))?;
        let fixed = self.draw(0, TRAIN_BATCH)?;
        self.grad_step(&fixed)?;
        let grad = units_per_second(seconds, || self.grad_step(&fixed).map(|_| 1))?;
        let mut i = 0;
        let cached = units_per_second(seconds, || {
            i += 1;
            self.draw(i, sample_batch).map(|_| sample_batch)
        })?;
        let naive_batch = sample_batch.min(64);
        let naive = units_per_second(seconds, || {
            i += 1;
            self.draw_naive(i, naive_batch).map(|_| naive_batch)
        })?;
        Ok(CanFigures {
            train_steps_per_second: train,
            grad_steps_per_second: grad,
            samples_per_second: cached,
            naive_samples_per_second: naive,
            sample_batch,
        })
    }
}
