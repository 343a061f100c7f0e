//! Spectral reconstruction: kernels against closed forms, every method on precise mock data, MEM's
//! limits, the linear methods against direct dense solves, the networks against an untrained
//! baseline, batching, files and bad input.

mod common;

use latticeml::spectral::classical::{self, AlphaRule, MemAlpha};
use latticeml::spectral::data::Correlator;
use latticeml::spectral::kernel::{kernel_matrix, KernelKind, OmegaGrid};
use latticeml::spectral::linalg::{solve, Matrix};
use latticeml::spectral::mock::{exact_data, mock_data, Noise, Spectrum};
use latticeml::spectral::neural::{train_list_batched, NnKind, NnOptions};
use latticeml::spectral::{metrics, reconstruct, Method, Problem};
use latticeml::{philox, Device};

fn cpu() -> Device {
    Device::Cpu(common::cpu())
}

/// The issue's test case: one Breit–Wigner (M = 2, Γ = 0.5), Källén–Lehmann, 100 momenta, relative noise `noise`.
fn bw1_problem(
    noise: f64,
    points: usize,
    omega_points: usize,
    omega_max: f64,
) -> (Problem, Vec<f64>) {
    let grid = OmegaGrid::uniform(0.05, omega_max, omega_points).unwrap();
    let x: Vec<f64> = (0..points).map(|i| 0.2 + 0.2 * i as f64).collect();
    let a = kernel_matrix(KernelKind::KallenLehmann, &x, &grid).unwrap();
    let truth = Spectrum::named("bw1").unwrap().on(&grid);
    let data = mock_data(&a, &truth, &x, &Noise::Relative(noise), 1).unwrap();
    (
        Problem {
            data,
            kind: KernelKind::KallenLehmann,
            grid,
        },
        truth,
    )
}

#[test]
fn kernels_match_closed_forms_and_quadrature() {
    // e^{−ωτ} against a Gaussian: ∫ A e^{−(ω−μ)²/2σ²} e^{−ωτ} dω = Aσ√(2π) e^{−μτ + σ²τ²/2}.
    let (amp, mu, sigma) = (0.7, 5.0, 0.5);
    let g = Spectrum {
        peaks: vec![latticeml::spectral::mock::Peak::Gaussian { a: amp, mu, sigma }],
    };
    let grid = OmegaGrid::uniform(0.0, 12.0, 24001).unwrap();
    let taus = [0.0, 0.3, 1.0, 2.5];
    let got = kernel_matrix(KernelKind::Exponential, &taus, &grid)
        .unwrap()
        .mul_vec(&g.on(&grid));
    for (t, v) in taus.iter().zip(&got) {
        let want = amp
            * sigma
            * (2.0 * std::f64::consts::PI).sqrt()
            * (-mu * t + sigma * sigma * t * t / 2.0).exp();
        assert!((v - want).abs() < 1e-9 * want, "tau {t}: {v} vs {want}");
    }
    // Källén–Lehmann against a Simpson rule of 200 000 intervals (independent of the matrix code).
    let bw = Spectrum::named("bw1").unwrap();
    let fine = OmegaGrid::uniform(0.0, 200.0, 400_001).unwrap();
    let ps = [0.2, 1.0, 5.0, 20.0];
    let got = kernel_matrix(KernelKind::KallenLehmann, &ps, &fine)
        .unwrap()
        .mul_vec(&bw.on(&fine));
    let want = exact_data(KernelKind::KallenLehmann, &bw, &ps, 0.0, 200.0);
    assert!(
        common::max_rel_diff(&got, &want) < 1e-7,
        "{got:?} vs {want:?}"
    );
    // Finite temperature: symmetric under τ → β − τ; the regularised form is ωK, → 2/β at ω = 0.
    let beta = 4.0;
    let k = KernelKind::FiniteT { beta };
    let kr = KernelKind::FiniteTRegularised { beta };
    for w in [0.3, 1.0, 3.0] {
        assert!((k.eval(0.7, w) - k.eval(beta - 0.7, w)).abs() < 1e-12 * k.eval(0.7, w));
        assert!((kr.eval(0.7, w) - w * k.eval(0.7, w)).abs() < 1e-12);
    }
    assert!(
        (kr.eval(1.3, 0.0) - 2.0 / beta).abs() < 1e-15
            && (kr.eval(1.3, 1e-6) - 2.0 / beta).abs() < 1e-9
    );
    // Trapezoid weights on a non-uniform grid integrate linear functions exactly.
    let nu = OmegaGrid::from_points(vec![0.0, 0.1, 0.5, 0.6, 2.0, 3.7]).unwrap();
    let int: f64 = nu
        .omega
        .iter()
        .zip(&nu.weights)
        .map(|(w, q)| q * (2.0 * w + 1.0))
        .sum();
    assert!((int - (3.7f64 * 3.7 + 3.7)).abs() < 1e-12);
}

#[test]
fn classical_methods_reproduce_precise_data() {
    let (p, truth) = bw1_problem(1e-5, 100, 500, 20.0);
    for name in [
        "tikhonov",
        "tikhonov-lcurve",
        "tsvd",
        "mem",
        "mem-classic",
        "br",
    ] {
        let r = reconstruct(&p, &Method::from_name(name).unwrap(), &cpu()).unwrap();
        let m = metrics(&p.grid, &r.rho, &truth);
        println!(
            "{name}: chi2/N {:.3}, relative L2 {:.3}, peaks {:?}",
            r.chi2_per_point, m.relative_l2, m.peaks
        );
        assert!(
            r.chi2_per_point > 0.6 && r.chi2_per_point < 1.5,
            "{name}: chi2/N = {}",
            r.chi2_per_point
        );
        let main = m
            .peaks
            .iter()
            .cloned()
            .fold((0.0, 0.0), |a: (f64, f64), b| {
                if (b.0 - 2.0).abs() < (a.0 - 2.0).abs() {
                    b
                } else {
                    a
                }
            });
        assert!(
            (main.0 - 2.0).abs() < 0.05 * 2.0,
            "{name}: no peak within 5% of M = 2 ({:?})",
            m.peaks
        );
    }
}

/// One restart of a network on the issue's test case, and the same network untrained.
fn nn_on_precise_data(kind: NnKind) -> (f64, latticeml::spectral::Metrics, f64) {
    let (p, truth) = bw1_problem(1e-5, 100, 500, 20.0);
    let run = |steps: usize, polish: usize| {
        let mut o = NnOptions::new(kind);
        (o.steps, o.polish_iters, o.restarts) = (steps, polish, 1);
        let r = reconstruct(&p, &Method::Neural(o), &cpu()).unwrap();
        let m = metrics(&p.grid, &r.rho, &truth);
        (r.chi2_per_point, m)
    };
    let (_, untrained) = run(1, 0);
    let (chi2, m) = run(2000, 600);
    println!(
        "{kind:?}: chi2/N {chi2:.3}, relative L2 {:.3} (untrained {:.3}), peaks {:?}",
        m.relative_l2, untrained.relative_l2, m.peaks
    );
    (chi2, m, untrained.relative_l2)
}

#[test]
fn nn_p2p_reproduces_precise_data_and_locates_the_peak() {
    let (chi2, m, untrained) = nn_on_precise_data(NnKind::PointToPoint { positive: true });
    assert!(chi2 < 2.0, "chi2/N = {chi2}");
    assert!(
        untrained > 0.6,
        "the untrained network is already close: {untrained}"
    );
    assert!(m.relative_l2 < 0.1, "relative L2 {}", m.relative_l2);
    assert!(
        m.peaks.len() == 1 && (m.peaks[0].0 - 2.0).abs() < 0.1,
        "peaks {:?}, M = 2",
        m.peaks
    );
}

#[test]
fn nn_list_reproduces_precise_data_and_locates_the_peak() {
    let (chi2, m, untrained) = nn_on_precise_data(NnKind::List);
    assert!(chi2 < 2.0, "chi2/N = {chi2}");
    assert!(
        untrained > 0.6 && m.relative_l2 < 0.2,
        "relative L2 {} (untrained {untrained})",
        m.relative_l2
    );
    assert!(
        m.peaks.len() == 1 && (m.peaks[0].0 - 2.0).abs() < 0.1,
        "peaks {:?}, M = 2",
        m.peaks
    );
}

#[test]
fn batched_list_networks_fit_every_correlator() {
    let (p, _) = bw1_problem(1e-3, 30, 100, 10.0);
    let a = kernel_matrix(p.kind, &p.data.x, &p.grid).unwrap();
    let (aw, _) = p.data.whiten(&a).unwrap();
    // Three bootstrap-like variants: the data with independent noise.
    let gws: Vec<Vec<f64>> = (0..3)
        .map(|b| {
            let mut z = vec![0.0; p.data.x.len()];
            philox::fill_normals(&mut z, 5, b, 0, 9);
            p.data
                .value
                .iter()
                .zip(&p.data.error)
                .zip(&z)
                .map(|((v, e), z)| (v + e * z) / e)
                .collect()
        })
        .collect();
    let chi2 = |rho: &[f64], g: &[f64]| {
        aw.mul_vec(rho)
            .iter()
            .zip(g)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            / g.len() as f64
    };
    let mut o = NnOptions::new(NnKind::List);
    o.restarts = 1;
    o.polish_iters = 0;
    o.steps = 1;
    let before = train_list_batched(&cpu(), &aw, &gws, &o, &mut |_, _| {}).unwrap();
    o.steps = 1500;
    let after = train_list_batched(&cpu(), &aw, &gws, &o, &mut |_, _| {}).unwrap();
    for b in 0..3 {
        let (c0, c1) = (chi2(&before[b][0], &gws[b]), chi2(&after[b][0], &gws[b]));
        println!("correlator {b}: chi2/N {c0:.3e} -> {c1:.3e}");
        assert!(
            c1 < 1e-4 * c0 && c1 < 20.0,
            "correlator {b}: chi2/N {c0} -> {c1}"
        );
    }
}

#[test]
fn mem_returns_the_default_model_without_information() {
    let (mut p, _) = bw1_problem(1e-3, 40, 200, 10.0);
    p.data
        .error
        .iter_mut()
        .zip(&p.data.value)
        .for_each(|(e, v)| *e = 1e8 * v.abs());
    let r = reconstruct(
        &p,
        &Method::Mem {
            alpha: MemAlpha::Classic,
            default_model: Some(0.3),
        },
        &cpu(),
    )
    .unwrap();
    assert!(
        r.rho.iter().all(|x| (x - 0.3).abs() < 1e-6),
        "MEM moved away from m = 0.3 without data"
    );
}

#[test]
fn mem_alpha_grows_with_the_noise() {
    let alphas: Vec<f64> = [1e-5, 1e-4, 1e-3, 1e-2]
        .iter()
        .map(|&noise| {
            let (p, _) = bw1_problem(noise, 60, 200, 10.0);
            let r = reconstruct(
                &p,
                &Method::Mem {
                    alpha: MemAlpha::Classic,
                    default_model: Some(0.2),
                },
                &cpu(),
            )
            .unwrap();
            r.choice.unwrap().1
        })
        .collect();
    println!("MEM alpha by noise 1e-5..1e-2: {alphas:?}");
    // χ² is whitened (in units of the noise), so α itself falls as the noise grows, while the
    // scale-free strength α·σ² — the weight of the entropy against the unwhitened misfit — rises.
    assert!(
        alphas.windows(2).all(|w| w[1] < w[0]),
        "alpha not monotone in the noise: {alphas:?}"
    );
    let strength: Vec<f64> = alphas
        .iter()
        .zip([1e-5f64, 1e-4, 1e-3, 1e-2])
        .map(|(a, s)| a * s * s)
        .collect();
    assert!(
        strength.windows(2).all(|w| w[1] > w[0]),
        "alpha·sigma² not increasing: {strength:?}"
    );
}

#[test]
fn tikhonov_and_tsvd_agree_with_dense_solves() {
    // A small, well-conditioned square problem.
    let n = 6;
    let mut r = vec![0.0; n * n + n];
    philox::fill_normals(&mut r, 3, 0, 0, 1);
    let mut a = Matrix {
        rows: n,
        cols: n,
        data: r[..n * n].iter().map(|x| 0.1 * x).collect(),
    };
    (0..n).for_each(|i| a.data[i * n + i] += 1.0);
    let g = r[n * n..].to_vec();
    // Tiny errors, so that only the full-rank TSVD meets the discrepancy principle.
    let sigma = 1e-9;
    let (aw, gw): (Matrix, Vec<f64>) = (
        Matrix {
            rows: n,
            cols: n,
            data: a.data.iter().map(|x| x / sigma).collect(),
        },
        g.iter().map(|x| x / sigma).collect(),
    );
    let t = classical::tsvd(&aw, &gw).unwrap();
    let direct = solve(&a, &g).unwrap();
    assert_eq!(t.choice.1, n as f64);
    assert!(
        common::max_rel_diff(&t.rho, &direct) < 1e-9,
        "TSVD {:?} vs LU {direct:?}",
        t.rho
    );
    // Tikhonov at its chosen α against (AᵀA + αI)ρ = Aᵀg.
    for rule in [AlphaRule::Gcv, AlphaRule::LCurve] {
        let s = classical::tikhonov(&aw, &gw, rule).unwrap();
        let alpha = s.choice.1;
        let mut normal = aw.t().matmul(&aw);
        (0..n).for_each(|i| normal.data[i * n + i] += alpha);
        let want = solve(&normal, &aw.tmul_vec(&gw)).unwrap();
        assert!(common::max_rel_diff(&s.rho, &want) < 1e-9, "{rule:?}");
    }
}

#[test]
fn bad_input_is_rejected_clearly() {
    let ok = Correlator {
        x: vec![1.0, 2.0],
        value: vec![1.0, 0.5],
        error: vec![0.1, 0.1],
        cov: None,
    };
    let msg = |c: &Correlator| c.validate().unwrap_err().to_string();
    assert!(msg(&Correlator {
        value: vec![1.0],
        ..ok.clone()
    })
    .contains("different lengths"));
    assert!(msg(&Correlator {
        error: vec![0.1, 0.0],
        ..ok.clone()
    })
    .contains("must be positive"));
    assert!(msg(&Correlator {
        error: vec![0.1, -1.0],
        ..ok.clone()
    })
    .contains("must be positive"));
    assert!(msg(&Correlator {
        value: vec![1.0, f64::NAN],
        ..ok.clone()
    })
    .contains("non-finite"));
    let not_pd = Matrix {
        rows: 2,
        cols: 2,
        data: vec![1.0, 2.0, 2.0, 1.0],
    };
    assert!(msg(&Correlator {
        cov: Some(not_pd),
        ..ok.clone()
    })
    .contains("positive definite"));
    assert!(OmegaGrid::uniform(1.0, 0.5, 10).is_err());
    assert!(OmegaGrid::uniform(-1.0, 5.0, 10).is_err());
    let g0 = OmegaGrid::uniform(0.0, 5.0, 10).unwrap();
    assert!(
        kernel_matrix(KernelKind::FiniteT { beta: 2.0 }, &[0.5], &g0)
            .unwrap_err()
            .to_string()
            .contains("finite-t-reg")
    );
    let g1 = OmegaGrid::uniform(0.1, 5.0, 10).unwrap();
    assert!(
        kernel_matrix(KernelKind::FiniteT { beta: 2.0 }, &[3.0], &g1)
            .unwrap_err()
            .to_string()
            .contains("outside")
    );
    assert!(KernelKind::from_name("finite-t", None).is_err());
    assert!(Method::from_name("maxent").is_err());
}

/// Runs `latticeml` with `args`, asserts that it succeeded (showing its stderr), and returns its
/// stdout.
fn succeeds(args: &[&str]) -> String {
    let out = std::process::Command::new(common::binary())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn command_line_writes_files_and_refuses_a_grid_that_misses_the_spectrum() {
    let dir = std::env::temp_dir().join(format!("latticeml-spectral-{}", std::process::id()));
    succeeds(&[
        "spectral",
        "--mock",
        "bw2",
        "--method",
        "tikhonov",
        "--omega-points",
        "200",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let rho = std::fs::read_to_string(dir.join("rho.csv")).unwrap();
    assert!(rho.starts_with("omega,rho,rho_lo,rho_hi\n") && rho.lines().count() == 201);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    for k in ["chi2_per_point", "alpha"] {
        assert!(summary[k].is_number(), "{k}");
    }
    for k in ["l2", "relative_l2", "mse", "kl"] {
        assert!(summary["metrics"][k].is_number(), "metrics.{k}");
    }
    assert!(summary["metrics"]["peaks"].is_array());
    assert!(std::fs::read_to_string(dir.join("rho.svg"))
        .unwrap()
        .starts_with("<svg"));
    assert!(std::fs::read_to_string(dir.join("fit.csv"))
        .unwrap()
        .starts_with("x,data,reproduced,error"));
    let (shape, _) =
        latticeml::io::npy::decode(&std::fs::read(dir.join("rho.npy")).unwrap()).unwrap();
    assert_eq!(shape, vec![200, 4]);
    let bad = std::process::Command::new(common::binary())
        .args([
            "spectral",
            "--mock",
            "bw2",
            "--omega-max",
            "3",
            "--method",
            "tsvd",
            "--out",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("misses") && !err.contains("panicked"),
        "{err}"
    );
}

/// BR without a stationary point (the paper's mock at momentum noise 10⁻²): the run succeeds,
/// the table flags the row and says why, and summary.json carries the warning instead of an α.
#[test]
fn command_line_flags_br_without_a_stationary_point() {
    let dir = common::fresh_dir("spectral-br-weak");
    let text = succeeds(&[
        "spectral",
        "--mock",
        "paper",
        "--noise",
        "1e-2",
        "--method",
        "br",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        text.contains("! br: BR has no stationary point") && !text.contains("sign-changing"),
        "{text}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert!(summary["warning"].is_string() && summary["alpha"].is_null());
}

/// `--samples` with BR on weak data: the aggregate says on how many samples BR had no stationary
/// point, in the table and in summary.json.
#[test]
fn command_line_counts_the_samples_br_flags() {
    let dir = common::fresh_dir("spectral-br-samples");
    let run = |args: &[&str], out: &std::path::Path| {
        succeeds(&[args, &["--out", out.to_str().unwrap()]].concat())
    };
    let mock = dir.join("mock");
    run(
        &[
            "spectral", "--mock", "paper", "--noise", "1e-2", "--method", "br",
        ],
        &mock,
    );
    // The mock's data and errors as an input file, and two samples: the data and the fit.
    let fit = std::fs::read_to_string(mock.join("fit.csv")).unwrap();
    let rows: Vec<Vec<&str>> = fit
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let mut input = String::from("p,value,error\n");
    rows.iter()
        .for_each(|r| input += &format!("{},{},{}\n", r[0], r[1], r[3]));
    let sample = |k: usize| rows.iter().map(|r| r[k]).collect::<Vec<_>>().join(",");
    std::fs::write(dir.join("input.csv"), input).unwrap();
    std::fs::write(
        dir.join("samples.csv"),
        format!("{}\n{}\n", sample(1), sample(2)),
    )
    .unwrap();
    let (input, samples) = (dir.join("input.csv"), dir.join("samples.csv"));
    let text = run(
        &[
            "spectral",
            "--input",
            input.to_str().unwrap(),
            "--samples",
            samples.to_str().unwrap(),
            "--method",
            "br",
        ],
        &dir.join("out"),
    );
    assert!(
        text.contains("on 2 of 2 samples: BR has no stationary point"),
        "{text}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["samples_with_warning"], 2.0);
    assert!(summary["warning"]
        .as_str()
        .unwrap()
        .starts_with("on 2 of 2"));
}

/// `bench spectral --json`: the batched list networks' throughput as one JSON object.
#[test]
fn bench_spectral_reports_network_steps_per_second() {
    let out = succeeds(&[
        "bench",
        "spectral",
        "--device",
        "cpu",
        "--networks",
        "3",
        "--steps",
        "4",
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["networks"], 3.0);
    assert!(j["network_steps_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(j["bytes_per_network_step"], 10.0 * 32.0 * 500.0 * 8.0);
}

/// `--draws`: one benchmark.csv row per (draw, method), the noiseless data first, and the table
/// with the calibration factor; bad band settings exit 2 before anything is written.
#[test]
fn command_line_benchmarks_noise_draws_and_checks_band_settings() {
    let dir = common::fresh_dir("spectral-draws");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "spectral",
            "--mock",
            "bw2",
            "--omega-points",
            "200",
            "--out",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(common::binary())
            .args(&args)
            .output()
            .unwrap()
    };
    let out = run(&["--draws", "2", "--method", "tsvd", "--band", "bootstrap"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("scale for 68%"), "{text}");
    let csv = std::fs::read_to_string(dir.join("benchmark.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows[0].starts_with("draw,seed,method,chi2_per_point,mse,kl,relative_l2,coverage"));
    assert!(rows[1].starts_with("noiseless,-,tsvd,") && rows[3].starts_with("2,2,tsvd,"));
    let coverage: f64 = rows[2].split(',').nth(7).unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&coverage), "{coverage}");
    for (extra, says) in [
        (&["--band", "wide"][..], "native or bootstrap"),
        (&["--band-scale", "0"][..], "--band-scale"),
        (
            &["--band", "bootstrap", "--band-samples", "1"][..],
            "--band-samples",
        ),
    ] {
        let mut args = vec!["--method", "tsvd", "--force"];
        args.extend_from_slice(extra);
        let bad = run(&args);
        let err = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}

#[test]
fn many_correlators_match_one_by_one_reconstructions() {
    let (p, _) = bw1_problem(1e-3, 30, 120, 10.0);
    let values: Vec<Vec<f64>> = (0..4)
        .map(|b| {
            let mut z = vec![0.0; p.data.x.len()];
            philox::fill_normals(&mut z, 8, b, 0, 3);
            p.data
                .value
                .iter()
                .zip(&p.data.error)
                .zip(&z)
                .map(|((v, e), z)| v + e * z)
                .collect()
        })
        .collect();
    // One correlator's reconstruction on its own.
    let alone = |v: &[f64], method: &Method| {
        let data = Correlator {
            value: v.to_vec(),
            ..p.data.clone()
        };
        let problem = Problem { data, ..p.clone() };
        reconstruct(&problem, method, &cpu()).unwrap()
    };
    for method in [Method::Tikhonov(AlphaRule::Gcv), Method::Tsvd] {
        let many =
            latticeml::spectral::reconstruct_many(&p, &values, &method, &cpu(), &mut |_, _| {})
                .unwrap();
        for (v, r) in values.iter().zip(&many) {
            let single = alone(v, &method);
            assert!(
                common::max_rel_diff(&r.rho, &single.rho) < 1e-12,
                "{}",
                method.name()
            );
            assert!((r.chi2 - single.chi2).abs() < 1e-9 * single.chi2.max(1.0));
        }
    }
    // The networks: each correlator's reconstruction inside the batch (Adam and the LM polish,
    // two restarts each) is bit-for-bit the one-by-one reconstruction with the same seed.
    let mut o = NnOptions::new(NnKind::List);
    o.steps = 400;
    o.restarts = 2;
    // Progress counts the Adam steps, then the LM iterations of the one group, up to its total.
    let mut heard: Vec<(u64, u64)> = Vec::new();
    let nn = latticeml::spectral::reconstruct_many(
        &p,
        &values,
        &Method::Neural(o.clone()),
        &cpu(),
        &mut |d, t| heard.push((d, t)),
    )
    .unwrap();
    let total = (o.steps + o.polish_iters) as u64;
    assert!(heard
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].0 <= w[0].1));
    assert_eq!(heard.last(), Some(&(total, total)));
    assert!(heard.iter().any(|&(d, _)| d == o.steps as u64));
    for (v, r) in values.iter().zip(&nn) {
        let single = alone(v, &Method::Neural(o.clone()));
        assert_eq!(r.rho, single.rho);
        assert_eq!(r.band, single.band);
        assert!(r.chi2_per_point < 2.0, "chi2/N {}", r.chi2_per_point);
    }
    // MEM, BR and the point-to-point network have no batched form: the correlators run side by
    // side on the CPU threads (two here, so the four take two rounds), each one's result bit for
    // bit its own (computed with the device's threads in its ops).
    let two = Device::Cpu(latticeml::device::cpu::CpuDevice::with_threads(2));
    let mut p2p = NnOptions::new(NnKind::PointToPoint { positive: true });
    (p2p.steps, p2p.restarts, p2p.polish_iters) = (100, 1, 20);
    for method in [
        Method::Neural(p2p),
        Method::Mem {
            alpha: MemAlpha::Bryan,
            default_model: None,
        },
        Method::Br {
            default_model: None,
        },
    ] {
        let mut heard = Vec::new();
        let many =
            latticeml::spectral::reconstruct_many(&p, &values, &method, &two, &mut |d, t| {
                heard.push((d, t))
            })
            .unwrap();
        assert_eq!(heard, [(2, 4), (4, 4)], "{}", method.name());
        for (v, r) in values.iter().zip(&many) {
            let single = alone(v, &method);
            assert_eq!(r.rho, single.rho, "{}", method.name());
            assert_eq!(r.band, single.band, "{}", method.name());
        }
    }
}
