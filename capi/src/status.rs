//! Status codes, the thread-local last error, and the guard every exported function runs its body
//! in: no Rust panic crosses the C boundary, every failure becomes a code plus a message.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use latticeml::Error;

/// Success.
pub const LATTICEML_OK: c_int = 0;
/// A parameter is out of range, a pointer is null, a length is wrong, or a string is not UTF-8.
pub const LATTICEML_ERR_INVALID_INPUT: c_int = 1;
/// A field or observable became NaN or infinite (unstable couplings or step size).
pub const LATTICEML_ERR_NON_FINITE: c_int = 2;
/// A file could not be read or written.
pub const LATTICEML_ERR_IO: c_int = 3;
/// A file is corrupt or belongs to a different run.
pub const LATTICEML_ERR_BAD_FILE: c_int = 4;
/// CUDA is unavailable or a driver call failed.
pub const LATTICEML_ERR_CUDA: c_int = 5;
/// NVRTC is unavailable or a kernel failed to compile.
pub const LATTICEML_ERR_NVRTC: c_int = 6;
/// The work needs more memory than the host or the device has free (checked before allocating).
pub const LATTICEML_ERR_OUT_OF_MEMORY: c_int = 7;
/// A bug in latticeml (a caught panic); the message says where. Please report it.
pub const LATTICEML_ERR_INTERNAL: c_int = 99;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// The code of an error.
fn code(e: &Error) -> c_int {
    match e {
        Error::InvalidInput(_) => LATTICEML_ERR_INVALID_INPUT,
        Error::NonFinite(_) => LATTICEML_ERR_NON_FINITE,
        Error::Io { .. } => LATTICEML_ERR_IO,
        Error::BadFile { .. } => LATTICEML_ERR_BAD_FILE,
        Error::Cuda(_) => LATTICEML_ERR_CUDA,
        Error::Nvrtc(_) => LATTICEML_ERR_NVRTC,
        Error::OutOfMemory(_) => LATTICEML_ERR_OUT_OF_MEMORY,
    }
}

fn set_last_error(message: String) {
    // An interior NUL would truncate the C string; it cannot occur in our messages but paths may
    // carry one, so replace it rather than lose the message.
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
}

/// Runs `body`, turning its error or panic into a status code and the thread's last error.
pub(crate) fn guard(body: impl FnOnce() -> latticeml::Result<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => LATTICEML_OK,
        Ok(Err(e)) => {
            set_last_error(e.to_string());
            code(&e)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(format!(
                "internal error in latticeml (please report): {what}"
            ));
            LATTICEML_ERR_INTERNAL
        }
    }
}

/// Shorthand for the error of a bad argument.
pub(crate) fn invalid(message: String) -> Error {
    Error::InvalidInput(message)
}

/// The message of the last failed call on this thread ("" if none failed). The pointer stays
/// valid until the next failing call on the same thread; copy it to keep it.
///
/// Thread safety: each thread has its own last error.
#[no_mangle]
pub extern "C" fn latticeml_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Copies the last error message of this thread into `buf` (at most `len − 1` bytes and a NUL)
/// and returns the message's full length in bytes (without the NUL), so a caller can size the
/// buffer. With `buf` null or `len` 0 nothing is written. Convenient from Fortran.
///
/// # Safety
/// `buf` must be null or point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn latticeml_last_error_copy(buf: *mut c_char, len: usize) -> usize {
    LAST_ERROR.with(|e| {
        let message = e.borrow();
        // SAFETY: the caller gives `len` writable bytes at `buf`.
        unsafe { copy_to_c(message.as_bytes(), buf, len) };
        message.as_bytes().len()
    })
}

/// Writes `bytes` into the C buffer `buf` of `len` bytes, truncated and NUL-terminated.
///
/// # Safety
/// `buf` must be null or point to `len` writable bytes.
pub(crate) unsafe fn copy_to_c(bytes: &[u8], buf: *mut c_char, len: usize) {
    if buf.is_null() || len == 0 {
        return;
    }
    let n = bytes.len().min(len - 1);
    // SAFETY: n + 1 ≤ len bytes at `buf` are writable (caller's contract).
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
}

/// A string argument: non-null, NUL-terminated UTF-8.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn text<'a>(p: *const c_char, what: &str) -> latticeml::Result<&'a str> {
    if p.is_null() {
        return Err(invalid(format!("{what} is a null pointer")));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// A handle argument: non-null.
///
/// # Safety
/// `p` must be null or a live handle of this type from this library.
pub(crate) unsafe fn handle<'a, T>(p: *const T, what: &str) -> latticeml::Result<&'a T> {
    // SAFETY: a live handle by the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| invalid(format!("{what} is a null handle")))
}

/// A mutable handle argument: non-null.
///
/// # Safety
/// `p` must be null or a live handle of this type from this library, used by no other thread.
pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, what: &str) -> latticeml::Result<&'a mut T> {
    // SAFETY: a live, unshared handle by the caller's contract.
    unsafe { p.as_mut() }.ok_or_else(|| invalid(format!("{what} is a null handle")))
}

/// Writes `value` through the out-pointer `out`, refusing a null one.
///
/// # Safety
/// `out` must be null or point to a writable `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T, what: &str) -> latticeml::Result<()> {
    if out.is_null() {
        return Err(invalid(format!("{what} is a null pointer")));
    }
    // SAFETY: non-null and writable by the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}

/// The body of a getter: `f` of the live handle `h`, written through `out`.
///
/// # Safety
/// `h` must be null or a live handle of this type; `out` null or writable.
pub(crate) unsafe fn get<H, T>(
    h: *const H,
    what: &str,
    out: *mut T,
    f: impl FnOnce(&H) -> T,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (both calls).
        let h = unsafe { handle(h, what) }?;
        unsafe { put(out, f(h), "out") }
    })
}

/// A read-only array argument of exactly `len` values (null allowed only for `len` 0).
///
/// # Safety
/// `p` must be null or point to `len` readable values that outlive the call.
pub(crate) unsafe fn array<'a, T>(
    p: *const T,
    len: usize,
    what: &str,
) -> latticeml::Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(format!("{what} is a null pointer")));
    }
    // SAFETY: `len` readable values by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Copies `values` into the caller's buffer `buf` of `len` values, which must be exactly as long.
///
/// # Safety
/// `buf` must be null or point to `len` writable values.
pub(crate) unsafe fn fill(
    values: &[f64],
    buf: *mut f64,
    len: usize,
    what: &str,
) -> latticeml::Result<()> {
    if len != values.len() {
        return Err(invalid(format!(
            "{what}: the buffer holds {len} values, {} are needed",
            values.len()
        )));
    }
    if len == 0 {
        return Ok(());
    }
    if buf.is_null() {
        return Err(invalid(format!("{what}: the buffer is a null pointer")));
    }
    // SAFETY: `len` writable values by the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), buf, len) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_internal_error_code() {
        let status = guard(|| panic!("index out of bounds"));
        assert_eq!(status, LATTICEML_ERR_INTERNAL);
        // SAFETY: the library's own NUL-terminated message.
        let message = unsafe { CStr::from_ptr(latticeml_last_error()) };
        assert!(message.to_str().unwrap().contains("index out of bounds"));
        assert_eq!(guard(|| Ok(())), LATTICEML_OK);
    }
}
