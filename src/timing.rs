//! Timing of the benchmarks: units of work per second over a minimum wall time.

use std::time::Instant;

use crate::error::Result;

/// Units per second of `f` (which returns how many units it did), called at least once and
/// until `seconds` have passed. Callers warm up first (an untimed call).
pub fn units_per_second(seconds: f64, mut f: impl FnMut() -> Result<usize>) -> Result<f64> {
    let start = Instant::now();
    let mut units = 0;
    let mut calls = 0u64;
    while calls == 0 || start.elapsed().as_secs_f64() < seconds {
        units += f()?;
        calls += 1;
    }
    Ok(units as f64 / start.elapsed().as_secs_f64())
}
