//! One sweep of the local samplers: checkerboard Metropolis of the 2D Ising model (multi-spin
//! coded) at 1024² and 4096², Metropolis of the 2D XY model at 256², and a Metropolis sweep plus
//! Swendsen–Wang clusters of 2D φ⁴ at 256², on the CPU; Ising 16384², XY 4096² and φ⁴ with
//! clusters at 2048² (on the device) on a GPU when one is present. Throughput is in site-updates
//! per second.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use latticeml::hmc::Start;
use latticeml::sampler::{Sampler, SamplerConfig};
use latticeml::theory::{LocalAlgorithm, TheoryConfig};
use latticeml::{Device, Lattice};

fn sampler(theory: &TheoryConfig, algorithm: LocalAlgorithm, device: &Device) -> Box<dyn Sampler> {
    let t = theory.build().unwrap();
    let cfg = SamplerConfig::Local { algorithm, seed: 3 };
    let mut s = cfg.build(t.clone(), 1, device).unwrap();
    s.set_fields(&t.start_fields(Start::Hot, 0..1, 3)).unwrap();
    s.update().unwrap();
    s
}

fn bench_device(c: &mut Criterion, label: &str, device: &Device, cases: &[(&str, usize)]) {
    let mut g = c.benchmark_group(format!("local_sweep_{label}"));
    g.sample_size(10);
    for &(theory, l) in cases {
        let lattice = Lattice::new(&[l, l]).unwrap();
        let metropolis = LocalAlgorithm::Metropolis { hits: 1 };
        let (t, algorithm) = match theory {
            "ising" => (
                TheoryConfig::Ising {
                    lattice,
                    beta: 0.440_686_8,
                },
                metropolis,
            ),
            "phi4-sw" => (
                TheoryConfig::Phi4 {
                    lattice,
                    kappa: 0.271,
                    lambda: 0.022,
                },
                LocalAlgorithm::from_name("cluster", None, None).unwrap(),
            ),
            _ => (
                TheoryConfig::Xy {
                    lattice,
                    beta: 1.12,
                },
                metropolis,
            ),
        };
        let mut s = sampler(&t, algorithm, device);
        g.throughput(Throughput::Elements(s.site_updates()));
        g.bench_function(format!("{theory}_{l}x{l}"), |b| {
            b.iter(|| s.update().unwrap())
        });
    }
    g.finish();
}

fn local_sweep(c: &mut Criterion) {
    common::on_every_device(c, "local_sweep", |c, label, device| {
        let cases: &[(&str, usize)] = if label == "cpu" {
            &[
                ("ising", 1024),
                ("ising", 4096),
                ("xy", 256),
                ("phi4-sw", 256),
            ]
        } else {
            &[("ising", 16384), ("xy", 4096), ("phi4-sw", 2048)]
        };
        bench_device(c, label, device, cases)
    });
}

criterion_group!(benches, local_sweep);
criterion_main!(benches);
