//! HMC as a [`Sampler`]: one trajectory per update, the thermalisation warm-up as more MD steps
//! at the same trajectory length, and measurements from the per-slice moments and the action of
//! each chain's configuration.
//!
//! Langevin samplers are the same machine: from fresh unit momenta, one leapfrog step of size h
//! moves φ to φ + h²/2·F(φ) + hη, the Euler–Maruyama step with ε = h²/2, and its ΔH is exactly
//! the log Metropolis–Hastings ratio of that proposal (R. M. Neal, "MCMC using Hamiltonian
//! dynamics", Handbook of MCMC (2011), sec. 5.5.2). So MALA is one-step leapfrog HMC with
//! h = √(2ε), and unadjusted Langevin the same without the accept/reject step (its ΔH still
//! reported, as a measure of the discretisation error).

use std::sync::Arc;

use super::{Hmc, HmcParams, MAX_STEPS};
use crate::action::ObservableSet;
use crate::device::Device;
use crate::ensemble::Team;
use crate::error::{Error, Result};
use crate::io::json::Json;
use crate::lattice::Lattice;
use crate::observables::{primaries, Measurement};
use crate::sampler::{ChainMeasurement, Sampler, UpdateStats};
use crate::theory::{FieldKind, Theory};

/// Which algorithm an [`HmcSampler`] runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Algorithm {
    Hmc,
    /// Fourier-accelerated HMC with mass kernel k̂² + m2.
    FourierHmc {
        m2: f64,
    },
    /// Metropolis-adjusted (`true`) or unadjusted Langevin with time step ε.
    Langevin {
        epsilon: f64,
        adjusted: bool,
    },
}

/// [`Hmc`] behind the [`Sampler`] interface.
pub struct HmcSampler {
    algorithm: Algorithm,
    hmc: Hmc,
    production_steps: usize,
    theory: Arc<dyn Theory>,
    set: ObservableSet,
    lattice: Lattice,
    /// S of each chain's current configuration, when known (after an update).
    action: Vec<f64>,
}

impl HmcSampler {
    /// HMC on `chains` chains of `theory` (which must have a force) with `params` (the
    /// production step size).
    pub fn new(
        theory: Arc<dyn Theory>,
        chains: usize,
        params: HmcParams,
        device: &Device,
    ) -> Result<Self> {
        Self::around(theory, params, |action| {
            Hmc::new(action, chains, params, device)
        })
    }

    /// HMC with the lattice cut by `grid` over the ranks of `team` ([`Hmc::decomposed`]).
    pub fn decomposed(
        theory: Arc<dyn Theory>,
        chains: usize,
        params: HmcParams,
        team: Arc<dyn Team + Send + Sync>,
        grid: &[usize],
        device: &Device,
    ) -> Result<Self> {
        Self::around(theory, params, |action| {
            Hmc::decomposed(action, chains, params, team, grid, device)
        })
    }

    /// The sampler around the [`Hmc`] that `hmc` builds for the theory's action.
    fn around(
        theory: Arc<dyn Theory>,
        params: HmcParams,
        hmc: impl FnOnce(Arc<dyn crate::action::Action>) -> Result<Hmc>,
    ) -> Result<Self> {
        let name = theory.name();
        let action = theory.clone().scalar_action().ok_or_else(|| {
            Error::InvalidInput(format!("{name} has no force for HMC or Langevin"))
        })?;
        Ok(HmcSampler {
            algorithm: Algorithm::Hmc,
            production_steps: params.steps,
            set: action.observable_set(),
            lattice: action.lattice().clone(),
            hmc: hmc(action)?,
            theory,
            action: Vec::new(),
        })
    }
}

impl HmcSampler {
    /// MALA (`adjusted`) or unadjusted Langevin with time step ε: one leapfrog step of
    /// h = √(2ε) per update.
    pub fn langevin(
        theory: Arc<dyn Theory>,
        chains: usize,
        epsilon: f64,
        seed: u64,
        adjusted: bool,
        device: &Device,
    ) -> Result<Self> {
        let params = HmcParams {
            tau: (2.0 * epsilon).sqrt(),
            steps: 1,
            integrator: super::Integrator::Leapfrog,
            seed,
        };
        let mut s = Self::new(theory, chains, params, device)?;
        s.hmc.set_metropolis(adjusted);
        s.algorithm = Algorithm::Langevin { epsilon, adjusted };
        Ok(s)
    }

    /// Fourier-accelerated HMC ([`super::fourier`]) with mass kernel k̂² + m̃².
    pub fn fourier(
        theory: Arc<dyn Theory>,
        chains: usize,
        params: HmcParams,
        m2: f64,
        device: &Device,
    ) -> Result<Self> {
        let mut s = Self::new(theory, chains, params, device)?;
        s.hmc.set_fourier_mass(m2)?;
        s.algorithm = Algorithm::FourierHmc { m2 };
        Ok(s)
    }

    fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::Hmc => "hmc",
            Algorithm::FourierHmc { .. } => "fa-hmc",
            Algorithm::Langevin { adjusted: true, .. } => "mala",
            Algorithm::Langevin {
                adjusted: false, ..
            } => "langevin",
        }
    }
}

impl Sampler for HmcSampler {
    fn chains(&self) -> usize {
        self.hmc.chains()
    }

    fn seed(&self) -> u64 {
        self.hmc.params().seed
    }

    fn set_first_chain(&mut self, first: usize) -> Result<()> {
        self.hmc.set_first_chain(first)
    }

    fn parameters(&self) -> String {
        let p = self.hmc.params();
        let name = self.algorithm_name();
        let hmc = format!(
            "algorithm={name}\ntau={:?}\nsteps={}\nintegrator={}\nseed={}\n",
            p.tau,
            self.production_steps,
            p.integrator.name(),
            p.seed
        );
        match self.algorithm {
            Algorithm::Hmc => hmc,
            Algorithm::FourierHmc { m2 } => format!("{hmc}fourier_m2={m2:?}\n"),
            Algorithm::Langevin { epsilon, .. } => {
                format!("algorithm={name}\nepsilon={epsilon:?}\nseed={}\n", p.seed)
            }
        }
    }

    fn summary(&self) -> Vec<(&'static str, Json)> {
        let p = self.hmc.params();
        let mut v = vec![("algorithm", Json::Str(self.algorithm_name().into()))];
        let hmc = [
            ("integrator", Json::Str(p.integrator.name().into())),
            ("tau", Json::Num(p.tau)),
            ("steps", Json::Num(self.production_steps as f64)),
        ];
        match self.algorithm {
            Algorithm::Hmc => v.extend(hmc),
            Algorithm::FourierHmc { m2 } => {
                v.extend(hmc);
                v.push(("fourier_m2", Json::Num(m2)));
            }
            Algorithm::Langevin { epsilon, .. } => v.push(("epsilon", Json::Num(epsilon))),
        }
        v.push(("seed", Json::Num(p.seed as f64)));
        v
    }

    fn set_warmup(&mut self, level: u32) -> Result<()> {
        let factor = 1usize.checked_shl(level).unwrap_or(usize::MAX);
        self.hmc
            .set_steps(self.production_steps.saturating_mul(factor).min(MAX_STEPS))
    }

    fn update(&mut self) -> Result<UpdateStats> {
        let s = self.hmc.trajectory()?;
        self.action = s.action;
        Ok(UpdateStats {
            accepted: s.accepted.iter().map(|&a| a as u8 as f64).collect(),
            delta_h: s.delta_h,
        })
    }

    fn updates_done(&self) -> u64 {
        self.hmc.trajectories_done()
    }

    fn site_updates(&self) -> u64 {
        self.hmc.site_updates_per_trajectory()
    }

    fn measure(&mut self) -> Result<Vec<ChainMeasurement>> {
        if self.theory.field_kind() != FieldKind::Real {
            // Angles: the theory's own observables of the (wrapped) fields.
            let v = self.lattice.volume();
            let fields = self.fields()?;
            return Ok(fields.chunks(v).map(|f| self.theory.measure(f)).collect());
        }
        if self.action.len() != self.chains() {
            self.action = self.hmc.actions()?;
        }
        let v = self.lattice.volume();
        Ok(
            Measurement::batch(&self.hmc.slice_moments()?, &self.action, &self.lattice)
                .iter()
                .map(|m| ChainMeasurement {
                    primaries: primaries(self.set, m, v),
                    slices: m.slice_sums.clone(),
                })
                .collect(),
        )
    }

    /// The fields in the theory's canonical range (angles in [0, 2π)); the checkpoint keeps
    /// the raw values, so that a resumed run continues bit-identically.
    fn fields(&self) -> Result<Vec<f64>> {
        let mut f = self.hmc.fields()?;
        self.theory.canonical(&mut f);
        Ok(f)
    }

    fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        self.action.clear();
        self.hmc.set_fields(phi)
    }

    unsafe fn exchange_fields_external(
        &mut self,
        ext: crate::device::cuda::ExternalBuffer,
        to_external: bool,
    ) -> Result<()> {
        if !to_external {
            self.action.clear();
        }
        // SAFETY: the caller's contract.
        unsafe { self.hmc.exchange_fields_external(ext, to_external) }
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![
            ("fields".into(), self.hmc.fields()?),
            (
                "accepted".into(),
                self.hmc.accepted().iter().map(|&a| a as f64).collect(),
            ),
        ])
    }

    fn restore(&mut self, done: u64, state: &[(String, Vec<f64>)]) -> Result<()> {
        let get = |name: &str| crate::sampler::saved(state, name);
        let accepted = get("accepted")?;
        if accepted.len() != self.chains()
            || accepted
                .iter()
                .any(|&a| !(a >= 0.0 && a <= done as f64 && a.fract() == 0.0))
        {
            return Err(Error::InvalidInput(
                "the saved acceptance counters do not fit the run".into(),
            ));
        }
        self.set_fields(get("fields")?)?;
        self.hmc
            .set_progress(done, accepted.iter().map(|&a| a as u64).collect())
    }
}
