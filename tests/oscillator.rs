//! The anharmonic oscillator: HMC's ⟨x²⟩, ⟨x⁴⟩ against the exact lattice values at the same
//! (m, λ, f, β, N), computed independently from the transfer matrix
//! T(x,y) = exp(−m(x−y)²/(2a) − a(V(x)+V(y))/2) on a fine x-grid: ⟨O⟩ = Tr(Tᴺ O)/Tr(Tᴺ).

mod common;

use std::sync::Arc;

use latticeml::action::{Action, Oscillator};
use latticeml::analysis::gamma_primary;
use latticeml::hmc::{Hmc, HmcParams, Integrator};
use latticeml::observables::Measurement;
use latticeml::Device;

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for (cij, bkj) in c[i * n..(i + 1) * n].iter_mut().zip(&b[k * n..(k + 1) * n]) {
                *cij += aik * bkj;
            }
        }
    }
    // Rescale: only ratios of traces matter.
    let max = c.iter().cloned().fold(0.0, f64::max);
    c.iter_mut().for_each(|x| *x /= max);
    c
}

/// (⟨x²⟩, ⟨x⁴⟩) on the lattice with N sites, by the transfer matrix on `points` grid points in [−xmax, xmax].
fn transfer_matrix(m: f64, lambda: f64, f: f64, beta: f64, n: usize) -> (f64, f64) {
    let (points, xmax) = (701, 4.5);
    let a = beta / n as f64;
    let h = 2.0 * xmax / (points - 1) as f64;
    let x: Vec<f64> = (0..points).map(|i| -xmax + i as f64 * h).collect();
    let v = |x: f64| lambda * (x * x - f * f).powi(2);
    let t: Vec<f64> = (0..points * points)
        .map(|ij| {
            let (xi, xj) = (x[ij / points], x[ij % points]);
            h * (-m * (xi - xj).powi(2) / (2.0 * a) - a * (v(xi) + v(xj)) / 2.0).exp()
        })
        .collect();
    // Tᴺ by repeated squaring.
    let (mut result, mut base, mut e) = (None::<Vec<f64>>, t, n);
    while e > 0 {
        if e & 1 == 1 {
            result = Some(match result {
                None => base.clone(),
                Some(r) => matmul(&r, &base, points),
            });
        }
        e >>= 1;
        if e > 0 {
            base = matmul(&base, &base, points);
        }
    }
    let tn = result.unwrap();
    let diag = |w: &dyn Fn(f64) -> f64| {
        (0..points)
            .map(|i| tn[i * points + i] * w(x[i]))
            .sum::<f64>()
    };
    let z = diag(&|_| 1.0);
    (diag(&|x| x * x) / z, diag(&|x| x.powi(4)) / z)
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

/// The transfer-matrix code itself: with N = 1 the lattice is one site coupled to itself, and
/// ⟨x²⟩ = ∫x² e^{−βV}/∫e^{−βV} exactly (the kinetic term vanishes).
#[test]
fn transfer_matrix_at_one_site_is_the_classical_integral() {
    let (lambda, f, beta) = (1.0, 1.2, 0.7);
    let (x2, _) = transfer_matrix(0.5, lambda, f, beta, 1);
    let h = 1e-4;
    let w = |x: f64| (-beta * lambda * (x * x - f * f).powi(2)).exp();
    let (mut num, mut den) = (0.0, 0.0);
    let mut x = -4.5;
    while x <= 4.5 {
        num += x * x * w(x) * h;
        den += w(x) * h;
        x += h;
    }
    assert!((x2 - num / den).abs() < 1e-6, "{x2} vs {}", num / den);
}
