// The 2D Ising model with multi-spin coding: one thread updates one 64-bit word (64 spins of one
// checkerboard colour in one row) by word operations and exact bit-sliced acceptance tests.
// Layout, neighbours and the acceptance scheme: src/theory/ising/mod.rs, whose word functions
// this file mirrors line by line. CPU twin: src/theory/ising/cpu.rs. Decisions compare Philox
// words with integer thresholds, so CPU and GPU results are bit-identical.

typedef unsigned long long u64;

struct IsingPack { unsigned int rows, bits, words, chains, chain0; };  // chain0: global first chain
// Class k accepts when u < thr[k] 2^-64, or always when bit k of `always` is set. metropolis:
// classes count anti-aligned neighbours and a decision flips the spin; else they count down
// neighbours and a decision sets it down (heat-bath).
struct IsingRule { u64 thr[5]; unsigned int always; unsigned int metropolis; };

__device__ __forceinline__ void count_classes(u64 a, u64 b, u64 c, u64 d, u64 valid, u64* cls) {
    u64 s1 = a ^ b, c1 = a & b, s2 = c ^ d, c2 = c & d;
    u64 ones = s1 ^ s2, carry = s1 & s2;
    u64 twos = c1 ^ c2 ^ carry;
    u64 fours = (c1 & c2) | (carry & (c1 ^ c2));
    cls[0] = ~ones & ~twos & ~fours & valid;
    cls[1] = ones & ~twos & ~fours & valid;
    cls[2] = ~ones & twos & ~fours & valid;
    cls[3] = ones & twos & ~fours & valid;
    cls[4] = fours & valid;
}

// The word of row `row` holding bit k - 1 (left) or k + 1 of the row in lane k of word w.
__device__ __forceinline__ u64 shifted(const u64* row, unsigned int w, unsigned int bits,
                                       unsigned int words, bool left) {
    unsigned int last = words - 1u;
    if (left) {
        u64 carry = (w > 0u) ? row[w - 1u] >> 63 : (row[last] >> ((bits - 1u) % 64u)) & 1ull;
        return (row[w] << 1) | carry;
    }
    u64 carry = (w < last) ? row[w + 1u] << 63 : (row[0] & 1ull) << ((bits - 1u) % 64u);
    return (row[w] >> 1) | carry;
}

extern "C" __global__ void ising_update(u64* spins, IsingPack pk, IsingRule rule, unsigned int colour,
                                        unsigned int k0, unsigned int k1, unsigned int c2,
                                        unsigned int c3, u64* changed) {
    unsigned int n = pk.chains * pk.rows * pk.words;
    u64* own = spins + colour * n;
    const u64* other = spins + (1u - colour) * n;
    GRID_STRIDE(i, n) {
        unsigned int w = i % pk.words, g = i / pk.words;
        unsigned int y = g % pk.rows, chain = g / pk.rows;
        const u64* same = other + (chain * pk.rows + y) * pk.words;
        u64 up = other[(chain * pk.rows + (y + 1u) % pk.rows) * pk.words + w];
        u64 down = other[(chain * pk.rows + (y + pk.rows - 1u) % pk.rows) * pk.words + w];
        u64 side = shifted(same, w, pk.bits, pk.words, ((y + colour) % 2u) == 0u);
        unsigned int rem = pk.bits % 64u;
        u64 valid = (w + 1u == pk.words && rem != 0u) ? (1ull << rem) - 1ull : ~0ull;
        u64 s = own[i];
        u64 m = rule.metropolis ? s : 0ull;
        u64 cls[5];
        count_classes(up ^ m, down ^ m, same[w] ^ m, side ^ m, valid, cls);
        u64 yes = 0ull, open = 0ull;
        for (int k = 0; k < 5; ++k) {
            if ((rule.always >> k) & 1u) yes |= cls[k];
            else if (rule.thr[k] != 0ull) open |= cls[k];
        }
        // Random word j is half of Philox call j/2 at counter (32 index + j/2, chain0 + chain, c2, c3),
        // low half first (Draws in src/theory/ising/mod.rs).
        unsigned int index = y * pk.words + w;
        philox_u4 blk = {0u, 0u, 0u, 0u};
        for (unsigned int j = 0; open != 0ull && j < 64u; ++j) {
            u64 r;
            if (j % 2u == 0u) {
                philox_u4 ctr = {index * 32u + j / 2u, pk.chain0 + chain, c2, c3};
                blk = philox4x32_10(ctr, k0, k1);
                r = (u64)blk.y << 32 | blk.x;
            } else {
                r = (u64)blk.w << 32 | blk.z;
            }
            u64 t = 0ull;
            for (int k = 0; k < 5; ++k) t |= cls[k] & (0ull - ((rule.thr[k] >> (63u - j)) & 1ull));
            yes |= open & t & ~r;
            open &= ~(t ^ r);
        }
        u64 next = rule.metropolis ? s ^ yes : yes;
        own[i] = next;
        atomicAdd(&changed[chain], (u64)__popcll(next ^ s));
    }
}
LATTICEML_KERNEL(ising_update)
