//! Messages that say what is wrong: each bad input of issue 7's list stops with exit status 2 and a
//! message naming the problem (and not a panic, a generic usage text, or a silent success).

use std::path::PathBuf;

mod common;

use common::{latticeml, refused};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("latticeml-msg-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `name` in the test directory and returns its path.
fn file(name: &str, bytes: &[u8]) -> String {
    let p = dir().join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

fn out(name: &str) -> String {
    let p = dir().join(name);
    let _ = std::fs::remove_dir_all(&p);
    p.to_string_lossy().into_owned()
}

fn run(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn accepted(args: &[&str]) {
    let o = latticeml(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const GOOD: &[u8] = b"p,value,error\n0.5,1.0,0.01\n1.0,0.8,0.01\n1.5,0.6,0.01\n";

#[test]
fn spectral_data_files() {
    let sp = |input: &str, extra: &[&str], o: &str| -> Vec<String> {
        let mut v: Vec<String> = ["spectral", "--input", input, "--method", "tsvd", "--out"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(out(o));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let hdr = file("hdr.csv", b"p,value,error\n");
    refused(&run(&sp(&hdr, &[], "o1")), "no data below the header");
    let bom = file("bom.csv", &[b"\xef\xbb\xbf", GOOD].concat());
    accepted(&run(&sp(&bom, &[], "o2")));
    let blank = file(
        "blank.csv",
        b"p,value,error\n0.5,1.0,0.01\n\n\n1.0,x,0.01\n",
    );
    refused(&run(&sp(&blank, &[], "o3")), "line 5");
    let tau = file(
        "tau.csv",
        b"tau,value,error\n0.5,1.0,0.01\n1.0,0.8,0.01\n1.5,0.6,0.01\n2.0,0.5,0.01\n",
    );
    accepted(&run(&sp(&tau, &[], "o4"))); // the exponential kernel, from the header
    refused(
        &run(&sp(&tau, &["--kernel", "kl"], "o5")),
        "--kernel kl takes momenta",
    );
    let p = file("good.csv", GOOD);
    refused(&run(&sp(&p, &["--kernel", "exp"], "o6")), "takes times");
    let neg = file(
        "neg.csv",
        b"tau,value,error\n-0.5,1.0,0.01\n1.0,0.8,0.01\n1.5,0.6,0.01\n",
    );
    refused(
        &run(&sp(&neg, &["--kernel", "exp"], "o7")),
        "needs tau >= 0",
    );
    let cov2 = file("cov2.csv", b"1,0\n0,1\n");
    refused(
        &run(&sp(&p, &["--cov", &cov2], "o8")),
        "2×2 covariance for 3 data points",
    );
    let asym = file("asym.csv", b"1,0.5,0\n0,1,0\n0,0,1\n");
    refused(&run(&sp(&p, &["--cov", &asym], "o9")), "not symmetric");
    let npd = file("npd.csv", b"1,2,0\n2,1,0\n0,0,1\n");
    refused(
        &run(&sp(&p, &["--cov", &npd], "o10")),
        "not positive definite",
    );
    let nan = file("nan.csv", b"1.0,0.8,0.6\nnan,0.8,0.6\n");
    refused(&run(&sp(&p, &["--samples", &nan], "o11")), "value 1 is NaN");
    let o = out("o12");
    refused(
        &["spectral", "--mock", "bw1", "--cov", &npd, "--out", &o],
        "--cov describes",
    );
    refused(
        &[
            "spectral",
            "--mock",
            "bw1",
            "--omega-points",
            "1000000000",
            "--out",
            &o,
        ],
        "fewer --omega-points",
    );
}

#[test]
fn command_line_values() {
    let o = out("hmc");
    refused(
        &["hmc", "--kappa", "-inf", "--out", &o],
        "kappa = -inf is not a finite number",
    );
    refused(
        &["hmc", "--theory", "oscillator", "--beta", "-3", "--out", &o],
        "beta > 0",
    );
    refused(&["bench", "nn", "--seconds", "inf"], "--seconds inf");
    refused(&["bench", "hmc", "--updates", "0"], "--updates 0");
    refused(
        &["bench", "spectral", "--networks", "0", "--device", "cpu"],
        "1 to 100000 networks",
    );
    refused(
        &["bench", "nn", "--sizes", "20000", "--device", "cpu"],
        "use smaller --sizes",
    );
    refused(
        &["bench", "hmc", "--dims", "40000x40000", "--device", "cpu"],
        "not enough memory",
    );
    refused(
        &["hmc", "--steps", "2000000000", "--out", &o],
        "steps = 2000000000",
    );
    // A flag of another algorithm is refused, not ignored.
    refused(
        &["sample", "--algorithm", "mala", "--steps", "8", "--out", &o],
        "takes --epsilon, not --tau",
    );
    refused(
        &["sample", "--epsilon", "0.1", "--out", &o],
        "not --epsilon",
    );
    refused(
        &["sample", "--algorithm", "swendsen", "--out", &o],
        "unknown algorithm 'swendsen'",
    );
    // A decomposition needs as many MPI ranks as boxes (and, without the mpi build, MPI).
    refused(
        &["sample", "--decompose", "2x2", "--out", &o],
        "mpirun -np 4",
    );
    refused(
        &["sample", "--decompose", "2xz", "--out", &o],
        "positive rank counts",
    );
    refused(
        &[
            "sample",
            "--algorithm",
            "langevin",
            "--epsilon",
            "-1",
            "--out",
            &o,
        ],
        "--epsilon -1",
    );
    accepted(&[
        "hmc",
        "--dims",
        "6x6",
        "--trajectories",
        "5",
        "--therm",
        "1",
        "--integrator",
        "omelyan4",
        "--device",
        "cpu",
        "--out",
        &o,
    ]);
}

#[test]
fn resumes_that_cannot_be() {
    let o = out("resume");
    let base = [
        "hmc",
        "--dims",
        "6x6",
        "--trajectories",
        "40",
        "--therm",
        "4",
        "--device",
        "cpu",
        "--out",
        &o,
    ];
    accepted(&base);
    let mut fewer = base.to_vec();
    fewer[4] = "20";
    fewer.push("--resume");
    refused(&fewer, "give at least 40");
    // The diff names the parameter that differs, and only it.
    let mut other = base.to_vec();
    other.extend(["--kappa", "0.2", "--resume"]);
    let msg = latticeml(&other);
    let err = String::from_utf8_lossy(&msg.stderr);
    assert_eq!(msg.status.code(), Some(2));
    assert!(
        err.contains("kappa: the run has 0.21, the command 0.2"),
        "{err}"
    );
    assert!(!err.contains("lambda") && !err.contains("seed"), "{err}");
}
