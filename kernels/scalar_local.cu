// Checkerboard Metropolis for the scalar theories of scalar.cuh: at every site of one colour,
// `hits` proposals phi' = phi + delta (2u - 1), accepted with min(1, exp(-dS)),
//   dS = -hop (phi' - phi) nb + (phi'^2 - phi^2) (u2 + u4 (phi'^2 + phi^2)),
// nb the sum over all 2D neighbours (the other colour, only read). CPU twin:
// src/theory/scalar/cpu.rs, the same arithmetic in the same order.

template <int D>
__device__ __forceinline__ void scalar_metropolis(double* phi, const Geom g, const Couplings c, double delta,
                                                  unsigned int colour, unsigned long long step0,
                                                  unsigned int hits, unsigned int k0, unsigned int k1,
                                                  unsigned long long* accepted) {
    GRID_STRIDE(i, g.volume * g.chains) {
        unsigned int chain = i / g.volume, s = i - chain * g.volume;
        if (site_colour(s, D, g) != colour) continue;
        double* pc = phi + chain * g.volume;
        double nb = neighbour_sum<D, true>(pc, s, g);
        double cur = pc[s];
        unsigned long long acc = 0;
        for (unsigned int h = 0; h < hits; ++h) {
            philox_u4 b = philox_local_block(s, g.chain0 + chain, step0 + h, colour, k0, k1);
            double prop = cur + delta * (2.0 * philox_uniform(b.x, b.y) - 1.0);
            double p2 = prop * prop, c2 = cur * cur;
            double ds = -c.hop * (prop - cur) * nb + (p2 - c2) * (c.u2 + c.u4 * (p2 + c2));
            if (philox_uniform(b.z, b.w) < exp(-ds)) { cur = prop; ++acc; }
        }
        pc[s] = cur;
        atomicAdd(&accepted[chain], acc);
    }
}

#define SCALAR_METROPOLIS(D)                                                                          \
    extern "C" __global__ void scalar_metropolis_d##D(double* phi, Geom g, Couplings c, double delta, \
                                                      unsigned int colour, unsigned long long step0,  \
                                                      unsigned int hits, unsigned int k0,             \
                                                      unsigned int k1, unsigned long long* accepted) { \
        scalar_metropolis<D>(phi, g, c, delta, colour, step0, hits, k0, k1, accepted);                \
    }                                                                                                 \
    LATTICEML_KERNEL(scalar_metropolis_d##D)
SCALAR_METROPOLIS(1)
SCALAR_METROPOLIS(2)
SCALAR_METROPOLIS(3)
SCALAR_METROPOLIS(4)
