//! The reference score network (2D, 32×32; U-Net channels 16, 32, 4 groups, 16 Fourier
//! frequencies, periodic padding, f32): one denoising score-matching step at batch 64 (loss,
//! backward, Adam, moving average), and one score evaluation of 256 configurations (one step of
//! every reverse-process sampler); per configuration.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use latticeml::diffusion::bench::{DiffusionBench, TRAIN_BATCH};
use latticeml::Device;

fn bench_device(c: &mut Criterion, label: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("diffusion_{label}"));
    g.sample_size(10);
    let mut bench = DiffusionBench::new(device, [32, 32]).unwrap();
    g.throughput(Throughput::Elements(TRAIN_BATCH as u64));
    let mut step = 0;
    g.bench_function("train_step_L32", |b| {
        b.iter(|| {
            step += 1;
            bench.train_step(step).unwrap()
        })
    });
    g.throughput(Throughput::Elements(256));
    g.bench_function("score_256_L32", |b| {
        b.iter(|| bench.evaluate(256, 0.5).unwrap())
    });
    g.finish();
}

fn diffusion(c: &mut Criterion) {
    common::on_every_device(c, "diffusion", bench_device);
}

criterion_group!(benches, diffusion);
criterion_main!(benches);
