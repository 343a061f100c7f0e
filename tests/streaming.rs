//! Results stream to disk: a checkpoint costs the same at any point of a run, and the memory of
//! a run does not grow with the configurations it saves. (A test binary of its own, so that the
//! process's peak memory is this run's alone.)

mod common;

use common::fresh_dir as tmp;

use latticeml::hmc::{HmcParams, Integrator, Start};
use latticeml::io::outdir::Claim;
use latticeml::run::{run, RunConfig};
use latticeml::sampler::SamplerConfig;
use latticeml::theory::TheoryConfig;
use latticeml::{Device, Lattice};

fn config(dims: &[usize], chains: usize, trajectories: u64) -> RunConfig {
    RunConfig {
        theory: TheoryConfig::Phi4 {
            lattice: Lattice::new(dims).unwrap(),
            kappa: 0.2,
            lambda: 0.1,
        },
        chains,
        trajectories,
        therm: 10,
        sampler: SamplerConfig::Hmc(HmcParams {
            tau: 0.3,
            steps: 2,
            integrator: Integrator::Leapfrog,
            seed: 4,
        }),
        start: Start::Hot,
        save_every: 1,
        checkpoint_every: 100,
    }
}

/// Peak resident memory of this process so far, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

#[test]
fn checkpoints_and_memory_do_not_grow_with_the_run() {
    let dev = Device::Cpu(common::cpu());

    // The checkpoint holds the sampler's state and the files' lengths: the same size (up to the
    // counter's digits) after 200 trajectories as after 2000 (it used to hold the whole history and every saved field).
    let sizes: Vec<u64> = [200u64, 2000]
        .iter()
        .map(|&n| {
            let out = tmp(&format!("ck{n}"));
            run(
                &config(&[8, 8], 2, n),
                &dev,
                &out,
                Claim::Fresh,
                &mut |_, _| {},
            )
            .unwrap();
            std::fs::metadata(out.join("checkpoint")).unwrap().len()
        })
        .collect();
    // Only the digits of the trajectory counter in its header differ.
    assert!(sizes[1] - sizes[0] <= 2, "checkpoint sizes {sizes:?}");

    // 3000 saved batches of 4 × 32² f64 = 98 MB of configurations; the run's peak memory must not
    // come near that (the old code kept them all in memory, twice at each checkpoint).
    let before = peak_rss();
    let out = tmp("memory");
    let cfg = config(&[32, 32], 4, 3010);
    run(&cfg, &dev, &out, Claim::Fresh, &mut |_, _| {}).unwrap();
    let after = peak_rss();
    let bytes = std::fs::read(out.join("configs.npy")).unwrap();
    assert_eq!(bytes.len(), 128 + 3000 * 4 * 1024 * 8);
    let header = String::from_utf8_lossy(&bytes[..128]);
    assert!(header.contains("'shape': (3000, 4, 32, 32)"), "{header}");
    if let (Some(b), Some(a)) = (before, after) {
        // The final analysis reads the observables back (a few MB); configurations stay on disk.
        let grown = a.saturating_sub(b);
        assert!(grown < 30_000_000, "peak memory grew by {grown} bytes");
    }
}
