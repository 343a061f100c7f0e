//! `latticeml sample` under `mpirun -np 1, 2, 3` (the `mpi` feature): the ensemble's files are
//! byte-identical to one process running it, also across a resume; bad input stops every rank
//! with exit status 2. Needs OpenMPI's `mpirun`; without it the test says so and skips, and
//! `LATTICEML_REQUIRE_MPI=1` (set by `.ci/run`) makes that a failure.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// `mpirun` with the flags that let it start more ranks than cores, as root, or None.
fn mpirun() -> Option<Command> {
    let version = Command::new("mpirun").arg("--version").output();
    let Ok(version) = version else {
        assert!(
            std::env::var("LATTICEML_REQUIRE_MPI").as_deref() != Ok("1"),
            "LATTICEML_REQUIRE_MPI=1 but mpirun is missing (apt-get install openmpi-bin)"
        );
        println!("skipping: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)");
        return None;
    };
    let mut cmd = Command::new("mpirun");
    if String::from_utf8_lossy(&version.stdout).contains("Open MPI") {
        cmd.args(["--oversubscribe", "--allow-run-as-root"]);
    }
    Some(cmd)
}

fn sample(ranks: Option<usize>, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "sample",
        "--device",
        "cpu",
        "--dims",
        "8x8",
        "--kappa",
        "0.26",
        "--lambda",
        "0.022",
        "--chains",
        "5",
        "--therm",
        "20",
        "--save-every",
        "10",
        "--checkpoint-every",
        "25",
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    let out = out.to_str().unwrap();
    args.extend(["--out", out]);
    let mut cmd = match ranks {
        Some(n) => {
            let mut c = mpirun().unwrap();
            c.args(["-np", &n.to_string()]).arg(common::binary());
            c
        }
        None => Command::new(common::binary()),
    };
    cmd.args(&args)
        .env("LATTICEML_THREADS", "1")
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn mpi_ensembles_write_the_files_of_one_process() {
    if mpirun().is_none() {
        return;
    }
    let solo = common::fresh_dir("mpi-solo");
    ok(&sample(None, &solo, &["--trajectories", "60"]));
    for n in [1, 2, 3] {
        let dir = common::fresh_dir(&format!("mpi-np{n}"));
        ok(&sample(Some(n), &dir, &["--trajectories", "35"]));
        ok(&sample(
            Some(n),
            &dir,
            &["--trajectories", "60", "--resume"],
        ));
        common::assert_same_run_files(&solo, &dir, &format!("-np {n} against one process"));
        let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
        let j: serde_json::Value = serde_json::from_str(&summary).unwrap();
        let solo_j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(solo.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(j["observables"], solo_j["observables"], "-np {n}");
        if n > 1 {
            // Resuming on another number of ranks is refused on every rank, without a hang.
            let o = sample(Some(n - 1), &dir, &["--trajectories", "70", "--resume"]);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(String::from_utf8_lossy(&o.stderr).contains("ranks"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // An occupied directory and more ranks than chains: exit status 2, nothing overwritten.
    let before = std::fs::read(solo.join("observables.csv")).unwrap();
    let o = sample(Some(3), &solo, &["--trajectories", "60"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(solo.join("observables.csv")).unwrap(), before);
    let dir = common::fresh_dir("mpi-few");
    let o = sample(Some(6), &dir, &["--trajectories", "60"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("6 ranks for 5 chains"));
    let _ = std::fs::remove_dir_all(&solo);
}

/// `sample --decompose` under `mpirun -np 2, 4`: every file is that of one process, and a run
/// cut one way resumes cut another way (the checkpoint holds the whole lattice).
#[test]
fn decomposed_runs_write_the_files_of_one_process() {
    if mpirun().is_none() {
        return;
    }
    let solo = common::fresh_dir("mpi-dd-solo");
    ok(&sample(None, &solo, &["--trajectories", "60"]));
    for (first, second) in [((2, "2x1"), (4, "2x2")), ((4, "1x4"), (2, "1x2"))] {
        let dir = common::fresh_dir(&format!("mpi-dd-{}", first.1));
        let leg = |(n, grid): (usize, &str), extra: &[&str]| {
            let mut args = vec!["--decompose", grid];
            args.extend_from_slice(extra);
            sample(Some(n), &dir, &args)
        };
        ok(&leg(first, &["--trajectories", "35"]));
        ok(&leg(second, &["--trajectories", "60", "--resume"]));
        common::assert_same_run_files(&solo, &dir, &format!("--decompose {}", first.1));
        let obs = |d: &Path| {
            let j: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap())
                    .unwrap();
            j["observables"].clone()
        };
        assert_eq!(obs(&dir), obs(&solo), "--decompose {}", first.1);
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A grid that does not match the ranks: exit status 2 on every rank, with the fix.
    let dir = common::fresh_dir("mpi-dd-bad");
    let o = sample(
        Some(2),
        &dir,
        &["--decompose", "2x2", "--trajectories", "30"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("mpirun -np 4"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&solo);
}
