//! The command line: bad input gives a clear error and a non-zero exit (never a panic), the files
//! are what a physicist expects, and an interrupted run resumes bit-identically.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{fresh_dir as tmp, latticeml, refused as assert_clean_failure};

#[test]
fn bad_input_is_a_clear_error() {
    let d = tmp("bad");
    let o = d.to_str().unwrap();
    // Defaults that a case may override by naming the flag itself.
    let defaults = [
        ("--out", o),
        ("--trajectories", "5"),
        ("--therm", "1"),
        ("--device", "cpu"),
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["hmc".to_string()];
        for (flag, value) in defaults.iter().filter(|(f, _)| !extra.contains(f)) {
            v.extend([flag.to_string(), value.to_string()]);
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (with(&["--dims", "0x8"]), "at least 2"),
        (with(&["--dims", "1x8"]), "at least 2"),
        (with(&["--dims", "4x4x4x4x4"]), "1 to 4 dimensions"),
        (with(&["--dims", "8xq"]), "cannot read lattice extents"),
        (with(&["--lambda", "-0.1"]), "unbounded below"),
        (with(&["--kappa", "NaN"]), "not a finite number"),
        (with(&["--kappa", "inf"]), "not a finite number"),
        (with(&["--tau", "-1"]), "tau"),
        (with(&["--steps", "0"]), "steps"),
        (with(&["--kappa", "0.3", "--lambda", "0"]), "kappa < 1/(2d)"),
        (with(&["--theory", "o3"]), "unknown theory"),
        (with(&["--integrator", "rk4"]), "unknown integrator"),
        (with(&["--device", "tpu"]), "unknown device"),
        (with(&["--therm", "10"]), "--therm smaller"),
        (with(&["--theory", "oscillator", "--beta", "0"]), "beta > 0"),
        (with(&["--resume"]), "nothing to resume"),
        (
            with(&["--theory", "ising", "--algorithm", "hmc"]),
            "it offers metropolis, heatbath",
        ),
        (
            with(&["--theory", "xy", "--algorithm", "heatbath"]),
            "it offers metropolis, overrelax",
        ),
        (
            with(&["--algorithm", "overrelax"]),
            "it offers hmc, fa-hmc, mala",
        ),
        (
            with(&["--theory", "ising", "--dims", "8x7"]),
            "even extents",
        ),
        (
            with(&["--theory", "ising", "--dims", "8x8x8"]),
            "2D lattice",
        ),
        (with(&["--theory", "xy", "--dims", "9"]), "even extents"),
        (
            with(&["--theory", "ising", "--beta", "-1"]),
            "antiferromagnet",
        ),
        (with(&["--theory", "xy", "--hits", "0"]), "--hits 0"),
        (
            with(&[
                "--theory",
                "ising",
                "--algorithm",
                "heatbath",
                "--hits",
                "2",
            ]),
            "no --hits",
        ),
        (
            with(&["--theory", "ising", "--steps", "3"]),
            "no --tau, --steps",
        ),
        (with(&["--algorithm", "annealing"]), "unknown algorithm"),
        (
            with(&["--algorithm", "cluster", "--clusters", "3"]),
            "no --clusters",
        ),
        (
            with(&["--algorithm", "wolff", "--clusters", "0"]),
            "--clusters 0",
        ),
        (
            with(&["--theory", "xy", "--algorithm", "wolff"]),
            "it offers",
        ),
    ];
    for (args, needle) in cases {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        assert_clean_failure(&a, needle);
    }
}

#[test]
fn corrupt_or_mismatched_checkpoints_are_refused_and_kept() {
    let d = tmp("ckpt");
    let o = d.to_str().unwrap();
    let args = |extra: &[&'static str]| -> Vec<&str> {
        let mut a = vec![
            "hmc", "--device", "cpu", "--dims", "6x6", "--therm", "5", "--out", o,
        ];
        a.extend_from_slice(extra);
        a
    };
    assert!(latticeml(&args(&["--trajectories", "20"])).status.success());
    // A second run into the same directory must not overwrite it.
    assert_clean_failure(&args(&["--trajectories", "20"]), "--resume");
    // Different parameters.
    assert_clean_failure(
        &args(&["--trajectories", "20", "--kappa", "0.2", "--resume"]),
        "kappa",
    );
    // A corrupt file is refused and left in place for inspection.
    let ck = d.join("checkpoint");
    let mut bytes = std::fs::read(&ck).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&ck, &bytes).unwrap();
    assert_clean_failure(&args(&["--trajectories", "30", "--resume"]), "checksum");
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        bytes,
        "the corrupt checkpoint must not be replaced"
    );
    std::fs::write(&ck, b"garbage").unwrap();
    assert_clean_failure(
        &args(&["--trajectories", "30", "--resume"]),
        "not a latticeml checkpoint",
    );
}

#[test]
fn files_are_readable_and_complete() {
    let d = tmp("files");
    let o = d.to_str().unwrap();
    let out = latticeml(&[
        "hmc",
        "--device",
        "cpu",
        "--dims",
        "8x6",
        "--trajectories",
        "60",
        "--therm",
        "10",
        "--chains",
        "3",
        "--save-every",
        "5",
        "--out",
        o,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("summary.json")).unwrap()).unwrap();
    for key in [
        "M",
        "absM",
        "chi2",
        "chi2_connected",
        "binder",
        "action_density",
    ] {
        for field in ["value", "error", "tau_int", "tau_int_error"] {
            assert!(
                summary["observables"][key][field].is_number(),
                "summary.observables.{key}.{field}"
            );
        }
    }
    for key in ["acceptance", "trajectories", "site_steps_per_second"] {
        assert!(summary[key].is_number(), "{key}");
    }
    assert!(summary["device"].as_str().unwrap().starts_with("cpu"));
    let csv = std::fs::read_to_string(d.join("observables.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 60 * 3,
        "one row per trajectory and chain"
    );
    let (shape, data) =
        latticeml::io::npy::decode(&std::fs::read(d.join("configs.npy")).unwrap()).unwrap();
    assert_eq!(shape, vec![10, 3, 8, 6]);
    assert!(data.iter().all(|x| x.is_finite()));
    assert!(std::fs::read_to_string(d.join("correlator.csv"))
        .unwrap()
        .starts_with("t,C,C_error"));

    let d2 = tmp("osc");
    let o2 = d2.to_str().unwrap();
    let out = latticeml(&[
        "hmc",
        "--device",
        "cpu",
        "--theory",
        "oscillator",
        "--n",
        "16",
        "--beta",
        "4",
        "--trajectories",
        "30",
        "--therm",
        "5",
        "--out",
        o2,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d2.join("summary.json")).unwrap()).unwrap();
    for key in ["x2", "x4", "E0"] {
        assert!(summary["observables"][key]["value"].is_number(), "{key}");
    }
}

fn outputs(dir: &Path) -> Vec<Vec<u8>> {
    ["observables.csv", "configs.npy", "correlator.csv"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect()
}

#[test]
fn killed_run_resumes_bit_identically() {
    let args = |o: &str| -> Vec<String> {
        [
            "hmc",
            "--device",
            "cpu",
            "--dims",
            "16x16",
            "--chains",
            "2",
            "--steps",
            "20",
            "--trajectories",
            "1500",
            "--therm",
            "50",
            "--save-every",
            "7",
            "--checkpoint-every",
            "40",
            "--out",
            o,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let reference = tmp("ref");
    let out = latticeml(
        &args(reference.to_str().unwrap())
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success());

    // Start the same run, kill it hard once its first checkpoint exists, then resume.
    let d = tmp("killed");
    let o = d.to_str().unwrap().to_string();
    let mut child = Command::new(common::binary())
        .args(args(&o))
        .env("LATTICEML_THREADS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !d.join("checkpoint").exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before it could be interrupted; make it longer"
    );
    let mut resume = args(&o);
    resume.push("--resume".into());
    let out = latticeml(&resume.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        outputs(&reference) == outputs(&d),
        "resumed run differs from the uninterrupted one"
    );

    // Extending a finished run equals running longer from the start.
    let longer = tmp("longer");
    let mut a = args(longer.to_str().unwrap());
    let i = a.iter().position(|s| s == "1500").unwrap();
    a[i] = "1600".into();
    assert!(latticeml(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .status
        .success());
    let mut ext = args(&o);
    let i = ext.iter().position(|s| s == "1500").unwrap();
    ext[i] = "1600".into();
    ext.push("--resume".into());
    assert!(
        latticeml(&ext.iter().map(|s| s.as_str()).collect::<Vec<_>>())
            .status
            .success()
    );
    assert!(outputs(&longer) == outputs(&d), "extended run differs");
}

#[test]
fn resumed_runs_of_the_new_samplers_are_bit_identical() {
    for theory in [
        [
            "--theory",
            "ising",
            "--dims",
            "8x130",
            "--algorithm",
            "heatbath",
        ],
        [
            "--theory",
            "xy",
            "--dims",
            "6x8",
            "--algorithm",
            "overrelax",
        ],
        ["--theory", "xy", "--dims", "6x8", "--algorithm", "hmc"],
        ["--theory", "phi4", "--dims", "6x8", "--algorithm", "wolff"],
        [
            "--theory",
            "phi4",
            "--dims",
            "6x8",
            "--algorithm",
            "cluster",
        ],
        ["--theory", "phi4", "--dims", "6x8", "--algorithm", "fa-hmc"],
    ] {
        let global = theory.contains(&"hmc") || theory.contains(&"fa-hmc");
        let (whole, split) = (tmp("local-whole"), tmp("local-split"));
        let args = |out: &std::path::Path, n: &'static str, resume: bool| {
            let mut a: Vec<String> = ["sample", "--device", "cpu", "--therm", "10"]
                .iter()
                .chain(theory.iter())
                .map(|s| s.to_string())
                .collect();
            a.extend([
                "--trajectories".into(),
                n.into(),
                "--checkpoint-every".into(),
                "7".into(),
            ]);
            a.extend(["--out".into(), out.display().to_string()]);
            if resume {
                a.push("--resume".into());
            }
            a
        };
        let go = |a: Vec<String>| {
            let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
            let o = latticeml(&a);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        go(args(&whole, "60", false));
        go(args(&split, "25", false));
        go(args(&split, "60", true));
        for f in ["observables.csv", "configs.npy", "slices.npy"] {
            assert_eq!(
                std::fs::read(whole.join(f)).unwrap(),
                std::fs::read(split.join(f)).unwrap(),
                "{theory:?}: {f} differs after resume"
            );
        }
        // Local samplers have no ΔH, and their summary says nothing of it.
        let summary = std::fs::read_to_string(whole.join("summary.json")).unwrap();
        assert!(
            summary.contains("\"algorithm\"") && summary.contains("delta_h") == global,
            "{summary}"
        );
    }
}
