// Shared by every kernel family: the host prepends it before the family's own headers.
#pragma once

// LATTICEML_KERNEL(name) follows every kernel definition. Under NVRTC it expands to nothing; the
// CPU harness (tests/harness/cuda_host.hpp) defines it first, to register the kernel by name so
// that the host can launch it with the same packed argument array (void**) as cuLaunchKernel.
#ifndef LATTICEML_KERNEL
#define LATTICEML_KERNEL(name)
#endif

#define LML_FULL_MASK 0xffffffffu

// Grid-stride loop over [0, n) in 32-bit indices. The host launchers guarantee n < 2^31 and
// gridDim.x * blockDim.x <= 2^31, so i + stride never wraps.
#define GRID_STRIDE(i, n) \
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)

// Sum over one warp by a shuffle tree; lane 0 holds the result.
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(LML_FULL_MASK, v, offset);
    return v;
}

// Sum of v over the block, returned to every thread: warps by shuffles, then the warp sums by
// warp 0. Every thread of the block must call it; blockDim.x must be a multiple of 32 (at most
// 1024). The order is fixed by the launch geometry, so the same launch gives the same bits.
// All reductions accumulate in double, whatever the element type.
__device__ __forceinline__ double block_sum(double v) {
    __shared__ double warp_sums[32];
    __shared__ double total;
    unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = warp_sum(lane < (blockDim.x >> 5) ? warp_sums[lane] : 0.0);
        if (lane == 0) total = v;
    }
    __syncthreads();
    v = total;
    __syncthreads();  // the next call may overwrite warp_sums and total
    return v;
}

// Segmented reductions: a batch is cut into contiguous segments of seg_len values (one chain, or
// one time slice of a chain), each segment into chunks of at most `chunk` values, one block per
// chunk, blocks ordered segment by segment. The host adds each segment's chunk sums in order, so
// a few large segments (one 64^4 chain) still fill the GPU. [*begin, *end) is this block's chunk.
__device__ __forceinline__ void chunk_range(unsigned seg_len, unsigned chunk, unsigned* begin, unsigned* end) {
    unsigned per = (seg_len + chunk - 1) / chunk;
    unsigned seg = blockIdx.x / per, c = blockIdx.x - seg * per;
    unsigned stop = (c + 1) * chunk;
    *begin = seg * seg_len + c * chunk;
    *end = seg * seg_len + (stop < seg_len ? stop : seg_len);
}
