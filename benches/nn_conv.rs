//! Forward + backward of the reference periodic conv stack (batch 256, 1→16→16→2, 3×3, leaky
//! ReLU, tanh, f32) on 8×8, 32×32 and 64×64 lattices; throughput in lattice samples per second.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use latticeml::nn::bench::{ConvStackBench, BATCH};
use latticeml::Device;

fn bench_device(c: &mut Criterion, label: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("conv_stack_{label}"));
    g.sample_size(10);
    for l in [8, 32, 64] {
        let bench = ConvStackBench::new(device, l).unwrap();
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("L{l}"), |b| b.iter(|| bench.step().unwrap()));
    }
    g.finish();
}

fn conv_stack(c: &mut Criterion) {
    common::on_every_device(c, "conv_stack", bench_device);
}

criterion_group!(benches, conv_stack);
criterion_main!(benches);
