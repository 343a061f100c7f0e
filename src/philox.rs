//! Philox4x32-10 counter-based generator (Salmon, Moraes, Dror, Shaw, "Parallel random numbers:
//! as easy as 1, 2, 3", SC11), written identically here and in `kernels/philox.cuh`.
//!
//! Counter words are `(index, chain, step, stream)` and the key is the 64-bit seed, so a draw
//! depends only on what it is for, never on thread scheduling or backend: the raw 32-bit stream
//! is bit-identical on CPU and GPU. Normals (Box–Muller) agree to a few ulp: the two backends'
//! `log`/`sin`/`cos` are both faithfully rounded but not always identical.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Stream word for HMC momenta.
pub const STREAM_MOMENTUM: u32 = 0;
/// Stream word for Metropolis accept/reject uniforms.
pub const STREAM_ACCEPT: u32 = 1;
/// Stream word for initial (hot start) fields.
pub const STREAM_INIT: u32 = 2;
/// Stream word of local updates of checkerboard colour 0 (colour 1 uses the next).
pub const STREAM_LOCAL: u32 = 3;
/// Stream word of the bond tests of cluster updates.
pub const STREAM_BOND: u32 = 5;
/// Stream word of cluster flips (Swendsen–Wang) and cluster seeds (Wolff).
pub const STREAM_CLUSTER: u32 = 6;

/// Trajectories (or sweeps) a run may count: the step's high bits share the stream word.
pub const MAX_STEPS: u64 = 1 << 56;

/// The (step, stream) counter words for step `t` of a 64-bit count and a stream below 256:
/// `(t mod 2^32, stream | (t >> 32) << 8)`. For t < 2^32 this is `(t, stream)` exactly, so
/// runs shorter than that draw what they always drew; past it the draws never repeat.
pub fn counter_words(t: u64, stream: u32) -> crate::Result<(u32, u32)> {
    if t >= MAX_STEPS || stream >= 256 {
        return Err(crate::Error::InvalidInput(format!(
            "step {t} (stream {stream}) is beyond the 2^56 steps a run can count"
        )));
    }
    Ok((t as u32, stream | ((t >> 32) as u32) << 8))
}

/// The block of a local update: site `s` of `chain` at local step `t` (sweep·hits + hit) on
/// checkerboard colour `colour`, stream [`STREAM_LOCAL`] + colour in [`counter_words`]' layout.
/// Twin of `philox_local_block` in `kernels/philox.cuh`. The caller checks t < [`MAX_STEPS`].
#[inline(always)]
pub fn local_block(key: [u32; 2], s: u32, chain: u32, t: u64, colour: u32) -> [u32; 4] {
    let stream = STREAM_LOCAL + colour;
    philox4x32_10([s, chain, t as u32, stream | ((t >> 32) as u32) << 8], key)
}

/// The Philox4x32 bijection with 10 rounds.
#[inline(always)]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        if round < 9 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
    }
    c
}

/// Splits a 64-bit seed into the Philox key.
#[inline(always)]
pub fn key_from_seed(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// A uniform double in (0, 1) from two 32-bit words: 52 random bits, (k + ½)·2⁻⁵², never 0 or 1
/// (with 53 bits the top value would round to exactly 1).
#[inline(always)]
pub fn uniform_from_words(hi: u32, lo: u32) -> f64 {
    let bits = ((hi as u64) << 20) | ((lo as u64) >> 12);
    (bits as f64 + 0.5) * (1.0 / 4_503_599_627_370_496.0)
}

/// Two standard normals (Box–Muller) from one Philox block.
#[inline(always)]
pub fn normal_pair(block: [u32; 4]) -> (f64, f64) {
    let u1 = uniform_from_words(block[0], block[1]);
    let u2 = uniform_from_words(block[2], block[3]);
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// Fills `out` with standard normals for one chain: sites `2k` and `2k+1` share the block with
/// counter `(k, chain, step, stream)`. This is the CPU twin of `philox_normals` in `kernels/philox.cu`.
pub fn fill_normals(out: &mut [f64], seed: u64, chain: u32, step: u32, stream: u32) {
    let key = key_from_seed(seed);
    for (k, pair) in out.chunks_mut(2).enumerate() {
        let (z0, z1) = normal_pair(philox4x32_10([k as u32, chain, step, stream], key));
        pair[0] = z0;
        if let Some(second) = pair.get_mut(1) {
            *second = z1;
        }
    }
}

/// The uniform in (0, 1) of the Philox block at `counter` (its first two words).
pub fn uniform_at(seed: u64, counter: [u32; 4]) -> f64 {
    let b = philox4x32_10(counter, key_from_seed(seed));
    uniform_from_words(b[0], b[1])
}

/// One uniform in (0, 1) for `(chain, step, stream)`, e.g. the Metropolis test of one chain.
pub fn uniform(seed: u64, chain: u32, step: u32, stream: u32) -> f64 {
    let b = philox4x32_10([0, chain, step, stream], key_from_seed(seed));
    uniform_from_words(b[0], b[1])
}
