//! A trained autoregressive network as a [`Sampler`]: every update draws one configuration per
//! chain by cached generation, with its exact ln q, and either offers it to an independence
//! Metropolis step ([`IndependenceChains`], exact) or, without `mh`, keeps it (raw samples of the
//! network, biased by what it has not learnt). Every draw also enters the reweighted estimates,
//! the variational free energy F_q = ⟨β⁻¹ ln q + E⟩_q and the reweighted one,
//! F = −β⁻¹ ln ⟨e^{−βE}/q⟩_q (per site).

use std::path::Path;
use std::sync::Arc;

use super::files::{load, LoadedCan};
use super::generate::DrawKey;
use super::symmetry::{log_q_of, Symmetry, SymmetryGroup};
use super::train::{energies, STREAM_CAN_SAMPLE, STREAM_CAN_SYMMETRY};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::independence::{Between, IndependenceChains};
use crate::io::json::Json;
use crate::sampler::{ChainMeasurement, Sampler, UpdateStats};
use crate::theory::xy::Xy;
use crate::theory::Theory;

/// Independence Metropolis (or raw sampling) over a network's draws, for a batch of chains.
pub struct CanSampler {
    theory: Arc<dyn Theory>,
    xy: Xy,
    model: LoadedCan,
    model_dir: String,
    seed: u64,
    mh: bool,
    first_chain: u32,
    done: u64,
    /// Angles θ `[chain][site]`, log weights, reweighting.
    independence: IndependenceChains,
    /// Σ f, Σ f² over every draw, f = (ln q + βE)/(βV) (the variational free energy per site).
    variational: [f64; 3],
    /// Those sums over every rank, once pooled for the summary.
    variational_pooled: Option<[f64; 3]>,
    /// Local updates after every independence step.
    between: Option<Between>,
    /// The network's weights packed for generation (fixed while sampling).
    packed: Vec<f32>,
    /// The group the proposals are averaged over (none: q itself).
    symmetry: Option<SymmetryGroup>,
}

impl CanSampler {
    /// `chains` chains over the network in `dir` for `theory` (which must be the model's).
    pub fn new(
        theory: Arc<dyn Theory>,
        dir: &Path,
        chains: usize,
        seed: u64,
        mh: bool,
        device: &Device,
    ) -> Result<Self> {
        let model = load(dir, device)?;
        let xy = model.record.xy()?;
        if xy.lattice() != theory.lattice()
            || Theory::name(&xy) != theory.name()
            || Theory::parameters(&xy) != theory.parameters()
        {
            return Err(Error::InvalidInput(format!(
                "the network in {} was trained for xy on {} at beta = {}, not {} on {} {:?}",
                dir.display(),
                xy.lattice().label(),
                xy.beta(),
                theory.name(),
                theory.lattice().label(),
                theory.parameters()
            )));
        }
        let v = theory.lattice().volume();
        Ok(CanSampler {
            independence: IndependenceChains::new(
                chains,
                v,
                theory.primary_names().len(),
                seed,
                "angles",
            ),
            theory,
            xy,
            model,
            model_dir: dir.display().to_string(),
            seed,
            mh,
            first_chain: 0,
            done: 0,
            variational: [0.0; 3],
            variational_pooled: None,
            between: None,
            packed: Vec::new(),
            symmetry: None,
        })
    }

    /// Averages the proposals over `kind` ([`super::symmetry`]): every draw is moved by a
    /// uniformly chosen symmetry and its density is q_G, |G| forward passes per draw.
    pub fn symmetrise(&mut self, kind: Symmetry) -> Result<()> {
        let dims = match self.theory.lattice().extents() {
            &[h, w] => [h, w],
            other => {
                return Err(Error::InvalidInput(format!(
                    "symmetrised proposals need a 2D lattice, not {other:?}"
                )))
            }
        };
        self.symmetry = match kind {
            Symmetry::None => None,
            _ => Some(SymmetryGroup::new(kind, dims)?),
        };
        Ok(())
    }

    /// ln of the proposal density of configurations θ `[B, V]`: q, or q_G when symmetrised.
    fn log_proposal(&self, theta: &[f64]) -> Result<Vec<f64>> {
        let (can, params) = (&self.model.can, &self.model.params);
        match &self.symmetry {
            Some(g) => g.log_density(can, params, theta),
            None => log_q_of(can, params, theta),
        }
    }

    /// Each chain's draw x moved by its symmetry, with ln q_G; unchanged without symmetrising.
    fn symmetrised(&self, x: Vec<f64>, lq: Vec<f64>, step: u32) -> Result<(Vec<f64>, Vec<f64>)> {
        let Some(g) = &self.symmetry else {
            return Ok((x, lq));
        };
        let v = self.theory.lattice().volume();
        let mut y = vec![0.0; x.len()];
        for (c, (xc, yc)) in x.chunks(v).zip(y.chunks_mut(v)).enumerate() {
            let chain = self.first_chain.wrapping_add(c as u32);
            g.apply(
                g.choose(self.seed, chain, step, STREAM_CAN_SYMMETRY),
                xc,
                yc,
            )?;
        }
        let lq = g.log_density(&self.model.can, &self.model.params, &y)?;
        Ok((y, lq))
    }

    /// Runs `k` updates of `local` (Metropolis or overrelaxation sweeps of the same theory and
    /// chains) after every independence step: still exact, and the chains no longer stick after
    /// a draw of large weight. The chains' log w is then recomputed by one forward pass.
    pub fn interleave(&mut self, local: Box<dyn Sampler>, k: usize) -> Result<()> {
        self.between = Some(Between::new(local, k, self.chains())?);
        Ok(())
    }

    /// The local updates after an independence step, and the moved chains' log w.
    fn run_between(&mut self) -> Result<()> {
        let Some(between) = self.between.as_mut() else {
            return Ok(());
        };
        let moved = between.run(self.independence.current())?;
        let lq = self.log_proposal(&moved)?;
        let beta = self.xy.beta();
        let log_w: Vec<f64> = energies(&self.xy, &moved)
            .iter()
            .zip(&lq)
            .map(|(e, q)| -beta * e - q)
            .collect();
        self.independence.set(&moved, Some(&log_w))
    }

    /// ESS per sample of every draw so far.
    pub fn ess_per_sample(&self) -> f64 {
        self.independence.reweighting().ess_per_sample()
    }

    /// Per site: the variational free energy F_q with its error, and the reweighted F with its
    /// (delta-method) error.
    pub fn free_energies(&self) -> [(f64, f64); 2] {
        let [n, s, s2] = self.variational_pooled.unwrap_or(self.variational);
        let mean = s / n;
        let var = (s2 / n - mean * mean).max(0.0) * n / (n - 1.0).max(1.0);
        let (beta, v) = (self.xy.beta(), self.theory.lattice().volume() as f64);
        let (log_z, err) = self.independence.reweighting().log_mean_weight();
        [
            (mean, (var / n).sqrt()),
            (-log_z / (beta * v), err / (beta * v)),
        ]
    }
}

impl Sampler for CanSampler {
    fn chains(&self) -> usize {
        self.independence.chains()
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn parameters(&self) -> String {
        let mut p = format!(
            "algorithm=can\nmodel={}\nmodel_steps={}\nmh={}\nseed={}\n",
            self.model_dir, self.model.record.steps, self.mh, self.seed
        );
        if let Some(g) = &self.symmetry {
            p += &format!("symmetry={}\n", g.kind().name());
        }
        if let Some(between) = &self.between {
            p += &between.parameters();
        }
        p
    }

    fn summary(&self) -> Vec<(&'static str, Json)> {
        let est =
            |(v, e): (f64, f64)| Json::obj([("value", Json::Num(v)), ("error", Json::Num(e))]);
        let [variational, reweighted] = self.free_energies();
        vec![
            ("algorithm", Json::Str("can".into())),
            ("model", Json::Str(self.model_dir.clone())),
            ("model_steps", Json::Num(self.model.record.steps as f64)),
            ("mh", Json::Bool(self.mh)),
            ("seed", Json::Num(self.seed as f64)),
            ("ess_per_sample", Json::Num(self.ess_per_sample())),
            (
                "symmetry",
                Json::Str(
                    self.symmetry
                        .as_ref()
                        .map_or("none", |g| g.kind().name())
                        .into(),
                ),
            ),
            (
                "reweighted",
                self.independence.reweighted(self.theory.primary_names()),
            ),
            (
                "free_energy",
                Json::obj([
                    ("variational", est(variational)),
                    ("reweighted", est(reweighted)),
                ]),
            ),
            (
                "updates_between",
                self.between.as_ref().map_or(Json::Null, Between::summary),
            ),
        ]
    }

    fn pool_summary(&mut self, team: &dyn crate::ensemble::Team) -> Result<()> {
        self.independence.pool(team)?;
        let v = crate::ensemble::all_sum(team, &self.variational)?;
        self.variational_pooled = Some([v[0], v[1], v[2]]);
        self.between.as_mut().map_or(Ok(()), |b| b.pool(team))
    }

    fn stalls_are_failures(&self) -> bool {
        false
    }

    fn low_acceptance_advice(&self) -> &'static str {
        "train the network longer (can train --resume --steps N with a larger N)"
    }

    fn set_warmup(&mut self, _level: u32) -> Result<()> {
        Ok(())
    }

    fn update(&mut self) -> Result<UpdateStats> {
        let step = u32::try_from(self.done)
            .map_err(|_| Error::InvalidInput("more than 2^32 network updates".into()))?;
        let chains = self.chains();
        let key = DrawKey {
            seed: self.seed,
            stream: STREAM_CAN_SAMPLE,
            step,
            sample0: self.first_chain,
        };
        if self.packed.is_empty() {
            self.packed = self.model.can.pack(&self.model.params)?;
        }
        let device = self.model.params.ctx().device();
        let (u, lq) = self
            .model
            .can
            .generate_packed(&self.packed, device, key, chains)?;
        let (theta, lq) = self.symmetrised(self.model.can.angles(&u), lq, step)?;
        let e = energies(&self.xy, &theta);
        let (beta, v) = (self.xy.beta(), self.theory.lattice().volume());
        let mut log_w = Vec::with_capacity(chains);
        for ((q, e), th) in lq.iter().zip(&e).zip(theta.chunks(v)) {
            let lw = -beta * e - q;
            self.independence
                .reweight(lw, &self.theory.measure(th).primaries)?;
            let f = -lw / (beta * v as f64);
            self.variational = [
                self.variational[0] + 1.0,
                self.variational[1] + f,
                self.variational[2] + f * f,
            ];
            log_w.push(lw);
        }
        let stats = self
            .independence
            .offer(self.done, &theta, &log_w, !self.mh)?;
        self.run_between()?;
        self.done += 1;
        Ok(stats)
    }

    fn set_first_chain(&mut self, first: usize) -> Result<()> {
        self.first_chain = crate::sampler::first_chain_word(first, self.chains())?;
        self.independence.set_first_chain(first)?;
        match &mut self.between {
            Some(b) => b.set_first_chain(first),
            None => Ok(()),
        }
    }

    fn updates_done(&self) -> u64 {
        self.done
    }

    fn site_updates(&self) -> u64 {
        let own = (self.chains() * self.theory.lattice().volume()) as u64;
        own + self.between.as_ref().map_or(0, Between::site_updates)
    }

    fn measure(&mut self) -> Result<Vec<ChainMeasurement>> {
        let v = self.theory.lattice().volume();
        Ok(self
            .independence
            .current()
            .chunks(v)
            .map(|c| self.theory.measure(c))
            .collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.independence.current().to_vec())
    }

    fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        // The chains start from their first draw (taken unconditionally), as for flows.
        self.independence.set(phi, None)
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        let mut s = self.independence.state();
        s.push(("variational".into(), self.variational.to_vec()));
        if let Some(b) = &self.between {
            s.extend(b.state()?);
        }
        Ok(s)
    }

    fn restore(&mut self, done: u64, state: &[(String, Vec<f64>)]) -> Result<()> {
        self.independence.restore(state)?;
        self.variational = match crate::sampler::saved(state, "variational")? {
            [n, s, s2] if n.is_finite() && s.is_finite() && s2.is_finite() => [*n, *s, *s2],
            _ => {
                return Err(Error::InvalidInput(
                    "the saved free-energy sums do not fit".into(),
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
