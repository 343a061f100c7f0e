//! A trained score network as a [`Sampler`]: every update draws a fresh configuration per chain by
//! the reverse process (the h-family by Euler–Maruyama, or the probability-flow ODE by Heun). The
//! draws are the model's, not exact: there is no Metropolis–Hastings correction until the
//! likelihood (the probability-flow ODE with the score's divergence) exists; the production run
//! measures them like any chain, so their observables compare directly with the training data's.

use std::path::Path;
use std::sync::Arc;

use super::job::{load, LoadedDiffusion, T_MIN};
use super::sde::{reverse, Integrator};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::json::Json;
use crate::sampler::{ChainMeasurement, Sampler, UpdateStats};
use crate::theory::Theory;

/// Philox stream of the reverse process's draws.
pub const STREAM_DIFFUSION_SAMPLE: u32 = 15;

/// Raw draws of a score network, one per chain per update.
pub struct DiffusionSampler {
    theory: Arc<dyn Theory>,
    model: LoadedDiffusion,
    model_dir: String,
    integrator: Integrator,
    steps: usize,
    seed: u64,
    first_chain: u32,
    done: u64,
    chains: usize,
    fields: Vec<f64>,
}

impl DiffusionSampler {
    /// `chains` chains of the model in `dir` for `theory` (the model's), integrating the
    /// reverse process with `integrator` in `steps` steps.
    pub fn new(
        theory: Arc<dyn Theory>,
        dir: &Path,
        (chains, seed): (usize, u64),
        (integrator, steps): (Integrator, usize),
        device: &Device,
    ) -> Result<Self> {
        let model = load(dir, device)?;
        let own = model.theory.build()?;
        if own.lattice() != theory.lattice() || own.parameters() != theory.parameters() {
            return Err(Error::InvalidInput(format!(
                "the score network in {} was trained on {} {:?}, not {} {:?}",
                dir.display(),
                own.lattice().label(),
                own.parameters(),
                theory.lattice().label(),
                theory.parameters()
            )));
        }
        if steps == 0 {
            return Err(Error::InvalidInput("--steps must be at least 1".into()));
        }
        let v = theory.lattice().volume();
        Ok(DiffusionSampler {
            theory,
            model,
            model_dir: dir.display().to_string(),
            integrator,
            steps,
            seed,
            first_chain: 0,
            done: 0,
            chains,
            fields: vec![0.0; chains * v],
        })
    }

    fn integrator_name(&self) -> String {
        match self.integrator {
            Integrator::Euler { h } => format!("euler-maruyama h={h}"),
            Integrator::Heun => "heun (probability-flow ODE)".into(),
        }
    }
}

impl Sampler for DiffusionSampler {
    fn chains(&self) -> usize {
        self.chains
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn parameters(&self) -> String {
        format!(
            "algorithm=diffusion\nmodel={}\nmodel_epochs={}\nintegrator={}\nsteps={}\nseed={}\n",
            self.model_dir,
            self.model.epochs,
            self.integrator_name(),
            self.steps,
            self.seed
        )
    }

    fn summary(&self) -> Vec<(&'static str, Json)> {
        vec![
            ("algorithm", Json::Str("diffusion".into())),
            ("model", Json::Str(self.model_dir.clone())),
            ("integrator", Json::Str(self.integrator_name())),
            ("steps", Json::Num(self.steps as f64)),
            ("seed", Json::Num(self.seed as f64)),
            ("exact", Json::Bool(false)),
        ]
    }

    fn stalls_are_failures(&self) -> bool {
        false
    }

    fn set_warmup(&mut self, _level: u32) -> Result<()> {
        Ok(())
    }

    fn update(&mut self) -> Result<UpdateStats> {
        let v = self.theory.lattice().volume();
        let first_step = self.done * (self.steps as u64 + 1);
        let m = &self.model;
        self.fields = reverse(
            &m.sde,
            self.integrator,
            self.steps,
            T_MIN,
            (self.chains, v),
            (
                self.seed,
                STREAM_DIFFUSION_SAMPLE,
                self.first_chain,
                first_step,
            ),
            |x, t| m.net.evaluate(&m.params, &m.sde, x, t),
        )?;
        self.done += 1;
        Ok(UpdateStats {
            accepted: vec![1.0; self.chains],
            delta_h: vec![f64::NAN; self.chains],
        })
    }

    fn global_proposals(&self) -> bool {
        false
    }

    fn set_first_chain(&mut self, first: usize) -> Result<()> {
        self.first_chain = crate::sampler::first_chain_word(first, self.chains)?;
        Ok(())
    }

    fn updates_done(&self) -> u64 {
        self.done
    }

    fn site_updates(&self) -> u64 {
        (self.chains * self.theory.lattice().volume() * self.steps) as u64
    }

    fn measure(&mut self) -> Result<Vec<ChainMeasurement>> {
        let v = self.theory.lattice().volume();
        Ok(self
            .fields
            .chunks(v)
            .map(|c| self.theory.measure(c))
            .collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.fields.clone())
    }

    fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        if phi.len() != self.fields.len() {
            return Err(Error::InvalidInput(format!(
                "{} values for {} chains of {} sites",
                phi.len(),
                self.chains,
                self.theory.lattice().volume()
            )));
        }
        // Every update draws afresh: the start is only what is measured before the first.
        self.fields.copy_from_slice(phi);
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![("fields".into(), self.fields.clone())])
    }

    fn restore(&mut self, done: u64, state: &[(String, Vec<f64>)]) -> Result<()> {
        let f = crate::sampler::saved(state, "fields")?;
        self.set_fields(f)?;
        self.done = done;
        Ok(())
    }
}
