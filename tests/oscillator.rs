//! The anharmonic oscillator: HMC's ⟨x²⟩, ⟨x⁴⟩ against the exact lattice values at the same
//! (m, λ, f, β, N), computed independently from the transfer matrix
//! T(x,y) = exp(−m(x−y)²/(2a) − a(V(x)+V(y))/2) on a fine x-grid: ⟨O⟩ = Tr(Tᴺ O)/Tr(Tᴺ).

mod common;

use std::sync::Arc;

use latticeml::action::{Action, Oscillator};
use latticeml::analysis::gamma_primary;
use latticeml::exact::oscillator::oscillator_moments;
use latticeml::hmc::{Hmc, HmcParams, Integrator};
use latticeml::observables::Measurement;
use latticeml::Device;

/// (⟨x²⟩, ⟨x⁴⟩) on the lattice with N sites, by the transfer matrix.
fn transfer_matrix(m: f64, lambda: f64, f: f64, beta: f64, n: usize) -> (f64, f64) {
    let e = oscillator_moments(m, lambda, f, beta, n).unwrap();
    (e.x2, e.x4)
}

fn check(f: f64) {
    let (m, lambda, beta, n) = (0.5, 1.0, 8.0, 32);
    let (x2_exact, x4_exact) = transfer_matrix(m, lambda, f, beta, n);
    let action: Arc<dyn Action> = Arc::new(Oscillator::new(m, lambda, f, beta, n).unwrap());
    let chains = 32;
    let params = HmcParams {
        tau: 3.0,
        steps: 20,
        integrator: Integrator::Omelyan,
        seed: 77,
    };
    let mut hmc = Hmc::new(action.clone(), chains, params, &Device::Cpu(common::cpu())).unwrap();
    for _ in 0..100 {
        hmc.trajectory().unwrap();
    }
    let (mut x2, mut x4) = (vec![Vec::new(); chains], vec![Vec::new(); chains]);
    for _ in 0..1500 {
        let st = hmc.trajectory().unwrap();
        for (c, meas) in
            Measurement::batch(&hmc.slice_moments().unwrap(), &st.action, action.lattice())
                .iter()
                .enumerate()
        {
            x2[c].push(meas.phi2);
            x4[c].push(meas.phi4);
        }
    }
    for (name, series, exact) in [("x2", &x2, x2_exact), ("x4", &x4, x4_exact)] {
        let reps: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
        let e = gamma_primary(&reps);
        println!(
            "f = {f}: <{name}> = {:.5} ± {:.5} (tau_int {:.1}), transfer matrix {exact:.5}",
            e.value, e.error, e.tau_int
        );
        assert!(
            (e.value - exact).abs() < 4.0 * e.error,
            "f = {f}: <{name}> {} ± {} vs exact {exact}",
            e.value,
            e.error
        );
    }
}

#[test]
fn oscillator_matches_transfer_matrix_single_well_side() {
    check(1.0);
}

#[test]
fn oscillator_matches_transfer_matrix_double_well() {
    check(1.4);
}
