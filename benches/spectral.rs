//! Spectral reconstruction at the benchmark paper's size (100 momenta, 500 ω points): one NN
//! training step (forward + backward + Adam) of each representation, 100 list networks trained
//! together, and a full MEM solve.

use criterion::{criterion_group, criterion_main, Criterion};
use latticeml::device::CpuDevice;
use latticeml::spectral::classical::MemAlpha;
use latticeml::spectral::kernel::{kernel_matrix, KernelKind, OmegaGrid};
use latticeml::spectral::mock::{mock_data, Noise, Spectrum};
use latticeml::spectral::neural::{NnKind, NnOptions};
use latticeml::spectral::{reconstruct, Method, Problem};
use latticeml::Device;

fn paper_problem() -> Problem {
    let grid = OmegaGrid::uniform(0.04, 20.0, 500).unwrap();
    let p: Vec<f64> = (1..=100).map(|i| 0.2 * i as f64).collect();
    let a = kernel_matrix(KernelKind::KallenLehmann, &p, &grid).unwrap();
    let truth = Spectrum::named("bw2").unwrap().on(&grid);
    let data = mock_data(&a, &truth, &p, &Noise::MomentumScaled(1e-4), 1).unwrap();
    Problem {
        data,
        kind: KernelKind::KallenLehmann,
        grid,
    }
}

fn spectral(c: &mut Criterion) {
    let problem = paper_problem();
    let device = Device::Cpu(CpuDevice::new());
    let mut g = c.benchmark_group("spectral_paper_size");
    g.sample_size(10);
    for (name, kind) in [
        ("nn_step_list", NnKind::List),
        ("nn_step_p2p", NnKind::PointToPoint { positive: true }),
    ] {
        // Ten Adam steps per iteration, no polish; the bench reports the time of ten steps.
        let mut o = NnOptions::new(kind);
        (o.steps, o.restarts, o.polish_iters) = (10, 1, 0);
        g.bench_function(format!("{name}_x10"), |b| {
            b.iter(|| reconstruct(&problem, &Method::Neural(o.clone()), &device).unwrap())
        });
    }
    // The batched list networks of `latticeml bench spectral`: 100 networks, ten timed steps
    // (plus the data and one untimed step, as that command does).
    g.bench_function("list_batched_100_x10", |b| {
        b.iter(|| latticeml::spectral::bench::list_training(&device, 100, 10).unwrap())
    });
    g.bench_function("mem_bryan_full_solve", |b| {
        b.iter(|| {
            reconstruct(
                &problem,
                &Method::Mem {
                    alpha: MemAlpha::Bryan,
                    default_model: None,
                },
                &device,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, spectral);
criterion_main!(benches);
