//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod team;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The `latticeml` binary: `LATTICEML_BIN` when set, else the one cargo built, else the one packed
/// beside the test binaries for a GPU machine (`.gpu/latticeml` for `.gpu/tests/NAME`), where the
/// build's path does not exist.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LATTICEML_BIN") {
        return p.into();
    }
    let built = PathBuf::from(env!("CARGO_BIN_EXE_latticeml"));
    if built.exists() {
        return built;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("latticeml")))
        .filter(|p| p.exists())
        .unwrap_or(built)
}

/// Runs the `latticeml` binary with two threads.
pub fn latticeml(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("LATTICEML_THREADS", "2")
        .output()
        .unwrap()
}

/// The prefixes of the temporary files and directories the tests make, each followed by the
/// test process's id.
const TEMP_PREFIXES: [&str; 5] = [
    "latticeml-test-",
    "latticeml-msg-",
    "latticeml-st-",
    "latticeml-py-",
    "latticeml-spectral-",
];

/// Removes what earlier test processes left in the temporary directory (their outputs stay for
/// inspection until the next run): entries with a test prefix whose process is gone. Only where
/// `/proc` says which processes live; elsewhere nothing is removed.
fn sweep_stale_temp() {
    let (tmp, proc) = (std::env::temp_dir(), Path::new("/proc"));
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    if !proc.join("self").exists() {
        return;
    }
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = TEMP_PREFIXES.iter().find_map(|p| name.strip_prefix(p)) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !proc.join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path())
                .or_else(|_| std::fs::remove_file(entry.path()));
        }
    }
}

/// A path for a directory of this test process, removed first if it exists. The first call
/// also removes the directories of earlier test processes that have exited.
pub fn fresh_dir(name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(sweep_stale_temp);
    let d = std::env::temp_dir().join(format!("latticeml-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Asserts a clean refusal: exit status 2, no panic or usage text, and `needle` in the message.
pub fn assert_refused(out: &Output, what: &str, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: expected exit 2: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE") && !err.contains("Usage:"),
        "{what}: not a clean error: {err}"
    );
    assert!(
        err.contains(needle),
        "{what}: expected '{needle}' in: {err}"
    );
}

/// [`assert_refused`] for the binary run with `args`.
pub fn refused(args: &[&str], needle: &str) {
    assert_refused(&latticeml(args), &format!("{args:?}"), needle);
}

/// Asserts that the data files of two runs (`observables.csv`, `configs.npy`, `slices.npy`,
/// `correlator.csv`) are byte-identical.
pub fn assert_same_run_files(a: &Path, b: &Path, what: &str) {
    for f in [
        "observables.csv",
        "configs.npy",
        "slices.npy",
        "correlator.csv",
    ] {
        let same = std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap();
        assert!(same, "{what}: {f} differs");
    }
}
