//! The reference autoregressive network (2D XY, 16×16, β = 1; 16 channels, mask A + 2 residual
//! mask-B layers 5×5, 4 Beta components, f32): one REINFORCE training step at batch 64, the
//! gradient alone on a fixed batch, and drawing 256 samples by cached generation; per second.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use latticeml::can::bench::{CanBench, TRAIN_BATCH};
use latticeml::lattice::Lattice;
use latticeml::Device;

fn bench_device(c: &mut Criterion, label: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("can_{label}"));
    g.sample_size(10);
    let mut bench = CanBench::new(device, Lattice::new(&[16, 16]).unwrap()).unwrap();
    g.throughput(Throughput::Elements(TRAIN_BATCH as u64));
    g.bench_function("train_step_L16", |b| b.iter(|| bench.train_step().unwrap()));
    let fixed = bench.draw(0, TRAIN_BATCH).unwrap();
    g.bench_function("grad_step_L16", |b| {
        b.iter(|| bench.grad_step(&fixed).unwrap())
    });
    g.throughput(Throughput::Elements(256));
    g.bench_function("generate_256_L16", |b| {
        b.iter(|| bench.draw(1, 256).unwrap())
    });
    g.finish();
}

fn can(c: &mut Criterion) {
    common::on_every_device(c, "can", bench_device);
}

criterion_group!(benches, can);
criterion_main!(benches);
