// One rank's box of a lattice decomposed over ranks (src/hmc/domain/): every chain's box is stored
// padded, with a one-site halo on both sides of every axis, [chain][padded site], row-major with
// the last axis fastest. The halo holds the neighbours' faces (moved by the host over MPI, or by
// NCCL between GPUs), so the update reads only this box.
//
// This family is compiled with --fmad=false (src/device/cuda.rs, DOMAIN), and every site's
// arithmetic is written in the order of its CPU twin (src/hmc/domain/cpu.rs: box_kick_drift,
// box_densities; BoxGeometry's interior/face copies for the gathers and scatters), so a GPU's
// box follows exactly the trajectory of the CPU's, and so of one process running the whole
// lattice. The host guarantees chains * padded < 2^31 (32-bit indices).

// Geometry of the padded box (BoxGeom in src/hmc/domain/cuda.rs).
struct BoxGeom {
    int ext[4];         // interior extents of axes 0..D-1
    int stride[4];      // padded strides (the padded extents are ext + 2)
    unsigned padded;    // padded sites per chain
    unsigned sites;     // interior sites per chain
    unsigned chains;
    int wrap_last;      // the last axis is not cut: its rows wrap within the box (no halo used)
    int last_offset;    // global coordinate of the box's first plane along the last axis
    int last_global;    // global extent of the last axis
};

// Padded index within a chain of interior site s (the box's row-major order); *j = its
// coordinate along the last axis.
template <int D>
__device__ __forceinline__ unsigned box_site(unsigned s, const BoxGeom& g, int* j) {
    unsigned at = 0;
#pragma unroll
    for (int mu = D - 1; mu >= 0; --mu) {
        unsigned n = (unsigned)g.ext[mu];
        unsigned x = s % n;
        s /= n;
        if (mu == D - 1) *j = (int)x;
        at += (x + 1) * (unsigned)g.stride[mu];
    }
    return at;
}

// Padded index in the batch of interior value k ([chain][box site]); *j = its position along the
// last axis.
template <int D>
__device__ __forceinline__ unsigned box_value(unsigned k, const BoxGeom& g, int* j) {
    unsigned chain = k / g.sites;
    return chain * g.padded + box_site<D>(k - chain * g.sites, g, j);
}

// phi one site up (step 1) or down (step -1) the last axis from padded index i at position j of
// its row: the halo, or the other end of the row when the last axis is not cut.
__device__ __forceinline__ double row_step(const double* __restrict__ phi, unsigned i, int j, int step,
                                           int l, const BoxGeom& g) {
    if (g.wrap_last && j == (step > 0 ? l - 1 : 0)) return phi[i - step * (l - 1)];
    return phi[i + step];
}

// One fused molecular-dynamics update of every interior site: p += kick * F(phi), and with DRIFT
// phi_new = phi + drift * p. Neighbour sum in the twin's order: last axis up + down, then every
// other axis up, down.
template <int D, bool DRIFT>
__device__ __forceinline__ void box_update(const double* __restrict__ phi, double* __restrict__ p,
                                           double* __restrict__ phi_new, const BoxGeom& g,
                                           const Couplings& c, double kick, double drift) {
    int l = g.ext[D - 1];
    GRID_STRIDE(k, g.sites * g.chains) {
        int j;
        unsigned i = box_value<D>(k, g, &j);
        double nb = row_step(phi, i, j, 1, l, g) + row_step(phi, i, j, -1, l, g);
#pragma unroll
        for (int mu = 0; mu < D - 1; ++mu) {
            nb += phi[i + g.stride[mu]];
            nb += phi[i - g.stride[mu]];
        }
        double x = phi[i];
        double pn = p[i] + kick * site_force(c, x, nb);
        p[i] = pn;
        if (DRIFT) phi_new[i] = x + drift * pn;
    }
}

// The action density of every interior site, out[chain * sites + s] (compact, the box's order):
// the forward sum of one process, which adds 0.0 at the global ends of a row (turning -0.0 into
// +0.0 exactly as src/hmc/cpu.rs does), then the forward neighbours of axes 0..D-2.
template <int D>
__device__ __forceinline__ void box_action(const double* __restrict__ phi, double* __restrict__ out,
                                           const BoxGeom& g, const Couplings& c) {
    int l = g.ext[D - 1];
    GRID_STRIDE(k, g.sites * g.chains) {
        int j;
        unsigned i = box_value<D>(k, g, &j);
        double up = row_step(phi, i, j, 1, l, g);
        int x = g.last_offset + j;
        double f = (x == 0 || x == g.last_global - 1) ? up + 0.0 : up;
#pragma unroll
        for (int mu = 0; mu < D - 1; ++mu) f += phi[i + g.stride[mu]];
        out[k] = site_action(c, phi[i], f);
    }
}

#define BOX_KERNELS(D)                                                                              \
    extern "C" __global__ void box_kick_drift_d##D(const double* phi, double* p, double* phi_new,  \
                                                   BoxGeom g, Couplings c, double kick,            \
                                                   double drift) {                                 \
        box_update<D, true>(phi, p, phi_new, g, c, kick, drift);                                   \
    }                                                                                              \
    LATTICEML_KERNEL(box_kick_drift_d##D)                                                          \
    extern "C" __global__ void box_kick_d##D(const double* phi, double* p, BoxGeom g, Couplings c, \
                                             double kick) {                                        \
        box_update<D, false>(phi, p, nullptr, g, c, kick, 0.0);                                    \
    }                                                                                              \
    LATTICEML_KERNEL(box_kick_d##D)                                                                \
    extern "C" __global__ void box_densities_d##D(const double* phi, double* out, BoxGeom g,       \
                                                  Couplings c) {                                   \
        box_action<D>(phi, out, g, c);                                                             \
    }                                                                                              \
    LATTICEML_KERNEL(box_densities_d##D)
BOX_KERNELS(1)
BOX_KERNELS(2)
BOX_KERNELS(3)
BOX_KERNELS(4)

// out[c * n + k] = x[c * padded + idx[k]] for every chain c: a face into the send buffer, or the
// interior into [chain][box site].
extern "C" __global__ void box_gather(const double* __restrict__ x, double* __restrict__ out,
                                      const unsigned* __restrict__ idx, unsigned n, unsigned padded,
                                      unsigned chains) {
    GRID_STRIDE(k, n * chains) {
        unsigned chain = k / n;
        out[k] = x[chain * padded + idx[k - chain * n]];
    }
}
LATTICEML_KERNEL(box_gather)

// x[c * padded + idx[k] + shift] = in[c * n + k]: a received face into the halo (shift = the
// distance from the face to that halo), or [chain][box site] values into the interior (shift 0).
extern "C" __global__ void box_scatter(double* __restrict__ x, const double* __restrict__ in,
                                       const unsigned* __restrict__ idx, unsigned n, unsigned padded,
                                       unsigned chains, int shift) {
    GRID_STRIDE(k, n * chains) {
        unsigned chain = k / n;
        x[chain * padded + (unsigned)((int)idx[k - chain * n] + shift)] = in[k];
    }
}
LATTICEML_KERNEL(box_scatter)

// x[c * padded + idx[k] + shift] = x[c * padded + idx[k]]: the periodic wrap of an axis that is not
// cut, a face into this box's own opposite halo (face and halo never overlap).
extern "C" __global__ void box_wrap(double* x, const unsigned* __restrict__ idx, unsigned n,
                                    unsigned padded, unsigned chains, int shift) {
    GRID_STRIDE(k, n * chains) {
        unsigned chain = k / n;
        unsigned from = chain * padded + idx[k - chain * n];
        x[(unsigned)((int)from + shift)] = x[from];
    }
}
LATTICEML_KERNEL(box_wrap)

// phi = saved on every chain whose flag is set (the rejected proposals), halo included.
extern "C" __global__ void box_restore(double* __restrict__ phi, const double* __restrict__ saved,
                                       const unsigned char* __restrict__ restore, unsigned padded,
                                       unsigned chains) {
    GRID_STRIDE(i, padded * chains) {
        if (restore[i / padded]) phi[i] = saved[i];
    }
}
LATTICEML_KERNEL(box_restore)

// The reductions of a decomposed lattice where the values move between GPUs (NCCL): the plan of
// src/domain.rs (OrderedReduction) as index lists, so the sums are the single process's, bit
// for bit: every chunk of 4096 consecutive global sites summed in site order by one thread.

// send[j * k + q] = (q == 0 ? a : b)[order[j]] for q < k (k = 1 or 2 inputs, [chain][box site]).
extern "C" __global__ void reduce_pack(const double* __restrict__ a, const double* __restrict__ b,
                                       double* __restrict__ send, const unsigned* __restrict__ order,
                                       unsigned n, unsigned k) {
    GRID_STRIDE(j, n) {
        send[j * k] = a[order[j]];
        if (k == 2) send[j * k + 1] = b[order[j]];
    }
}
LATTICEML_KERNEL(reduce_pack)

// ordered[q * span + place[i]] = got[i * k + q]: the received values in global order.
extern "C" __global__ void reduce_place(const double* __restrict__ got, double* __restrict__ ordered,
                                        const unsigned* __restrict__ place, unsigned n, unsigned k,
                                        unsigned span) {
    GRID_STRIDE(i, n) {
        for (unsigned q = 0; q < k; ++q) ordered[q * span + place[i]] = got[i * k + q];
    }
}
LATTICEML_KERNEL(reduce_place)

// One thread per (chunk, result) over this rank's chunks [bounds[2c], bounds[2c+1]) of the
// span; the twins are kinetic_chunk, action_chunk and moment_chunk (src/hmc/cpu.rs).
// kind 0, energies: out[2c] = sum of 0.5 x^2 of input 0, out[2c+1] = sum of input 1.
// kind 1, moments: out[3c + m] = sum of x, x^2, x^4 (m = 0, 1, 2) of input 0.
extern "C" __global__ void chunk_sums(const double* __restrict__ ordered, double* __restrict__ out,
                                      const unsigned* __restrict__ bounds, unsigned chunks,
                                      unsigned span, unsigned kind) {
    unsigned width = kind == 0 ? 2u : 3u;
    GRID_STRIDE(t, chunks * width) {
        unsigned c = t / width, w = t - c * width;
        unsigned begin = bounds[2 * c], end = bounds[2 * c + 1];
        double s = 0.0;
        if (kind == 0 && w == 0) {
            for (unsigned i = begin; i < end; ++i) s = s + 0.5 * ordered[i] * ordered[i];
        } else if (kind == 0) {
            for (unsigned i = begin; i < end; ++i) s = s + ordered[span + i];
        } else {
            for (unsigned i = begin; i < end; ++i) {
                double x = ordered[i];
                s = s + (w == 0 ? x : w == 1 ? x * x : x * x * x * x);
            }
        }
        out[t] = s;
    }
}
LATTICEML_KERNEL(chunk_sums)
