//! The diffusion models' score network: translation equivariance on the torus, and denoising
//! score matching that learns.

mod common;

use latticeml::diffusion::{ScoreConfig, ScoreNet, VeSde};
use latticeml::nn::{Adam, Ctx, ParamStore, Tape};
use latticeml::{philox, Device};

fn normals(n: usize, stream: u32, step: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 5, stream, step, 12);
    v
}

fn small() -> ScoreConfig {
    ScoreConfig {
        channels: [4, 8],
        groups: 2,
        frequencies: 4,
        ..ScoreConfig::default()
    }
}

/// Periodic padding: shifting the configuration by two sites (the 2× pooling's period) along
/// either axis shifts the score the same way.
#[test]
fn the_score_commutes_with_even_lattice_shifts() {
    let ctx = Ctx::<f64>::new(Device::Cpu(common::cpu()));
    let mut store = ParamStore::new(&ctx);
    let (h, w) = (6, 8);
    let net = ScoreNet::new(&small(), [h, w], &mut store).unwrap();
    let sde = VeSde::new(25.0).unwrap();
    let x = normals(2 * h * w, 1, 0);
    let shift = |v: &[f64], dy: usize, dx: usize| -> Vec<f64> {
        let mut out = vec![0.0; v.len()];
        for (b, plane) in v.chunks(h * w).enumerate() {
            for i in 0..h {
                for j in 0..w {
                    out[b * h * w + ((i + dy) % h) * w + (j + dx) % w] = plane[i * w + j];
                }
            }
        }
        out
    };
    let s = net.evaluate(&store, &sde, &x, 0.3).unwrap();
    for (dy, dx) in [(2, 0), (0, 2), (4, 6)] {
        let s2 = net.evaluate(&store, &sde, &shift(&x, dy, dx), 0.3).unwrap();
        assert!(
            common::max_rel_diff(&s2, &shift(&s, dy, dx)) < 1e-12,
            "shift ({dy}, {dx})"
        );
    }
    // An odd shift is not a symmetry of the pooled level (the test can fail).
    let s1 = net.evaluate(&store, &sde, &shift(&x, 1, 0), 0.3).unwrap();
    assert!(common::max_rel_diff(&s1, &shift(&s, 1, 0)) > 1e-6);
}

/// Denoising score matching on Gaussian data (N(0, 0.5²) per site) lowers the loss, and the
/// trained score at small noise points back towards the data: ⟨x · s(x)⟩ < 0.
#[test]
fn denoising_score_matching_learns() {
    let ctx = Ctx::<f32>::new(Device::Cpu(common::cpu()));
    let mut store = ParamStore::new(&ctx);
    let (l, batch) = (8, 32);
    let net = ScoreNet::new(&small(), [l, l], &mut store).unwrap();
    let sde = VeSde::new(25.0).unwrap();
    let mut adam = Adam::new(3e-3);
    let loss_at = |store: &ParamStore<f32>, step: u32| -> f64 {
        let tape = Tape::new(store.ctx());
        tape.set_grad_enabled(false);
        let x0: Vec<f64> = normals(batch * l * l, 2, 10_000 + step)
            .iter()
            .map(|z| 0.5 * z)
            .collect();
        let t: Vec<f64> = (0..batch)
            .map(|b| 0.05 + 0.9 * (b as f64 + 0.5) / batch as f64)
            .collect();
        let z = normals(batch * l * l, 3, 10_000 + step);
        let loss = net.dsm_loss(&tape, store, &sde, (&x0, &t, &z)).unwrap();
        loss.value().to_f64().unwrap()[0]
    };
    let before: f64 = (0..4).map(|k| loss_at(&store, k)).sum::<f64>() / 4.0;
    for step in 0..150u32 {
        let x0: Vec<f64> = normals(batch * l * l, 2, step)
            .iter()
            .map(|z| 0.5 * z)
            .collect();
        let t: Vec<f64> = (0..batch)
            .map(|b| 1e-3 + (1.0 - 1e-3) * philox::uniform(5, b as u32, step, 13))
            .collect();
        let z = normals(batch * l * l, 3, step);
        let tape = Tape::new(&ctx);
        let loss = net.dsm_loss(&tape, &store, &sde, (&x0, &t, &z)).unwrap();
        let grads = tape.backward(&loss).unwrap();
        drop(loss);
        adam.step(&mut store, &grads).unwrap();
    }
    let after: f64 = (0..4).map(|k| loss_at(&store, k)).sum::<f64>() / 4.0;
    assert!(after < 0.8 * before, "DSM loss {before} → {after}");
    let x: Vec<f64> = normals(4 * l * l, 4, 0).iter().map(|z| 0.5 * z).collect();
    let s = net.evaluate(&store, &sde, &x, 0.05).unwrap();
    let xs: f64 = x.iter().zip(&s).map(|(a, b)| a * b).sum::<f64>() / x.len() as f64;
    // The exact score of the smeared data is −x/(0.25 + σ_t²): ⟨x s⟩ ≈ −0.25/(0.25 + σ_t²) ≈ −0.7.
    assert!(xs < -0.2, "⟨x s⟩ = {xs}");
}
