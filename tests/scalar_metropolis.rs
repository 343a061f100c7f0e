//! Checkerboard Metropolis of the real scalar theories against exact results: the free field's
//! equipartition and susceptibility through the production run, and the full distribution of
//! an interacting two-site φ⁴ lattice (quadrature) as a histogram test of detailed balance.

mod common;

use latticeml::action::{Action, Phi4};
use latticeml::analysis::Estimate;
use latticeml::hmc::Start;
use latticeml::io::outdir::Claim;
use latticeml::run::{run, RunConfig};
use latticeml::sampler::SamplerConfig;
use latticeml::theory::{LocalAlgorithm, TheoryConfig};
use latticeml::{Device, Lattice};

fn within(what: &str, e: &Estimate, exact: f64) {
    let z = (e.value - exact).abs() / e.error;
    assert!(
        z < 4.0,
        "{what}: {} ± {} vs exact {exact} ({z:.1} sigma)",
        e.value,
        e.error
    );
}

#[test]
fn metropolis_reproduces_the_free_field_through_the_production_run() {
    let kappa = 0.1;
    let cfg = RunConfig {
        theory: TheoryConfig::Phi4 {
            lattice: Lattice::new(&[8, 8]).unwrap(),
            kappa,
            lambda: 0.0,
        },
        chains: 8,
        trajectories: 3000,
        therm: 100,
        sampler: SamplerConfig::Local {
            algorithm: LocalAlgorithm::Metropolis { hits: 2 },
            seed: 4,
        },
        start: Start::Hot,
        save_every: 1000,
        checkpoint_every: 3000,
    };
    let o = run(
        &cfg,
        &Device::Cpu(common::cpu()),
        &common::fresh_dir("phi4-metropolis"),
        Claim::Fresh,
        &mut |_, _| {},
    )
    .unwrap();
    let get = |n: &str| o.observables.iter().find(|(k, _)| *k == n).unwrap().1;
    // S = ½ φᵀAφ: ⟨S⟩/V = ½ and χ₂ = V⟨M²⟩ = 1/a(0) = 1/(2 − 8κ).
    within("action density", &get("action_density"), 0.5);
    within("chi2", &get("chi2"), 1.0 / (2.0 - 8.0 * kappa));
    assert!(
        o.acceptance > 0.3 && o.acceptance < 0.9,
        "acceptance {}",
        o.acceptance
    );
    assert!(!o.global_proposals);
}

#[test]
fn metropolis_samples_the_two_site_distribution_exactly() {
    // Two sites on a periodic 1D lattice: S = −4κ φ₀φ₁ + (1 − 2λ)(φ₀² + φ₁²) + λ(φ₀⁴ + φ₁⁴);
    // at κ = 0.3, λ = 0.5 the quadratic term vanishes and the distribution is a quartic double
    // hump along the diagonal.
    let (kappa, lambda) = (0.3, 0.5);
    let action = Phi4::new(Lattice::new(&[2]).unwrap(), kappa, lambda).unwrap();
    let edges: Vec<f64> = (0..=10).map(|k| -2.5 + 0.5 * k as f64).collect();
    let bin = |x: f64| -> usize {
        // Bins: below −2.5, ten of width ½, above 2.5.
        if x < edges[0] {
            0
        } else {
            edges.iter().take_while(|&&e| x >= e).count()
        }
    };
    // Quadrature of the marginal of φ₀ on a fine grid (midpoint rule, |φ| ≤ 6).
    let (n, lim) = (1200, 6.0);
    let h = 2.0 * lim / n as f64;
    let mut p = vec![0.0; 12];
    for i in 0..n {
        let a = -lim + (i as f64 + 0.5) * h;
        for j in 0..n {
            let b = -lim + (j as f64 + 0.5) * h;
            p[bin(a)] += (-action.action(&[a, b])).exp();
        }
    }
    let z: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= z);

    let theory = TheoryConfig::Phi4 {
        lattice: Lattice::new(&[2]).unwrap(),
        kappa,
        lambda,
    }
    .build()
    .unwrap();
    let chains = 64;
    let cfg = SamplerConfig::Local {
        algorithm: LocalAlgorithm::Metropolis { hits: 1 },
        seed: 9,
    };
    let mut s = cfg
        .build(theory.clone(), chains, &Device::Cpu(common::cpu()))
        .unwrap();
    s.set_fields(&theory.start_fields(Start::Hot, 0..chains, 9))
        .unwrap();
    let mut counts = vec![0.0; 12];
    for t in 0..6000 {
        s.update().unwrap();
        if t >= 100 && t % 6 == 0 {
            for chain in s.fields().unwrap().chunks(2) {
                counts[bin(chain[0])] += 1.0;
            }
        }
    }
    let total: f64 = counts.iter().sum();
    let chi2: f64 = p
        .iter()
        .zip(&counts)
        .filter(|(p, _)| **p * total > 5.0)
        .map(|(&p, &c)| (c - total * p).powi(2) / (total * p))
        .sum();
    // 11 dof at most; P(χ² > 40) ≈ 3e-5.
    assert!(
        chi2 < 40.0,
        "chi2 = {chi2:.1}: counts {counts:?} vs p {p:?}"
    );
}
