//! The Ising and XY samplers against exact results: enumeration of small lattices, the closed-form
//! torus partition function (Kaufman / Ferdinand–Fisher), the periodic XY chain (Bessel sums),
//! quadrature on a 2 × 2 XY lattice, and histograms of the full state distribution (detailed
//! balance) on tiny lattices. Also: results independent of the CPU thread count.

mod common;

use std::f64::consts::{PI, TAU};
use std::sync::Arc;

use latticeml::analysis::{gamma_primary, Estimate};
use latticeml::exact;
use latticeml::hmc::Start;
use latticeml::sampler::{Sampler, SamplerConfig};
use latticeml::theory::ising::Ising;
use latticeml::theory::xy::Xy;
use latticeml::theory::{ClusterKind, LocalAlgorithm, Theory, TheoryConfig};
use latticeml::{Device, Lattice};

const METROPOLIS: LocalAlgorithm = LocalAlgorithm::Metropolis { hits: 1 };

fn sampler(theory: &TheoryConfig, algorithm: LocalAlgorithm, chains: usize) -> Box<dyn Sampler> {
    built(theory, SamplerConfig::Local { algorithm, seed: 7 }, chains)
}

fn built(theory: &TheoryConfig, cfg: SamplerConfig, chains: usize) -> Box<dyn Sampler> {
    let t = theory.build().unwrap();
    let mut s = cfg
        .build(t.clone(), chains, &Device::Cpu(common::cpu()))
        .unwrap();
    s.set_fields(&t.start_fields(Start::Hot, 0..chains, 7))
        .unwrap();
    s
}

/// `series[chain][primary][sweep]` after `therm` sweeps, and each measured batch of fields
/// when `keep_fields`.
fn run(
    s: &mut dyn Sampler,
    sweeps: usize,
    therm: usize,
    mut on_fields: impl FnMut(&[f64]),
) -> Vec<Vec<Vec<f64>>> {
    let mut series: Vec<Vec<Vec<f64>>> = Vec::new();
    for t in 0..sweeps {
        s.update().unwrap();
        if t < therm {
            continue;
        }
        let m = s.measure().unwrap();
        if series.is_empty() {
            series = m
                .iter()
                .map(|c| vec![Vec::new(); c.primaries.len()])
                .collect();
        }
        for (chain, c) in m.iter().enumerate() {
            for (p, &x) in c.primaries.iter().enumerate() {
                series[chain][p].push(x);
            }
        }
        on_fields(&s.fields().unwrap());
    }
    series
}

fn estimate(series: &[Vec<Vec<f64>>], p: usize) -> Estimate {
    let reps: Vec<&[f64]> = series.iter().map(|c| c[p].as_slice()).collect();
    gamma_primary(&reps)
}

fn assert_agrees(what: &str, e: &Estimate, exact: f64) {
    let pull = (e.value - exact) / e.error;
    assert!(
        pull.abs() < 4.0,
        "{what}: {} ± {} (tau_int {:.1}) vs exact {exact}: {pull:.1} sigma",
        e.value,
        e.error,
        e.tau_int
    );
    assert!(
        e.error < 0.02 * exact.abs().max(0.1),
        "{what}: error {} too large to test",
        e.error
    );
}

/// ⟨E/V⟩, ⟨m²⟩, ⟨|m|⟩ of the L0 × L1 Ising torus by enumerating its 2^V states.
fn ising_enumeration(l0: usize, l1: usize, beta: f64) -> [f64; 3] {
    let model = Ising::new(Lattice::new(&[l0, l1]).unwrap(), beta).unwrap();
    let v = l0 * l1;
    let (mut z, mut acc) = (0.0, [0.0; 3]);
    let mut s = vec![0.0; v];
    for state in 0u32..(1 << v) {
        for (i, x) in s.iter_mut().enumerate() {
            *x = if state >> i & 1 == 1 { -1.0 } else { 1.0 };
        }
        let e = model.energy(&s);
        let m = s.iter().sum::<f64>() / v as f64;
        let w = (-beta * e).exp();
        z += w;
        for (a, x) in acc.iter_mut().zip([e / v as f64, m * m, m.abs()]) {
            *a += w * x;
        }
    }
    acc.map(|a| a / z)
}

#[test]
fn ising_4x4_matches_exact_enumeration() {
    for (algorithm, beta) in [
        (METROPOLIS, 0.2),
        (METROPOLIS, 0.44),
        (LocalAlgorithm::Heatbath, 0.44),
        (LocalAlgorithm::Metropolis { hits: 3 }, 0.6),
    ] {
        let theory = TheoryConfig::Ising {
            lattice: Lattice::new(&[4, 4]).unwrap(),
            beta,
        };
        let series = run(sampler(&theory, algorithm, 16).as_mut(), 6000, 200, |_| {});
        let [e, m2, am] = ising_enumeration(4, 4, beta);
        let what = |o: &str| format!("4x4 Ising {} beta {beta}: {o}", algorithm.name());
        // Primaries: energy, M, absM, M2, M4.
        assert_agrees(&what("energy"), &estimate(&series, 0), e);
        assert_agrees(&what("absM"), &estimate(&series, 2), am);
        assert_agrees(&what("M2"), &estimate(&series, 3), m2);
    }
}

#[test]
fn ising_energy_matches_kaufman_on_8x8_and_16x16() {
    for (l, algorithm, beta) in [
        (8, METROPOLIS, 0.3),
        (8, LocalAlgorithm::Heatbath, 0.5),
        (16, METROPOLIS, 0.4406868),
        (16, LocalAlgorithm::Heatbath, 0.38),
    ] {
        let theory = TheoryConfig::Ising {
            lattice: Lattice::new(&[l, l]).unwrap(),
            beta,
        };
        let series = run(sampler(&theory, algorithm, 8).as_mut(), 6000, 500, |_| {});
        let exact = exact::ising::energy_per_site(l, l, beta).unwrap();
        let what = format!("{l}x{l} Ising {} beta {beta}: energy", algorithm.name());
        assert_agrees(&what, &estimate(&series, 0), exact);
    }
}

/// The probability of each of the 2^V states of a tiny torus against the histogram of `samples`
/// draws: Pearson's χ² must not be improbably large. Configurations are taken `gap` sweeps
/// apart, many times τ_int on these lattices, so they are independent.
fn chi2_against(p: &[f64], counts: &[f64]) -> (f64, usize) {
    let n: f64 = counts.iter().sum();
    let chi2 = p
        .iter()
        .zip(counts)
        .map(|(&p, &c)| (c - n * p).powi(2) / (n * p))
        .sum();
    (chi2, p.len() - 1)
}

/// χ² upper quantile at probability 1e-4 for `dof` degrees of freedom (Wilson–Hilferty).
fn chi2_limit(dof: usize) -> f64 {
    let k = dof as f64;
    let z = 3.72;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

#[test]
fn ising_kernels_obey_detailed_balance_on_the_2x4_torus() {
    let (l0, l1, beta) = (2usize, 4usize, 0.35);
    let model = Ising::new(Lattice::new(&[l0, l1]).unwrap(), beta).unwrap();
    let v = l0 * l1;
    let weights: Vec<f64> = (0u32..1 << v)
        .map(|state| {
            let s: Vec<f64> = (0..v)
                .map(|i| if state >> i & 1 == 1 { -1.0 } else { 1.0 })
                .collect();
            (-beta * model.energy(&s)).exp()
        })
        .collect();
    let z: f64 = weights.iter().sum();
    let p: Vec<f64> = weights.iter().map(|w| w / z).collect();
    for algorithm in [METROPOLIS, LocalAlgorithm::Heatbath] {
        let theory = TheoryConfig::Ising {
            lattice: Lattice::new(&[l0, l1]).unwrap(),
            beta,
        };
        let mut s = sampler(&theory, algorithm, 64);
        let mut counts = vec![0.0; 1 << v];
        let gap = 4;
        let mut t = 0;
        run(s.as_mut(), 2000, 20, |f| {
            t += 1;
            if t % gap == 0 {
                for chain in f.chunks(v) {
                    let state = chain
                        .iter()
                        .enumerate()
                        .fold(0usize, |k, (i, &x)| k | ((x < 0.0) as usize) << i);
                    counts[state] += 1.0;
                }
            }
        });
        let (chi2, dof) = chi2_against(&p, &counts);
        assert!(
            chi2 < chi2_limit(dof),
            "{}: chi2 = {chi2:.1} for {dof} dof",
            algorithm.name()
        );
    }
}

#[test]
fn xy_chain_energy_matches_the_bessel_function_sum() {
    for (algorithm, beta) in [
        (METROPOLIS, 1.0),
        (LocalAlgorithm::Overrelax, 2.0),
        (LocalAlgorithm::Metropolis { hits: 4 }, 0.5),
    ] {
        let theory = TheoryConfig::Xy {
            lattice: Lattice::new(&[64]).unwrap(),
            beta,
        };
        let series = run(sampler(&theory, algorithm, 8).as_mut(), 3000, 300, |_| {});
        let exact = exact::xy::chain_energy_per_site(64, beta).unwrap();
        let what = format!("XY chain {} beta {beta}: energy", algorithm.name());
        assert_agrees(&what, &estimate(&series, 0), exact);
    }
}

#[test]
fn xy_hmc_and_mala_match_the_chain_and_the_2x2_quadrature() {
    let hmc = SamplerConfig::Hmc(latticeml::hmc::HmcParams {
        tau: 1.0,
        steps: 8,
        integrator: latticeml::hmc::Integrator::Omelyan,
        seed: 7,
    });
    let mala = SamplerConfig::Mala {
        epsilon: 0.2,
        seed: 7,
    };
    let chain = TheoryConfig::Xy {
        lattice: Lattice::new(&[64]).unwrap(),
        beta: 1.0,
    };
    let exact = exact::xy::chain_energy_per_site(64, 1.0).unwrap();
    let series = run(built(&chain, hmc, 8).as_mut(), 2000, 200, |_| {});
    assert_agrees("XY chain hmc: energy", &estimate(&series, 0), exact);
    let (e_exact, _) = xy_2x2_quadrature(0.7, 8);
    let square = TheoryConfig::Xy {
        lattice: Lattice::new(&[2, 2]).unwrap(),
        beta: 0.7,
    };
    let series = run(built(&square, mala, 64).as_mut(), 3000, 100, |f| {
        assert!(
            f.iter().all(|t| (0.0..TAU).contains(t)),
            "fields not wrapped"
        );
    });
    assert_agrees("2x2 XY mala: energy", &estimate(&series, 0), e_exact);
}

/// ⟨E/V⟩ and the distribution of θ₀₀ − θ₀₁ (in `bins` bins of [0, 2π)) on the 2 × 2 XY torus,
/// by the periodic trapezoidal rule (spectrally accurate) over three angles (θ₀₀ = 0 by symmetry).
fn xy_2x2_quadrature(beta: f64, bins: usize) -> (f64, Vec<f64>) {
    let model = Xy::new(Lattice::new(&[2, 2]).unwrap(), beta).unwrap();
    let n = 96;
    let (mut z, mut e) = (0.0, 0.0);
    let mut hist = vec![0.0; bins];
    for i in 0..n {
        for j in 0..n {
            for k in 0..n {
                let th = [
                    0.0,
                    TAU * i as f64 / n as f64,
                    TAU * j as f64 / n as f64,
                    TAU * k as f64 / n as f64,
                ];
                let be = model.bond_energy(&th);
                let w = (-beta * be).exp();
                z += w;
                e += w * be / 4.0;
                // θ₀₀ − θ₀₁ = −θ₀₁ is grid angle m; with n a multiple of `bins`, a point on a
                // bin edge belongs half to each side (the trapezoidal rule of each bin).
                let m = (n - i) % n;
                let b = m * bins / n;
                if m % (n / bins) == 0 {
                    hist[b] += w / 2.0;
                    hist[(b + bins - 1) % bins] += w / 2.0;
                } else {
                    hist[b] += w;
                }
            }
        }
    }
    (e / z, hist.iter().map(|h| h / z).collect())
}

#[test]
fn xy_2x2_matches_quadrature_and_its_bond_angle_histogram() {
    let bins = 8;
    for (algorithm, beta) in [(METROPOLIS, 0.7), (LocalAlgorithm::Overrelax, 0.7)] {
        let (e_exact, p) = xy_2x2_quadrature(beta, bins);
        let theory = TheoryConfig::Xy {
            lattice: Lattice::new(&[2, 2]).unwrap(),
            beta,
        };
        let mut s = sampler(&theory, algorithm, 64);
        let mut counts = vec![0.0; bins];
        let mut t = 0;
        let series = run(s.as_mut(), 3000, 50, |f| {
            t += 1;
            if t % 5 == 0 {
                for chain in f.chunks(4) {
                    let d = (chain[0] - chain[1]).rem_euclid(TAU);
                    counts[((d / TAU * bins as f64) as usize).min(bins - 1)] += 1.0;
                }
            }
        });
        assert_agrees(
            &format!("2x2 XY {}: energy", algorithm.name()),
            &estimate(&series, 0),
            e_exact,
        );
        let (chi2, dof) = chi2_against(&p, &counts);
        assert!(
            chi2 < chi2_limit(dof),
            "{}: chi2 = {chi2:.1} for {dof} dof",
            algorithm.name()
        );
    }
}

#[test]
fn xy_at_small_beta_follows_the_high_temperature_series() {
    // 2D, β = 0.05: ⟨cos⟩ per bond = I₁(β)/I₀(β) + O(β³) (the first closed loop is a plaquette,
    // contributing at β³); so e = −2 I₁/I₀ within a few 1e-4.
    let beta: f64 = 0.05;
    let theory = TheoryConfig::Xy {
        lattice: Lattice::new(&[16, 16]).unwrap(),
        beta,
    };
    let series = run(sampler(&theory, METROPOLIS, 8).as_mut(), 1500, 100, |_| {});
    let t = beta / 2.0 - beta.powi(3) / 16.0;
    let e = estimate(&series, 0);
    assert!(
        (e.value + 2.0 * t).abs() < 4.0 * e.error + 2.0 * beta.powi(3),
        "energy {} ± {} vs -2 I1/I0 = {}",
        e.value,
        e.error,
        -2.0 * t
    );
    // Vortices: a plaquette of four independent uniform angles winds with probability 1/3.
    let vd = estimate(&series, 5);
    assert!(
        (vd.value - 1.0 / 3.0).abs() < 4.0 * vd.error + 0.02,
        "vortex density {}",
        vd.value
    );
    let _ = PI;
}

#[test]
fn local_samplers_do_not_depend_on_the_thread_count() {
    let theories = [
        TheoryConfig::Ising {
            lattice: Lattice::new(&[32, 200]).unwrap(),
            beta: 0.4,
        },
        TheoryConfig::Xy {
            lattice: Lattice::new(&[16, 18]).unwrap(),
            beta: 1.0,
        },
    ];
    for theory in &theories {
        let t: Arc<dyn Theory> = theory.build().unwrap();
        let algorithm = LocalAlgorithm::Metropolis { hits: 2 };
        let fields: Vec<Vec<f64>> = [1, 2, 3]
            .iter()
            .map(|&threads| {
                let dev = Device::Cpu(latticeml::device::CpuDevice::with_threads(threads));
                let cfg = SamplerConfig::Local { algorithm, seed: 3 };
                let mut s = cfg.build(t.clone(), 3, &dev).unwrap();
                s.set_fields(&t.start_fields(Start::Hot, 0..3, 3)).unwrap();
                for _ in 0..5 {
                    s.update().unwrap();
                }
                s.fields().unwrap()
            })
            .collect();
        assert_eq!(fields[0], fields[1], "{}", t.name());
        assert_eq!(fields[0], fields[2], "{}", t.name());
    }
}

/// The CUDA sweepers against the CPU ones: several sweeps from the same hot start give the same
/// spins bit for bit (integer decisions) and the same angles (the GPU's cos, exp and atan2 may
/// differ from the CPU's in the last ulp, which moves an angle by ~1e-16 and flips a Metropolis
/// decision only with probability ~1e-16 per proposal).
#[test]
fn cuda_sweepers_match_their_cpu_twins() {
    let Some(gpu) = common::gpu("cuda_sweepers_match_their_cpu_twins") else {
        return;
    };
    let cases = [
        (
            TheoryConfig::Phi4 {
                lattice: Lattice::new(&[10, 12]).unwrap(),
                kappa: 0.18,
                lambda: 0.02,
            },
            vec![
                METROPOLIS,
                LocalAlgorithm::Metropolis { hits: 4 },
                // Swendsen–Wang on the device (kernels/cluster.cu) against the host's union-find.
                LocalAlgorithm::Cluster {
                    hits: 1,
                    kind: ClusterKind::SwendsenWang,
                },
            ],
        ),
        (
            TheoryConfig::Ising {
                lattice: Lattice::new(&[64, 260]).unwrap(),
                beta: 0.44,
            },
            vec![METROPOLIS, LocalAlgorithm::Heatbath],
        ),
        (
            TheoryConfig::Xy {
                lattice: Lattice::new(&[12, 14]).unwrap(),
                beta: 1.1,
            },
            vec![
                LocalAlgorithm::Metropolis { hits: 3 },
                LocalAlgorithm::Overrelax,
            ],
        ),
    ];
    for (theory, algorithms) in &cases {
        let t = theory.build().unwrap();
        for algorithm in algorithms {
            let fields: Vec<(Vec<f64>, Vec<f64>)> =
                [Device::Cpu(common::cpu()), Device::Cuda(gpu.clone())]
                    .iter()
                    .map(|dev| {
                        let cfg = SamplerConfig::Local {
                            algorithm: *algorithm,
                            seed: 5,
                        };
                        let mut s = cfg.build(t.clone(), 4, dev).unwrap();
                        s.set_fields(&t.start_fields(Start::Hot, 0..4, 5)).unwrap();
                        let mut acc = Vec::new();
                        for _ in 0..6 {
                            acc.extend(s.update().unwrap().accepted);
                        }
                        (s.fields().unwrap(), acc)
                    })
                    .collect();
            let what = format!("{} {}", t.name(), algorithm.name());
            if t.name() == "ising" {
                assert_eq!(fields[0], fields[1], "{what}");
            } else {
                let d = common::max_rel_diff(&fields[0].0, &fields[1].0);
                assert!(d < 1e-9, "{what}: angles differ by {d:e}");
            }
        }
    }
}
