//! Theories behind one [`Theory`] trait: what a production run needs to know of a model (its
//! lattice, field kind, parameters, starts, measurements and their analysis), and which update
//! algorithms it offers.
//!
//! Real scalar theories (φ⁴ in d = 1..4 and the oscillator, [`crate::action`]) have a force and
//! run HMC and Langevin; the XY model ([`xy`], an angle field) and the Ising model ([`ising`],
//! spins ±1 stored one bit per spin) bring their own local updates with CUDA kernels and CPU twins.
//!
//! Adding a theory: a module here implementing [`Theory`] (its kernels in `kernels/<name>.cu` with
//! a CPU twin beside it), a variant of [`TheoryConfig`] and its arm in [`TheoryConfig::build`].

pub mod checkerboard;
pub mod ising;
pub mod scalar;
pub mod xy;

use std::sync::Arc;

use crate::action::{Action, Oscillator, Phi4};
use crate::analysis::Estimate;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::hmc::Start;
use crate::io::json::Json;
use crate::lattice::Lattice;
use crate::sampler::ChainMeasurement;

/// What a field holds at each site. Every kind travels through the [`crate::sampler::Sampler`]
/// interface and the files as f64 (`configs.npy`); samplers store it as they like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A real number (φ⁴, the oscillator).
    Real,
    /// An angle θ ∈ [0, 2π) (O(2), XY).
    Angle,
    /// A spin ±1 (Ising).
    Spin,
}

/// Local (site-by-site) update algorithms, on the two checkerboard sublattices in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalAlgorithm {
    /// Metropolis with `hits` proposals per site per sweep.
    Metropolis {
        /// Proposals per site per sweep.
        hits: u32,
    },
    /// Microcanonical overrelaxation (reflection through the local field; XY).
    Overrelax,
    /// Heat-bath: each site drawn from its exact conditional distribution (Ising).
    Heatbath,
    /// A Metropolis sweep with `hits`, then an embedded-Ising cluster update of the field's
    /// signs (φ⁴ and the oscillator; Brower–Tamayo).
    Cluster {
        /// Metropolis proposals per site per sweep.
        hits: u32,
        /// Swendsen–Wang or Wolff.
        kind: ClusterKind,
    },
}

/// How the embedded-Ising clusters are built and flipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterKind {
    /// Every bond of the lattice; each cluster flipped with probability ½.
    SwendsenWang,
    /// `clusters` single clusters per update, each grown from a random site and flipped. (A
    /// number fixed in advance: stopping once the clusters have covered V sites would favour
    /// the states with large clusters.)
    Wolff {
        /// Clusters per update, 1 to [`MAX_CLUSTERS`].
        clusters: u32,
    },
}

/// Most Metropolis hits per site per sweep accepted.
pub const MAX_HITS: u32 = 1000;

/// Most Wolff clusters per update accepted.
pub const MAX_CLUSTERS: u32 = 1 << 20;

impl LocalAlgorithm {
    /// Checks the parameters (1 ≤ hits ≤ [`MAX_HITS`]).
    pub fn validate(&self) -> Result<()> {
        match *self {
            LocalAlgorithm::Cluster {
                kind: ClusterKind::Wolff { clusters },
                ..
            } if clusters == 0 || clusters > MAX_CLUSTERS => Err(Error::InvalidInput(format!(
                "--clusters {clusters} must be between 1 and {MAX_CLUSTERS}"
            ))),
            _ if self.takes_hits() && (self.hits() == 0 || self.hits() > MAX_HITS) => {
                Err(Error::InvalidInput(format!(
                    "--hits {} must be between 1 and {MAX_HITS}",
                    self.hits()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Whether the algorithm has Metropolis hits (`--hits`).
    pub fn takes_hits(&self) -> bool {
        matches!(
            self,
            LocalAlgorithm::Metropolis { .. } | LocalAlgorithm::Cluster { .. }
        )
    }

    /// Metropolis proposals per site per sweep.
    pub fn hits(&self) -> u32 {
        match *self {
            LocalAlgorithm::Metropolis { hits } | LocalAlgorithm::Cluster { hits, .. } => hits,
            _ => 1,
        }
    }

    /// The algorithm called `name` (`metropolis`, `overrelax`, `heatbath`, `cluster`, `wolff`)
    /// with `hits` Metropolis proposals per site (default 1) and, for `wolff`, `clusters` per update
    /// (default 4); a parameter the algorithm does not take is refused rather than ignored.
    pub fn from_name(name: &str, hits: Option<u32>, clusters: Option<u32>) -> Result<Self> {
        let algorithm = match name {
            "metropolis" => LocalAlgorithm::Metropolis {
                hits: hits.unwrap_or(1),
            },
            "overrelax" => LocalAlgorithm::Overrelax,
            "heatbath" => LocalAlgorithm::Heatbath,
            "cluster" => LocalAlgorithm::Cluster {
                hits: hits.unwrap_or(1),
                kind: ClusterKind::SwendsenWang,
            },
            "wolff" => LocalAlgorithm::Cluster {
                hits: hits.unwrap_or(1),
                kind: ClusterKind::Wolff {
                    clusters: clusters.unwrap_or(4),
                },
            },
            other => {
                return Err(Error::InvalidInput(format!(
                    "unknown local algorithm '{other}': use metropolis, overrelax, heatbath, \
                     cluster or wolff"
                )))
            }
        };
        if hits.is_some() && !algorithm.takes_hits() {
            return Err(Error::InvalidInput(format!(
                "--algorithm {name} takes no --hits (metropolis, cluster and wolff do)"
            )));
        }
        if clusters.is_some() && name != "wolff" {
            return Err(Error::InvalidInput(format!(
                "--algorithm {name} takes no --clusters (only wolff does)"
            )));
        }
        algorithm.validate()?;
        Ok(algorithm)
    }

    /// The name used by `--algorithm`.
    pub fn name(&self) -> &'static str {
        match self {
            LocalAlgorithm::Metropolis { .. } => "metropolis",
            LocalAlgorithm::Overrelax => "overrelax",
            LocalAlgorithm::Heatbath => "heatbath",
            LocalAlgorithm::Cluster {
                kind: ClusterKind::SwendsenWang,
                ..
            } => "cluster",
            LocalAlgorithm::Cluster {
                kind: ClusterKind::Wolff { .. },
                ..
            } => "wolff",
        }
    }
}

/// A batch of chains updated site by site: the engine behind [`crate::local::LocalSampler`].
/// `sweep` updates every site of every chain once (all hits included); its random numbers are
/// keyed by (site, chain, `sweep`), so the result does not depend on the backend or threads.
pub trait Sweeper: Send {
    /// One sweep with index `sweep`; returns per chain the fraction of proposals accepted.
    fn sweep(&mut self, sweep: u64) -> Result<Vec<f64>>;
    /// The fields, `[chain][site]` as f64.
    fn fields(&self) -> Result<Vec<f64>>;
    /// Sets the fields, `[chain][site]`; values outside the field kind's range are refused.
    fn set_fields(&mut self, field: &[f64]) -> Result<()>;
    /// Site updates (proposals) per sweep over all chains.
    fn site_updates(&self) -> u64;
    /// Keys the random numbers by the global chain index `chain0 + chain`: the batch is then the
    /// chains `chain0..` of a larger ensemble ([`crate::sampler::Sampler::set_first_chain`]).
    fn set_first_chain(&mut self, chain0: u32);
    /// A Swendsen–Wang update of the embedded Ising signs in place, where the sweeper's fields
    /// live on a device with that update (see [`checkerboard::ColourPass::swendsen_wang`]);
    /// `false` otherwise.
    fn swendsen_wang(&mut self, hop: f64, seed: u64, t: u32) -> Result<bool> {
        let _ = (hop, seed, t);
        Ok(false)
    }
    /// Number of chains.
    fn chains(&self) -> usize;
}

/// A lattice model as the production run sees it.
pub trait Theory: Send + Sync + std::fmt::Debug {
    /// Short name, e.g. `phi4`, `xy`.
    fn name(&self) -> &'static str;
    /// The lattice.
    fn lattice(&self) -> &Lattice;
    /// What the field holds.
    fn field_kind(&self) -> FieldKind;
    /// Parameters as (name, value) pairs, for summaries, manifests and checkpoints.
    fn parameters(&self) -> Vec<(&'static str, f64)>;
    /// Names of the per-configuration primary observables (the CSV columns).
    fn primary_names(&self) -> &'static [&'static str];
    /// One configuration's primaries and time-slice sums (reference CPU measurement).
    fn measure(&self, field: &[f64]) -> ChainMeasurement;
    /// Named estimates with Γ-method errors from `series[chain][primary][config]`.
    fn summarize(&self, series: &[Vec<Vec<f64>>]) -> Vec<(&'static str, Estimate)>;
    /// The starting batch `[chain][site]` of the ensemble's chains `chains` (global indices, which
    /// key the random numbers: a range of an ensemble starts as those chains of the whole).
    fn start_fields(&self, start: Start, chains: std::ops::Range<usize>, seed: u64) -> Vec<f64>;
    /// Names of the algorithms (`--algorithm`) this theory offers.
    fn algorithms(&self) -> &'static [&'static str];
    /// Maps raw field values to their canonical range in place (angles to [0, 2π)); samplers
    /// that let values leave it (HMC on angles) report fields through this.
    fn canonical(&self, field: &mut [f64]) {
        let _ = field;
    }
    /// The theory as a real action with a force (for HMC and Langevin), if it is one.
    fn scalar_action(self: Arc<Self>) -> Option<Arc<dyn Action>> {
        None
    }
    /// The theory's local update `algorithm` for `chains` chains on `device` with `seed`.
    fn sweeper(
        &self,
        algorithm: LocalAlgorithm,
        chains: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Box<dyn Sweeper>> {
        let _ = (chains, seed, device);
        Err(not_offered(
            self.name(),
            self.algorithms(),
            algorithm.name(),
        ))
    }
}

/// `key=value` lines naming `theory` exactly (name, lattice, couplings): the theory's part of a
/// run's identity in manifests and checkpoints.
pub fn identity_lines(theory: &dyn Theory) -> String {
    let mut s = format!(
        "theory={}\nlattice={}\n",
        theory.name(),
        theory.lattice().label()
    );
    for (k, v) in theory.parameters() {
        s.push_str(&format!("{k}={v:?}\n"));
    }
    s
}

/// Refuses an algorithm `theory` does not offer, naming those it does.
pub fn check_offers(theory: &dyn Theory, algorithm: &str) -> Result<()> {
    if theory.algorithms().contains(&algorithm) {
        return Ok(());
    }
    Err(not_offered(theory.name(), theory.algorithms(), algorithm))
}

fn not_offered(theory: &str, offers: &[&str], algorithm: &str) -> Error {
    Error::InvalidInput(format!(
        "--algorithm {algorithm} is not available for --theory {theory}; it offers {}",
        offers.join(", ")
    ))
}

/// The first local step, sweep·hits, of sweep `sweep` (hit h of the sweep is step + h), checked
/// against the steps the random-number counters can tell apart.
pub fn first_local_step(sweep: u64, hits: u32) -> Result<u64> {
    sweep
        .checked_mul(hits as u64)
        .filter(|s| s + (hits as u64) <= crate::philox::MAX_STEPS)
        .ok_or_else(|| {
            Error::InvalidInput(format!("sweep {sweep} is beyond the steps a run can count"))
        })
}

/// Every theory with its parameters: the registry of [`Theory`] implementations.
#[derive(Clone, Debug, PartialEq)]
pub enum TheoryConfig {
    /// φ⁴ in hopping form.
    Phi4 {
        /// The lattice.
        lattice: Lattice,
        /// Hopping parameter κ.
        kappa: f64,
        /// Quartic coupling λ.
        lambda: f64,
    },
    /// The anharmonic oscillator.
    Oscillator {
        /// Mass m.
        mass: f64,
        /// Quartic coupling λ.
        lambda: f64,
        /// Well position f.
        f: f64,
        /// Inverse temperature β.
        beta: f64,
        /// Time slices N.
        n: usize,
    },
    /// The XY model, S = −β Σ cos(θx − θx+μ).
    Xy {
        /// The lattice (even extents).
        lattice: Lattice,
        /// Coupling β.
        beta: f64,
    },
    /// The Ising model on a 2D torus, S = −β Σ s s'.
    Ising {
        /// The lattice (2D, even extents).
        lattice: Lattice,
        /// Coupling β.
        beta: f64,
    },
}

impl TheoryConfig {
    /// Builds (and validates) the theory.
    pub fn build(&self) -> Result<Arc<dyn Theory>> {
        Ok(match self {
            TheoryConfig::Phi4 {
                lattice,
                kappa,
                lambda,
            } => Arc::new(Phi4::new(lattice.clone(), *kappa, *lambda)?),
            TheoryConfig::Oscillator {
                mass,
                lambda,
                f,
                beta,
                n,
            } => Arc::new(Oscillator::new(*mass, *lambda, *f, *beta, *n)?),
            TheoryConfig::Xy { lattice, beta } => Arc::new(xy::Xy::new(lattice.clone(), *beta)?),
            TheoryConfig::Ising { lattice, beta } => {
                Arc::new(ising::Ising::new(lattice.clone(), *beta)?)
            }
        })
    }
}

impl TheoryConfig {
    /// The theory as a JSON object (for model files that must rebuild it): its name, lattice and
    /// couplings, numbers written exactly.
    pub fn to_json(&self) -> Json {
        let lat = |l: &Lattice| Json::Str(l.label());
        match self {
            TheoryConfig::Phi4 {
                lattice,
                kappa,
                lambda,
            } => Json::obj([
                ("theory", Json::Str("phi4".into())),
                ("lattice", lat(lattice)),
                ("kappa", Json::Num(*kappa)),
                ("lambda", Json::Num(*lambda)),
            ]),
            TheoryConfig::Oscillator {
                mass,
                lambda,
                f,
                beta,
                n,
            } => Json::obj([
                ("theory", Json::Str("oscillator".into())),
                ("mass", Json::Num(*mass)),
                ("lambda", Json::Num(*lambda)),
                ("f", Json::Num(*f)),
                ("beta", Json::Num(*beta)),
                ("n", Json::Num(*n as f64)),
            ]),
            TheoryConfig::Xy { lattice, beta } => Json::obj([
                ("theory", Json::Str("xy".into())),
                ("lattice", lat(lattice)),
                ("beta", Json::Num(*beta)),
            ]),
            TheoryConfig::Ising { lattice, beta } => Json::obj([
                ("theory", Json::Str("ising".into())),
                ("lattice", lat(lattice)),
                ("beta", Json::Num(*beta)),
            ]),
        }
    }

    /// Reads [`TheoryConfig::to_json`]'s object; a missing or malformed member is an error
    /// naming it.
    pub fn from_json(j: &Json) -> Result<Self> {
        let num = |k: &str| match j.get(k) {
            Some(Json::Num(v)) => Ok(*v),
            _ => Err(Error::InvalidInput(format!(
                "the theory record has no number \"{k}\""
            ))),
        };
        let lattice = || match j.get("lattice") {
            Some(Json::Str(s)) => Lattice::parse(s),
            _ => Err(Error::InvalidInput(
                "the theory record has no \"lattice\"".into(),
            )),
        };
        let count = |k: &str| -> Result<usize> {
            let v = num(k)?;
            if v >= 1.0 && v.fract() == 0.0 && v < 1e12 {
                Ok(v as usize)
            } else {
                Err(Error::InvalidInput(format!(
                    "the theory record's \"{k}\" = {v} is not a positive integer"
                )))
            }
        };
        match j.get("theory") {
            Some(Json::Str(t)) if t == "phi4" => Ok(TheoryConfig::Phi4 {
                lattice: lattice()?,
                kappa: num("kappa")?,
                lambda: num("lambda")?,
            }),
            Some(Json::Str(t)) if t == "oscillator" => Ok(TheoryConfig::Oscillator {
                mass: num("mass")?,
                lambda: num("lambda")?,
                f: num("f")?,
                beta: num("beta")?,
                n: count("n")?,
            }),
            Some(Json::Str(t)) if t == "xy" => Ok(TheoryConfig::Xy {
                lattice: lattice()?,
                beta: num("beta")?,
            }),
            Some(Json::Str(t)) if t == "ising" => Ok(TheoryConfig::Ising {
                lattice: lattice()?,
                beta: num("beta")?,
            }),
            other => Err(Error::InvalidInput(format!(
                "unknown theory {other:?} in the record"
            ))),
        }
    }
}

/// Sums of `f(field[site])` over each time slice (axis 0) of one configuration.
pub(crate) fn slice_sums(lat: &Lattice, field: &[f64], f: impl Fn(f64) -> f64) -> Vec<f64> {
    let per = lat.volume() / lat.time_extent();
    field
        .chunks(per)
        .map(|s| s.iter().map(|&x| f(x)).sum())
        .collect()
}
