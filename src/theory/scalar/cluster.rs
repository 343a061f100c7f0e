//! Embedded-Ising cluster updates of the signs of a real field (R. C. Brower and P. Tamayo,
//! Phys. Rev. Lett. 62, 1087 (1989)): with |φ| held fixed, the signs s = sign φ form an Ising
//! model with bond couplings J_xy = hop |φ_x| |φ_y| (S ∋ −hop φ_x φ_y), which Swendsen–Wang
//! (Phys. Rev. Lett. 58, 86 (1987)) or Wolff (Phys. Rev. Lett. 62, 361 (1989)) clusters update
//! without critical slowing down: a bond between equal signs is frozen with probability
//! 1 − e^{−2 hop φ_x φ_y}, and a cluster flips all its φ. Combined with Metropolis sweeps, which
//! move the magnitudes, this is ergodic. Any even potential (φ⁴, the double well) is allowed.
//!
//! The random numbers are keyed by (site, chain, update) like every other update, and cluster
//! labels are the smallest site of the cluster, so the result does not depend on the order in
//! which the chains are processed.

use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::philox::{self, uniform_from_words};
use crate::theory::checkerboard::Steps;
use crate::theory::ClusterKind;

/// Union-find with the smallest index as root, so labels do not depend on the union order.
struct Labels(Vec<u32>);

impl Labels {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let parent = self.0[x as usize];
            self.0[x as usize] = self.0[parent as usize];
            x = parent;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        self.0[hi as usize] = lo;
    }
}

/// The uniform of bond (x, x + μ̂) of `chain` at update `t`, for Swendsen–Wang (`cluster` 0)
/// or Wolff cluster `cluster` − 1: two per Philox block.
fn bond_uniform(key: [u32; 2], x: usize, mu: usize, chain: u32, t: u32, cluster: u32) -> f64 {
    let ctr = [
        (2 * x + mu / 2) as u32,
        chain,
        t,
        philox::STREAM_BOND | cluster << 8,
    ];
    let b = philox::philox4x32_10(ctr, key);
    let j = 2 * (mu % 2);
    uniform_from_words(b[j], b[j + 1])
}

/// Whether the bond between φ_x and φ_y freezes: equal signs, and its uniform (drawn only
/// then) below 1 − e^{−2 hop φ_x φ_y}.
#[inline]
fn frozen(hop: f64, a: f64, b: f64, u: impl FnOnce() -> f64) -> bool {
    a * b > 0.0 && u() < -(-2.0 * hop * a * b).exp_m1()
}

/// The 32-bit update index of the cluster draws.
pub fn update_index(t: u64) -> Result<u32> {
    u32::try_from(t).map_err(|_| {
        Error::InvalidInput(format!(
            "cluster updates count at most 2^32 updates, not {t}"
        ))
    })
}

/// CPU twin of `sw_bonds`: per site of the batch `phi` (`[chain][site]`, chain c the ensemble's
/// chain `chain0 + c`), bit μ set when the bond (x, x + μ̂) is frozen at update `t`.
pub fn sw_bonds(
    lat: &Lattice,
    hop: f64,
    phi: &[f64],
    key: [u32; 2],
    chain0: u32,
    t: u32,
) -> Vec<u8> {
    let steps = Steps::new(lat);
    let v = lat.volume();
    let mut bonds = vec![0u8; phi.len()];
    for (c, (pc, bc)) in phi.chunks(v).zip(bonds.chunks_mut(v)).enumerate() {
        let chain = chain0 + c as u32;
        for (x, b) in bc.iter_mut().enumerate() {
            for mu in 0..lat.dim() {
                let y = steps.step(x, steps.coord(x, mu), mu, true);
                if frozen(hop, pc[x], pc[y], || bond_uniform(key, x, mu, chain, t, 0)) {
                    *b |= 1 << mu;
                }
            }
        }
    }
    bonds
}

/// The fixed point of `sw_label_step`: per site its cluster's smallest site (within its chain),
/// by union-find over the frozen `bonds` of [`sw_bonds`].
pub fn min_labels(lat: &Lattice, bonds: &[u8]) -> Vec<u32> {
    let steps = Steps::new(lat);
    let v = lat.volume();
    bonds
        .chunks(v)
        .flat_map(|bc| {
            let mut labels = Labels((0..v as u32).collect());
            for (x, &b) in bc.iter().enumerate() {
                for mu in (0..lat.dim()).filter(|mu| b >> mu & 1 == 1) {
                    let y = steps.step(x, steps.coord(x, mu), mu, true);
                    labels.union(x as u32, y as u32);
                }
            }
            (0..v as u32).map(move |x| labels.find(x))
        })
        .collect()
}

/// CPU twin of `sw_flip`: flips every site whose cluster (labelled by its smallest site) draws
/// a coin below ½ from counter (label, chain0 + chain, t, [`philox::STREAM_CLUSTER`]).
pub fn sw_flip(phi: &mut [f64], labels: &[u32], volume: usize, key: [u32; 2], chain0: u32, t: u32) {
    for (i, (x, &r)) in phi.iter_mut().zip(labels).enumerate() {
        let chain = chain0 + (i / volume) as u32;
        let b = philox::philox4x32_10([r, chain, t, philox::STREAM_CLUSTER], key);
        if uniform_from_words(b[0], b[1]) < 0.5 {
            *x = -*x;
        }
    }
}

/// `clusters` Wolff clusters (at most [`crate::theory::MAX_CLUSTERS`]) on one chain at update
/// `t`, each grown from a random site and flipped; returns the sites flipped.
pub fn wolff(
    lat: &Lattice,
    hop: f64,
    phi: &mut [f64],
    key: [u32; 2],
    chain: u32,
    t: u32,
    clusters: u32,
) -> usize {
    let steps = Steps::new(lat);
    let v = lat.volume();
    let mut in_cluster = vec![u32::MAX; v];
    let mut covered = 0usize;
    let mut stack = Vec::new();
    for k in 0..clusters.min(crate::theory::MAX_CLUSTERS) {
        // Cluster k: its seed from block (k, chain, t), its bonds keyed by k + 1.
        let b = philox::philox4x32_10([k, chain, t, philox::STREAM_CLUSTER], key);
        let seed = ((uniform_from_words(b[0], b[1]) * v as f64) as usize).min(v - 1);
        stack.push(seed);
        in_cluster[seed] = k;
        while let Some(x) = stack.pop() {
            for mu in 0..lat.dim() {
                let c = steps.coord(x, mu);
                let (up, down) = (steps.step(x, c, mu, true), steps.step(x, c, mu, false));
                // A bond's uniform is keyed by its lower end: x for x + μ̂, x − μ̂ for x − μ̂.
                for (y, lower) in [(up, x), (down, down)] {
                    let u = || bond_uniform(key, lower, mu, chain, t, k + 1);
                    if in_cluster[y] != k && frozen(hop, phi[x], phi[y], u) {
                        in_cluster[y] = k;
                        stack.push(y);
                    }
                }
            }
            phi[x] = -phi[x];
            covered += 1;
        }
    }
    covered
}

/// One cluster update of `kind` on every chain of the batch `phi` (`[chain][site]`) at update
/// `t` (below 2^32); chain c of the batch is the ensemble's chain `chain0 + c`.
pub fn update(
    kind: ClusterKind,
    lat: &Lattice,
    hop: f64,
    phi: &mut [f64],
    seed: u64,
    chain0: u32,
    t: u64,
) -> Result<()> {
    let t = update_index(t)?;
    let v = lat.volume();
    if phi.is_empty() || !phi.len().is_multiple_of(v) {
        return Err(Error::InvalidInput(format!(
            "{} values are not whole chains of {v} sites",
            phi.len()
        )));
    }
    let key = philox::key_from_seed(seed);
    match kind {
        ClusterKind::SwendsenWang => {
            let labels = min_labels(lat, &sw_bonds(lat, hop, phi, key, chain0, t));
            sw_flip(phi, &labels, v, key, chain0, t);
        }
        ClusterKind::Wolff { clusters } => {
            for (c, chain) in phi.chunks_mut(v).enumerate() {
                wolff(lat, hop, chain, key, chain0 + c as u32, t, clusters);
            }
        }
    }
    Ok(())
}
