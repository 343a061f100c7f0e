// Real fields with nearest-neighbour actions (src/action.rs, ForceLaw): the polynomial law
//   S = sum_x [ -hop sum_mu phi(x) phi(x+mu) + u0 + u2 phi^2 + u4 phi^4 ]
// (phi^4, the oscillator) and the cosine law S = -hop sum_x sum_mu cos(theta(x) - theta(x+mu)) (XY):
// the couplings and per-site terms shared by the HMC and Metropolis kernels.
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


// The force -dS/dtheta(x) of the cosine law: -hop sum over the 2D neighbours of sin(theta - theta_n),
// forward then backward per axis.
template <int D>
__device__ __forceinline__ double cos_force(const double* __restrict__ th, unsigned int s, const Geom& g,
                                            double hop) {
    double x = th[s], acc = 0.0;
    for (int mu = 0; mu < D; ++mu) {
        int xc = site_coord(s, mu, D, g);
        acc += sin(x - th[site_step(s, xc, mu, true, g)]);
        acc += sin(x - th[site_step(s, xc, mu, false, g)]);
    }
    return -hop * acc;
}

// The action density of the cosine law at s: -hop sum over the D forward neighbours of cos.
template <int D>
__device__ __forceinline__ double cos_action(const double* __restrict__ th, unsigned int s, const Geom& g,
                                             double hop) {
    double x = th[s], acc = 0.0;
    for (int mu = 0; mu < D; ++mu) acc += cos(x - th[site_step(s, site_coord(s, mu, D, g), mu, true, g)]);
    return -hop * acc;
}

// Force and action density at s for the law COS (cosine) or polynomial.
template <int D, bool COS>
__device__ __forceinline__ double law_force(const double* __restrict__ pc, unsigned int s, const Geom& g,
                                            const Couplings& c) {
    return COS ? cos_force<D>(pc, s, g, c.hop) : site_force(c, pc[s], neighbour_sum<D, true>(pc, s, g));
}

template <int D, bool COS>
__device__ __forceinline__ double law_action(const double* __restrict__ pc, unsigned int s, const Geom& g,
                                             const Couplings& c) {
    return COS ? cos_action<D>(pc, s, g, c.hop) : site_action(c, pc[s], neighbour_sum<D, false>(pc, s, g));
}
