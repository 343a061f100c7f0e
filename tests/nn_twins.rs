//! Every NN kernel on CUDA against its CPU twin, forward and backward, in f32 and f64: one graph
//! that touches every operation is run on both devices and values and gradients are compared.
//! Skips with a printed line without a GPU; fails with LATTICEML_REQUIRE_GPU=1.

mod common;

use std::collections::BTreeMap;

use latticeml::nn::tape::Tape;
use latticeml::nn::{ConvMode, Ctx, ParamStore, Real};
use latticeml::{philox, Device};

fn randn(n: usize, stream: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 41, stream, 0, 5);
    v
}

/// Loss value and all gradients of a graph using every tape operation.
fn run_all_ops<T: Real>(device: Device) -> (f64, BTreeMap<String, Vec<f64>>) {
    let c = Ctx::<T>::new(device);
    let mut s = ParamStore::new(&c);
    let shapes: [(&str, &[usize]); 11] = [
        ("x", &[3, 2, 5, 6]),
        ("w1", &[4, 2, 3, 3]),
        ("b1", &[4]),
        ("w2", &[2, 4, 5, 5]),
        ("w3", &[2, 3, 3]),
        ("lw", &[4, 5]),
        ("lb", &[4]),
        ("m", &[30, 5]),
        ("pos", &[3, 1, 1, 1]),
        ("bw", &[6, 5, 4]),
        ("bc", &[6, 4]),
    ];
    for (k, (name, shape)) in shapes.iter().enumerate() {
        let n = shape.iter().product();
        let mut v = randn(n, k as u32);
        if *name == "pos" {
            v.iter_mut().for_each(|x| *x = x.abs() + 0.5);
        }
        s.insert(name, c.from_f64(shape, &v).unwrap());
    }
    let t = Tape::new(&c);
    let p = |n: &str| t.param(&s, n).unwrap();
    let h = t
        .conv2d(&p("x"), &p("w1"), Some(&p("b1")), ConvMode::Periodic)
        .unwrap();
    let h = t.leaky_relu(&h, 0.1).unwrap();
    let a = t
        .conv2d(&h, &p("w2"), None, ConvMode::CausalExclusive)
        .unwrap();
    let bh = t
        .conv2d(&h, &p("w2"), None, ConvMode::CausalInclusive)
        .unwrap();
    let parts = t
        .split(
            &t.concat(&[a, t.silu(&bh).unwrap()], 1).unwrap(),
            1,
            &[3, 1],
        )
        .unwrap();
    let e = t.tanh(&parts[0]).unwrap();
    let e = t.div(&t.sigmoid(&e).unwrap(), &p("pos")).unwrap();
    let e = t
        .add(
            &t.softplus(&e).unwrap(),
            &t.exp(&t.scale(&parts[1], 0.3).unwrap()).unwrap(),
        )
        .unwrap();
    let e = t.log(&t.shift(&e, 1.0).unwrap()).unwrap();
    // [3,3,5,6] -> [3,3,30] -> conv1d (w3 [2,3,3]) -> [3,2,30] -> [6,30]
    let r = t
        .conv1d(
            &t.reshape(&e, &[3, 3, 30]).unwrap(),
            &p("w3"),
            None,
            ConvMode::Periodic,
        )
        .unwrap();
    let y = t
        .matmul(&t.reshape(&r, &[6, 30]).unwrap(), &p("m"))
        .unwrap(); // [6,5]
    let z = t.linear(&y, &p("lw"), &p("lb")).unwrap(); // [6,4]
    let zm = t.mean(&z, &[1]).unwrap(); // [6,1]
    let d = t.sub(&z, &t.mul(&z, &zm).unwrap()).unwrap();
    let q = t.batched_linear(&y, &p("bw"), &p("bc")).unwrap(); // [6,4]
    let loss = t
        .add(
            &t.mean_all(&t.square(&d).unwrap()).unwrap(),
            &t.sum(&t.sum_all(&y).unwrap(), &[0]).unwrap(),
        )
        .unwrap();
    let loss = t
        .add(&loss, &t.mean_all(&t.tanh(&q).unwrap()).unwrap())
        .unwrap();
    let value = loss.value().to_f64().unwrap()[0];
    let g = t.backward(&loss).unwrap();
    (
        value,
        g.iter()
            .map(|(k, v)| (k.clone(), v.to_f64().unwrap()))
            .collect(),
    )
}

fn compare<T: Real>(gpu: latticeml::device::CudaDevice, tol: f64) {
    let (l_cpu, g_cpu) = run_all_ops::<T>(Device::Cpu(common::cpu()));
    let (l_gpu, g_gpu) = run_all_ops::<T>(Device::Cuda(gpu));
    assert!(
        (l_cpu - l_gpu).abs() <= tol * l_cpu.abs().max(1.0),
        "{}: loss {l_cpu} vs {l_gpu}",
        T::NAME
    );
    assert_eq!(
        g_cpu.keys().collect::<Vec<_>>(),
        g_gpu.keys().collect::<Vec<_>>()
    );
    for (k, a) in &g_cpu {
        let e = common::max_rel_diff(a, &g_gpu[k]);
        assert!(e <= tol, "{}: gradient of {k} differs by {e:e}", T::NAME);
    }
}

#[test]
fn cuda_nn_kernels_match_cpu_twins() {
    let Some(gpu) = common::gpu("cuda_nn_kernels_match_cpu_twins") else {
        return;
    };
    compare::<f64>(gpu.clone(), 1e-11);
    compare::<f32>(gpu, 2e-4);
}

#[test]
fn the_all_ops_graph_runs_on_the_cpu() {
    let (l, g) = run_all_ops::<f64>(Device::Cpu(common::cpu()));
    assert!(l.is_finite());
    assert_eq!(
        g.len(),
        11,
        "every parameter gets a gradient: {:?}",
        g.keys().collect::<Vec<_>>()
    );
}

/// Parameters after three AdamW steps on L = Σ p²·q, clipped.
fn adam_steps<T: Real>(device: Device) -> Vec<f64> {
    let c = Ctx::<T>::new(device);
    let mut s = ParamStore::new(&c);
    s.insert("p", c.from_f64(&[40], &randn(40, 60)).unwrap());
    let q = c.from_f64(&[40], &randn(40, 61)).unwrap();
    let mut opt = latticeml::nn::Adam::adamw(0.05, 0.1);
    opt.clip_norm = Some(1.0);
    for _ in 0..3 {
        let t = Tape::new(&c);
        let l = t
            .sum_all(
                &t.mul(
                    &t.square(&t.param(&s, "p").unwrap()).unwrap(),
                    &t.constant(q.copy().unwrap()),
                )
                .unwrap(),
            )
            .unwrap();
        let g = t.backward(&l).unwrap();
        drop(l);
        opt.step(&mut s, &g).unwrap();
    }
    s.get("p").unwrap().to_f64().unwrap()
}

#[test]
fn cuda_adam_matches_cpu_twin() {
    let Some(gpu) = common::gpu("cuda_adam_matches_cpu_twin") else {
        return;
    };
    let (a, b) = (
        adam_steps::<f64>(Device::Cpu(common::cpu())),
        adam_steps::<f64>(Device::Cuda(gpu)),
    );
    assert!(common::max_rel_diff(&a, &b) < 1e-12);
}
