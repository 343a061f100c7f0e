//! Molecular-dynamics integrators: reversibility, the order of the energy violation, and
//! ⟨e^{−ΔH}⟩ = 1 in equilibrium.

mod common;

use std::sync::Arc;

use latticeml::action::{Action, Oscillator, Phi4};
use latticeml::analysis::gamma_primary;
use latticeml::hmc::{Hmc, HmcParams, Integrator};
use latticeml::philox;
use latticeml::theory::xy::Xy;
use latticeml::{Device, Lattice};

fn phi4(dims: &[usize]) -> Arc<dyn Action> {
    Arc::new(Phi4::new(Lattice::new(dims).unwrap(), 0.18, 0.05).unwrap())
}

/// The XY model's cosine action (HMC on the unbounded angles).
fn xy(dims: &[usize]) -> Arc<dyn Action> {
    Arc::new(Xy::new(Lattice::new(dims).unwrap(), 1.1).unwrap())
}

fn sampler(
    action: Arc<dyn Action>,
    chains: usize,
    tau: f64,
    steps: usize,
    integrator: Integrator,
) -> Hmc {
    let params = HmcParams {
        tau,
        steps,
        integrator,
        seed: 11,
    };
    Hmc::new(action, chains, params, &Device::Cpu(common::cpu())).unwrap()
}

fn gaussian(n: usize, stream: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 99, 0, 0, stream);
    v
}

#[test]
fn trajectories_are_reversible_to_1e10() {
    for integrator in [
        Integrator::Leapfrog,
        Integrator::Omelyan,
        Integrator::Omelyan4,
    ] {
        let cases = [
            phi4(&[12]),
            phi4(&[6, 5]),
            phi4(&[4, 3, 5]),
            phi4(&[3, 4, 2, 3]),
            xy(&[12]),
            xy(&[6, 4]),
            xy(&[2, 4, 6, 2]),
        ];
        for action in cases {
            let dims = action.lattice().label();
            let n = 3 * action.lattice().volume();
            let mut hmc = sampler(action, 3, 1.0, 20, integrator);
            let (phi0, p0) = (gaussian(n, 10), gaussian(n, 11));
            hmc.set_fields(&phi0).unwrap();
            hmc.set_momenta(&p0).unwrap();
            hmc.integrate().unwrap();
            let flipped: Vec<f64> = hmc.momenta().unwrap().iter().map(|p| -p).collect();
            hmc.set_momenta(&flipped).unwrap();
            hmc.integrate().unwrap();
            let back = hmc.fields().unwrap();
            let p_back: Vec<f64> = hmc.momenta().unwrap().iter().map(|p| -p).collect();
            let (e_phi, e_p) = (
                common::max_rel_diff(&back, &phi0),
                common::max_rel_diff(&p_back, &p0),
            );
            assert!(
                e_phi < 1e-10 && e_p < 1e-10,
                "{integrator:?} {dims:?}: |Δφ| = {e_phi:e}, |Δp| = {e_p:e}"
            );
        }
    }
}

/// Σ over chains of |ΔH| for one trajectory of length 1 from a fixed (φ, p), for each step count.
fn energy_violation(action: Arc<dyn Action>, integrator: Integrator, steps: &[usize]) -> Vec<f64> {
    let n = 4 * action.lattice().volume();
    let (phi0, p0) = (gaussian(n, 20), gaussian(n, 21));
    steps
        .iter()
        .map(|&s| {
            let mut hmc = sampler(action.clone(), 4, 1.0, s, integrator);
            hmc.set_fields(&phi0).unwrap();
            hmc.set_momenta(&p0).unwrap();
            let h0 = hmc.hamiltonians().unwrap();
            hmc.integrate().unwrap();
            let h1 = hmc.hamiltonians().unwrap();
            h0.iter().zip(&h1).map(|(a, b)| (b - a).abs()).sum()
        })
        .collect()
}

#[test]
fn energy_violation_has_the_integrators_order() {
    let steps = [10, 20, 40, 80];
    let eps: Vec<f64> = steps.iter().map(|&s| 1.0 / s as f64).collect();
    let lf = energy_violation(phi4(&[8, 6]), Integrator::Leapfrog, &steps);
    let mn2 = energy_violation(phi4(&[8, 6]), Integrator::Omelyan, &steps);
    let mn4 = energy_violation(phi4(&[8, 6]), Integrator::Omelyan4, &steps);
    let (a_lf, a_2, a_4) = (
        common::loglog_slope(&eps, &lf),
        common::loglog_slope(&eps, &mn2),
        common::loglog_slope(&eps, &mn4),
    );
    println!("|dH| exponents: leapfrog {a_lf:.3}, omelyan 2MN {a_2:.3}, omelyan4 {a_4:.3}");
    assert!((a_lf - 2.0).abs() < 0.15, "leapfrog exponent {a_lf}");
    assert!((a_2 - 2.0).abs() < 0.15, "2MN exponent {a_2}");
    assert!(
        (a_4 - 4.0).abs() < 0.3,
        "fourth-order Omelyan exponent {a_4}"
    );
    // 2MN's point: the same order as leapfrog with a much smaller error constant.
    assert!(
        mn2[2] * 4.0 < lf[2],
        "2MN |dH| {} not well below leapfrog {}",
        mn2[2],
        lf[2]
    );
}

fn exp_minus_dh_is_one(action: Arc<dyn Action>, tau: f64, steps: usize, integrator: Integrator) {
    let chains = 16;
    let mut hmc = sampler(action, chains, tau, steps, integrator);
    for _ in 0..100 {
        hmc.trajectory().unwrap();
    }
    let mut series = vec![Vec::new(); chains];
    let mut accepted = 0usize;
    for _ in 0..400 {
        let st = hmc.trajectory().unwrap();
        for ((s, dh), acc) in series.iter_mut().zip(&st.delta_h).zip(&st.accepted) {
            s.push((-dh).exp());
            accepted += *acc as usize;
        }
    }
    let reps: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
    let e = gamma_primary(&reps);
    let acc = accepted as f64 / (400 * chains) as f64;
    println!(
        "{integrator:?}: acceptance {acc:.3}, <exp(-dH)> = {:.4} ± {:.4}",
        e.value, e.error
    );
    assert!(
        acc > 0.4 && acc < 0.95,
        "step size not in the informative range: acceptance {acc}"
    );
    assert!(
        (e.value - 1.0).abs() < 4.0 * e.error,
        "<exp(-dH)> = {} ± {}",
        e.value,
        e.error
    );
}

#[test]
fn xy_energy_violation_has_the_integrators_order() {
    let steps = [10, 20, 40, 80];
    let eps: Vec<f64> = steps.iter().map(|&s| 1.0 / s as f64).collect();
    for (integrator, order) in [(Integrator::Leapfrog, 2.0), (Integrator::Omelyan4, 4.0)] {
        let dh = energy_violation(xy(&[8, 6]), integrator, &steps);
        let a = common::loglog_slope(&eps, &dh);
        assert!(
            (a - order).abs() < 0.1 * order,
            "XY {integrator:?}: |dH| exponent {a}"
        );
    }
}

#[test]
fn exp_minus_delta_h_averages_to_one() {
    exp_minus_dh_is_one(xy(&[8, 8]), 1.0, 4, Integrator::Leapfrog);
    exp_minus_dh_is_one(phi4(&[8, 8]), 1.0, 3, Integrator::Leapfrog);
    exp_minus_dh_is_one(phi4(&[8, 8]), 1.0, 1, Integrator::Omelyan);
    let osc: Arc<dyn Action> = Arc::new(Oscillator::new(0.5, 1.0, 1.4, 10.0, 40).unwrap());
    exp_minus_dh_is_one(osc, 1.0, 6, Integrator::Leapfrog);
}

#[test]
fn schedules_have_their_stated_length_and_integrate_to_the_trajectory() {
    for name in ["leapfrog", "omelyan", "omelyan4"] {
        let i = Integrator::from_name(name).unwrap();
        for steps in [1usize, 2, 7] {
            let s: Vec<(f64, f64)> = i.schedule(steps).collect();
            assert_eq!(s.len(), i.updates(steps), "{name}");
            let (kick, drift) = s.iter().fold((0.0, 0.0), |(k, d), &(a, b)| (k + a, d + b));
            // In units of ε, a trajectory of n steps kicks and drifts by n in total.
            assert!((kick - steps as f64).abs() < 1e-12, "{name} kicks {kick}");
            assert!(
                (drift - steps as f64).abs() < 1e-12,
                "{name} drifts {drift}"
            );
            assert_eq!(s.last().unwrap().1, 0.0, "{name} ends with a kick");
        }
    }
    let too_long = HmcParams {
        tau: 1.0,
        steps: latticeml::hmc::MAX_STEPS + 1,
        integrator: Integrator::Leapfrog,
        seed: 1,
    };
    assert!(too_long.validate().is_err());
}
