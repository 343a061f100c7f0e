//! Local updates of the real scalar theories (φ⁴ in d = 1..4, the oscillator): checkerboard
//! Metropolis with `hits` proposals φ' = φ + δ(2u − 1) per site (CPU twin [`cpu`] of
//! `kernels/scalar_local.cu`, [`cuda`]), optionally followed by embedded-Ising cluster updates
//! of the signs ([`cluster`]).

pub mod cluster;
pub mod cpu;
pub mod cuda;

use crate::action::{Action, ForceLaw, ScalarCouplings};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::theory::checkerboard::{require_even, Checkerboard, ColourPass};
use crate::theory::{ClusterKind, LocalAlgorithm, Sweeper};

/// The proposal half-width δ: about the width of a site's conditional distribution,
/// 1/√(u₂ + √u₄) (for φ⁴ near λ = 0 the conditional variance is 1/(2u₂); the quartic term
/// narrows it), so that about half the proposals are accepted.
pub fn proposal_width(c: &ScalarCouplings) -> f64 {
    let k = c.u2.abs() + c.u4.sqrt();
    if k > 0.0 && k.is_finite() {
        1.0 / k.sqrt()
    } else {
        1.0
    }
}

/// The Metropolis sweeper of a scalar `action` for `chains` chains on `device`.
pub fn sweeper(
    action: &dyn Action,
    algorithm: LocalAlgorithm,
    chains: usize,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn Sweeper>> {
    let lat = action.lattice();
    require_even(lat, action.name())?;
    let c = action.couplings();
    let clusters = match algorithm {
        LocalAlgorithm::Metropolis { .. } => None,
        LocalAlgorithm::Cluster { kind, .. } if c.law == ForceLaw::Polynomial => Some(kind),
        _ => {
            return Err(Error::InvalidInput(format!(
                "{} offers metropolis, cluster and wolff among the local updates, not {}",
                action.name(),
                algorithm.name()
            )))
        }
    };
    let delta = proposal_width(&c);
    let pass: Box<dyn ColourPass> = match device {
        Device::Cpu(d) => Box::new(cpu::ScalarCpu::new(
            d.clone(),
            lat.clone(),
            chains,
            c,
            delta,
            seed,
        )),
        Device::Cuda(d) => Box::new(cuda::ScalarCuda::new(
            d.clone(),
            lat,
            chains,
            c,
            delta,
            seed,
        )?),
    };
    let metropolis = Box::new(Checkerboard::new(
        pass,
        algorithm,
        lat,
        chains,
        check_finite,
    ));
    Ok(match clusters {
        None => metropolis,
        Some(kind) => Box::new(WithClusters {
            inner: metropolis,
            kind,
            lattice: lat.clone(),
            hop: c.hop,
            seed,
            chain0: 0,
        }),
    })
}

fn check_finite(field: &[f64]) -> Result<()> {
    match field.iter().find(|x| !x.is_finite()) {
        Some(bad) => Err(Error::NonFinite(format!("a field value is {bad}"))),
        None => Ok(()),
    }
}

/// A Metropolis sweeper followed, every sweep, by a cluster update of the signs: Swendsen–Wang on
/// the device where the sweeper's fields are (`kernels/cluster.cu`), Wolff clusters (a sequential
/// growth) on the host, the fields travelling there and back on a GPU run.
struct WithClusters {
    inner: Box<dyn Sweeper>,
    kind: ClusterKind,
    lattice: Lattice,
    hop: f64,
    seed: u64,
    chain0: u32,
}

impl Sweeper for WithClusters {
    fn sweep(&mut self, sweep: u64) -> Result<Vec<f64>> {
        let accepted = self.inner.sweep(sweep)?;
        if self.kind == ClusterKind::SwendsenWang {
            let t = cluster::update_index(sweep)?;
            if self.inner.swendsen_wang(self.hop, self.seed, t)? {
                return Ok(accepted);
            }
        }
        let mut phi = self.inner.fields()?;
        cluster::update(
            self.kind,
            &self.lattice,
            self.hop,
            &mut phi,
            self.seed,
            self.chain0,
            sweep,
        )?;
        self.inner.set_fields(&phi)?;
        Ok(accepted)
    }

    fn fields(&self) -> Result<Vec<f64>> {
        self.inner.fields()
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        self.inner.set_fields(field)
    }

    /// The Metropolis site updates plus one visit of every site by the clusters.
    fn site_updates(&self) -> u64 {
        let v = (self.lattice.volume() * self.inner.chains()) as u64;
        self.inner.site_updates() + v
    }

    fn chains(&self) -> usize {
        self.inner.chains()
    }

    fn set_first_chain(&mut self, chain0: u32) {
        self.inner.set_first_chain(chain0);
        self.chain0 = chain0;
    }
}
