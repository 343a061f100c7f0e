// Lattice geometry shared by the field kernels (GpuGeom in src/hmc/cuda.rs): a batch of chains,
// sites row-major with axis 0 slowest, 32-bit indices (the host keeps chains * volume < 2^31).
#pragma once

struct Geom {
    unsigned int volume;   // sites per chain
    unsigned int chains;
    unsigned int chain0;   // global index of the batch's first chain (keys the random numbers)
    int ext[4];            // extents L_mu (unused axes: 1)
    int stride[4];         // row-major strides
};

// Coordinate mu of site s of one chain.
__device__ __forceinline__ int site_coord(unsigned int s, int mu, int D, const Geom& g) {
    return (mu == D - 1) ? (int)(s % (unsigned)g.ext[mu])
                         : (int)((s / (unsigned)g.stride[mu]) % (unsigned)g.ext[mu]);
}

// The neighbour s +- mu (periodic) of site s of one chain, given its coordinate x along mu.
__device__ __forceinline__ unsigned int site_step(unsigned int s, int x, int mu, bool forward, const Geom& g) {
    int st = g.stride[mu], L = g.ext[mu];
    if (forward) return (x == L - 1) ? s - (L - 1) * st : s + st;
    return (x == 0) ? s + (L - 1) * st : s - st;
}

// Checkerboard colour (sum of coordinates mod 2) of site s.
__device__ __forceinline__ unsigned int site_colour(unsigned int s, int D, const Geom& g) {
    int sum = 0;
    for (int mu = 0; mu < D; ++mu) sum += site_coord(s, mu, D, g);
    return (unsigned int)sum & 1u;
}
