// The XY model S = -beta sum_<xy> cos(theta_x - theta_y): checkerboard Metropolis (independent
// uniform proposals, `hits` per site) and overrelaxation (reflection through the local field).
// One launch updates one colour of every chain; the other colour is only read. CPU twins:
// src/theory/xy/cpu.rs, which mirrors the per-site arithmetic operation by operation.

#define XY_TAU 6.283185307179586

// theta mod 2 pi in [0, 2 pi).
__device__ __forceinline__ double xy_wrap(double x) {
    double r = x - XY_TAU * floor(x / XY_TAU);
    return (r >= XY_TAU || r < 0.0) ? 0.0 : r;
}

// sum over the 2D neighbours of cos(a - theta_n), forward then backward per axis.
template <int D>
__device__ __forceinline__ double xy_bond_sum(const double* th, unsigned int s, double a, const Geom& g) {
    double acc = 0.0;
    for (int mu = 0; mu < D; ++mu) {
        int x = site_coord(s, mu, D, g);
        acc += cos(a - th[site_step(s, x, mu, true, g)]);
        acc += cos(a - th[site_step(s, x, mu, false, g)]);
    }
    return acc;
}

// Hit h draws the block philox_local_block(site, chain, step0 + h, colour).
template <int D>
__device__ __forceinline__ void xy_metropolis(double* theta, const Geom g, double beta, unsigned int colour,
                                              unsigned long long step0, unsigned int hits, unsigned int k0,
                                              unsigned int k1, unsigned long long* accepted) {
    GRID_STRIDE(i, g.volume * g.chains) {
        unsigned int chain = i / g.volume, s = i - chain * g.volume;
        if (site_colour(s, D, g) != colour) continue;
        double* th = theta + chain * g.volume;
        double cur = th[s];
        unsigned long long acc = 0;
        for (unsigned int h = 0; h < hits; ++h) {
            philox_u4 b = philox_local_block(s, chain, step0 + h, colour, k0, k1);
            double prop = XY_TAU * philox_uniform(b.x, b.y);
            double ds = -beta * (xy_bond_sum<D>(th, s, prop, g) - xy_bond_sum<D>(th, s, cur, g));
            if (philox_uniform(b.z, b.w) < exp(-ds)) { cur = prop; ++acc; }
        }
        th[s] = cur;
        atomicAdd(&accepted[chain], acc);
    }
}

template <int D>
__device__ __forceinline__ void xy_overrelax(double* theta, const Geom g, unsigned int colour) {
    GRID_STRIDE(i, g.volume * g.chains) {
        unsigned int chain = i / g.volume, s = i - chain * g.volume;
        if (site_colour(s, D, g) != colour) continue;
        double* th = theta + chain * g.volume;
        double sx = 0.0, sy = 0.0;
        for (int mu = 0; mu < D; ++mu) {
            int x = site_coord(s, mu, D, g);
            double f = th[site_step(s, x, mu, true, g)], b = th[site_step(s, x, mu, false, g)];
            sx += cos(f) + cos(b);
            sy += sin(f) + sin(b);
        }
        if (sx != 0.0 || sy != 0.0) th[s] = xy_wrap(2.0 * atan2(sy, sx) - th[s]);
    }
}

#define XY_KERNELS(D)                                                                                 \
    extern "C" __global__ void xy_metropolis_d##D(double* theta, Geom g, double beta, unsigned int colour, \
                                                  unsigned long long step0, unsigned int hits,        \
                                                  unsigned int k0, unsigned int k1,                   \
                                                  unsigned long long* accepted) {                     \
        xy_metropolis<D>(theta, g, beta, colour, step0, hits, k0, k1, accepted);                      \
    }                                                                                                 \
    LATTICEML_KERNEL(xy_metropolis_d##D)                                                              \
    extern "C" __global__ void xy_overrelax_d##D(double* theta, Geom g, unsigned int colour) {         \
        xy_overrelax<D>(theta, g, colour);                                                            \
    }                                                                                                 \
    LATTICEML_KERNEL(xy_overrelax_d##D)
XY_KERNELS(1)
XY_KERNELS(2)
XY_KERNELS(3)
XY_KERNELS(4)
