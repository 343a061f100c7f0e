//! The Ising model on a 2D torus, S = −β Σ_⟨xy⟩ s_x s_y, with spins stored one bit per spin
//! (multi-spin coding): checkerboard Metropolis and heat-bath update 64 spins of one sublattice
//! with a few word operations, on the CPU ([`cpu`]) and in `kernels/ising.cu` ([`cuda`]).
//!
//! Packed layout `[colour][chain][row][word]`: site (y, x) has colour (x + y) mod 2 and is bit
//! x/2 of its colour's row y, so a row holds L₁/2 bits in ⌈L₁/128⌉ words and a set bit is a spin
//! −1. The other colour's neighbours of bit k of row y are bit k of rows y ± 1 and of row y, and
//! bit k − 1 (when (x + y)'s colour row starts at even x) or k + 1 of row y.
//!
//! Acceptance without floating point: a site flips when a uniform u ∈ [0, 1) is below its
//! threshold p. The bits of u are drawn one random word at a time for all 64 lanes together and
//! compared with p's binary expansion (as a 64-bit fixed-point number); a lane is decided at its
//! first bit that differs from p's, so a word of 64 sites needs about log₂64 + 2 random words
//! instead of 64 uniforms, and the test is exact to 2⁻⁶⁴. CPU and GPU take identical decisions.

pub mod cpu;
pub mod cuda;

use crate::analysis::{gamma_derived, gamma_primary, Estimate};
use crate::device::Device;
use crate::error::{require_finite, Error, Result};
use crate::hmc::Start;
use crate::lattice::Lattice;
use crate::philox;
use crate::sampler::ChainMeasurement;
use crate::theory::{check_offers, slice_sums, FieldKind, LocalAlgorithm, Sweeper, Theory};

/// Class masks by the number (0..=4) of set bits among four masks, lane by lane.
#[inline(always)]
pub fn count_classes(a: u64, b: u64, c: u64, d: u64) -> [u64; 5] {
    let (s1, c1, s2, c2) = (a ^ b, a & b, c ^ d, c & d);
    let (ones, carry) = (s1 ^ s2, s1 & s2);
    // count = ones + 2·(c1 + c2 + carry), and c1 + c2 + carry ≤ 2.
    let twos = c1 ^ c2 ^ carry;
    let fours = (c1 & c2) | (carry & (c1 ^ c2));
    [
        !ones & !twos & !fours,
        ones & !twos & !fours,
        !ones & twos & !fours,
        ones & twos & !fours,
        fours,
    ]
}

/// Per-class thresholds of an update rule: class k accepts when u < `thresholds[k]`·2⁻⁶⁴, or
/// always when bit k of `always` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Fixed-point thresholds ⌊p·2⁶⁴⌋.
    pub thresholds: [u64; 5],
    /// Classes that accept without a draw (p = 1).
    pub always: u32,
    /// Whether the classes count anti-aligned neighbours and a decision flips the spin
    /// (Metropolis), or count down neighbours and a decision sets the spin down (heat-bath).
    pub metropolis: bool,
}

/// ⌊p·2⁶⁴⌋ for p ∈ [0, 1), exactly for the f64 value p.
fn fixed_point(p: f64) -> u64 {
    (p * 18_446_744_073_709_551_616.0).min(18_446_744_073_709_549_568.0) as u64
}

impl Rule {
    /// Metropolis at coupling β: with n anti-aligned neighbours, ΔS = 2β(4 − 2n), accepted with
    /// min(1, e^{−ΔS}).
    pub fn metropolis(beta: f64) -> Rule {
        let p = |n: i32| (-2.0 * beta * (4 - 2 * n) as f64).exp();
        Rule {
            thresholds: [fixed_point(p(0)), fixed_point(p(1)), 0, 0, 0],
            always: 0b11100,
            metropolis: true,
        }
    }

    /// Heat-bath at coupling β: with n down neighbours the local field is h = 4 − 2n and the
    /// spin is set down with probability 1/(1 + e^{2βh}).
    pub fn heatbath(beta: f64) -> Rule {
        let q = |n: i32| 1.0 / (1.0 + (2.0 * beta * (4 - 2 * n) as f64).exp());
        Rule {
            thresholds: [0, 1, 2, 3, 4].map(|n| fixed_point(q(n))),
            always: 0,
            metropolis: false,
        }
    }
}

/// Lanes (of `lanes`) where u < threshold of their class, drawing random words from `draw(i)`
/// (i = 0, 1, …) until every lane is decided.
#[inline(always)]
pub fn decide(classes: &[u64; 5], rule: &Rule, mut draw: impl FnMut(u32) -> u64) -> u64 {
    let mut yes = 0;
    let mut open = 0;
    for (k, &m) in classes.iter().enumerate() {
        if rule.always >> k & 1 == 1 {
            yes |= m;
        } else if rule.thresholds[k] != 0 {
            open |= m;
        }
    }
    let mut i = 0;
    while open != 0 && i < 64 {
        let r = draw(i);
        let mut t = 0;
        for (k, &m) in classes.iter().enumerate() {
            t |= m & 0u64.wrapping_sub(rule.thresholds[k] >> (63 - i) & 1);
        }
        yes |= open & t & !r;
        open &= !(t ^ r);
        i += 1;
    }
    yes
}

/// Shape of the packed spins of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packing {
    /// Rows L₀.
    pub rows: usize,
    /// Bits per row of one colour, L₁/2.
    pub bits: usize,
    /// Words per row, ⌈bits/64⌉.
    pub words: usize,
    /// Chains.
    pub chains: usize,
    /// Global index of the first chain in the ensemble (keys the random numbers).
    pub first_chain: u32,
}

impl Packing {
    /// The packing of `chains` chains of `lat` (2D, even extents, checked by [`Ising::new`]).
    pub fn new(lat: &Lattice, chains: usize) -> Packing {
        let bits = lat.extents()[1] / 2;
        Packing {
            rows: lat.extents()[0],
            bits,
            words: bits.div_ceil(64),
            chains,
            first_chain: 0,
        }
    }

    /// Words of one colour of all chains.
    pub fn colour_words(&self) -> usize {
        self.chains * self.rows * self.words
    }

    /// Lanes of word `w` that hold spins.
    #[inline(always)]
    pub fn valid(&self, w: usize) -> u64 {
        let rem = self.bits % 64;
        if w + 1 == self.words && rem != 0 {
            (1u64 << rem) - 1
        } else {
            !0
        }
    }

    /// Packs `[chain][site]` spins ±1 (anything else refused).
    pub fn pack(&self, field: &[f64]) -> Result<Vec<u64>> {
        let (l1, v) = (2 * self.bits, 2 * self.bits * self.rows);
        if field.len() != v * self.chains {
            return Err(Error::InvalidInput(format!(
                "{} spins do not fill {} chains of {v} sites",
                field.len(),
                self.chains
            )));
        }
        if let Some(bad) = field.iter().find(|&&s| s != 1.0 && s != -1.0) {
            return Err(Error::InvalidInput(format!(
                "an Ising spin must be +1 or -1, got {bad}"
            )));
        }
        let mut out = vec![0u64; 2 * self.colour_words()];
        for (i, &s) in field.iter().enumerate() {
            let (chain, site) = (i / v, i % v);
            let (y, x) = (site / l1, site % l1);
            let colour = (x + y) % 2;
            let k = x / 2;
            let word = ((colour * self.chains + chain) * self.rows + y) * self.words + k / 64;
            out[word] |= ((s < 0.0) as u64) << (k % 64);
        }
        Ok(out)
    }

    /// Unpacks to `[chain][site]` spins ±1.
    pub fn unpack(&self, spins: &[u64]) -> Vec<f64> {
        let (l1, v) = (2 * self.bits, 2 * self.bits * self.rows);
        (0..v * self.chains)
            .map(|i| {
                let (chain, site) = (i / v, i % v);
                let (y, x) = (site / l1, site % l1);
                let (colour, k) = ((x + y) % 2, x / 2);
                let word = ((colour * self.chains + chain) * self.rows + y) * self.words + k / 64;
                1.0 - 2.0 * (spins[word] >> (k % 64) & 1) as f64
            })
            .collect()
    }
}

/// The word of a neighbouring row `other` holding, in lane j, bit k − 1 (`shift_left`) or k + 1
/// of the row, for the lanes k of word `w`; periodic in the row of `bits` bits.
#[inline(always)]
pub fn shifted(other: &[u64], w: usize, bits: usize, shift_left: bool) -> u64 {
    let last = other.len() - 1;
    if shift_left {
        let carry = if w > 0 {
            other[w - 1] >> 63
        } else {
            other[last] >> ((bits - 1) % 64) & 1
        };
        (other[w] << 1) | carry
    } else {
        let carry = if w < last {
            other[w + 1] << 63
        } else {
            (other[0] & 1) << ((bits - 1) % 64)
        };
        (other[w] >> 1) | carry
    }
}

/// The new word `s` of row `y` (colour `colour`) from its neighbours in the other colour's rows
/// `same` (row y), `up` (y + 1) and `down` (y − 1), and the lanes that changed.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn update_word(
    s: u64,
    same: &[u64],
    up: u64,
    down: u64,
    w: usize,
    y: usize,
    colour: usize,
    pk: &Packing,
    rule: &Rule,
    draw: impl FnMut(u32) -> u64,
) -> u64 {
    let side = shifted(same, w, pk.bits, (y + colour).is_multiple_of(2));
    let valid = pk.valid(w);
    let n = [up, down, same[w], side];
    let m = if rule.metropolis { n.map(|x| x ^ s) } else { n };
    let classes = count_classes(m[0], m[1], m[2], m[3]).map(|c| c & valid);
    let yes = decide(&classes, rule, draw);
    if rule.metropolis {
        s ^ yes
    } else {
        yes
    }
}

/// The Philox counter words (c₀, c₂, c₃) of the draws of word `index` of a colour's chain at
/// local step `step` (sweep·hits + hit): call j of the word is counter (32·index + j, chain, …).
pub fn draw_counter(step: u64, colour: usize) -> Result<(u32, u32)> {
    philox::counter_words(step, philox::STREAM_LOCAL + colour as u32)
}

/// The random words of one lane group (word `index` of a colour's chain): word i is half of
/// Philox call i/2 at counter (32·index + i/2, chain, c2, c3), low half first. Words are drawn in
/// order, so each call is made once.
pub struct Draws {
    key: [u32; 2],
    counter: [u32; 4],
    block: [u32; 4],
}

impl Draws {
    /// The words of group `index` of `chain` at counter words (c2, c3).
    #[inline(always)]
    pub fn new(key: [u32; 2], index: u32, chain: u32, c2: u32, c3: u32) -> Self {
        Draws {
            key,
            counter: [index * 32, chain, c2, c3],
            block: [0; 4],
        }
    }

    /// Word i (called with i = 0, 1, 2, … in order).
    #[inline(always)]
    pub fn word(&mut self, i: u32) -> u64 {
        if i.is_multiple_of(2) {
            let mut c = self.counter;
            c[0] += i / 2;
            self.block = philox::philox4x32_10(c, self.key);
            (self.block[1] as u64) << 32 | self.block[0] as u64
        } else {
            (self.block[3] as u64) << 32 | self.block[2] as u64
        }
    }
}

/// The Ising model on a 2D torus with coupling β ≥ 0.
#[derive(Clone, Debug)]
pub struct Ising {
    lattice: Lattice,
    beta: f64,
}

impl Ising {
    /// The model on `lattice` (2D, both extents even, for the checkerboard) at β ≥ 0.
    pub fn new(lattice: Lattice, beta: f64) -> Result<Self> {
        require_finite("beta", beta)?;
        if beta < 0.0 {
            return Err(Error::InvalidInput(format!(
                "beta = {beta} < 0 is the antiferromagnet; use beta >= 0"
            )));
        }
        let e = lattice.extents();
        if e.len() != 2 || e.iter().any(|l| l % 2 != 0) {
            return Err(Error::InvalidInput(format!(
                "the Ising model runs on a 2D lattice with even extents (for the checkerboard); \
                 got {}: use e.g. --dims 64x64",
                lattice.label()
            )));
        }
        if e[0] * (e[1] / 2).div_ceil(64) >= 1 << 27 {
            return Err(Error::InvalidInput(format!(
                "lattice {} has too many spin words per sublattice for the random-number \
                 counters; use fewer rows",
                lattice.label()
            )));
        }
        Ok(Ising { lattice, beta })
    }

    /// Coupling β.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// −Σ_⟨xy⟩ s_x s_y of one configuration (the action is β times this).
    pub fn energy(&self, s: &[f64]) -> f64 {
        let lat = &self.lattice;
        (0..lat.volume())
            .map(|x| -s[x] * (s[lat.neighbour(x, 0, true)] + s[lat.neighbour(x, 1, true)]))
            .sum()
    }
}

impl Theory for Ising {
    fn name(&self) -> &'static str {
        "ising"
    }
    fn lattice(&self) -> &Lattice {
        &self.lattice
    }
    fn field_kind(&self) -> FieldKind {
        FieldKind::Spin
    }
    fn parameters(&self) -> Vec<(&'static str, f64)> {
        vec![("beta", self.beta)]
    }
    fn algorithms(&self) -> &'static [&'static str] {
        &["metropolis", "heatbath"]
    }
    fn primary_names(&self) -> &'static [&'static str] {
        &["energy", "M", "absM", "M2", "M4"]
    }
    fn measure(&self, s: &[f64]) -> ChainMeasurement {
        let v = self.lattice.volume() as f64;
        let m = s.iter().sum::<f64>() / v;
        ChainMeasurement {
            primaries: vec![self.energy(s) / v, m, m.abs(), m * m, m.powi(4)],
            slices: slice_sums(&self.lattice, s, |x| x),
        }
    }
    fn summarize(&self, series: &[Vec<Vec<f64>>]) -> Vec<(&'static str, Estimate)> {
        magnetic_summary(series, self.lattice.volume())
    }
    fn start_fields(&self, start: Start, chains: std::ops::Range<usize>, seed: u64) -> Vec<f64> {
        let v = self.lattice.volume();
        let first = chains.start;
        let chains = chains.len();
        match start {
            Start::Hot => (0..chains * v)
                .map(|i| {
                    let chain = (first + i / v) as u32;
                    let counter = [(i % v) as u32, chain, 0, philox::STREAM_INIT];
                    let u = philox::uniform_at(seed, counter);
                    if u < 0.5 {
                        1.0
                    } else {
                        -1.0
                    }
                })
                .collect(),
            Start::Cold | Start::Ordered => vec![1.0; chains * v],
        }
    }
    fn sweeper(
        &self,
        algorithm: LocalAlgorithm,
        chains: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Box<dyn Sweeper>> {
        check_offers(self, algorithm.name())?;
        let rule = match algorithm {
            LocalAlgorithm::Heatbath => Rule::heatbath(self.beta),
            _ => Rule::metropolis(self.beta),
        };
        let pk = Packing::new(&self.lattice, chains);
        let hits = algorithm.hits();
        Ok(match device {
            Device::Cpu(d) => Box::new(cpu::IsingCpu::new(d.clone(), pk, rule, hits, seed)),
            Device::Cuda(d) => Box::new(cuda::IsingCuda::new(d.clone(), pk, rule, hits, seed)?),
        })
    }
}

/// `energy`, `absM`, `chi` = V⟨m²⟩ and `binder` = 1 − ⟨m⁴⟩/(3⟨m²⟩²) from the primaries
/// (energy, M, absM, M2, M4), shared by the spin models.
pub(crate) fn magnetic_summary(
    series: &[Vec<Vec<f64>>],
    volume: usize,
) -> Vec<(&'static str, Estimate)> {
    let prim = |i: usize| {
        let reps: Vec<&[f64]> = series.iter().map(|r| r[i].as_slice()).collect();
        gamma_primary(&reps)
    };
    let pick = |idx: &[usize]| -> Vec<Vec<Vec<f64>>> {
        series
            .iter()
            .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
            .collect()
    };
    let v = volume as f64;
    let chi = gamma_derived(&pick(&[3]), |a| v * a[0]);
    let binder = gamma_derived(&pick(&[4, 3]), |a| 1.0 - a[0] / (3.0 * a[1] * a[1]));
    vec![
        ("energy", prim(0)),
        ("M", prim(1)),
        ("absM", prim(2)),
        ("chi", chi),
        ("binder", binder),
    ]
}
