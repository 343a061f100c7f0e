// Neural-network kernels for the autodiff tape (src/nn/), templated on T = float | double and
// instantiated as name_f32 / name_f64; elementwise kernels are looked up by the function's name
// (unary_tanh_f32, binary_grad_mul_f64, ...). CPU twins: src/nn/cpu.rs. Indices are 32-bit: the host
// refuses tensors of 2^31 elements or more. Reductions accumulate in double (block_sum, common.cuh).

#define MAXD 6

// Elementwise functions, one struct each (names match nn::Unary::kernel_name): f(x, a) and
// df = f'(x)·dy given y = f(x); a is the function's parameter (leaky ReLU slope, scale, shift).
template <typename T> __device__ __forceinline__ T sigm(T x) { return T(1) / (T(1) + exp(-x)); }

#define ELEMENTWISE_FN(NAME, F, DF)                                                              \
    struct Fn_##NAME {                                                                           \
        template <typename T> __device__ static __forceinline__ T f(T x, T a) { return F; }      \
        template <typename T> __device__ static __forceinline__ T df(T x, T y, T dy, T a) { return DF; } \
    };

ELEMENTWISE_FN(exp, exp(x), dy * y)
ELEMENTWISE_FN(log, log(x), dy / x)
ELEMENTWISE_FN(tanh, tanh(x), dy * (T(1) - y * y))
ELEMENTWISE_FN(sigmoid, sigm(x), dy * y * (T(1) - y))
ELEMENTWISE_FN(softplus, (x > T(0) ? x : T(0)) + log1p(exp(-fabs(x))), dy * sigm(x))
ELEMENTWISE_FN(leaky_relu, x > T(0) ? x : a * x, x > T(0) ? dy : a * dy)
ELEMENTWISE_FN(silu, x * sigm(x), dy * (sigm(x) + x * sigm(x) * (T(1) - sigm(x))))
ELEMENTWISE_FN(scale, a * x, a * dy)
ELEMENTWISE_FN(shift, x + a, dy)
ELEMENTWISE_FN(square, x * x, T(2) * x * dy)

template <typename F, typename T> __device__ void unary(const T* x, T* y, unsigned n, T a) {
    GRID_STRIDE(i, n) y[i] = F::f(x[i], a);
}
template <typename F, typename T> __device__ void unary_grad(const T* x, const T* y, const T* dy, T* dx, unsigned n, T a) {
    GRID_STRIDE(i, n) dx[i] = F::df(x[i], y[i], dy[i], a);
}

// Broadcasting: output multi-index -> offsets in a and b (stride 0 on broadcast axes).
struct Bcast { int ndim; int out[MAXD]; int sa[MAXD]; int sb[MAXD]; };

__device__ __forceinline__ void bcast_offsets(unsigned i, const Bcast& g, unsigned* oa, unsigned* ob) {
    unsigned a = 0, b = 0;
    for (int k = g.ndim - 1; k >= 0; --k) {
        unsigned c = i % (unsigned)g.out[k];
        i /= (unsigned)g.out[k];
        a += c * g.sa[k];
        b += c * g.sb[k];
    }
    *oa = a; *ob = b;
}

// Broadcast arithmetic, one struct each (names match nn::Binary::kernel_name): f(a, b) and the
// gradient with respect to a (wrt == 0) or b (wrt == 1), times dc.
#define BINARY_FN(NAME, F, DA, DB)                                                               \
    struct Fn_##NAME {                                                                           \
        template <typename T> __device__ static __forceinline__ T f(T a, T b) { return F; }      \
        template <typename T> __device__ static __forceinline__ T df(int wrt, T a, T b, T dc) { return wrt == 0 ? (DA) : (DB); } \
    };

BINARY_FN(add, a + b, dc, dc)
BINARY_FN(sub, a - b, dc, -dc)
BINARY_FN(mul, a * b, dc * b, dc * a)
BINARY_FN(div, a / b, dc / b, -dc * a / (b * b))
BINARY_FN(first, a, dc, T(0))

template <typename F, typename T> __device__ void binary(const T* a, const T* b, T* c, unsigned n, Bcast g) {
    GRID_STRIDE(i, n) {
        unsigned oa, ob;
        bcast_offsets(i, g, &oa, &ob);
        c[i] = F::f(a[oa], b[ob]);
    }
}

// Gradient on the output's shape; reduce_to then sums it onto the input's shape.
template <typename F, typename T> __device__ void binary_grad(const T* a, const T* b, const T* dc, T* out, unsigned n, Bcast g, int wrt) {
    GRID_STRIDE(i, n) {
        unsigned oa, ob;
        bcast_offsets(i, g, &oa, &ob);
        out[i] = F::df(wrt, a[oa], b[ob], dc[i]);
    }
}

// Sum over the reduced axes onto each target element: one block per target, in double, fixed order.
struct Reduce { int nkeep; int keep[MAXD]; int keep_stride[MAXD]; int nred; int red[MAXD]; int red_stride[MAXD]; unsigned count; };

template <typename T> __device__ void reduce_to(const T* x, T* y, Reduce r, T scale) {
    unsigned t = blockIdx.x, base = 0;
    for (int k = r.nkeep - 1; k >= 0; --k) { base += (t % (unsigned)r.keep[k]) * r.keep_stride[k]; t /= (unsigned)r.keep[k]; }
    double acc = 0.0;
    for (unsigned j = threadIdx.x; j < r.count; j += blockDim.x) {
        unsigned off = base, q = j;
        for (int k = r.nred - 1; k >= 0; --k) { off += (q % (unsigned)r.red[k]) * r.red_stride[k]; q /= (unsigned)r.red[k]; }
        acc += (double)x[off];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) y[blockIdx.x] = (T)(acc * (double)scale);
}

// C[M,N] = op(A) op(B), op = transpose when ta/tb; 16x16 shared-memory tiles. Column tiles on
// grid x; row tiles strided over grid y, which the host caps at 65535.
#define TILE 16
template <typename T> __device__ void matmul(const T* A, const T* B, T* C, int M, int N, int K, int ta, int tb) {
    __shared__ T As[TILE][TILE + 1], Bs[TILE][TILE + 1];
    int col = blockIdx.x * TILE + threadIdx.x;
    for (int row0 = blockIdx.y * TILE; row0 < M; row0 += gridDim.y * TILE) {
        int row = row0 + threadIdx.y;
        double acc = 0.0;  // a tile's TILE products summed in T, the tiles in double
        for (int k0 = 0; k0 < K; k0 += TILE) {
            int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
            As[threadIdx.y][threadIdx.x] = (row < M && ka < K) ? (ta ? A[(unsigned)ka * M + row] : A[(unsigned)row * K + ka]) : T(0);
            Bs[threadIdx.y][threadIdx.x] = (kb < K && col < N) ? (tb ? B[(unsigned)col * K + kb] : B[(unsigned)kb * N + col]) : T(0);
            __syncthreads();
            T part = T(0);
#pragma unroll
            for (int k = 0; k < TILE; ++k) part += As[threadIdx.y][k] * Bs[k][threadIdx.x];
            acc += (double)part;
            __syncthreads();
        }
        if (row < M && col < N) C[(unsigned)row * N + col] = (T)acc;
    }
}

// 2D convolution over [B, C, H, W] with periodic wrap; tap (ky, kx) reads offset (ky - KH/2, kx - KW/2).
// mode 0: periodic; 1: causal type A (only sources strictly before the output site in raster
// order y*W + x, after wrapping); 2: causal type B (sources at or before it); 3: zero padding
// (taps whose unwrapped source lies outside the lattice read 0).
struct Conv { int B, Ci, Co, H, W, KH, KW, mode; };

__device__ __forceinline__ int wrap(int v, int n) { v %= n; return v < 0 ? v + n : v; }
__device__ __forceinline__ bool inside(int v, int n) { return v >= 0 && v < n; }
// Whether output site dst reads source site src through a tap whose unwrapped source (or, for
// the transposed gathers, unwrapped output) is (uy, ux).
__device__ __forceinline__ bool allowed(int mode, int dst, int src, int uy, int ux, const Conv& c) {
    if (mode == 3) return inside(uy, c.H) && inside(ux, c.W);
    return mode == 0 || (mode == 1 ? src < dst : src <= dst);
}

template <typename T> __device__ void conv2d(const T* x, const T* w, T* y, Conv c) {
    GRID_STRIDE(i, (unsigned)c.B * c.Co * c.H * c.W) {
        int px = i % c.W, py = (i / c.W) % c.H, co = (i / (c.W * c.H)) % c.Co, b = i / (c.W * c.H * c.Co);
        int dst = py * c.W + px;
        T acc = T(0);
        for (int ci = 0; ci < c.Ci; ++ci) {
            const T* xp = x + ((size_t)b * c.Ci + ci) * c.H * c.W;
            const T* wp = w + ((size_t)co * c.Ci + ci) * c.KH * c.KW;
            for (int ky = 0; ky < c.KH; ++ky) {
                int uy = py + ky - c.KH / 2, sy = wrap(uy, c.H);
                for (int kx = 0; kx < c.KW; ++kx) {
                    int ux = px + kx - c.KW / 2, src = sy * c.W + wrap(ux, c.W);
                    if (allowed(c.mode, dst, src, uy, ux, c)) acc += wp[ky * c.KW + kx] * xp[src];
                }
            }
        }
        y[i] = acc;
    }
}

template <typename T> __device__ void conv2d_grad_input(const T* dy, const T* w, T* dx, Conv c) {
    GRID_STRIDE(i, (unsigned)c.B * c.Ci * c.H * c.W) {
        int qx = i % c.W, qy = (i / c.W) % c.H, ci = (i / (c.W * c.H)) % c.Ci, b = i / (c.W * c.H * c.Ci);
        int src = qy * c.W + qx;
        T acc = T(0);
        for (int co = 0; co < c.Co; ++co) {
            const T* dp = dy + ((size_t)b * c.Co + co) * c.H * c.W;
            const T* wp = w + ((size_t)co * c.Ci + ci) * c.KH * c.KW;
            for (int ky = 0; ky < c.KH; ++ky) {
                int uy = qy - (ky - c.KH / 2), ty = wrap(uy, c.H);
                for (int kx = 0; kx < c.KW; ++kx) {
                    int ux = qx - (kx - c.KW / 2), dst = ty * c.W + wrap(ux, c.W);
                    if (allowed(c.mode, dst, src, uy, ux, c)) acc += wp[ky * c.KW + kx] * dp[dst];
                }
            }
        }
        dx[i] = acc;
    }
}

// One block per weight element, summing over batch and sites in double, in a fixed order.
template <typename T> __device__ void conv2d_grad_weight(const T* dy, const T* x, T* dw, Conv c) {
    int e = blockIdx.x;
    int kx = e % c.KW, ky = (e / c.KW) % c.KH, ci = (e / (c.KW * c.KH)) % c.Ci, co = e / (c.KW * c.KH * c.Ci);
    unsigned plane = (unsigned)c.H * c.W, total = (unsigned)c.B * plane;
    double acc = 0.0;
    for (unsigned j = threadIdx.x; j < total; j += blockDim.x) {
        int b = j / plane, dst = j % plane, py = dst / c.W, px = dst % c.W;
        int uy = py + ky - c.KH / 2, ux = px + kx - c.KW / 2;
        int src = wrap(uy, c.H) * c.W + wrap(ux, c.W);
        if (allowed(c.mode, dst, src, uy, ux, c))
            acc += (double)(dy[((size_t)b * c.Co + co) * plane + dst] * x[((size_t)b * c.Ci + ci) * plane + src]);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dw[e] = (T)acc;
}

// dst[o*dst_stride + dst_off + k] = src[o*src_stride + src_off + k] for k < len (concat / split).
template <typename T> __device__ void slab_copy(const T* src, T* dst, unsigned outer, unsigned len,
                                               unsigned src_stride, unsigned src_off, unsigned dst_stride, unsigned dst_off) {
    GRID_STRIDE(i, outer * len) {
        unsigned o = i / len, k = i - o * len;
        dst[o * dst_stride + dst_off + k] = src[o * src_stride + src_off + k];
    }
}

// Fused Adam / AdamW update of one parameter tensor (Kingma & Ba 2015; Loshchilov & Hutter 2019).
// g is scaled by gscale (gradient clipping); decoupled != 0 selects AdamW's weight decay.
struct AdamHyper { double lr, beta1, beta2, eps, weight_decay, gscale, bias1, bias2; int decoupled; };

template <typename T> __device__ void adam(T* p, const T* g, T* m, T* v, unsigned n, AdamHyper h) {
    GRID_STRIDE(i, n) {
        T gi = g[i] * T(h.gscale);
        if (!h.decoupled) gi += T(h.weight_decay) * p[i];
        T mi = T(h.beta1) * m[i] + T(1 - h.beta1) * gi;
        T vi = T(h.beta2) * v[i] + T(1 - h.beta2) * gi * gi;
        m[i] = mi; v[i] = vi;
        T step = (mi / T(h.bias1)) / (sqrt(vi / T(h.bias2)) + T(h.eps));
        if (h.decoupled) step += T(h.weight_decay) * p[i];
        p[i] -= T(h.lr) * step;
    }
}

// B independent linear maps at once (e.g. one small network per bootstrap sample): y[b, n] =
// Σ_h x[b, h] w[b, h, n] + c[b, n], x [B, H], w [B, H, N], c and y [B, N]. The products are formed
// in T and summed over h in double in ascending order, as the chain mul → sum → add does, so the
// CPU twin (src/nn/ops/batched_linear.rs) equals that chain bit for bit. One thread per output.
template <typename T>
__device__ void batched_linear(const T* x, const T* w, const T* c, T* y, unsigned B, unsigned H, unsigned N) {
    GRID_STRIDE(i, B * N) {
        unsigned b = i / N, n = i - b * N;
        const T* xb = x + (size_t)b * H;
        const T* wb = w + (size_t)b * H * N + n;
        double acc = 0.0;
        for (unsigned h = 0; h < H; ++h) acc += (double)(xb[h] * wb[(size_t)h * N]);
        y[i] = (T)acc + c[i];
    }
}

// ∂L/∂w[b, h, n] = dy[b, n] · x[b, h], one thread per weight.
template <typename T>
__device__ void batched_linear_grad_w(const T* x, const T* dy, T* dw, unsigned B, unsigned H, unsigned N) {
    GRID_STRIDE(i, B * H * N) {
        unsigned n = i % N, bh = i / N, b = bh / H;
        dw[i] = dy[(size_t)b * N + n] * x[bh];
    }
}

// ∂L/∂x[b, h] = Σ_n dy[b, n] w[b, h, n]: one block per (b, h), striding over the blocks.
template <typename T>
__device__ void batched_linear_grad_x(const T* w, const T* dy, T* dx, unsigned B, unsigned H, unsigned N) {
    for (unsigned bh = blockIdx.x; bh < B * H; bh += gridDim.x) {
        const T* wr = w + (size_t)bh * N;
        const T* g = dy + (size_t)(bh / H) * N;
        double acc = 0.0;
        for (unsigned n = threadIdx.x; n < N; n += blockDim.x) acc += (double)(g[n] * wr[n]);
        acc = block_sum(acc);
        if (threadIdx.x == 0) dx[bh] = (T)acc;
    }
}

#define INSTANTIATE_UNARY(NAME, T, S)                                                             \
    extern "C" __global__ void unary_##NAME##_##S(const T* x, T* y, unsigned n, T a) { unary<Fn_##NAME>(x, y, n, a); } \
    LATTICEML_KERNEL(unary_##NAME##_##S)                                                         \
    extern "C" __global__ void unary_grad_##NAME##_##S(const T* x, const T* y, const T* dy, T* dx, unsigned n, T a) { \
        unary_grad<Fn_##NAME>(x, y, dy, dx, n, a); }                                             \
    LATTICEML_KERNEL(unary_grad_##NAME##_##S)

#define INSTANTIATE_BINARY(NAME, T, S)                                                            \
    extern "C" __global__ void binary_##NAME##_##S(const T* a, const T* b, T* c, unsigned n, Bcast g) { \
        binary<Fn_##NAME>(a, b, c, n, g); }                                                      \
    LATTICEML_KERNEL(binary_##NAME##_##S)                                                        \
    extern "C" __global__ void binary_grad_##NAME##_##S(const T* a, const T* b, const T* dc, T* o, unsigned n, Bcast g, int wrt) { \
        binary_grad<Fn_##NAME>(a, b, dc, o, n, g, wrt); }                                        \
    LATTICEML_KERNEL(binary_grad_##NAME##_##S)

#define INSTANTIATE_ELEMENTWISE(T, S)                                                             \
    INSTANTIATE_UNARY(exp, T, S) INSTANTIATE_UNARY(log, T, S) INSTANTIATE_UNARY(tanh, T, S)       \
    INSTANTIATE_UNARY(sigmoid, T, S) INSTANTIATE_UNARY(softplus, T, S)                           \
    INSTANTIATE_UNARY(leaky_relu, T, S) INSTANTIATE_UNARY(silu, T, S) INSTANTIATE_UNARY(scale, T, S) \
    INSTANTIATE_UNARY(shift, T, S) INSTANTIATE_UNARY(square, T, S)                               \
    INSTANTIATE_BINARY(add, T, S) INSTANTIATE_BINARY(sub, T, S) INSTANTIATE_BINARY(mul, T, S)     \
    INSTANTIATE_BINARY(div, T, S) INSTANTIATE_BINARY(first, T, S)

INSTANTIATE_ELEMENTWISE(float, f32)
INSTANTIATE_ELEMENTWISE(double, f64)

#define INSTANTIATE(T, S)                                                                                       \
    extern "C" __global__ void reduce_to_##S(const T* x, T* y, Reduce r, T scale) { reduce_to(x, y, r, scale); } \
    LATTICEML_KERNEL(reduce_to_##S)                                                                            \
    extern "C" __global__ void matmul_##S(const T* A, const T* B, T* C, int M, int N, int K, int ta, int tb) { \
        matmul(A, B, C, M, N, K, ta, tb); }                                                                    \
    LATTICEML_KERNEL(matmul_##S)                                                                               \
    extern "C" __global__ void conv2d_##S(const T* x, const T* w, T* y, Conv c) { conv2d(x, w, y, c); }       \
    LATTICEML_KERNEL(conv2d_##S)                                                                               \
    extern "C" __global__ void conv2d_grad_input_##S(const T* dy, const T* w, T* dx, Conv c) {                \
        conv2d_grad_input(dy, w, dx, c); }                                                                     \
    LATTICEML_KERNEL(conv2d_grad_input_##S)                                                                    \
    extern "C" __global__ void conv2d_grad_weight_##S(const T* dy, const T* x, T* dw, Conv c) {               \
        conv2d_grad_weight(dy, x, dw, c); }                                                                    \
    LATTICEML_KERNEL(conv2d_grad_weight_##S)                                                                   \
    extern "C" __global__ void slab_copy_##S(const T* s, T* d, unsigned outer, unsigned len, unsigned ss,      \
                                             unsigned so, unsigned ds, unsigned dof) {                          \
        slab_copy(s, d, outer, len, ss, so, ds, dof); }                                                        \
    LATTICEML_KERNEL(slab_copy_##S)                                                                            \
    extern "C" __global__ void adam_##S(T* p, const T* g, T* m, T* v, unsigned n, AdamHyper h) { adam(p, g, m, v, n, h); } \
    LATTICEML_KERNEL(adam_##S)                                                                                 \
    extern "C" __global__ void batched_linear_##S(const T* x, const T* w, const T* c, T* y, unsigned B,        \
                                                  unsigned H, unsigned N) { batched_linear(x, w, c, y, B, H, N); } \
    LATTICEML_KERNEL(batched_linear_##S)                                                                       \
    extern "C" __global__ void batched_linear_grad_w_##S(const T* x, const T* dy, T* dw, unsigned B, unsigned H, \
                                                         unsigned N) { batched_linear_grad_w(x, dy, dw, B, H, N); } \
    LATTICEML_KERNEL(batched_linear_grad_w_##S)                                                                \
    extern "C" __global__ void batched_linear_grad_x_##S(const T* w, const T* dy, T* dx, unsigned B, unsigned H, \
                                                         unsigned N) { batched_linear_grad_x(w, dy, dx, B, H, N); } \
    LATTICEML_KERNEL(batched_linear_grad_x_##S)

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
