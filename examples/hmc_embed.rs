//! Embedding latticeml in a host program: build a lattice, an action and an HMC sampler, run
//! trajectories on many chains at once, and read observables with honest errors.
//!
//! `cargo run --release --example hmc_embed`

use std::sync::Arc;

use latticeml::action::{Action, Phi4};
use latticeml::analysis::gamma_primary;
use latticeml::hmc::{Hmc, HmcParams, Integrator};
use latticeml::observables::Measurement;
use latticeml::{Device, Lattice};

fn main() -> latticeml::Result<()> {
    let lattice = Lattice::new(&[24, 24])?;
    let action: Arc<dyn Action> = Arc::new(Phi4::new(lattice.clone(), 0.27, 0.022)?);
    let (device, why) = Device::auto(); // the GPU if there is one, else all CPU cores
    println!("{why}");

    let chains = 8;
    let params = HmcParams {
        tau: 1.0,
        steps: 10,
        integrator: Integrator::Omelyan,
        seed: 42,
    };
    let mut hmc = Hmc::new(action, chains, params, &device)?;

    for _ in 0..200 {
        hmc.trajectory()?; // thermalise
    }
    let mut abs_m = vec![Vec::new(); chains];
    for _ in 0..1000 {
        let stats = hmc.trajectory()?;
        let meas = Measurement::batch(&hmc.slice_moments()?, &stats.action, &lattice);
        for (c, m) in meas.iter().enumerate() {
            abs_m[c].push(m.magnetisation(lattice.volume()).abs());
        }
    }
    let replicas: Vec<&[f64]> = abs_m.iter().map(|s| s.as_slice()).collect();
    let e = gamma_primary(&replicas);
    let acc: u64 = hmc.accepted().iter().sum();
    println!(
        "<|M|> = {:.5} ± {:.5}  (tau_int {:.1} ± {:.1})",
        e.value, e.error, e.tau_int, e.tau_int_error
    );
    println!(
        "acceptance {:.3}",
        acc as f64 / (chains as f64 * hmc.trajectories_done() as f64)
    );
    Ok(())
}
