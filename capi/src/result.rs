//! Result handles: what [`crate::sampler::latticeml_sampler_run`] measured — every chain's
//! primary observables per update, ΔH and acceptance — and the theory's estimates from them with
//! Γ-method errors (independent chains as replicas), as `summary.json` reports them.

use std::ffi::{c_char, c_int};
use std::sync::Arc;

use latticeml::analysis::{gamma_primary, Estimate};
use latticeml::sampler::{ChainMeasurement, UpdateStats};
use latticeml::theory::Theory;
use latticeml::Error;

use crate::release;
use crate::status::{copy_to_c, fill, get, guard, handle, invalid, put, text};

/// The record of one `latticeml_sampler_run` call (immutable once made).
pub struct latticeml_result {
    /// Primary observable names, the order of `series`' middle index.
    primaries: &'static [&'static str],
    /// `[chain][primary][update]`.
    series: Vec<Vec<Vec<f64>>>,
    /// `[update][chain]`.
    delta_h: Vec<f64>,
    /// `[update][chain]`, the accepted fraction of each update.
    accepted: Vec<f64>,
    /// The theory's named estimates.
    estimates: Vec<(&'static str, Estimate)>,
    chains: usize,
    updates: usize,
}

/// A result being recorded.
pub(crate) struct Record {
    theory: Arc<dyn Theory>,
    result: latticeml_result,
}

impl Record {
    pub(crate) fn new(theory: Arc<dyn Theory>, chains: usize) -> Self {
        let primaries = theory.primary_names();
        Record {
            theory,
            result: latticeml_result {
                primaries,
                series: vec![vec![Vec::new(); primaries.len()]; chains],
                delta_h: Vec::new(),
                accepted: Vec::new(),
                estimates: Vec::new(),
                chains,
                updates: 0,
            },
        }
    }

    /// Adds update `t`'s statistics and measurements; a non-finite observable is an error.
    pub(crate) fn push(
        &mut self,
        t: u64,
        stats: &UpdateStats,
        measured: &[ChainMeasurement],
    ) -> latticeml::Result<()> {
        let r = &mut self.result;
        for (c, m) in measured.iter().enumerate() {
            if let Some(bad) = m.primaries.iter().find(|x| !x.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "observable {bad} on chain {c} at update {t}: the couplings or step size are \
                     unstable"
                )));
            }
            for (series, &x) in r.series[c].iter_mut().zip(&m.primaries) {
                series.push(x);
            }
        }
        r.delta_h.extend_from_slice(&stats.delta_h);
        r.accepted.extend_from_slice(&stats.accepted);
        r.updates += 1;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> latticeml_result {
        self.result.estimates = self.theory.summarize(&self.result.series);
        self.result
    }
}

impl latticeml_result {
    fn estimate(&self, name: &str) -> latticeml::Result<Estimate> {
        self.estimates
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| *e)
            .ok_or_else(|| {
                let names: Vec<&str> = self.estimates.iter().map(|(n, _)| *n).collect();
                invalid(format!(
                    "no observable '{name}'; this theory has {}",
                    names.join(", ")
                ))
            })
    }

    /// Per chain, the series `[update]` of `f` over the `[update][chain]` array `a`.
    fn per_chain(&self, a: &[f64], f: impl Fn(f64) -> f64) -> Vec<Vec<f64>> {
        (0..self.chains)
            .map(|c| {
                a.iter()
                    .skip(c)
                    .step_by(self.chains)
                    .map(|&x| f(x))
                    .collect()
            })
            .collect()
    }
}

/// Releases a result (null is ignored).
///
/// # Safety
/// `result` must be null or a live result handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn latticeml_result_free(result: *mut latticeml_result) {
    // SAFETY: the caller's contract.
    unsafe { release(result) }
}

/// The number of updates recorded (per chain) and of chains.
///
/// # Safety
/// `result` must be a live handle; `updates` and `chains` must point to writable `size_t`s.
#[no_mangle]
pub unsafe extern "C" fn latticeml_result_shape(
    result: *const latticeml_result,
    updates: *mut usize,
    chains: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (all three calls).
        let r = unsafe { handle(result, "result") }?;
        unsafe { put(updates, r.updates, "updates") }?;
        unsafe { put(chains, r.chains, "chains") }
    })
}

/// The number of named observables (estimates) of the result.
///
/// # Safety
/// `result` must be a live handle; `out` must point to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn latticeml_result_observable_count(
    result: *const latticeml_result,
    out: *mut usize,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { get(result, "result", out, |r| r.estimates.len()) }
}

/// The name of observable `index` (0-based; e.g. `chi2`, `absM`, `binder` for φ⁴; `x2`, `x4`,
/// `E0` for the oscillator) into `buf`, truncated to `len − 1` bytes and NUL-terminated.
///
/// # Safety
/// `result` must be a live handle; `buf` must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn latticeml_result_observable_name(
    result: *const latticeml_result,
    index: usize,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let r = unsafe { handle(result, "result") }?;
        let (name, _) = r.estimates.get(index).ok_or_else(|| {
            invalid(format!(
                "observable index {index} out of range: there are {}",
                r.estimates.len()
            ))
        })?;
        if buf.is_null() || len == 0 {
            return Err(invalid("buf: need a buffer of at least one byte".into()));
        }
        // SAFETY: the caller's contract.
        unsafe { copy_to_c(name.as_bytes(), buf, len) };
        Ok(())
    })
}

/// The estimate of observable `name` over all chains and updates of the result: its value, its
/// Γ-method error (autocorrelations included) and its integrated autocorrelation time in
/// updates. An error that cannot be trusted (a series shorter than 50 τ_int, a constant series)
/// is still returned; the output pointers may be null for values not wanted.
///
/// # Safety
/// `result` must be a live handle; `name` a NUL-terminated string; each output null or writable.
#[no_mangle]
pub unsafe extern "C" fn latticeml_result_observable(
    result: *const latticeml_result,
    name: *const c_char,
    value: *mut f64,
    error: *mut f64,
    tau_int: *mut f64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (all calls).
        let r = unsafe { handle(result, "result") }?;
        let e = r.estimate(unsafe { text(name, "name") }?)?;
        unsafe { put_optional(value, e.value) };
        unsafe { put_optional(error, e.error) };
        unsafe { put_optional(tau_int, e.tau_int) };
        Ok(())
    })
}

/// The mean acceptance over all chains and updates.
///
/// # Safety
/// `result` must be a live handle; `out` must point to a writable double.
#[no_mangle]
pub unsafe extern "C" fn latticeml_result_acceptance(
    result: *const latticeml_result,
    out: *mut f64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let r = unsafe { handle(result, "result") }?;
        let mean = r.accepted.iter().sum::<f64>() / r.accepted.len().max(1) as f64;
        unsafe { put(out, mean, "out") }
    })
}

/// ⟨e^{−ΔH}⟩ with its Γ-method error (exactly 1 for a correct HMC; chains as replicas). Samplers
/// without a global ΔH (local and cluster updates) have none: an error.
///
/// # Safety
/// `result` must be a live handle; `mean` and `error` null or writable doubles.
#[no_mangle]
pub unsafe extern "C" fn latticeml_result_exp_minus_delta_h(
    result: *const latticeml_result,
    mean: *mut f64,
    error: *mut f64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (all calls).
        let r = unsafe { handle(result, "result") }?;
        if r.delta_h.iter().any(|d| d.is_nan()) {
            return Err(invalid(
                "this sampler has no global ΔH (a local or cluster update)".into(),
            ));
        }
        let series = r.per_chain(&r.delta_h, |d| (-d).exp());
        let replicas: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
        let e = gamma_primary(&replicas);
        unsafe { put_optional(mean, e.value) };
        unsafe { put_optional(error, e.error) };
        Ok(())
    })
}

/// Copies ΔH of every update and chain, `[update][chain]` (NaN for samplers without one), into
/// `buf` of exactly updates × chains values.
///
/// # Safety
/// `result` must be a live handle; `buf` must point to `len` writable doubles.
#[no_mangle]
pub unsafe extern "C" fn latticeml_result_delta_h(
    result: *const latticeml_result,
    buf: *mut f64,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let r = unsafe { handle(result, "result") }?;
        unsafe { fill(&r.delta_h, buf, len, "delta_h") }
    })
}

/// Copies the series of the primary observable `name` (a per-configuration quantity, e.g. `M`,
/// `M2`, `absM` for φ⁴), `[chain][update]`, into `buf` of exactly chains × updates values.
///
/// # Safety
/// `result` must be a live handle; `name` a NUL-terminated string; `buf` must point to `len`
/// writable doubles.
#[no_mangle]
pub unsafe extern "C" fn latticeml_result_series(
    result: *const latticeml_result,
    name: *const c_char,
    buf: *mut f64,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let r = unsafe { handle(result, "result") }?;
        let name = unsafe { text(name, "name") }?;
        let k = r.primaries.iter().position(|p| *p == name).ok_or_else(|| {
            invalid(format!(
                "no primary observable '{name}'; this theory measures {}",
                r.primaries.join(", ")
            ))
        })?;
        let flat: Vec<f64> = r.series.iter().flat_map(|c| c[k].iter().copied()).collect();
        // SAFETY: the caller's contract.
        unsafe { fill(&flat, buf, len, "series") }
    })
}

/// Writes `value` through `out` unless it is null.
///
/// # Safety
/// `out` must be null or point to a writable double.
unsafe fn put_optional(out: *mut f64, value: f64) {
    if !out.is_null() {
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { out.write(value) };
    }
}
