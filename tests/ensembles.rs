//! A batch that is a range of a larger ensemble (an MPI rank's share) reproduces those chains of
//! one process running the whole ensemble, bit for bit: the random numbers are keyed by the global
//! chain index.

use std::sync::Arc;

use latticeml::hmc::{HmcParams, Integrator, Start};
use latticeml::sampler::{Sampler, SamplerConfig};
use latticeml::theory::{LocalAlgorithm, Theory, TheoryConfig};
use latticeml::{Device, Lattice};

fn theory() -> Arc<dyn Theory> {
    TheoryConfig::Phi4 {
        lattice: Lattice::new(&[6, 4]).unwrap(),
        kappa: 0.27,
        lambda: 0.022,
    }
    .build()
    .unwrap()
}

fn share(config: &SamplerConfig, first: usize, count: usize) -> Box<dyn Sampler> {
    let t = theory();
    let device = Device::from_name("cpu").unwrap().0;
    let mut s = config.build(t.clone(), count, &device).unwrap();
    s.set_first_chain(first).unwrap();
    s.set_fields(&t.start_fields(Start::Hot, first..first + count, s.seed()))
        .unwrap();
    s
}

/// Fields and per-update statistics of `updates` updates.
fn history(s: &mut dyn Sampler, updates: usize) -> (Vec<u64>, Vec<u64>) {
    let mut stats = Vec::new();
    for _ in 0..updates {
        let u = s.update().unwrap();
        stats.extend(u.delta_h.iter().chain(&u.accepted).map(|x| x.to_bits()));
    }
    let fields = s.fields().unwrap().iter().map(|x| x.to_bits()).collect();
    (fields, stats)
}

#[test]
fn a_share_of_the_ensemble_is_those_chains_of_the_whole() {
    let params = HmcParams {
        // Long steps: about half the proposals rejected, so the accept draws matter.
        tau: 1.5,
        steps: 2,
        integrator: Integrator::Leapfrog,
        seed: 17,
    };
    let configs = [
        SamplerConfig::Hmc(params),
        SamplerConfig::FaHmc { params, m2: 0.3 },
        SamplerConfig::Mala {
            epsilon: 0.3,
            seed: 5,
        },
    ];
    let v = theory().lattice().volume();
    for config in &configs {
        let (all_fields, all_stats) = history(share(config, 0, 5).as_mut(), 6);
        let (part_fields, part_stats) = history(share(config, 2, 3).as_mut(), 6);
        assert_eq!(part_fields, all_fields[2 * v..], "{}", config.name());
        // Per update: ΔH of chains 0..5 then acceptances of chains 0..5.
        let expected: Vec<u64> = all_stats.chunks(5).flat_map(|c| c[2..].to_vec()).collect();
        assert_eq!(part_stats, expected, "{}", config.name());
        let accepted = expected.chunks(3).skip(1).step_by(2).flatten();
        let rejected = accepted.filter(|&&a| f64::from_bits(a) == 0.0).count();
        // (Fourier acceleration with this mass accepts everything.)
        if config.name() != "fa-hmc" {
            assert!(
                (3..15).contains(&rejected),
                "{}: {rejected} of 18 rejected",
                config.name()
            );
        }
        // A different range is a different set of chains.
        let (other, _) = history(share(config, 1, 3).as_mut(), 6);
        assert_ne!(other, part_fields);
    }
}

#[test]
fn samplers_keyed_by_the_local_chain_refuse_a_share() {
    let t = theory();
    let device = Device::from_name("cpu").unwrap().0;
    let config = SamplerConfig::Local {
        algorithm: LocalAlgorithm::Metropolis { hits: 1 },
        seed: 1,
    };
    let mut s = config.build(t, 2, &device).unwrap();
    s.set_first_chain(0).unwrap();
    let e = s.set_first_chain(4).unwrap_err().to_string();
    assert!(e.contains("cannot run a share of an ensemble"), "{e}");
}
