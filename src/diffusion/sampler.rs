//! A trained score network as a [`Sampler`]: every update draws a fresh configuration per chain by
//! the reverse process (the h-family by Euler–Maruyama, or the probability-flow ODE by Heun).
//! Without `mh` the draws are the model's, not exact. With `mh` the draws come from the ODE with
//! their density (the score's exact divergence integrated along the path,
//! [`super::sde::reverse_ode_with_density`]) and pass an independence Metropolis test
//! ([`IndependenceChains`]): exact up to the ODE integrator's O(Δt²) error in ln q.

use std::path::Path;
use std::sync::Arc;

use super::job::{load, LoadedDiffusion, T_MIN};
use super::sde::{reverse, reverse_ode_with_density, Integrator};
use crate::action::Action;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::independence::IndependenceChains;
use crate::io::json::Json;
use crate::sampler::{ChainMeasurement, Sampler, UpdateStats};
use crate::theory::Theory;

/// Philox stream of the reverse process's draws.
pub const STREAM_DIFFUSION_SAMPLE: u32 = 15;

/// Draws of a score network, one per chain per update, raw or Metropolis-corrected.
pub struct DiffusionSampler {
    theory: Arc<dyn Theory>,
    action: Arc<dyn Action>,
    model: LoadedDiffusion,
    model_dir: String,
    integrator: Integrator,
    steps: usize,
    seed: u64,
    first_chain: u32,
    done: u64,
    /// The chains, their log weights and the reweighting sums (without `mh` every draw is kept
    /// and no weight is computed).
    chains: IndependenceChains,
    mh: bool,
}

impl DiffusionSampler {
    /// `chains` chains of the model in `dir` for `theory` (the model's), integrating the
    /// reverse process with `integrator` in `steps` steps; with `mh` (the ODE only) every draw
    /// passes an independence Metropolis test.
    pub fn new(
        theory: Arc<dyn Theory>,
        dir: &Path,
        (chains, seed, mh): (usize, u64, bool),
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
        if mh && integrator != Integrator::Heun {
            return Err(Error::InvalidInput(
                "--mh needs the draws' density: use --sampler ode (the probability-flow ODE)"
                    .into(),
            ));
        }
        let action = theory
            .clone()
            .scalar_action()
            .ok_or_else(|| Error::InvalidInput(format!("{} has no real action", theory.name())))?;
        let v = theory.lattice().volume();
        let n = theory.primary_names().len();
        Ok(DiffusionSampler {
            chains: IndependenceChains::new(chains, v, n, seed, "fields"),
            theory,
            action,
            model,
            model_dir: dir.display().to_string(),
            integrator,
            steps,
            seed,
            first_chain: 0,
            done: 0,
            mh,
        })
    }

    fn integrator_name(&self) -> String {
        match self.integrator {
            Integrator::Euler { h } => format!("euler-maruyama h={h}"),
            Integrator::Heun => "heun (probability-flow ODE)".into(),
        }
    }

    /// One draw per chain: configurations `[chain][site]` and, with `mh`, their ln q.
    fn draw(&self) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
        let v = self.theory.lattice().volume();
        let first_step = self.done * (self.steps as u64 + 1);
        let key = (
            self.seed,
            STREAM_DIFFUSION_SAMPLE,
            self.first_chain,
            first_step,
        );
        let shape = (self.chains.chains(), v);
        let m = &self.model;
        if self.mh {
            let (x, lq) =
                reverse_ode_with_density(&m.sde, self.steps, T_MIN, shape, key, |x, t| {
                    m.net.score_and_divergence(&m.params, &m.sde, x, t)
                })?;
            return Ok((x, Some(lq)));
        }
        let x = reverse(
            &m.sde,
            self.integrator,
            self.steps,
            T_MIN,
            shape,
            key,
            |x, t| m.net.evaluate(&m.params, &m.sde, x, t),
        )?;
        Ok((x, None))
    }
}

impl Sampler for DiffusionSampler {
    fn chains(&self) -> usize {
        self.chains.chains()
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn parameters(&self) -> String {
        format!(
            "algorithm=diffusion\nmodel={}\nmodel_epochs={}\nintegrator={}\nsteps={}\nmh={}\n\
             seed={}\n",
            self.model_dir,
            self.model.epochs,
            self.integrator_name(),
            self.steps,
            self.mh,
            self.seed
        )
    }

    fn summary(&self) -> Vec<(&'static str, Json)> {
        let mut s = vec![
            ("algorithm", Json::Str("diffusion".into())),
            ("model", Json::Str(self.model_dir.clone())),
            ("integrator", Json::Str(self.integrator_name())),
            ("steps", Json::Num(self.steps as f64)),
            ("seed", Json::Num(self.seed as f64)),
            ("exact", Json::Bool(self.mh)),
        ];
        if self.mh {
            s.extend([
                (
                    "ess_per_sample",
                    Json::Num(self.chains.reweighting().ess_per_sample()),
                ),
                (
                    "reweighted",
                    self.chains.reweighted(self.theory.primary_names()),
                ),
            ]);
        }
        s
    }

    fn stalls_are_failures(&self) -> bool {
        false
    }

    fn low_acceptance_advice(&self) -> &'static str {
        "train the score network longer (diffusion train --resume --epochs N with a larger N)"
    }

    fn set_warmup(&mut self, _level: u32) -> Result<()> {
        Ok(())
    }

    fn update(&mut self) -> Result<UpdateStats> {
        let (x, lq) = self.draw()?;
        let v = self.theory.lattice().volume();
        let log_w: Vec<f64> = match &lq {
            Some(lq) => x
                .chunks(v)
                .zip(lq)
                .map(|(phi, q)| -self.action.action(phi) - q)
                .collect(),
            None => vec![0.0; self.chains()],
        };
        if self.mh {
            for (phi, &lw) in x.chunks(v).zip(&log_w) {
                let m = self.theory.measure(phi);
                self.chains.reweight(lw, &m.primaries)?;
            }
        }
        let mut stats = self.chains.offer(self.done, &x, &log_w, !self.mh)?;
        if !self.mh {
            stats.delta_h.iter_mut().for_each(|d| *d = f64::NAN);
        }
        self.done += 1;
        Ok(stats)
    }

    fn global_proposals(&self) -> bool {
        self.mh
    }

    fn set_first_chain(&mut self, first: usize) -> Result<()> {
        self.first_chain = crate::sampler::first_chain_word(first, self.chains())?;
        self.chains.set_first_chain(first)
    }

    fn updates_done(&self) -> u64 {
        self.done
    }

    fn site_updates(&self) -> u64 {
        (self.chains() * self.theory.lattice().volume() * self.steps) as u64
    }

    fn measure(&mut self) -> Result<Vec<ChainMeasurement>> {
        let v = self.theory.lattice().volume();
        Ok(self
            .chains
            .current()
            .chunks(v)
            .map(|c| self.theory.measure(c))
            .collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.chains.current().to_vec())
    }

    fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        // The first update replaces the start: every chain takes its first draw.
        self.chains.set(phi, None)
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(self.chains.state())
    }

    fn restore(&mut self, done: u64, state: &[(String, Vec<f64>)]) -> Result<()> {
        self.chains.restore(state)?;
        self.done = done;
        Ok(())
    }
}
