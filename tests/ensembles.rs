//! A batch that is a range of a larger ensemble (an MPI rank's share) reproduces those chains of
//! one process running the whole ensemble, bit for bit: every sampler keys its random numbers by
//! the global chain index.

mod common;

use common::team::thread_team;

use std::path::Path;
use std::sync::Arc;

use latticeml::can::symmetry::Symmetry;
use latticeml::ensemble::Team;
use latticeml::hmc::{HmcParams, Integrator, Start};
use latticeml::io::outdir::Claim;
use latticeml::run::{run, run_team, RunConfig};
use latticeml::sampler::{Sampler, SamplerConfig};
use latticeml::theory::{LocalAlgorithm, Theory, TheoryConfig};
use latticeml::{Device, Lattice};

fn phi4() -> Arc<dyn Theory> {
    TheoryConfig::Phi4 {
        lattice: Lattice::new(&[6, 4]).unwrap(),
        kappa: 0.27,
        lambda: 0.022,
    }
    .build()
    .unwrap()
}

fn share(t: &Arc<dyn Theory>, config: &SamplerConfig, first: usize, n: usize) -> Box<dyn Sampler> {
    let device = Device::from_name("cpu").unwrap().0;
    let mut s = config.build(t.clone(), n, &device).unwrap();
    s.set_first_chain(first).unwrap();
    s.set_fields(&t.start_fields(Start::Hot, first..first + n, s.seed()))
        .unwrap();
    s
}

/// The bits of the fields after `updates` updates, and per update ΔH and acceptance per chain.
fn history(s: &mut dyn Sampler, updates: usize) -> (Vec<u64>, Vec<Vec<u64>>) {
    let mut stats = Vec::new();
    for _ in 0..updates {
        let u = s.update().unwrap();
        let per_chain = u.delta_h.iter().zip(&u.accepted);
        stats.extend(per_chain.map(|(d, a)| vec![d.to_bits(), a.to_bits()]));
    }
    let fields = s.fields().unwrap().iter().map(|x| x.to_bits()).collect();
    (fields, stats)
}

/// Chains 2..5 of a 5-chain ensemble run alone equal those chains of the whole; returns the
/// fraction of their proposals rejected.
fn check_share(t: &Arc<dyn Theory>, config: &SamplerConfig) -> f64 {
    let (v, updates) = (t.lattice().volume(), 6);
    let (all_fields, all_stats) = history(share(t, config, 0, 5).as_mut(), updates);
    let (part_fields, part_stats) = history(share(t, config, 2, 3).as_mut(), updates);
    let what = format!("{} {}", t.name(), config.name());
    assert_eq!(part_fields, all_fields[2 * v..], "{what}: fields");
    let expected: Vec<Vec<u64>> = all_stats
        .chunks(5)
        .flat_map(|update| update[2..].to_vec())
        .collect();
    assert_eq!(part_stats, expected, "{what}: ΔH and acceptance");
    // Another range is other chains.
    let (other, _) = history(share(t, config, 1, 3).as_mut(), updates);
    assert_ne!(other, part_fields, "{what}");
    let accepted: f64 = part_stats.iter().map(|s| f64::from_bits(s[1])).sum();
    1.0 - accepted / part_stats.len() as f64
}

/// Rank 0's bytes reach every rank exactly (all 256 values, in order), and rank 0's "none"
/// reaches every rank as none.
#[test]
fn rank_zeros_bytes_reach_every_rank() {
    let bytes: Vec<u8> = (0..=255u8).rev().chain([0, 255, 128]).collect();
    for give in [true, false] {
        let got: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = thread_team(3)
                .into_iter()
                .map(|team| {
                    let b = bytes.clone();
                    s.spawn(move || {
                        let mine = (team.rank() == 0 && give).then_some(&b[..]);
                        latticeml::ensemble::broadcast_bytes(&team, mine).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, g) in got.iter().enumerate() {
            let want = give.then(|| bytes.clone());
            assert_eq!(g, &want, "rank {rank}, rank 0 gives: {give}");
        }
    }
}

#[test]
fn every_sampler_runs_a_share_of_an_ensemble_as_those_chains_of_the_whole() {
    let (p4, seed) = (phi4(), 17);
    // Long steps: a good part of the proposals rejected, so the accept draws matter.
    let params = HmcParams {
        tau: 1.5,
        steps: 2,
        integrator: Integrator::Leapfrog,
        seed,
    };
    let local = |algorithm| SamplerConfig::Local { algorithm, seed };
    let rejecting = [
        SamplerConfig::Hmc(params),
        SamplerConfig::Mala { epsilon: 0.3, seed },
        local(LocalAlgorithm::from_name("metropolis", Some(2), None).unwrap()),
    ];
    for config in &rejecting {
        let rejected = check_share(&p4, config);
        assert!(
            (0.1..0.9).contains(&rejected),
            "{}: {rejected}",
            config.name()
        );
    }
    for config in [
        SamplerConfig::FaHmc { params, m2: 0.3 },
        SamplerConfig::Langevin {
            epsilon: 0.05,
            seed,
        },
        local(LocalAlgorithm::from_name("cluster", None, None).unwrap()),
        local(LocalAlgorithm::from_name("wolff", None, Some(2)).unwrap()),
    ] {
        check_share(&p4, &config);
    }
    let lattice = Lattice::new(&[4, 4]).unwrap();
    let xy = TheoryConfig::Xy {
        lattice: lattice.clone(),
        beta: 1.0,
    }
    .build()
    .unwrap();
    for name in ["metropolis", "overrelax"] {
        check_share(
            &xy,
            &local(LocalAlgorithm::from_name(name, None, None).unwrap()),
        );
    }
    check_share(&xy, &SamplerConfig::Hmc(params));
    let ising = TheoryConfig::Ising { lattice, beta: 0.4 }.build().unwrap();
    for name in ["metropolis", "heatbath"] {
        check_share(
            &ising,
            &local(LocalAlgorithm::from_name(name, None, None).unwrap()),
        );
    }
}

#[test]
fn a_flow_sampler_runs_a_share_of_an_ensemble_as_those_chains_of_the_whole() {
    let model = common::fresh_dir("ensemble-flow");
    let m = model.to_str().unwrap();
    let args = [
        "flow", "train", "--device", "cpu", "--dims", "6x4", "--kappa", "0.27", "--lambda",
        "0.022", "--layers", "2", "--hidden", "4", "--batch", "16", "--steps", "20", "--out", m,
    ];
    let o = common::latticeml(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let flow = SamplerConfig::Flow {
        model: Path::new(m).to_path_buf(),
        seed: 3,
        hmc_between: None,
    };
    let rejected = check_share(&phi4(), &flow);
    assert!(rejected > 0.05, "an untrained flow rejects: {rejected}");
    let params = HmcParams {
        tau: 0.5,
        steps: 3,
        integrator: Integrator::Omelyan,
        seed: 5,
    };
    let with_hmc = SamplerConfig::Flow {
        model: Path::new(m).to_path_buf(),
        seed: 3,
        hmc_between: Some((params, 2)),
    };
    check_share(&phi4(), &with_hmc);
    // Run on a team, the summary's reweighted estimates, ESS and the HMC's acceptance cover
    // every rank's chains: one process's to rounding.
    for sampler in [flow, with_hmc] {
        let cfg = RunConfig {
            chains: 6,
            trajectories: 30,
            therm: 5,
            sampler,
            ..run_config(30)
        };
        let (one, three) = summaries_alone_and_on_a_team(&cfg, "flow");
        close(&three["ess_per_sample"], &one["ess_per_sample"]);
        for name in ["M", "absM", "M2"] {
            let (t, o) = (&three["reweighted"][name], &one["reweighted"][name]);
            close(&t["value"], &o["value"]);
            close(&t["error"], &o["error"]);
        }
        let between = |s: &serde_json::Value| s["updates_between"]["acceptance"].clone();
        if !between(&one).is_null() {
            close(&between(&three), &between(&one));
        }
    }
    let _ = std::fs::remove_dir_all(&model);
}

/// `summary.json` of `cfg` run by one process and by a team of 3 thread ranks.
fn summaries_alone_and_on_a_team(
    cfg: &RunConfig,
    name: &str,
) -> (serde_json::Value, serde_json::Value) {
    let solo = common::fresh_dir(&format!("ensemble-{name}-solo"));
    let device = Device::Cpu(latticeml::device::CpuDevice::with_threads(1));
    run(cfg, &device, &solo, Claim::Fresh, &mut |_, _| {}).unwrap();
    let team = common::fresh_dir(&format!("ensemble-{name}-team"));
    let ranks = team_run(cfg, 3, &team, Claim::Fresh);
    assert!(ranks.iter().all(|r| r.is_ok()), "{ranks:?}");
    let summary = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("summary.json")).unwrap()).unwrap()
    };
    let both = (summary(&solo), summary(&team));
    for d in [&solo, &team] {
        let _ = std::fs::remove_dir_all(d);
    }
    both
}

/// Two summary numbers equal to rounding.
fn close(a: &serde_json::Value, b: &serde_json::Value) {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-12), "{a} vs {b}");
}

#[test]
fn an_autoregressive_network_runs_a_share_of_an_ensemble_as_those_chains_of_the_whole() {
    let model = common::fresh_dir("ensemble-can");
    let m = model.to_str().unwrap();
    let args = [
        "can",
        "train",
        "--device",
        "cpu",
        "--theory",
        "xy",
        "--dims",
        "4x4",
        "--beta",
        "1.0",
        "--kernel",
        "3",
        "--channels",
        "4",
        "--batch",
        "16",
        "--steps",
        "20",
        "--out",
        m,
    ];
    let o = common::latticeml(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let xy = TheoryConfig::Xy {
        lattice: Lattice::new(&[4, 4]).unwrap(),
        beta: 1.0,
    }
    .build()
    .unwrap();
    for mh in [true, false] {
        let can = SamplerConfig::Can {
            model: Path::new(m).to_path_buf(),
            seed: 3,
            mh,
            local_between: None,
            symmetry: Symmetry::None,
        };
        let rejected = check_share(&xy, &can);
        assert_eq!(
            rejected > 0.05,
            mh,
            "an untrained network rejects only with MH"
        );
    }
    let with_sweeps = SamplerConfig::Can {
        model: Path::new(m).to_path_buf(),
        seed: 3,
        mh: true,
        local_between: Some((
            LocalAlgorithm::from_name("metropolis", None, None).unwrap(),
            2,
        )),
        symmetry: Symmetry::None,
    };
    check_share(&xy, &with_sweeps);
    // Symmetrised proposals: each chain's symmetry is keyed by its global index.
    let symmetrised = SamplerConfig::Can {
        model: Path::new(m).to_path_buf(),
        seed: 3,
        mh: true,
        local_between: Some((
            LocalAlgorithm::from_name("metropolis", None, None).unwrap(),
            1,
        )),
        symmetry: Symmetry::All,
    };
    check_share(&xy, &symmetrised);
    // On a team the free energies (variational and reweighted) and the sweeps' acceptance
    // cover every rank's chains.
    let cfg = RunConfig {
        theory: TheoryConfig::Xy {
            lattice: Lattice::new(&[4, 4]).unwrap(),
            beta: 1.0,
        },
        chains: 6,
        trajectories: 30,
        therm: 5,
        sampler: with_sweeps,
        ..run_config(30)
    };
    let (one, three) = summaries_alone_and_on_a_team(&cfg, "can");
    for kind in ["variational", "reweighted"] {
        let (t, o) = (&three["free_energy"][kind], &one["free_energy"][kind]);
        close(&t["value"], &o["value"]);
        close(&t["error"], &o["error"]);
    }
    close(
        &three["updates_between"]["acceptance"],
        &one["updates_between"]["acceptance"],
    );
    let _ = std::fs::remove_dir_all(&model);
}

fn run_config(trajectories: u64) -> RunConfig {
    RunConfig {
        theory: TheoryConfig::Phi4 {
            lattice: Lattice::new(&[6, 4]).unwrap(),
            kappa: 0.27,
            lambda: 0.022,
        },
        chains: 5,
        trajectories,
        therm: 10,
        sampler: SamplerConfig::Local {
            algorithm: LocalAlgorithm::from_name("wolff", None, None).unwrap(),
            seed: 8,
        },
        start: Start::Hot,
        save_every: 5,
        checkpoint_every: 7,
    }
}

/// Runs `cfg` on a team of `size` threads; the outcome of each rank.
fn team_run(cfg: &RunConfig, size: usize, out: &Path, claim: Claim) -> Vec<Result<bool, String>> {
    let handles: Vec<_> = thread_team(size)
        .into_iter()
        .map(|team| {
            let (cfg, out) = (cfg.clone(), out.to_path_buf());
            std::thread::spawn(move || {
                let device = Device::Cpu(latticeml::device::CpuDevice::with_threads(1));
                run_team(&cfg, &device, &out, claim, &mut |_, _| {}, &team)
                    .map(|o| o.is_some())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_run_on_a_team_writes_the_files_of_one_process() {
    let solo = common::fresh_dir("team-solo");
    let device = Device::Cpu(latticeml::device::CpuDevice::with_threads(2));
    run(
        &run_config(30),
        &device,
        &solo,
        Claim::Fresh,
        &mut |_, _| {},
    )
    .unwrap();
    for size in [2, 3] {
        let dir = common::fresh_dir(&format!("team-{size}"));
        // In two legs: the second resumes every rank from its own checkpoint.
        let first = team_run(&run_config(17), size, &dir, Claim::Fresh);
        assert_eq!(
            first.iter().filter(|r| r == &&Ok(true)).count(),
            1,
            "{first:?}"
        );
        let second = team_run(&run_config(30), size, &dir, Claim::Resume);
        assert!(second.iter().all(|r| r.is_ok()), "{second:?}");
        common::assert_same_run_files(&solo, &dir, &format!("{size} ranks against one process"));
        assert!(dir.join(format!("checkpoint.rank{}", size - 1)).exists());
        // A run resumes on as many ranks as it ran on; every rank stops with an error.
        let other = team_run(&run_config(40), 5 - size, &dir, Claim::Resume);
        assert!(other.iter().all(|r| r.is_err()), "{other:?}");
        assert!(
            other[0].as_ref().unwrap_err().contains("ranks"),
            "{other:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    // More ranks than chains is refused on every rank before anything is written.
    let dir = common::fresh_dir("team-6");
    let refused = team_run(&run_config(30), 6, &dir, Claim::Fresh);
    assert!(refused.iter().all(|r| r
        .as_ref()
        .is_err_and(|e| e.contains("6 ranks for 5 chains"))));
    assert!(!dir.exists());
    let _ = std::fs::remove_dir_all(&solo);
}
