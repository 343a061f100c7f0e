//! Training on an ensemble: the forward Kullback–Leibler divergence KL(p‖q) = ⟨ln p − ln q⟩_p,
//! estimated on configurations of a standard sampler (a `latticeml sample --theory xy` run),
//! added to the variational (reverse) KL(q‖p) that REINFORCE minimises. The reverse divergence
//! alone is mode-seeking: the network may miss parts of p, and an independence Metropolis chain
//! then sticks on the rare draws from there (weights p/q far above one). The forward divergence
//! punishes exactly those parts (ln q → −∞ where p lives), so a network trained on both covers
//! p; Metropolis–Hastings keeps the samples exact either way. Combining the two divergences for
//! normalising flows: Vaitl, Nicoli, Nakajima, Kessel, Phys. Rev. E 106, 045304 (2022) and
//! references there.
//!
//! Each draw of the data is one stored configuration moved by a random symmetry of the action
//! (a lattice translation, a reflection or rotation of the torus, θ → −θ; the network is already
//! invariant under global rotations), all keyed by (seed, sample, step), so a resumed training
//! is bit-identical.

use std::path::{Path, PathBuf};

use super::symmetry::{Symmetry, SymmetryGroup};
use crate::error::{Error, Result};
use crate::io::run_dir;
use crate::philox;
use crate::theory::xy::wrap;
use crate::theory::TheoryConfig;

/// Philox stream of the data draws (configuration, symmetry, translation).
pub const STREAM_CAN_DATA: u32 = 22;

/// The forward-KL term of a training: whose configurations, and its weight λ in
/// KL(q‖p) + λ·KL(p‖q).
#[derive(Clone, Debug, PartialEq)]
pub struct DataTerm {
    /// The run directory (`latticeml sample --theory xy`) whose `configs.npy` is the data.
    pub run: PathBuf,
    /// λ > 0.
    pub weight: f64,
}

impl DataTerm {
    /// Checks the weight.
    pub fn validate(&self) -> Result<()> {
        check_weight(self.weight)
    }
}

/// λ must be finite and positive.
pub(crate) fn check_weight(weight: f64) -> Result<()> {
    if !(weight.is_finite() && weight > 0.0) {
        return Err(Error::InvalidInput(format!(
            "--data-weight {weight}: use a finite lambda > 0 (loss KL(q||p) + lambda KL(p||q))"
        )));
    }
    Ok(())
}

/// The configurations of a run, drawn with random symmetries.
pub struct Ensemble {
    configs: Vec<f64>,
    dims: [usize; 2],
    group: SymmetryGroup,
}

impl Ensemble {
    /// Reads the run in `dir`, which must sample `theory` (the same lattice and β).
    pub fn load(dir: &Path, theory: &TheoryConfig) -> Result<Self> {
        let run = run_dir::theory_of_run(dir)?;
        if &run != theory {
            return Err(Error::InvalidInput(format!(
                "--data {}: the run sampled {}, the network targets {}; give a run of the same \
                 lattice and beta",
                dir.display(),
                run.to_json().pretty().replace('\n', ""),
                theory.to_json().pretty().replace('\n', "")
            )));
        }
        let lattice = theory.build()?.lattice().clone();
        let configs = run_dir::configs_of_run(dir, &lattice)?;
        Self::new(configs, lattice.extents())
    }

    /// An ensemble of angle configurations `[N, h·w]` on an `[h, w]` torus.
    pub fn new(configs: Vec<f64>, extents: &[usize]) -> Result<Self> {
        let dims: [usize; 2] = extents.try_into().map_err(|_| {
            Error::InvalidInput(format!(
                "an ensemble of the XY model on {extents:?}: need 2D"
            ))
        })?;
        let v = dims[0] * dims[1];
        if v == 0 || configs.is_empty() || !configs.len().is_multiple_of(v) {
            return Err(Error::InvalidInput(format!(
                "{} angles are not configurations of {v} sites",
                configs.len()
            )));
        }
        if configs.iter().any(|x| !x.is_finite()) {
            return Err(Error::InvalidInput("non-finite angles in the data".into()));
        }
        let group = SymmetryGroup::new(Symmetry::All, dims)?;
        Ok(Ensemble {
            configs,
            dims,
            group,
        })
    }

    /// Configurations held.
    pub fn len(&self) -> usize {
        self.configs.len() / (self.dims[0] * self.dims[1])
    }

    /// Whether it holds none (never: [`Ensemble::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    /// Draws `b` configurations `[b, V]` for training step `step`: sample i is configuration
    /// ⌊uN⌋ moved by a symmetry g of the torus and the angles and by a translation, every choice
    /// keyed by (seed, i, step).
    pub fn batch(&self, seed: u64, step: u32, b: usize) -> Result<Vec<f64>> {
        let [h, w] = self.dims;
        let v = h * w;
        let pick = |u: f64, n: usize| ((u * n as f64) as usize).min(n - 1);
        let mut out = vec![0.0; b * v];
        let mut moved = vec![0.0; v];
        for (i, o) in out.chunks_mut(v).enumerate() {
            let i = u32::try_from(i).map_err(|_| Error::InvalidInput("batch over 2^32".into()))?;
            let u = |k: u32| philox::uniform_at(seed, [k, i, step, STREAM_CAN_DATA]);
            let c = pick(u(0), self.len());
            let g = pick(u(1), self.group.len());
            let (dy, dx) = (pick(u(2), h), pick(u(3), w));
            self.group
                .apply(g, &self.configs[c * v..(c + 1) * v], &mut moved)?;
            for (s, &t) in moved.iter().enumerate() {
                let (r, col) = (s / w, s % w);
                o[((r + dy) % h) * w + (col + dx) % w] = wrap(t);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every draw is a stored configuration moved by a symmetry: the energy and the multiset of
    /// |cos θ| are kept, the choices cover the ensemble, and the draws are a function of the key.
    #[test]
    fn draws_are_symmetric_images_of_stored_configurations() {
        let dims = [4usize, 6];
        let v = 24;
        let lattice = crate::lattice::Lattice::new(&dims).unwrap();
        let xy = crate::theory::xy::Xy::new(lattice, 1.0).unwrap();
        let configs: Vec<f64> = (0..5 * v)
            .map(|i| 3.0 + 3.0 * ((i * i) as f64 * 0.7).sin())
            .collect();
        let energies: Vec<f64> = configs.chunks(v).map(|c| xy.bond_energy(c)).collect();
        let e = Ensemble::new(configs, &dims).unwrap();
        let batch = e.batch(4, 7, 64).unwrap();
        let mut seen = [false; 5];
        for d in batch.chunks(v) {
            let k = energies
                .iter()
                .position(|&x| (x - xy.bond_energy(d)).abs() < 1e-9)
                .expect("a draw's energy is a stored configuration's");
            seen[k] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
        assert_eq!(e.batch(4, 7, 64).unwrap(), batch);
        assert_ne!(e.batch(4, 8, 64).unwrap(), batch);
        assert!(Ensemble::new(vec![0.0; 25], &dims).is_err());
        assert!(Ensemble::new(vec![f64::NAN; 24], &dims).is_err());
    }
}
