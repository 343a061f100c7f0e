//! How work is cut into CUDA blocks and reduction chunks. One home for the launch geometry of
//! every kernel: the CUDA launchers use it, the CPU twins reduce over the same chunks, and the
//! kernel harness (`tests/kernel_harness.rs`) launches the kernels on the CPU with exactly these
//! configurations, so the grid arithmetic is executed in CI too.

use cudarc::driver::LaunchConfig;

use crate::error::{Error, Result};

/// Threads per block of every 1-D launch. Block reductions need a multiple of 32.
pub const BLOCK: u32 = 256;

/// Kernels index with 32-bit integers: at most this many elements per launch.
pub const MAX_ELEMENTS: usize = (1 << 31) - 1;

/// CUDA's limit on grid dimensions y and z.
pub const MAX_GRID_YZ: u32 = 65_535;

/// Values per block of a segmented reduction (see `chunk_range` in `kernels/common.cuh`): large
/// enough that a block's partial sum is worth its launch share, small enough that one 64⁴ chain
/// still gives 4096 blocks.
pub const REDUCE_CHUNK: usize = 4096;

/// Refuses `n` elements when the kernels' 32-bit indices cannot address them.
pub fn check_elements(n: usize, what: &str) -> Result<()> {
    if n > MAX_ELEMENTS {
        return Err(Error::InvalidInput(format!(
            "{what}: {n} elements; kernels take at most 2^31 - 1 per launch (use smaller batches)"
        )));
    }
    Ok(())
}

fn config(grid: (u32, u32, u32), block: (u32, u32, u32)) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: block,
        shared_mem_bytes: 0,
    }
}

/// One thread per element in [`BLOCK`]-thread blocks; the kernels loop grid-stride, so any grid
/// of at least one block is correct.
pub fn elementwise(n: usize) -> Result<LaunchConfig> {
    check_elements(n, "elementwise launch")?;
    let blocks = n.div_ceil(BLOCK as usize).max(1) as u32;
    Ok(config((blocks, 1, 1), (BLOCK, 1, 1)))
}

/// One [`BLOCK`]-thread block per output value (reductions onto `n` targets).
pub fn one_block_each(n: usize) -> Result<LaunchConfig> {
    check_elements(n, "reduction launch")?;
    Ok(config((n.max(1) as u32, 1, 1), (BLOCK, 1, 1)))
}

/// 16×16 tiles over an `m × n` output: column tiles on grid x, row tiles on grid y capped at
/// [`MAX_GRID_YZ`] (the kernel strides over the rest).
pub fn tiles16(m: usize, n: usize) -> Result<LaunchConfig> {
    check_elements(m.saturating_mul(n), "matmul output")?;
    let rows = (m.div_ceil(16).max(1) as u32).min(MAX_GRID_YZ);
    Ok(config((n.div_ceil(16).max(1) as u32, rows, 1), (16, 16, 1)))
}

/// Blocks per segment of a segmented reduction over segments of `seg_len` values.
pub fn chunks_per_segment(seg_len: usize) -> usize {
    seg_len.div_ceil(REDUCE_CHUNK).max(1)
}

/// The launch of a segmented reduction: one block per chunk of every segment.
pub fn chunked(segments: usize, seg_len: usize) -> Result<LaunchConfig> {
    check_elements(segments.saturating_mul(seg_len), "reduction")?;
    one_block_each(segments * chunks_per_segment(seg_len))
}

/// Adds the per-chunk results of a segmented reduction into per-segment results, in chunk order:
/// `flat` holds `width` values per chunk, `per` chunks per segment.
pub fn sum_chunks(flat: &[f64], width: usize, per: usize) -> Vec<f64> {
    flat.chunks(width * per)
        .flat_map(|seg| {
            (0..width).map(move |k| seg.chunks(width).fold(0.0, |acc, chunk| acc + chunk[k]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sums_add_in_segment_order() {
        // Two segments, two chunks each, two values per chunk.
        let flat = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0];
        assert_eq!(sum_chunks(&flat, 2, 2), vec![3.0, 30.0, 7.0, 70.0]);
    }

    #[test]
    fn launches_respect_cuda_limits() {
        let t = tiles16(5_000_000, 3).unwrap();
        assert_eq!(t.grid_dim, (1, MAX_GRID_YZ, 1));
        assert!(elementwise(MAX_ELEMENTS + 1).is_err());
        assert_eq!(elementwise(0).unwrap().grid_dim.0, 1);
        assert_eq!(chunked(3, 10_000).unwrap().grid_dim.0, 9);
        assert!(chunked(1 << 20, 1 << 12).is_err());
    }
}
