// Normalizing-flow kernels (src/flow/), templated on T = float | double, instantiated as
// name_f32 / name_f64. CPU twins: src/flow/coupling.rs.
//
// The fused affine coupling (RealNVP, Dinh et al. 2017; on the lattice Albergo, Kanwar, Shanahan,
// PRD 100 034515 (2019)): per sample b and site i, with frozen sites mask[i] != 0 and the
// network's output st = [B, 2, V] (channel 0 = s, channel 1 = t),
//   dir = +1:  y = x e^s + t on active sites, log|det J| = +Σ_active s
//   dir = -1:  y = (x - t) e^-s,               log|det J| = -Σ_active s
// and y = x on frozen sites. One block per sample computes y and reduces its log-determinant
// in double (block_sum).

template <typename T>
__device__ void coupling_forward(const T* x, const T* st, const T* mask, T* y, T* logdet,
                                 unsigned volume, int dir) {
    unsigned b = blockIdx.x;
    const T* xb = x + (size_t)b * volume;
    const T* sb = st + (size_t)b * 2 * volume;
    const T* tb = sb + volume;
    T* yb = y + (size_t)b * volume;
    double acc = 0.0;
    for (unsigned i = threadIdx.x; i < volume; i += blockDim.x) {
        if (mask[i] != T(0)) {
            yb[i] = xb[i];
            continue;
        }
        T s = sb[i];
        yb[i] = dir > 0 ? xb[i] * exp(s) + tb[i] : (xb[i] - tb[i]) * exp(-s);
        acc += (double)s;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) logdet[b] = (T)(dir > 0 ? acc : -acc);
}

// Gradients from gy = dL/dy [B, V] and gld = dL/dlogdet [B]: dx [B, V] and dst [B, 2, V].
//   dir = +1: dx = gy e^s,  ds = gy x e^s + gld,  dt = gy
//   dir = -1: dx = gy e^-s, ds = -gy y - gld,     dt = -gy e^-s
// Frozen sites: dx = gy, ds = dt = 0.
template <typename T>
__device__ void coupling_backward(const T* x, const T* st, const T* mask, const T* y, const T* gy,
                                  const T* gld, T* dx, T* dst, unsigned batch, unsigned volume, int dir) {
    GRID_STRIDE(k, batch * volume) {
        unsigned b = k / volume, i = k - b * volume;
        T* ds = dst + (size_t)b * 2 * volume;
        if (mask[i] != T(0)) {
            dx[k] = gy[k];
            ds[i] = T(0);
            ds[volume + i] = T(0);
            continue;
        }
        T s = st[(size_t)b * 2 * volume + i];
        if (dir > 0) {
            T e = exp(s);
            dx[k] = gy[k] * e;
            ds[i] = gy[k] * x[k] * e + gld[b];
            ds[volume + i] = gy[k];
        } else {
            T e = exp(-s);
            dx[k] = gy[k] * e;
            ds[i] = -gy[k] * y[k] - gld[b];
            ds[volume + i] = -gy[k] * e;
        }
    }
}

#define INSTANTIATE(T, S)                                                                           \
    extern "C" __global__ void coupling_forward_##S(const T* x, const T* st, const T* mask, T* y,   \
                                                    T* logdet, unsigned volume, int dir) {          \
        coupling_forward(x, st, mask, y, logdet, volume, dir); }                                    \
    LATTICEML_KERNEL(coupling_forward_##S)                                                          \
    extern "C" __global__ void coupling_backward_##S(const T* x, const T* st, const T* mask,        \
                                                     const T* y, const T* gy, const T* gld, T* dx,  \
                                                     T* dst, unsigned batch, unsigned volume, int dir) { \
        coupling_backward(x, st, mask, y, gy, gld, dx, dst, batch, volume, dir); }                  \
    LATTICEML_KERNEL(coupling_backward_##S)

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
