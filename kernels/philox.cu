// Philox kernels: raw blocks (for the bit-identity test against Rust) and normal fields.

// Raw Philox blocks for counters (i, chain, step, stream), i = 0..n-1: out[4*i + j].
extern "C" __global__ void philox_raw(unsigned int* out, unsigned int n, unsigned int chain,
                                      unsigned int step, unsigned int stream,
                                      unsigned int k0, unsigned int k1) {
    GRID_STRIDE(i, n) {
        philox_u4 c = { i, chain, step, stream };
        philox_u4 b = philox4x32_10(c, k0, k1);
        out[4 * i + 0] = b.x; out[4 * i + 1] = b.y; out[4 * i + 2] = b.z; out[4 * i + 3] = b.w;
    }
}
LATTICEML_KERNEL(philox_raw)

// Standard normals for a batch [chains][volume] holding the ensemble's chains chain0, chain0 + 1,
// ...: sites 2k, 2k+1 of a chain share the block with counter (k, chain0 + chain, step, stream).
// One thread per pair. Twin of philox::fill_normals.
extern "C" __global__ void philox_normals(double* out, unsigned int volume, unsigned int chains,
                                          unsigned int chain0, unsigned int step,
                                          unsigned int stream, unsigned int k0, unsigned int k1) {
    unsigned int pairs = (volume + 1) / 2;  // the host guarantees pairs * chains < 2^31
    GRID_STRIDE(t, pairs * chains) {
        unsigned int chain = t / pairs, k = t - chain * pairs;
        philox_u4 c = { k, chain0 + chain, step, stream };
        double z0, z1;
        philox_normal_pair(philox4x32_10(c, k0, k1), &z0, &z1);
        double* row = out + chain * volume;
        row[2 * k] = z0;
        if (2 * k + 1 < volume) row[2 * k + 1] = z1;
    }
}
LATTICEML_KERNEL(philox_normals)
