//! Every tape operation's backward pass against central finite differences in f64
//! (relative error ≤ 1e-6), including broadcasting edge cases and the periodic wrap of convolutions.

mod common;

use latticeml::nn::tape::{Tape, Var};
use latticeml::nn::{ConvMode, Ctx, ParamStore};
use latticeml::{philox, Device, Result};

/// Builds the output of the operation under test from the parameters.
type Build<'a> = dyn Fn(&Tape<f64>, &ParamStore<f64>) -> Result<Var<f64>> + 'a;

fn ctx() -> Ctx<f64> {
    Ctx::new(Device::Cpu(common::cpu()))
}

fn randn(n: usize, stream: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 17, stream, 0, 5);
    v
}

/// Compares ∂L/∂θ from the tape with central differences for every parameter entry, where
/// L = Σ out ⊙ R for a fixed random R (so every output element matters).
fn check(name: &str, params: &[(&str, Vec<usize>, Vec<f64>)], f: &Build) {
    let c = ctx();
    let mut store = ParamStore::new(&c);
    for (n, shape, v) in params {
        store.insert(n, c.from_vec(shape, v).unwrap());
    }
    let loss = |store: &ParamStore<f64>, tape: &Tape<f64>| -> Result<Var<f64>> {
        let out = f(tape, store)?;
        let r = tape.constant(c.from_vec(out.shape(), &randn(out.value().len(), 99))?);
        let prod = tape.mul(&out, &r)?;
        tape.sum_all(&prod)
    };
    let tape = Tape::new(&c);
    let l = loss(&store, &tape).unwrap();
    let grads = tape.backward(&l).unwrap();
    drop(l);
    let plain = Tape::new(&c);
    plain.set_grad_enabled(false);
    for (pname, shape, v0) in params {
        let analytic = grads
            .get(pname)
            .unwrap_or_else(|| panic!("{name}: no gradient for {pname}"))
            .to_f64()
            .unwrap();
        let h = 1e-5;
        let mut fd = vec![0.0; v0.len()];
        for i in 0..v0.len() {
            let mut eval = |delta: f64| {
                let mut v = v0.clone();
                v[i] += delta;
                store.insert(pname, c.from_vec(shape, &v).unwrap());
                loss(&store, &plain).unwrap().value().to_f64().unwrap()[0]
            };
            fd[i] = (eval(h) - eval(-h)) / (2.0 * h);
        }
        store.insert(pname, c.from_vec(shape, v0).unwrap());
        let diff: f64 = analytic
            .iter()
            .zip(&fd)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = fd.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        assert!(
            diff / norm < 1e-6,
            "{name}: d/d{pname} relative error {:e}",
            diff / norm
        );
        assert!(
            norm > 1e-8,
            "{name}: d/d{pname} vanishes; the check would be vacuous"
        );
    }
    assert!(plain.is_empty(), "no-grad mode recorded nodes");
}

fn p(name: &'static str, shape: &[usize], stream: u32) -> (&'static str, Vec<usize>, Vec<f64>) {
    let n = shape.iter().product();
    (name, shape.to_vec(), randn(n, stream))
}

/// Away from the kinks and the domain edge: |x| ≥ 0.2, and positive for log.
fn p_pos(name: &'static str, shape: &[usize], stream: u32) -> (&'static str, Vec<usize>, Vec<f64>) {
    let (n, s, v) = p(name, shape, stream);
    (n, s, v.into_iter().map(|x| x.abs() + 0.2).collect())
}

#[test]
fn elementwise_functions() {
    let x = [p("x", &[3, 4], 1)];
    let xs = [(
        x[0].0,
        x[0].1.clone(),
        x[0].2
            .iter()
            .map(|v| if v.abs() < 0.2 { v + 0.4 } else { *v })
            .collect(),
    )];
    check("exp", &x, &|t, s| t.exp(&t.param(s, "x")?));
    check("log", &[p_pos("x", &[3, 4], 1)], &|t, s| {
        t.log(&t.param(s, "x")?)
    });
    check("tanh", &x, &|t, s| t.tanh(&t.param(s, "x")?));
    check("sigmoid", &x, &|t, s| t.sigmoid(&t.param(s, "x")?));
    check("softplus", &x, &|t, s| t.softplus(&t.param(s, "x")?));
    check("leaky_relu", &xs, &|t, s| {
        t.leaky_relu(&t.param(s, "x")?, 0.1)
    });
    check("silu", &x, &|t, s| t.silu(&t.param(s, "x")?));
    check("scale", &x, &|t, s| t.scale(&t.param(s, "x")?, -1.7));
    check("shift", &x, &|t, s| t.shift(&t.param(s, "x")?, 0.3));
    check("square", &x, &|t, s| t.square(&t.param(s, "x")?));
}

#[test]
fn binary_operations_with_broadcasting() {
    let shapes: [(&[usize], &[usize]); 6] = [
        (&[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4, 5], &[3, 1, 1]),
        (&[2, 3, 4], &[1]),
        (&[2, 3, 4], &[4]),
        (&[2, 1, 4, 1], &[3, 1, 5]),
        (&[1], &[2, 3]),
    ];
    for (sa, sb) in shapes {
        let ps = [p("a", sa, 2), p_pos("b", sb, 3)];
        check("add", &ps, &|t, s| {
            t.add(&t.param(s, "a")?, &t.param(s, "b")?)
        });
        check("sub", &ps, &|t, s| {
            t.sub(&t.param(s, "a")?, &t.param(s, "b")?)
        });
        check("mul", &ps, &|t, s| {
            t.mul(&t.param(s, "a")?, &t.param(s, "b")?)
        });
        check("div", &ps, &|t, s| {
            t.div(&t.param(s, "a")?, &t.param(s, "b")?)
        });
    }
}

#[test]
fn reductions_matmul_linear() {
    let x = [p("x", &[2, 3, 4], 4)];
    check("sum axis 1", &x, &|t, s| t.sum(&t.param(s, "x")?, &[1]));
    check("mean axes 0,2", &x, &|t, s| {
        t.mean(&t.param(s, "x")?, &[0, 2])
    });
    check("mean all", &x, &|t, s| t.mean_all(&t.param(s, "x")?));
    let ab = [p("a", &[3, 5], 5), p("b", &[5, 4], 6)];
    check("matmul", &ab, &|t, s| {
        t.matmul(&t.param(s, "a")?, &t.param(s, "b")?)
    });
    let at = [p("a", &[5, 3], 5), p("b", &[4, 5], 6)];
    check("matmul aT bT", &at, &|t, s| {
        t.matmul_t(&t.param(s, "a")?, &t.param(s, "b")?, true, true)
    });
    let lin = [p("x", &[6, 5], 7), p("w", &[3, 5], 8), p("b", &[3], 9)];
    check("linear", &lin, &|t, s| {
        t.linear(&t.param(s, "x")?, &t.param(s, "w")?, &t.param(s, "b")?)
    });
}

#[test]
fn periodic_and_causal_convolutions() {
    // Odd and even extents, kernel sizes 1..5 (even kernels too): the wrap is exercised by every tap;
    // a width of 33 takes the CPU im2col past its gather threshold.
    for (h, w, k) in [(5, 4, 3), (4, 6, 1), (6, 5, 5), (3, 4, 2), (3, 33, 3)] {
        let ps = [
            p("x", &[2, 2, h, w], 10),
            p("w", &[3, 2, k, k], 11),
            p("b", &[3], 12),
        ];
        for mode in [
            ConvMode::Periodic,
            ConvMode::CausalExclusive,
            ConvMode::CausalInclusive,
            ConvMode::Zero,
        ] {
            if k == 1 && mode == ConvMode::CausalExclusive {
                continue; // a 1×1 kernel that may not see its own site sees nothing
            }
            check(&format!("conv2d {h}x{w} k{k} {mode:?}"), &ps, &|t, s| {
                t.conv2d(
                    &t.param(s, "x")?,
                    &t.param(s, "w")?,
                    Some(&t.param(s, "b")?),
                    mode,
                )
            });
        }
    }
    let ps = [
        p("x", &[2, 3, 7], 13),
        p("w", &[2, 3, 3], 14),
        p("b", &[2], 15),
    ];
    check("conv1d", &ps, &|t, s| {
        t.conv1d(
            &t.param(s, "x")?,
            &t.param(s, "w")?,
            Some(&t.param(s, "b")?),
            ConvMode::Periodic,
        )
    });
}

#[test]
fn concat_split_reshape_and_masks() {
    let ps = [p("a", &[2, 1, 3, 3], 16), p("b", &[2, 2, 3, 3], 17)];
    check("concat", &ps, &|t, s| {
        t.concat(&[t.param(s, "a")?, t.param(s, "b")?], 1)
    });
    let x = [p("x", &[2, 5, 3], 18)];
    check("split", &x, &|t, s| {
        let parts = t.split(&t.param(s, "x")?, 1, &[2, 3])?;
        let a = t.square(&parts[0])?;
        t.concat(&[parts[1].clone(), a], 1)
    });
    check("reshape", &x, &|t, s| t.reshape(&t.param(s, "x")?, &[6, 5]));
    let mask: Vec<f64> = (0..15).map(|i| ((i / 3 + i % 3) % 2) as f64).collect();
    check("fixed mask", &x, &|t, s| {
        let m = t.constant(t.ctx().from_vec(&[5, 3], &mask)?);
        t.mul(&t.param(s, "x")?, &m)
    });
}

#[test]
fn beta_mixture_log_density() {
    use latticeml::can::mixture::BetaMixture;
    // K = 1 and 3 components, 2 samples of a 3×2 lattice; u spread over (0, 1) including values
    // near the ends, where ln u and ln(1 − u) are steep.
    for k in [1usize, 3] {
        let ps = [p("out", &[2, 3 * k, 3, 2], 20 + k as u32)];
        let u: Vec<f64> = (0..12)
            .map(|i| 0.003 + 0.994 * ((i * 7) % 12) as f64 / 11.0)
            .collect();
        check(&format!("beta mixture K={k}"), &ps, &|t, s| {
            let uu = t.constant(t.ctx().from_vec(&[2, 3, 2], &u)?);
            t.apply(BetaMixture, &[&t.param(s, "out")?, &uu])
        });
    }
}

#[test]
fn group_norm_resampling_and_time_features() {
    let x = [p("x", &[2, 4, 3, 2], 30)];
    for groups in [1usize, 2, 4] {
        check(&format!("group norm, {groups} groups"), &x, &|t, s| {
            t.group_norm(&t.param(s, "x")?, groups)
        });
    }
    // The fused block tail, on planes shorter and longer than sum8's eight lanes (two channels
    // per group at least: with one, the shift drops out of the normalisation and ∂L/∂s = 0).
    for (shape, groups) in [
        ([2usize, 4, 3, 2], 1usize),
        ([2, 4, 5, 3], 2),
        ([1, 8, 3, 3], 4),
    ] {
        let [b, c, _, _] = shape;
        let ps = [
            p("x", &shape, 34),
            p("s", &[b, c], 35),
            p("gamma", &[c], 36),
            p("beta", &[c], 37),
        ];
        check(
            &format!("group norm + SiLU, {groups} groups"),
            &ps,
            &|t, s| {
                let affine = [
                    &t.param(s, "s")?,
                    &t.param(s, "gamma")?,
                    &t.param(s, "beta")?,
                ];
                t.group_norm_silu(&t.param(s, "x")?, affine, groups)
            },
        );
    }
    check("avg_pool2", &[p("x", &[2, 3, 4, 6], 31)], &|t, s| {
        t.avg_pool2(&t.param(s, "x")?)
    });
    check("upsample2", &[p("x", &[2, 2, 3, 2], 32)], &|t, s| {
        t.upsample2(&t.param(s, "x")?)
    });
    check("fourier features", &[p("t", &[3], 33)], &|t, s| {
        let w = t.constant(t.ctx().from_vec(&[4], &[0.3, -1.1, 2.0, 0.05])?);
        t.fourier_features(&t.param(s, "t")?, &w)
    });
    check(
        "batched linear",
        &[
            p("x", &[3, 4], 34),
            p("w", &[3, 4, 5], 35),
            p("c", &[3, 5], 36),
        ],
        &|t, s| t.batched_linear(&t.param(s, "x")?, &t.param(s, "w")?, &t.param(s, "c")?),
    );
}
