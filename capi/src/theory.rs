//! Theory handles: φ⁴ (hopping or standard form), the anharmonic oscillator, the XY and Ising
//! models, with the couplings and conventions of the command-line tool (`../shared`'s
//! conventions; `latticeml sample --theory ...`).

use std::ffi::c_int;
use std::sync::Arc;

use latticeml::action::{standard_to_hopping, StandardCouplings};
use latticeml::theory::{Theory, TheoryConfig};
use latticeml::Lattice;

use crate::status::{array, get, guard};
use crate::{hand_out, release};

/// A lattice theory with its couplings (immutable; may be shared between threads).
pub struct latticeml_theory {
    pub(crate) theory: Arc<dyn Theory>,
}

/// Builds `config` and hands it out.
///
/// # Safety
/// `out` must be null or point to a writable handle pointer.
unsafe fn make(config: TheoryConfig, out: *mut *mut latticeml_theory) -> latticeml::Result<()> {
    let theory = config.build()?;
    // SAFETY: the caller's contract.
    unsafe { hand_out(latticeml_theory { theory }, out) }
}

/// The theory `config(lattice)` on the lattice of `dims` extents at `extents` (axis 0 = time),
/// built and handed out, as the body of an exported constructor.
///
/// # Safety
/// `extents` must point to `dims` readable values; `out` must be null or writable.
unsafe fn on_lattice(
    dims: usize,
    extents: *const usize,
    out: *mut *mut latticeml_theory,
    config: impl FnOnce(Lattice) -> latticeml::Result<TheoryConfig>,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let lattice = Lattice::new(unsafe { array(extents, dims, "extents") }?)?;
        unsafe { make(config(lattice)?, out) }
    })
}

/// φ⁴ in the hopping form S = Σₓ [−2κ Σ_μ φₓφₓ₊μ + (1 − 2λ)φₓ² + λφₓ⁴] on a periodic lattice of
/// `dims` (1 to 4) extents.
///
/// # Safety
/// `extents` must point to `dims` readable values; `out` to a writable handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_theory_phi4(
    dims: usize,
    extents: *const usize,
    kappa: f64,
    lambda: f64,
    out: *mut *mut latticeml_theory,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        on_lattice(dims, extents, out, |lattice| {
            Ok(TheoryConfig::Phi4 {
                lattice,
                kappa,
                lambda,
            })
        })
    }
}

/// φ⁴ in the standard form of the flow papers, S = Σₓ [Σ_μ (φₓ₊μ − φₓ)² + m²φₓ² + λ₀φₓ⁴],
/// converted to the hopping form (φ_std = √κ φ_hop) exactly as `--m2 --lambda0` on the command
/// line.
///
/// # Safety
/// `extents` must point to `dims` readable values; `out` to a writable handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_theory_phi4_standard(
    dims: usize,
    extents: *const usize,
    m2: f64,
    lambda0: f64,
    out: *mut *mut latticeml_theory,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        on_lattice(dims, extents, out, |lattice| {
            let (kappa, lambda) = standard_to_hopping(StandardCouplings { m2, lambda0 }, dims)?;
            Ok(TheoryConfig::Phi4 {
                lattice,
                kappa,
                lambda,
            })
        })
    }
}

/// The anharmonic (double-well for f > 0) oscillator: mass m, quartic λ, well position f, inverse
/// temperature β and `n` time slices (spacing a = β/n).
///
/// # Safety
/// `out` must point to a writable handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_theory_oscillator(
    mass: f64,
    lambda: f64,
    f: f64,
    beta: f64,
    n: usize,
    out: *mut *mut latticeml_theory,
) -> c_int {
    let config = TheoryConfig::Oscillator {
        mass,
        lambda,
        f,
        beta,
        n,
    };
    // SAFETY: the caller's contract.
    guard(|| unsafe { make(config, out) })
}

/// The XY model S = −β Σ cos(θₓ − θₓ₊μ) (even extents, for the checkerboard updates).
///
/// # Safety
/// `extents` must point to `dims` readable values; `out` to a writable handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_theory_xy(
    dims: usize,
    extents: *const usize,
    beta: f64,
    out: *mut *mut latticeml_theory,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        on_lattice(dims, extents, out, |lattice| {
            Ok(TheoryConfig::Xy { lattice, beta })
        })
    }
}

/// The Ising model S = −β Σ sₓsₓ₊μ on a 2D torus with even extents; it runs local updates only.
///
/// # Safety
/// `extents` must point to `dims` readable values; `out` to a writable handle pointer.
#[no_mangle]
pub unsafe extern "C" fn latticeml_theory_ising(
    dims: usize,
    extents: *const usize,
    beta: f64,
    out: *mut *mut latticeml_theory,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        on_lattice(dims, extents, out, |lattice| {
            Ok(TheoryConfig::Ising { lattice, beta })
        })
    }
}

/// The number of lattice sites (the length of one chain's field).
///
/// # Safety
/// `theory` must be a live theory handle; `out` must point to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn latticeml_theory_volume(
    theory: *const latticeml_theory,
    out: *mut usize,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { get(theory, "theory", out, |t| t.theory.lattice().volume()) }
}

/// Releases a theory (null is ignored). Samplers built on it keep working.
///
/// # Safety
/// `theory` must be null or a live theory handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn latticeml_theory_free(theory: *mut latticeml_theory) {
    // SAFETY: the caller's contract.
    unsafe { release(theory) }
}
