//! Checkerboard Metropolis for the real scalar theories (φ⁴ in d = 1..4, the oscillator): every
//! theory of the form of [`ScalarCouplings`], with `hits` proposals φ' = φ + δ(2u − 1) per site.
//! CPU twin ([`cpu`]) of `kernels/scalar_local.cu` ([`cuda`]).

pub mod cpu;
pub mod cuda;

use crate::action::{Action, ScalarCouplings};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::theory::checkerboard::{require_even, Checkerboard, ColourPass};
use crate::theory::{LocalAlgorithm, Sweeper};

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
    if !matches!(algorithm, LocalAlgorithm::Metropolis { .. }) {
        return Err(Error::InvalidInput(format!(
            "{} offers metropolis among the local updates, not {}",
            action.name(),
            algorithm.name()
        )));
    }
    let c = action.couplings();
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
    Ok(Box::new(Checkerboard::new(
        pass,
        algorithm,
        lat,
        chains,
        check_finite,
    )))
}

fn check_finite(field: &[f64]) -> Result<()> {
    match field.iter().find(|x| !x.is_finite()) {
        Some(bad) => Err(Error::NonFinite(format!("a field value is {bad}"))),
        None => Ok(()),
    }
}
