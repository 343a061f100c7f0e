//! One error type for the whole library: every failure (bad input, I/O, CUDA) reaches the caller as a value.

use std::fmt;

/// Everything that can go wrong in latticeml. Each message names the problem and, where there is one, the fix.
#[derive(Debug)]
pub enum Error {
    /// A user-supplied parameter is out of range or not finite.
    InvalidInput(String),
    /// A field or observable became NaN or infinite (unstable couplings or step size).
    NonFinite(String),
    /// A file could not be read or written.
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file exists but is corrupt or belongs to a different run.
    BadFile {
        /// The file concerned.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// CUDA is unavailable or a driver call failed.
    Cuda(String),
    /// NVRTC is unavailable or a kernel failed to compile.
    Nvrtc(String),
    /// The work needs more memory than the host or the device has free (checked before allocating).
    OutOfMemory(String),
}

/// Shorthand for `std::result::Result<T, latticeml::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::NonFinite(m) => write!(f, "non-finite value: {m}"),
            Error::Io { path, source } => write!(f, "cannot access '{path}': {source}"),
            Error::BadFile { path, reason } => write!(f, "bad file '{path}': {reason}"),
            Error::Cuda(m) => write!(f, "CUDA error: {m}"),
            Error::Nvrtc(m) => write!(f, "NVRTC error: {m}"),
            Error::OutOfMemory(m) => write!(f, "not enough memory: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<cudarc::driver::DriverError> for Error {
    fn from(e: cudarc::driver::DriverError) -> Self {
        let hint = if e.0 == cudarc::driver::sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
            " (the device is out of memory: use fewer chains or a smaller lattice, or --device cpu)"
        } else {
            ""
        };
        Error::Cuda(format!("{e:?}{hint}"))
    }
}

/// Fails with [`Error::InvalidInput`] unless `x` is finite.
pub fn require_finite(name: &str, x: f64) -> Result<()> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{name} = {x} is not a finite number"
        )))
    }
}
