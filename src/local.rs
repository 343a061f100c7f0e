//! Local-update samplers: a theory's [`Sweeper`] (checkerboard Metropolis, overrelaxation,
//! heat-bath) behind the [`Sampler`] interface. One update is one sweep over the lattice; the
//! measurements are the theory's reference measurements of each chain's configuration.

use std::sync::Arc;

use crate::error::Result;
use crate::io::json::Json;
use crate::sampler::{ChainMeasurement, Sampler, UpdateStats};
use crate::theory::{ClusterKind, LocalAlgorithm, Sweeper, Theory};

/// A theory's local update as a [`Sampler`].
pub struct LocalSampler {
    theory: Arc<dyn Theory>,
    algorithm: LocalAlgorithm,
    seed: u64,
    sweeper: Box<dyn Sweeper>,
    done: u64,
}

impl LocalSampler {
    /// Wraps `sweeper`, the theory's implementation of `algorithm` drawing from `seed`.
    pub fn new(
        theory: Arc<dyn Theory>,
        algorithm: LocalAlgorithm,
        seed: u64,
        sweeper: Box<dyn Sweeper>,
    ) -> Self {
        LocalSampler {
            theory,
            algorithm,
            seed,
            sweeper,
            done: 0,
        }
    }
}

impl Sampler for LocalSampler {
    fn chains(&self) -> usize {
        self.sweeper.chains()
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn set_first_chain(&mut self, first: usize) -> Result<()> {
        let chain0 = crate::sampler::first_chain_word(first, self.sweeper.chains())?;
        self.sweeper.set_first_chain(chain0);
        Ok(())
    }

    fn parameters(&self) -> String {
        let mut s = format!("algorithm={}\n", self.algorithm.name());
        if self.algorithm.takes_hits() {
            s.push_str(&format!("hits={}\n", self.algorithm.hits()));
        }
        if let LocalAlgorithm::Cluster {
            kind: ClusterKind::Wolff { clusters },
            ..
        } = self.algorithm
        {
            s.push_str(&format!("clusters={clusters}\n"));
        }
        s.push_str(&format!("seed={}\n", self.seed));
        s
    }

    fn summary(&self) -> Vec<(&'static str, Json)> {
        let mut v = vec![("algorithm", Json::Str(self.algorithm.name().into()))];
        if self.algorithm.takes_hits() {
            v.push(("hits", Json::Num(self.algorithm.hits() as f64)));
        }
        if let LocalAlgorithm::Cluster {
            kind: ClusterKind::Wolff { clusters },
            ..
        } = self.algorithm
        {
            v.push(("clusters", Json::Num(clusters as f64)));
        }
        v.push(("seed", Json::Num(self.seed as f64)));
        v
    }

    /// Local updates need no warm-up: every sweep is exact.
    fn set_warmup(&mut self, _level: u32) -> Result<()> {
        Ok(())
    }

    fn update(&mut self) -> Result<UpdateStats> {
        let accepted = self.sweeper.sweep(self.done)?;
        self.done += 1;
        Ok(UpdateStats {
            delta_h: vec![f64::NAN; accepted.len()],
            accepted,
        })
    }

    fn updates_done(&self) -> u64 {
        self.done
    }

    fn global_proposals(&self) -> bool {
        false
    }

    fn site_updates(&self) -> u64 {
        self.sweeper.site_updates()
    }

    fn measure(&mut self) -> Result<Vec<ChainMeasurement>> {
        let v = self.theory.lattice().volume();
        Ok(self
            .sweeper
            .fields()?
            .chunks(v)
            .map(|f| self.theory.measure(f))
            .collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        self.sweeper.fields()
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        self.sweeper.set_fields(field)
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![("fields".into(), self.sweeper.fields()?)])
    }

    fn restore(&mut self, done: u64, state: &[(String, Vec<f64>)]) -> Result<()> {
        self.sweeper
            .set_fields(crate::sampler::saved(state, "fields")?)?;
        self.done = done;
        Ok(())
    }
}
