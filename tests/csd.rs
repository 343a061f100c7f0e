//! The critical-slowing-down study end to end: files, their columns, the z fits in
//! summary.json (read with an independent JSON parser), and bad input.

mod common;

use common::{fresh_dir, latticeml, refused};

#[test]
fn a_small_study_writes_its_files_and_fits_z() {
    let out = fresh_dir("csd");
    let o = out.to_str().unwrap();
    let run = latticeml(&[
        "csd",
        "--sizes",
        "6,8,10",
        "--algorithms",
        "hmc,fa-hmc,wolff",
        "--budget-seconds",
        "0.2",
        "--chains",
        "2",
        "--out",
        o,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let csv = std::fs::read_to_string(out.join("csd.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "algorithm,L,observable,tau_int,tau_int_error,seconds_per_update,cost_per_independent"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3 * 3 * 4, "{csv}");
    for r in &rows {
        let num = |i: usize| r[i].parse::<f64>().unwrap();
        assert!(
            num(3) >= 0.5 - 1e-9 && num(4) >= 0.0 && num(5) > 0.0,
            "{r:?}"
        );
        // cost = seconds per update × 2 τ_int.
        assert!(
            (num(6) - 2.0 * num(3) * num(5)).abs() <= 1e-9 * num(6),
            "{r:?}"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for alg in ["hmc", "fa-hmc", "wolff"] {
        for obs in ["chi2", "absM", "energy"] {
            let z = &summary["z"][alg][obs];
            assert!(
                z["value"].is_f64() && z["error"].is_f64() && z["chi2_dof"].is_f64(),
                "{alg} {obs}: {z}"
            );
        }
    }
    let svg = std::fs::read_to_string(out.join("csd.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("fa-hmc") && !svg.contains("NaN"));
    // The directory is owned: a second study there is refused.
    refused(
        &[
            "csd",
            "--sizes",
            "6,8",
            "--budget-seconds",
            "0.1",
            "--out",
            o,
        ],
        "--force",
    );
}

#[test]
fn bad_studies_are_refused_with_exit_2() {
    let out = fresh_dir("csd-bad");
    let o = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["--algorithms", "hmc,sgd"], "unknown algorithm 'sgd'"),
        (vec!["--sizes", "1,8"], "at least 2"),
        (vec!["--budget-seconds", "0"], "--budget-seconds 0"),
        (vec!["--budget-seconds", "NaN"], "positive number"),
        (vec!["--theory", "xy"], "--theory phi4"),
        (vec!["--chains", "0"], "--chains"),
        (vec!["--lambda", "-1"], "unbounded below"),
    ] {
        let mut a = vec!["csd", "--out", o];
        for (flag, default) in [("--sizes", "6"), ("--budget-seconds", "0.1")] {
            if !args.contains(&flag) {
                a.extend([flag, default]);
            }
        }
        a.extend(args);
        refused(&a, needle);
    }
}
