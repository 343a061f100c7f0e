//! The C ABI of latticeml, for C, C++ and Fortran (through `iso_c_binding`) host codes: devices,
//! theories, samplers (HMC, Fourier-accelerated HMC, local and cluster updates) and the results
//! of a run, behind opaque handles. The header `include/latticeml.h` is generated from this crate
//! by the build and checked against the committed copy, so the two cannot drift; the Fortran
//! interface is `include/latticeml.f90`.
//!
//! # Conventions
//! - Every function that can fail returns an `int` status: [`status::LATTICEML_OK`] (0) or an
//!   error code; the message is then in `latticeml_last_error()` (per thread). No panic crosses
//!   the boundary: a bug in the library returns [`status::LATTICEML_ERR_INTERNAL`].
//! - Handles are created by `latticeml_*_new` / `latticeml_theory_*` into an out-pointer and
//!   released by the matching `latticeml_*_free` (null is accepted and ignored). A sampler keeps
//!   what it needs of its theory and device: they may be freed before it.
//! - Fields are host arrays of `double`, `[chain][site]`, row-major with axis 0 = time, as in
//!   `configs.npy`; every array comes with its length, which is checked.
//! - Thread safety: devices and theories are immutable and may be shared between threads. A
//!   sampler or result must not be used by two threads at once (distinct samplers may run
//!   concurrently, each on its own thread).
//! - Reproducibility: a sampler's random numbers are keyed by (site, chain, update) and its
//!   seed, so the same calls give bit-identical results on any thread count, and match the
//!   command-line tool's `latticeml sample` with the same parameters.

#![warn(missing_docs)]
// The handle types are named as C sees them.
#![allow(non_camel_case_types)]

pub mod result;
pub mod sampler;
pub mod status;
pub mod theory;

use std::ffi::{c_char, c_int};

use latticeml::Device;

use status::{copy_to_c, guard, handle, invalid, put, text};

/// A compute device: the multi-threaded CPU or one CUDA GPU.
pub struct latticeml_device {
    device: Device,
}

/// The library's version, e.g. `"0.1.0"` (a static string).
#[no_mangle]
pub extern "C" fn latticeml_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Opens the device `name`: `"auto"` (the GPU when CUDA, a device and NVRTC are present, else
/// the CPU), `"cpu"`, `"cuda"` or `"cuda:N"`.
///
/// # Safety
/// `name` must be a NUL-terminated string; `out` must point to a writable handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_device_new(
    name: *const c_char,
    out: *mut *mut latticeml_device,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let name = unsafe { text(name, "name") }?;
        let (device, _why) = Device::from_name(name)?;
        // SAFETY: the caller's contract.
        unsafe { hand_out(latticeml_device { device }, out) }
    })
}

/// Writes the device's description (e.g. `cpu (16 threads)`, `cuda:0 NVIDIA H100 (sm_90)`) into
/// `buf`, truncated to `len − 1` bytes and NUL-terminated.
///
/// # Safety
/// `device` must be a live device handle; `buf` must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn latticeml_device_describe(
    device: *const latticeml_device,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { handle(device, "device") }?;
        if buf.is_null() || len == 0 {
            return Err(invalid("buf: need a buffer of at least one byte".into()));
        }
        // SAFETY: the caller's contract.
        unsafe { copy_to_c(d.device.describe().as_bytes(), buf, len) };
        Ok(())
    })
}

/// Releases a device (null is ignored).
///
/// # Safety
/// `device` must be null or a live device handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn latticeml_device_free(device: *mut latticeml_device) {
    // SAFETY: the caller's contract.
    unsafe { release(device) }
}

/// Hands a new handle to the caller through `out`; on a null `out` the handle is dropped and
/// the call fails.
///
/// # Safety
/// `out` must be null or point to a writable pointer.
pub(crate) unsafe fn hand_out<T>(value: T, out: *mut *mut T) -> latticeml::Result<()> {
    let boxed = Box::into_raw(Box::new(value));
    // SAFETY: the caller's contract.
    unsafe { put(out, boxed, "out") }.inspect_err(|_| {
        // SAFETY: `boxed` came from Box::into_raw just above and was not handed out.
        drop(unsafe { Box::from_raw(boxed) })
    })
}

/// Releases a handle made by [`hand_out`] (null is ignored).
///
/// # Safety
/// `p` must be null or a live handle from [`hand_out`], not used afterwards.
pub(crate) unsafe fn release<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: made by Box::into_raw in hand_out, released once (caller's contract).
        drop(unsafe { Box::from_raw(p) });
    }
}
