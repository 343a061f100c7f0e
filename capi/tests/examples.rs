//! The C and Fortran examples, compiled with the system's compilers against the library this
//! build produced and run: they must reproduce the command line's production run (the same
//! chain, bit for bit), agree with another seed within errors, and link both shared and static.
//! Also: every function of the generated header is bound in the Fortran module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use latticeml::hmc::{HmcParams, Integrator, Start};
use latticeml::io::outdir::Claim;
use latticeml::run::{run, RunConfig};
use latticeml::sampler::SamplerConfig;
use latticeml::theory::TheoryConfig;
use latticeml::{Device, Lattice};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether the sources are where this test was built; a test binary packed for another machine
/// (the lent GPU machine of `../shared/gpu/pack.sh`, which has no compilers) skips, saying so.
fn sources_here() -> bool {
    let here = root().join("capi/examples/hmc_phi4.c").exists();
    if !here {
        println!("skipping: the examples' sources are not on this machine (a packed test binary)");
    }
    here
}

/// The directory holding liblatticeml_c.{so,a} of this build, built first: `cargo test` builds
/// only the Rust library of the crate, so the test asks cargo for the shared and static ones, in
/// the same profile and target directory (the test runs from `target/<profile>/deps/`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let target = dir.parent().expect("the target directory");
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile directory above {}", exe.display()),
    };
    check(
        Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--lib", "--profile", profile])
            .args(["-p", "latticeml", "-p", "latticeml-capi"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(root()),
    );
    for lib in ["liblatticeml_c.so", "liblatticeml_c.a"] {
        assert!(
            dir.join(lib).exists(),
            "{} missing",
            dir.join(lib).display()
        );
    }
    dir.to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("latticeml-capi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a compiler or program; panics with its output when it fails.
fn check(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `name value error` lines → name → (value, error).
fn parse(output: &str) -> HashMap<String, (f64, f64)> {
    output
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "line {l:?}");
            let num = |s: &str| s.parse::<f64>().unwrap_or_else(|_| panic!("{s} in {l:?}"));
            (f[0].to_string(), (num(f[1]), num(f[2])))
        })
        .collect()
}

fn c_example(dir: &Path, static_link: bool) -> PathBuf {
    let libs = lib_dir();
    let exe = dir.join(if static_link {
        "hmc_static"
    } else {
        "hmc_shared"
    });
    let mut cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cc.args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"])
        .arg(root().join("capi/examples/hmc_phi4.c"))
        .arg("-I")
        .arg(root().join("include"))
        .arg("-o")
        .arg(&exe);
    if static_link {
        cc.arg(libs.join("liblatticeml_c.a"))
            .args(["-lm", "-lpthread", "-ldl"]);
    } else {
        cc.arg("-L").arg(&libs).arg("-llatticeml_c");
        cc.arg(format!("-Wl,-rpath,{}", libs.display()));
    }
    check(&mut cc);
    exe
}

/// The command line's production run (`latticeml sample`) with the example's parameters.
fn cli_run(seed: u64, out: &Path) -> latticeml::run::RunOutcome {
    let cfg = RunConfig {
        theory: TheoryConfig::Phi4 {
            lattice: Lattice::new(&[8, 8]).unwrap(),
            kappa: 0.26,
            lambda: 0.022,
        },
        chains: 8,
        trajectories: 1200,
        therm: 200,
        sampler: SamplerConfig::Hmc(HmcParams {
            tau: 1.0,
            steps: 8,
            integrator: Integrator::Omelyan,
            seed,
        }),
        start: Start::Hot,
        save_every: 1000,
        checkpoint_every: 1200,
    };
    let device = Device::from_name("cpu").unwrap().0;
    run(&cfg, &device, out, Claim::Fresh, &mut |_, _| {}).unwrap()
}

#[test]
fn c_example_reproduces_the_command_line_run() {
    if !sources_here() {
        return;
    }
    let dir = scratch("c");
    let shared = c_example(&dir, false);
    let c = parse(&check(Command::new(&shared).arg("5")));
    let outcome = cli_run(5, &dir.join("run"));
    for (name, e) in &outcome.observables {
        let (value, error) = c[*name];
        // The same chain: identical to the last bit, errors included.
        assert_eq!(value, e.value, "{name}");
        assert_eq!(error.to_bits(), e.error.to_bits(), "{name} error");
    }
    assert!((c["acceptance"].0 - outcome.acceptance).abs() < 1e-12);
    assert!((c["exp_minus_dh"].0 - outcome.exp_minus_dh.value).abs() < 1e-12);

    // The static library gives the same program.
    let static_exe = c_example(&dir, true);
    assert_eq!(
        check(Command::new(&static_exe).arg("5")),
        check(Command::new(&shared).arg("5"))
    );

    // Another seed is another chain that agrees within errors (4σ).
    let other = parse(&check(Command::new(&shared).arg("6")));
    assert_ne!(other["chi2"].0, c["chi2"].0);
    for name in ["chi2", "absM", "binder", "action_density"] {
        let ((a, ea), (b, eb)) = (c[name], other[name]);
        let sigma = (ea * ea + eb * eb).sqrt();
        assert!(
            (a - b).abs() < 4.0 * sigma,
            "{name}: {a} ± {ea} vs {b} ± {eb}"
        );
    }
    let (w, ew) = c["exp_minus_dh"];
    assert!((w - 1.0).abs() < 4.0 * ew, "<exp(-dH)> = {w} ± {ew}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// gfortran, or None (the test then says so and skips; `LATTICEML_REQUIRE_FORTRAN=1`, as in CI,
/// makes its absence a failure).
fn gfortran() -> Option<String> {
    let fc = std::env::var("FC").unwrap_or_else(|_| "gfortran".into());
    if Command::new(&fc).arg("--version").output().is_ok() {
        return Some(fc);
    }
    assert!(
        std::env::var("LATTICEML_REQUIRE_FORTRAN").as_deref() != Ok("1"),
        "LATTICEML_REQUIRE_FORTRAN=1 but {fc} is not installed (apt-get install gfortran)"
    );
    println!("skipping the Fortran example: {fc} not found (apt-get install gfortran)");
    None
}

#[test]
fn fortran_example_runs_the_same_chain_as_c() {
    if !sources_here() {
        return;
    }
    let Some(fc) = gfortran() else { return };
    let dir = scratch("fortran");
    let libs = lib_dir();
    let exe = dir.join("hmc_f");
    check(
        Command::new(fc)
            .args(["-std=f2008", "-Wall", "-Werror", "-O2", "-J"])
            .arg(&dir)
            .arg(root().join("include/latticeml.f90"))
            .arg(root().join("capi/examples/hmc_phi4.f90"))
            .arg("-L")
            .arg(&libs)
            .arg("-llatticeml_c")
            .arg(format!("-Wl,-rpath,{}", libs.display()))
            .arg("-o")
            .arg(&exe),
    );
    let fortran = parse(&check(Command::new(&exe).arg("5")));
    let c = parse(&check(Command::new(c_example(&dir, false)).arg("5")));
    assert_eq!(fortran.len(), c.len());
    for (name, v) in &c {
        assert_eq!(fortran[name], *v, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Function name → argument count, from C prototypes `... latticeml_x(args);`.
fn header_functions(text: &str) -> HashMap<String, usize> {
    let flat: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//") && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    flat.split(';')
        .filter_map(|decl| {
            let open = decl.find('(')?;
            let name = decl[..open]
                .rsplit(|c: char| !c.is_alphanumeric() && c != '_')
                .next()?;
            let args = decl[open + 1..decl.rfind(')')?].trim();
            let n = if args == "void" {
                0
            } else {
                args.split(',').count()
            };
            name.starts_with("latticeml_")
                .then(|| (name.to_string(), n))
        })
        .collect()
}

/// Bound name → argument count, from Fortran `bind(C, name="...")` interfaces.
fn fortran_bindings(text: &str) -> HashMap<String, usize> {
    let flat = text.replace("&\n", " ");
    flat.lines()
        .filter_map(|l| {
            let bind = l.find("bind(C, name=\"")?;
            let name = l[bind + 14..].split('"').next()?;
            let head = l[..bind]
                .rsplit_once("function ")
                .or(l[..bind].rsplit_once("subroutine "))?
                .1;
            let args = &head[head.find('(')? + 1..head.find(')')?];
            let n = args.split(',').filter(|a| !a.trim().is_empty()).count();
            Some((name.to_string(), n))
        })
        .collect()
}

#[test]
fn fortran_module_binds_every_function_of_the_header() {
    if !sources_here() {
        return;
    }
    let header = std::fs::read_to_string(root().join("include/latticeml.h")).unwrap();
    let module = std::fs::read_to_string(root().join("include/latticeml.f90")).unwrap();
    let c = header_functions(&header);
    let f = fortran_bindings(&module);
    assert!(c.len() >= 30, "parsed {} C functions", c.len());
    assert_eq!(
        c, f,
        "include/latticeml.f90 must bind every header function with its arguments"
    );
}
