//! Symmetrised proposals for the independence sampler: q_G(θ) = (1/|G|) Σ_{g∈G} q(gθ) over a group
//! G of exact symmetries of the XY action on the torus: the lattice's reflections and rotations
//! (the point group of the periodic lattice) and the reflection of the angles θ → −θ. Drawing θ ~ q
//! and applying a uniformly chosen g ∈ G draws from q_G exactly (G is a group, and every g
//! permutes and reflects angles, so it preserves volume); q_G costs |G| forward passes to
//! evaluate. The network's raster order and the seam where its last row meets its first are not
//! symmetric; averaging over G removes the part of its error that is not, and since the target is
//! G-invariant the variational free energy can only fall (Jensen). Symmetrising a
//! variational autoregressive network this way: Wu, Wang, Zhang, PRL 122, 080602 (2019) (the Z₂ of
//! the Ising model).

use crate::error::{Error, Result};
use crate::nn::{ParamStore, Real, Tape};
use crate::philox;
use crate::theory::xy::wrap;

use super::model::Can;

/// Which symmetries a proposal is averaged over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symmetry {
    /// None: q itself.
    None,
    /// θ → −θ.
    Flip,
    /// The lattice's reflections and rotations (8 on a square torus, 4 on a rectangle).
    Lattice,
    /// Both: 16 maps on a square torus, 8 on a rectangle.
    All,
}

impl Symmetry {
    /// The name on the command line and in run files.
    pub fn name(self) -> &'static str {
        match self {
            Symmetry::None => "none",
            Symmetry::Flip => "flip",
            Symmetry::Lattice => "lattice",
            Symmetry::All => "all",
        }
    }

    /// The symmetry of a command-line name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Symmetry::None),
            "flip" => Ok(Symmetry::Flip),
            "lattice" => Ok(Symmetry::Lattice),
            "all" => Ok(Symmetry::All),
            other => Err(Error::InvalidInput(format!(
                "--symmetry {other}: use none, flip, lattice or all"
            ))),
        }
    }
}

/// One map θ ↦ gθ: (gθ)_s = ±θ_{source[s]}.
#[derive(Clone, Debug, PartialEq)]
struct SiteMap {
    source: Vec<usize>,
    negate: bool,
}

/// A group of symmetries of the XY model on an `[h, w]` torus, as maps of configurations.
#[derive(Clone, Debug, PartialEq)]
pub struct SymmetryGroup {
    kind: Symmetry,
    maps: Vec<SiteMap>,
}

impl SymmetryGroup {
    /// The group `kind` on an `[h, w]` torus (the first map is the identity).
    pub fn new(kind: Symmetry, [h, w]: [usize; 2]) -> Result<Self> {
        if h == 0 || w == 0 {
            return Err(Error::InvalidInput(format!(
                "a symmetry group of an {h}x{w} lattice"
            )));
        }
        // The point group of the torus as maps of (row, column), each an optional transpose
        // (square lattices only) followed by optional reversals of the rows and the columns:
        // every one keeps nearest neighbours nearest neighbours across the periodic boundary.
        let lattice = matches!(kind, Symmetry::Lattice | Symmetry::All);
        let points: Vec<[bool; 3]> = (0..8u8)
            .map(|k| [k & 4 != 0, k & 2 != 0, k & 1 != 0])
            .filter(|&[swap, rev_r, rev_c]| {
                (lattice || !(swap || rev_r || rev_c)) && (h == w || !swap)
            })
            .collect();
        let flips: &[bool] = match kind {
            Symmetry::Flip | Symmetry::All => &[false, true],
            _ => &[false],
        };
        let mut maps = Vec::new();
        for &negate in flips {
            for &[swap, rev_r, rev_c] in &points {
                let source = (0..h * w)
                    .map(|s| {
                        let (r, c) = if swap { (s % w, s / w) } else { (s / w, s % w) };
                        let r = if rev_r { h - 1 - r } else { r };
                        let c = if rev_c { w - 1 - c } else { c };
                        r * w + c
                    })
                    .collect();
                maps.push(SiteMap { source, negate });
            }
        }
        Ok(SymmetryGroup { kind, maps })
    }

    /// Which symmetries.
    pub fn kind(&self) -> Symmetry {
        self.kind
    }

    /// |G|.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// Whether G is empty (never: it holds the identity).
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// gθ of one configuration θ `[V]` for map `g` < |G|, into `out`.
    pub fn apply(&self, g: usize, theta: &[f64], out: &mut [f64]) -> Result<()> {
        let m = self.maps.get(g).ok_or_else(|| {
            Error::InvalidInput(format!("map {g} of a group of {}", self.maps.len()))
        })?;
        if theta.len() != m.source.len() || out.len() != theta.len() {
            return Err(Error::InvalidInput(format!(
                "a symmetry of {} sites applied to {} angles into {}",
                m.source.len(),
                theta.len(),
                out.len()
            )));
        }
        for (o, &s) in out.iter_mut().zip(&m.source) {
            *o = if m.negate { wrap(-theta[s]) } else { theta[s] };
        }
        Ok(())
    }

    /// The map each chain's draw is moved by: uniform over G, keyed by (seed, chain, step).
    pub fn choose(&self, seed: u64, chain: u32, step: u32, stream: u32) -> usize {
        let u = philox::uniform(seed, chain, step, stream);
        ((u * self.maps.len() as f64) as usize).min(self.maps.len() - 1)
    }

    /// ln q_G(θ) = ln Σ_g q(gθ) − ln |G| of configurations θ `[B, V]`: all |G|·B images in
    /// one batched forward pass, each configuration's terms summed from the largest.
    pub fn log_density<T: Real>(
        &self,
        can: &Can,
        store: &ParamStore<T>,
        theta: &[f64],
    ) -> Result<Vec<f64>> {
        let v = can.volume();
        if v == 0 || !theta.len().is_multiple_of(v) || self.maps[0].source.len() != v {
            return Err(Error::InvalidInput(format!(
                "{} angles are not configurations of the symmetry group's {} sites",
                theta.len(),
                self.maps[0].source.len()
            )));
        }
        let (b, k) = (theta.len() / v, self.maps.len());
        let mut images = vec![0.0; k * theta.len()];
        for (g, image) in images.chunks_mut(theta.len()).enumerate() {
            for (t, o) in theta.chunks(v).zip(image.chunks_mut(v)) {
                self.apply(g, t, o)?;
            }
        }
        let lq = log_q_of(can, store, &images)?;
        let ln_k = (k as f64).ln();
        Ok((0..b)
            .map(|i| {
                let terms: Vec<f64> = (0..k).map(|g| lq[g * b + i]).collect();
                let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = terms.iter().map(|t| (t - top).exp()).sum();
                top + sum.ln() - ln_k
            })
            .collect())
    }
}

/// ln q(θ) of configurations θ `[B, V]` in one forward pass, without recording.
pub fn log_q_of<T: Real>(can: &Can, store: &ParamStore<T>, theta: &[f64]) -> Result<Vec<f64>> {
    let tape = Tape::new(store.ctx());
    tape.set_grad_enabled(false);
    let u: Vec<T> = can.variables(theta);
    can.log_q(&tape, store, &u)?.value().to_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every map is a bijection of the sites that keeps nearest neighbours nearest neighbours on
    /// the torus, and the set is closed under composition (a group).
    #[test]
    fn the_maps_are_a_group_of_lattice_symmetries() {
        for dims in [[4usize, 4], [4, 6], [3, 3]] {
            let g = SymmetryGroup::new(Symmetry::All, dims).unwrap();
            let [h, w] = dims;
            assert_eq!(g.len(), if h == w { 16 } else { 8 });
            let v = h * w;
            let neighbours = |s: usize| {
                let (r, c) = (s / w, s % w);
                [
                    ((r + 1) % h) * w + c,
                    ((r + h - 1) % h) * w + c,
                    r * w + (c + 1) % w,
                    r * w + (c + w - 1) % w,
                ]
            };
            for m in &g.maps {
                let mut seen = vec![false; v];
                m.source.iter().for_each(|&s| seen[s] = true);
                assert!(seen.iter().all(|&x| x), "{dims:?}: not a bijection");
                for s in 0..v {
                    for n in neighbours(s) {
                        assert!(neighbours(m.source[s]).contains(&m.source[n]), "{dims:?}");
                    }
                }
            }
            for a in &g.maps {
                for b in &g.maps {
                    let composed = SiteMap {
                        source: (0..v).map(|s| b.source[a.source[s]]).collect(),
                        negate: a.negate != b.negate,
                    };
                    assert!(g.maps.contains(&composed), "{dims:?}: not closed");
                }
            }
        }
    }

    #[test]
    fn flips_reflect_angles_and_choices_cover_the_group() {
        let g = SymmetryGroup::new(Symmetry::Flip, [2, 2]).unwrap();
        let theta = [0.0, 1.0, 3.0, 6.0];
        let mut out = [0.0; 4];
        g.apply(1, &theta, &mut out).unwrap();
        let tau = std::f64::consts::TAU;
        assert_eq!(out, [0.0, tau - 1.0, tau - 3.0, tau - 6.0]);
        assert!(g.apply(2, &theta, &mut out).is_err());
        assert!(g.apply(0, &theta[..3], &mut out[..3]).is_err());
        let all = SymmetryGroup::new(Symmetry::All, [4, 4]).unwrap();
        let mut hits = [0usize; 16];
        (0..1600u32).for_each(|c| hits[all.choose(7, c, 0, 18)] += 1);
        assert!(hits.iter().all(|&n| (60..140).contains(&n)), "{hits:?}");
    }
}
