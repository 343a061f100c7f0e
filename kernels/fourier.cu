// Fourier acceleration on the GPU (src/hmc/fourier.rs): the filters M^{1/2} and M^{-1} of the mass
// kernel applied to a batch [chain][site] by a d-dimensional complex transform, one axis at a time.
// An axis of power-of-two extent L runs a radix-2 Stockham FFT, one launch per stage (log2 L
// launches, each ping-ponging between two buffers and leaving the result in natural order; N. K.
// Govindaraju et al., "High performance discrete Fourier transforms on graphics processors",
// SC 2008); any other extent a direct DFT. Complex numbers are interleaved (re, im) doubles.
// The lines along an axis of stride st and extent L start at the sites (line / st) * st * L +
// line % st. CPU twins: src/hmc/fft.rs, the same arithmetic in the same order.

// z = x + 0i.
extern "C" __global__ void fourier_load(const double* __restrict__ x, double* __restrict__ z,
                                        unsigned int n) {
    GRID_STRIDE(i, n) {
        z[2 * i] = x[i];
        z[2 * i + 1] = 0.0;
    }
}
LATTICEML_KERNEL(fourier_load)

__device__ __forceinline__ unsigned int line_start(unsigned int line, unsigned int l, unsigned int st) {
    return (line / st) * st * l + line % st;
}

// Stage `ns` (1, 2, 4, ..., L/2: the length of the sub-transforms already combined) of the radix-2
// Stockham FFT along one axis: butterfly j of a line combines elements j and j + L/2 with the
// twiddle w^k, w = exp(-+2 pi i / (2 ns)), k = j mod ns, into elements 2(j - k) + k and that + ns.
// tw holds exp(-2 pi i m / L), m < L/2; `inverse` conjugates it.
extern "C" __global__ void fft_stage(const double* __restrict__ in, double* __restrict__ out,
                                     unsigned int lines, unsigned int l, unsigned int st,
                                     unsigned int ns, const double* __restrict__ tw,
                                     unsigned int inverse) {
    unsigned int half = l / 2;
    GRID_STRIDE(t, lines * half) {
        unsigned int line = t / half, j = t - line * half;
        unsigned int base = line_start(line, l, st), k = j % ns;
        unsigned int m = k * (half / ns);
        double wr = tw[2 * m], wi = inverse ? -tw[2 * m + 1] : tw[2 * m + 1];
        const double* a = in + 2 * (base + j * st);
        const double* b = in + 2 * (base + (j + half) * st);
        double br = b[0] * wr - b[1] * wi, bi = b[0] * wi + b[1] * wr;
        unsigned int d = 2 * (j - k) + k;
        double* o0 = out + 2 * (base + d * st);
        double* o1 = out + 2 * (base + (d + ns) * st);
        o0[0] = a[0] + br;
        o0[1] = a[1] + bi;
        o1[0] = a[0] - br;
        o1[1] = a[1] - bi;
    }
}
LATTICEML_KERNEL(fft_stage)

// The direct DFT along one axis, for extents that are not powers of two: output k of a line is
// sum_n x_n exp(-+2 pi i k n / L), summed in n order; tw holds exp(-2 pi i m / L), m < L.
extern "C" __global__ void dft_axis(const double* __restrict__ in, double* __restrict__ out,
                                    unsigned int lines, unsigned int l, unsigned int st,
                                    const double* __restrict__ tw, unsigned int inverse) {
    GRID_STRIDE(t, lines * l) {
        unsigned int line = t / l, k = t - line * l;
        unsigned int base = line_start(line, l, st);
        double sr = 0.0, si = 0.0;
        for (unsigned int n = 0; n < l; ++n) {
            unsigned int m = (unsigned int)(((unsigned long long)k * n) % l);
            double wr = tw[2 * m], wi = inverse ? -tw[2 * m + 1] : tw[2 * m + 1];
            const double* x = in + 2 * (base + n * st);
            sr += x[0] * wr - x[1] * wi;
            si += x[0] * wi + x[1] * wr;
        }
        out[2 * (base + k * st)] = sr;
        out[2 * (base + k * st) + 1] = si;
    }
}
LATTICEML_KERNEL(dft_axis)

// z *= filter[site] for every chain (the filter is per momentum, row-major like the sites).
extern "C" __global__ void fourier_scale(double* __restrict__ z, const double* __restrict__ filter,
                                         unsigned int volume, unsigned int n) {
    GRID_STRIDE(i, n) {
        double f = filter[i % volume];
        z[2 * i] *= f;
        z[2 * i + 1] *= f;
    }
}
LATTICEML_KERNEL(fourier_scale)

// x = Re z (the filters are real and even in k, so a real field stays real).
extern "C" __global__ void fourier_store(const double* __restrict__ z, double* __restrict__ x,
                                         unsigned int n) {
    GRID_STRIDE(i, n) { x[i] = z[2 * i]; }
}
LATTICEML_KERNEL(fourier_store)

// out = x + a y: the filtered drift phi' = phi + eps M^{-1} p.
extern "C" __global__ void axpy(double* __restrict__ out, const double* __restrict__ x, double a,
                                const double* __restrict__ y, unsigned int n) {
    GRID_STRIDE(i, n) { out[i] = x[i] + a * y[i]; }
}
LATTICEML_KERNEL(axpy)

// Per chunk of a segment of seg_len values (a chain): out[block] = sum of a_i b_i (the kinetic
// energy p . M^{-1} p).
extern "C" __global__ void dot_chunks(const double* __restrict__ a, const double* __restrict__ b,
                                      double* __restrict__ out, unsigned int seg_len,
                                      unsigned int chunk) {
    unsigned int begin, end;
    chunk_range(seg_len, chunk, &begin, &end);
    double s = 0.0;
    for (unsigned int i = begin + threadIdx.x; i < end; i += blockDim.x) s += a[i] * b[i];
    s = block_sum(s);
    if (threadIdx.x == 0) out[blockIdx.x] = s;
}
LATTICEML_KERNEL(dot_chunks)
