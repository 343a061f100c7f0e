//! Philox4x32-10: the Random123 known-answer vectors, normal statistics, and Rust–CUDA identity.

mod common;

use cudarc::driver::PushKernelArg;
use latticeml::device::cuda::PHILOX;
use latticeml::philox::{self, philox4x32_10};

/// Random123 `tests/kat_vectors`, the three `philox4x32 10` lines: counter, key → output.
const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0, 0, 0, 0],
        [0, 0],
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ),
    (
        [u32::MAX; 4],
        [u32::MAX; 2],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

#[test]
fn known_answer_vectors() {
    for (ctr, key, want) in KAT {
        assert_eq!(
            philox4x32_10(ctr, key),
            want,
            "counter {ctr:x?} key {key:x?}"
        );
    }
}

#[test]
fn normals_have_unit_variance_and_no_lag_one_correlation() {
    let n = 400_000;
    let mut z = vec![0.0; n];
    philox::fill_normals(&mut z, 5, 3, 7, philox::STREAM_MOMENTUM);
    let mean = z.iter().sum::<f64>() / n as f64;
    let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    let kurt = z.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
    let lag1 = z.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / n as f64;
    let se = 1.0 / (n as f64).sqrt();
    assert!(mean.abs() < 5.0 * se, "mean {mean}");
    assert!((var - 1.0).abs() < 5.0 * 2f64.sqrt() * se, "variance {var}");
    assert!(
        (kurt - 3.0).abs() < 5.0 * 24f64.sqrt() * se,
        "kurtosis {kurt}"
    );
    assert!(lag1.abs() < 5.0 * se, "lag-1 correlation {lag1}");
}

#[test]
fn uniforms_stay_inside_the_open_interval() {
    assert!(philox::uniform_from_words(0, 0) > 0.0);
    assert!(philox::uniform_from_words(u32::MAX, u32::MAX) < 1.0);
}

#[test]
fn cuda_stream_is_bit_identical_to_rust() {
    let Some(dev) = common::gpu("cuda_stream_is_bit_identical_to_rust") else {
        return;
    };
    let (n, chain, step, stream, seed) = (4099u32, 3u32, 17u32, 1u32, 0x1234_5678_9abc_def0u64);
    let [k0, k1] = philox::key_from_seed(seed);
    let f = dev.function(&PHILOX, "philox_raw").unwrap();
    let s = dev.stream();
    let mut out = s.alloc_zeros::<u32>(4 * n as usize).unwrap();
    let mut b = s.launch_builder(&f);
    b.arg(&mut out)
        .arg(&n)
        .arg(&chain)
        .arg(&step)
        .arg(&stream)
        .arg(&k0)
        .arg(&k1);
    let cfg = cudarc::driver::LaunchConfig::for_num_elems(n);
    unsafe { b.launch(cfg) }.unwrap();
    let got = s.clone_dtoh(&out).unwrap();
    for i in 0..n {
        let want = philox4x32_10([i, chain, step, stream], [k0, k1]);
        assert_eq!(&got[4 * i as usize..4 * i as usize + 4], &want, "block {i}");
    }
}
