//! What the machine can hold, checked before allocating: a request that cannot fit becomes an
//! [`Error::OutOfMemory`] naming the estimate, what is available and the fix, instead of an
//! allocator abort (exit 134) or the kernel's OOM killer half-way through a run.

use crate::device::Device;
use crate::error::{Error, Result};

/// Bytes the host can still hand out (`MemAvailable` of `/proc/meminfo`), where known.
pub fn host_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn gib(bytes: u128) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Refuses `bytes` of host memory for `what` when they exceed what the machine has free; `fix`
/// tells the user how to ask for less.
pub fn check_host(bytes: u128, what: &str, fix: &str) -> Result<()> {
    refuse_beyond(host_available(), "this machine has", bytes, what, fix)
}

/// Refuses `bytes` for `what` when they exceed what `device` has free (host memory for the CPU,
/// device memory for a GPU, where `--device cpu` is offered too).
pub fn check(device: &Device, bytes: u128, what: &str, fix: &str) -> Result<()> {
    match device {
        Device::Cpu(_) => check_host(bytes, what, fix),
        Device::Cuda(d) => refuse_beyond(
            d.context().mem_get_info().ok().map(|(free, _)| free as u64),
            "the GPU has",
            bytes,
            what,
            &format!("{fix}, or --device cpu"),
        ),
    }
}

/// Where the amount free cannot be read, only impossible sizes (beyond the address space) are
/// refused.
fn refuse_beyond(free: Option<u64>, place: &str, bytes: u128, what: &str, fix: &str) -> Result<()> {
    let limit = free.map_or(isize::MAX as u128, |f| f as u128);
    if bytes > limit {
        return Err(Error::OutOfMemory(format!(
            "{what} needs about {}, and {place} {} free: {fix}",
            gib(bytes),
            free.map_or("less than that".into(), |f| gib(f as u128)),
        )));
    }
    Ok(())
}
