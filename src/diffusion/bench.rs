//! The reference benchmark of the score networks: the default U-Net (channels 16, 32, 4 groups,
//! 16 Fourier frequencies, periodic padding, f32) on an L×L lattice. Training samples per second
//! at batch 64 (denoising score matching: the noisy batch, one forward and backward pass, Adam,
//! the moving average), and score evaluations per second at a sampling batch (the cost of one
//! step of every reverse-process sampler), from which the configurations per second of an N-step
//! sampler follow.

use super::job::Trainee;
use super::sde::VeSde;
use super::unet::{ScoreConfig, ScoreNet};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{Adam, Ctx, ParamStore};
use crate::philox;
use crate::timing::units_per_second;

/// Training batch of the reference.
pub const TRAIN_BATCH: usize = 64;

/// What one benchmark measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiffusionFigures {
    /// Training samples per second (steps of batch [`TRAIN_BATCH`]).
    pub train_samples_per_second: f64,
    /// Score evaluations (one configuration, one network pass) per second at `sample_batch`.
    pub evaluations_per_second: f64,
    /// The sampling batch.
    pub sample_batch: usize,
}

impl DiffusionFigures {
    /// Configurations per second of a sampler taking `steps` score evaluations per draw.
    pub fn configurations_per_second(&self, steps: usize) -> f64 {
        self.evaluations_per_second / steps.max(1) as f64
    }
}

/// A network ready to be timed.
pub struct DiffusionBench {
    net: ScoreNet,
    weights: ParamStore<f32>,
    ema: ParamStore<f32>,
    adam: Adam<f32>,
    sde: VeSde,
    volume: usize,
}

impl DiffusionBench {
    /// The reference network on `device` for `[h, w]` lattices.
    pub fn new(device: &Device, dims: [usize; 2]) -> Result<Self> {
        let ctx = Ctx::<f32>::new(device.clone());
        let mut weights = ParamStore::new(&ctx);
        let net = ScoreNet::new(&ScoreConfig::default(), dims, &mut weights)?;
        let mut ema = ParamStore::new(&ctx);
        for name in weights.names() {
            ema.insert(&name, weights.get(&name)?.copy()?);
        }
        Ok(DiffusionBench {
            net,
            weights,
            ema,
            adam: Adam::new(1e-3),
            sde: VeSde::new(25.0)?,
            volume: dims[0] * dims[1],
        })
    }

    /// Standard normals `[n]` of draw `step` on `stream`.
    fn normals(&self, n: usize, step: u32, stream: u32) -> Vec<f64> {
        let mut v = vec![0.0; n];
        philox::fill_normals(&mut v, 1, 0, step, stream);
        v
    }

    /// One training step of batch [`TRAIN_BATCH`] on Gaussian stand-in data (the cost does not
    /// depend on the data).
    pub fn train_step(&mut self, step: u32) -> Result<f64> {
        let n = TRAIN_BATCH * self.volume;
        let (x0, z) = (self.normals(n, step, 0), self.normals(n, step, 1));
        let t: Vec<f64> = (0..TRAIN_BATCH)
            .map(|b| 1e-3 + 0.999 * philox::uniform(1, b as u32, step, 2))
            .collect();
        let mut model = Trainee {
            net: &self.net,
            weights: &mut self.weights,
            ema: &mut self.ema,
            adam: &mut self.adam,
        };
        let loss = model.step(&self.sde, (&x0, &t, &z), 0.999)?;
        if !loss.is_finite() {
            return Err(Error::NonFinite("the benchmark's loss".into()));
        }
        Ok(loss)
    }

    /// s(x, t) of `batch` configurations at one time: one step of a reverse-process sampler.
    pub fn evaluate(&self, batch: usize, t: f64) -> Result<Vec<f64>> {
        let x: Vec<f64> = self
            .normals(batch * self.volume, 0, 3)
            .into_iter()
            .map(|z| z * self.sde.marginal_std(t))
            .collect();
        self.net.evaluate(&self.ema, &self.sde, &x, &vec![t; batch])
    }

    /// Times training for at least `seconds`, then score evaluations at `sample_batch` for as
    /// long (each after one untimed warm-up call).
    pub fn run(&mut self, seconds: f64, sample_batch: usize) -> Result<DiffusionFigures> {
        self.train_step(0)?;
        let mut step = 0;
        let train = units_per_second(seconds, || {
            step += 1;
            self.train_step(step).map(|_| TRAIN_BATCH)
        })?;
        self.evaluate(sample_batch, 0.5)?;
        let eval = units_per_second(seconds, || {
            self.evaluate(sample_batch, 0.5).map(|_| sample_batch)
        })?;
        Ok(DiffusionFigures {
            train_samples_per_second: train,
            evaluations_per_second: eval,
            sample_batch,
        })
    }
}
