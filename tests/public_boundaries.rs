//! Safe public functions refuse bad lengths with an error instead of reading out of bounds or
//! panicking; the CPU pool survives nested use; the Philox step counter does not wrap at 2^32.

mod common;

use std::sync::Arc;

use latticeml::action::{Action, Phi4};
use latticeml::hmc::cpu as hmc_cpu;
use latticeml::hmc::{Hmc, HmcParams, Integrator};
use latticeml::nn::cpu as nn_cpu;
use latticeml::nn::kernels::{bcast_spec, conv_spec, reduce_spec, AdamHyper};
use latticeml::nn::{Binary, ConvMode, Unary};
use latticeml::{philox, Device, Error, Lattice};

fn invalid<T: std::fmt::Debug>(r: latticeml::Result<T>, what: &str) {
    match r {
        Err(Error::InvalidInput(msg)) => assert!(!msg.is_empty()),
        other => panic!("{what}: expected an InvalidInput error, got {other:?}"),
    }
}

#[test]
fn pool_helpers_refuse_mismatched_buffers_instead_of_reading_past_them() {
    let dev = common::cpu();
    // Large enough to be split across threads: the old code built the second buffer's chunks
    // from the first buffer's bounds.
    let mut a = vec![0.0f64; 1 << 16];
    let mut short = vec![0.0f64; 10];
    invalid(
        dev.for_chunks(1, &mut a, Some(&mut short), |_, _, _| {}),
        "short second buffer",
    );
    invalid(dev.for_chunks(0, &mut a, None, |_, _, _| {}), "zero unit");
    invalid(
        dev.for_chunks(3, &mut a, None, |_, _, _| {}),
        "partial unit",
    );
    // Paired buffers: both cut into the same number of whole units, or refused.
    let mut sums = vec![0u32; 1 << 10];
    invalid(
        dev.for_paired_chunks((64, &mut a), (2, &mut sums), |_, _, _| {}),
        "paired unit counts differ",
    );
    invalid(
        dev.for_paired_chunks((64, &mut a), (3, &mut sums), |_, _, _| {}),
        "paired partial unit",
    );
    invalid(
        dev.for_paired_chunks((0, &mut a), (1, &mut sums), |_, _, _| {}),
        "paired zero unit",
    );
    // Each task sees unit-aligned chunks of both, starting at its first unit.
    dev.for_paired_chunks((64, &mut a), (1, &mut sums), |first, ca, cb| {
        assert_eq!(ca.len(), 64 * cb.len());
        for (k, (unit, s)) in ca.chunks_mut(64).zip(cb.iter_mut()).enumerate() {
            unit.iter_mut().for_each(|x| *x = (first + k) as f64);
            *s = (first + k) as u32;
        }
    })
    .unwrap();
    assert!(sums.iter().enumerate().all(|(i, &s)| s == i as u32));
    assert!(a.iter().enumerate().all(|(i, &x)| x == (i / 64) as f64));
}

#[test]
fn nested_use_of_the_pool_runs_inline_instead_of_deadlocking() {
    let dev = common::cpu();
    let mut outer = vec![0u64; 1 << 15];
    dev.for_heavy_chunks(1 << 14, &mut outer, |_, chunk, _| {
        // Pool calls from inside a pool task (the old pool waited for its own gate forever).
        let mut inner = vec![0u64; 1 << 15];
        dev.for_chunks(1, &mut inner, None, |f, c, _| {
            c.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = (f + i) as u64)
        })
        .unwrap();
        dev.parallel_for(4, |_| {});
        let sum: u64 = inner.iter().sum();
        chunk.iter_mut().for_each(|x| *x = sum);
    })
    .unwrap();
    let n = (1u64 << 15) - 1;
    assert!(outer.iter().all(|&x| x == n * (n + 1) / 2));
}

#[test]
fn batched_linear_refuses_wrong_shapes_and_lengths() {
    use latticeml::nn::ops::batched_linear::{self as bl, BatchedLinearShape};
    let dev = common::cpu();
    invalid(BatchedLinearShape::of(&[2, 3], &[2, 3], &[2, 4]), "2-D w");
    invalid(
        BatchedLinearShape::of(&[3, 3], &[2, 3, 4], &[2, 4]),
        "x of another batch",
    );
    invalid(
        BatchedLinearShape::of(&[2, 3], &[2, 3, 4], &[2, 5]),
        "c of other outputs",
    );
    invalid(
        BatchedLinearShape::of(&[2, 0], &[2, 0, 4], &[2, 4]),
        "no inputs",
    );
    invalid(
        BatchedLinearShape::of(
            &[1 << 12, 1 << 10],
            &[1 << 12, 1 << 10, 1 << 10],
            &[1 << 12, 1 << 10],
        ),
        "too large",
    );
    invalid(
        BatchedLinearShape::of(&[2, usize::MAX, 2], &[2, 3, 4], &[2, 4]),
        "an x whose size overflows",
    );
    let s = BatchedLinearShape::of(&[2, 3, 1], &[2, 3, 4], &[2, 1, 4]).unwrap();
    let (x, w, c) = (vec![0.5f64; 6], vec![0.1f64; 24], vec![1.0f64; 8]);
    let mut y = vec![0.0f64; 8];
    invalid(
        bl::batched_linear(&dev, [&x, &w[..23], &c], &mut y, &s),
        "short w",
    );
    invalid(
        bl::batched_linear(&dev, [&x, &w, &c], &mut y[..7], &s),
        "short y",
    );
    invalid(
        bl::batched_linear_grad_x(&dev, [&w, &c], &mut [0.0; 5], &s),
        "short dx",
    );
    invalid(
        bl::batched_linear_grad_w(&dev, [&x, &c[..7]], &mut [0.0; 24], &s),
        "short dy",
    );
    let huge = BatchedLinearShape {
        batch: usize::MAX,
        inputs: 3,
        outputs: 4,
    };
    invalid(
        bl::batched_linear(&dev, [&x, &w, &c], &mut y, &huge),
        "a hand-made huge shape",
    );
    let empty = BatchedLinearShape { outputs: 0, ..s };
    assert!(bl::batched_linear_grad_x(&dev, [&[], &[]], &mut [0.0; 6], &empty).is_err());
}

#[test]
fn fused_group_norm_refuses_wrong_shapes_and_lengths() {
    use latticeml::nn::ops::group_norm_silu::{self as gns, NormSiluShape};
    let dev = common::cpu();
    invalid(
        NormSiluShape::of(&[2, 6, 4], 4),
        "channels not in whole groups",
    );
    invalid(NormSiluShape::of(&[2], 1), "no channel axis");
    invalid(NormSiluShape::of(&[2, 4, 0], 2), "empty plane");
    invalid(
        NormSiluShape::of(&[1 << 16, 1 << 8, 1 << 8], 1),
        "too large",
    );
    let shape = NormSiluShape::of(&[2, 4, 9], 2).unwrap();
    let (x, s, g) = (vec![0.5f32; 72], vec![0.1f32; 8], vec![1.0f32; 4]);
    let (mut y, mut n) = (vec![0.0f32; 72], vec![0.0f32; 72]);
    invalid(
        gns::group_norm_silu(&dev, [&x, &s[..7], &g, &g], [&mut y, &mut n], &shape, 1e-5),
        "short shift",
    );
    invalid(
        gns::group_norm_silu(&dev, [&x, &s, &g, &g], [&mut y[..71], &mut n], &shape, 1e-5),
        "short output",
    );
    let no_groups = NormSiluShape { groups: 0, ..shape };
    invalid(
        gns::group_norm_silu(&dev, [&x, &s, &g, &g], [&mut y, &mut n], &no_groups, 1e-5),
        "a hand-made shape without groups",
    );
    let (mut dx, mut parts) = (vec![0.0f32; 72], vec![0.0f64; 23]);
    invalid(
        gns::group_norm_silu_grad(
            &dev,
            [&x, &s, &g, &g, &n, &y],
            &mut dx,
            &mut parts,
            &shape,
            1e-5,
        ),
        "short parts",
    );
    let (mut a, mut b, mut c) = (vec![0.0f32; 4], vec![0.0f32; 4], vec![0.0f32; 7]);
    invalid(
        gns::channel_fold(&[0.0; 24], [&mut a, &mut b, &mut c], 2),
        "short ds",
    );
}

#[test]
fn cpu_twins_refuse_wrong_lengths() {
    let dev = common::cpu();
    let lat = Lattice::new(&[4, 6]).unwrap();
    let c = Phi4::new(lat.clone(), 0.2, 0.1).unwrap().couplings();
    let phi = vec![0.1; 2 * 24];
    let mut short_p = vec![0.0; 24];
    invalid(
        hmc_cpu::kick_drift(&dev, &lat, &c, &phi, &mut short_p, None, 0.1, 0.0),
        "kick_drift p",
    );
    let mut p = vec![0.0; 48];
    let mut short_new = vec![0.0; 3];
    invalid(
        hmc_cpu::kick_drift(&dev, &lat, &c, &phi, &mut p, Some(&mut short_new), 0.1, 0.1),
        "kick_drift phi_new",
    );
    invalid(
        hmc_cpu::kick_drift(&dev, &lat, &c, &phi[..30], &mut p[..30], None, 0.1, 0.0),
        "partial chain",
    );
    invalid(
        hmc_cpu::energy_chunks(&dev, &lat, &c, &phi, &p[..47], &mut [0.0; 48]),
        "energy_chunks",
    );
    invalid(hmc_cpu::moment_chunks(&dev, &phi, 0), "moment_chunks");
    invalid(
        hmc_cpu::restore_chains(&mut p, &phi, &[1u8; 3], 24),
        "restore_chains flags",
    );

    let x = vec![1.0f64; 10];
    invalid(nn_cpu::unary(&dev, Unary::Exp, &x, &mut [0.0; 11]), "unary");
    let g = bcast_spec(&[3, 1], &[1, 4], &[3, 4]).unwrap();
    invalid(
        nn_cpu::binary(&dev, Binary::Add, &x[..2], &x, &mut [0.0; 12], &g),
        "binary a",
    );
    let r = reduce_spec(&[5, 2], &[2]).unwrap();
    invalid(
        nn_cpu::reduce_to(&dev, &x[..9], &mut [0.0; 2], &r, 1.0),
        "reduce_to",
    );
    invalid(
        nn_cpu::matmul(&dev, &x, &x, &mut [0.0; 9], 3, 3, 4, false, false),
        "matmul",
    );
    let cs = conv_spec(&[1, 1, 4, 4], &[1, 1, 3, 3], ConvMode::Periodic).unwrap();
    invalid(
        nn_cpu::conv2d(&dev, &[0.0; 15], &[0.0; 9], &mut [0.0; 16], &cs),
        "conv2d",
    );
    invalid(
        nn_cpu::conv2d_grad_weight(&dev, &[0.0; 16], &[0.0; 16], &mut [0.0; 8], &cs),
        "conv2d_grad_weight",
    );
    invalid(
        nn_cpu::slab_copy(&x, &mut [0.0; 10], [2, 5, 5, 0, 5, 6]),
        "slab_copy",
    );
    invalid(
        nn_cpu::slab_copy(&x, &mut [0.0; 10], [2, 5, usize::MAX, 0, 5, 0]),
        "slab_copy overflow",
    );
    let h = AdamHyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        gscale: 1.0,
        bias1: 0.1,
        bias2: 0.001,
        decoupled: 1,
    };
    invalid(
        nn_cpu::adam(
            &dev,
            [&mut [0.0; 4], &mut [0.0; 4], &mut [0.0; 4]],
            &x[..3],
            &h,
        ),
        "adam",
    );
}

#[test]
fn philox_step_counter_does_not_wrap_at_2_pow_32() {
    // Unchanged below 2^32, distinct above it.
    assert_eq!(philox::counter_words(7, 1).unwrap(), (7, 1));
    assert_eq!(
        philox::counter_words((1 << 32) + 7, 1).unwrap(),
        (7, 1 | 1 << 8)
    );
    assert!(philox::counter_words(philox::MAX_STEPS, 0).is_err());

    // A trajectory numbered 2^32 draws other momenta than trajectory 0 from the same state.
    let action: Arc<dyn Action> =
        Arc::new(Phi4::new(Lattice::new(&[6, 6]).unwrap(), 0.2, 0.1).unwrap());
    let params = HmcParams {
        tau: 0.5,
        steps: 5,
        integrator: Integrator::Leapfrog,
        seed: 3,
    };
    let device = Device::Cpu(common::cpu());
    let dh = |start: u64| {
        let mut hmc = Hmc::new(action.clone(), 2, params, &device).unwrap();
        hmc.set_progress(start, vec![0, 0]).unwrap();
        hmc.trajectory().unwrap().delta_h
    };
    assert_eq!(dh(0), dh(0));
    assert_ne!(dh(0), dh(1 << 32));
}
