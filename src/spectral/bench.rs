//! The reference benchmark of batched spectral reconstruction (`latticeml bench spectral`): B
//! list networks (hidden 32, f64) trained together by Adam on B noise draws of the benchmark
//! paper's problem (Källén–Lehmann kernel, 100 momenta, 500 ω), as for B bootstrap samples.
//! Network-steps per second, and the effective bandwidth against the fused minimum traffic of a
//! step.

use super::data::Correlator;
use super::kernel::{kernel_matrix, KernelKind, OmegaGrid};
use super::mock::{mock_data, Noise, Spectrum};
use super::neural::{train_list_batched, NnKind, NnOptions};
use crate::device::Device;
use crate::error::{Error, Result};
use std::time::Instant;

/// Hidden width of the reference networks.
pub const HIDDEN: usize = 32;
/// ω points of the reference problem.
pub const OMEGA_POINTS: usize = 500;
/// Data points (momenta) of the reference problem.
pub const MOMENTA: usize = 100;

/// What one benchmark measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpectralFigures {
    /// Networks trained together.
    pub networks: usize,
    /// Adam steps timed.
    pub steps: usize,
    /// Seconds of those steps.
    pub seconds: f64,
}

impl SpectralFigures {
    /// Network-steps (one Adam step of one network) per second.
    pub fn network_steps_per_second(&self) -> f64 {
        (self.networks * self.steps) as f64 / self.seconds
    }

    /// Effective GB/s if a step moved only the fused minimum, [`bytes_per_network_step`].
    pub fn effective_gb_per_second(&self) -> f64 {
        self.network_steps_per_second() * bytes_per_network_step() / 1e9
    }
}

/// The least a step moves per network, in bytes: the output weights W `[H, Nω]` (f64) read
/// forward, read and its gradient written backward, and Adam's reads of W, ∂W and both moments
/// and writes of W and the moments: ten passes over H·Nω values. The rest (the kernel product,
/// the biases, the first layer) is smaller by a factor H; the annealed weight penalty of the
/// first 70 % of the steps adds more.
pub fn bytes_per_network_step() -> f64 {
    (10 * HIDDEN * OMEGA_POINTS * std::mem::size_of::<f64>()) as f64
}

/// Whitened kernel and `networks` noise draws of the paper's benchmark (seeds 1, 2, …).
fn problem(networks: usize) -> Result<(super::linalg::Matrix, Vec<Vec<f64>>)> {
    let grid = OmegaGrid::uniform(0.04, 20.0, OMEGA_POINTS)?;
    let p: Vec<f64> = (1..=MOMENTA).map(|i| 0.2 * i as f64).collect();
    let a = kernel_matrix(KernelKind::KallenLehmann, &p, &grid)?;
    let truth = Spectrum::named("bw2")?.on(&grid);
    let draws: Vec<Correlator> = (1..=networks as u64)
        .map(|seed| mock_data(&a, &truth, &p, &Noise::MomentumScaled(1e-4), seed))
        .collect::<Result<_>>()?;
    let (aw, _) = draws[0].whiten(&a)?;
    let gws = draws
        .iter()
        .map(|d| d.whiten_values(&d.value))
        .collect::<Result<_>>()?;
    Ok((aw, gws))
}

/// Trains `networks` list networks for `steps` Adam steps (no polish) on `device`, after one
/// untimed step (kernel compilation, buffer pools), and times the steps.
pub fn list_training(device: &Device, networks: usize, steps: usize) -> Result<SpectralFigures> {
    if networks == 0 || networks > 100_000 || steps == 0 {
        return Err(Error::InvalidInput(format!(
            "bench spectral needs 1 to 100000 networks and at least one step (got {networks}, {steps})"
        )));
    }
    let (aw, gws) = problem(networks)?;
    let mut opts = NnOptions::new(NnKind::List);
    (opts.hidden, opts.restarts, opts.polish_iters, opts.steps) = (HIDDEN, 1, 0, 1);
    train_list_batched(device, &aw, &gws, &opts, &mut |_, _| {})?;
    opts.steps = steps;
    let start = Instant::now();
    train_list_batched(device, &aw, &gws, &opts, &mut |_, _| {})?;
    Ok(SpectralFigures {
        networks,
        steps,
        seconds: start.elapsed().as_secs_f64(),
    })
}
