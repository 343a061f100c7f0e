//! Compute backends: the multi-threaded CPU and CUDA GPUs (through `cudarc`, loaded at run time).

pub mod cpu;
pub mod cuda;
pub mod geometry;
pub mod memory;
pub mod simd;

pub use cpu::CpuDevice;
pub use cuda::CudaDevice;

use crate::error::{Error, Result};

/// Where kernels run.
#[derive(Clone, Debug)]
pub enum Device {
    /// The host CPU, with a fixed number of worker threads.
    Cpu(CpuDevice),
    /// One CUDA GPU.
    Cuda(CudaDevice),
}

impl Device {
    /// The GPU when `libcuda`, a device and NVRTC are present, otherwise the CPU.
    /// The second value says why the choice was made, for the user.
    pub fn auto() -> (Device, String) {
        match CudaDevice::new(0) {
            Ok(d) => {
                let why = format!("using {}", d.describe());
                (Device::Cuda(d), why)
            }
            Err(e) => {
                let cpu = CpuDevice::new();
                let why = format!("using {} (no usable GPU: {e})", cpu.describe());
                (Device::Cpu(cpu), why)
            }
        }
    }

    /// `auto`, `cpu` or `cuda` (or `cuda:N`).
    pub fn from_name(name: &str) -> Result<(Device, String)> {
        match name {
            "auto" => Ok(Device::auto()),
            "cpu" => {
                let d = CpuDevice::new();
                let why = format!("using {}", d.describe());
                Ok((Device::Cpu(d), why))
            }
            _ => {
                let ordinal = match name.strip_prefix("cuda") {
                    Some("") => 0,
                    Some(rest) => rest
                        .trim_start_matches(':')
                        .parse::<usize>()
                        .map_err(|_| bad_name(name))?,
                    None => return Err(bad_name(name)),
                };
                let d = CudaDevice::new(ordinal)?;
                let why = format!("using {}", d.describe());
                Ok((Device::Cuda(d), why))
            }
        }
    }

    /// The device of rank `local` of the `locals` ranks of an ensemble on one node: with `auto`
    /// or `cuda`, one GPU per rank (`local` modulo the GPUs; `auto` falls back to the CPU); on the
    /// CPU, an equal share of the cores (unless `LATTICEML_THREADS` sets the threads per rank).
    pub fn for_local_rank(name: &str, local: usize, locals: usize) -> Result<(Device, String)> {
        let gpus = CudaDevice::count();
        match name {
            "cuda" | "auto" if gpus > 0 => Device::from_name(&format!("cuda:{}", local % gpus)),
            "cpu" | "auto" => {
                let d = if std::env::var_os("LATTICEML_THREADS").is_some() {
                    CpuDevice::new()
                } else {
                    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                    CpuDevice::with_threads((cores / locals.max(1)).max(1))
                };
                let why = format!(
                    "using {} (rank {local} of {locals} on this node)",
                    d.describe()
                );
                Ok((Device::Cpu(d), why))
            }
            _ => Device::from_name(name),
        }
    }

    /// Human-readable description, e.g. `cpu (2 threads)` or `cuda:0 NVIDIA H100 (sm_90)`.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu(d) => d.describe(),
            Device::Cuda(d) => d.describe(),
        }
    }

    /// `cpu` or `cuda`.
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Cpu(_) => "cpu",
            Device::Cuda(_) => "cuda",
        }
    }
}

fn bad_name(name: &str) -> Error {
    Error::InvalidInput(format!(
        "unknown device '{name}': use auto, cpu, cuda or cuda:N"
    ))
}
