//! One fused molecular-dynamics update (p += ε F(φ); φ' = φ + ε p) of φ⁴ in f64:
//! 2D 256×256 and 4D 16⁴ on the CPU, plus 4096×4096 and 64⁴ on a GPU when one is present; and
//! the same with Fourier acceleration (φ' = φ + ε M⁻¹p: one real FFT pair per update on the CPU,
//! our Stockham kernels on the GPU). Throughput is in site-updates per second.

mod common;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use latticeml::action::{Action, Phi4};
use latticeml::hmc::{Hmc, HmcParams, Integrator};
use latticeml::{Device, Lattice};

fn sampler(dims: &[usize], device: &Device, fourier: bool) -> Hmc {
    let action: Arc<dyn Action> =
        Arc::new(Phi4::new(Lattice::new(dims).unwrap(), 0.15, 0.022).unwrap());
    // One step of leapfrog per integrate(): K(½)D(1) then K(½), i.e. two fused updates.
    let params = HmcParams {
        tau: 0.05,
        steps: 1,
        integrator: Integrator::Leapfrog,
        seed: 3,
    };
    let mut hmc = Hmc::new(action, 1, params, device).unwrap();
    if fourier {
        hmc.set_fourier_mass(0.1).unwrap();
    }
    hmc.trajectory().unwrap();
    hmc
}

fn bench_device(c: &mut Criterion, group: &str, device: &Device, shapes: &[&[usize]]) {
    let fourier = group.contains("fourier");
    let mut g = c.benchmark_group(group);
    for dims in shapes {
        let mut hmc = sampler(dims, device, fourier);
        let name = dims
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("x");
        g.throughput(Throughput::Elements(hmc.site_updates_per_trajectory()));
        g.bench_function(name, |b| {
            b.iter(|| {
                hmc.integrate().unwrap();
                hmc.synchronize().unwrap();
            })
        });
    }
    g.finish();
}

fn md_step(c: &mut Criterion) {
    common::on_every_device(c, "md_step", |c, label, device| {
        let shapes: &[&[usize]] = if label == "cpu" {
            &[&[256, 256], &[16, 16, 16, 16]]
        } else {
            &[&[4096, 4096], &[64, 64, 64, 64], &[256, 256]]
        };
        bench_device(c, &format!("md_step_{label}"), device, shapes);
        let shapes: &[&[usize]] = if label == "cpu" {
            &[&[256, 256], &[16, 16, 16, 16]]
        } else {
            &[&[4096, 4096], &[32, 32, 32, 32]]
        };
        bench_device(c, &format!("md_step_fourier_{label}"), device, shapes);
    });
}

criterion_group!(benches, md_step);
criterion_main!(benches);
