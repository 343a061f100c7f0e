//! The fused convolution stack (`Tape::conv_stack`) against the same layers built from single
//! ops (conv2d, bias add, activation): outputs, input gradients and weight gradients are the same
//! bits on every path and thread count, bias gradients agree to rounding (summed in another
//! order in the CPU's lanes). On a GPU, the CUDA stack against the CPU's lanes.

mod common;

use std::collections::BTreeMap;

use latticeml::device::CpuDevice;
use latticeml::nn::ops::conv_stack::ConvStackOp;
use latticeml::nn::tape::Tape;
use latticeml::nn::{ConvMode, Ctx, ParamStore, Real, Unary};
use latticeml::{philox, Device};

fn randn(n: usize, stream: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 77, stream, 0, 3);
    v
}

/// A stack's geometry: batch, plane, channels (input first), kernel, activations, boundary.
#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    plane: [usize; 2],
    channels: Vec<usize>,
    kernel: [usize; 2],
    acts: Vec<Unary>,
    mode: ConvMode,
}

/// y, and the gradients of L = Σ y·r with respect to x and every parameter.
struct Run {
    y: Vec<f64>,
    grads: BTreeMap<String, Vec<f64>>,
}

fn run<T: Real>(device: Device, case: &Case, fused: bool) -> Run {
    let c = Ctx::<T>::new(device);
    let mut s = ParamStore::new(&c);
    let [h, w] = case.plane;
    let n = case.channels.len() - 1;
    for i in 0..n {
        let (ci, co) = (case.channels[i], case.channels[i + 1]);
        let shape = [co, ci, case.kernel[0], case.kernel[1]];
        let len = shape.iter().product();
        s.insert(
            &format!("w{i}"),
            c.from_f64(&shape, &randn(len, 10 + i as u32)).unwrap(),
        );
        s.insert(
            &format!("b{i}"),
            c.from_f64(&[co], &randn(co, 20 + i as u32)).unwrap(),
        );
    }
    let x_shape = [case.batch, case.channels[0], h, w];
    let y_shape = [case.batch, case.channels[n], h, w];
    let x_len = x_shape.iter().product();
    let t = Tape::new(&c);
    let x = t.watch("x", c.from_f64(&x_shape, &randn(x_len, 1)).unwrap());
    let p = |name: String| t.param(&s, &name).unwrap();
    let y = if fused {
        let layers: Vec<_> = (0..n)
            .map(|i| (p(format!("w{i}")), p(format!("b{i}"))))
            .collect();
        t.conv_stack(&x, &layers, &case.acts, case.mode).unwrap()
    } else {
        let mut h = x.clone();
        for i in 0..n {
            let z = t
                .conv2d(
                    &h,
                    &p(format!("w{i}")),
                    Some(&p(format!("b{i}"))),
                    case.mode,
                )
                .unwrap();
            h = t.unary(case.acts[i], &z).unwrap();
        }
        h
    };
    let y_len: usize = y_shape.iter().product();
    let r = t.constant(c.from_f64(&y_shape, &randn(y_len, 2)).unwrap());
    let loss = t.sum_all(&t.mul(&y, &r).unwrap()).unwrap();
    let values = y.value().to_f64().unwrap();
    let grads = t.backward(&loss).unwrap();
    Run {
        y: values,
        grads: grads
            .iter()
            .map(|(k, v)| (k.clone(), v.to_f64().unwrap()))
            .collect(),
    }
}

fn cases() -> Vec<Case> {
    let leaky = Unary::LeakyRelu(0.01);
    let case = |batch, plane, channels: &[usize], kernel, acts: &[Unary], mode| Case {
        batch,
        plane,
        channels: channels.to_vec(),
        kernel,
        acts: acts.to_vec(),
        mode,
    };
    use ConvMode::*;
    vec![
        // The flow's network at the Albergo point.
        case(
            64,
            [8, 8],
            &[1, 8, 8, 2],
            [3, 3],
            &[leaky, leaky, Unary::Tanh],
            Periodic,
        ),
        // Partial lane blocks, odd planes, other activations and boundaries.
        case(
            37,
            [6, 10],
            &[2, 5, 3],
            [3, 3],
            &[Unary::Silu, Unary::Tanh],
            CausalInclusive,
        ),
        case(
            45,
            [5, 4],
            &[3, 4, 1],
            [3, 3],
            &[Unary::Tanh, Unary::Sigmoid],
            Zero,
        ),
        case(33, [7, 6], &[2, 3], [5, 5], &[leaky], CausalExclusive),
        // A 1D path stored as [B, C, 1, N].
        case(
            20,
            [1, 12],
            &[1, 4, 2],
            [1, 5],
            &[leaky, Unary::Tanh],
            Periodic,
        ),
        // Layer by layer: too few samples, and a plane too wide for the lanes.
        case(
            5,
            [8, 8],
            &[1, 8, 2],
            [3, 3],
            &[leaky, Unary::Tanh],
            Periodic,
        ),
        case(
            32,
            [4, 40],
            &[1, 6, 2],
            [3, 3],
            &[leaky, Unary::Tanh],
            Periodic,
        ),
    ]
}

/// Whether a case runs in the CPU's lanes (where the bias gradients are summed in another order).
fn in_lanes(case: &Case) -> bool {
    case.batch >= 16 && case.plane[1] < 32
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn compare_with_single_ops<T: Real>(threads: usize) {
    for case in cases() {
        let cpu = || Device::Cpu(CpuDevice::with_threads(threads));
        let fused = run::<T>(cpu(), &case, true);
        let single = run::<T>(cpu(), &case, false);
        let what = format!("{} on {threads} threads, {case:?}", T::NAME);
        assert!(fused.y.iter().any(|v| *v != 0.0), "{what}: y is zero");
        assert!(same_bits(&fused.y, &single.y), "{what}: y");
        assert_eq!(fused.grads.len(), 1 + 2 * (case.channels.len() - 1));
        for (name, g) in &single.grads {
            let f = &fused.grads[name];
            if name.starts_with('b') && in_lanes(&case) {
                let e = common::max_rel_diff(f, g);
                let tol = if T::NAME == "f32" { 1e-6 } else { 1e-14 };
                assert!(e <= tol, "{what}: gradient of {name} differs by {e:e}");
            } else {
                assert!(same_bits(f, g), "{what}: gradient of {name}");
            }
        }
    }
}

#[test]
fn fused_stack_computes_what_the_single_ops_compute() {
    for threads in [1, 2, 3] {
        compare_with_single_ops::<f32>(threads);
        compare_with_single_ops::<f64>(threads);
    }
}

/// The blocks of samples follow the thread count; the results do not.
#[test]
fn fused_stack_does_not_depend_on_the_thread_count() {
    let case = &cases()[1];
    let one = run::<f32>(Device::Cpu(CpuDevice::with_threads(1)), case, true);
    for threads in [2, 4, 7] {
        let many = run::<f32>(Device::Cpu(CpuDevice::with_threads(threads)), case, true);
        assert!(same_bits(&one.y, &many.y), "{threads} threads: y");
        for (name, g) in &one.grads {
            assert!(same_bits(g, &many.grads[name]), "{threads} threads: {name}");
        }
    }
}

/// Without a recording tape nothing is kept; asking such an op for gradients is an error, and
/// bad inputs are refused with a message, not a panic.
#[test]
fn fused_stack_refuses_what_it_cannot_do() {
    let c = Ctx::<f32>::new(Device::Cpu(common::cpu()));
    let mut s = ParamStore::new(&c);
    s.insert("w", c.from_f64(&[4, 1, 3, 3], &randn(36, 3)).unwrap());
    s.insert("b", c.from_f64(&[4], &randn(4, 4)).unwrap());
    s.insert("b5", c.from_f64(&[5], &randn(5, 4)).unwrap());
    let t = Tape::new(&c);
    let x = t.watch("x", c.from_f64(&[32, 1, 8, 8], &randn(2048, 5)).unwrap());
    let (w, b) = (t.param(&s, "w").unwrap(), t.param(&s, "b").unwrap());
    let op = ConvStackOp {
        mode: ConvMode::Periodic,
        acts: vec![Unary::Tanh],
        keep: false,
    };
    let y = t.apply_multi(op, &[&x, &w, &b]).unwrap();
    assert_eq!(y.len(), 1);
    let loss = t.sum_all(&y[0]).unwrap();
    let err = t
        .backward(&loss)
        .err()
        .expect("no kept activations")
        .to_string();
    assert!(err.contains("without keeping"), "{err}");

    let t = Tape::new(&c);
    let x = t.watch("x", c.from_f64(&[32, 1, 8, 8], &randn(2048, 5)).unwrap());
    let (w, b5) = (t.param(&s, "w").unwrap(), t.param(&s, "b5").unwrap());
    let bad_bias = t.conv_stack(&x, &[(w.clone(), b5)], &[Unary::Tanh], ConvMode::Periodic);
    assert!(bad_bias.err().unwrap().to_string().contains("bias"));
    let op = ConvStackOp {
        mode: ConvMode::Periodic,
        acts: vec![Unary::Tanh, Unary::Tanh],
        keep: true,
    };
    let too_few = t.apply_multi(op, &[&x, &w]).err().unwrap().to_string();
    assert!(too_few.contains("2 inputs for 2 layers"), "{too_few}");
    let wide = t.param(&s, "w").unwrap();
    let mismatched = t.conv_stack(
        &x,
        &[
            (w, t.param(&s, "b").unwrap()),
            (wide, t.param(&s, "b").unwrap()),
        ],
        &[Unary::Tanh, Unary::Tanh],
        ConvMode::Periodic,
    );
    assert!(mismatched.is_err(), "4 channels into a layer taking 1");
}

/// The CUDA stack (layer by layer) against the CPU's lanes, forward and backward.
#[test]
fn cuda_conv_stack_matches_the_cpu_lanes() {
    let Some(gpu) = common::gpu("cuda_conv_stack_matches_the_cpu_lanes") else {
        return;
    };
    for case in &cases()[..3] {
        for (tol, f32_run) in [(1e-11, false), (2e-4, true)] {
            let (cpu, cuda) = if f32_run {
                (
                    run::<f32>(Device::Cpu(common::cpu()), case, true),
                    run::<f32>(Device::Cuda(gpu.clone()), case, true),
                )
            } else {
                (
                    run::<f64>(Device::Cpu(common::cpu()), case, true),
                    run::<f64>(Device::Cuda(gpu.clone()), case, true),
                )
            };
            let e = common::max_rel_diff(&cpu.y, &cuda.y);
            assert!(e <= tol, "{case:?}: y differs by {e:e}");
            for (name, g) in &cpu.grads {
                let e = common::max_rel_diff(g, &cuda.grads[name]);
                assert!(e <= tol, "{case:?}: gradient of {name} differs by {e:e}");
            }
        }
    }
}
