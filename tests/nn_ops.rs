//! Tape operations against explicit references, the causal structure of masked convolutions,
//! training that must learn, the allocation pool, the optimiser, and model files.

mod common;

use latticeml::nn::optim::{Adam, DecayOn, Schedule};
use latticeml::nn::tape::Tape;
use latticeml::nn::{
    kernels, safetensors, Backward, Binary, ConvMode, Ctx, Op, ParamStore, Real, Tensor, Unary,
};
use latticeml::{philox, Device};

fn ctx<T: Real>() -> Ctx<T> {
    Ctx::new(Device::Cpu(common::cpu()))
}

fn randn(n: usize, stream: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 23, stream, 0, 5);
    v
}

/// Direct sum with modular indices: y[b,o,i,j] = Σ_{c,u,v} w[o,c,u,v] x[b,c,(i+u−K/2) mod H,(j+v−K/2) mod W];
/// with `zero`, the terms whose unwrapped source lies outside the lattice left out.
fn reference_conv(
    x: &[f64],
    w: &[f64],
    [b, ci, h, wd]: [usize; 4],
    [co, k]: [usize; 2],
    zero: bool,
) -> Vec<f64> {
    let mut y = vec![0.0; b * co * h * wd];
    for (bb, o, i, j) in (0..b).flat_map(|bb| {
        (0..co).flat_map(move |o| (0..h).flat_map(move |i| (0..wd).map(move |j| (bb, o, i, j))))
    }) {
        let mut acc = 0.0;
        for c in 0..ci {
            for u in 0..k {
                for v in 0..k {
                    let (ui, uj) = (i + h + u - k / 2, j + wd + v - k / 2);
                    if zero && !((h..2 * h).contains(&ui) && (wd..2 * wd).contains(&uj)) {
                        continue;
                    }
                    let (si, sj) = (ui % h, uj % wd);
                    acc +=
                        w[((o * ci + c) * k + u) * k + v] * x[((bb * ci + c) * h + si) * wd + sj];
                }
            }
        }
        y[((bb * co + o) * h + i) * wd + j] = acc;
    }
    y
}

/// Periodic and zero-padded convolutions against the direct sums, on lattices narrower and wider
/// than the CPU's gather threshold (both of its im2col paths).
#[test]
fn periodic_and_zero_padded_convolutions_equal_the_direct_sums() {
    let modes = [(ConvMode::Periodic, false), (ConvMode::Zero, true)];
    for ((h, w), (mode, zero)) in [(5, 5), (4, 6), (7, 4), (8, 8), (4, 33), (6, 40)]
        .into_iter()
        .flat_map(|d| modes.map(|m| (d, m)))
    {
        for k in [1, 3, 5] {
            if k > h.min(w) {
                continue;
            }
            let (b, ci, co) = (2, 3, 4);
            let (x, wt) = (randn(b * ci * h * w, 1), randn(co * ci * k * k, 2));
            let want = reference_conv(&x, &wt, [b, ci, h, w], [co, k], zero);
            let c64 = ctx::<f64>();
            let y = kernels::conv2d(
                &c64.from_vec(&[b, ci, h, w], &x).unwrap(),
                &c64.from_vec(&[co, ci, k, k], &wt).unwrap(),
                mode,
            )
            .unwrap();
            assert!(
                common::max_rel_diff(&y.to_f64().unwrap(), &want) < 1e-13,
                "{h}x{w} k{k} {mode:?} f64"
            );
            let c32 = ctx::<f32>();
            let y = kernels::conv2d(
                &c32.from_f64(&[b, ci, h, w], &x).unwrap(),
                &c32.from_f64(&[co, ci, k, k], &wt).unwrap(),
                mode,
            )
            .unwrap();
            assert!(
                common::max_rel_diff(&y.to_f64().unwrap(), &want) < 1e-5,
                "{h}x{w} k{k} {mode:?} f32"
            );
        }
    }
}

#[test]
fn masked_convolution_output_depends_only_on_earlier_sites() {
    let (h, w) = (5, 6);
    let c = ctx::<f64>();
    let mut store = ParamStore::new(&c);
    store.init_layer("a", &[4, 1, 3, 3], 9, 4, 1).unwrap();
    store.init_layer("b", &[1, 4, 5, 5], 100, 1, 2).unwrap();
    let x0 = randn(h * w, 3);
    for site in 0..h * w {
        let tape = Tape::new(&c);
        store.insert("x", c.from_vec(&[1, 1, h, w], &x0).unwrap());
        let x = tape.param(&store, "x").unwrap();
        // Mask A first (excludes the site), then mask B (may include it): still strictly causal.
        let y1 = tape
            .conv2d(
                &x,
                &tape.param(&store, "a.w").unwrap(),
                Some(&tape.param(&store, "a.b").unwrap()),
                ConvMode::CausalExclusive,
            )
            .unwrap();
        let y1 = tape.tanh(&y1).unwrap();
        let y = tape
            .conv2d(
                &y1,
                &tape.param(&store, "b.w").unwrap(),
                None,
                ConvMode::CausalInclusive,
            )
            .unwrap();
        let mut onehot = vec![0.0; h * w];
        onehot[site] = 1.0;
        let pick = tape.constant(c.from_vec(&[1, 1, h, w], &onehot).unwrap());
        let l = tape.sum_all(&tape.mul(&y, &pick).unwrap()).unwrap();
        let g = tape
            .backward(&l)
            .unwrap()
            .get("x")
            .unwrap()
            .to_f64()
            .unwrap();
        for (src, &gv) in g.iter().enumerate() {
            if src >= site {
                assert_eq!(gv, 0.0, "output {site} depends on input {src}");
            }
        }
        if site > 0 {
            assert!(
                g[..site].iter().any(|&v| v != 0.0),
                "output {site} depends on nothing"
            );
        }
    }
}

/// Loss of a 1→8→1 tanh MLP fitted to sin on [−π, π] after `steps` Adam steps.
fn fit_sine(steps: usize) -> f64 {
    let c = ctx::<f64>();
    let mut store = ParamStore::new(&c);
    store.init_layer("l1", &[16, 1], 1, 16, 5).unwrap();
    store.init_layer("l2", &[1, 16], 16, 1, 6).unwrap();
    let n = 64;
    let xs: Vec<f64> = (0..n)
        .map(|i| -3.0 + 6.0 * i as f64 / (n - 1) as f64)
        .collect();
    let ys: Vec<f64> = xs.iter().map(|x| x.sin()).collect();
    let (xt, yt) = (
        c.from_vec(&[n, 1], &xs).unwrap(),
        c.from_vec(&[n, 1], &ys).unwrap(),
    );
    let mut opt = Adam::new(0.02);
    opt.schedule = Schedule::Cosine {
        total: steps,
        min_lr: 1e-3,
    };
    let mut last = f64::NAN;
    for _ in 0..=steps {
        let tape = Tape::new(&c);
        let x = tape.constant(xt.copy().unwrap());
        let h = tape
            .linear(
                &x,
                &tape.param(&store, "l1.w").unwrap(),
                &tape.param(&store, "l1.b").unwrap(),
            )
            .unwrap();
        let h = tape.tanh(&h).unwrap();
        let y = tape
            .linear(
                &h,
                &tape.param(&store, "l2.w").unwrap(),
                &tape.param(&store, "l2.b").unwrap(),
            )
            .unwrap();
        let d = tape.sub(&y, &tape.constant(yt.copy().unwrap())).unwrap();
        let loss = tape.mean_all(&tape.square(&d).unwrap()).unwrap();
        last = loss.value().to_f64().unwrap()[0];
        let g = tape.backward(&loss).unwrap();
        drop((x, h, y, d, loss));
        opt.step(&mut store, &g).unwrap();
    }
    last
}

#[test]
fn a_small_network_learns_a_function() {
    let untrained = fit_sine(0);
    let trained = fit_sine(1500);
    println!("sine fit: MSE {untrained:.4} untrained, {trained:.2e} trained");
    assert!(
        untrained > 0.05,
        "the untrained net already fits: {untrained}"
    );
    assert!(trained < 1e-3, "training did not reach MSE 1e-3: {trained}");
}

#[test]
fn a_conv_net_learns_a_periodic_filter_and_stops_allocating() {
    // Target: a fixed 3×3 periodic filter followed by tanh; model: the same architecture.
    let c = ctx::<f32>();
    let (b, l) = (16, 8);
    let truth: Vec<f64> = randn(9, 7).iter().map(|v| 0.5 * v).collect();
    let x = c.from_f64(&[b, 1, l, l], &randn(b * l * l, 8)).unwrap();
    let yt = {
        let t = kernels::conv2d(
            &x,
            &c.from_f64(&[1, 1, 3, 3], &truth).unwrap(),
            ConvMode::Periodic,
        )
        .unwrap();
        kernels::unary(kernels::Unary::Tanh, &t).unwrap()
    };
    let mut store = ParamStore::new(&c);
    store.init_layer("c", &[1, 1, 3, 3], 9, 1, 9).unwrap();
    let mut opt = Adam::new(0.03);
    let mut losses = Vec::new();
    let mut fresh = Vec::new();
    for _ in 0..300 {
        let tape = Tape::new(&c);
        let xv = tape.constant(x.copy().unwrap());
        let y = tape
            .conv2d(
                &xv,
                &tape.param(&store, "c.w").unwrap(),
                Some(&tape.param(&store, "c.b").unwrap()),
                ConvMode::Periodic,
            )
            .unwrap();
        let y = tape.tanh(&y).unwrap();
        let d = tape.sub(&y, &tape.constant(yt.copy().unwrap())).unwrap();
        let loss = tape.mean_all(&tape.square(&d).unwrap()).unwrap();
        losses.push(loss.value().to_f64().unwrap()[0]);
        let g = tape.backward(&loss).unwrap();
        drop((xv, y, d, loss));
        opt.step(&mut store, &g).unwrap();
        drop(g);
        fresh.push(c.fresh_allocations());
    }
    println!(
        "filter fit: loss {:.3e} -> {:.3e}",
        losses[0],
        losses[losses.len() - 1]
    );
    assert!(
        losses[losses.len() - 1] < 1e-4 * losses[0],
        "loss {} -> {}",
        losses[0],
        losses[losses.len() - 1]
    );
    let w = store.get("c.w").unwrap().to_f64().unwrap();
    assert!(
        common::max_rel_diff(&w, &truth) < 3e-2,
        "learned filter {w:?} vs {truth:?}"
    );
    assert_eq!(
        fresh[1],
        fresh[fresh.len() - 1],
        "training steps after the first allocated new buffers"
    );
}

#[test]
fn no_grad_mode_records_nothing() {
    let c = ctx::<f32>();
    let mut store = ParamStore::new(&c);
    store.init_layer("c", &[2, 1, 3, 3], 9, 2, 1).unwrap();
    let tape = Tape::new(&c);
    tape.set_grad_enabled(false);
    let x = tape.constant(c.from_f64(&[4, 1, 6, 6], &randn(144, 1)).unwrap());
    let y = tape
        .conv2d(
            &x,
            &tape.param(&store, "c.w").unwrap(),
            Some(&tape.param(&store, "c.b").unwrap()),
            ConvMode::Periodic,
        )
        .unwrap();
    let _ = tape.tanh(&y).unwrap();
    assert!(tape.is_empty());
}

#[test]
fn adam_and_adamw_follow_their_formulas() {
    let c = ctx::<f64>();
    let mut store = ParamStore::new(&c);
    store.insert("p", c.from_vec(&[2], &[1.0, -2.0]).unwrap());
    let tape = Tape::new(&c);
    // L = 0.5·Σ p·q with q = (1, 3): g = (0.5, 1.5).
    let q = tape.constant(c.from_vec(&[2], &[1.0, 3.0]).unwrap());
    let l = tape
        .scale(
            &tape
                .sum_all(&tape.mul(&tape.param(&store, "p").unwrap(), &q).unwrap())
                .unwrap(),
            0.5,
        )
        .unwrap();
    let g = tape.backward(&l).unwrap();
    drop((q, l));
    let mut adam = Adam::new(0.1);
    adam.step(&mut store, &g).unwrap();
    // First step: m̂ = g, v̂ = g², so the update is lr·g/(|g| + ε) = lr·sign(g).
    let p = store.get("p").unwrap().to_f64().unwrap();
    assert!(
        (p[0] - 0.9).abs() < 1e-7 && (p[1] + 2.1).abs() < 1e-7,
        "{p:?}"
    );
    let mut adamw = Adam::adamw(0.1, 0.5);
    adamw.step(&mut store, &g).unwrap();
    let p2 = store.get("p").unwrap().to_f64().unwrap();
    // AdamW: p ← p − lr(sign(g) + wd·p).
    assert!(
        (p2[0] - (0.9 - 0.1 * (1.0 + 0.5 * 0.9))).abs() < 1e-7,
        "{p2:?}"
    );
    let cos = Schedule::Cosine {
        total: 100,
        min_lr: 0.01,
    };
    assert!((cos.rate(1.0, 0) - 1.0).abs() < 1e-15 && (cos.rate(1.0, 100) - 0.01).abs() < 1e-15);
    assert!(
        (Schedule::Step {
            every: 10,
            gamma: 0.5
        }
        .rate(1.0, 25)
            - 0.25)
            .abs()
            < 1e-15
    );
}

#[test]
fn gradient_clipping_bounds_the_step() {
    let c = ctx::<f64>();
    let mut store = ParamStore::new(&c);
    store.insert("p", c.from_vec(&[1], &[0.0]).unwrap());
    let tape = Tape::new(&c);
    let l = tape.scale(&tape.param(&store, "p").unwrap(), 1e6).unwrap();
    let l = tape.sum_all(&l).unwrap();
    let g = tape.backward(&l).unwrap();
    drop(l);
    let mut sgdish = Adam::new(0.1);
    sgdish.clip_norm = Some(1.0);
    let info = sgdish.step(&mut store, &g).unwrap();
    assert!((info.grad_norm.unwrap() - 1e6).abs() < 1e-6);
}

#[test]
fn model_files_round_trip_and_reject_damage() {
    let c = ctx::<f32>();
    let mut store = ParamStore::new(&c);
    store.init_layer("conv1", &[16, 1, 3, 3], 9, 16, 1).unwrap();
    store
        .init_layer("conv2", &[2, 16, 3, 3], 144, 2, 2)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("latticeml-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    safetensors::save(&store, &path).unwrap();
    let back = safetensors::load(&c, &path).unwrap();
    assert_eq!(back.names(), store.names());
    let x = c.from_f64(&[2, 1, 5, 5], &randn(50, 4)).unwrap();
    let run = |s: &ParamStore<f32>| -> Vec<f32> {
        let t = Tape::new(&c);
        t.set_grad_enabled(false);
        let h = t
            .conv2d(
                &t.constant(x.copy().unwrap()),
                &t.param(s, "conv1.w").unwrap(),
                Some(&t.param(s, "conv1.b").unwrap()),
                ConvMode::Periodic,
            )
            .unwrap();
        let y = t
            .conv2d(
                &t.leaky_relu(&h, 0.01).unwrap(),
                &t.param(s, "conv2.w").unwrap(),
                Some(&t.param(s, "conv2.b").unwrap()),
                ConvMode::Periodic,
            )
            .unwrap();
        y.value().to_vec().unwrap()
    };
    assert_eq!(run(&store), run(&back), "outputs differ after save/load");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = safetensors::load(&c, &path)
        .err()
        .expect("truncated file loaded")
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    std::fs::write(&path, &bytes[..4]).unwrap();
    assert!(safetensors::load(&c, &path).is_err());
    std::fs::write(&path, &bytes).unwrap();
    let err = safetensors::load(&ctx::<f64>(), &path)
        .err()
        .expect("f32 file loaded as f64")
        .to_string();
    assert!(err.contains("F32"), "{err}");
}

#[test]
fn checkerboard_masks_split_the_lattice() {
    use latticeml::nn::masks::{checkerboard, complement};
    let c = ctx::<f64>();
    let even = checkerboard(&c, &[4, 5], 0).unwrap().to_f64().unwrap();
    let odd = complement(&checkerboard(&c, &[4, 5], 0).unwrap())
        .unwrap()
        .to_f64()
        .unwrap();
    assert_eq!(checkerboard(&c, &[4, 5], 1).unwrap().to_f64().unwrap(), odd);
    assert_eq!(even[0], 1.0);
    assert_eq!(even[1], 0.0);
    assert_eq!(even[5], 0.0, "site (1, 0)");
    assert_eq!(even[6], 1.0, "site (1, 1)");
    assert_eq!(even.iter().sum::<f64>(), 10.0);
    // Every site's nearest neighbours have the other colour (even extents: also across the wrap).
    let m = checkerboard(&c, &[4, 6], 0).unwrap().to_f64().unwrap();
    for i in 0..4 {
        for j in 0..6 {
            assert_ne!(m[i * 6 + j], m[((i + 1) % 4) * 6 + j]);
            assert_ne!(m[i * 6 + j], m[i * 6 + (j + 1) % 6]);
        }
    }
}

#[test]
fn reads_files_written_by_python_safetensors() {
    // Written by `safetensors.numpy.save_file({'a.w': arange(6).reshape(2, 3), 'b': ones(4)})`.
    let bytes = include_bytes!("data/from_python.safetensors");
    let dir = std::env::temp_dir().join(format!("latticeml-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("from_python.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let store = safetensors::load(&ctx::<f32>(), &path).unwrap();
    assert_eq!(store.get("a.w").unwrap().shape(), &[2, 3]);
    assert_eq!(
        store.get("a.w").unwrap().to_vec().unwrap(),
        vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
    assert_eq!(store.get("b").unwrap().to_vec().unwrap(), vec![1.0; 4]);
    // And what we write has integer shapes and offsets (strict readers reject `16.0`).
    safetensors::save(&store, &path).unwrap();
    let written = std::fs::read(&path).unwrap();
    let header = String::from_utf8_lossy(&written[8..])
        .split("}}")
        .next()
        .unwrap()
        .replace(' ', "");
    assert!(
        header.contains("\"shape\":[2,3]") && header.contains("\"data_offsets\":[0,24]"),
        "{header}"
    );
}

/// 2^24 followed by 1000 ones: summed in f32 every 1 is lost (2^24 + 1 rounds back to 2^24), while
/// the f64 accumulation required of every reduction gives 2^24 + 1000 (representable in f32).
fn cancelling_f32_data() -> Vec<f64> {
    let mut v = vec![1.0; 1001];
    v[0] = 16_777_216.0;
    v
}

#[test]
fn f32_reductions_accumulate_in_f64() {
    let c = ctx::<f32>();
    let data = cancelling_f32_data();
    let want = 16_778_216.0;
    let x = c.from_f64(&[1001], &data).unwrap();
    let s = kernels::reduce_to(&x, &[1], 1.0).unwrap().to_f64().unwrap();
    assert_eq!(s, vec![want], "sum");

    // Weight gradient of a 1×1 convolution over 10^6 sites: Σ dy·x with x = 0.1f32, dy = 1. The CPU
    // sums leaves of 32 products per lane in f32 and the leaves in f64: its error does not grow
    // with the plane (an f32 running sum over 10^6 sites is off by ~1e-3 relative).
    let n = 1000 * 1000;
    let exact = n as f64 * (0.1f32 as f64);
    let x = c.from_f64(&[1, 1, 1000, 1000], &vec![0.1; n]).unwrap();
    let dy = c.from_f64(&[1, 1, 1000, 1000], &vec![1.0; n]).unwrap();
    let dw = kernels::conv2d_grad_weight(&dy, &x, &[1, 1, 1, 1], ConvMode::Periodic)
        .unwrap()
        .to_f64()
        .unwrap()[0];
    assert!(
        ((dw - exact) / exact).abs() < 1e-6,
        "conv weight gradient {dw} vs {exact}"
    );
}

/// An op defined outside the library, through the public [`Op`] trait only: y = x³ with its
/// derivative 3x²·dy, built from the library's kernels.
struct Cube;

impl Op<f64> for Cube {
    fn name(&self) -> &str {
        "cube"
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> latticeml::Result<Vec<Tensor<f64>>> {
        let sq = kernels::unary(Unary::Square, x[0])?;
        Ok(vec![kernels::binary(Binary::Mul, &sq, x[0], x[0].shape())?])
    }
    fn backward(&self, b: &Backward<'_, f64>) -> latticeml::Result<Vec<Option<Tensor<f64>>>> {
        let sq = kernels::unary(Unary::Square, b.input(0))?;
        let d = kernels::unary(Unary::Scale(3.0), &sq)?;
        Ok(vec![Some(kernels::binary(
            Binary::Mul,
            &d,
            b.grad(0)?,
            d.shape(),
        )?)])
    }
}

/// An op breaking the contract: its gradient has the wrong shape.
struct BadShape;

impl Op<f64> for BadShape {
    fn name(&self) -> &str {
        "bad_shape"
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> latticeml::Result<Vec<Tensor<f64>>> {
        Ok(vec![x[0].copy()?])
    }
    fn backward(&self, b: &Backward<'_, f64>) -> latticeml::Result<Vec<Option<Tensor<f64>>>> {
        Ok(vec![Some(b.grad(0)?.reshape(&[b.input(0).len(), 1])?)])
    }
}

#[test]
fn ops_defined_outside_the_library_record_and_differentiate() {
    let c = ctx::<f64>();
    let mut store = ParamStore::new(&c);
    store.insert("p", c.from_vec(&[3], &[0.5, -1.0, 2.0]).unwrap());
    let tape = Tape::new(&c);
    let y = tape
        .apply(Cube, &[&tape.param(&store, "p").unwrap()])
        .unwrap();
    assert_eq!(y.value().to_f64().unwrap(), vec![0.125, -1.0, 8.0]);
    let g = tape.backward(&tape.sum_all(&y).unwrap()).unwrap();
    assert_eq!(g.get("p").unwrap().to_f64().unwrap(), vec![0.75, 3.0, 12.0]);

    let tape = Tape::new(&c);
    let y = tape
        .apply(BadShape, &[&tape.param(&store, "p").unwrap()])
        .unwrap();
    let err = tape
        .backward(&tape.sum_all(&y).unwrap())
        .err()
        .expect("a gradient of the wrong shape must be refused");
    assert!(err.to_string().contains("bad_shape"), "{err}");
}

#[test]
fn stale_and_foreign_values_are_errors_not_wrong_gradients() {
    let c = ctx::<f64>();
    let mut store = ParamStore::new(&c);
    store.insert("p", c.from_vec(&[2], &[1.0, 2.0]).unwrap());
    let tape = Tape::new(&c);
    let p = tape.param(&store, "p").unwrap();
    let y = tape.square(&p).unwrap();
    tape.backward(&tape.sum_all(&y).unwrap()).unwrap();
    // `y` points at a node of the cleared tape; a new node may sit at its index now.
    let _fresh = tape.exp(&tape.param(&store, "p").unwrap()).unwrap();
    let stale = tape.exp(&y).err().expect("a stale value must be refused");
    assert!(stale.to_string().contains("cleared"), "{stale}");
    assert!(tape.backward(&tape.sum_all(&_fresh).unwrap()).is_ok());

    let other = Tape::new(&c);
    let q = other.param(&store, "p").unwrap();
    let foreign = tape
        .add(&tape.param(&store, "p").unwrap(), &q)
        .err()
        .expect("a value of another tape must be refused");
    assert!(foreign.to_string().contains("another tape"), "{foreign}");
    // Constants carry no node: they may cross tapes.
    let k = other.constant(c.from_vec(&[2], &[3.0, 4.0]).unwrap());
    assert!(tape.add(&tape.param(&store, "p").unwrap(), &k).is_ok());
}

/// The fused block tail against the chain of separate ops it replaces (shift, group norm, γ, β,
/// SiLU) in f32 on the CPU: the same formulas in the same order, so the values and ∂L/∂x agree
/// bit for bit; ∂L/∂s, ∂L/∂γ, ∂L/∂β are summed in another order and agree to rounding.
#[test]
fn fused_group_norm_silu_is_the_chain_of_ops() {
    let c = ctx::<f32>();
    let ([b, ch, h, w], groups) = ([3usize, 8, 6, 10], 4usize);
    let mut store = ParamStore::new(&c);
    let shapes: [(&str, Vec<usize>); 5] = [
        ("x", vec![b, ch, h, w]),
        ("s", vec![b, ch]),
        ("gamma", vec![ch]),
        ("beta", vec![ch]),
        ("r", vec![b, ch, h, w]),
    ];
    for (k, (name, shape)) in shapes.iter().enumerate() {
        let v = randn(shape.iter().product(), 60 + k as u32);
        store.insert(name, c.from_f64(shape, &v).unwrap());
    }
    let run = |fused: bool| {
        let tape = Tape::new(&c);
        let p = |n: &str| tape.param(&store, n).unwrap();
        let (x, s, g, be) = (p("x"), p("s"), p("gamma"), p("beta"));
        let y = if fused {
            tape.group_norm_silu(&x, [&s, &g, &be], groups).unwrap()
        } else {
            let shifted = tape
                .add(&x, &tape.reshape(&s, &[b, ch, 1, 1]).unwrap())
                .unwrap();
            let n = tape.group_norm(&shifted, groups).unwrap();
            let n = tape
                .mul(&n, &tape.reshape(&g, &[ch, 1, 1]).unwrap())
                .unwrap();
            let a = tape
                .add(&n, &tape.reshape(&be, &[ch, 1, 1]).unwrap())
                .unwrap();
            tape.silu(&a).unwrap()
        };
        let values = y.value().to_vec().unwrap();
        let loss = tape.sum_all(&tape.mul(&y, &p("r")).unwrap()).unwrap();
        let grads = tape.backward(&loss).unwrap();
        let g = |n: &str| grads.get(n).unwrap().to_f64().unwrap();
        (values, [g("x"), g("s"), g("gamma"), g("beta")])
    };
    let ((y_f, g_f), (y_c, g_c)) = (run(true), run(false));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&y_f), bits(&y_c), "forward values");
    assert_eq!(g_f[0], g_c[0], "dL/dx");
    for (k, name) in ["s", "gamma", "beta"].iter().enumerate() {
        let scale = g_c[k + 1].iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, e) in g_f[k + 1].iter().zip(&g_c[k + 1]) {
            assert!((a - e).abs() <= 1e-5 * scale, "dL/d{name}: {a} against {e}");
        }
        assert!(
            scale > 1e-3,
            "dL/d{name} vanishes: the comparison would be vacuous"
        );
    }
}

/// The batched linear maps against the chain they replace (x broadcast times W, summed over the
/// inputs, plus c) in f32 and f64 on the CPU, with more maps than threads: the same products summed
/// in the same order, so the values and every gradient agree bit for bit.
#[test]
fn batched_linear_is_the_chain_of_ops() {
    fn check<T: Real>() {
        let c = ctx::<T>();
        let (b, h, n) = (5usize, 13usize, 37usize);
        let mut store = ParamStore::new(&c);
        let shapes: [(&str, Vec<usize>); 4] = [
            ("x", vec![b, h, 1]),
            ("w", vec![b, h, n]),
            ("c", vec![b, 1, n]),
            ("r", vec![b, n]),
        ];
        for (k, (name, shape)) in shapes.iter().enumerate() {
            let v = randn(shape.iter().product(), 70 + k as u32);
            store.insert(name, c.from_f64(shape, &v).unwrap());
        }
        let run = |fused: bool| {
            let tape = Tape::new(&c);
            let p = |k: &str| tape.param(&store, k).unwrap();
            let y = if fused {
                tape.batched_linear(&p("x"), &p("w"), &p("c")).unwrap()
            } else {
                let prod = tape.mul(&p("x"), &p("w")).unwrap();
                let sum = tape.add(&tape.sum(&prod, &[1]).unwrap(), &p("c")).unwrap();
                tape.reshape(&sum, &[b, n]).unwrap()
            };
            assert_eq!(y.value().shape(), &[b, n]);
            let values = y.value().to_f64().unwrap();
            let loss = tape.sum_all(&tape.mul(&y, &p("r")).unwrap()).unwrap();
            let grads = tape.backward(&loss).unwrap();
            let g = |k: &str| grads.get(k).unwrap().to_f64().unwrap();
            (values, [g("x"), g("w"), g("c")])
        };
        let (fused, chain) = (run(true), run(false));
        assert_eq!(fused.0, chain.0, "{} values", T::NAME);
        for (k, name) in ["x", "w", "c"].iter().enumerate() {
            assert_eq!(fused.1[k], chain.1[k], "{} dL/d{name}", T::NAME);
            assert!(
                fused.1[k].iter().any(|v| v.abs() > 1e-3),
                "dL/d{name} vanishes"
            );
        }
    }
    check::<f32>();
    check::<f64>();
}

/// Adam's coupled weight decay on the weights only (`DecayOn::Weights`, decay 2λ) is the L2
/// penalty λ Σ w² over the `*.w` parameters on the tape, bit for bit, and leaves biases alone.
#[test]
fn weight_decay_on_weights_is_the_l2_penalty_of_the_weights() {
    let c = ctx::<f64>();
    let lam = 0.03;
    let mut start = ParamStore::new(&c);
    start.insert("l.w", c.from_f64(&[4, 3], &randn(12, 80)).unwrap());
    start.insert("l.b", c.from_f64(&[3], &randn(3, 81)).unwrap());
    let target = randn(12, 82);
    // None: the penalty on the tape; Some(on): Adam's decay 2λ on those parameters instead.
    let run = |decay: Option<DecayOn>| {
        let mut s = ParamStore::new(&c);
        for k in ["l.w", "l.b"] {
            s.insert(k, start.get(k).unwrap().copy().unwrap());
        }
        let mut adam = Adam::<f64>::new(0.05);
        if let Some(on) = decay {
            (adam.decay_on, adam.weight_decay) = (on, 2.0 * lam);
        }
        for _ in 0..3 {
            let t = Tape::new(&c);
            let (w, b) = (t.param(&s, "l.w").unwrap(), t.param(&s, "l.b").unwrap());
            let r = t.constant(c.from_f64(&[4, 3], &target).unwrap());
            let y = t.add(&t.tanh(&w).unwrap(), &b).unwrap();
            let mut loss = t
                .sum_all(&t.square(&t.sub(&y, &r).unwrap()).unwrap())
                .unwrap();
            if decay.is_none() {
                let pen = t.sum_all(&t.square(&w).unwrap()).unwrap();
                loss = t.add(&loss, &t.scale(&pen, lam).unwrap()).unwrap();
            }
            let g = t.backward(&loss).unwrap();
            drop((w, b, y, loss));
            adam.step(&mut s, &g).unwrap();
        }
        ["l.w", "l.b"].map(|k| s.get(k).unwrap().to_f64().unwrap())
    };
    let tape = run(None);
    assert_eq!(run(Some(DecayOn::Weights)), tape);
    let all = run(Some(DecayOn::All));
    assert_ne!(all[1], tape[1], "decaying the biases too must differ");
}

/// The pool serves a freed size again without allocating; `release_pooled` empties it, so the
/// next tensor of that size is a fresh allocation.
#[test]
fn released_pools_allocate_afresh() {
    let c = ctx::<f64>();
    drop(c.zeros(&[1000]).unwrap());
    let after_first = c.fresh_allocations();
    drop(c.zeros(&[1000]).unwrap());
    assert_eq!(
        c.fresh_allocations(),
        after_first,
        "a pooled buffer was not reused"
    );
    c.release_pooled();
    drop(c.zeros(&[1000]).unwrap());
    assert_eq!(c.fresh_allocations(), after_first + 1);
}
