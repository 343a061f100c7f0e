//! Forward + backward of the reference periodic conv stack (batch 256, 1→16→16→2, 3×3, leaky
//! ReLU, tanh, f32) on 8×8, 32×32 and 64×64 lattices; throughput in lattice samples per second.

use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use latticeml::device::{CpuDevice, CudaDevice};
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

fn cpu(c: &mut Criterion) {
    bench_device(c, "cpu", &Device::Cpu(CpuDevice::new()));
}

fn gpu(c: &mut Criterion) {
    match CudaDevice::new(0) {
        Ok(d) => bench_device(c, "cuda", &Device::Cuda(d)),
        Err(e) => {
            if std::env::var("LATTICEML_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("LATTICEML_REQUIRE_GPU=1 but no CUDA device: {e}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "conv_stack_cuda: skipped: no CUDA device ({e})"
            );
        }
    }
}

criterion_group!(benches, cpu, gpu);
criterion_main!(benches);
