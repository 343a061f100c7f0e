/* The machine's f32 arithmetic ceiling on AVX-512, for reading the CPU figures of BENCHMARKS.md
 * against a roofline: independent chains of 16-lane multiplies and adds (the kind of arithmetic the
 * CPU backend uses, which keeps multiplies and adds separate so that every SIMD level computes the
 * same bits), and the same with fused multiply-adds (what oneDNN, behind PyTorch, uses). A flop is
 * one multiply or one add; an FMA counts two. Twelve chains per thread hide the 4-cycle latency on
 * two ports; the loops are unrolled so that the chains live in registers.
 *
 * Build and run (one thread per core):
 *   gcc -O2 -mavx512f -mfma -fopenmp benches/compare/peak_flops.c -o /tmp/peak_flops
 *   OMP_NUM_THREADS=2 /tmp/peak_flops
 * Prints one JSON object: {"threads", "gflops_mul_add", "gflops_fma"}.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

#define CHAINS 12
#define ITERS 50000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Sum of a thread's chains, so the compiler cannot drop them. */
static float fold(const __m512 *a) {
    __m512 s = a[0];
    for (int i = 1; i < CHAINS; i++) s = _mm512_add_ps(s, a[i]);
    float out[16];
    _mm512_storeu_ps(out, s);
    return out[0];
}

/* GFLOP/s of all threads: with `fused`, every chain runs FMAs (two flops each); without, half the
 * chains multiply and half add, separate instructions as the CPU backend issues them. */
static double gflops(int fused, float *sink) {
    double t0 = now();
    float total = 0.0f;
#pragma omp parallel reduction(+ : total)
    {
        __m512 a[CHAINS];
        const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
        for (int i = 0; i < CHAINS; i++) a[i] = _mm512_set1_ps(1.0f + i);
        if (fused) {
            for (long k = 0; k < ITERS; k++)
#pragma GCC unroll 12
                for (int i = 0; i < CHAINS; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
        } else {
            for (long k = 0; k < ITERS; k++) {
#pragma GCC unroll 12
                for (int i = 0; i < CHAINS / 2; i++) a[i] = _mm512_mul_ps(a[i], b);
#pragma GCC unroll 12
                for (int i = CHAINS / 2; i < CHAINS; i++) a[i] = _mm512_add_ps(a[i], c);
            }
        }
        total += fold(a);
    }
    *sink += total;
    double flops = (double)ITERS * CHAINS * 16 * (fused ? 2 : 1);
    return omp_get_max_threads() * flops / (now() - t0) / 1e9;
}

int main(void) {
    float sink = 0.0f;
    double separate = gflops(0, &sink);
    double fused = gflops(1, &sink);
    printf("{\"threads\": %d, \"gflops_mul_add\": %.1f, \"gflops_fma\": %.1f, \"sink\": %g}\n",
           omp_get_max_threads(), separate, fused, (double)sink);
    return 0;
}
