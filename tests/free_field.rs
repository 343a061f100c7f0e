//! Free field (λ = 0): HMC's ⟨φ²⟩ and time-slice correlator against the exact lattice propagator
//! G(x) = (1/V) Σ_p e^{ipx} / A(p), A(p) = 2(1 − 2κ Σ_μ cos p_μ), from S = ½ φᵀAφ in hopping form.

mod common;

use std::f64::consts::TAU;
use std::sync::Arc;

use latticeml::action::{Action, Phi4};
use latticeml::analysis::gamma_primary;
use latticeml::hmc::{Hmc, HmcParams, Integrator};
use latticeml::observables::{correlator, Measurement};
use latticeml::{Device, Lattice};

fn inverse_a(kappa: f64, momenta: &[f64]) -> f64 {
    1.0 / (2.0 * (1.0 - 2.0 * kappa * momenta.iter().map(|p| p.cos()).sum::<f64>()))
}

/// Exact ⟨φ(x)²⟩ = G(0): sum over every lattice momentum.
fn exact_phi2(lat: &Lattice, kappa: f64) -> f64 {
    let v = lat.volume();
    let mut sum = 0.0;
    for site in 0..v {
        let mut rem = site;
        let mut p = Vec::new();
        for &l in lat.extents().iter().rev() {
            p.push(TAU * (rem % l) as f64 / l as f64);
            rem /= l;
        }
        sum += inverse_a(kappa, &p);
    }
    sum / v as f64
}

/// Exact C(t) = Σ_{x spatial} G(t, x) = (1/T) Σ_{p₀} cos(p₀t) / A(p₀, 0).
fn exact_correlator(lat: &Lattice, kappa: f64, t: usize) -> f64 {
    let tt = lat.time_extent();
    let zeros = vec![0.0; lat.dim() - 1];
    (0..tt)
        .map(|k| {
            let p0 = TAU * k as f64 / tt as f64;
            let mut p = vec![p0];
            p.extend_from_slice(&zeros);
            (p0 * t as f64).cos() * inverse_a(kappa, &p)
        })
        .sum::<f64>()
        / tt as f64
}

fn check(dims: &[usize], kappa: f64) {
    let lat = Lattice::new(dims).unwrap();
    let action: Arc<dyn Action> = Arc::new(Phi4::new(lat.clone(), kappa, 0.0).unwrap());
    let chains = 16;
    let params = HmcParams {
        tau: 1.3,
        steps: 8,
        integrator: Integrator::Omelyan,
        seed: 2024,
    };
    let mut hmc = Hmc::new(action, chains, params, &Device::Cpu(common::cpu())).unwrap();
    for _ in 0..100 {
        hmc.trajectory().unwrap();
    }
    let mut phi2 = vec![Vec::new(); chains];
    let mut slices = vec![Vec::new(); chains];
    for _ in 0..1500 {
        let st = hmc.trajectory().unwrap();
        for (c, m) in Measurement::batch(&hmc.slice_moments().unwrap(), &st.action, &lat)
            .into_iter()
            .enumerate()
        {
            phi2[c].push(m.phi2);
            slices[c].push(m.slice_sums);
        }
    }
    let reps: Vec<&[f64]> = phi2.iter().map(|s| s.as_slice()).collect();
    let e = gamma_primary(&reps);
    let want = exact_phi2(&lat, kappa);
    println!(
        "{dims:?}: <phi^2> = {:.5} ± {:.5} (tau_int {:.1}), exact {want:.5}",
        e.value, e.error, e.tau_int
    );
    assert!(
        (e.value - want).abs() < 4.0 * e.error,
        "{dims:?}: <phi^2> {} ± {} vs exact {want}",
        e.value,
        e.error
    );
    for p in correlator(&slices, lat.volume()) {
        let want = exact_correlator(&lat, kappa, p.t);
        assert!(
            (p.c.value - want).abs() < 4.0 * p.c.error,
            "{dims:?}: C({}) = {} ± {} vs exact {want}",
            p.t,
            p.c.value,
            p.c.error
        );
    }
}

#[test]
fn free_field_d1() {
    check(&[24], 0.4);
}

#[test]
fn free_field_d2() {
    check(&[16, 6], 0.2);
}

#[test]
fn free_field_d3() {
    check(&[10, 4, 3], 0.13);
}

#[test]
fn free_field_d4() {
    check(&[8, 3, 3, 4], 0.1);
}
