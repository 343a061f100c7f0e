//! Self-training of a flow by the reverse Kullback–Leibler divergence (no data): each step draws
//! a batch from the prior, pushes it through the flow, and minimises
//! E_q[log q(φ) + S(φ)] = KL(q‖p) − log Z by Adam (Albergo, Kanwar, Shanahan 2019, eq. 14).
//! Every draw is keyed by (site, sample, step), so a resumed training is bit-identical.

use super::coupling::Direction;
use super::model::{log_prior, Flow, FlowConfig};
use super::target::{ActionOp, Target};
use crate::error::{Error, Result};
use crate::nn::{Adam, Ctx, ParamStore, Real, Tape};
use crate::philox;

/// Philox stream of the prior draws of training (chain word = sample, step word = step).
pub const STREAM_FLOW_TRAIN: u32 = 7;
/// Philox stream of the prior draws of sampling (chain word = chain, step word = update).
pub const STREAM_FLOW_SAMPLE: u32 = 8;

/// A batch from the flow: the flow variables y `[B, V]`, log q(y) and S(c·y) per sample.
#[derive(Clone, Debug)]
pub struct Proposals {
    /// Configurations in the flow's variables, `[sample][site]`.
    pub y: Vec<f64>,
    /// log q(y) per sample (exact).
    pub log_q: Vec<f64>,
    /// S per sample.
    pub action: Vec<f64>,
}

impl Proposals {
    /// log w = −S − log q per sample (the importance weight up to log Z).
    pub fn log_weights(&self) -> Vec<f64> {
        self.action
            .iter()
            .zip(&self.log_q)
            .map(|(s, q)| -s - q)
            .collect()
    }
}

/// ESS per sample of importance weights: (Σw)² / (N Σw²), computed from log w without overflow.
pub fn ess_per_sample(log_w: &[f64]) -> f64 {
    let n = log_w.len();
    let max = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if n == 0 || !max.is_finite() {
        return 0.0;
    }
    let (s1, s2) = log_w.iter().fold((0.0, 0.0), |(a, b), &l| {
        let w = (l - max).exp();
        (a + w, b + w * w)
    });
    s1 * s1 / (n as f64 * s2)
}

/// The acceptance rate of an independence Metropolis chain run through the batch in order (the
/// training log's estimate of what NMCMC will accept); uniforms keyed by (sample, step).
pub fn acceptance_estimate(log_w: &[f64], seed: u64, step: u32) -> f64 {
    let Some((&first, rest)) = log_w.split_first() else {
        return 0.0;
    };
    let mut current = first;
    let mut accepted = 0usize;
    for (i, &lw) in rest.iter().enumerate() {
        let u = philox::uniform(seed, i as u32 + 1, step, philox::STREAM_ACCEPT);
        if u.ln() < lw - current {
            current = lw;
            accepted += 1;
        }
    }
    accepted as f64 / rest.len().max(1) as f64
}

/// Standard normals `[B, V]` for samples `first..first + batch` at `step` of `stream`.
pub fn prior_draws(
    seed: u64,
    stream: u32,
    step: u64,
    first: usize,
    batch: usize,
    volume: usize,
) -> Result<Vec<f64>> {
    let step = u32::try_from(step).map_err(|_| {
        Error::InvalidInput(format!(
            "step {step} is beyond the 2^32 the prior draws key"
        ))
    })?;
    let mut z = vec![0.0; batch * volume];
    for (b, zb) in z.chunks_mut(volume.max(1)).enumerate() {
        philox::fill_normals(zb, seed, (first + b) as u32, step, stream);
    }
    Ok(z)
}

/// What one training step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Steps done, this one included.
    pub step: u64,
    /// The loss E_q[log q + S] over the batch.
    pub loss: f64,
    /// ESS per sample of the batch.
    pub ess: f64,
    /// Independence-Metropolis acceptance estimated on the batch.
    pub acceptance: f64,
}

/// Training hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Samples per step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seed of the prior draws.
    pub seed: u64,
}

impl TrainConfig {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<()> {
        if self.batch < 2 || self.batch > 1 << 20 {
            return Err(Error::InvalidInput(format!(
                "--batch {} must be between 2 and 2^20",
                self.batch
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr < 1.0) {
            return Err(Error::InvalidInput(format!(
                "--lr {} must be in (0, 1)",
                self.lr
            )));
        }
        Ok(())
    }
}

/// A flow, its parameters, its target and its optimiser.
pub struct Trainer<T: Real> {
    flow: Flow<T>,
    store: ParamStore<T>,
    adam: Adam<T>,
    target: Target,
    config: TrainConfig,
    step: u64,
}

impl<T: Real> Trainer<T> {
    /// A fresh flow of `flow` for `target` on `ctx`.
    pub fn new(
        ctx: &Ctx<T>,
        flow: &FlowConfig,
        target: Target,
        config: TrainConfig,
    ) -> Result<Self> {
        config.validate()?;
        let mut store = ParamStore::new(ctx);
        let flow = Flow::new(flow, &target, &mut store)?;
        Ok(Trainer {
            flow,
            store,
            adam: Adam::new(config.lr),
            target,
            config,
            step: 0,
        })
    }

    /// Replaces the parameters and the optimiser's state (a resume): `steps` done so far.
    pub fn restore(
        &mut self,
        params: ParamStore<T>,
        steps: u64,
        adam: &ParamStore<T>,
    ) -> Result<()> {
        for name in self.store.names() {
            let (have, want) = (params.get(&name)?.shape(), self.store.get(&name)?.shape());
            if have != want {
                return Err(Error::InvalidInput(format!(
                    "parameter {name} has shape {have:?}, the flow needs {want:?}"
                )));
            }
        }
        self.store = params;
        self.adam.restore(steps as usize, adam)?;
        self.step = steps;
        Ok(())
    }

    /// The flow.
    pub fn flow(&self) -> &Flow<T> {
        &self.flow
    }

    /// The parameters.
    pub fn params(&self) -> &ParamStore<T> {
        &self.store
    }

    /// The parameters, mutably (e.g. to start at the identity).
    pub fn params_mut(&mut self) -> &mut ParamStore<T> {
        &mut self.store
    }

    /// The optimiser.
    pub fn optimiser(&self) -> &Adam<T> {
        &self.adam
    }

    /// Steps done.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// One step of reverse-KL training.
    pub fn step(&mut self) -> Result<StepStats> {
        let (b, v) = (self.config.batch, self.flow.volume());
        let z = prior_draws(self.config.seed, STREAM_FLOW_TRAIN, self.step, 0, b, v)?;
        let log_p = log_prior(&z, v);
        let ctx = self.store.ctx().clone();
        let tape = Tape::new(&ctx);
        let zv = tape.constant(ctx.from_f64(&self.flow.shape(b), &z)?);
        let (y, log_det) = self
            .flow
            .push(&tape, &self.store, &zv, Direction::Forward)?;
        let s = tape.apply(ActionOp(self.target.clone()), &[&y])?;
        // log q = log p(z) − Σ log|det|; loss = mean(log q + S).
        let lp = tape.constant(ctx.from_f64(&[b], &log_p)?);
        let log_q = tape.sub(&lp, &log_det)?;
        let loss = tape.mean_all(&tape.add(&log_q, &s)?)?;
        let (lq, sv) = (log_q.value().to_f64()?, s.value().to_f64()?);
        let loss_value = loss.value().to_f64()?[0];
        if !loss_value.is_finite() {
            return Err(Error::NonFinite(format!(
                "the flow's loss is {loss_value} at step {}: lower --lr",
                self.step
            )));
        }
        let grads = tape.backward(&loss)?;
        drop((zv, y, log_det, s, lp, log_q, loss));
        self.adam.step(&mut self.store, &grads)?;
        let log_w: Vec<f64> = sv.iter().zip(&lq).map(|(s, q)| -s - q).collect();
        let step32 = u32::try_from(self.step).unwrap_or(u32::MAX);
        self.step += 1;
        Ok(StepStats {
            step: self.step,
            loss: loss_value,
            ess: ess_per_sample(&log_w),
            acceptance: acceptance_estimate(&log_w, self.config.seed, step32),
        })
    }
}

/// Draws `batch` configurations from a flow without recording (samples `first..first + batch`
/// of update `index` on `stream`).
pub fn sample<T: Real>(
    flow: &Flow<T>,
    store: &ParamStore<T>,
    target: &Target,
    key: (u64, u32, u64),
    first: usize,
    batch: usize,
) -> Result<Proposals> {
    let (seed, stream, index) = key;
    let v = flow.volume();
    let z = prior_draws(seed, stream, index, first, batch, v)?;
    let log_p = log_prior(&z, v);
    let ctx = store.ctx();
    let tape = Tape::new(ctx);
    tape.set_grad_enabled(false);
    let zv = tape.constant(ctx.from_f64(&flow.shape(batch), &z)?);
    let (y, log_det) = flow.push(&tape, store, &zv, Direction::Forward)?;
    let y = y.value().to_f64()?;
    let log_q: Vec<f64> = log_p
        .iter()
        .zip(log_det.value().to_f64()?)
        .map(|(p, d)| p - d)
        .collect();
    let action = y.chunks(v).map(|c| target.action_of(c)).collect();
    Ok(Proposals { y, log_q, action })
}

/// log q(y) of given configurations `[B, V]` through the inverse flow: log p(z) + Σ log|det| of
/// the inverse maps.
pub fn log_density<T: Real>(flow: &Flow<T>, store: &ParamStore<T>, y: &[f64]) -> Result<Vec<f64>> {
    let v = flow.volume();
    if v == 0 || !y.len().is_multiple_of(v) {
        return Err(Error::InvalidInput(format!(
            "{} values are not whole configurations of {v} sites",
            y.len()
        )));
    }
    let batch = y.len() / v;
    let ctx = store.ctx();
    let tape = Tape::new(ctx);
    tape.set_grad_enabled(false);
    let yv = tape.constant(ctx.from_f64(&flow.shape(batch), y)?);
    let (z, log_det) = flow.push(&tape, store, &yv, Direction::Inverse)?;
    let log_p = log_prior(&z.value().to_f64()?, v);
    Ok(log_p
        .iter()
        .zip(log_det.value().to_f64()?)
        .map(|(p, d)| p + d)
        .collect())
}
