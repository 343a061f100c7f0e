//! The continuous-mixture autoregressive network (`latticeml::can`): exact log q (normalised on
//! a 2×2 lattice by quadrature), the causal order, cached generation against naive generation
//! and against the one-pass log q, the Beta draws against the Beta distribution, and the CUDA
//! generation against its CPU twin (with a GPU), and the symmetrised proposals.

mod common;

use latticeml::can::mixture::{self, SiteDraws};
use latticeml::can::symmetry::{Symmetry, SymmetryGroup};
use latticeml::can::{Can, CanConfig, DrawKey};
use latticeml::nn::layers::Activation;
use latticeml::nn::{Ctx, ParamStore, Real, Tape};
use latticeml::{Device, Lattice};

fn network<T: Real>(dims: &[usize], config: &CanConfig) -> (Can, ParamStore<T>) {
    let ctx = Ctx::<T>::new(Device::Cpu(common::cpu()));
    let mut store = ParamStore::new(&ctx);
    let lat = Lattice::new(dims).unwrap();
    let can = Can::new(config, &lat, &mut store).unwrap();
    (can, store)
}

fn small(seed: u64) -> CanConfig {
    CanConfig {
        channels: 6,
        residual: 2,
        kernel: 3,
        components: 3,
        activation: Activation::Silu,
        running_means: false,
        seed,
    }
}

/// [`small`] with the running-mean inputs.
fn with_means(seed: u64) -> CanConfig {
    CanConfig {
        running_means: true,
        ..small(seed)
    }
}

const KEY: DrawKey = DrawKey {
    seed: 77,
    stream: 9,
    step: 3,
    sample0: 5,
};

fn one_pass_log_q<T: Real>(can: &Can, store: &ParamStore<T>, u: &[T]) -> Vec<f64> {
    let tape = Tape::new(store.ctx());
    tape.set_grad_enabled(false);
    can.log_q(&tape, store, u)
        .unwrap()
        .value()
        .to_f64()
        .unwrap()
}

#[test]
fn cached_generation_draws_what_naive_generation_draws_and_its_log_q_is_the_one_pass_log_q() {
    for (dims, act, running_means) in [
        (vec![4, 6], Activation::Silu, false),
        (vec![6, 4], Activation::LeakyRelu(0.1), false),
        (vec![2, 2], Activation::Tanh, false),
        (vec![5, 4], Activation::Silu, true),
        (vec![2, 2], Activation::Tanh, true),
    ] {
        let config = CanConfig {
            activation: act,
            kernel: if dims[0] == 2 { 2 } else { 3 },
            running_means,
            ..small(3)
        };
        let (can, store) = network::<f64>(&dims, &config);
        let (u, lq) = can.generate(&store, KEY, 7).unwrap();
        let (un, lqn) = can.generate_naive(&store, KEY, 7).unwrap();
        let d = common::max_rel_diff(&u, &un);
        assert!(d < 1e-12, "{dims:?}: cached vs naive u differ by {d:e}");
        let d = common::max_rel_diff(&lq, &lqn);
        assert!(d < 1e-12, "{dims:?}: cached vs naive ln q differ by {d:e}");
        let d = common::max_rel_diff(&lq, &one_pass_log_q(&can, &store, &u));
        assert!(d < 1e-12, "{dims:?}: generation's ln q vs one pass {d:e}");
        // Not all the same draw: the samples differ.
        assert!(u[..24.min(u.len())] != u[u.len() - 24.min(u.len())..]);
    }
    // f32: the same to rounding.
    let (can, store) = network::<f32>(&[4, 4], &small(4));
    let (u, lq) = can.generate(&store, KEY, 5).unwrap();
    let d = common::max_rel_diff(&lq, &one_pass_log_q(&can, &store, &u));
    assert!(d < 1e-4, "f32 generation's ln q vs one pass {d:e}");
}

#[test]
fn a_later_site_never_changes_an_earlier_conditional_and_a_global_rotation_none() {
    causal_order(small(5));
    causal_order(with_means(5));
}

fn causal_order(config: CanConfig) {
    let (h, w) = (4, 6);
    let (can, store) = network::<f64>(&[h, w], &config);
    let tape = Tape::new(store.ctx());
    tape.set_grad_enabled(false);
    let (u, _) = can.generate(&store, KEY, 1).unwrap();
    let outputs = |u: &[f64]| {
        let x = tape.constant(can.features(store.ctx(), u).unwrap());
        let o = can.outputs(&tape, &store, &x).unwrap();
        o.value().to_f64().unwrap()
    };
    let base = outputs(&u);
    let v = h * w;
    for s in 0..v {
        let mut moved = u.clone();
        moved[s] = (moved[s] + 0.37) % 1.0;
        let out = outputs(&moved);
        let mut later_changed = false;
        for (i, (a, b)) in base.iter().zip(&out).enumerate() {
            let site = i % v;
            if site <= s {
                assert_eq!(a, b, "site {s} changed the conditional of site {site}");
            } else if a != b {
                later_changed = true;
            }
        }
        // Every site but the last is seen by some later site (the test is not vacuous); site 0
        // by none: its angle only rotates the whole configuration, and q is rotation invariant.
        assert_eq!(later_changed, s > 0 && s + 1 < v, "site {s}");
    }
}

/// ∫ q(θ) dθ over [0, 2π)^4 on a 2×2 lattice: a tensor-product rule after u = t²(3 − 2t) (which
/// smooths the Beta densities' end points), 18 points per axis.
#[test]
fn log_q_is_normalised_on_a_2x2_lattice() {
    normalised_on_2x2(small(6));
    normalised_on_2x2(with_means(6));
}

fn normalised_on_2x2(config: CanConfig) {
    // A 2×2 kernel reaches back one site along each axis: every site sees every earlier one.
    let config = CanConfig {
        kernel: 2,
        ..config
    };
    let (can, store) = network::<f64>(&[2, 2], &config);
    // Gauss–Legendre nodes would do; the midpoint rule after the substitution converges fast
    // enough for 1e-3.
    let n: usize = 18;
    let nodes: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let t = (i as f64 + 0.5) / n as f64;
            (t * t * (3.0 - 2.0 * t), 6.0 * t * (1.0 - t) / n as f64)
        })
        .collect();
    let mut u = Vec::with_capacity(4 * n.pow(4));
    let mut jac = Vec::with_capacity(n.pow(4));
    for a in &nodes {
        for b in &nodes {
            for c in &nodes {
                for d in &nodes {
                    u.extend([a.0, b.0, c.0, d.0]);
                    jac.push(a.1 * b.1 * c.1 * d.1);
                }
            }
        }
    }
    let lq = one_pass_log_q(&can, &store, &u);
    // q(θ) dθ = q(θ) (2π)^4 du.
    let tau4 = std::f64::consts::TAU.powi(4);
    let z: f64 = lq.iter().zip(&jac).map(|(l, j)| l.exp() * tau4 * j).sum();
    assert!((z - 1.0).abs() < 2e-3, "∫ q = {z}");
    // The test can fail: a density off by a constant factor is not normalised.
    let z2: f64 = lq
        .iter()
        .zip(&jac)
        .map(|(l, j)| (l + 0.01).exp() * tau4 * j)
        .sum();
    assert!((z2 - 1.0).abs() > 5e-3);
}

/// The symmetrised density q_G (`can::symmetry`): the mean of q over the images gθ, computed
/// term by term here, and exactly invariant under every map of G — on a square torus (16 maps)
/// and a rectangle (8).
#[test]
fn the_symmetrised_density_averages_q_and_is_invariant() {
    for dims in [[4usize, 4], [4, 6]] {
        let (can, store) = network::<f64>(&dims, &small(8));
        let group = SymmetryGroup::new(Symmetry::All, dims).unwrap();
        let v = dims[0] * dims[1];
        let mut theta = vec![0.0; 3 * v];
        latticeml::philox::fill_normals(&mut theta, 4, 0, 0, 1);
        let theta: Vec<f64> = theta
            .iter()
            .map(|x| latticeml::theory::xy::wrap(2.0 * x))
            .collect();
        let lq_g = group.log_density(&can, &store, &theta).unwrap();
        for (c, th) in theta.chunks(v).enumerate() {
            let mut image = vec![0.0; v];
            let mut mean = 0.0;
            for g in 0..group.len() {
                group.apply(g, th, &mut image).unwrap();
                let u: Vec<f64> = can.variables(&image);
                mean += one_pass_log_q(&can, &store, &u)[0].exp() / group.len() as f64;
                let moved = group.log_density(&can, &store, &image).unwrap()[0];
                assert!(
                    (moved - lq_g[c]).abs() < 1e-9,
                    "{dims:?}: map {g} changes q_G"
                );
            }
            assert!(
                (mean.ln() - lq_g[c]).abs() < 1e-9,
                "{dims:?}: q_G is not the mean"
            );
        }
        // Not vacuous: q itself is not invariant.
        let mut image = vec![0.0; v];
        group
            .apply(group.len() - 1, &theta[..v], &mut image)
            .unwrap();
        let q = |t: &[f64]| one_pass_log_q(&can, &store, &can.variables::<f64>(t))[0];
        assert!((q(&image) - q(&theta[..v])).abs() > 1e-3, "{dims:?}");
    }
}

#[test]
fn site_draws_follow_the_mixture() {
    // One site's mixture: two components, π = (0.3, 0.7), with (a, b) ≈ (1.2, 6), (9, 2.5).
    let inv = |c: f64| ((c - 1.0f64).exp() - 1.0).ln(); // a = 1 + softplus(r)
    let p = [
        0.3f64.ln(),
        0.7f64.ln(),
        inv(1.2),
        inv(9.0),
        inv(6.0),
        inv(2.5),
    ];
    let n = 200_000;
    let bins = 20;
    let mut hist = vec![0usize; bins];
    for i in 0..n {
        let mut r = SiteDraws::new(11, 0, i, 0, 9);
        let u = mixture::sample_site(&p, &mut r);
        hist[((u * bins as f64) as usize).min(bins - 1)] += 1;
    }
    // Expected counts by integrating the density over each bin (fine midpoint rule).
    let mut chi2 = 0.0;
    for (k, &count) in hist.iter().enumerate() {
        let m = 400;
        let mass: f64 = (0..m)
            .map(|j| {
                let u = (k as f64 + (j as f64 + 0.5) / m as f64) / bins as f64;
                (mixture::site_log_density(&p, u) + mixture::LN_2PI).exp() / (bins * m) as f64
            })
            .sum();
        let e = mass * n as f64;
        chi2 += (count as f64 - e).powi(2) / e;
    }
    // 19 degrees of freedom: χ² above 45 has probability < 1e-3.
    assert!(chi2 < 45.0, "χ² = {chi2} for 19 degrees of freedom");
}

#[test]
fn cuda_generation_matches_the_cpu_twin() {
    let Some(gpu) = common::gpu("cuda_generation_matches_the_cpu_twin") else {
        return;
    };
    let (can, store) = network::<f32>(&[8, 8], &small(7));
    let (u, lq) = can.generate(&store, KEY, 33).unwrap();
    let w = can.pack(&store).unwrap();
    let (mut gu, mut glq) = (vec![0.0f32; u.len()], vec![0.0; lq.len()]);
    latticeml::can::generate::generate_cuda(&gpu, &w, can.spec(), KEY, &mut gu, &mut glq).unwrap();
    let (a, b): (Vec<f64>, Vec<f64>) = u
        .iter()
        .zip(&gu)
        .map(|(&x, &y)| (x as f64, y as f64))
        .unzip();
    // FMA contraction on the GPU changes the last bits of the activations.
    assert!(common::max_rel_diff(&a, &b) < 1e-3);
    assert!(common::max_rel_diff(&lq, &glq) < 1e-3);
}

/// Runs the binary with the whitespace-separated `args`, asserting success.
fn ok(args: &str) {
    let v: Vec<&str> = args.split_whitespace().collect();
    let out = common::latticeml(&v);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args}: {err}");
}

/// Asserts that the binary refuses the whitespace-separated `args` cleanly, naming `needle`.
fn refused(args: &str, needle: &str) {
    let v: Vec<&str> = args.split_whitespace().collect();
    common::refused(&v, needle);
}

fn fresh(name: &str) -> String {
    common::fresh_dir(name).to_str().unwrap().to_string()
}

/// (value, error) of observable `name` in a run directory's summary.json.
fn observable(dir: &str, name: &str) -> (f64, f64) {
    let text = std::fs::read_to_string(std::path::Path::new(dir).join("summary.json")).unwrap();
    let j = latticeml::io::json::Json::parse(&text).unwrap();
    let e = j.get("observables").and_then(|o| o.get(name)).unwrap();
    let num = |k: &str| match e.get(k) {
        Some(latticeml::io::json::Json::Num(v)) => *v,
        other => panic!("{name}.{k}: {other:?}"),
    };
    (num("value"), num("error"))
}

/// The exactness check of the learned sampler: a network trained briefly on the 4×4 XY model at
/// β = 1, corrected by independence Metropolis, against HMC on the same lattice — energy,
/// helicity modulus and vortex density within 4σ (errors with autocorrelations), also with the
/// proposals averaged over the lattice's and the angles' symmetries. The longer
/// checks (L = 8 and 16, β = 0.8, 1.0, 1.2) are in BENCHMARKS.md.
#[test]
fn independence_metropolis_over_a_trained_network_agrees_with_hmc() {
    let (m, nmcmc, hmc, raw, sym) = (
        fresh("can-model"),
        fresh("can-mh"),
        fresh("can-hmc"),
        fresh("can-raw"),
        fresh("can-sym"),
    );
    ok(&format!(
        "can train --theory xy --dims 4x4 --beta 1.0 --steps 1500 --anneal 0.99 --lr 3e-3 \
         --kernel 3 --log-every 500 --out {m} --device cpu"
    ));
    let draws = "--samples 400000 --chains 32 --save-every 1000 --device cpu";
    ok(&format!(
        "can sample --model {m} --mh {draws} --out {nmcmc}"
    ));
    ok(&format!(
        "sample --theory xy --dims 4x4 --beta 1.0 --algorithm hmc --trajectories 20000 \
         --therm 500 --chains 8 --save-every 1000 --out {hmc} --device cpu"
    ));
    for name in ["energy", "helicity", "vortex_density"] {
        let ((a, ea), (b, eb)) = (observable(&nmcmc, name), observable(&hmc, name));
        let sigma = (ea * ea + eb * eb).sqrt();
        assert!(
            (a - b).abs() < 4.0 * sigma,
            "{name}: network + MH {a} ± {ea} vs HMC {b} ± {eb}"
        );
    }
    // Proposals averaged over the 16 symmetries of the 4×4 torus and θ → −θ: still exact.
    ok(&format!(
        "can sample --model {m} --mh --symmetry all --samples 100000 --chains 32 \
         --save-every 1000 --device cpu --out {sym}"
    ));
    for name in ["energy", "helicity", "vortex_density"] {
        let ((a, ea), (b, eb)) = (observable(&sym, name), observable(&hmc, name));
        let sigma = (ea * ea + eb * eb).sqrt();
        assert!(
            (a - b).abs() < 4.0 * sigma,
            "{name}: symmetrised network + MH {a} ± {ea} vs HMC {b} ± {eb}"
        );
    }
    // The network's raw draws (no MH) are not exact: its vortex density is visibly low.
    ok(&format!("can sample --model {m} {draws} --out {raw}"));
    let ((a, ea), (b, eb)) = (
        observable(&raw, "vortex_density"),
        observable(&hmc, "vortex_density"),
    );
    assert!(
        (a - b).abs() > 4.0 * (ea * ea + eb * eb).sqrt(),
        "raw draws {a} ± {ea} vs HMC {b} ± {eb}: the test cannot tell an exact sampler from q"
    );
    for d in [&m, &nmcmc, &hmc, &raw, &sym] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// `can train --resume` continues bit-identically: 30 + 30 steps = 60 steps.
#[test]
fn resumed_training_is_bit_identical() {
    let (a, b) = (fresh("can-a"), fresh("can-b"));
    let train = |steps: u32, out: &str| {
        format!(
            "can train --theory xy --dims 4x4 --beta 0.9 --steps {steps} --batch 16 --kernel 3 \
             --channels 4 --log-every 10 --out {out} --device cpu"
        )
    };
    ok(&train(60, &a));
    ok(&train(30, &b));
    ok(&(train(60, &b) + " --resume"));
    let read = |d: &str, f: &str| std::fs::read(std::path::Path::new(d).join(f)).unwrap();
    for f in ["model.safetensors", "optimizer.safetensors", "can.json"] {
        assert_eq!(read(&a, f), read(&b, f), "{f} differs");
    }
    let rows = |d: &str| -> Vec<String> {
        String::from_utf8(read(d, "train.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(rows(&a), rows(&b), "train.csv differs (beyond the seconds)");
    // A fresh run into a used directory is refused, and so is a model of another theory.
    refused(&train(60, &a), "--resume");
    refused(
        "can train --theory phi4 --dims 4x4 --out /tmp/x --device cpu",
        "XY",
    );
    for d in [&a, &b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Mean −ln q per site of the configurations of the run in `run` under the model in `model`.
fn data_nll(model: &str, run: &str) -> f64 {
    let cpu = Device::Cpu(common::cpu());
    let m = latticeml::can::files::load(std::path::Path::new(model), &cpu).unwrap();
    let lattice = latticeml::lattice::Lattice::new(&[4, 4]).unwrap();
    let theta =
        latticeml::io::run_dir::configs_of_run(std::path::Path::new(run), &lattice).unwrap();
    let lq = latticeml::can::symmetry::log_q_of(&m.can, &m.params, &theta).unwrap();
    -lq.iter().sum::<f64>() / (theta.len() as f64)
}

/// `can train --data RUN` adds KL(p‖q) on a Metropolis ensemble: the network it trains gives
/// the ensemble a higher likelihood than the same training without it (a wrong sign or an unused
/// term fails), the training resumes bit-identically, and `--init` starts from another network's
/// weights only when the architectures match.
#[test]
fn training_on_an_ensemble_raises_its_likelihood() {
    let (run, plain, data, half) = (
        fresh("can-data-run"),
        fresh("can-data-plain"),
        fresh("can-data-data"),
        fresh("can-data-half"),
    );
    ok(&format!(
        "sample --theory xy --dims 4x4 --beta 1.0 --algorithm metropolis --trajectories 4000 \
         --therm 200 --chains 4 --save-every 10 --out {run} --device cpu"
    ));
    let train = |steps: u32, out: &str| {
        format!(
            "can train --theory xy --dims 4x4 --beta 1.0 --steps {steps} --batch 16 --kernel 3 \
             --channels 4 --lr 3e-3 --anneal 0.9 --log-every 50 --out {out} --device cpu"
        )
    };
    ok(&train(200, &plain));
    ok(&format!("{} --data {run}", train(200, &data)));
    let (without, with) = (data_nll(&plain, &run), data_nll(&data, &run));
    assert!(
        with < without - 0.01,
        "-ln q per site of the data: {with} trained with it, {without} without"
    );
    ok(&format!("{} --data {run}", train(100, &half)));
    ok(&format!("{} --data {run} --resume", train(200, &half)));
    for f in ["model.safetensors", "optimizer.safetensors", "can.json"] {
        let read = |d: &str| std::fs::read(std::path::Path::new(d).join(f)).unwrap();
        assert_eq!(read(&data), read(&half), "{f} differs after a resume");
    }
    // The record says what the network was trained on; a run of another beta is refused, and
    // so is --init from a network of another architecture.
    let record = std::fs::read_to_string(std::path::Path::new(&data).join("can.json")).unwrap();
    assert!(record.contains("\"data_weight\": 1"), "{record}");
    let other = fresh("can-data-other");
    refused(
        &format!(
            "{} --data {run}",
            train(10, &other).replace("--beta 1.0", "--beta 1.1")
        ),
        "the run sampled",
    );
    refused(
        &format!("{} --data {run} --data-weight 0", train(10, &other)),
        "--data-weight",
    );
    refused(
        &format!(
            "{} --init {plain}",
            train(10, &other).replace("--channels 4", "--channels 5")
        ),
        "--init",
    );
    ok(&format!(
        "{} --init {plain} --data {run}",
        train(10, &other)
    ));
    let summary = std::path::Path::new(&other).join("summary.json");
    let summary = std::fs::read_to_string(summary).unwrap();
    assert!(
        summary.contains(&format!("\"init\": \"{plain}\"")),
        "{summary}"
    );
    for d in [&run, &plain, &data, &half, &other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Bad input is refused with exit status 2 and a message naming the problem.
#[test]
fn bad_input_is_refused_clearly() {
    let (m, o, other) = (
        fresh("can-refuse"),
        fresh("can-refuse-out"),
        fresh("can-refuse-other"),
    );
    let tiny = |channels: u32, out: &str| {
        format!(
            "can train --theory xy --dims 4x4 --beta 1.0 --steps 2 --batch 4 --kernel 3 \
             --channels {channels} --out {out} --device cpu"
        )
    };
    ok(&tiny(2, &m));
    let xy = "sample --theory xy --algorithm can";
    refused(
        &format!("{xy} --dims 8x8 --model {m} --out {o}"),
        "was trained for xy on 4x4",
    );
    refused(&format!("{xy} --dims 4x4 --out {o}"), "needs --model");
    refused(
        &format!("sample --theory phi4 --dims 4x4 --algorithm can --model {m} --out {o}"),
        "can",
    );
    refused(
        &format!("can sample --model /nonexistent/can --out {o}"),
        "/nonexistent/can",
    );
    let train = format!("can train --theory xy --dims 4x4 --out {o}");
    refused(&format!("{train} --kernel 5"), "does not fit the lattice");
    refused(&format!("{train} --components 17"), "--components");
    refused(&format!("{train} --beta 0"), "beta > 0");
    refused(
        &format!("can scan --betas 1.4:0.6:0.1 --out {o}"),
        "--betas",
    );
    // A corrupt record and weights of another network.
    let model = std::path::Path::new(&m);
    std::fs::write(model.join("can.json"), b"{\"format\": \"latticeml-can-1\"").unwrap();
    refused(&format!("can sample --model {m} --out {o}"), "can.json");
    ok(&(tiny(2, &m) + " --force"));
    refused(
        &format!("can sample --model {m} --mh --symmetry rotations --out {o}"),
        "use none, flip, lattice or all",
    );
    ok(&tiny(3, &other));
    let weights = std::path::Path::new(&other).join("model.safetensors");
    std::fs::copy(weights, model.join("model.safetensors")).unwrap();
    refused(
        &format!("can sample --model {m} --out {o}"),
        "does not belong",
    );
    let summary = std::path::Path::new(&o).join("summary.json");
    assert!(!summary.exists(), "a refused run wrote results");
    for d in [&m, &o, &other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// ln q and its parameter gradients of the whole network (masked convolutions and the Beta
/// mixture's kernels) on CUDA against the CPU, f32 and f64 (runs with a GPU).
#[test]
fn the_network_on_cuda_matches_the_cpu_log_q_and_gradients() {
    let Some(gpu) = common::gpu("the_network_on_cuda_matches_the_cpu_log_q_and_gradients") else {
        return;
    };
    fn grads<T: Real>(device: Device, u: &[T]) -> (Vec<f64>, Vec<(String, Vec<f64>)>) {
        let ctx = Ctx::<T>::new(device);
        let mut store = ParamStore::new(&ctx);
        let can = Can::new(&small(8), &Lattice::new(&[6, 8]).unwrap(), &mut store).unwrap();
        let tape = Tape::new(&ctx);
        let lq = can.log_q(&tape, &store, u).unwrap();
        let w: Vec<f64> = (0..lq.shape()[0]).map(|i| i as f64 - 1.5).collect();
        let wv = tape.constant(ctx.from_f64(&[w.len()], &w).unwrap());
        let loss = tape.sum_all(&tape.mul(&wv, &lq).unwrap()).unwrap();
        let values = lq.value().to_f64().unwrap();
        let g = tape.backward(&loss).unwrap();
        let g = g
            .iter()
            .map(|(n, t)| (n.clone(), t.to_f64().unwrap()))
            .collect();
        (values, g)
    }
    fn compare<T: Real>(gpu: &latticeml::device::cuda::CudaDevice, tol: f64) {
        let (can, store) = network::<T>(&[6, 8], &small(8));
        let (u, _) = can.generate(&store, KEY, 4).unwrap();
        let (cv, cg) = grads::<T>(Device::Cpu(common::cpu()), &u);
        let (gv, gg) = grads::<T>(Device::Cuda(gpu.clone()), &u);
        assert!(common::max_rel_diff(&cv, &gv) < tol, "{}: ln q", T::NAME);
        for ((n, a), (_, b)) in cg.iter().zip(&gg) {
            assert!(common::max_rel_diff(a, b) < tol, "{}: d/d{n}", T::NAME);
        }
    }
    compare::<f64>(&gpu, 1e-10);
    compare::<f32>(&gpu, 1e-3);
}

/// The variables of the angles of a draw are the draw (f64: to rounding), and ln q through them
/// is the draw's: what the interleaved local updates rely on.
#[test]
fn angles_and_variables_are_inverse_maps() {
    let (can, store) = network::<f64>(&[6, 4], &small(9));
    let (u, lq) = can.generate(&store, KEY, 5).unwrap();
    let theta = can.angles(&u);
    assert!(theta
        .iter()
        .all(|t| (0.0..std::f64::consts::TAU).contains(t)));
    let back: Vec<f64> = can.variables(&theta);
    let d = u
        .iter()
        .zip(&back)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(d < 1e-12, "u → θ → u differs by {d:e}");
    let d = common::max_rel_diff(&lq, &one_pass_log_q(&can, &store, &back));
    assert!(d < 1e-10, "ln q through the variables of θ: {d:e}");
}

/// `can scan` end to end on 4×4 at β = 0.8 and 1.2 with symmetrised proposals: its table, plot,
/// vortex maps and summary, and the physics they must show (the helicity modulus grows and the
/// vortex density falls with β).
#[test]
fn a_scan_writes_its_table_plot_and_vortex_maps() {
    let o = fresh("can-scan");
    ok(&format!(
        "can scan --dims 4x4 --betas 0.8,1.2 --steps 200 --warm-steps 100 --kernel 3 \
         --samples 2000 --chains 16 --symmetry all --device cpu --out {o}"
    ));
    let dir = std::path::Path::new(&o);
    for f in [
        "scan.svg",
        "vortices_beta_0.8000.svg",
        "vortices_beta_1.2000.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir.join("scan.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    let (cold, hot) = if rows[0][0] > rows[1][0] {
        (&rows[0], &rows[1])
    } else {
        (&rows[1], &rows[0])
    };
    assert_eq!([hot[0], cold[0]], [0.8, 1.2]);
    // Columns: beta, T, energy, its error, helicity, its error, vortex density, its error, …
    assert!(
        cold[4] - hot[4] > 3.0 * cold[5].hypot(hot[5]),
        "helicity {csv}"
    );
    assert!(
        hot[6] - cold[6] > 3.0 * hot[7].hypot(cold[7]),
        "vortex density {csv}"
    );
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("symmetry: All"), "{manifest}");
    let _ = std::fs::remove_dir_all(dir);
}
