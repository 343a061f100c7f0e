//! Langevin samplers against exact free-field results (λ = 0: S = ½ φᵀAφ in hopping form, with
//! eigenvalues a(k) = 2 − 4κ Σ_μ cos k_μ).
//!
//! - Target: ⟨S⟩/V = ½ (equipartition) and χ₂ = V⟨M²⟩ = 1/a(0).
//! - Euler–Maruyama, φ' = φ − εAφ + √(2ε)η, has per mode the stationary variance c satisfying
//!   c = (1 − εa)²c + 2ε, so c = 1/(a(1 − εa/2)): its action density is (1/2V) Σ_k 1/(1 − εa_k/2),
//!   biased at O(ε). MALA must hit the target for any ε; unadjusted Langevin must hit the biased
//!   value, and its bias must shrink linearly in ε.

mod common;

use std::f64::consts::TAU;

use common::fresh_dir as tmp;
use latticeml::hmc::Start;
use latticeml::io::outdir::Claim;
use latticeml::run::{run, RunConfig, RunOutcome};
use latticeml::sampler::SamplerConfig;
use latticeml::theory::TheoryConfig;
use latticeml::{Device, Lattice};

const L: usize = 8;
const KAPPA: f64 = 0.1;

/// Eigenvalues of A on the L × L torus.
fn eigenvalues() -> Vec<f64> {
    let mut a = Vec::new();
    for i in 0..L {
        for j in 0..L {
            let (p, q) = (TAU * i as f64 / L as f64, TAU * j as f64 / L as f64);
            a.push(2.0 - 4.0 * KAPPA * (p.cos() + q.cos()));
        }
    }
    a
}

/// Exact action density of Euler–Maruyama at step ε (ε = 0: the target, ½).
fn em_action_density(eps: f64) -> f64 {
    let a = eigenvalues();
    a.iter()
        .map(|&ak| 0.5 / (1.0 - eps * ak / 2.0))
        .sum::<f64>()
        / a.len() as f64
}

fn sample(sampler: SamplerConfig, name: &str) -> RunOutcome {
    let cfg = RunConfig {
        theory: TheoryConfig::Phi4 {
            lattice: Lattice::new(&[L, L]).unwrap(),
            kappa: KAPPA,
            lambda: 0.0,
        },
        chains: 8,
        trajectories: 4000,
        therm: 200,
        sampler,
        start: Start::Cold,
        save_every: 1000,
        checkpoint_every: 4000,
    };
    let dev = Device::Cpu(common::cpu());
    run(&cfg, &dev, &tmp(name), Claim::Fresh, &mut |_, _| {}).unwrap()
}

fn get(o: &RunOutcome, name: &str) -> latticeml::analysis::Estimate {
    o.observables.iter().find(|(k, _)| *k == name).unwrap().1
}

fn within(what: &str, e: latticeml::analysis::Estimate, exact: f64, sigmas: f64) {
    let z = (e.value - exact).abs() / e.error;
    assert!(
        z < sigmas,
        "{what}: {} ± {} vs exact {exact} ({z:.1} sigma)",
        e.value,
        e.error
    );
}

#[test]
fn mala_is_exact_at_a_large_step() {
    let o = sample(
        SamplerConfig::Mala {
            epsilon: 0.3,
            seed: 5,
        },
        "mala",
    );
    within("MALA action density", get(&o, "action_density"), 0.5, 4.0);
    within("MALA chi2", get(&o, "chi2"), 1.0 / (2.0 - 8.0 * KAPPA), 4.0);
    // A real Metropolis test: some proposals rejected, many accepted (0.18 at this step).
    assert!(
        o.acceptance > 0.05 && o.acceptance < 1.0,
        "{}",
        o.acceptance
    );
    // The Metropolis–Hastings ratio is the one-step HMC ΔH: <e^{-ΔH}> = 1.
    within("MALA <exp(-dH)>", o.exp_minus_dh, 1.0, 4.0);
}

#[test]
fn unadjusted_langevin_has_the_exact_euler_maruyama_bias_linear_in_epsilon() {
    let eps = [0.2, 0.1, 0.05];
    let mut bias = Vec::new();
    for (k, &e) in eps.iter().enumerate() {
        let o = sample(
            SamplerConfig::Langevin {
                epsilon: e,
                seed: 7 + k as u64,
            },
            &format!("ula{k}"),
        );
        assert_eq!(o.acceptance, 1.0, "unadjusted: every step kept");
        let s = get(&o, "action_density");
        within(&format!("Langevin eps = {e}"), s, em_action_density(e), 4.0);
        // Far from the target at the larger steps: the bias is real, not noise.
        if e >= 0.1 {
            assert!((s.value - 0.5) / s.error > 8.0, "eps = {e}: {s:?}");
        }
        bias.push(s.value - 0.5);
    }
    let slope = common::loglog_slope(&eps, &bias);
    assert!(
        (slope - 1.0).abs() < 0.15,
        "bias ∝ eps^{slope:.3}, expected eps^1"
    );
}

#[test]
fn mala_reproduces_hmc_on_interacting_phi4() {
    let run_with = |sampler: SamplerConfig, name: &str| {
        let cfg = RunConfig {
            theory: TheoryConfig::Phi4 {
                lattice: Lattice::new(&[L, L]).unwrap(),
                kappa: 0.2,
                lambda: 0.1,
            },
            chains: 8,
            trajectories: 6000,
            therm: 300,
            sampler,
            start: Start::Hot,
            save_every: 1000,
            checkpoint_every: 6000,
        };
        run(
            &cfg,
            &Device::Cpu(common::cpu()),
            &tmp(name),
            Claim::Fresh,
            &mut |_, _| {},
        )
        .unwrap()
    };
    let hmc = run_with(
        SamplerConfig::Hmc(latticeml::hmc::HmcParams {
            tau: 1.0,
            steps: 6,
            integrator: latticeml::hmc::Integrator::Omelyan,
            seed: 3,
        }),
        "phi4-hmc",
    );
    let mala = run_with(
        SamplerConfig::Mala {
            epsilon: 0.1,
            seed: 4,
        },
        "phi4-mala",
    );
    for name in ["chi2", "absM", "action_density"] {
        let (a, b) = (get(&hmc, name), get(&mala, name));
        let z = (a.value - b.value).abs() / (a.error.powi(2) + b.error.powi(2)).sqrt();
        assert!(z < 4.0, "{name}: HMC {a:?} vs MALA {b:?} ({z:.1} sigma)");
    }
}
