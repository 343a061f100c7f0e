//! Files a physicist can open: `.npy` arrays, CSV, JSON; a checksummed binary checkpoint.
//! Every file is written atomically (temporary file in the same directory, then rename), so an
//! interrupted run never leaves a half-written file in place of a good one.

pub mod checkpoint;
pub mod json;
pub mod npy;
pub mod outdir;
pub mod run_dir;
pub mod stream;
pub mod svg;

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// A list of numbers as a command line gives it: `first:last:step` (inclusive, at most 10 000
/// values) or comma-separated values, all finite; `flag` and `example` name it in the error.
pub fn parse_values(s: &str, flag: &str, example: &str) -> Result<Vec<f64>> {
    let bad = || {
        Error::InvalidInput(format!(
            "--{flag} {s}: give first:last:step (e.g. {example}) or a comma-separated list of \
             numbers"
        ))
    };
    let num = |x: &str| {
        x.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(bad)
    };
    let v: Vec<f64> = match s.split(':').collect::<Vec<_>>()[..] {
        [a, b, d] => {
            let (a, b, d) = (num(a)?, num(b)?, num(d)?);
            if !(d > 0.0 && b >= a && (b - a) / d < 10_000.0) {
                return Err(bad());
            }
            let n = ((b - a) / d + 1e-9).floor() as usize;
            (0..=n).map(|i| a + i as f64 * d).collect()
        }
        [_] => s.split(',').map(num).collect::<Result<_>>()?,
        _ => return Err(bad()),
    };
    if v.is_empty() {
        return Err(bad());
    }
    Ok(v)
}

/// Wraps an I/O error with the path it concerns.
pub fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io_err(path, e))
}

/// The number of elements of `shape`, or `None` when the product overflows: shapes read from
/// files are multiplied only through this.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_err(path, e))
}
