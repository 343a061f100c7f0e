//! Independence Metropolis over a generative model's proposals, shared by every learned sampler
//! (flows, autoregressive networks): each chain proposes an independent draw x' ~ q and accepts
//! it with min(1, w(x')/w(x)), w = e^{−S}/q, so the chain samples e^{−S} exactly however good
//! the model is (Albergo, Kanwar, Shanahan, PRD 100 034515 (2019), sec. III). "ΔH" is
//! −ln(w'/w), and ⟨e^{−ΔH}⟩ = E_p[1/w]·E_q[w] = 1 as for HMC. Every proposal also enters the
//! reweighted estimates ⟨O⟩ = Σ w O / Σ w and the ESS.

use crate::error::{Error, Result};
use crate::flow::reweight::Reweighting;
use crate::io::json::Json;
use crate::philox;
use crate::sampler::{Sampler, UpdateStats};

/// The chains' current configurations (in the model's variables), their log weights and the
/// reweighting sums over every proposal.
#[derive(Clone, Debug)]
pub struct IndependenceChains {
    volume: usize,
    /// Global index of the first chain (keys the accept draws).
    first_chain: u32,
    seed: u64,
    /// `[chain][site]`.
    current: Vec<f64>,
    /// Each chain's log w (NaN: none yet; the next proposal is taken unconditionally).
    log_w: Vec<f64>,
    reweighting: Reweighting,
    /// Name of the configurations in saved states.
    fields_name: &'static str,
    /// The sums of every rank's chains, once pooled for the summary ([`IndependenceChains::pool`]).
    pooled: Option<Reweighting>,
}

impl IndependenceChains {
    /// `chains` chains of `volume` sites with `primaries` reweighted observables, accept draws
    /// keyed by `seed`; states save the configurations under `fields_name`.
    pub fn new(
        chains: usize,
        volume: usize,
        primaries: usize,
        seed: u64,
        fields_name: &'static str,
    ) -> Self {
        IndependenceChains {
            volume,
            first_chain: 0,
            seed,
            current: vec![0.0; chains * volume],
            log_w: vec![f64::NAN; chains],
            reweighting: Reweighting::new(primaries),
            fields_name,
            pooled: None,
        }
    }

    /// Number of chains.
    pub fn chains(&self) -> usize {
        self.log_w.len()
    }

    /// The configurations, `[chain][site]`.
    pub fn current(&self) -> &[f64] {
        &self.current
    }

    /// Each chain's log w.
    pub fn log_w(&self) -> &[f64] {
        &self.log_w
    }

    /// Keys the accept draws by global chain indices from `first`.
    pub fn set_first_chain(&mut self, first: usize) -> Result<()> {
        self.first_chain = crate::sampler::first_chain_word(first, self.chains())?;
        Ok(())
    }

    /// Adds a proposal of log weight `log_w` with primaries `o` to the reweighted sums.
    pub fn reweight(&mut self, log_w: f64, o: &[f64]) -> Result<()> {
        self.reweighting.add(log_w, o)
    }

    /// Pools the reweighting sums of every rank of `team` (in rank order) for the summary; the
    /// rank's own sums, which checkpoints save, stay as they are. Every rank must call it.
    pub fn pool(&mut self, team: &dyn crate::ensemble::Team) -> Result<()> {
        let own = self.reweighting.to_vec();
        let all = team.all_gather(&own);
        if own.is_empty() || !all.len().is_multiple_of(own.len()) {
            return Err(Error::InvalidInput(
                "the ranks' reweighting sums do not fit together".into(),
            ));
        }
        let observables = self.reweighting.estimates().len();
        let mut total = Reweighting::new(observables);
        for part in all.chunks(own.len()) {
            total.merge(&Reweighting::from_vec(part, observables)?)?;
        }
        self.pooled = Some(total);
        Ok(())
    }

    /// The reweighting sums (every rank's, once pooled).
    pub fn reweighting(&self) -> &Reweighting {
        self.pooled.as_ref().unwrap_or(&self.reweighting)
    }

    /// The Metropolis step of update `step`: chain c moves to `proposals[c]` (log weight
    /// `log_w[c]`) with probability min(1, w'/w); with `always`, every proposal is taken (raw
    /// samples of the model, not exact).
    pub fn offer(
        &mut self,
        step: u64,
        proposals: &[f64],
        log_w: &[f64],
        always: bool,
    ) -> Result<UpdateStats> {
        let (v, chains) = (self.volume, self.chains());
        if proposals.len() != self.current.len() || log_w.len() != chains {
            return Err(Error::InvalidInput(format!(
                "{} proposals with {} weights for {chains} chains of {v} sites",
                proposals.len(),
                log_w.len()
            )));
        }
        let step = u32::try_from(step)
            .map_err(|_| Error::InvalidInput("more than 2^32 independence updates".into()))?;
        let mut stats = UpdateStats {
            accepted: vec![0.0; chains],
            delta_h: vec![0.0; chains],
        };
        for (c, &prop) in log_w.iter().enumerate() {
            let lw = self.log_w[c];
            let dh = lw - prop;
            let u = philox::uniform(
                self.seed,
                self.first_chain + c as u32,
                step,
                philox::STREAM_ACCEPT,
            );
            // A chain without a weight yet takes its first proposal; that update is
            // thermalisation, and its ΔH is reported as 0.
            stats.delta_h[c] = if lw.is_nan() { 0.0 } else { dh };
            if always || lw.is_nan() || u.ln() < -dh {
                self.current[c * v..(c + 1) * v].copy_from_slice(&proposals[c * v..(c + 1) * v]);
                self.log_w[c] = prop;
                stats.accepted[c] = 1.0;
            }
        }
        Ok(stats)
    }

    /// Replaces the configurations (and their log weights, when known; NaN otherwise).
    pub fn set(&mut self, current: &[f64], log_w: Option<&[f64]>) -> Result<()> {
        if current.len() != self.current.len()
            || current.iter().any(|x| !x.is_finite())
            || log_w.is_some_and(|w| w.len() != self.log_w.len())
        {
            return Err(Error::InvalidInput(format!(
                "{} finite values needed for {} chains, got {}",
                self.current.len(),
                self.chains(),
                current.len()
            )));
        }
        self.current.copy_from_slice(current);
        match log_w {
            Some(w) => self.log_w.copy_from_slice(w),
            None => self.log_w.iter_mut().for_each(|w| *w = f64::NAN),
        }
        Ok(())
    }

    /// The reweighted primaries `{name: {"value", "error"}}` (independent draws: no
    /// autocorrelation).
    pub fn reweighted(&self, names: &[&str]) -> Json {
        Json::Obj(
            names
                .iter()
                .zip(self.reweighting().estimates())
                .map(|(n, (v, e))| {
                    let entry = Json::obj([("value", Json::Num(v)), ("error", Json::Num(e))]);
                    (n.to_string(), entry)
                })
                .collect(),
        )
    }

    /// The saved state.
    pub fn state(&self) -> Vec<(String, Vec<f64>)> {
        vec![
            // The model's own variables: converting back could change the last bit.
            (self.fields_name.into(), self.current.clone()),
            ("log_w".into(), self.log_w.clone()),
            ("reweighting".into(), self.reweighting.to_vec()),
        ]
    }

    /// Restores a state of [`IndependenceChains::state`].
    pub fn restore(&mut self, state: &[(String, Vec<f64>)]) -> Result<()> {
        let get = |name: &str| crate::sampler::saved(state, name);
        let log_w = get("log_w")?;
        let fields = get(self.fields_name)?;
        if log_w.len() != self.log_w.len() || fields.len() != self.current.len() {
            return Err(Error::InvalidInput(
                "the saved independence-sampler state does not fit the run".into(),
            ));
        }
        let sums = Reweighting::from_vec(get("reweighting")?, self.reweighting.estimates().len())?;
        self.current = fields.to_vec();
        self.log_w = log_w.to_vec();
        self.reweighting = sums;
        Ok(())
    }
}

/// Another sampler (HMC, local sweeps) run for `updates` updates of every chain after each
/// independence step. Each is a Markov kernel leaving e^{−S} invariant, so the chain stays exact;
/// the local updates reach what the model rarely proposes, and the chains no longer stick for
/// long after a proposal of large weight.
pub struct Between {
    sampler: Box<dyn Sampler>,
    updates: usize,
    /// Σ accepted and the number of its updates' chain-proposals, for its acceptance rate.
    accepted: [f64; 2],
    /// Those sums over every rank, once pooled for the summary ([`Between::pool`]).
    pooled: Option<[f64; 2]>,
}

impl Between {
    /// `updates` updates of `sampler` after every independence step of `chains` chains.
    pub fn new(sampler: Box<dyn Sampler>, updates: usize, chains: usize) -> Result<Self> {
        if updates == 0 || sampler.chains() != chains {
            return Err(Error::InvalidInput(format!(
                "interleaving {updates} updates of a sampler of {} chains with an independence \
                 sampler of {chains} chains",
                sampler.chains()
            )));
        }
        Ok(Between {
            sampler,
            updates,
            accepted: [0.0; 2],
            pooled: None,
        })
    }

    /// Pools the acceptance sums of every rank of `team` for the summary (every rank calls it).
    pub fn pool(&mut self, team: &dyn crate::ensemble::Team) -> Result<()> {
        let sums = crate::ensemble::all_sum(team, &self.accepted)?;
        self.pooled = Some([sums[0], sums[1]]);
        Ok(())
    }

    /// Keys the interleaved sampler's draws by global chain indices from `first`.
    pub fn set_first_chain(&mut self, first: usize) -> Result<()> {
        self.sampler.set_first_chain(first)
    }

    /// Site updates of the interleaved updates after one independence step.
    pub fn site_updates(&self) -> u64 {
        self.updates as u64 * self.sampler.site_updates()
    }

    /// Moves `phi` (`[chain][site]`, the theory's variables) on by `updates` updates.
    pub fn run(&mut self, phi: &[f64]) -> Result<Vec<f64>> {
        self.sampler.set_fields(phi)?;
        for _ in 0..self.updates {
            let stats = self.sampler.update()?;
            self.accepted[0] += stats.accepted.iter().sum::<f64>();
            self.accepted[1] += stats.accepted.len() as f64;
        }
        self.sampler.fields()
    }

    /// Its state, names prefixed `between.`.
    pub fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        let mut s: Vec<(String, Vec<f64>)> = self
            .sampler
            .state()?
            .into_iter()
            .map(|(n, v)| (format!("between.{n}"), v))
            .collect();
        s.push(("between_accepted".into(), self.accepted.to_vec()));
        Ok(s)
    }

    /// Restores the state of [`Between::state`] after `done` independence steps.
    pub fn restore(&mut self, done: u64, state: &[(String, Vec<f64>)]) -> Result<()> {
        let own: Vec<(String, Vec<f64>)> = state
            .iter()
            .filter_map(|(n, v)| {
                n.strip_prefix("between.")
                    .map(|m| (m.to_string(), v.clone()))
            })
            .collect();
        self.sampler.restore(done * self.updates as u64, &own)?;
        let acc = crate::sampler::saved(state, "between_accepted")?;
        self.accepted = match acc {
            [a, n] if a.is_finite() && n.is_finite() && (0.0..=*n).contains(a) => [*a, *n],
            _ => {
                return Err(Error::InvalidInput(
                    "the saved acceptance of the interleaved updates does not fit".into(),
                ))
            }
        };
        Ok(())
    }

    /// `key=value` lines of its parameters.
    pub fn parameters(&self) -> String {
        let mut p = format!("between={}\n", self.updates);
        for line in self.sampler.parameters().lines() {
            p += &format!("between.{line}\n");
        }
        p
    }

    /// The summary entry: updates per step, the sampler's parameters, its acceptance.
    pub fn summary(&self) -> Json {
        // The sampler's own seed is derived from the run's (see `SamplerConfig::build`).
        let sampler = self
            .sampler
            .summary()
            .into_iter()
            .filter(|(n, _)| *n != "seed")
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        Json::obj([
            ("updates", Json::Num(self.updates as f64)),
            ("sampler", Json::Obj(sampler)),
            (
                "acceptance",
                Json::Num({
                    let [a, n] = self.pooled.unwrap_or(self.accepted);
                    a / n.max(1.0)
                }),
            ),
        ])
    }
}
