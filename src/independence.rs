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
use crate::sampler::UpdateStats;

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

    /// The reweighting sums.
    pub fn reweighting(&self) -> &Reweighting {
        &self.reweighting
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
                .zip(self.reweighting.estimates())
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
