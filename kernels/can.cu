// Continuous-mixture autoregressive networks (src/can/), templated on T = float | double,
// instantiated as name_f32 / name_f64. CPU twins: src/can/mixture.rs and src/can/generate.rs.
//
// Per site the network outputs 3K numbers: mixture logits l_k, and raw concentrations r^a_k,
// r^b_k with a_k = 1 + softplus(r^a_k), b_k = 1 + softplus(r^b_k) (≥ 1, so every density is
// bounded). The conditional of u = θ/2π ∈ (0, 1) is Σ_k π_k Beta(u; a_k, b_k), π = softmax(l)
// (Wang, Jiang, He, Zhou, Chin. Phys. Lett. 39, 120502 (2022)), mixed with a uniform density of
// fixed weight ε = CAN_UNIFORM: q(u) = ε + (1 − ε) Σ_k π_k Beta(u; a_k, b_k). Concentrations above
// 1 make a Beta density vanish at the ends, where the target does not; the uniform part bounds
// the importance weights p/q there (defensive mixture, Hesterberg, Technometrics 37, 185 (1995)),
// without which their variance diverges. The density of θ is q(u) / 2π.
// Everything per site is computed in double, whatever T.

#define CAN_MAX_K 16
#define CAN_U_MIN 5.9604644775390625e-08  // 2^-24: u is clamped to [2^-24, 1 - 2^-24]
#define CAN_LN_2PI 1.8378770664093453
#define CAN_ATTEMPTS 64
#define CAN_UNIFORM 0.05
#define CAN_LN_UNIFORM log(CAN_UNIFORM)
#define CAN_LN_MIXTURE log1p(-CAN_UNIFORM)

// ln Γ(x) for x ≥ 1: the recurrence up to x ≥ 10, then Stirling's series (error < 2e-14).
// Twin: mixture::ln_gamma.
__device__ double can_ln_gamma(double x) {
    double prod = 1.0;
    while (x < 10.0) { prod *= x; x += 1.0; }
    double r = 1.0 / x, r2 = r * r;
    double series = r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 * (1.0 / 1260.0 - r2 * (1.0 / 1680.0 - r2 / 1188.0))));
    return (x - 0.5) * log(x) - x + 0.5 * CAN_LN_2PI + series - log(prod);
}

// ψ(x) = d ln Γ / dx for x ≥ 1: the recurrence up to x ≥ 10, then the asymptotic series.
// Twin: mixture::digamma.
__device__ double can_digamma(double x) {
    double acc = 0.0;
    while (x < 10.0) { acc -= 1.0 / x; x += 1.0; }
    double r2 = 1.0 / (x * x);
    double series = r2 * (1.0 / 12.0 - r2 * (1.0 / 120.0 - r2 * (1.0 / 252.0 - r2 * (1.0 / 240.0 - r2 / 132.0))));
    return acc + log(x) - 0.5 / x - series;
}

__device__ double can_softplus(double r) { return r > 0.0 ? r + log1p(exp(-r)) : log1p(exp(r)); }
__device__ double can_sigmoid(double r) { return 1.0 / (1.0 + exp(-r)); }
__device__ double can_clamp_u(double u) {
    return u < CAN_U_MIN ? CAN_U_MIN : (u > 1.0 - CAN_U_MIN ? 1.0 - CAN_U_MIN : u);
}

// The per-component log terms of one site: lp[k] = ln(1 − ε) + ln π_k + ln Beta(u; a_k, b_k).
// Returns ln q(u) = ln(ε + Σ_k exp(lp[k])). p holds the 3K raw outputs of the site, stride apart.
template <typename T>
__device__ double can_site_terms(const T* p, size_t stride, int k, double u, double* lp) {
    double m = -1e300;
    for (int j = 0; j < k; ++j) m = fmax(m, (double)p[j * stride]);
    double z = 0.0;
    for (int j = 0; j < k; ++j) z += exp((double)p[j * stride] - m);
    double lse = m + log(z), lu = log(u), l1u = log1p(-u), best = -1e300;
    for (int j = 0; j < k; ++j) {
        double a = 1.0 + can_softplus((double)p[(k + j) * stride]);
        double b = 1.0 + can_softplus((double)p[(2 * k + j) * stride]);
        double lbeta = can_ln_gamma(a) + can_ln_gamma(b) - can_ln_gamma(a + b);
        lp[j] = CAN_LN_MIXTURE + (double)p[j * stride] - lse + (a - 1.0) * lu + (b - 1.0) * l1u - lbeta;
        best = fmax(best, lp[j]);
    }
    best = fmax(best, CAN_LN_UNIFORM);
    double s = exp(CAN_LN_UNIFORM - best);
    for (int j = 0; j < k; ++j) s += exp(lp[j] - best);
    return best + log(s);
}

// ln q(θ_s | earlier) per site: out [B, 3K, V] raw outputs, u [B, V] → logp [B, V].
template <typename T>
__device__ void can_mixture_logp(const T* out, const T* u, T* logp, unsigned batch, unsigned k,
                                 unsigned volume) {
    double lp[CAN_MAX_K];
    GRID_STRIDE(i, batch * volume) {
        unsigned b = i / volume, s = i - b * volume;
        const T* p = out + (size_t)b * 3 * k * volume + s;
        logp[i] = (T)(can_site_terms(p, volume, (int)k, can_clamp_u((double)u[i]), lp) - CAN_LN_2PI);
    }
}

// ∂L/∂out [B, 3K, V] from g = ∂L/∂logp [B, V]: with responsibilities r_k = exp(lp_k − ln q_s)
// and R = Σ_k r_k (1 − the uniform part's),
//   ∂/∂l_k = g (r_k − π_k R), ∂/∂r^a_k = g r_k (ln u − ψ(a_k) + ψ(a_k + b_k)) σ(r^a_k),
//   ∂/∂r^b_k = g r_k (ln(1 − u) − ψ(b_k) + ψ(a_k + b_k)) σ(r^b_k).
template <typename T>
__device__ void can_mixture_grad(const T* out, const T* u, const T* g, T* dout, unsigned batch,
                                 unsigned k, unsigned volume) {
    double lp[CAN_MAX_K];
    GRID_STRIDE(i, batch * volume) {
        unsigned b = i / volume, s = i - b * volume;
        const T* p = out + (size_t)b * 3 * k * volume + s;
        T* d = dout + (size_t)b * 3 * k * volume + s;
        double uu = can_clamp_u((double)u[i]);
        double total = can_site_terms(p, volume, (int)k, uu, lp);
        double m = -1e300;
        for (unsigned j = 0; j < k; ++j) m = fmax(m, (double)p[j * volume]);
        double z = 0.0;
        for (unsigned j = 0; j < k; ++j) z += exp((double)p[j * volume] - m);
        double gi = (double)g[i], lu = log(uu), l1u = log1p(-uu), rsum = 0.0;
        for (unsigned j = 0; j < k; ++j) rsum += exp(lp[j] - total);
        for (unsigned j = 0; j < k; ++j) {
            double ra = (double)p[(k + j) * volume], rb = (double)p[(2 * k + j) * volume];
            double a = 1.0 + can_softplus(ra), bb = 1.0 + can_softplus(rb);
            double r = exp(lp[j] - total), pi = exp((double)p[j * volume] - m) / z;
            double pab = can_digamma(a + bb);
            d[j * volume] = (T)(gi * (r - pi * rsum));
            d[(k + j) * volume] = (T)(gi * r * (lu - can_digamma(a) + pab) * can_sigmoid(ra));
            d[(2 * k + j) * volume] = (T)(gi * r * (l1u - can_digamma(bb) + pab) * can_sigmoid(rb));
        }
    }
}

// The random numbers of one site's draw: block j of counter (site, sample, step, stream | j << 8).
// Twin: mixture::SiteDraws.
struct CanDraws {
    unsigned site, sample, step, stream, j, k0, k1;
    __device__ philox_u4 next() {
        philox_u4 c = {site, sample, step, stream | (j << 8)};
        ++j;
        return philox4x32_10(c, k0, k1);
    }
    __device__ double uniform() { philox_u4 b = next(); return philox_uniform(b.x, b.y); }
    __device__ double normal() {
        double z0, z1;
        philox_normal_pair(next(), &z0, &z1);
        return z0;
    }
};

// Γ(a, 1) for a ≥ 1 (Marsaglia, Tsang, ACM TOMS 26, 363 (2000)); after CAN_ATTEMPTS rejections
// (probability < 1e-80) the mode a − 1/3 is returned. Twin: mixture::gamma.
__device__ double can_gamma(CanDraws& r, double a) {
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (int t = 0; t < CAN_ATTEMPTS; ++t) {
        double z = r.normal(), v = 1.0 + c * z;
        double uu = r.uniform();
        if (v <= 0.0) continue;
        v = v * v * v;
        if (log(uu) < 0.5 * z * z + d - d * v + d * log(v)) return d * v;
    }
    return d;
}

// One draw of u from the site's density with 3K raw outputs p (contiguous): with probability ε
// uniform, else a component by its weight, then Beta(a, b) = X / (X + Y) with X ~ Γ(a),
// Y ~ Γ(b). Twin: mixture::sample_site.
__device__ double can_sample_site(const double* p, int k, CanDraws& r) {
    double first = r.uniform();
    if (first < CAN_UNIFORM) return can_clamp_u(r.uniform());
    double m = -1e300;
    for (int j = 0; j < k; ++j) m = fmax(m, p[j]);
    double z = 0.0;
    for (int j = 0; j < k; ++j) z += exp(p[j] - m);
    double pick = (first - CAN_UNIFORM) / (1.0 - CAN_UNIFORM) * z, cum = 0.0;
    int c = k - 1;
    for (int j = 0; j < k; ++j) {
        cum += exp(p[j] - m);
        if (pick < cum) { c = j; break; }
    }
    double a = 1.0 + can_softplus(p[k + c]), b = 1.0 + can_softplus(p[2 * k + c]);
    double x = can_gamma(r, a), y = can_gamma(r, b);
    return can_clamp_u(x / (x + y));
}

// The variables of the draw. Site 0 carries θ_0 = 2πu_0; every later site s the angle relative
// to an earlier reference site, θ_s = θ_ref(s) + 2πu_s − π (mod 2π): the left neighbour, or for
// the first column the one above. The seam u = 0 ≡ 1 then sits where the spin is anti-aligned
// with its neighbour (where a ferromagnet has least weight), and the shift has unit Jacobian.
// Twins: model::reference and model::relative_angle.
__device__ int can_reference(int s, int w) { return s % w != 0 ? s - 1 : s - w; }
__device__ double can_relative_angle(double ref, double u) {
    double p = ref + 6.283185307179586 * u - 3.141592653589793;
    return p - 6.283185307179586 * floor(p / 6.283185307179586);
}

// The network's geometry, as mixture::NetSpec (repr(C)) on the host.
struct CanNet {
    int h, w, kh, kw;  // lattice and kernel extents (kernel centred at kh/2, kw/2)
    int c;             // hidden channels
    int cin;           // input features per site: 2 (cos φ, sin φ) or 6 (with the running means)
    int res;           // residual mask-B layers after the mask-A layer
    int k;             // mixture components
    int act;           // 0 leaky ReLU (slope), 1 tanh, 2 SiLU
    double slope;
};

template <typename T>
__device__ T can_act(T x, const CanNet& n) {
    if (n.act == 1) return tanh(x);
    if (n.act == 2) return x / (T(1) + exp(-x));
    return x > T(0) ? x : (T)(n.slope * (double)x);
}

// One site's output channel co of a causal layer: y[co] = bias[co] + Σ_taps Σ_ci wt[tap][ci][co]
// h[src][ci] (taps outer, channels inner, in this order) over the taps whose (periodically wrapped) source precedes the site in raster order
// (strictly for mask A, `inclusive` = 0), h site-major [V][ci].
template <typename T>
__device__ T can_site_conv(const T* wt, const T* bias, const T* h, int ci, int co_count, int co,
                           int site, int inclusive, const CanNet& n) {
    int y = site / n.w, x = site - y * n.w;
    T acc = bias[co];
    for (int ky = 0; ky < n.kh; ++ky) {
        int sy = (y + ky - n.kh / 2 + n.h * n.kh) % n.h;
        for (int kx = 0; kx < n.kw; ++kx) {
            int src = sy * n.w + (x + kx - n.kw / 2 + n.w * n.kw) % n.w;
            if (src > site || (src == site && !inclusive)) continue;
            const T* wtap = wt + (size_t)(ky * n.kw + kx) * ci * co_count + co;
            const T* hrow = h + (size_t)src * ci;
            for (int i = 0; i < ci; ++i) acc += wtap[(size_t)i * co_count] * hrow[i];
        }
    }
    return acc;
}

// Cached generation (fast PixelCNN sampling): one block per sample walks the sites in raster
// order; at each site it computes every layer's activations at that site only (all earlier
// sites' are final, so the whole network costs one forward pass), samples u, and adds ln q.
// wpack: layer 0 wt [taps][cin][c] and bias [c]; each residual layer wt [taps][c][c] and bias [c];
// the 1×1 head [3K][c] and bias [3K]. Scratch act [B][res + 1][V][c], xin [B][V][cin] (cos φ,
// sin φ of the angles relative to site 0, φ_s = θ_s − θ_0, then with cin = 6 the means of those
// over all earlier sites and over the last W), phi [B][3V + 2] (the angles, then the running sums
// [V + 1][2]; twin of generate::RunningSums). Outputs u [B, V] and ln q [B] (the density of θ, per
// sample).
template <typename T>
__device__ void can_generate(const T* wpack, T* act, T* xin, double* phi, T* u, double* logq, CanNet n,
                             unsigned batch, unsigned sample0, unsigned step, unsigned stream,
                             unsigned k0, unsigned k1) {
    __shared__ double head[3 * CAN_MAX_K];
    int v = n.h * n.w, taps = n.kh * n.kw, nh = 3 * n.k;
    const T* w0 = wpack;
    const T* b0 = w0 + (size_t)taps * n.c * n.cin;
    const T* wres = b0 + n.c;
    size_t res_stride = (size_t)taps * n.c * n.c + n.c;
    const T* wh = wres + res_stride * n.res;
    const T* bh = wh + (size_t)nh * n.c;
    for (unsigned b = blockIdx.x; b < batch; b += gridDim.x) {
        T* hb = act + (size_t)b * (n.res + 1) * v * n.c;
        T* xb = xin + (size_t)b * v * n.cin;
        double lq = 0.0;
        for (int s = 0; s < v; ++s) {
            for (int co = threadIdx.x; co < n.c; co += blockDim.x)
                hb[(size_t)s * n.c + co] = can_act(can_site_conv(w0, b0, xb, n.cin, n.c, co, s, 0, n), n);
            __syncthreads();
            for (int l = 0; l < n.res; ++l) {
                const T* wl = wres + res_stride * l;
                const T* hin = hb + (size_t)l * v * n.c;
                T* hout = hb + (size_t)(l + 1) * v * n.c;
                for (int co = threadIdx.x; co < n.c; co += blockDim.x) {
                    T y = can_site_conv(wl, wl + (size_t)taps * n.c * n.c, hin, n.c, n.c, co, s, 1, n);
                    hout[(size_t)s * n.c + co] = hin[(size_t)s * n.c + co] + can_act(y, n);
                }
                __syncthreads();
            }
            const T* hl = hb + (size_t)n.res * v * n.c + (size_t)s * n.c;
            for (int j = threadIdx.x; j < nh; j += blockDim.x) {
                T acc = bh[j];
                for (int i = 0; i < n.c; ++i) acc += wh[(size_t)j * n.c + i] * hl[i];
                head[j] = (double)acc;
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                CanDraws r = {(unsigned)s, sample0 + b, step, stream, 0u, k0, k1};
                double* pb = phi + (size_t)b * (3 * v + 2);
                T us;
                if (s == 0) {
                    // The first angle is uniform (the model is exactly U(1) invariant).
                    us = (T)can_clamp_u(r.uniform());
                    lq -= CAN_LN_2PI;
                    pb[0] = 0.0;
                } else {
                    us = (T)can_sample_site(head, n.k, r);
                    double lp[CAN_MAX_K];
                    lq += can_site_terms(head, 1, n.k, can_clamp_u((double)us), lp) - CAN_LN_2PI;
                    pb[s] = can_relative_angle(pb[can_reference(s, n.w)], (double)us);
                }
                u[(size_t)b * v + s] = us;
                double sn, cs;
                sincos(pb[s], &sn, &cs);
                T* xs = xb + (size_t)s * n.cin;
                xs[0] = (T)cs;
                xs[1] = (T)sn;
                double* pre = pb + v;  // pre[2j + c] = Σ_{i<j} (cos, sin)_c
                if (s == 0) pre[0] = pre[1] = 0.0;
                pre[2 * s + 2] = pre[2 * s] + cs;
                pre[2 * s + 3] = pre[2 * s + 1] + sn;
                if (n.cin == 6) {
                    int lo = s > n.w ? s - n.w : 0;
                    for (int c = 0; c < 2; ++c) {
                        double p = pre[2 * s + c];
                        xs[2 + c] = (T)(s == 0 ? 0.0 : p / (double)s);
                        xs[4 + c] = (T)(s == lo ? 0.0 : (p - pre[2 * lo + c]) / (double)(s - lo));
                    }
                }
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) logq[b] = lq;
        __syncthreads();
    }
}

#define INSTANTIATE(T, S)                                                                           \
    extern "C" __global__ void can_mixture_logp_##S(const T* out, const T* u, T* logp,              \
                                                    unsigned batch, unsigned k, unsigned volume) {  \
        can_mixture_logp(out, u, logp, batch, k, volume); }                                         \
    LATTICEML_KERNEL(can_mixture_logp_##S)                                                          \
    extern "C" __global__ void can_mixture_grad_##S(const T* out, const T* u, const T* g, T* dout,  \
                                                    unsigned batch, unsigned k, unsigned volume) {  \
        can_mixture_grad(out, u, g, dout, batch, k, volume); }                                      \
    LATTICEML_KERNEL(can_mixture_grad_##S)                                                          \
    extern "C" __global__ void can_generate_##S(const T* wpack, T* act, T* xin, double* phi, T* u,  \
                                                double* logq, CanNet n, unsigned batch,             \
                                                unsigned sample0,                                   \
                                                unsigned step, unsigned stream, unsigned k0,        \
                                                unsigned k1) {                                      \
        can_generate(wpack, act, xin, phi, u, logq, n, batch, sample0, step, stream, k0, k1); }     \
    LATTICEML_KERNEL(can_generate_##S)

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
