//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;

use latticeml::device::{CpuDevice, CudaDevice};

/// The GPU, or `None` after printing `skipped: no CUDA device`; with `LATTICEML_REQUIRE_GPU=1`
/// a missing GPU fails the test instead.
pub fn gpu(test: &str) -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("LATTICEML_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("{test}: LATTICEML_REQUIRE_GPU=1 but no usable CUDA device: {e}");
            }
            // Written to the stderr handle directly so the test harness does not capture it.
            let _ = writeln!(std::io::stderr(), "{test}: skipped: no CUDA device ({e})");
            None
        }
    }
}

/// A two-thread CPU device (the development machine's size).
pub fn cpu() -> CpuDevice {
    CpuDevice::with_threads(2)
}

/// Largest |a−b| / max(1, |a|, |b|).
pub fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(1.0))
        .fold(0.0, f64::max)
}

/// Least-squares slope of log y against log x.
pub fn loglog_slope(x: &[f64], y: &[f64]) -> f64 {
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let n = x.len() as f64;
    let (mx, my) = (lx.iter().sum::<f64>() / n, ly.iter().sum::<f64>() / n);
    let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = lx.iter().map(|a| (a - mx).powi(2)).sum();
    sxy / sxx
}
