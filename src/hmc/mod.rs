//! Hybrid Monte Carlo for many independent chains in one batch.
//!
//! The integrators are written once here as sequences of fused kick–drift updates
//! `p += a·ε·F(φ); φ += b·ε·p`; each backend provides that update (one fused kernel on the GPU),
//! f64 per-chain energies reduced in a fixed order, and momentum refresh from Philox.

pub mod cpu;
pub mod cuda;
pub mod cuda_fourier;
pub mod domain;
pub mod fft;
pub mod fourier;
pub mod sampler;

use std::ops::Range;
use std::sync::Arc;

use crate::action::Action;
use crate::device::cuda::ExternalBuffer;
use crate::device::Device;
use crate::ensemble::Team;
use crate::error::{Error, Result};
use crate::philox;

/// Omelyan's 2MN parameter λ ≈ 0.1932 (Omelyan, Mryglod, Folk, Comput. Phys. Commun. 151 (2003) 272).
pub const OMELYAN_LAMBDA: f64 = 0.193_183_327_503_783_6;

/// Molecular-dynamics integrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrator {
    /// Kick–drift–kick leapfrog, ΔH = O(ε²).
    Leapfrog,
    /// Omelyan's second-order minimum-norm integrator (2MN), ΔH = O(ε²) with a much smaller constant;
    /// per step two force evaluations.
    Omelyan,
    /// Omelyan's fourth-order scheme (Omelyan, Mryglod, Folk, Comput. Phys. Commun. 146 (2002) 188,
    /// eq. 20, with the roles of kick and drift exchanged), ΔH = O(ε⁴); four force evaluations per step.
    Omelyan4,
}

/// Coefficients (ξ, λ, χ) of the fourth-order scheme (Omelyan, Mryglod, Folk 2002, eq. 20).
const OMELYAN4: (f64, f64, f64) = (
    0.178_617_895_844_809_1,
    -0.212_341_831_062_605_4,
    -0.066_264_582_669_818_5,
);

impl Integrator {
    /// Parses `leapfrog`, `omelyan` (or `2mn`) or `omelyan4`.
    pub fn from_name(s: &str) -> Result<Self> {
        match s {
            "leapfrog" => Ok(Integrator::Leapfrog),
            "omelyan" | "2mn" => Ok(Integrator::Omelyan),
            "omelyan4" => Ok(Integrator::Omelyan4),
            _ => Err(Error::InvalidInput(format!(
                "unknown integrator '{s}': use leapfrog, omelyan or omelyan4"
            ))),
        }
    }

    /// Name as accepted by [`Integrator::from_name`].
    pub fn name(&self) -> &'static str {
        match self {
            Integrator::Leapfrog => "leapfrog",
            Integrator::Omelyan => "omelyan",
            Integrator::Omelyan4 => "omelyan4",
        }
    }

    /// The trajectory as fused (kick, drift) coefficients in units of ε, with neighbouring kicks
    /// merged; produced lazily, so a long trajectory allocates nothing.
    pub fn schedule(&self, steps: usize) -> Box<dyn Iterator<Item = (f64, f64)>> {
        let more = steps.saturating_sub(1);
        match *self {
            // K(½)D(1) [K(1)D(1)]^(n−1) K(½)
            Integrator::Leapfrog => Box::new(
                std::iter::once((0.5, 1.0))
                    .chain(std::iter::repeat_n((1.0, 1.0), more))
                    .chain(std::iter::once((0.5, 0.0))),
            ),
            // K(λ)D(½)K(1−2λ)D(½) [K(2λ)D(½)K(1−2λ)D(½)]^(n−1) K(λ)
            Integrator::Omelyan => {
                let l = OMELYAN_LAMBDA;
                Box::new(
                    [(l, 0.5), (1.0 - 2.0 * l, 0.5)]
                        .into_iter()
                        .chain((0..more).flat_map(move |_| [(2.0 * l, 0.5), (1.0 - 2.0 * l, 0.5)]))
                        .chain(std::iter::once((l, 0.0))),
                )
            }
            // Per step K(ξ)D(½−λ)K(χ)D(λ)K(1−2(χ+ξ))D(λ)K(χ)D(½−λ)K(ξ); end kicks of neighbouring steps merge.
            Integrator::Omelyan4 => {
                let (xi, l, chi) = OMELYAN4;
                let mid = 1.0 - 2.0 * (chi + xi);
                Box::new(
                    (0..steps)
                        .flat_map(move |step| {
                            let first = if step == 0 { xi } else { 2.0 * xi };
                            [(first, 0.5 - l), (chi, l), (mid, l), (chi, 0.5 - l)]
                        })
                        .chain(std::iter::once((xi, 0.0))),
                )
            }
        }
    }

    /// Fused updates in a trajectory of `steps` steps (the length of [`Integrator::schedule`]).
    pub fn updates(&self, steps: usize) -> usize {
        let per_step = match self {
            Integrator::Leapfrog => 1,
            Integrator::Omelyan => 2,
            Integrator::Omelyan4 => 4,
        };
        per_step * steps + 1
    }
}

/// Most MD steps per trajectory accepted: far beyond any useful trajectory, and small enough that
/// update counts cannot overflow.
pub const MAX_STEPS: usize = 1_000_000_000;

/// How the chains start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// φ drawn from a unit Gaussian (its own Philox stream per chain).
    Hot,
    /// φ = 0 everywhere.
    Cold,
    /// φ uniform at the minimum of the action ([`Action::ordered_value`]): the broken phase.
    Ordered,
}

impl Start {
    /// Parses `hot`, `cold` or `ordered`.
    pub fn from_name(s: &str) -> Result<Self> {
        match s {
            "hot" => Ok(Start::Hot),
            "cold" => Ok(Start::Cold),
            "ordered" => Ok(Start::Ordered),
            _ => Err(Error::InvalidInput(format!(
                "unknown start '{s}': use hot, cold or ordered"
            ))),
        }
    }

    /// Name as accepted by [`Start::from_name`].
    pub fn name(&self) -> &'static str {
        match self {
            Start::Hot => "hot",
            Start::Cold => "cold",
            Start::Ordered => "ordered",
        }
    }

    /// The starting batch `[chain][site]` of the ensemble's chains `chains` (global indices,
    /// which key the random numbers) of `action`.
    pub fn fields(&self, action: &dyn Action, chains: Range<usize>, seed: u64) -> Vec<f64> {
        let volume = action.lattice().volume();
        let first = chains.start;
        let chains = chains.len();
        match self {
            Start::Hot => {
                let mut phi = vec![0.0; chains * volume];
                for (c, chain) in phi.chunks_mut(volume).enumerate() {
                    philox::fill_normals(chain, seed, (first + c) as u32, 0, philox::STREAM_INIT);
                }
                phi
            }
            Start::Cold => vec![0.0; chains * volume],
            Start::Ordered => vec![action.ordered_value(); chains * volume],
        }
    }
}

/// HMC parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HmcParams {
    /// Trajectory length τ.
    pub tau: f64,
    /// Integration steps per trajectory (step size ε = τ/steps).
    pub steps: usize,
    /// The integrator.
    pub integrator: Integrator,
    /// Seed of every random draw (Philox key).
    pub seed: u64,
}

impl HmcParams {
    /// Checks τ > 0 finite and steps ≥ 1.
    pub fn validate(&self) -> Result<()> {
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(Error::InvalidInput(format!(
                "trajectory length tau = {} must be a positive number",
                self.tau
            )));
        }
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(Error::InvalidInput(format!(
                "steps = {} must be between 1 and {MAX_STEPS}",
                self.steps
            )));
        }
        Ok(())
    }
}

/// What one trajectory did, per chain.
#[derive(Clone, Debug)]
pub struct TrajectoryStats {
    /// ΔH = H(end) − H(start) (before accept/reject).
    pub delta_h: Vec<f64>,
    /// Whether the proposal was accepted.
    pub accepted: Vec<bool>,
    /// S of the configuration each chain holds afterwards.
    pub action: Vec<f64>,
}

/// Per-(chain, time slice) sums Σφ, Σφ², Σφ⁴, as the backends return them.
pub type SliceMoments = Vec<[f64; 3]>;

/// Per-chain (kinetic, action) from per-chain pairs `[2*chain + {0,1}]`.
fn split_energies(pairs: &[f64]) -> (Vec<f64>, Vec<f64>) {
    pairs.chunks(2).map(|e| (e[0], e[1])).unzip()
}

/// [`SliceMoments`] from triples `[3*slice + k]`.
fn moments_from_flat(flat: &[f64]) -> SliceMoments {
    flat.chunks(3).map(|m| [m[0], m[1], m[2]]).collect()
}

/// What a backend must provide; implemented by [`cpu::CpuHmc`] and [`cuda::CudaHmc`].
pub trait HmcBackend: Send {
    /// p ← Gaussian draws with counter (site pair, `chain0` + chain, `step`, `stream`) (see
    /// [`philox::counter_words`]); `chain0` is the global index of the batch's first chain.
    fn refresh_momenta(&mut self, seed: u64, chain0: u32, step: u32, stream: u32) -> Result<()>;
    /// p += kick·F(φ); then, if drift ≠ 0, φ += drift·p (coefficients already include ε).
    fn kick_drift(&mut self, kick: f64, drift: f64) -> Result<()>;
    /// Per chain (½Σp², S(φ)), each reduced over fixed chunks in a fixed order in f64.
    fn energies(&mut self) -> Result<(Vec<f64>, Vec<f64>)>;
    /// Remembers the current fields (the start of a trajectory).
    fn save_fields(&mut self) -> Result<()>;
    /// Returns the chains marked `true` to their remembered fields.
    fn restore_fields(&mut self, which: &[bool]) -> Result<()>;
    /// Per (chain, time slice): Σφ, Σφ², Σφ⁴.
    fn slice_moments(&mut self) -> Result<SliceMoments>;
    /// The fields, `[chain][site]`.
    fn fields(&self) -> Result<Vec<f64>>;
    /// Sets the fields, `[chain][site]`.
    fn set_fields(&mut self, phi: &[f64]) -> Result<()>;
    /// The momenta, `[chain][site]`.
    fn momenta(&self) -> Result<Vec<f64>>;
    /// Sets the momenta, `[chain][site]`.
    fn set_momenta(&mut self, p: &[f64]) -> Result<()>;
    /// Installs Fourier acceleration: the update filters the drift and the momenta through
    /// `mass` ([`fourier`]; on the GPU by the transforms of [`fft`]).
    fn set_fourier_mass(&mut self, mass: fourier::FourierMass) -> Result<()>;
    /// Waits for queued work (a no-op on the CPU).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// Copies the fields to (`to_external`) or from a caller's device buffer, on the device
    /// ([`crate::device::CudaDevice::exchange_external`]); only a GPU backend has them there.
    ///
    /// # Safety
    /// As [`crate::device::CudaDevice::exchange_external`].
    unsafe fn exchange_fields_external(
        &mut self,
        _ext: ExternalBuffer,
        _to_external: bool,
    ) -> Result<()> {
        Err(Error::InvalidInput(
            "the fields live in host memory on this device: device buffers need a sampler on \
             cuda (use the host get/set calls)"
                .into(),
        ))
    }
}

/// Refuses invalid parameters, no chains, and batches beyond the kernels' 32-bit indices.
fn check_batch_size(params: &HmcParams, action: &dyn Action, chains: usize) -> Result<()> {
    params.validate()?;
    if chains == 0 {
        return Err(Error::InvalidInput("need at least one chain".into()));
    }
    let volume = action.lattice().volume();
    if chains
        .checked_mul(volume)
        .is_none_or(|n| n > u32::MAX as usize / 2)
    {
        return Err(Error::InvalidInput(format!(
            "{chains} chains of {volume} sites exceed 2^31 values; use fewer chains"
        )));
    }
    Ok(())
}

/// An HMC sampler running `chains` independent chains of one action on one device.
pub struct Hmc {
    action: Arc<dyn Action>,
    chains: usize,
    params: HmcParams,
    /// Accept/reject each trajectory (false: unadjusted, every proposal is kept).
    metropolis: bool,
    backend: Box<dyn HmcBackend>,
    /// Global index of the first chain (a range of a larger ensemble), keying the random numbers.
    first_chain: u32,
    next_trajectory: u64,
    accepted: Vec<u64>,
}

impl Hmc {
    /// A sampler with a hot start ([`Start::Hot`]); [`Hmc::set_fields`] sets another.
    pub fn new(
        action: Arc<dyn Action>,
        chains: usize,
        params: HmcParams,
        device: &Device,
    ) -> Result<Self> {
        check_batch_size(&params, action.as_ref(), chains)?;
        let volume = action.lattice().volume();
        // Field, next field, saved field, momenta and a scratch batch, 8 bytes per value.
        crate::device::memory::check(
            device,
            5 * 8 * (chains * volume) as u128,
            &format!("HMC on {chains} chains of {volume} sites"),
            "use fewer chains or a smaller lattice",
        )?;
        let backend: Box<dyn HmcBackend> = match device {
            Device::Cpu(d) => Box::new(cpu::CpuHmc::new(d.clone(), action.as_ref(), chains)),
            Device::Cuda(d) => Box::new(cuda::CudaHmc::new(d.clone(), action.as_ref(), chains)?),
        };
        Self::with_backend(action, chains, params, backend)
    }

    /// A sampler whose lattice is cut by `grid` (ranks per axis) over the ranks of `team`
    /// ([`domain`]), each rank's box on `device` (the host's threads, or one GPU per rank): every
    /// rank calls this and then every method in the same order; the trajectories are
    /// bit-identical to [`Hmc::new`] on the CPU running the whole lattice, for any grid, thread
    /// counts and devices.
    pub fn decomposed(
        action: Arc<dyn Action>,
        chains: usize,
        params: HmcParams,
        team: Arc<dyn Team + Send + Sync>,
        grid: &[usize],
        device: &Device,
    ) -> Result<Self> {
        check_batch_size(&params, action.as_ref(), chains)?;
        let box_ = domain::DomainHmc::new(action.as_ref(), chains, team, grid, device)?;
        let backend = Box::new(box_);
        Self::with_backend(action, chains, params, backend)
    }

    fn with_backend(
        action: Arc<dyn Action>,
        chains: usize,
        params: HmcParams,
        backend: Box<dyn HmcBackend>,
    ) -> Result<Self> {
        let mut hmc = Hmc {
            action,
            chains,
            params,
            backend,
            first_chain: 0,
            next_trajectory: 0,
            accepted: vec![0; chains],
            metropolis: true,
        };
        let phi = Start::Hot.fields(hmc.action.as_ref(), 0..chains, params.seed);
        hmc.backend.set_fields(&phi)?;
        Ok(hmc)
    }

    /// Makes the batch the chains `first..first + chains` of a larger ensemble: momenta and
    /// accept/reject draws are keyed by the global chain index, so the batch reproduces those
    /// chains of one process running them all (the start fields are set separately).
    pub fn set_first_chain(&mut self, first: usize) -> Result<()> {
        self.first_chain = crate::sampler::first_chain_word(first, self.chains)?;
        Ok(())
    }

    /// With `false`, every trajectory is kept without the Metropolis test (ΔH is still reported):
    /// one leapfrog step is then the unadjusted Langevin (Euler–Maruyama) update.
    pub fn set_metropolis(&mut self, on: bool) {
        self.metropolis = on;
    }

    /// Fourier acceleration with the mass kernel M̃_k = k̂² + m̃² ([`fourier`]); the momentum
    /// refresh, integrators and energies are unchanged (in the variables π = M^{−1/2}p).
    pub fn set_fourier_mass(&mut self, m2: f64) -> Result<()> {
        let mass = fourier::FourierMass::new(self.action.lattice(), m2)?;
        self.backend.set_fourier_mass(mass)
    }

    /// Changes the MD steps per trajectory (at fixed τ): the step-size warm-up of thermalisation.
    pub fn set_steps(&mut self, steps: usize) -> Result<()> {
        let params = HmcParams {
            steps,
            ..self.params
        };
        params.validate()?;
        self.params = params;
        Ok(())
    }

    /// The action being sampled.
    pub fn action(&self) -> &Arc<dyn Action> {
        &self.action
    }

    /// Number of chains.
    pub fn chains(&self) -> usize {
        self.chains
    }

    /// The HMC parameters.
    pub fn params(&self) -> &HmcParams {
        &self.params
    }

    /// Index of the next trajectory (= trajectories done so far, including any before a resume).
    pub fn trajectories_done(&self) -> u64 {
        self.next_trajectory
    }

    /// Accepted trajectories per chain so far.
    pub fn accepted(&self) -> &[u64] {
        &self.accepted
    }

    /// Restores the counters of a resumed run (fields are set separately).
    pub fn set_progress(&mut self, trajectories_done: u64, accepted: Vec<u64>) -> Result<()> {
        if accepted.len() != self.chains {
            return Err(Error::InvalidInput(format!(
                "{} acceptance counters for {} chains",
                accepted.len(),
                self.chains
            )));
        }
        self.next_trajectory = trajectories_done;
        self.accepted = accepted;
        Ok(())
    }

    /// Runs the molecular-dynamics trajectory from the current (φ, p), without accept/reject.
    pub fn integrate(&mut self) -> Result<()> {
        let eps = self.params.tau / self.params.steps as f64;
        for (a, b) in self.params.integrator.schedule(self.params.steps) {
            self.backend.kick_drift(a * eps, b * eps)?;
        }
        Ok(())
    }

    /// Waits until all queued device work has finished (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.backend.synchronize()
    }

    /// Fused MD site-updates one [`Hmc::integrate`] call performs (sites × chains × updates).
    pub fn site_updates_per_trajectory(&self) -> u64 {
        (self.chains
            * self.action.lattice().volume()
            * self.params.integrator.updates(self.params.steps)) as u64
    }

    /// Per-chain S(φ) of the current fields.
    pub fn actions(&mut self) -> Result<Vec<f64>> {
        Ok(self.backend.energies()?.1)
    }

    /// Per-chain H = ½Σp² + S(φ) of the current state.
    pub fn hamiltonians(&mut self) -> Result<Vec<f64>> {
        let (k, s) = self.backend.energies()?;
        Ok(k.iter().zip(&s).map(|(k, s)| k + s).collect())
    }

    /// One HMC trajectory on every chain: fresh momenta, MD integration, Metropolis test.
    pub fn trajectory(&mut self) -> Result<TrajectoryStats> {
        let t = self.next_trajectory;
        let seed = self.params.seed;
        let (step, momentum) = philox::counter_words(t, philox::STREAM_MOMENTUM)?;
        let (_, accept_stream) = philox::counter_words(t, philox::STREAM_ACCEPT)?;
        self.backend
            .refresh_momenta(seed, self.first_chain, step, momentum)?;
        self.backend.save_fields()?;
        let (k0, s0) = self.backend.energies()?;
        if let Some(c) = s0.iter().position(|s| !s.is_finite()) {
            return Err(Error::NonFinite(format!(
                "the action of chain {c} is {} before trajectory {t}",
                s0[c]
            )));
        }
        self.integrate()?;
        let (k1, s1) = self.backend.energies()?;
        let mut stats = TrajectoryStats {
            delta_h: vec![0.0; self.chains],
            accepted: vec![false; self.chains],
            action: s0.clone(),
        };
        for c in 0..self.chains {
            let dh = (k1[c] + s1[c]) - (k0[c] + s0[c]);
            let u = philox::uniform(seed, self.first_chain + c as u32, step, accept_stream);
            // A non-finite ΔH (a blown-up trajectory) is a rejection.
            let accept = !self.metropolis || (dh.is_finite() && (dh <= 0.0 || u < (-dh).exp()));
            stats.delta_h[c] = dh;
            stats.accepted[c] = accept;
            if accept {
                stats.action[c] = s1[c];
                self.accepted[c] += 1;
            }
        }
        let rejected: Vec<bool> = stats.accepted.iter().map(|a| !a).collect();
        if rejected.iter().any(|&r| r) {
            self.backend.restore_fields(&rejected)?;
        }
        self.next_trajectory += 1;
        Ok(stats)
    }

    /// Per (chain, time slice) sums of φ, φ², φ⁴ of the current fields.
    pub fn slice_moments(&mut self) -> Result<SliceMoments> {
        self.backend.slice_moments()
    }

    /// The fields, `[chain][site]`.
    pub fn fields(&self) -> Result<Vec<f64>> {
        self.backend.fields()
    }

    /// Sets the fields, `[chain][site]`; rejects wrong lengths and non-finite values.
    pub fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        self.check_batch("fields", phi)?;
        self.backend.set_fields(phi)
    }

    /// Copies the fields, `[chain][site]`, into (`to_external`) or from a caller's device
    /// buffer without a trip through host memory (a CUDA sampler only). Fields set this way are
    /// not checked for NaN; a non-finite action stops the next trajectory with an error.
    ///
    /// # Safety
    /// As [`crate::device::CudaDevice::exchange_external`].
    pub unsafe fn exchange_fields_external(
        &mut self,
        ext: ExternalBuffer,
        to_external: bool,
    ) -> Result<()> {
        // SAFETY: the caller's contract.
        unsafe { self.backend.exchange_fields_external(ext, to_external) }
    }

    /// The momenta, `[chain][site]`.
    pub fn momenta(&self) -> Result<Vec<f64>> {
        self.backend.momenta()
    }

    /// Sets the momenta, `[chain][site]`.
    pub fn set_momenta(&mut self, p: &[f64]) -> Result<()> {
        self.check_batch("momenta", p)?;
        self.backend.set_momenta(p)
    }

    fn check_batch(&self, what: &str, x: &[f64]) -> Result<()> {
        let n = self.chains * self.action.lattice().volume();
        if x.len() != n {
            return Err(Error::InvalidInput(format!(
                "{what}: expected {n} values ({} chains), got {}",
                self.chains,
                x.len()
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("{what}: value {i} is {}", x[i])));
        }
        Ok(())
    }
}
