// The score network's building blocks (a U-Net on the lattice, src/nn/ops/unet.rs and
// src/nn/ops/group_norm_silu.rs), templated on T = float | double, instantiated as name_f32 /
// name_f64. CPU twins: the same files. Statistics accumulate in double (block_sum, common.cuh).

// Group normalisation (Wu, He, ECCV 2018) without its affine part: each of `count` groups of n
// contiguous values (one sample's C/G channels × H × W) is normalised, y = (x − μ) r with
// r = 1/√(σ² + eps), σ² the biased variance (two passes: mean, then squared deviations). One block
// per group.
template <typename T>
__device__ void group_stats(const T* x, unsigned n, double eps, double* mean, double* rstd) {
    double s = 0.0;
    for (unsigned i = threadIdx.x; i < n; i += blockDim.x) s += (double)x[i];
    double m = block_sum(s) / n;
    double q = 0.0;
    for (unsigned i = threadIdx.x; i < n; i += blockDim.x) {
        double d = (double)x[i] - m;
        q += d * d;
    }
    *mean = m;
    *rstd = 1.0 / sqrt(block_sum(q) / n + eps);
}

template <typename T>
__device__ void group_norm(const T* x, T* y, unsigned count, unsigned n, double eps) {
    for (unsigned g = blockIdx.x; g < count; g += gridDim.x) {
        const T* xg = x + (size_t)g * n;
        double m, r;
        group_stats(xg, n, eps, &m, &r);
        for (unsigned i = threadIdx.x; i < n; i += blockDim.x) y[(size_t)g * n + i] = (T)(((double)xg[i] - m) * r);
    }
}

// dx = r (dy − mean(dy) − y · mean(dy y)) per group, with y the normalised values.
template <typename T>
__device__ void group_norm_grad(const T* x, const T* y, const T* dy, T* dx, unsigned count, unsigned n,
                                double eps) {
    for (unsigned g = blockIdx.x; g < count; g += gridDim.x) {
        size_t o = (size_t)g * n;
        double m, r;
        group_stats(x + o, n, eps, &m, &r);
        double s = 0.0, sy = 0.0;
        for (unsigned i = threadIdx.x; i < n; i += blockDim.x) {
            s += (double)dy[o + i];
            sy += (double)dy[o + i] * (double)y[o + i];
        }
        double mdy = block_sum(s) / n, mdyy = block_sum(sy) / n;
        for (unsigned i = threadIdx.x; i < n; i += blockDim.x)
            dx[o + i] = (T)(r * ((double)dy[o + i] - mdy - (double)y[o + i] * mdyy));
    }
}

// 2×2 block sums: y [planes][h][w] = scale Σ x [planes][2h][2w] over each block (average pooling
// with scale 1/4; the gradient of nearest up-sampling with scale 1).
template <typename T>
__device__ void pool2(const T* x, T* y, unsigned planes, unsigned h, unsigned w, T scale) {
    GRID_STRIDE(i, planes * h * w) {
        unsigned p = i / (h * w), r = i - p * h * w, a = r / w, b = r - a * w;
        const T* src = x + (size_t)p * 4 * h * w + (size_t)(2 * a) * 2 * w + 2 * b;
        y[i] = scale * (src[0] + src[1] + src[2 * w] + src[2 * w + 1]);
    }
}

// Nearest 2× up-sampling: y [planes][2h][2w] = scale x [planes][h][w] at (i/2, j/2) (the gradient
// of average pooling with scale 1/4).
template <typename T>
__device__ void unpool2(const T* x, T* y, unsigned planes, unsigned h, unsigned w, T scale) {
    GRID_STRIDE(i, planes * 4 * h * w) {
        unsigned p = i / (4 * h * w), r = i - p * 4 * h * w, a = r / (2 * w), b = r - a * 2 * w;
        y[i] = scale * x[(size_t)p * h * w + (size_t)(a / 2) * w + b / 2];
    }
}

// Gaussian Fourier features of the diffusion time (Tancik et al. 2020; Song et al. 2021):
// y [B][2E] = (sin 2π t_b w_k, cos 2π t_b w_k), and dt_b = Σ_k 2π w_k (cos · dy_sin − sin · dy_cos).
template <typename T>
__device__ void fourier_features(const T* t, const T* wk, T* y, unsigned batch, unsigned e) {
    GRID_STRIDE(i, batch * e) {
        unsigned b = i / e, k = i - b * e;
        double s, c;
        sincos(6.283185307179586 * (double)t[b] * (double)wk[k], &s, &c);
        y[(size_t)b * 2 * e + k] = (T)s;
        y[(size_t)b * 2 * e + e + k] = (T)c;
    }
}

template <typename T>
__device__ void fourier_features_grad(const T* t, const T* wk, const T* dy, T* dt, unsigned batch, unsigned e) {
    GRID_STRIDE(b, batch) {
        double acc = 0.0;
        for (unsigned k = 0; k < e; ++k) {
            double f = 6.283185307179586 * (double)wk[k], s, c;
            sincos(f * (double)t[b], &s, &c);
            acc += f * (c * (double)dy[(size_t)b * 2 * e + k] - s * (double)dy[(size_t)b * 2 * e + e + k]);
        }
        dt[b] = (T)acc;
    }
}

// The tail of a block fused (src/nn/ops/group_norm_silu.rs): y = SiLU(γ_c · GroupNorm(x + s_bc) +
// β_c) for x [B][C][plane], s [B][C], in groups of cpg channels; one block per group (count =
// B·G), which also writes the normalised values n for the backward pass. Each value follows the
// chain of separate ops: a T add, the double normalisation rounded once, a T multiply and add.
template <typename T> __device__ __forceinline__ T sigm_of(T x) { return T(1) / (T(1) + exp(-x)); }

template <typename T>
__device__ double shifted_sum(const T* x, const T* s, unsigned g, unsigned cpg, unsigned plane, double m,
                              bool square) {
    double acc = 0.0;
    for (unsigned i = threadIdx.x; i < cpg * plane; i += blockDim.x) {
        double d = (double)(x[(size_t)g * cpg * plane + i] + s[(size_t)g * cpg + i / plane]) - m;
        acc += square ? d * d : d;
    }
    return block_sum(acc);
}

// Mean and 1/√(σ² + eps) of group g's shifted values x + s (two passes).
template <typename T>
__device__ void shifted_stats(const T* x, const T* s, unsigned g, unsigned cpg, unsigned plane, double eps,
                              double* mean, double* rstd) {
    double len = (double)cpg * plane;
    double m = shifted_sum(x, s, g, cpg, plane, 0.0, false) / len;
    *mean = m;
    *rstd = 1.0 / sqrt(shifted_sum(x, s, g, cpg, plane, m, true) / len + eps);
}

template <typename T>
__device__ void group_norm_silu(const T* x, const T* s, const T* gamma, const T* beta, T* y, T* n,
                                unsigned count, unsigned cpg, unsigned plane, unsigned channels, double eps) {
    for (unsigned g = blockIdx.x; g < count; g += gridDim.x) {
        double m, r;
        shifted_stats(x, s, g, cpg, plane, eps, &m, &r);
        for (unsigned i = threadIdx.x; i < cpg * plane; i += blockDim.x) {
            size_t o = (size_t)g * cpg * plane + i;
            unsigned sc = g * cpg + i / plane, c = sc % channels;
            T v = x[o] + s[sc];
            T nv = (T)(((double)v - m) * r);
            T a = nv * gamma[c] + beta[c];
            n[o] = nv;
            y[o] = a * sigm_of(a);
        }
    }
}

// Backward: pass 1 writes dn = SiLU′(a)·dy·γ into dx and sums, per channel, da and da·n (into
// parts[3·(b·C + c) + 0, 1]); pass 2 turns dn into dx = r (dn − mean dn − n mean(dn n)) and sums
// dx per channel (parts[… + 2]). A thread rereads only what it wrote itself.
template <typename T>
__device__ void group_norm_silu_grad(const T* x, const T* s, const T* gamma, const T* beta, const T* n,
                                     const T* dy, T* dx, double* parts, unsigned count, unsigned cpg,
                                     unsigned plane, unsigned channels, double eps) {
    for (unsigned g = blockIdx.x; g < count; g += gridDim.x) {
        double m, r;
        shifted_stats(x, s, g, cpg, plane, eps, &m, &r);
        double gs = 0.0, gsn = 0.0;
        for (unsigned j = 0; j < cpg; ++j) {
            unsigned sc = g * cpg + j, c = sc % channels;
            double a_sum = 0.0, an_sum = 0.0;
            for (unsigned i = threadIdx.x; i < plane; i += blockDim.x) {
                size_t o = (size_t)sc * plane + i;
                T a = n[o] * gamma[c] + beta[c], sg = sigm_of(a);
                T da = dy[o] * (sg + a * sg * (T(1) - sg));
                T dn = da * gamma[c];
                dx[o] = dn;
                a_sum += (double)da;
                an_sum += (double)da * (double)n[o];
                gs += (double)dn;
                gsn += (double)dn * (double)n[o];
            }
            a_sum = block_sum(a_sum);
            an_sum = block_sum(an_sum);
            if (threadIdx.x == 0) {
                parts[3 * (size_t)sc] = a_sum;
                parts[3 * (size_t)sc + 1] = an_sum;
            }
        }
        double len = (double)cpg * plane;
        double mdn = block_sum(gs) / len, mdnn = block_sum(gsn) / len;
        for (unsigned j = 0; j < cpg; ++j) {
            unsigned sc = g * cpg + j;
            double d_sum = 0.0;
            for (unsigned i = threadIdx.x; i < plane; i += blockDim.x) {
                size_t o = (size_t)sc * plane + i;
                T d = (T)(r * ((double)dx[o] - mdn - (double)n[o] * mdnn));
                dx[o] = d;
                d_sum += (double)d;
            }
            d_sum = block_sum(d_sum);
            if (threadIdx.x == 0) parts[3 * (size_t)sc + 2] = d_sum;
        }
    }
}

// ∂L/∂s_bc = parts[3(b·C + c) + 2]; ∂L/∂β_c, ∂L/∂γ_c = Σ_b parts[3(b·C + c) + 0, 1] in sample order.
template <typename T>
__device__ void channel_fold(const double* parts, T* dgamma, T* dbeta, T* ds, unsigned batch, unsigned channels) {
    GRID_STRIDE(i, batch * channels) {
        ds[i] = (T)parts[3 * (size_t)i + 2];
        if (i < channels) {
            double bs = 0.0, gs = 0.0;
            for (unsigned b = 0; b < batch; ++b) {
                bs += parts[3 * ((size_t)b * channels + i)];
                gs += parts[3 * ((size_t)b * channels + i) + 1];
            }
            dbeta[i] = (T)bs;
            dgamma[i] = (T)gs;
        }
    }
}

#define INSTANTIATE(T, S)                                                                           \
    extern "C" __global__ void group_norm_##S(const T* x, T* y, unsigned count, unsigned n,          \
                                              double eps) {                                         \
        group_norm(x, y, count, n, eps); }                                                          \
    LATTICEML_KERNEL(group_norm_##S)                                                                \
    extern "C" __global__ void group_norm_grad_##S(const T* x, const T* y, const T* dy, T* dx,       \
                                                   unsigned count, unsigned n, double eps) {        \
        group_norm_grad(x, y, dy, dx, count, n, eps); }                                             \
    LATTICEML_KERNEL(group_norm_grad_##S)                                                           \
    extern "C" __global__ void pool2_##S(const T* x, T* y, unsigned planes, unsigned h, unsigned w,  \
                                         T scale) {                                                 \
        pool2(x, y, planes, h, w, scale); }                                                         \
    LATTICEML_KERNEL(pool2_##S)                                                                     \
    extern "C" __global__ void unpool2_##S(const T* x, T* y, unsigned planes, unsigned h,            \
                                           unsigned w, T scale) {                                   \
        unpool2(x, y, planes, h, w, scale); }                                                       \
    LATTICEML_KERNEL(unpool2_##S)                                                                   \
    extern "C" __global__ void fourier_features_##S(const T* t, const T* wk, T* y, unsigned batch,   \
                                                    unsigned e) {                                   \
        fourier_features(t, wk, y, batch, e); }                                                     \
    LATTICEML_KERNEL(fourier_features_##S)                                                          \
    extern "C" __global__ void fourier_features_grad_##S(const T* t, const T* wk, const T* dy,       \
                                                         T* dt, unsigned batch, unsigned e) {       \
        fourier_features_grad(t, wk, dy, dt, batch, e); }                                           \
    LATTICEML_KERNEL(fourier_features_grad_##S)                                                     \
    extern "C" __global__ void group_norm_silu_##S(const T* x, const T* s, const T* gamma,           \
                                                   const T* beta, T* y, T* n, unsigned count,       \
                                                   unsigned cpg, unsigned plane, unsigned channels, \
                                                   double eps) {                                    \
        group_norm_silu(x, s, gamma, beta, y, n, count, cpg, plane, channels, eps); }               \
    LATTICEML_KERNEL(group_norm_silu_##S)                                                           \
    extern "C" __global__ void group_norm_silu_grad_##S(                                            \
        const T* x, const T* s, const T* gamma, const T* beta, const T* n, const T* dy, T* dx,      \
        double* parts, unsigned count, unsigned cpg, unsigned plane, unsigned channels,             \
        double eps) {                                                                               \
        group_norm_silu_grad(x, s, gamma, beta, n, dy, dx, parts, count, cpg, plane, channels,      \
                             eps); }                                                                \
    LATTICEML_KERNEL(group_norm_silu_grad_##S)                                                      \
    extern "C" __global__ void channel_fold_##S(const double* parts, T* dgamma, T* dbeta, T* ds,     \
                                                unsigned batch, unsigned channels) {                \
        channel_fold(parts, dgamma, dbeta, ds, batch, channels); }                                  \
    LATTICEML_KERNEL(channel_fold_##S)

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
