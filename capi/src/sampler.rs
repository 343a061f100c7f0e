//! Sampler handles: a batch of independent chains of one theory on one device, advanced by HMC,
//! Fourier-accelerated HMC, or a local/cluster update, exactly as `latticeml sample` runs them.

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;
use std::sync::Arc;

use latticeml::device::cuda::ExternalBuffer;
use latticeml::hmc::{HmcParams, Integrator, Start};
use latticeml::io::checkpoint::Checkpoint;
use latticeml::io::{read, write_atomic};
use latticeml::run::warmup_level;
use latticeml::sampler::{Sampler, SamplerConfig};
use latticeml::theory::{identity_lines, LocalAlgorithm, Theory};
use latticeml::Error;

use crate::result::{latticeml_result, Record};
use crate::status::{array, fill, get, guard, handle, handle_mut, invalid, text};
use crate::theory::latticeml_theory;
use crate::{hand_out, latticeml_device, release};

/// A batch of chains with its sampler (use from one thread at a time).
pub struct latticeml_sampler {
    theory: Arc<dyn Theory>,
    sampler: Box<dyn Sampler>,
    /// Global index of the first chain in the ensemble.
    first_chain: usize,
}

impl latticeml_sampler {
    /// `key=value` lines fixing the Markov chain: the theory, the chain count and the sampler's
    /// parameters; a checkpoint only restores into a sampler with the same lines.
    fn identity(&self) -> String {
        format!(
            "{}chains={}\nfirst_chain={}\n{}",
            identity_lines(self.theory.as_ref()),
            self.sampler.chains(),
            self.first_chain,
            self.sampler.parameters()
        )
    }
}

/// Builds the sampler of `config` for `chains` chains and hands it out, hot-started like the
/// command line's default `--start hot`.
///
/// # Safety
/// `theory` and `device` must be null or live handles; `out` must be null or writable.
unsafe fn make(
    theory: *const latticeml_theory,
    device: *const latticeml_device,
    chains: usize,
    config: SamplerConfig,
    out: *mut *mut latticeml_sampler,
) -> latticeml::Result<()> {
    // SAFETY: the caller's contract (all three calls).
    let theory = unsafe { handle(theory, "theory") }?.theory.clone();
    let device = unsafe { handle(device, "device") }?;
    if chains == 0 {
        return Err(invalid("chains = 0: need at least one chain".into()));
    }
    config.validate()?;
    let mut sampler = config.build(theory.clone(), chains, &device.device)?;
    sampler.set_fields(&theory.start_fields(Start::Hot, 0..chains, sampler.seed()))?;
    let s = latticeml_sampler {
        theory,
        sampler,
        first_chain: 0,
    };
    unsafe { hand_out(s, out) }
}

/// HMC parameters from C arguments.
///
/// # Safety
/// `integrator` must be null or a NUL-terminated string.
unsafe fn hmc_params(
    tau: f64,
    steps: usize,
    integrator: *const c_char,
    seed: u64,
) -> latticeml::Result<HmcParams> {
    // SAFETY: the caller's contract.
    let integrator = Integrator::from_name(unsafe { text(integrator, "integrator") }?)?;
    Ok(HmcParams {
        tau,
        steps,
        integrator,
        seed,
    })
}

/// Hybrid Monte Carlo on `chains` chains: trajectories of length `tau` in `steps` steps of the
/// `integrator` (`"leapfrog"`, `"omelyan"` or `"omelyan4"`), Philox `seed`. The theory must
/// have a force (φ⁴, the oscillator).
///
/// # Safety
/// `theory`, `device` must be live handles; `integrator` a NUL-terminated string; `out` must
/// point to a writable handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_hmc_new(
    theory: *const latticeml_theory,
    device: *const latticeml_device,
    chains: usize,
    tau: f64,
    steps: usize,
    integrator: *const c_char,
    seed: u64,
    out: *mut *mut latticeml_sampler,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let params = unsafe { hmc_params(tau, steps, integrator, seed) }?;
        unsafe { make(theory, device, chains, SamplerConfig::Hmc(params), out) }
    })
}

/// Fourier-accelerated HMC: as [`latticeml_hmc_new`] with the kinetic term ½Σₖ|p̃ₖ|²/(k̂² + m2)
/// (m2 > 0; the command line's default is 4 sin²(π/L), at least 0.01).
///
/// # Safety
/// As [`latticeml_hmc_new`].
#[no_mangle]
pub unsafe extern "C" fn latticeml_fa_hmc_new(
    theory: *const latticeml_theory,
    device: *const latticeml_device,
    chains: usize,
    tau: f64,
    steps: usize,
    integrator: *const c_char,
    seed: u64,
    m2: f64,
    out: *mut *mut latticeml_sampler,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let params = unsafe { hmc_params(tau, steps, integrator, seed) }?;
        let config = SamplerConfig::FaHmc { params, m2 };
        unsafe { make(theory, device, chains, config, out) }
    })
}

/// Langevin dynamics on `chains` chains with time step `epsilon`: Metropolis-adjusted (MALA,
/// exact) when `adjusted` is nonzero, else the unadjusted Euler–Maruyama update (stochastic
/// quantisation, exact only as ε → 0). The theory must have a force.
///
/// # Safety
/// `theory`, `device` must be live handles; `out` must point to a writable handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_langevin_new(
    theory: *const latticeml_theory,
    device: *const latticeml_device,
    chains: usize,
    epsilon: f64,
    adjusted: c_int,
    seed: u64,
    out: *mut *mut latticeml_sampler,
) -> c_int {
    let config = match adjusted {
        0 => SamplerConfig::Langevin { epsilon, seed },
        _ => SamplerConfig::Mala { epsilon, seed },
    };
    // SAFETY: the caller's contract.
    guard(|| unsafe { make(theory, device, chains, config, out) })
}

/// A local update on `chains` chains: `algorithm` is `"metropolis"` (`hits` proposals per site,
/// 0 for the default 1), `"overrelax"` (XY), `"heatbath"` (Ising), `"cluster"` (a Metropolis
/// sweep then Swendsen–Wang on the embedded Ising signs; φ⁴, the oscillator) or `"wolff"` (the
/// same with `clusters` single clusters, 0 for the default 4). A nonzero `hits` or `clusters` for
/// an algorithm that takes none is refused.
///
/// # Safety
/// `theory`, `device` must be live handles; `algorithm` a NUL-terminated string; `out` must
/// point to a writable handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_local_new(
    theory: *const latticeml_theory,
    device: *const latticeml_device,
    chains: usize,
    algorithm: *const c_char,
    hits: u32,
    clusters: u32,
    seed: u64,
    out: *mut *mut latticeml_sampler,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let name = unsafe { text(algorithm, "algorithm") }?;
        let nonzero = |v: u32| (v != 0).then_some(v);
        let algorithm = LocalAlgorithm::from_name(name, nonzero(hits), nonzero(clusters))?;
        let config = SamplerConfig::Local { algorithm, seed };
        // SAFETY: the caller's contract.
        unsafe { make(theory, device, chains, config, out) }
    })
}

/// Makes the sampler's chains the chains `first .. first + chains` of a larger ensemble, e.g.
/// this MPI rank's share (`first = rank × chains`), and restarts them from those chains' own hot
/// start: every random number is keyed by the global chain index, so the ranks together run
/// exactly the chains of one process running the whole ensemble. Call it before the first update.
///
/// # Safety
/// `sampler` must be a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_set_first_chain(
    sampler: *mut latticeml_sampler,
    first: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { handle_mut(sampler, "sampler") }?;
        if s.sampler.updates_done() != 0 {
            return Err(invalid(
                "set the first chain before the first update (the chains have moved)".into(),
            ));
        }
        let chains = s.sampler.chains();
        s.sampler.set_first_chain(first)?;
        let start = s
            .theory
            .start_fields(Start::Hot, first..first + chains, s.sampler.seed());
        s.sampler.set_fields(&start)?;
        s.first_chain = first;
        Ok(())
    })
}

/// Releases a sampler (null is ignored).
///
/// # Safety
/// `sampler` must be null or a live sampler handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_free(sampler: *mut latticeml_sampler) {
    // SAFETY: the caller's contract.
    unsafe { release(sampler) }
}

/// The number of chains.
///
/// # Safety
/// `sampler` must be a live handle; `out` must point to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_chains(
    sampler: *const latticeml_sampler,
    out: *mut usize,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { get(sampler, "sampler", out, |s| s.sampler.chains()) }
}

/// Updates (trajectories or sweeps) done so far, including those before a restore.
///
/// # Safety
/// `sampler` must be a live handle; `out` must point to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_updates_done(
    sampler: *const latticeml_sampler,
    out: *mut u64,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { get(sampler, "sampler", out, |s| s.sampler.updates_done()) }
}

/// Thermalises with `updates` updates, measuring nothing, on the command line's schedule
/// (`--therm updates`): the first half with smaller steps (for HMC 8, 4, then 2 times the MD
/// steps at the same τ), the second at the production step size.
///
/// # Safety
/// `sampler` must be a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_thermalize(
    sampler: *mut latticeml_sampler,
    updates: u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { handle_mut(sampler, "sampler") }?;
        for t in 0..updates {
            s.sampler.set_warmup(warmup_level(t, updates))?;
            s.sampler.update()?;
        }
        s.sampler.set_warmup(0)
    })
}

/// Runs `updates` updates at the production step size, measuring every chain after each, and
/// hands out their record: observables with Γ-method errors, ΔH and acceptance.
///
/// # Safety
/// `sampler` must be a live handle used by no other thread; `out` must point to a writable
/// handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_run(
    sampler: *mut latticeml_sampler,
    updates: u64,
    out: *mut *mut latticeml_result,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { handle_mut(sampler, "sampler") }?;
        if out.is_null() {
            return Err(invalid("out is a null pointer".into()));
        }
        if updates == 0 {
            return Err(invalid("updates = 0: run at least one update".into()));
        }
        s.sampler.set_warmup(0)?;
        let mut record = Record::new(s.theory.clone(), s.sampler.chains());
        for _ in 0..updates {
            let t = s.sampler.updates_done();
            let stats = s.sampler.update()?;
            let measured = s.sampler.measure()?;
            record.push(t, &stats, &measured)?;
        }
        // SAFETY: the caller's contract.
        unsafe { hand_out(record.finish(), out) }
    })
}

/// Copies the fields, `[chain][site]`, into `buf` of exactly chains × volume values.
///
/// # Safety
/// `sampler` must be a live handle; `buf` must point to `len` writable doubles.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_get_fields(
    sampler: *const latticeml_sampler,
    buf: *mut f64,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let s = unsafe { handle(sampler, "sampler") }?;
        unsafe { fill(&s.sampler.fields()?, buf, len, "fields") }
    })
}

/// Sets the fields from `buf`, `[chain][site]`, exactly chains × volume values (angles in
/// [0, 2π) for XY, ±1 for Ising); non-finite or out-of-range values are refused.
///
/// # Safety
/// `sampler` must be a live handle used by no other thread; `buf` must point to `len` readable
/// doubles.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_set_fields(
    sampler: *mut latticeml_sampler,
    buf: *const f64,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let s = unsafe { handle_mut(sampler, "sampler") }?;
        let values = unsafe { array(buf, len, "buf") }?;
        let need = s.sampler.chains() * s.theory.lattice().volume();
        if values.len() != need {
            return Err(invalid(format!(
                "fields: {} values given, chains × volume = {need} needed",
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "fields: value {i} is {}",
                values[i]
            )));
        }
        s.sampler.set_fields(values)
    })
}

/// Copies the fields, `[chain][site]` (raw: XY angles unwrapped), into the caller's CUDA device
/// buffer `dptr` (a `CUdeviceptr` of `len` = chains × volume doubles, from `cudaMalloc` or
/// `cuMemAlloc` on the sampler's device), device to device, on the caller's `stream` (a
/// `cudaStream_t`/`CUstream`, or NULL for the legacy default stream): after the sampler's queued
/// work, before work the caller queues on `stream` later. The host does not wait; latticeml
/// keeps no reference to the buffer or the stream after the call. A sampler on the CPU refuses
/// (`LATTICEML_ERR_INVALID_INPUT`), as do a null, misaligned, too short or other-device pointer.
///
/// # Safety
/// `sampler` must be a live handle; `stream` NULL or a live stream of the device's primary
/// context (the CUDA runtime's); `dptr` must stay allocated until the copy has run on `stream`.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_get_fields_device(
    sampler: *mut latticeml_sampler,
    dptr: u64,
    len: usize,
    stream: *mut c_void,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { device_fields(sampler, dptr, len, stream, true) }
}

/// Sets the fields from the caller's CUDA device buffer `dptr` (`[chain][site]`, `len` =
/// chains × volume doubles), device to device, after the work queued on the caller's `stream`
/// (NULL: the legacy default stream); work the caller queues on `stream` afterwards may
/// overwrite the buffer. The values are not checked for NaN here: a non-finite action stops
/// the next trajectory with `LATTICEML_ERR_NON_FINITE`. Refusals as for
/// `latticeml_sampler_get_fields_device`.
///
/// # Safety
/// `sampler` must be a live handle used by no other thread; `stream` and `dptr` as for
/// `latticeml_sampler_get_fields_device`.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_set_fields_device(
    sampler: *mut latticeml_sampler,
    dptr: u64,
    len: usize,
    stream: *mut c_void,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { device_fields(sampler, dptr, len, stream, false) }
}

/// Both device-buffer calls: the fields to (`to_external`) or from the caller's buffer.
///
/// # Safety
/// As `latticeml_sampler_get_fields_device`.
unsafe fn device_fields(
    sampler: *mut latticeml_sampler,
    dptr: u64,
    len: usize,
    stream: *mut c_void,
    to_external: bool,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let s = unsafe { handle_mut(sampler, "sampler") }?;
        let ext = ExternalBuffer {
            ptr: dptr,
            len,
            stream: stream as usize,
        };
        unsafe { s.sampler.exchange_fields_external(ext, to_external) }
    })
}

/// Writes the sampler's complete state (fields, counters, anything its chain depends on) to
/// `path`, atomically. An existing file is replaced only when it is a checkpoint of this same
/// chain (same theory, chains and sampler parameters); anything else there is refused, never
/// overwritten.
///
/// # Safety
/// `sampler` must be a live handle; `path` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_checkpoint(
    sampler: *const latticeml_sampler,
    path: *const c_char,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let s = unsafe { handle(sampler, "sampler") }?;
        let path = Path::new(unsafe { text(path, "path") }?);
        let identity = s.identity();
        if path.exists() {
            let old = Checkpoint::decode(&read(path)?, path).map_err(|_| Error::BadFile {
                path: path.display().to_string(),
                reason: "exists and is not a latticeml checkpoint; refusing to overwrite it \
                         (choose another path)"
                    .into(),
            })?;
            stored_updates(&old, &identity, path)?;
        }
        let ck = Checkpoint {
            header: format!("{identity}updates_done={}", s.sampler.updates_done()),
            arrays: s.sampler.state()?,
        };
        write_atomic(path, &ck.encode())
    })
}

/// Restores the state written by [`latticeml_sampler_checkpoint`]; the sampler must have been
/// created with the same theory, chains and parameters. The continued chain is bit-identical to
/// one that never stopped.
///
/// # Safety
/// `sampler` must be a live handle used by no other thread; `path` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn latticeml_sampler_restore(
    sampler: *mut latticeml_sampler,
    path: *const c_char,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let s = unsafe { handle_mut(sampler, "sampler") }?;
        let path = Path::new(unsafe { text(path, "path") }?);
        let ck = Checkpoint::decode(&read(path)?, path)?;
        let done = stored_updates(&ck, &s.identity(), path)?;
        s.sampler
            .restore(done, &ck.arrays)
            .map_err(|e| Error::BadFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    })
}

/// The update count of a checkpoint whose header matches `identity`, or an error naming the
/// parameters that differ.
fn stored_updates(ck: &Checkpoint, identity: &str, path: &Path) -> latticeml::Result<u64> {
    let bad = |reason: String| Error::BadFile {
        path: path.display().to_string(),
        reason,
    };
    let (stored, done) = ck
        .header
        .rsplit_once("updates_done=")
        .ok_or_else(|| bad("not a checkpoint of the C interface (no update count)".into()))?;
    if stored != identity {
        return Err(bad(format!(
            "it holds another chain ({}); use a sampler with the same parameters, or another path",
            latticeml::io::outdir::parameter_diff(identity, stored)
        )));
    }
    done.trim()
        .parse()
        .map_err(|_| bad("bad update count".into()))
}
