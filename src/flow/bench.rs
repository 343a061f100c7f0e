//! The reference benchmark of flows: φ⁴ at the L = 8 point of Albergo, Kanwar, Shanahan (2019)
//! (m² = −4, λ₀ = 8), 16 affine couplings with checkerboard masks, conv nets 1→8→8→2 (3×3,
//! periodic), f32. Training steps per second at batch 64 (prior draws, flow, action, reverse-KL
//! loss, backward, Adam) and samples per second of drawing from the flow (forward only, no tape).

use super::job::field_scale;
use super::target::Target;
use super::train::{sample, Proposals, StepStats, TrainConfig, Trainer, STREAM_FLOW_SAMPLE};
use super::FlowConfig;
use crate::action::{standard_to_hopping, StandardCouplings};
use crate::device::{memory, Device};
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::nn::Ctx;
use crate::theory::TheoryConfig;
use crate::timing::units_per_second;

/// Training batch of the reference.
pub const TRAIN_BATCH: usize = 64;

/// A flow ready to be timed.
pub struct FlowBench {
    trainer: Trainer<f32>,
}

/// What one benchmark measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowFigures {
    /// Training steps per second (batch [`TRAIN_BATCH`]).
    pub train_steps_per_second: f64,
    /// Samples per second drawn from the flow in batches of `sample_batch`.
    pub samples_per_second: f64,
    /// The sampling batch.
    pub sample_batch: usize,
}

impl FlowBench {
    /// The reference flow on `device` for a 2D `lattice` (Albergo's couplings).
    pub fn new(device: &Device, lattice: Lattice) -> Result<Self> {
        if lattice.dim() != 2 {
            return Err(Error::InvalidInput(format!(
                "bench flow runs 2D lattices (the flow papers' phi4), got {}",
                lattice.label()
            )));
        }
        let (kappa, lambda) = standard_to_hopping(
            StandardCouplings {
                m2: -4.0,
                lambda0: 8.0,
            },
            2,
        )?;
        let theory = TheoryConfig::Phi4 {
            lattice,
            kappa,
            lambda,
        };
        let action = theory
            .build()?
            .scalar_action()
            .ok_or_else(|| Error::InvalidInput("phi4 has a real field".into()))?;
        let volume = action.lattice().volume() as u128;
        // About 20 activations of 8 channels per site and layer with gradients, for 16 layers.
        memory::check(
            device,
            4 * 16 * 20 * 8 * volume * TRAIN_BATCH as u128,
            "bench flow",
            "use smaller --dims",
        )?;
        let target = Target::new(action, field_scale(&theory))?;
        let ctx = Ctx::<f32>::new(device.clone());
        let config = TrainConfig {
            batch: TRAIN_BATCH,
            lr: 1e-3,
            seed: 1,
        };
        let trainer = Trainer::new(&ctx, &FlowConfig::albergo(1), target, config)?;
        Ok(FlowBench { trainer })
    }

    /// One training step (batch [`TRAIN_BATCH`]).
    pub fn train_step(&mut self) -> Result<StepStats> {
        self.trainer.step()
    }

    /// Draws `batch` samples from the flow (the `index`-th batch of the sampling stream).
    pub fn draw(&self, index: u64, batch: usize) -> Result<Proposals> {
        let t = &self.trainer;
        let key = (1, STREAM_FLOW_SAMPLE, index);
        sample(t.flow(), t.params(), t.target(), key, 0, batch)
    }

    /// Times training for at least `seconds`, then sampling in batches of `sample_batch` for
    /// as long (each after one untimed warm-up call).
    pub fn run(&mut self, seconds: f64, sample_batch: usize) -> Result<FlowFigures> {
        self.train_step()?;
        let train = units_per_second(seconds, || self.train_step().map(|_| 1))?;
        self.draw(0, sample_batch)?;
        let mut batches = 0u64;
        let samples = units_per_second(seconds, || {
            batches += 1;
            self.draw(batches, sample_batch).map(|_| sample_batch)
        })?;
        Ok(FlowFigures {
            train_steps_per_second: train,
            samples_per_second: samples,
            sample_batch,
        })
    }
}
