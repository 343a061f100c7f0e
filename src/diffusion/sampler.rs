//! A trained score network as a [`Sampler`]: every update draws a fresh configuration per chain by
//! the reverse process (the h-family by Euler–Maruyama, predictor–corrector, or the
//! probability-flow ODE by Heun or adaptive Dormand–Prince). Without `mh` the draws are the
//! model's, not exact. With `mh` the draws come from the ODE with their density (the score's
//! divergence integrated along the path, [`super::sde::reverse_ode_with_density`]) and pass an
//! independence Metropolis test ([`IndependenceChains`]): exact up to the ODE integrator's error
//! in ln q with the exact divergence; with Hutchinson's estimate ln q carries the estimator's
//! noise, and the correction is approximate.

use std::path::Path;
use std::sync::Arc;

use super::job::{load, LoadedDiffusion, T_MIN};
use super::sde::{ode_log_density, reverse, reverse_ode_with_density, DrawKey, Draws, Integrator};
use crate::action::Action;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::independence::{Between, IndependenceChains};
use crate::io::json::Json;
use crate::philox;
use crate::sampler::{ChainMeasurement, Sampler, UpdateStats};
use crate::theory::Theory;

/// Philox stream of the reverse process's draws.
pub const STREAM_DIFFUSION_SAMPLE: u32 = 15;
/// Philox stream of Hutchinson's probe vectors.
pub const STREAM_DIFFUSION_PROBE: u32 = 16;

/// How the divergence of the score (for the draws' density) is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Divergence {
    /// Exactly, by one vector–Jacobian product per site.
    Exact,
    /// Hutchinson's unbiased estimate with this many ±1 probe vectors per draw (the same probes
    /// along the whole path): cheap, but ln q is then an estimate and the Metropolis correction
    /// approximate.
    Hutchinson {
        /// Probe vectors per draw.
        probes: usize,
    },
}

/// How a score network's draws are made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DrawSettings {
    /// The integrator of the reverse process.
    pub integrator: Integrator,
    /// Its steps (the initial step of the adaptive one).
    pub steps: usize,
    /// Independence Metropolis over the ODE's draws with their density.
    pub mh: bool,
    /// How the density's divergence is computed (with `mh`).
    pub divergence: Divergence,
}

impl DrawSettings {
    /// Checks the combination.
    pub fn validate(&self) -> Result<()> {
        self.integrator.validate()?;
        if self.steps == 0 {
            return Err(Error::InvalidInput("--steps must be at least 1".into()));
        }
        if self.mh && !self.integrator.is_ode() {
            return Err(Error::InvalidInput(
                "--mh needs the draws' density: use --sampler ode or rk45 (the probability-flow \
                 ODE)"
                    .into(),
            ));
        }
        match self.divergence {
            Divergence::Hutchinson { probes } if probes == 0 || probes > 1 << 16 => Err(
                Error::InvalidInput(format!("--probes {probes}: use 1 to 65536 probe vectors")),
            ),
            _ => Ok(()),
        }
    }
}

/// ±1 probe vectors `[P][batch][volume]` of draw `key` (site i of sample b, probe p: bit i mod 32
/// of word (i / 32) mod 4 of the Philox block (i / 128, sample, step, stream | p << 8)).
fn probes(key: &DrawKey, p: usize, (batch, volume): (usize, usize)) -> Vec<Vec<f64>> {
    let k = philox::key_from_seed(key.seed);
    (0..p)
        .map(|p| {
            let mut out = vec![0.0; batch * volume];
            for (b, row) in out.chunks_mut(volume.max(1)).enumerate() {
                let counter = |i: usize| {
                    [
                        (i / 128) as u32,
                        key.sample0 + b as u32,
                        key.first_step as u32,
                        STREAM_DIFFUSION_PROBE | (p as u32) << 8,
                    ]
                };
                for (i, e) in row.iter_mut().enumerate() {
                    let w = philox::philox4x32_10(counter(i), k)[(i / 32) % 4];
                    *e = if w >> (i % 32) & 1 == 1 { 1.0 } else { -1.0 };
                }
            }
            out
        })
        .collect()
}

/// Draws of a score network, one per chain per update, raw or Metropolis-corrected.
pub struct DiffusionSampler {
    theory: Arc<dyn Theory>,
    action: Arc<dyn Action>,
    model: LoadedDiffusion,
    model_dir: String,
    settings: DrawSettings,
    /// Score evaluations per draw, summed over the updates.
    evaluations: f64,
    seed: u64,
    first_chain: u32,
    done: u64,
    /// The chains, their log weights and the reweighting sums (without `mh` every draw is kept
    /// and no weight is computed).
    chains: IndependenceChains,
    /// Updates of another sampler after every independence step.
    between: Option<Between>,
}

impl DiffusionSampler {
    /// `chains` chains of the model in `dir` for `theory` (the model's), drawing as `settings`
    /// say; with `mh` (the ODE only) every draw passes an independence Metropolis test.
    pub fn new(
        theory: Arc<dyn Theory>,
        dir: &Path,
        (chains, seed): (usize, u64),
        settings: DrawSettings,
        device: &Device,
    ) -> Result<Self> {
        settings.validate()?;
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
            settings,
            evaluations: 0.0,
            seed,
            first_chain: 0,
            done: 0,
            between: None,
        })
    }

    /// Runs `k` updates of `local` (e.g. HMC of the same theory and chains) after every
    /// independence step. Each leaves e^{−S} invariant, so the chain stays exact (to the ODE's
    /// error in ln q); the local updates move chains the model's proposals leave stuck. The moved
    /// configurations' ln q comes from the probability-flow ODE integrated forward
    /// ([`ode_log_density`]), which needs the fixed-step ODE (`--sampler ode`) with `--mh`.
    pub fn interleave(&mut self, local: Box<dyn Sampler>, k: usize) -> Result<()> {
        if !(self.settings.mh && self.settings.integrator == Integrator::Heun) {
            return Err(Error::InvalidInput(
                "updates between the draws need their weights: use --sampler ode --mh".into(),
            ));
        }
        self.between = Some(Between::new(local, k, self.chains())?);
        Ok(())
    }

    /// The key of this update's draws.
    fn key(&self) -> DrawKey {
        DrawKey {
            seed: self.seed,
            stream: STREAM_DIFFUSION_SAMPLE,
            sample0: self.first_chain,
            first_step: self.done * (self.settings.steps as u64 + 1),
        }
    }

    /// s and ∇·s (exact, or Hutchinson's estimate with the probes `eps` `[P][batch][V]`) of the
    /// centred configurations x `[B'][V]` of the batch's samples `rows`.
    fn score_div(
        &self,
        eps: &[Vec<f64>],
        (x, t, rows): (&[f64], &[f64], &[usize]),
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let m = &self.model;
        if eps.is_empty() {
            return m.net.score_and_divergence(&m.params, &m.sde, x, t);
        }
        let v = self.theory.lattice().volume();
        let rows_of = |e: &Vec<f64>| -> Vec<f64> {
            rows.iter()
                .flat_map(|&b| e[b * v..(b + 1) * v].iter().copied())
                .collect()
        };
        let live: Vec<Vec<f64>> = eps.iter().map(rows_of).collect();
        m.net
            .score_and_divergence_estimate(&m.params, &m.sde, (x, t), &live)
    }

    /// Hutchinson's probes for draws of `key`, none for the exact divergence.
    fn probes_for(&self, key: &DrawKey) -> Vec<Vec<f64>> {
        match self.settings.divergence {
            Divergence::Exact => Vec::new(),
            Divergence::Hutchinson { probes: p } => {
                probes(key, p, (self.chains(), self.theory.lattice().volume()))
            }
        }
    }

    /// The updates between independence steps, then the moved chains' log w from the forward
    /// ODE (its probes keyed by the step word after the draw's).
    fn run_between(&mut self) -> Result<()> {
        let Some(between) = self.between.as_mut() else {
            return Ok(());
        };
        let moved = between.run(self.chains.current())?;
        let mean = self.model.data_mean;
        let centred: Vec<f64> = moved.iter().map(|x| x - mean).collect();
        let key = DrawKey {
            first_step: self.key().first_step + 1,
            ..self.key()
        };
        let eps = self.probes_for(&key);
        let log_q = ode_log_density(
            &self.model.sde,
            (self.settings.steps, T_MIN),
            &centred,
            self.chains(),
            |x, t, rows| self.score_div(&eps, (x, t, rows)),
        )?;
        self.evaluations += 2.0 * self.settings.steps as f64;
        let v = self.theory.lattice().volume();
        let log_w: Vec<f64> = moved
            .chunks(v)
            .zip(&log_q)
            .map(|(phi, q)| -self.action.action(phi) - q)
            .collect();
        self.chains.set(&moved, Some(&log_w))
    }

    fn integrator_name(&self) -> String {
        match self.settings.integrator {
            Integrator::Euler { h } => format!("euler-maruyama h={h}"),
            Integrator::PredictorCorrector {
                snr,
                corrector_steps,
            } => format!("predictor-corrector snr={snr} corrector_steps={corrector_steps}"),
            Integrator::Heun => "heun (probability-flow ODE)".into(),
            Integrator::Rk45 { tol } => {
                format!("dormand-prince rk45 tol={tol} (probability-flow ODE)")
            }
        }
    }

    fn divergence_name(&self) -> String {
        match self.settings.divergence {
            Divergence::Exact => "exact".into(),
            Divergence::Hutchinson { probes } => {
                format!("hutchinson, {probes} probes (the correction is approximate)")
            }
        }
    }

    /// One draw per chain: configurations `[chain][site]` and, with `mh`, their ln q.
    fn draw(&self) -> Result<Draws> {
        let v = self.theory.lattice().volume();
        let DrawSettings {
            integrator,
            steps,
            mh,
            ..
        } = self.settings;
        let key = self.key();
        let shape = (self.chains.chains(), v);
        let (m, schedule) = (&self.model, (steps, T_MIN));
        let shifted = |mut d: Draws| {
            d.x.iter_mut().for_each(|x| *x += m.data_mean);
            d
        };
        if !mh {
            return reverse(&m.sde, integrator, schedule, shape, key, |x, t| {
                m.net.evaluate(&m.params, &m.sde, x, t)
            })
            .map(shifted);
        }
        let eps = self.probes_for(&key);
        reverse_ode_with_density(&m.sde, integrator, schedule, shape, key, |x, t, rows| {
            self.score_div(&eps, (x, t, rows))
        })
        .map(shifted)
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
             divergence={}\nseed={}\n",
            self.model_dir,
            self.model.epochs,
            self.integrator_name(),
            self.settings.steps,
            self.settings.mh,
            self.divergence_name(),
            self.seed
        ) + &self
            .between
            .as_ref()
            .map_or(String::new(), Between::parameters)
    }

    fn summary(&self) -> Vec<(&'static str, Json)> {
        let mut s = vec![
            ("algorithm", Json::Str("diffusion".into())),
            ("model", Json::Str(self.model_dir.clone())),
            ("integrator", Json::Str(self.integrator_name())),
            ("steps", Json::Num(self.settings.steps as f64)),
            (
                "evaluations_per_draw",
                Json::Num(self.evaluations / self.done.max(1) as f64),
            ),
            ("seed", Json::Num(self.seed as f64)),
            (
                "exact",
                Json::Bool(self.settings.mh && self.settings.divergence == Divergence::Exact),
            ),
        ];
        if self.settings.mh {
            s.extend([
                ("divergence", Json::Str(self.divergence_name())),
                (
                    "ess_per_sample",
                    Json::Num(self.chains.reweighting().ess_per_sample()),
                ),
                (
                    "reweighted",
                    self.chains.reweighted(self.theory.primary_names()),
                ),
                (
                    "updates_between",
                    self.between.as_ref().map_or(Json::Null, Between::summary),
                ),
            ]);
        }
        s
    }

    fn extra_files(&self) -> Vec<&'static str> {
        vec![super::report::HISTOGRAM_FILE]
    }

    fn pool_summary(&mut self, team: &dyn crate::ensemble::Team) -> Result<()> {
        self.chains.pool(team)?;
        self.between.as_mut().map_or(Ok(()), |b| b.pool(team))
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
        let Draws {
            x,
            log_q,
            evaluations_per_sample,
        } = self.draw()?;
        self.evaluations += evaluations_per_sample;
        let v = self.theory.lattice().volume();
        let log_w: Vec<f64> = match &log_q {
            Some(lq) => x
                .chunks(v)
                .zip(lq)
                .map(|(phi, q)| -self.action.action(phi) - q)
                .collect(),
            None => vec![0.0; self.chains()],
        };
        let mh = self.settings.mh;
        if mh {
            for (phi, &lw) in x.chunks(v).zip(&log_w) {
                let m = self.theory.measure(phi);
                self.chains.reweight(lw, &m.primaries)?;
            }
        }
        let mut stats = self.chains.offer(self.done, &x, &log_w, !mh)?;
        if !mh {
            stats.delta_h.iter_mut().for_each(|d| *d = f64::NAN);
        }
        self.run_between()?;
        self.done += 1;
        Ok(stats)
    }

    fn global_proposals(&self) -> bool {
        self.settings.mh
    }

    fn set_first_chain(&mut self, first: usize) -> Result<()> {
        self.first_chain = crate::sampler::first_chain_word(first, self.chains())?;
        self.chains.set_first_chain(first)?;
        match &mut self.between {
            Some(b) => b.set_first_chain(first),
            None => Ok(()),
        }
    }

    fn updates_done(&self) -> u64 {
        self.done
    }

    fn site_updates(&self) -> u64 {
        let own = (self.chains() * self.theory.lattice().volume() * self.settings.steps) as u64;
        own + self.between.as_ref().map_or(0, Between::site_updates)
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
        let mut s = self.chains.state();
        s.push(("evaluations".into(), vec![self.evaluations]));
        if let Some(b) = &self.between {
            s.extend(b.state()?);
        }
        Ok(s)
    }

    fn restore(&mut self, done: u64, state: &[(String, Vec<f64>)]) -> Result<()> {
        self.chains.restore(state)?;
        self.evaluations = match crate::sampler::saved(state, "evaluations")? {
            [e] if e.is_finite() && *e >= 0.0 => *e,
            _ => {
                return Err(Error::InvalidInput(
                    "the saved count of score evaluations does not fit".into(),
                ))
            }
        };
        if let Some(between) = self.between.as_mut() {
            between.restore(done, state)?;
        }
        self.done = done;
        Ok(())
    }
}
