//! Samplers behind one production run. A [`Sampler`] advances a batch of independent chains by
//! one whole-lattice update at a time (an HMC trajectory; later a sweep, a Langevin step, an
//! independence-Metropolis step over a trained model's proposals), measures them, and saves and
//! restores its state; [`crate::run::run`] does everything else (files, checkpoints, analysis,
//! ownership, thermalisation checks) the same way for all of them.
//!
//! Adding a sampler: a file implementing [`Sampler`], a variant of [`SamplerConfig`] with its
//! parameters, and its arm in [`SamplerConfig::build`].

use std::path::PathBuf;
use std::sync::Arc;

use crate::can::sampler::CanSampler;
use crate::device::Device;
use crate::error::Result;
use crate::flow::nmcmc::FlowSampler;
use crate::hmc::sampler::HmcSampler;
use crate::hmc::HmcParams;
use crate::io::json::Json;
use crate::local::LocalSampler;
use crate::theory::{check_offers, LocalAlgorithm, Theory};

/// Mixed into the seed of the HMC interleaved with a flow (the golden ratio's bits).
const BETWEEN_KEY: u64 = 0x9E37_79B9_7F4A_7C15;

/// What one update did, per chain.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateStats {
    /// Whether the chain's proposal was accepted (1 or 0; for samplers that accept site by site,
    /// the accepted fraction).
    pub accepted: Vec<f64>,
    /// ΔH of the chain's proposal, where the sampler has one (NaN otherwise).
    pub delta_h: Vec<f64>,
}

/// One chain's measurement of its current configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainMeasurement {
    /// The theory's primary observables, in the order of its names.
    pub primaries: Vec<f64>,
    /// Per time slice, the sum of the field over the slice (for the correlator).
    pub slices: Vec<f64>,
}

/// A batch of independent Markov chains of one theory.
pub trait Sampler: Send {
    /// Number of chains.
    fn chains(&self) -> usize;
    /// Seed of every random draw (Philox key).
    fn seed(&self) -> u64;
    /// `key=value` lines fixing the Markov chain (the algorithm and its parameters), for
    /// manifests and checkpoints.
    fn parameters(&self) -> String;
    /// The parameters for `summary.json`.
    fn summary(&self) -> Vec<(&'static str, Json)>;
    /// Warm-up level for thermalisation: 0 is production; level k > 0 takes smaller steps
    /// (for HMC, 2^k times the MD steps at the same trajectory length).
    fn set_warmup(&mut self, level: u32) -> Result<()>;
    /// One update of every chain; the update's index (for the random numbers) is
    /// [`Sampler::updates_done`], which then grows by one.
    fn update(&mut self) -> Result<UpdateStats>;
    /// Updates done so far (including those before a resume).
    fn updates_done(&self) -> u64;
    /// Whether an update is one proposal of each whole configuration with a ΔH (HMC, MALA,
    /// Langevin, independence Metropolis); local samplers accept site by site and report NaN ΔH.
    fn global_proposals(&self) -> bool {
        true
    }
    /// Files this sampler's command writes into the run directory beside the run's own (listed
    /// in its manifest so that `--force` replaces them too).
    fn extra_files(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// Whether a chain rejecting every proposal for many updates (20 in the run's check) means it
    /// is broken (HMC with too large a step). An independence sampler (a flow) rejects long runs
    /// legitimately after a proposal of large weight, so it says no.
    fn stalls_are_failures(&self) -> bool {
        self.global_proposals()
    }
    /// Pools what the summary reports over every rank of `team` when each rank runs a share of
    /// the chains (an independence sampler's reweighting sums); a collective call, made by every
    /// rank before the summary. Samplers whose summary covers their chains alone do nothing.
    fn pool_summary(&mut self, _team: &dyn crate::ensemble::Team) -> Result<()> {
        Ok(())
    }
    /// What to change when the acceptance is low (printed with the warning).
    fn low_acceptance_advice(&self) -> &'static str {
        "increase --steps (or lower --tau)"
    }
    /// Site updates the last update performed (for throughput figures).
    fn site_updates(&self) -> u64;
    /// Measures every chain's current configuration.
    fn measure(&mut self) -> Result<Vec<ChainMeasurement>>;
    /// The fields, `[chain][site]`.
    fn fields(&self) -> Result<Vec<f64>>;
    /// Sets the fields, `[chain][site]` (a start).
    fn set_fields(&mut self, phi: &[f64]) -> Result<()>;
    /// Makes the batch the chains `first..first + chains()` of a larger ensemble (an MPI rank's
    /// share): every random number is then keyed by the global chain index, so the batch
    /// reproduces those chains of one process running the whole ensemble, bit for bit. Set it
    /// before the first update (the start fields come from [`Theory::start_fields`] with the same
    /// range). Every sampler here supports it; the default, for a sampler whose random numbers
    /// are keyed by the local index, refuses a nonzero `first`.
    fn set_first_chain(&mut self, first: usize) -> Result<()> {
        if first == 0 {
            return Ok(());
        }
        Err(crate::error::Error::InvalidInput(format!(
            "this sampler ({}) cannot run a share of an ensemble (its random numbers are keyed by \
             the local chain index)",
            self.parameters().lines().next().unwrap_or("")
        )))
    }
    /// Copies the fields, `[chain][site]` as [`Sampler::fields`] but raw (angles unwrapped), into
    /// (`to_external`) or from a caller's CUDA buffer, device to device; samplers whose fields
    /// are not on a GPU refuse.
    ///
    /// # Safety
    /// As [`crate::device::CudaDevice::exchange_external`].
    unsafe fn exchange_fields_external(
        &mut self,
        _ext: crate::device::cuda::ExternalBuffer,
        _to_external: bool,
    ) -> Result<()> {
        Err(crate::error::Error::InvalidInput(format!(
            "device buffers: this sampler ({}) keeps its fields in host memory; use the host \
             get/set calls",
            self.parameters().lines().next().unwrap_or("")
        )))
    }
    /// Named arrays that, with [`Sampler::updates_done`], restore the sampler exactly.
    fn state(&self) -> Result<Vec<(String, Vec<f64>)>>;
    /// Restores a state saved by [`Sampler::state`] after `done` updates.
    fn restore(&mut self, done: u64, state: &[(String, Vec<f64>)]) -> Result<()>;
}

/// The Philox chain word of global chain `first`, checked so that every chain of the batch
/// `first..first + chains` has its own word.
pub fn first_chain_word(first: usize, chains: usize) -> Result<u32> {
    match first.checked_add(chains) {
        Some(end) if end <= u32::MAX as usize => Ok(first as u32),
        _ => Err(crate::error::Error::InvalidInput(format!(
            "chains {first}..{first}+{chains} exceed the 2^32 chains the random numbers can tell apart"
        ))),
    }
}

/// The array `name` of a state saved by [`Sampler::state`], or an error naming what is missing.
pub fn saved<'a>(state: &'a [(String, Vec<f64>)], name: &str) -> Result<&'a [f64]> {
    state
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
        .ok_or_else(|| {
            crate::error::Error::InvalidInput(format!("the saved state has no '{name}'"))
        })
}

/// Every sampler with its parameters: the registry of [`Sampler`] implementations.
#[derive(Clone, Debug, PartialEq)]
pub enum SamplerConfig {
    /// Hybrid Monte Carlo ([`crate::hmc`]).
    Hmc(HmcParams),
    /// Fourier-accelerated HMC ([`crate::hmc::fourier`]): mass kernel k̂² + `m2`.
    FaHmc {
        /// The HMC parameters.
        params: HmcParams,
        /// The mass m̃² of the kernel.
        m2: f64,
    },
    /// Metropolis-adjusted Langevin: the proposal φ' = φ + εF(φ) + √(2ε)η accepted with the
    /// Metropolis–Hastings ratio; exact for every ε.
    Mala {
        /// Langevin time step ε.
        epsilon: f64,
        /// Seed of every random draw.
        seed: u64,
    },
    /// Unadjusted Langevin (stochastic quantisation, Euler–Maruyama): φ' = φ + εF(φ) + √(2ε)η,
    /// always kept; its stationary distribution is e^{−S} only up to O(ε).
    Langevin {
        /// Langevin time step ε.
        epsilon: f64,
        /// Seed of every random draw.
        seed: u64,
    },
    /// Independence Metropolis over a trained flow's proposals ([`crate::flow::nmcmc`]),
    /// optionally followed by HMC trajectories after every proposal.
    Flow {
        /// The model directory (`flow.json`, `model.safetensors`).
        model: PathBuf,
        /// Seed of every random draw.
        seed: u64,
        /// HMC parameters and trajectories run after each independence step (None: none).
        hmc_between: Option<(HmcParams, usize)>,
    },
    /// Independence Metropolis (or, without `mh`, raw draws) over a trained autoregressive
    /// network of the XY model ([`crate::can::sampler`]).
    Can {
        /// The model directory (`can.json`, `model.safetensors`).
        model: PathBuf,
        /// Seed of every random draw.
        seed: u64,
        /// Whether draws pass a Metropolis–Hastings test (exact) or are all kept.
        mh: bool,
        /// A local algorithm and its sweeps run after every independence step (None: none).
        local_between: Option<(LocalAlgorithm, usize)>,
        /// The symmetries the proposals are averaged over ([`crate::can::symmetry`]).
        symmetry: crate::can::symmetry::Symmetry,
    },
    /// Raw draws of a trained score network ([`crate::diffusion::sampler`]): the reverse
    /// process per update, not exact.
    Diffusion {
        /// The model directory (`diffusion.json`, `model.safetensors`).
        model: PathBuf,
        /// Seed of every random draw.
        seed: u64,
        /// The integrator, its steps, and the Metropolis correction.
        draws: crate::diffusion::sampler::DrawSettings,
        /// HMC parameters and trajectories run after each independence step (None: none).
        hmc_between: Option<(HmcParams, usize)>,
    },
    /// A local update of the theory's own (checkerboard Metropolis, overrelaxation, heat-bath).
    Local {
        /// The algorithm.
        algorithm: LocalAlgorithm,
        /// Seed of every random draw.
        seed: u64,
    },
}

impl SamplerConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        match self {
            SamplerConfig::Hmc(p) => p.validate(),
            SamplerConfig::FaHmc { params, m2 } => {
                params.validate()?;
                crate::hmc::fourier::check_mass(*m2)
            }
            SamplerConfig::Local { algorithm, .. } => algorithm.validate(),
            SamplerConfig::Diffusion {
                draws, hmc_between, ..
            } => {
                draws.validate()?;
                check_hmc_between(hmc_between)
            }
            SamplerConfig::Can { local_between, .. } => match local_between {
                Some((_, 0)) => Err(crate::error::Error::InvalidInput(
                    "--local-between 0: give at least one sweep, or leave the flag out".into(),
                )),
                Some((a, _)) => a.validate(),
                None => Ok(()),
            },
            SamplerConfig::Flow { hmc_between, .. } => check_hmc_between(hmc_between),
            SamplerConfig::Mala { epsilon, .. } | SamplerConfig::Langevin { epsilon, .. } => {
                if epsilon.is_finite() && *epsilon > 0.0 {
                    Ok(())
                } else {
                    Err(crate::error::Error::InvalidInput(format!(
                        "--epsilon {epsilon} must be a positive number"
                    )))
                }
            }
        }
    }

    /// The name used by `--algorithm`.
    pub fn name(&self) -> &'static str {
        match self {
            SamplerConfig::Hmc(_) => "hmc",
            SamplerConfig::FaHmc { .. } => "fa-hmc",
            SamplerConfig::Mala { .. } => "mala",
            SamplerConfig::Langevin { .. } => "langevin",
            SamplerConfig::Local { algorithm, .. } => algorithm.name(),
            SamplerConfig::Flow { .. } => "flow",
            SamplerConfig::Can { .. } => "can",
            SamplerConfig::Diffusion { .. } => "diffusion",
        }
    }

    /// The sampler for `chains` chains of `theory` with the lattice cut by `grid` over the ranks
    /// of `team` ([`crate::domain`]); HMC only.
    pub fn build_decomposed(
        &self,
        theory: Arc<dyn Theory>,
        chains: usize,
        team: Arc<dyn crate::ensemble::Team + Send + Sync>,
        grid: &[usize],
        device: &Device,
    ) -> Result<Box<dyn Sampler>> {
        check_offers(theory.as_ref(), self.name())?;
        match self {
            SamplerConfig::Hmc(p) => Ok(Box::new(HmcSampler::decomposed(
                theory, chains, *p, team, grid, device,
            )?)),
            other => Err(crate::error::Error::InvalidInput(format!(
                "--decompose runs --algorithm hmc, not {}; run {} without --decompose (its chains \
                 then spread over the ranks)",
                other.name(),
                other.name()
            ))),
        }
    }

    /// The sampler for `chains` chains of `theory` on `device`; an algorithm the theory does not
    /// offer is an error naming the pairs that exist.
    pub fn build(
        &self,
        theory: Arc<dyn Theory>,
        chains: usize,
        device: &Device,
    ) -> Result<Box<dyn Sampler>> {
        check_offers(theory.as_ref(), self.name())?;
        Ok(match self.clone() {
            SamplerConfig::Hmc(p) => Box::new(HmcSampler::new(theory, chains, p, device)?),
            SamplerConfig::FaHmc { params, m2 } => {
                Box::new(HmcSampler::fourier(theory, chains, params, m2, device)?)
            }
            SamplerConfig::Mala { epsilon, seed } => Box::new(HmcSampler::langevin(
                theory, chains, epsilon, seed, true, device,
            )?),
            SamplerConfig::Langevin { epsilon, seed } => Box::new(HmcSampler::langevin(
                theory, chains, epsilon, seed, false, device,
            )?),
            SamplerConfig::Flow {
                model,
                seed,
                hmc_between,
            } => {
                let mut flow = FlowSampler::new(theory.clone(), &model, chains, seed, device)?;
                if let Some((hmc, k)) = between_hmc(&theory, chains, hmc_between, device)? {
                    flow.interleave(hmc, k)?;
                }
                Box::new(flow)
            }
            SamplerConfig::Can {
                model,
                seed,
                mh,
                local_between,
                symmetry,
            } => {
                let mut can = CanSampler::new(theory.clone(), &model, chains, seed, mh, device)?;
                can.symmetrise(symmetry)?;
                if let Some((algorithm, k)) = local_between {
                    // Its own key, as for the flow's HMC: the sweeps' draws must not repeat the
                    // independence step's accept uniforms.
                    let seed = seed ^ BETWEEN_KEY;
                    let sweeper = theory.sweeper(algorithm, chains, seed, device)?;
                    let local = LocalSampler::new(theory, algorithm, seed, sweeper);
                    can.interleave(Box::new(local), k)?;
                }
                Box::new(can)
            }
            SamplerConfig::Diffusion {
                model,
                seed,
                draws,
                hmc_between,
            } => {
                let mut diffusion = crate::diffusion::sampler::DiffusionSampler::new(
                    theory.clone(),
                    &model,
                    (chains, seed),
                    draws,
                    device,
                )?;
                if let Some((hmc, k)) = between_hmc(&theory, chains, hmc_between, device)? {
                    diffusion.interleave(hmc, k)?;
                }
                Box::new(diffusion)
            }
            SamplerConfig::Local { algorithm, seed } => {
                let sweeper = theory.sweeper(algorithm, chains, seed, device)?;
                Box::new(LocalSampler::new(theory, algorithm, seed, sweeper))
            }
        })
    }
}

/// `--hmc-between K` needs at least one trajectory and valid HMC parameters.
fn check_hmc_between(hmc_between: &Option<(HmcParams, usize)>) -> Result<()> {
    match hmc_between {
        Some((_, 0)) => Err(crate::error::Error::InvalidInput(
            "--hmc-between 0: give at least one trajectory, or leave the flag out".into(),
        )),
        Some((p, _)) => p.validate(),
        None => Ok(()),
    }
}

/// The HMC run between a generative model's independence steps, and its trajectories per step.
/// It gets its own Philox key: with the model's, the HMC accept uniforms of trajectory t would be
/// the independence step's of update t (both use STREAM_ACCEPT, keyed by chain and step),
/// correlating the two decisions.
fn between_hmc(
    theory: &Arc<dyn Theory>,
    chains: usize,
    hmc_between: Option<(HmcParams, usize)>,
    device: &Device,
) -> Result<Option<(Box<dyn Sampler>, usize)>> {
    let Some((params, k)) = hmc_between else {
        return Ok(None);
    };
    let params = HmcParams {
        seed: params.seed ^ BETWEEN_KEY,
        ..params
    };
    let hmc = HmcSampler::new(theory.clone(), chains, params, device)?;
    Ok(Some((Box::new(hmc), k)))
}
