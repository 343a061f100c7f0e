//! Variational training of the network for the XY model: minimise
//! F_q = ⟨β⁻¹ ln q + E⟩_q (≥ F, the free energy) over samples of the network itself, with the
//! REINFORCE (score-function) gradient ∇(βF_q) = ⟨(ln q + βE − b) ∇ ln q⟩ and the batch mean as
//! the baseline b (Wu, Wang, Zhang, PRL 122, 080602 (2019); for the XY model Wang et al., CPL
//! 39, 120502 (2022)). β is annealed, β_t = β(1 − aᵗ⁺¹), so the network first learns the
//! disordered phase. Every draw is keyed by (site, sample, step): a resumed training is
//! bit-identical. With an ensemble of a standard sampler ([`super::data`]) the loss gains
//! λ·KL(p‖q), whose gradient −λ⟨∇ ln q⟩_data is taken in the same forward pass.

use super::data::Ensemble;
use super::generate::DrawKey;
use super::model::{Can, CanConfig};
use crate::error::{Error, Result};
use crate::flow::train::{acceptance_estimate, ess_per_sample};
use crate::nn::{Adam, Ctx, ParamStore, Real, Tape};
use crate::theory::xy::Xy;

/// Philox stream of training draws (sample word = batch index, step word = step).
pub const STREAM_CAN_TRAIN: u32 = 9;
/// Philox stream of sampling draws (sample word = chain, step word = update).
pub const STREAM_CAN_SAMPLE: u32 = 10;
/// Philox stream of the symmetry applied to each draw of a symmetrised sampler.
pub const STREAM_CAN_SYMMETRY: u32 = 18;

/// Training hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CanTrainConfig {
    /// Samples per step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seed of the draws.
    pub seed: u64,
    /// a of the annealing β_t = β(1 − aᵗ⁺¹); 0 trains at β from the start.
    pub anneal: f64,
}

impl CanTrainConfig {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<()> {
        crate::flow::TrainConfig {
            batch: self.batch,
            lr: self.lr,
            seed: self.seed,
        }
        .validate()?;
        if !(0.0..1.0).contains(&self.anneal) {
            return Err(Error::InvalidInput(format!(
                "--anneal {}: use a in [0, 1) (β_t = β(1 − a^(t+1)); 0 = no annealing)",
                self.anneal
            )));
        }
        Ok(())
    }

    /// β_t at step `t` (0-based) towards `beta`.
    pub fn beta_at(&self, beta: f64, t: u64) -> f64 {
        let t = i32::try_from(t.saturating_add(1)).unwrap_or(i32::MAX);
        beta * (1.0 - self.anneal.powi(t))
    }
}

/// What one training step measured, at that step's β_t.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CanStepStats {
    /// Steps done, this one included.
    pub step: u64,
    /// β_t of the step.
    pub beta: f64,
    /// F_q per site: the batch mean of (β_t⁻¹ ln q + E)/V.
    pub free_energy: f64,
    /// Its variance over the batch (per sample).
    pub variance: f64,
    /// ESS per sample of the batch against e^{−β_t E}.
    pub ess: f64,
    /// Independence-Metropolis acceptance estimated on the batch.
    pub acceptance: f64,
}

/// The network, its parameters, its optimiser and its target.
pub struct CanTrainer<T: Real> {
    can: Can,
    store: ParamStore<T>,
    adam: Adam<T>,
    xy: Xy,
    config: CanTrainConfig,
    data: Option<(Ensemble, f64)>,
    step: u64,
}

/// E = −Σ_⟨xy⟩ cos(θ_x − θ_y) of each configuration of angles θ `[B, V]`.
pub fn energies(xy: &Xy, theta: &[f64]) -> Vec<f64> {
    let v = crate::theory::Theory::lattice(xy).volume().max(1);
    theta.chunks(v).map(|th| xy.bond_energy(th)).collect()
}

impl<T: Real> CanTrainer<T> {
    /// A fresh network of `config` for `xy` on `ctx`.
    pub fn new(ctx: &Ctx<T>, config: &CanConfig, xy: Xy, train: CanTrainConfig) -> Result<Self> {
        train.validate()?;
        let mut store = ParamStore::new(ctx);
        let can = Can::new(config, crate::theory::Theory::lattice(&xy), &mut store)?;
        Ok(CanTrainer {
            can,
            store,
            adam: Adam::new(train.lr),
            xy,
            config: train,
            data: None,
            step: 0,
        })
    }

    /// Replaces the parameters (a resume or a warm start) and, when given, the optimiser's
    /// state; `steps` done so far.
    pub fn restore(
        &mut self,
        params: ParamStore<T>,
        steps: u64,
        adam: Option<&ParamStore<T>>,
    ) -> Result<()> {
        self.can.check_store(&params)?;
        self.store = params;
        if let Some(a) = adam {
            self.adam.restore(steps as usize, a)?;
        }
        self.step = steps;
        Ok(())
    }

    /// Adds λ·KL(p‖q) on `ensemble` to the loss (see [`super::data`]).
    pub fn set_data(&mut self, ensemble: Ensemble, weight: f64) -> Result<()> {
        super::data::check_weight(weight)?;
        self.data = Some((ensemble, weight));
        Ok(())
    }

    /// The network.
    pub fn can(&self) -> &Can {
        &self.can
    }

    /// The parameters.
    pub fn params(&self) -> &ParamStore<T> {
        &self.store
    }

    /// The optimiser.
    pub fn optimiser(&self) -> &Adam<T> {
        &self.adam
    }

    /// Steps done.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One REINFORCE step.
    pub fn step(&mut self) -> Result<CanStepStats> {
        let (b, v) = (self.config.batch, self.can.volume());
        let beta = self.config.beta_at(self.xy.beta(), self.step);
        let step32 = u32::try_from(self.step)
            .map_err(|_| Error::InvalidInput("more than 2^32 training steps".into()))?;
        let key = DrawKey {
            seed: self.config.seed,
            stream: STREAM_CAN_TRAIN,
            step: step32,
            sample0: 0,
        };
        let (u, lq) = self.can.generate(&self.store, key, b)?;
        let e = energies(&self.xy, &self.can.angles(&u));
        // f = ln q + β_t E = β_t (β_t⁻¹ ln q + E); the baseline is its batch mean.
        let f: Vec<f64> = lq.iter().zip(&e).map(|(q, e)| q + beta * e).collect();
        let mean = f.iter().sum::<f64>() / b as f64;
        if !mean.is_finite() {
            return Err(Error::NonFinite(format!(
                "the variational free energy is {mean} at step {}: lower --lr",
                self.step
            )));
        }
        let ctx = self.store.ctx().clone();
        let tape = Tape::new(&ctx);
        let mut c: Vec<f64> = f.iter().map(|x| (x - mean) / b as f64).collect();
        let mut x = u;
        if let Some((ensemble, lambda)) = &self.data {
            // −λ/B Σ ln q(data): the forward KL's gradient, in the same pass as REINFORCE's.
            let d = ensemble.batch(self.config.seed, step32, b)?;
            x.extend(self.can.variables::<T>(&d));
            c.extend(std::iter::repeat_n(-lambda / b as f64, b));
        }
        let log_q = self.can.log_q(&tape, &self.store, &x)?;
        let weights = tape.constant(ctx.from_f64(&[c.len()], &c)?);
        let loss = tape.sum_all(&tape.mul(&weights, &log_q)?)?;
        let grads = tape.backward(&loss)?;
        drop((log_q, weights, loss));
        self.adam.step(&mut self.store, &grads)?;
        let per_site: Vec<f64> = f
            .iter()
            .map(|x| x / (beta.max(1e-300) * v as f64))
            .collect();
        let fm = per_site.iter().sum::<f64>() / b as f64;
        let var = per_site.iter().map(|x| (x - fm).powi(2)).sum::<f64>() / (b - 1) as f64;
        let log_w: Vec<f64> = f.iter().map(|x| -x).collect();
        self.step += 1;
        Ok(CanStepStats {
            step: self.step,
            beta,
            free_energy: fm,
            variance: var,
            ess: ess_per_sample(&log_w),
            acceptance: acceptance_estimate(&log_w, self.config.seed, step32),
        })
    }
}
