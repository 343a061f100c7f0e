//! What every criterion bench shares: running a group on the CPU, and on the GPU where there is
//! one (a printed skip otherwise, a failure under `LATTICEML_REQUIRE_GPU=1`).

use std::io::Write;

use criterion::Criterion;
use latticeml::device::{CpuDevice, CudaDevice};
use latticeml::Device;

/// Runs `bench(c, label, device)` on the CPU, then on CUDA device 0 if there is one.
pub fn on_every_device(
    c: &mut Criterion,
    group: &str,
    bench: impl Fn(&mut Criterion, &str, &Device),
) {
    bench(c, "cpu", &Device::Cpu(CpuDevice::new()));
    match CudaDevice::new(0) {
        Ok(d) => bench(c, "cuda", &Device::Cuda(d)),
        Err(e) => {
            if std::env::var("LATTICEML_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("LATTICEML_REQUIRE_GPU=1 but no CUDA device: {e}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "{group}_cuda: skipped: no CUDA device ({e})"
            );
        }
    }
}
