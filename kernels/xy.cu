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

// Each site keeps its unit vector (cos theta, sin theta) in unit[2 i], unit[2 i + 1], always equal to
// sincos(theta): the local field is then a sum of stored components, and a proposal costs one sincos.

// The local field sum over the 2D neighbours of (cos theta_n, sin theta_n), forward then backward per axis.
template <int D>
__device__ __forceinline__ void xy_field(const double* u, unsigned int s, const Geom& g, double* fc, double* fs) {
    double c = 0.0, sn = 0.0;
    for (int mu = 0; mu < D; ++mu) {
        int x = site_coord(s, mu, D, g);
        unsigned int f = site_step(s, x, mu, true, g), b = site_step(s, x, mu, false, g);
        c += u[2 * f] + u[2 * b];
        sn += u[2 * f + 1] + u[2 * b + 1];
    }
    *fc = c;
    *fs = sn;
}

// Hit h draws the block philox_local_block(site, chain0 + chain, step0 + h, colour); the action change of
// theta -> theta' is -beta ((cos theta' - cos theta) C + (sin theta' - sin theta) S).
template <int D>
__device__ __forceinline__ void xy_metropolis(double* theta, double* unit, const Geom g, double beta,
                                              unsigned int colour, unsigned long long step0, unsigned int hits,
                                              unsigned int k0, unsigned int k1, unsigned long long* accepted) {
    GRID_STRIDE(i, g.volume * g.chains) {
        unsigned int chain = i / g.volume, s = i - chain * g.volume;
        if (site_colour(s, D, g) != colour) continue;
        double* u = unit + 2 * chain * g.volume;
        double fc, fs;
        xy_field<D>(u, s, g, &fc, &fs);
        double cur = theta[i], c = u[2 * s], sn = u[2 * s + 1];
        unsigned long long acc = 0;
        for (unsigned int h = 0; h < hits; ++h) {
            philox_u4 b = philox_local_block(s, g.chain0 + chain, step0 + h, colour, k0, k1);
            double prop = XY_TAU * philox_uniform(b.x, b.y);
            double ps, pc;
            sincos(prop, &ps, &pc);
            double ds = -beta * ((pc - c) * fc + (ps - sn) * fs);
            if (philox_uniform(b.z, b.w) < exp(-ds)) { cur = prop; c = pc; sn = ps; ++acc; }
        }
        theta[i] = cur;
        u[2 * s] = c;
        u[2 * s + 1] = sn;
        atomicAdd(&accepted[chain], acc);
    }
}

// theta -> 2 arg(C + i S) - theta, unchanged where the local field vanishes.
template <int D>
__device__ __forceinline__ void xy_overrelax(double* theta, double* unit, const Geom g, unsigned int colour) {
    GRID_STRIDE(i, g.volume * g.chains) {
        unsigned int chain = i / g.volume, s = i - chain * g.volume;
        if (site_colour(s, D, g) != colour) continue;
        double* u = unit + 2 * chain * g.volume;
        double fc, fs;
        xy_field<D>(u, s, g, &fc, &fs);
        if (fc != 0.0 || fs != 0.0) {
            double t = xy_wrap(2.0 * atan2(fs, fc) - theta[i]);
            theta[i] = t;
            sincos(t, &u[2 * s + 1], &u[2 * s]);
        }
    }
}

// unit = (cos theta, sin theta) for every site: after new fields are set.
extern "C" __global__ void xy_units(const double* theta, double* unit, unsigned int n) {
    GRID_STRIDE(i, n) { sincos(theta[i], &unit[2 * i + 1], &unit[2 * i]); }
}
LATTICEML_KERNEL(xy_units)

#define XY_KERNELS(D)                                                                                 \
    extern "C" __global__ void xy_metropolis_d##D(double* theta, double* unit, Geom g, double beta,    \
                                                  unsigned int colour, unsigned long long step0,      \
                                                  unsigned int hits, unsigned int k0,                 \
                                                  unsigned int k1, unsigned long long* accepted) {    \
        xy_metropolis<D>(theta, unit, g, beta, colour, step0, hits, k0, k1, accepted);                \
    }                                                                                                 \
    LATTICEML_KERNEL(xy_metropolis_d##D)                                                              \
    extern "C" __global__ void xy_overrelax_d##D(double* theta, double* unit, Geom g, unsigned int colour) { \
        xy_overrelax<D>(theta, unit, g, colour);                                                      \
    }                                                                                                 \
    LATTICEML_KERNEL(xy_overrelax_d##D)
XY_KERNELS(1)
XY_KERNELS(2)
XY_KERNELS(3)
XY_KERNELS(4)
