//! Fourier-accelerated HMC: the filter (rustfft on the CPU, the GPU's own transforms through their
//! CPU twins) against a direct discrete Fourier sum, reversibility,
//! the order of ΔH, ⟨e^{−ΔH}⟩ = 1, and the free field with the mass kernel equal to its own
//! propagator, where every mode decorrelates in one trajectory (τ_int = ½).

mod common;

use std::f64::consts::{PI, TAU};
use std::sync::Arc;

use latticeml::action::{Action, Phi4};
use latticeml::analysis::gamma_primary;
use latticeml::hmc::fft;
use latticeml::hmc::fourier::{FourierMass, Power};
use latticeml::hmc::{Hmc, HmcParams, Integrator, Start};
use latticeml::io::outdir::Claim;
use latticeml::run::{run, RunConfig};
use latticeml::sampler::SamplerConfig;
use latticeml::theory::TheoryConfig;
use latticeml::{philox, Device, Lattice};

fn gaussian(n: usize, stream: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 17, 0, 0, stream);
    v
}

#[test]
fn the_filters_are_powers_of_the_mass_kernel() {
    // K x = Σ_k e^{ikx} K(k) x̃(k) / V with x̃(k) = Σ_y e^{−iky} x(y): a direct O(V²) sum, for
    // K = M̃^{1/2} and M̃^{−1}; an odd last extent (complex transforms on the CPU) and an even
    // one (the real-input transforms).
    for dims in [[4usize, 3, 5], [3, 5, 6]] {
        let lat = Lattice::new(&dims).unwrap();
        direct_sum_case(&lat);
    }
    let m2 = 0.3;
    // FFT stages (power-of-two axes) mixed with a DFT axis, in 2D and 4D.
    for dims in [vec![16usize, 8], vec![4, 6, 2, 8]] {
        let lat = Lattice::new(&dims).unwrap();
        let mass = FourierMass::new(&lat, m2).unwrap();
        let x = gaussian(2 * lat.volume(), 2);
        for power in [Power::Half, Power::Inverse] {
            let (mut cpu, mut twin) = (x.clone(), x.clone());
            mass.apply(&common::cpu(), &mut cpu, power).unwrap();
            fft::filter_twin(&mut twin, &lat, mass.filter(power)).unwrap();
            let d = common::max_rel_diff(&cpu, &twin);
            assert!(d < 1e-11, "{dims:?} {power:?}: {d:e}");
        }
    }
    let lat = Lattice::new(&[4, 4]).unwrap();
    assert!(FourierMass::new(&lat, 0.0).is_err());
    assert!(FourierMass::new(&lat, f64::NAN).is_err());
}

/// Both filters of one lattice against the direct sum, by rustfft and by the GPU's twins.
fn direct_sum_case(lat: &Lattice) {
    let (v, m2) = (lat.volume(), 0.3);
    let mass = FourierMass::new(lat, m2).unwrap();
    let x = gaussian(3 * v, 1);
    for (power, exponent) in [(Power::Half, 0.5), (Power::Inverse, -1.0)] {
        let mut got = x.clone();
        mass.apply(&common::cpu(), &mut got, power).unwrap();
        check_filter(lat, m2, exponent, &x, &got);
        // The GPU's transforms (their CPU twins): FFT stages or direct DFTs by extent.
        let mut twin = x.clone();
        fft::filter_twin(&mut twin, lat, mass.filter(power)).unwrap();
        check_filter(lat, m2, exponent, &x, &twin);
    }
}

fn check_filter(lat: &Lattice, m2: f64, exponent: f64, x: &[f64], got: &[f64]) {
    let v = lat.volume();
    let ext = lat.extents();
    let coords = |s: usize| -> Vec<usize> {
        let st = lat.strides();
        (0..3).map(|mu| (s / st[mu]) % ext[mu]).collect()
    };
    for chain in 0..3 {
        let xc = &x[chain * v..(chain + 1) * v];
        for s in [0usize, 7, 33, 59] {
            let cs = coords(s);
            let mut acc = 0.0;
            for k in 0..v {
                let ck = coords(k);
                let khat2: f64 = (0..3)
                    .map(|mu| 4.0 * (PI * ck[mu] as f64 / ext[mu] as f64).sin().powi(2))
                    .sum();
                let kk = (khat2 + m2).powf(exponent);
                for (y, &xy) in xc.iter().enumerate() {
                    let cy = coords(y);
                    let phase: f64 = (0..3)
                        .map(|mu| {
                            TAU * ck[mu] as f64 * (cs[mu] as f64 - cy[mu] as f64) / ext[mu] as f64
                        })
                        .sum();
                    acc += kk * xy * phase.cos();
                }
            }
            let want = acc / v as f64;
            let g = got[chain * v + s];
            assert!(
                (g - want).abs() < 1e-12 * want.abs().max(1.0),
                "M^{exponent}, site {s}: {g} vs {want}"
            );
        }
    }
}

fn fa_hmc(action: Arc<dyn Action>, chains: usize, tau: f64, steps: usize, i: Integrator) -> Hmc {
    let params = HmcParams {
        tau,
        steps,
        integrator: i,
        seed: 5,
    };
    let mut hmc = Hmc::new(action, chains, params, &Device::Cpu(common::cpu())).unwrap();
    hmc.set_fourier_mass(0.4).unwrap();
    hmc
}

fn phi4() -> Arc<dyn Action> {
    Arc::new(Phi4::new(Lattice::new(&[8, 6]).unwrap(), 0.26, 0.05).unwrap())
}

#[test]
fn fourier_trajectories_are_reversible_and_have_the_integrators_order() {
    let n = 3 * 48;
    for integrator in [Integrator::Leapfrog, Integrator::Omelyan] {
        let mut hmc = fa_hmc(phi4(), 3, 1.5, 15, integrator);
        let (phi0, p0) = (gaussian(n, 2), gaussian(n, 3));
        hmc.set_fields(&phi0).unwrap();
        hmc.set_momenta(&p0).unwrap();
        hmc.integrate().unwrap();
        let flipped: Vec<f64> = hmc.momenta().unwrap().iter().map(|p| -p).collect();
        hmc.set_momenta(&flipped).unwrap();
        hmc.integrate().unwrap();
        let d = common::max_rel_diff(&hmc.fields().unwrap(), &phi0);
        assert!(d < 1e-10, "{integrator:?}: not reversible, {d:e}");
    }
    let steps = [10usize, 20, 40, 80];
    let dh: Vec<f64> = steps
        .iter()
        .map(|&s| {
            let mut hmc = fa_hmc(phi4(), 3, 1.5, s, Integrator::Leapfrog);
            hmc.set_fields(&gaussian(n, 4)).unwrap();
            hmc.set_momenta(&gaussian(n, 5)).unwrap();
            let h0 = hmc.hamiltonians().unwrap();
            hmc.integrate().unwrap();
            let h1 = hmc.hamiltonians().unwrap();
            h0.iter().zip(&h1).map(|(a, b)| (b - a).abs()).sum()
        })
        .collect();
    let eps: Vec<f64> = steps.iter().map(|&s| 1.5 / s as f64).collect();
    let a = common::loglog_slope(&eps, &dh);
    assert!((a - 2.0).abs() < 0.15, "leapfrog |dH| exponent {a}");
}

#[test]
fn fourier_exp_minus_delta_h_averages_to_one() {
    let chains = 16;
    let mut hmc = fa_hmc(phi4(), chains, 2.0, 4, Integrator::Leapfrog);
    let mut series = vec![Vec::new(); chains];
    let mut accepted = 0;
    for t in 0..500 {
        let st = hmc.trajectory().unwrap();
        if t >= 100 {
            for (s, dh) in series.iter_mut().zip(&st.delta_h) {
                s.push((-dh).exp());
            }
            accepted += st.accepted.iter().filter(|&&a| a).count();
        }
    }
    let acc = accepted as f64 / (400 * chains) as f64;
    assert!(acc > 0.4 && acc < 0.95, "acceptance {acc} not informative");
    let reps: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
    let e = gamma_primary(&reps);
    assert!(
        (e.value - 1.0).abs() < 4.0 * e.error,
        "<exp(-dH)> = {} ± {}",
        e.value,
        e.error
    );
}

#[test]
fn the_free_field_with_its_own_propagator_decorrelates_every_mode_in_one_trajectory() {
    // Hopping form, λ = 0: A(k) = hop (k̂² + m0²), m0² = (2u₂ − 2d·hop)/hop. With M̃ = k̂² + m0²
    // every mode oscillates at ω = √hop, and τ = π/(2ω) makes φ(τ) independent of φ(0).
    let kappa = 0.1;
    let (hop, u2, d) = (2.0 * kappa, 1.0, 2.0);
    let m0 = (2.0 * u2 - 2.0 * d * hop) / hop;
    let cfg = RunConfig {
        theory: TheoryConfig::Phi4 {
            lattice: Lattice::new(&[8, 8]).unwrap(),
            kappa,
            lambda: 0.0,
        },
        chains: 4,
        trajectories: 2500,
        therm: 100,
        sampler: SamplerConfig::FaHmc {
            params: HmcParams {
                tau: PI / (2.0 * hop.sqrt()),
                steps: 20,
                integrator: Integrator::Leapfrog,
                seed: 3,
            },
            m2: m0,
        },
        start: Start::Hot,
        save_every: 1000,
        checkpoint_every: 2500,
    };
    let o = run(
        &cfg,
        &Device::Cpu(common::cpu()),
        &common::fresh_dir("fa-free"),
        Claim::Fresh,
        &mut |_, _| {},
    )
    .unwrap();
    let get = |n: &str| o.observables.iter().find(|(k, _)| *k == n).unwrap().1;
    for name in ["M", "chi2", "action_density"] {
        let e = get(name);
        assert!(
            (e.tau_int - 0.5).abs() < 0.1,
            "{name}: tau_int {} ± {}",
            e.tau_int,
            e.tau_int_error
        );
    }
    let chi = get("chi2");
    let exact = 1.0 / (2.0 - 8.0 * kappa);
    assert!(
        (chi.value - exact).abs() < 4.0 * chi.error,
        "chi2 {} ± {} vs {exact}",
        chi.value,
        chi.error
    );
    let s = get("action_density");
    assert!(
        (s.value - 0.5).abs() < 4.0 * s.error,
        "action density {} ± {}",
        s.value,
        s.error
    );
}
