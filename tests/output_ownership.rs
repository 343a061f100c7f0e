//! Output directories have an owner: no command overwrites another's results silently, two
//! processes never write into one directory, `--force` replaces, `--resume` rebuilds every file or
//! refuses, and an unusable `--out` is refused before any computation.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{assert_refused, fresh_dir as tmp, latticeml};

fn hmc_args(out: &Path, trajectories: &str) -> Vec<String> {
    [
        "hmc",
        "--dims",
        "6x6",
        "--chains",
        "2",
        "--trajectories",
        trajectories,
        "--therm",
        "2",
        "--device",
        "cpu",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.to_string_lossy().into_owned()])
    .collect()
}

fn run(args: &[String]) -> Output {
    latticeml(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn refused(out: &Output, needle: &str) {
    assert_refused(out, "latticeml", needle);
}

#[test]
fn results_are_never_overwritten_silently() {
    let d = tmp("overwrite");
    assert!(run(&hmc_args(&d, "6")).status.success());
    let summary = std::fs::read(d.join("summary.json")).unwrap();

    // Another command into the same directory.
    let o = d.to_str().unwrap();
    refused(
        &latticeml(&["spectral", "--mock", "bw1", "--method", "tsvd", "--out", o]),
        "results of `latticeml sample`",
    );
    // The same command again, without --resume.
    refused(&run(&hmc_args(&d, "6")), "--resume");
    // A run with other parameters cannot resume it.
    let mut other = hmc_args(&d, "8");
    other.extend(["--kappa".into(), "0.2".into(), "--resume".into()]);
    refused(&run(&other), "kappa");
    assert_eq!(std::fs::read(d.join("summary.json")).unwrap(), summary);

    // --force replaces it: the old files go, the new command's arrive.
    let out = latticeml(&[
        "spectral", "--mock", "bw1", "--method", "tsvd", "--force", "--out", o,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.join("checkpoint").exists() && !d.join("observables.csv").exists());
    assert!(d.join("rho.csv").exists());
    let manifest = std::fs::read_to_string(d.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"spectral\""), "{manifest}");

    // A directory of someone else's files is refused too, and --force leaves those files alone.
    let e = tmp("foreign");
    std::fs::create_dir_all(&e).unwrap();
    std::fs::write(e.join("notes.txt"), "mine").unwrap();
    refused(&run(&hmc_args(&e, "4")), "notes.txt");
    let mut forced = hmc_args(&e, "4");
    forced.push("--force".into());
    refused(&run(&forced), "notes.txt");
    assert_eq!(
        std::fs::read_to_string(e.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_second_process_is_refused_while_the_first_writes() {
    let d = tmp("concurrent");
    let first = hmc_args(&d, "100000000");
    let mut child = Command::new(common::binary())
        .args(&first)
        .env("LATTICEML_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = d.join(".latticeml.lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("pid")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first run never took its lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut second = hmc_args(&d, "10");
    second.push("--resume".into());
    let out = run(&second);
    let _ = child.kill();
    let _ = child.wait();
    refused(
        &out,
        &format!("in use by latticeml sample (pid {})", child.id()),
    );
}

#[test]
fn resume_rebuilds_derived_files_refuses_a_lost_history_and_removes_stale_temporaries() {
    let d = tmp("rebuild");
    assert!(run(&hmc_args(&d, "6")).status.success());
    let summary = std::fs::read(d.join("correlator.csv")).unwrap();
    for f in ["correlator.csv", "summary.json"] {
        std::fs::remove_file(d.join(f)).unwrap();
    }
    std::fs::write(d.join(".observables.csv.4242.tmp"), "half").unwrap();
    let mut resume = hmc_args(&d, "6");
    resume.push("--resume".into());
    let out = run(&resume);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["correlator.csv", "summary.json"] {
        assert!(d.join(f).exists(), "{f} was not rebuilt");
    }
    assert_eq!(std::fs::read(d.join("correlator.csv")).unwrap(), summary);
    assert!(!d.join(".observables.csv.4242.tmp").exists());

    // The streamed history cannot be rebuilt from the checkpoint: refused, never a silent exit 0.
    for f in ["observables.csv", "slices.npy", "configs.npy"] {
        let keep = std::fs::read(d.join(f)).unwrap();
        std::fs::remove_file(d.join(f)).unwrap();
        refused(&run(&resume), "lost");
        std::fs::write(d.join(f), &keep[..keep.len() / 2]).unwrap();
        refused(&run(&resume), "lost");
        std::fs::write(d.join(f), keep).unwrap();
    }
    assert!(run(&resume).status.success());

    // Nothing to resume.
    let e = tmp("nothing");
    let mut resume = hmc_args(&e, "6");
    resume.push("--resume".into());
    refused(&run(&resume), "nothing to resume");
}

#[test]
fn an_unusable_out_is_refused_before_computing() {
    let f = tmp("a-file");
    std::fs::write(&f, "x").unwrap();
    let start = Instant::now();
    // A long run: refusing it must not wait for any of it.
    refused(&run(&hmc_args(&f, "100000000")), "is a file");
    let ro = tmp("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&ro, perms).unwrap();
    // Root writes anywhere; the check only means something for other users.
    if std::fs::write(ro.join("probe"), "x").is_err() {
        refused(&run(&hmc_args(&ro, "100000000")), "writable");
    }
    assert!(start.elapsed() < Duration::from_secs(20));
}
