//! Adam and AdamW (one fused kernel per parameter tensor), gradient clipping by global norm, and
//! learning-rate schedules.

use std::collections::BTreeMap;

use super::kernels::{self, AdamHyper, Unary};
use super::params::ParamStore;
use super::tape::Grads;
use super::tensor::{Real, Tensor};
use crate::error::{Error, Result};

/// Steps between checks of the gradient norm for non-finite values when clipping is off.
pub const NORM_CHECK_EVERY: usize = 50;

/// Learning rate as a function of the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Cosine decay from the base rate to `min_lr` over `total` steps, then `min_lr`.
    Cosine {
        /// Steps of the decay.
        total: usize,
        /// Final rate.
        min_lr: f64,
    },
    /// The base rate times `gamma` every `every` steps.
    Step {
        /// Steps between reductions.
        every: usize,
        /// Factor per reduction.
        gamma: f64,
    },
}

impl Schedule {
    /// The rate at `step` (0-based) for base rate `lr`.
    pub fn rate(&self, lr: f64, step: usize) -> f64 {
        match *self {
            Schedule::Constant => lr,
            Schedule::Cosine { total, min_lr } => {
                let x = (step.min(total) as f64 / total.max(1) as f64) * std::f64::consts::PI;
                min_lr + 0.5 * (lr - min_lr) * (1.0 + x.cos())
            }
            Schedule::Step { every, gamma } => lr * gamma.powi((step / every.max(1)) as i32),
        }
    }
}

/// Adam (Kingma & Ba, ICLR 2015) or AdamW (Loshchilov & Hutter, ICLR 2019).
pub struct Adam<T: Real> {
    /// Base learning rate.
    pub lr: f64,
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// Weight decay (L2 in the gradient for Adam, decoupled for AdamW).
    pub weight_decay: f64,
    /// Which parameters the weight decay acts on.
    pub decay_on: DecayOn,
    /// AdamW when true.
    pub decoupled: bool,
    /// Clip the global gradient norm to this value when set.
    pub clip_norm: Option<f64>,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    step: usize,
    moments: BTreeMap<String, (Tensor<T>, Tensor<T>)>,
}

/// What one optimiser step did.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// The learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping, when it was computed (see [`Adam::step`]).
    pub grad_norm: Option<f64>,
}

impl<T: Real> Adam<T> {
    /// Adam with the usual defaults (β = (0.9, 0.999), ε = 1e-8), no decay, no clipping.
    pub fn new(lr: f64) -> Self {
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decay_on: DecayOn::All,
            decoupled: false,
            clip_norm: None,
            schedule: Schedule::Constant,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// AdamW with decoupled weight decay.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        Adam {
            weight_decay,
            decoupled: true,
            ..Adam::new(lr)
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// Updates every parameter that has a gradient.
    ///
    /// The global gradient norm needs one device-to-host read per tensor (a sync on the GPU), so it
    /// is computed on every step only when clipping is on; otherwise on the first step and every
    /// [`NORM_CHECK_EVERY`]th, to stop on non-finite gradients.
    pub fn step(&mut self, params: &mut ParamStore<T>, grads: &Grads<T>) -> Result<StepInfo> {
        // Moments first: allocated once, before any temporary of the norm, so that the pool serves
        // every later step (the norm's temporaries included) without new device allocations.
        for (name, g) in grads.iter() {
            if !self.moments.contains_key(name) {
                let ctx = g.ctx();
                self.moments
                    .insert(name.clone(), (ctx.zeros(g.shape())?, ctx.zeros(g.shape())?));
            }
        }
        let grad_norm = if self.clip_norm.is_some() || self.step.is_multiple_of(NORM_CHECK_EVERY) {
            let norm = global_norm(grads)?;
            if !norm.is_finite() {
                return Err(Error::NonFinite(format!(
                    "gradient norm is {norm}: lower the learning rate"
                )));
            }
            Some(norm)
        } else {
            None
        };
        let gscale = match (self.clip_norm, grad_norm) {
            (Some(c), Some(g)) if g > c => c / g,
            _ => 1.0,
        };
        self.step += 1;
        let lr = self.schedule.rate(self.lr, self.step - 1);
        let t = self.step as i32;
        let h = AdamHyper {
            lr,
            beta1: self.betas.0,
            beta2: self.betas.1,
            eps: self.eps,
            weight_decay: self.weight_decay,
            gscale,
            bias1: 1.0 - self.betas.0.powi(t),
            bias2: 1.0 - self.betas.1.powi(t),
            decoupled: self.decoupled as i32,
        };
        let undecayed = AdamHyper {
            weight_decay: 0.0,
            ..h
        };
        for (name, g) in grads.iter() {
            let (m, v) = self
                .moments
                .get_mut(name)
                .ok_or_else(|| Error::InvalidInput(name.clone()))?;
            let h = if self.decay_on.covers(name) {
                &h
            } else {
                &undecayed
            };
            kernels::adam(params.get_mut(name)?, g, m, v, h)?;
        }
        Ok(StepInfo { lr, grad_norm })
    }
}

/// The parameters weight decay acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecayOn {
    /// Every parameter.
    All,
    /// Weights only: parameters named `*.w` (layers' biases `*.b` are left alone). With coupled
    /// decay (Adam, not AdamW) this is the gradient of the penalty (decay/2)·Σ w² over the
    /// weights, without the penalty's passes over them on the tape.
    Weights,
}

impl DecayOn {
    fn covers(self, name: &str) -> bool {
        match self {
            DecayOn::All => true,
            DecayOn::Weights => name.ends_with(".w"),
        }
    }
}

impl<T: Real> Adam<T> {
    /// The optimiser's state: its step count and, as named tensors `m.<param>` and `v.<param>`,
    /// copies of its moments (saved with a checkpoint so that training resumes bit-identically).
    pub fn state(&self, ctx: &super::Ctx<T>) -> Result<(usize, ParamStore<T>)> {
        let mut store = ParamStore::new(ctx);
        for (name, (m, v)) in &self.moments {
            store.insert(&format!("m.{name}"), m.copy()?);
            store.insert(&format!("v.{name}"), v.copy()?);
        }
        Ok((self.step, store))
    }

    /// Restores a state saved by [`Adam::state`].
    pub fn restore(&mut self, steps: usize, state: &ParamStore<T>) -> Result<()> {
        let mut moments = BTreeMap::new();
        for name in state.names() {
            if let Some(p) = name.strip_prefix("m.") {
                let v = state.get(&format!("v.{p}")).map_err(|_| {
                    Error::InvalidInput(format!("optimiser state has m.{p} but no v.{p}"))
                })?;
                moments.insert(p.to_string(), (state.get(&name)?.copy()?, v.copy()?));
            }
        }
        self.step = steps;
        self.moments = moments;
        Ok(())
    }
}

/// √(Σ over all gradients of Σ g²), each tensor reduced on its device in a fixed order.
pub fn global_norm<T: Real>(grads: &Grads<T>) -> Result<f64> {
    let mut total = 0.0;
    for (_, g) in grads.iter() {
        let sq = kernels::unary(Unary::Square, g)?;
        let s = kernels::reduce_to(&sq, &vec![1; g.shape().len()], 1.0)?;
        total += s.to_f64()?[0];
    }
    Ok(total.sqrt())
}
