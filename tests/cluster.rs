//! Embedded-Ising cluster updates (Swendsen–Wang and Wolff) for φ⁴: detailed balance against
//! the exact sign distribution on a 4×4 lattice, and agreement of every φ⁴ sampler (cluster,
//! Metropolis, HMC, Fourier-accelerated HMC) on χ₂ and the Binder cumulant near the transition.

mod common;

use latticeml::analysis::{gamma_derived, gamma_primary, Estimate};
use latticeml::hmc::{HmcParams, Integrator, Start};
use latticeml::lattice::Lattice;
use latticeml::philox;
use latticeml::sampler::SamplerConfig;
use latticeml::theory::scalar::cluster;
use latticeml::theory::{ClusterKind, LocalAlgorithm, TheoryConfig};
use latticeml::Device;

/// With |φ| fixed, cluster updates alone must sample the signs from the Ising model with bond
/// couplings J = hop |φ_x||φ_y|: all 2^16 states of the 4×4 torus are enumerated, grouped into
/// 20 bins of equal exact probability, and the histogram of sampled states is χ²-tested.
#[test]
fn cluster_updates_sample_the_exact_sign_distribution_on_4x4() {
    let lat = Lattice::new(&[4, 4]).unwrap();
    let (v, hop) = (16usize, 0.4);
    let mut mags = vec![0.0; v];
    philox::fill_normals(&mut mags, 5, 0, 0, 9);
    let mags: Vec<f64> = mags.iter().map(|z| 0.6 + 0.8 * z.abs()).collect();
    let bonds: Vec<(usize, usize)> = (0..v)
        .flat_map(|x| (0..2).map(move |mu| (x, mu)))
        .map(|(x, mu)| (x, lat.neighbour(x, mu, true)))
        .collect();
    let log_w = |state: usize| -> f64 {
        let s = |x: usize| if state >> x & 1 == 1 { -1.0 } else { 1.0 };
        bonds
            .iter()
            .map(|&(x, y)| hop * mags[x] * mags[y] * s(x) * s(y))
            .sum()
    };
    let mut p: Vec<f64> = (0..1usize << v).map(|st| log_w(st).exp()).collect();
    let z: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= z);
    // Equal-mass bins over the states sorted by probability.
    let bins = 20;
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let (mut bin_of, mut mass, mut cum) = (vec![0usize; p.len()], vec![0.0; bins], 0.0);
    for &st in &order {
        let b = ((cum * bins as f64) as usize).min(bins - 1);
        bin_of[st] = b;
        mass[b] += p[st];
        cum += p[st];
    }
    for kind in [
        ClusterKind::SwendsenWang,
        ClusterKind::Wolff { clusters: 3 },
    ] {
        let chains = 64;
        let mut phi: Vec<f64> = (0..chains).flat_map(|_| mags.iter().copied()).collect();
        let mut counts = vec![0.0; bins];
        for t in 0..4000u64 {
            cluster::update(kind, &lat, hop, &mut phi, 3, 0, t).unwrap();
            if t % 2 == 1 {
                for chain in phi.chunks(v) {
                    let st = chain
                        .iter()
                        .enumerate()
                        .fold(0, |k, (x, &f)| k | ((f < 0.0) as usize) << x);
                    counts[bin_of[st]] += 1.0;
                }
            }
            assert!(phi
                .chunks(v)
                .all(|c| c.iter().zip(&mags).all(|(a, b)| a.abs() == *b)));
        }
        let n: f64 = counts.iter().sum();
        // Bins a single heavy state (the aligned ones) skipped over are empty: left out.
        let chi2: f64 = mass
            .iter()
            .zip(&counts)
            .filter(|(&m, _)| m > 0.0)
            .map(|(&m, &c)| (c - n * m).powi(2) / (n * m))
            .sum();
        // 19 dof: P(χ² > 50) ≈ 1e-4.
        assert!(
            chi2 < 50.0,
            "{kind:?}: chi2 = {chi2:.1}, counts {counts:?}, mass {mass:?}"
        );
    }
}

/// χ₂ = V⟨M²⟩ and U₄ = 1 − ⟨M⁴⟩/(3⟨M²⟩²) from one sampler on 16² at κ = 0.27, λ = 0.022.
fn chi2_and_binder(cfg: SamplerConfig, updates: usize) -> (Estimate, Estimate) {
    let theory = TheoryConfig::Phi4 {
        lattice: Lattice::new(&[16, 16]).unwrap(),
        kappa: 0.27,
        lambda: 0.022,
    }
    .build()
    .unwrap();
    let chains = 8;
    let mut s = cfg
        .build(theory.clone(), chains, &Device::Cpu(common::cpu()))
        .unwrap();
    s.set_fields(&theory.start_fields(Start::Ordered, 0..chains, 1))
        .unwrap();
    // Primaries: M, absM, M2, M4, action density.
    let mut series = vec![vec![Vec::new(), Vec::new()]; chains];
    for t in 0..updates {
        s.update().unwrap();
        if t >= updates / 10 {
            for (c, m) in s.measure().unwrap().iter().enumerate() {
                series[c][0].push(m.primaries[2]);
                series[c][1].push(m.primaries[3]);
            }
        }
    }
    let m2: Vec<&[f64]> = series.iter().map(|c| c[0].as_slice()).collect();
    let chi = gamma_primary(&m2);
    let binder = gamma_derived(&series, |a| 1.0 - a[1] / (3.0 * a[0] * a[0]));
    (
        Estimate {
            value: chi.value * 256.0,
            error: chi.error * 256.0,
            ..chi
        },
        binder,
    )
}

#[test]
fn every_phi4_sampler_agrees_on_chi2_and_binder_near_the_transition() {
    let local = |algorithm| SamplerConfig::Local { algorithm, seed: 2 };
    let cases = [
        (
            "wolff",
            local(LocalAlgorithm::Cluster {
                hits: 1,
                kind: ClusterKind::Wolff { clusters: 4 },
            }),
            3000,
        ),
        (
            "cluster",
            local(LocalAlgorithm::Cluster {
                hits: 1,
                kind: ClusterKind::SwendsenWang,
            }),
            3000,
        ),
        (
            "metropolis",
            local(LocalAlgorithm::Metropolis { hits: 2 }),
            12000,
        ),
        (
            "fa-hmc",
            SamplerConfig::FaHmc {
                params: HmcParams {
                    tau: 1.9,
                    steps: 6,
                    integrator: Integrator::Omelyan,
                    seed: 2,
                },
                m2: 0.15,
            },
            2000,
        ),
        (
            "hmc",
            SamplerConfig::Hmc(HmcParams {
                tau: 1.0,
                steps: 5,
                integrator: Integrator::Omelyan,
                seed: 2,
            }),
            6000,
        ),
    ];
    let results: Vec<(&str, (Estimate, Estimate))> = cases
        .into_iter()
        .map(|(name, cfg, n)| (name, chi2_and_binder(cfg, n)))
        .collect();
    let (_, (chi_ref, u_ref)) = results[0];
    for (name, (chi, u)) in &results {
        let pull = |a: &Estimate, b: &Estimate| (a.value - b.value) / a.error.hypot(b.error);
        println!(
            "{name}: chi2 = {:.2} ± {:.2} (tau {:.1}), U4 = {:.4} ± {:.4}",
            chi.value, chi.error, chi.tau_int, u.value, u.error
        );
        assert!(
            pull(chi, &chi_ref).abs() < 4.0,
            "{name}: chi2 {} vs {}",
            chi.value,
            chi_ref.value
        );
        assert!(
            pull(u, &u_ref).abs() < 4.0,
            "{name}: U4 {} vs {}",
            u.value,
            u_ref.value
        );
        assert!(
            chi.error < 0.1 * chi.value,
            "{name}: chi2 error too large to test"
        );
    }
}
