//! The reference flow (φ⁴ at m² = −4, λ₀ = 8 on 8×8; 16 affine couplings, conv 1→8→8→2, f32):
//! one reverse-KL training step at batch 64, and drawing 1024 samples; per second.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use latticeml::flow::bench::{FlowBench, TRAIN_BATCH};
use latticeml::lattice::Lattice;
use latticeml::Device;

fn bench_device(c: &mut Criterion, label: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("flow_{label}"));
    g.sample_size(10);
    let mut bench = FlowBench::new(device, Lattice::new(&[8, 8]).unwrap()).unwrap();
    g.throughput(Throughput::Elements(TRAIN_BATCH as u64));
    g.bench_function("train_step_L8", |b| b.iter(|| bench.train_step().unwrap()));
    g.throughput(Throughput::Elements(1024));
    g.bench_function("sample_1024_L8", |b| {
        b.iter(|| bench.draw(1, 1024).unwrap())
    });
    g.finish();
}

fn flow(c: &mut Criterion) {
    common::on_every_device(c, "flow", bench_device);
}

criterion_group!(benches, flow);
criterion_main!(benches);
