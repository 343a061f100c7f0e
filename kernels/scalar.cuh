// Scalar theories with nearest-neighbour hopping and an even quartic potential,
//   S = sum_x [ -hop sum_mu phi(x) phi(x+mu) + u0 + u2 phi^2 + u4 phi^4 ]
// (src/action.rs): the couplings and per-site terms shared by the HMC and Metropolis kernels.
#pragma once

struct Couplings { double hop, u0, u2, u4; };

// Sum of phi over the neighbours of site s (within one chain), periodic: all 2D of them when
// BOTH, else the D forward ones (for the action density).
template <int D, bool BOTH>
__device__ __forceinline__ double neighbour_sum(const double* __restrict__ phi, unsigned int s, const Geom& g) {
    double acc = 0.0;
#pragma unroll
    for (int mu = 0; mu < D; ++mu) {
        int st = g.stride[mu], L = g.ext[mu];
        int x = (mu == D - 1) ? (int)(s % (unsigned)L) : (int)((s / (unsigned)st) % (unsigned)L);
        acc += phi[(x == L - 1) ? s - (L - 1) * st : s + st];
        if (BOTH) acc += phi[(x == 0) ? s + (L - 1) * st : s - st];
    }
    return acc;
}

__device__ __forceinline__ double site_force(const Couplings& c, double phi, double nb) {
    return c.hop * nb - phi * (2.0 * c.u2 + 4.0 * c.u4 * phi * phi);
}

__device__ __forceinline__ double site_action(const Couplings& c, double phi, double fwd) {
    double phi2 = phi * phi;
    return -c.hop * phi * fwd + c.u0 + phi2 * (c.u2 + c.u4 * phi2);
}

