// HMC for real fields with nearest-neighbour actions (kernels/scalar.cuh): the polynomial law of
// phi^4 and the oscillator (kernels named ..._dD) and the cosine law of XY (..._cos_dD). Batch layout [chain][site],
// sites row-major with axis 0 slowest. CPU twins: src/hmc/cpu.rs.
// The host guarantees chains * volume < 2^31, so every index is a 32-bit integer (64-bit division
// is emulated on the GPU and would cost more than the arithmetic of the update).

// Couplings, neighbour_sum, site_force and site_action: kernels/scalar.cuh.

// One fused molecular-dynamics update: p += kick * F(phi); phi_new = phi + drift * p (DRIFT only).
// Reads phi (neighbours hit cache), p; writes p and phi_new: 32 bytes/site of DRAM traffic in f64.
template <int D, bool DRIFT, bool COS>
__device__ __forceinline__ void kick_drift(const double* __restrict__ phi, double* __restrict__ p,
                                           double* __restrict__ phi_new, const Geom& g, const Couplings& c,
                                           double kick, double drift) {
    GRID_STRIDE(i, g.volume * g.chains) {
        unsigned int chain = i / g.volume;
        unsigned int s = i - chain * g.volume;
        const double* pc = phi + chain * g.volume;
        double x = pc[s];
        double pn = p[i] + kick * law_force<D, COS>(pc, s, g, c);
        p[i] = pn;
        if (DRIFT) phi_new[i] = x + drift * pn;
    }
}

#define KICK_DRIFT(D, LAW, COS)                                                                         \
    extern "C" __global__ void kick_drift_##LAW##d##D(const double* phi, double* p, double* phi_new, Geom g, \
                                                      Couplings c, double kick, double drift) {        \
        kick_drift<D, true, COS>(phi, p, phi_new, g, c, kick, drift);                                   \
    }                                                                                                   \
    LATTICEML_KERNEL(kick_drift_##LAW##d##D)                                                            \
    extern "C" __global__ void kick_##LAW##d##D(const double* phi, double* p, Geom g, Couplings c,       \
                                                double kick) {                                          \
        kick_drift<D, false, COS>(phi, p, nullptr, g, c, kick, 0.0);                                    \
    }                                                                                                   \
    LATTICEML_KERNEL(kick_##LAW##d##D)
KICK_DRIFT(1, , false)
KICK_DRIFT(2, , false)
KICK_DRIFT(3, , false)
KICK_DRIFT(4, , false)
KICK_DRIFT(1, cos_, true)
KICK_DRIFT(2, cos_, true)
KICK_DRIFT(3, cos_, true)
KICK_DRIFT(4, cos_, true)

// Per chunk of `chunk` sites of one chain (chunk_range with segments = chains):
// out[2*block] = sum 0.5 p^2, out[2*block+1] = sum of the site action density.
template <int D, bool COS>
__device__ __forceinline__ void energy_chunks(const double* __restrict__ phi, const double* __restrict__ p,
                                              double* __restrict__ out, const Geom& g, const Couplings& c,
                                              unsigned int chunk) {
    unsigned int begin, end;
    chunk_range(g.volume, chunk, &begin, &end);
    unsigned int chain = begin / g.volume;
    const double* pc = phi + chain * g.volume;
    double kin = 0.0, act = 0.0;
    for (unsigned int i = begin + threadIdx.x; i < end; i += blockDim.x) {
        unsigned int s = i - chain * g.volume;
        kin += 0.5 * p[i] * p[i];
        act += law_action<D, COS>(pc, s, g, c);
    }
    kin = block_sum(kin);
    act = block_sum(act);
    if (threadIdx.x == 0) { out[2 * blockIdx.x] = kin; out[2 * blockIdx.x + 1] = act; }
}

#define ENERGY(D, LAW, COS)                                                                          \
    extern "C" __global__ void energy_chunks_##LAW##d##D(const double* phi, const double* p, double* out, \
                                                         Geom g, Couplings c, unsigned int chunk) {   \
        energy_chunks<D, COS>(phi, p, out, g, c, chunk);                                             \
    }                                                                                                \
    LATTICEML_KERNEL(energy_chunks_##LAW##d##D)
ENERGY(1, , false)
ENERGY(2, , false)
ENERGY(3, , false)
ENERGY(4, , false)
ENERGY(1, cos_, true)
ENERGY(2, cos_, true)
ENERGY(3, cos_, true)
ENERGY(4, cos_, true)

// Per chunk of a segment of seg_len values (a time slice): out[3*block + k] = sum of phi, phi^2, phi^4.
extern "C" __global__ void moment_chunks(const double* __restrict__ phi, double* __restrict__ out,
                                         unsigned int seg_len, unsigned int chunk) {
    unsigned int begin, end;
    chunk_range(seg_len, chunk, &begin, &end);
    double m1 = 0.0, m2 = 0.0, m4 = 0.0;
    for (unsigned int i = begin + threadIdx.x; i < end; i += blockDim.x) {
        double x = phi[i], x2 = x * x;
        m1 += x; m2 += x2; m4 += x2 * x2;
    }
    m1 = block_sum(m1);
    m2 = block_sum(m2);
    m4 = block_sum(m4);
    if (threadIdx.x == 0) { out[3 * blockIdx.x] = m1; out[3 * blockIdx.x + 1] = m2; out[3 * blockIdx.x + 2] = m4; }
}
LATTICEML_KERNEL(moment_chunks)

// phi = saved on every chain whose flag is set (the rejected proposals): one launch, not a copy per chain.
extern "C" __global__ void restore_chains(double* __restrict__ phi, const double* __restrict__ saved,
                                          const unsigned char* __restrict__ restore, Geom g) {
    GRID_STRIDE(i, g.volume * g.chains) {
        if (restore[i / g.volume]) phi[i] = saved[i];
    }
}
LATTICEML_KERNEL(restore_chains)
