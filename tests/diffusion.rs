//! The diffusion models' score network: translation equivariance on the torus (and its loss with
//! zero padding), denoising score matching that learns, the divergence and its estimate, and the
//! command line.

mod common;

use latticeml::device::CpuDevice;
use latticeml::diffusion::{ScoreConfig, ScoreNet, VeSde};
use latticeml::nn::{Adam, ConvMode, Ctx, ParamStore, Tape};
use latticeml::{philox, Device};

fn normals(n: usize, stream: u32, step: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 5, stream, step, 12);
    v
}

fn small() -> ScoreConfig {
    ScoreConfig {
        channels: [4, 8],
        groups: 2,
        frequencies: 4,
        ..ScoreConfig::default()
    }
}

/// Periodic padding: shifting the configuration by two sites (the 2× pooling's period) along
/// either axis shifts the score the same way.
#[test]
fn the_score_commutes_with_even_lattice_shifts() {
    let ctx = Ctx::<f64>::new(Device::Cpu(common::cpu()));
    let mut store = ParamStore::new(&ctx);
    let (h, w) = (6, 8);
    let net = ScoreNet::new(&small(), [h, w], &mut store).unwrap();
    let sde = VeSde::new(25.0).unwrap();
    let x = normals(2 * h * w, 1, 0);
    let shift = |v: &[f64], dy: usize, dx: usize| -> Vec<f64> {
        let mut out = vec![0.0; v.len()];
        for (b, plane) in v.chunks(h * w).enumerate() {
            for i in 0..h {
                for j in 0..w {
                    out[b * h * w + ((i + dy) % h) * w + (j + dx) % w] = plane[i * w + j];
                }
            }
        }
        out
    };
    let s = net.evaluate(&store, &sde, &x, &[0.3; 2]).unwrap();
    for (dy, dx) in [(2, 0), (0, 2), (4, 6)] {
        let s2 = net
            .evaluate(&store, &sde, &shift(&x, dy, dx), &[0.3; 2])
            .unwrap();
        assert!(
            common::max_rel_diff(&s2, &shift(&s, dy, dx)) < 1e-12,
            "shift ({dy}, {dx})"
        );
    }
    // An odd shift is not a symmetry of the pooled level (the test can fail).
    let s1 = net
        .evaluate(&store, &sde, &shift(&x, 1, 0), &[0.3; 2])
        .unwrap();
    assert!(common::max_rel_diff(&s1, &shift(&s, 1, 0)) > 1e-6);
    // Zero padding (the paper's) breaks the lattice's translations, even ones.

    let zero = ScoreConfig {
        padding: ConvMode::Zero,
        ..small()
    };
    let mut zstore = ParamStore::new(&ctx);
    let znet = ScoreNet::new(&zero, [h, w], &mut zstore).unwrap();
    let z = znet.evaluate(&zstore, &sde, &x, &[0.3; 2]).unwrap();
    let z2 = znet
        .evaluate(&zstore, &sde, &shift(&x, 2, 0), &[0.3; 2])
        .unwrap();
    assert!(common::max_rel_diff(&z2, &shift(&z, 2, 0)) > 1e-6);
}

/// Denoising score matching on Gaussian data (N(0, 0.5²) per site) lowers the loss, and the
/// trained score at small noise points back towards the data: ⟨x · s(x)⟩ < 0.
#[test]
fn denoising_score_matching_learns() {
    let ctx = Ctx::<f32>::new(Device::Cpu(common::cpu()));
    let mut store = ParamStore::new(&ctx);
    let (l, batch) = (8, 32);
    let net = ScoreNet::new(&small(), [l, l], &mut store).unwrap();
    let sde = VeSde::new(25.0).unwrap();
    let mut adam = Adam::new(3e-3);
    let loss_at = |store: &ParamStore<f32>, step: u32| -> f64 {
        let tape = Tape::new(store.ctx());
        tape.set_grad_enabled(false);
        let x0: Vec<f64> = normals(batch * l * l, 2, 10_000 + step)
            .iter()
            .map(|z| 0.5 * z)
            .collect();
        let t: Vec<f64> = (0..batch)
            .map(|b| 0.05 + 0.9 * (b as f64 + 0.5) / batch as f64)
            .collect();
        let z = normals(batch * l * l, 3, 10_000 + step);
        let loss = net.dsm_loss(&tape, store, &sde, (&x0, &t, &z)).unwrap();
        loss.value().to_f64().unwrap()[0]
    };
    let before: f64 = (0..4).map(|k| loss_at(&store, k)).sum::<f64>() / 4.0;
    for step in 0..150u32 {
        let x0: Vec<f64> = normals(batch * l * l, 2, step)
            .iter()
            .map(|z| 0.5 * z)
            .collect();
        let t: Vec<f64> = (0..batch)
            .map(|b| 1e-3 + (1.0 - 1e-3) * philox::uniform(5, b as u32, step, 13))
            .collect();
        let z = normals(batch * l * l, 3, step);
        let tape = Tape::new(&ctx);
        let loss = net.dsm_loss(&tape, &store, &sde, (&x0, &t, &z)).unwrap();
        let grads = tape.backward(&loss).unwrap();
        drop(loss);
        adam.step(&mut store, &grads).unwrap();
    }
    let after: f64 = (0..4).map(|k| loss_at(&store, k)).sum::<f64>() / 4.0;
    assert!(after < 0.8 * before, "DSM loss {before} → {after}");
    let x: Vec<f64> = normals(4 * l * l, 4, 0).iter().map(|z| 0.5 * z).collect();
    let s = net.evaluate(&store, &sde, &x, &[0.05; 4]).unwrap();
    let xs: f64 = x.iter().zip(&s).map(|(a, b)| a * b).sum::<f64>() / x.len() as f64;
    // The exact score of the smeared data is −x/(0.25 + σ_t²): ⟨x s⟩ ≈ −0.25/(0.25 + σ_t²) ≈ −0.7.
    assert!(xs < -0.2, "⟨x s⟩ = {xs}");
}

/// Runs the binary with the whitespace-separated `args`, asserting success.
fn ok(args: &str) {
    let v: Vec<&str> = args.split_whitespace().collect();
    let out = common::latticeml(&v);
    assert!(
        out.status.success(),
        "{args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The command line end to end on a small φ⁴ run: training resumes bit-identically, sampling
/// writes the run files with the φ⁴ keys and says the draws are not exact, and data of another
/// theory is refused.
#[test]
fn train_resume_and_sample_from_the_command_line() {
    let dir = |name: &str| common::fresh_dir(name).to_str().unwrap().to_string();
    let (run, a, b, s, xy) = (
        dir("diff-run"),
        dir("diff-a"),
        dir("diff-b"),
        dir("diff-s"),
        dir("diff-xy"),
    );
    ok(&format!(
        "sample --theory phi4 --dims 6x6 --trajectories 120 --therm 20 --chains 2 --save-every 5 \
         --out {run} --device cpu"
    ));
    let train = |epochs: u32, out: &str, more: &str| {
        ok(&format!(
            "diffusion train --data {run} --epochs {epochs} --batch 8 --channels 4,8 --groups 2 \
             --out {out} --device cpu {more}"
        ))
    };
    train(4, &a, "");
    train(2, &b, "");
    train(4, &b, "--resume");
    // The paper's zero padding trains and samples too.
    let zp = dir("diff-zero");
    train(1, &zp, "--padding zero");
    ok(&format!(
        "diffusion sample --model {zp} --samples 4 --chains 4 --steps 5 --out {zp}/s --device cpu"
    ));
    assert!(
        std::fs::read_to_string(std::path::Path::new(&zp).join("diffusion.json"))
            .unwrap()
            .contains("\"padding\": \"zero\"")
    );
    for f in [
        "model.safetensors",
        "weights.safetensors",
        "optimizer.safetensors",
    ] {
        let read = |d: &str| std::fs::read(std::path::Path::new(d).join(f)).unwrap();
        assert_eq!(read(&a), read(&b), "{f} differs after a resume");
    }
    ok(&format!(
        "diffusion sample --model {a} --samples 16 --chains 8 --steps 20 --sampler h --h 0.5 \
         --out {s} --device cpu"
    ));
    let summary = std::fs::read_to_string(std::path::Path::new(&s).join("summary.json")).unwrap();
    for key in ["\"chi2\"", "\"absM\"", "\"binder\"", "\"exact\": false"] {
        assert!(summary.contains(key), "{key} missing from {summary}");
    }
    // The histograms of the model's draws beside the training ensemble's (200 measured rows of
    // the training run: 2 chains × 100 trajectories after thermalisation; 16 draws).
    let svg = std::fs::read_to_string(std::path::Path::new(&s).join("histograms.svg")).unwrap();
    assert!(svg.contains("training ensemble (200)") && svg.contains("diffusion model (16)"));
    // It belongs to the run: --force replaces it with the rest.
    ok(&format!(
        "diffusion sample --model {a} --samples 8 --chains 8 --steps 5 --out {s} --device cpu \
         --force"
    ));
    // With --mh: the ODE's draws with their density, through independence Metropolis.
    let mh = dir("diff-mh");
    ok(&format!(
        "diffusion sample --model {a} --samples 8 --chains 4 --steps 4 --sampler ode --mh \
         --out {mh} --device cpu"
    ));
    let summary = std::fs::read_to_string(std::path::Path::new(&mh).join("summary.json")).unwrap();
    for key in ["\"exact\": true", "\"ess_per_sample\"", "\"reweighted\""] {
        assert!(summary.contains(key), "{key} missing from {summary}");
    }
    // The adaptive ODE with Hutchinson's divergence: said to be approximate; and pc runs.
    let rk = dir("diff-rk");
    ok(&format!(
        "diffusion sample --model {a} --samples 8 --chains 4 --sampler rk45 --tol 1e-3 --mh \
         --divergence hutchinson --probes 2 --out {rk} --device cpu"
    ));
    let summary = std::fs::read_to_string(std::path::Path::new(&rk).join("summary.json")).unwrap();
    for key in [
        "\"exact\": false",
        "hutchinson, 2 probes",
        "\"evaluations_per_draw\"",
    ] {
        assert!(summary.contains(key), "{key} missing from {summary}");
    }
    let pc = dir("diff-pc");
    ok(&format!(
        "diffusion sample --model {a} --samples 8 --chains 4 --steps 10 --sampler pc \
         --corrector-steps 2 --out {pc} --device cpu"
    ));
    let summary = std::fs::read_to_string(std::path::Path::new(&pc).join("summary.json")).unwrap();
    // One predictor and two corrector evaluations per step.
    assert!(
        summary.contains("\"evaluations_per_draw\": 30"),
        "{summary}"
    );
    // Every draw is kept by default (two updates after the start, four chains).
    let bytes = std::fs::read(std::path::Path::new(&pc).join("configs.npy")).unwrap();
    let (shape, _) = latticeml::io::npy::decode(&bytes).unwrap();
    assert_eq!(shape[..2], [2, 4], "{shape:?}");
    // Sampling resumes bit-identically, the adaptive integrator's evaluation count included.
    let (whole, part) = (dir("diff-whole"), dir("diff-part"));
    let draw = |samples: u32, out: &str, more: &str| {
        ok(&format!(
            "diffusion sample --model {a} --samples {samples} --chains 4 --sampler rk45 --tol 1e-3 \
             --save-every 1 --out {out} --device cpu {more}"
        ))
    };
    draw(16, &whole, "");
    draw(8, &part, "");
    draw(16, &part, "--resume");
    let (w, p) = (std::path::Path::new(&whole), std::path::Path::new(&part));
    common::assert_same_run_files(w, p, "diffusion sample --resume");
    let evals = |d: &std::path::Path| {
        let text = std::fs::read_to_string(d.join("summary.json")).unwrap();
        let at = text.find("\"evaluations_per_draw\"").unwrap();
        text[at..].lines().next().unwrap().to_string()
    };
    assert_eq!(evals(w), evals(p));
    // HMC between the independence steps (the moved chains' ln q by the forward ODE): it runs,
    // reports the HMC's acceptance, and resumes bit-identically.
    let (hw, hp) = (dir("diff-hybrid-whole"), dir("diff-hybrid-part"));
    let hybrid = |samples: u32, out: &str, more: &str| {
        ok(&format!(
            "diffusion sample --model {a} --samples {samples} --chains 4 --steps 4 --sampler ode \
             --mh --hmc-between 2 --hmc-md-steps 8 --save-every 1 --out {out} --device cpu {more}"
        ))
    };
    hybrid(12, &hw, "");
    hybrid(8, &hp, "");
    hybrid(12, &hp, "--resume");
    let (w, p) = (std::path::Path::new(&hw), std::path::Path::new(&hp));
    common::assert_same_run_files(w, p, "diffusion sample --hmc-between --resume");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.join("summary.json")).unwrap()).unwrap();
    let between = &summary["updates_between"];
    assert_eq!(between["updates"].as_f64(), Some(2.0), "{summary}");
    let acc = between["acceptance"].as_f64().unwrap();
    // (A model of four epochs proposes rough configurations, where HMC accepts little.)
    assert!((0.0..=1.0).contains(&acc), "HMC acceptance {acc}");
    common::refused(
        &format!("diffusion sample --model {a} --hmc-between 2 --out {b}-h")
            .split_whitespace()
            .collect::<Vec<_>>(),
        "--sampler ode --mh",
    );
    let em_mh = format!("diffusion sample --model {a} --mh --sampler em --out {b}-z");
    common::refused(
        &em_mh.split_whitespace().collect::<Vec<_>>(),
        "--sampler ode",
    );
    ok(&format!(
        "sample --theory xy --dims 4x4 --trajectories 40 --therm 10 --out {xy} --device cpu"
    ));
    let refused = |args: String, needle: &str| {
        let v: Vec<&str> = args.split_whitespace().collect();
        common::refused(&v, needle);
    };
    refused(
        format!("diffusion train --data {xy} --out {b}-x --device cpu"),
        "2D phi4",
    );
    refused(
        format!("diffusion sample --model {a} --sampler rk9 --out {b}-y"),
        "--sampler rk9",
    );
    for d in [
        &run, &a, &b, &s, &xy, &mh, &rk, &pc, &zp, &whole, &part, &hw, &hp,
    ] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The broken phase (κ = 0.5, φ ≈ 4.8 on every site): the network learns the fluctuations
/// about the ensemble's mean field, recorded as `data_mean`, and draws are shifted back. A model
/// of ten epochs already centres its draws on the ensemble's magnetisation (without the shift its
/// group norms could not see the size of a constant field: 150 epochs at 32² gave ⟨M⟩ = 1.5 for
/// 4.83); with sign flips the augmented ensemble's mean, and so the shift, is zero.
#[test]
fn broken_phase_draws_sit_at_the_ensembles_mean_field() {
    let dir = |name: &str| common::fresh_dir(name).to_str().unwrap().to_string();
    let (run, model, draws, flipped) = (
        dir("diff-broken-run"),
        dir("diff-broken-model"),
        dir("diff-broken-draws"),
        dir("diff-broken-flipped"),
    );
    ok(&format!(
        "sample --theory phi4 --dims 8x8 --kappa 0.5 --lambda 0.022 --start ordered \
         --trajectories 220 --therm 20 --chains 2 --save-every 5 --out {run} --device cpu"
    ));
    let train = |out: &str, augment: &str| {
        ok(&format!(
            "diffusion train --data {run} --epochs 10 --batch 8 --channels 4,8 --groups 2 \
             --augment {augment} --out {out} --device cpu"
        ))
    };
    train(&model, "shift");
    train(&flipped, "shift,flip");
    let record = |d: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(std::path::Path::new(d).join("diffusion.json")).unwrap(),
        )
        .unwrap()
    };
    let bytes = std::fs::read(std::path::Path::new(&run).join("configs.npy")).unwrap();
    let (_, data) = latticeml::io::npy::decode(&bytes).unwrap();
    let mean = data.iter().sum::<f64>() / data.len() as f64;
    assert!(mean > 4.0, "the ordered run's mean field {mean}");
    let recorded = record(&model)["data_mean"].as_f64().unwrap();
    assert!(
        (recorded - mean).abs() < 1e-9 * mean,
        "{recorded} vs {mean}"
    );
    assert_eq!(record(&flipped)["data_mean"].as_f64(), Some(0.0));
    ok(&format!(
        "diffusion sample --model {model} --samples 32 --chains 32 --steps 50 --out {draws} \
         --device cpu"
    ));
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(&draws).join("summary.json")).unwrap(),
    )
    .unwrap();
    let m = &summary["observables"]["M"];
    let (value, error) = (m["value"].as_f64().unwrap(), m["error"].as_f64().unwrap());
    // Measured: 4.50 ± 0.46 (without the shift: −0.45 ± 0.45).
    assert!(
        (value - mean).abs() < 4.0 * error && error < 1.0,
        "draws' M {value} ± {error}, ensemble {mean}"
    );
}

/// The exact divergence of the score network (V vector–Jacobian products) against central finite
/// differences of the network's own score, in f64.
#[test]
fn the_divergence_of_the_score_is_its_jacobians_trace() {
    let ctx = Ctx::<f64>::new(Device::Cpu(common::cpu()));
    let mut store = ParamStore::new(&ctx);
    let (l, b) = (6, 2);
    let net = ScoreNet::new(&small(), [l, l], &mut store).unwrap();
    let sde = VeSde::new(25.0).unwrap();
    let x = normals(b * l * l, 5, 0);
    // Different times per sample: the batch's samples are independent.
    let t = [0.2, 0.6];
    let (s, div) = net.score_and_divergence(&store, &sde, &x, &t).unwrap();
    assert!(common::max_rel_diff(&s, &net.evaluate(&store, &sde, &x, &t).unwrap()) < 1e-14);
    let v = l * l;
    let h = 1e-5;
    let mut fd = vec![0.0; b];
    for i in 0..v {
        let shifted = |d: f64| {
            let mut y = x.clone();
            for k in 0..b {
                y[k * v + i] += d;
            }
            net.evaluate(&store, &sde, &y, &t).unwrap()
        };
        let (up, down) = (shifted(h), shifted(-h));
        for (k, f) in fd.iter_mut().enumerate() {
            *f += (up[k * v + i] - down[k * v + i]) / (2.0 * h);
        }
    }
    assert!(common::max_rel_diff(&div, &fd) < 1e-6, "{div:?} vs {fd:?}");
}

/// Hutchinson's estimate with given probes is εᵀ J ε averaged over the probes, J the score's
/// input Jacobian built column by column from finite differences in f64.
#[test]
fn hutchinson_estimates_are_the_probes_quadratic_forms() {
    let ctx = Ctx::<f64>::new(Device::Cpu(common::cpu()));
    let mut store = ParamStore::new(&ctx);
    let (l, b) = (6, 2);
    let v = l * l;
    let net = ScoreNet::new(&small(), [l, l], &mut store).unwrap();
    let sde = VeSde::new(25.0).unwrap();
    let (x, t) = (normals(b * v, 6, 0), [0.3, 0.1]);
    let sign = |z: f64| if z > 0.0 { 1.0 } else { -1.0 };
    let probes: Vec<Vec<f64>> = (0..3)
        .map(|p| normals(b * v, 7, p).into_iter().map(sign).collect())
        .collect();
    let (s, est) = net
        .score_and_divergence_estimate(&store, &sde, (&x, &t), &probes)
        .unwrap();
    assert!(common::max_rel_diff(&s, &net.evaluate(&store, &sde, &x, &t).unwrap()) < 1e-14);
    // J e for each probe e by central differences along e.
    let h = 1e-5;
    let mut want = vec![0.0; b];
    for e in &probes {
        let at = |d: f64| {
            let y: Vec<f64> = x.iter().zip(e).map(|(a, c)| a + d * c).collect();
            net.evaluate(&store, &sde, &y, &t).unwrap()
        };
        let (up, down) = (at(h), at(-h));
        for (k, w) in want.iter_mut().enumerate() {
            let r = k * v..(k + 1) * v;
            let je = up[r.clone()]
                .iter()
                .zip(&down[r.clone()])
                .map(|(a, c)| (a - c) / (2.0 * h));
            *w += je.zip(&e[r]).map(|(a, c)| a * c).sum::<f64>() / probes.len() as f64;
        }
    }
    assert!(
        common::max_rel_diff(&est, &want) < 1e-6,
        "{est:?} vs {want:?}"
    );
}

/// The free field on an L×L torus in hopping form (λ = 0): S = ½ φᵀAφ, A(p) = 2(1 − 2κ Σ cos p),
/// so the data are N(0, C) with C(p) = 1/A(p), and the smeared marginal p_t is N(0, C + σ_t²):
/// its exact score is −(C + σ_t²)⁻¹ x, a circulant kernel.
struct FreeField {
    l: usize,
    kappa: f64,
}

impl FreeField {
    /// The circulant kernel K(x) = (1/V) Σ_p cos(p·x) f(C(p)), `[L·L]`.
    fn kernel(&self, f: impl Fn(f64) -> f64) -> Vec<f64> {
        let (l, v) = (self.l, self.l * self.l);
        let p = |k: usize| std::f64::consts::TAU * k as f64 / l as f64;
        let mut out = vec![0.0; v];
        for (x, o) in out.iter_mut().enumerate() {
            let (x0, x1) = (x / l, x % l);
            for k in 0..v {
                let (k0, k1) = (k / l, k % l);
                let c = 1.0 / (2.0 * (1.0 - 2.0 * self.kappa * (p(k0).cos() + p(k1).cos())));
                *o += (p(k0) * x0 as f64 + p(k1) * x1 as f64).cos() * f(c) / v as f64;
            }
        }
        out
    }

    /// K ⊛ x for configurations x `[B][V]`.
    fn apply(&self, kernel: &[f64], x: &[f64]) -> Vec<f64> {
        let (l, v) = (self.l, self.l * self.l);
        let mut out = vec![0.0; x.len()];
        for (xb, ob) in x.chunks(v).zip(out.chunks_mut(v)) {
            for (s, o) in ob.iter_mut().enumerate() {
                for (r, xr) in xb.iter().enumerate() {
                    let d0 = (s / l + l - r / l) % l;
                    let d1 = (s % l + l - r % l) % l;
                    *o += kernel[d0 * l + d1] * xr;
                }
            }
        }
        out
    }
}

/// The relative error Σ‖s_θ − s‖² / Σ‖s‖² of a score at time t over data x0 smeared by σ_t z.
fn score_error(
    model: &latticeml::diffusion::job::LoadedDiffusion,
    field: &FreeField,
    x0: &[f64],
    t: f64,
    score: &dyn Fn(&[f64]) -> Vec<f64>,
) -> f64 {
    let sigma = model.sde.marginal_std(t);
    let z = normals(x0.len(), 9, (t * 1000.0) as u32);
    let x: Vec<f64> = x0.iter().zip(&z).map(|(a, b)| a + sigma * b).collect();
    let exact = field.apply(&field.kernel(|c| -1.0 / (c + sigma * sigma)), &x);
    let got = score(&x);
    let num: f64 = got.iter().zip(&exact).map(|(a, b)| (a - b).powi(2)).sum();
    num / exact.iter().map(|a| a * a).sum::<f64>()
}

/// A score network trained (through the command line) on an exact free-field ensemble against
/// the exact score at several times, beside the best score that ignores the neighbours,
/// −x/(C(0) + σ_t²): the network must learn the correlations the latter lacks.
#[test]
fn a_trained_score_matches_the_free_fields_exact_score() {
    let dir = |name: &str| common::fresh_dir(name).to_str().unwrap().to_string();
    let (run, model) = (dir("diff-ff-run"), dir("diff-ff-model"));
    let field = FreeField { l: 8, kappa: 0.2 };
    ok(&format!(
        "sample --theory phi4 --dims 8x8 --kappa 0.2 --lambda 0 --trajectories 2100 --therm 100 \
         --chains 4 --save-every 2 --out {run} --device cpu"
    ));
    ok(&format!(
        "diffusion train --data {run} --epochs 30 --channels 8,16 --out {model} --device cpu"
    ));
    let m =
        latticeml::diffusion::job::load(std::path::Path::new(&model), &Device::Cpu(common::cpu()))
            .unwrap();
    let bytes = std::fs::read(std::path::Path::new(&run).join("configs.npy")).unwrap();
    let (_, data) = latticeml::io::npy::decode(&bytes).unwrap();
    let x0 = &data[..256 * 64];
    let c0 = field.kernel(|c| c)[0];
    for t in [0.02, 0.1, 0.3, 0.6] {
        let b = x0.len() / 64;
        let net = score_error(&m, &field, x0, t, &|x| {
            let centred: Vec<f64> = x.iter().map(|a| a - m.data_mean).collect();
            m.net
                .evaluate(&m.params, &m.sde, &centred, &vec![t; b])
                .unwrap()
        });
        let s2 = m.sde.marginal_std(t).powi(2);
        let local = score_error(&m, &field, x0, t, &|x| {
            x.iter().map(|a| -a / (c0 + s2)).collect()
        });
        eprintln!("t = {t}: network {net:.4}, site-local {local:.4}");
        // After 30 epochs (measured: 0.06, 0.02, 0.02, 0.02 against 0.19, 0.14, 0.04, 0.002;
        // after 10 epochs 0.76 at t = 0.02, which fails).
        if t <= 0.3 {
            assert!(net < 0.1 && net < 0.5 * local, "t = {t}: {net} vs {local}");
        } else {
            assert!(net < 0.05, "t = {t}: {net}");
        }
    }
    for d in [&run, &model] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Per-configuration ⟨φ²⟩ and time-slice correlator Σ_t S(t)S(t+τ)/L (S(t) the sum over the
/// slice) of configurations `[N][L·L]`.
fn phi2_and_slices(configs: &[f64], l: usize) -> Vec<Vec<f64>> {
    configs
        .chunks(l * l)
        .map(|c| {
            let s: Vec<f64> = c.chunks(l).map(|row| row.iter().sum()).collect();
            let mut out = vec![c.iter().map(|a| a * a).sum::<f64>() / (l * l) as f64];
            out.extend(
                (0..=l / 2)
                    .map(|tau| (0..l).map(|t| s[t] * s[(t + tau) % l]).sum::<f64>() / l as f64),
            );
            out
        })
        .collect()
}

/// Mean and standard error of rows grouped into `groups` blocks (independent chains or
/// independent draws): the error from the spread of the block means.
fn block_mean(rows: &[Vec<f64>], groups: usize) -> Vec<(f64, f64)> {
    let per = rows.len() / groups;
    (0..rows[0].len())
        .map(|k| {
            let means: Vec<f64> = (0..groups)
                .map(|g| {
                    rows[g * per..(g + 1) * per]
                        .iter()
                        .map(|r| r[k])
                        .sum::<f64>()
                        / per as f64
                })
                .collect();
            let m = means.iter().sum::<f64>() / groups as f64;
            let var = means.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (groups - 1) as f64;
            (m, (var / groups as f64).sqrt())
        })
        .collect()
}

/// The free field's ⟨φ²⟩ and time-slice correlator from a trained score network against the
/// exact propagator: raw reverse-SDE draws (the model's error shows) and the Metropolis-corrected
/// probability-flow ODE (exact up to the integrator's error). Long: run with `--ignored`.
#[test]
#[ignore]
fn free_field_draws_match_the_exact_propagator() {
    let dir = |name: &str| common::fresh_dir(name).to_str().unwrap().to_string();
    let (run, model, em, mh) = (
        dir("diff-ffd-run"),
        dir("diff-ffd-model"),
        dir("diff-ffd-em"),
        dir("diff-ffd-mh"),
    );
    let (l, field) = (8, FreeField { l: 8, kappa: 0.2 });
    ok(&format!(
        "sample --theory phi4 --dims 8x8 --kappa 0.2 --lambda 0 --trajectories 2100 --therm 100 \
         --chains 4 --save-every 2 --out {run} --device cpu"
    ));
    ok(&format!(
        "diffusion train --data {run} --epochs 100 --channels 8,16 --out {model} --device cpu"
    ));
    ok(&format!(
        "diffusion sample --model {model} --samples 1024 --chains 256 --steps 500 --out {em} \
         --save-every 1 --device cpu"
    ));
    ok(&format!(
        "diffusion sample --model {model} --samples 1280 --chains 64 --sampler ode --steps 50 \
         --mh --out {mh} --save-every 1 --device cpu"
    ));
    let g = field.kernel(|c| c);
    let exact: Vec<f64> = std::iter::once(g[0])
        .chain((0..=l / 2).map(|tau| l as f64 * g[tau * l..(tau + 1) * l].iter().sum::<f64>()))
        .collect();
    let read = |d: &str| {
        let bytes = std::fs::read(std::path::Path::new(d).join("configs.npy")).unwrap();
        latticeml::io::npy::decode(&bytes).unwrap()
    };
    for (name, d) in [("reverse SDE (raw)", &em), ("ODE + MH", &mh)] {
        let (shape, configs) = read(d);
        // [saved, chains, L, L]: drop the start; blocks are chains (MH) or draws (raw).
        let (saved, chains) = (shape[0], shape[1]);
        let rows = phi2_and_slices(&configs[chains * l * l..], l);
        let by_chain: Vec<Vec<f64>> = (0..chains)
            .flat_map(|c| (0..saved - 1).map(move |s| s * chains + c))
            .map(|i| rows[i].clone())
            .collect();
        let got = block_mean(&by_chain, chains);
        for (k, ((m, e), x)) in got.iter().zip(&exact).enumerate() {
            let what = if k == 0 {
                "<phi^2>".to_string()
            } else {
                format!("C({})", k - 1)
            };
            eprintln!(
                "{name}: {what} = {m:.4} ± {e:.4}  (exact {x:.4}, {:+.1}σ)",
                (m - x) / e
            );
            if name == "ODE + MH" {
                assert!((m - x).abs() < 4.0 * e, "{name} {what}: {m} ± {e} vs {x}");
            }
        }
    }
    for d in [&run, &model, &em, &mh] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The DSM loss and every parameter's gradient of the score network on `device`, for a fixed
/// batch (the same initial weights on every device: they are drawn on the host).
fn loss_and_grads<T: latticeml::nn::Real>(
    device: Device,
    (l, batch): (usize, usize),
) -> (f64, std::collections::BTreeMap<String, Vec<f64>>) {
    let ctx = Ctx::<T>::new(device);
    let mut store = ParamStore::new(&ctx);
    let net = ScoreNet::new(&small(), [l, l], &mut store).unwrap();
    let sde = VeSde::new(25.0).unwrap();
    let x0 = normals(batch * l * l, 6, 0);
    let t: Vec<f64> = (0..batch).map(|b| 0.02 + 0.19 * b as f64).collect();
    let z = normals(batch * l * l, 7, 0);
    let tape = Tape::new(&ctx);
    let loss = net.dsm_loss(&tape, &store, &sde, (&x0, &t, &z)).unwrap();
    let value = loss.value().to_f64().unwrap()[0];
    let grads = tape.backward(&loss).unwrap();
    let grads = grads
        .iter()
        .map(|(k, v)| (k.clone(), v.to_f64().unwrap()))
        .collect();
    (value, grads)
}

/// The whole U-Net (convolutions, the fused group norm + SiLU, pooling, up-sampling, time
/// features) on CUDA against the CPU: the loss and the gradient of every parameter.
#[test]
fn the_score_network_on_cuda_matches_the_cpu() {
    let Some(gpu) = common::gpu("the_score_network_on_cuda_matches_the_cpu") else {
        return;
    };
    let (cpu_loss, cpu_grads) = loss_and_grads::<f64>(Device::Cpu(common::cpu()), (8, 5));
    let (gpu_loss, gpu_grads) = loss_and_grads::<f64>(Device::Cuda(gpu.clone()), (8, 5));
    assert!(
        (cpu_loss - gpu_loss).abs() <= 1e-10 * cpu_loss.abs(),
        "f64 loss {cpu_loss} vs {gpu_loss}"
    );
    assert_eq!(
        cpu_grads.keys().collect::<Vec<_>>(),
        gpu_grads.keys().collect::<Vec<_>>()
    );
    for (k, g) in &cpu_grads {
        let e = common::max_rel_diff(g, &gpu_grads[k]);
        assert!(e <= 1e-9, "f64 gradient of {k} differs by {e:e}");
    }
    let (cpu_loss, cpu_grads) = loss_and_grads::<f32>(Device::Cpu(common::cpu()), (8, 5));
    let (gpu_loss, gpu_grads) = loss_and_grads::<f32>(Device::Cuda(gpu), (8, 5));
    assert!(
        (cpu_loss - gpu_loss).abs() <= 1e-4 * cpu_loss.abs(),
        "f32 loss {cpu_loss} vs {gpu_loss}"
    );
    for (k, g) in &cpu_grads {
        let e = common::max_rel_diff(g, &gpu_grads[k]);
        assert!(e <= 1e-3, "f32 gradient of {k} differs by {e:e}");
    }
}

/// The same on two CPU thread counts, on activations large enough to be split over the threads
/// (16², 20 samples): work is split by groups and samples, sums are not, so the loss and
/// gradients are bit-identical.
#[test]
fn the_score_networks_gradients_do_not_depend_on_the_thread_count() {
    let one = loss_and_grads::<f32>(Device::Cpu(CpuDevice::with_threads(1)), (16, 20));
    let three = loss_and_grads::<f32>(Device::Cpu(CpuDevice::with_threads(3)), (16, 20));
    assert_eq!(one.0.to_bits(), three.0.to_bits());
    assert_eq!(one.1, three.1);
}
