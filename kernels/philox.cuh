// Philox4x32-10 (Salmon et al., SC11) and Box–Muller normals.
// Twin of src/philox.rs: the same counter layout (index, chain, step, stream) and key = seed.
// Prepended by the host to every kernel family that draws random numbers.
#pragma once

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

struct philox_u4 { unsigned int x, y, z, w; };

__device__ __forceinline__ philox_u4 philox4x32_10(philox_u4 c, unsigned int k0, unsigned int k1) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        unsigned int hi0 = __umulhi(PHILOX_M0, c.x), lo0 = PHILOX_M0 * c.x;
        unsigned int hi1 = __umulhi(PHILOX_M1, c.z), lo1 = PHILOX_M1 * c.z;
        philox_u4 n = { hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0 };
        c = n;
        if (round < 9) { k0 += PHILOX_W0; k1 += PHILOX_W1; }
    }
    return c;
}

// Uniform double in (0, 1): (k + 1/2) 2^-52 from 52 random bits; matches uniform_from_words in Rust.
__device__ __forceinline__ double philox_uniform(unsigned int hi, unsigned int lo) {
    unsigned long long bits = ((unsigned long long)hi << 20) | ((unsigned long long)lo >> 12);
    return ((double)bits + 0.5) * (1.0 / 4503599627370496.0);
}

// Two standard normals from one block (Box–Muller), as normal_pair in Rust.
__device__ __forceinline__ void philox_normal_pair(philox_u4 b, double* z0, double* z1) {
    double u1 = philox_uniform(b.x, b.y);
    double u2 = philox_uniform(b.z, b.w);
    double r = sqrt(-2.0 * log(u1));
    double s, c;
    sincos(6.283185307179586 * u2, &s, &c);
    *z0 = r * c;
    *z1 = r * s;
}

// The block of a local update: site s of `chain` at local step t (sweep * hits + hit) on
// checkerboard colour c, counter (s, chain, t mod 2^32, (3 + c) | (t >> 32) << 8): stream
// philox::STREAM_LOCAL + c with counter_words' layout. Twin: philox::local_block.
__device__ __forceinline__ philox_u4 philox_local_block(unsigned int s, unsigned int chain, unsigned long long t,
                                                       unsigned int colour, unsigned int k0, unsigned int k1) {
    philox_u4 ctr = {s, chain, (unsigned int)t, (3u + colour) | ((unsigned int)(t >> 32) << 8)};
    return philox4x32_10(ctr, k0, k1);
}
