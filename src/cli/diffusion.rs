//! `latticeml diffusion train|sample`: score-based diffusion models of 2D φ⁴ configurations (the
//! library side is `latticeml::diffusion`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use latticeml::diffusion::job::{padding_of, train, Augment, DiffusionJob};
use latticeml::diffusion::sampler::{Divergence, DrawSettings};
use latticeml::diffusion::{Integrator, ScoreConfig};
use latticeml::hmc::{HmcParams, Integrator as HmcIntegrator, Start};
use latticeml::run::RunConfig;
use latticeml::sampler::SamplerConfig;
use latticeml::{Device, Error, Result};

use super::{run_and_print, with_progress, RunFileArgs};

#[derive(Subcommand)]
pub enum DiffusionWhat {
    /// Train a score network by denoising score matching on a run's configs.npy (the theory is
    /// read from the run's summary.json).
    Train(Box<DiffusionTrainArgs>),
    /// Draw configurations by the reverse process: the usual run files with the phi4 keys (raw
    /// draws of the model, not exact).
    Sample(Box<DiffusionSampleArgs>),
}

#[derive(Args)]
pub struct DiffusionTrainArgs {
    /// The run directory of `latticeml sample` (2D phi4) whose configs.npy is the data.
    #[arg(long)]
    data: PathBuf,
    /// Passes over the data in all (a resume trains up to this many).
    #[arg(long, default_value_t = 100)]
    epochs: u64,
    /// Samples per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Decay of the weights' moving average (the model's weights).
    #[arg(long, default_value_t = 0.999)]
    ema: f64,
    /// Channels of the two levels of the U-Net, comma-separated.
    #[arg(long, default_value = "16,32", value_delimiter = ',')]
    channels: Vec<usize>,
    /// Groups of the group normalisation.
    #[arg(long, default_value_t = 4)]
    groups: usize,
    /// The convolutions' boundary: periodic (the lattice's) or zero (the paper's).
    #[arg(long, default_value = "periodic")]
    padding: String,
    /// sigma of the variance-exploding SDE.
    #[arg(long, default_value_t = 25.0)]
    sigma: f64,
    /// Exact symmetries applied to every training sample at random: none, or shift and/or flip
    /// (lattice translations; the sign φ → −φ, for ensembles of the symmetric phase).
    #[arg(long, default_value = "shift")]
    augment: String,
    /// Seed of the initial weights, the shuffles, the times and the noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output (model) directory.
    #[arg(long, default_value = "latticeml-diffusion")]
    out: PathBuf,
    #[command(flatten)]
    claim: super::TrainClaimArgs,
}

#[derive(Args)]
pub struct DiffusionSampleArgs {
    /// The model directory of `latticeml diffusion train`.
    #[arg(long)]
    model: PathBuf,
    /// Configurations in all (spread over the chains).
    #[arg(long, default_value_t = 1024)]
    samples: u64,
    /// em (reverse SDE, h = 1), pc (em with Langevin corrector steps), ode (probability-flow ODE
    /// by Heun's fixed steps), rk45 (the ODE by adaptive Dormand–Prince), or h (Euler–Maruyama of
    /// the interpolating family at --h).
    #[arg(long, default_value = "em")]
    sampler: String,
    /// The interpolation h in [0, 1] of --sampler h.
    #[arg(long, default_value_t = 0.5)]
    h: f64,
    /// Steps of the reverse process (the initial step 1/steps of rk45).
    #[arg(long, default_value_t = 500)]
    steps: usize,
    /// Signal-to-noise ratio of pc's Langevin corrector.
    #[arg(long, default_value_t = 0.16)]
    snr: f64,
    /// Langevin corrector steps after every pc predictor step.
    #[arg(long, default_value_t = 1)]
    corrector_steps: usize,
    /// Local error tolerance (relative and absolute) of rk45.
    #[arg(long, default_value_t = 1e-5)]
    tol: f64,
    /// With --sampler ode or rk45: the draws' density by the score's divergence along the path
    /// and an independence Metropolis test (exact up to the ODE integrator's error with the
    /// exact divergence).
    #[arg(long)]
    mh: bool,
    /// The divergence of --mh: exact (one backward pass per site and ODE stage) or hutchinson
    /// (--probes backward passes; ln q is then an estimate and the correction approximate).
    /// Default: exact up to 16x16, hutchinson beyond.
    #[arg(long)]
    divergence: Option<String>,
    /// Probe vectors of --divergence hutchinson.
    #[arg(long, default_value_t = 4)]
    probes: usize,
    /// HMC trajectories after every independence step (with --sampler ode --mh): exact still
    /// (to the ODE's error in ln q), and they move chains the model's proposals leave stuck; the
    /// moved configurations' ln q comes from the ODE integrated forward.
    #[arg(long)]
    hmc_between: Option<usize>,
    /// Trajectory length of --hmc-between.
    #[arg(long, default_value_t = 1.0, requires = "hmc_between")]
    hmc_tau: f64,
    /// Molecular-dynamics steps per trajectory of --hmc-between (Omelyan 2MN).
    #[arg(long, default_value_t = 4, requires = "hmc_between")]
    hmc_md_steps: usize,
    /// Configurations drawn together (the chains of the run).
    #[arg(long, default_value_t = 64)]
    chains: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output directory.
    #[arg(long, default_value = "latticeml-out")]
    out: PathBuf,
    #[command(flatten)]
    files: RunFileArgs,
}

pub fn cmd_diffusion(what: DiffusionWhat) -> Result<()> {
    match what {
        DiffusionWhat::Train(a) => cmd_train(*a),
        DiffusionWhat::Sample(a) => cmd_sample(*a),
    }
}

fn cmd_train(a: DiffusionTrainArgs) -> Result<()> {
    let channels = match a.channels[..] {
        [c0, c1] => [c0, c1],
        _ => {
            return Err(Error::InvalidInput(format!(
                "--channels {:?}: give two channel counts, e.g. 16,32",
                a.channels
            )))
        }
    };
    let job = DiffusionJob {
        data: a.data.clone(),
        net: ScoreConfig {
            channels,
            groups: a.groups,
            padding: padding_of(&a.padding).ok_or_else(|| {
                Error::InvalidInput(format!("--padding {}: use periodic or zero", a.padding))
            })?,
            seed: a.seed,
            ..ScoreConfig::default()
        },
        sigma: a.sigma,
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        ema: a.ema,
        seed: a.seed,
        augment: Augment::parse(&a.augment)?,
    };
    job.validate()?;
    let o = with_progress(&a.device, job.epochs, "epochs", |d, p| {
        train(&job, d, &a.out, a.claim.claim(), p)
    })?;
    println!(
        "epoch {}: loss {:.5}  ({:.1} training samples/s)",
        job.epochs, o.loss, o.samples_per_second
    );
    Ok(())
}

/// The largest lattice whose exact divergence is the default.
const EXACT_DIVERGENCE_SITES: usize = 256;

fn cmd_sample(a: DiffusionSampleArgs) -> Result<()> {
    let integrator = match a.sampler.as_str() {
        "em" => Integrator::Euler { h: 1.0 },
        "pc" => Integrator::PredictorCorrector {
            snr: a.snr,
            corrector_steps: a.corrector_steps,
        },
        "ode" => Integrator::Heun,
        "rk45" => Integrator::Rk45 { tol: a.tol },
        "h" => Integrator::Euler { h: a.h },
        other => {
            return Err(Error::InvalidInput(format!(
                "--sampler {other}: use em, pc, ode, rk45 or h"
            )))
        }
    };
    let model = latticeml::diffusion::job::load(&a.model, &Device::Cpu(Default::default()))?;
    let sites = model.net.dims().iter().product::<usize>();
    let divergence = match a.divergence.as_deref() {
        Some("exact") => Divergence::Exact,
        Some("hutchinson") => Divergence::Hutchinson { probes: a.probes },
        None if sites <= EXACT_DIVERGENCE_SITES => Divergence::Exact,
        None => {
            if a.mh {
                eprintln!(
                    "note: {sites} sites: ln q by Hutchinson's estimator with {} probes, so the \
                     Metropolis correction is approximate (--divergence exact for the exact one)",
                    a.probes
                );
            }
            Divergence::Hutchinson { probes: a.probes }
        }
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "--divergence {other}: use exact or hutchinson"
            )))
        }
    };
    if a.chains == 0 || a.samples == 0 {
        return Err(Error::InvalidInput(
            "--samples and --chains must be at least 1".into(),
        ));
    }
    let cfg = RunConfig {
        theory: model.theory,
        chains: a.chains,
        // One update draws every chain afresh: nothing to thermalise but the start (the first
        // draw replaces it unconditionally, also with --mh).
        trajectories: a.samples.div_ceil(a.chains as u64) + 1,
        therm: 1,
        sampler: SamplerConfig::Diffusion {
            model: a.model.clone(),
            seed: a.seed,
            draws: DrawSettings {
                integrator,
                steps: a.steps,
                mh: a.mh,
                divergence,
            },
            hmc_between: a.hmc_between.map(|k| {
                let params = HmcParams {
                    tau: a.hmc_tau,
                    steps: a.hmc_md_steps,
                    integrator: HmcIntegrator::Omelyan,
                    seed: a.seed,
                };
                (params, k)
            }),
        },
        start: Start::from_name("hot")?,
        // Each update is an independent draw (or an independence step): keep them all.
        save_every: a.files.save_every_or(1),
        checkpoint_every: a.files.checkpoint_every,
    };
    run_and_print(&cfg, &a.device, &a.out, &a.files)?;
    let missing = latticeml::diffusion::report::write_histograms(&a.out, &model.data)?;
    if let Some(why) = missing {
        eprintln!(
            "note: {} shows the model's draws alone: the training run is not readable ({why})",
            latticeml::diffusion::report::HISTOGRAM_FILE
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct BenchDiffusionArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Lattice extents (2D, even, at least 6).
    #[arg(long, default_value = "32x32")]
    dims: String,
    /// Seconds to time training, and as many for score evaluations.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Configurations per score evaluation (the sampling batch).
    #[arg(long, default_value_t = 256)]
    sample_batch: usize,
    /// Sampler steps (score evaluations per draw) of the configurations-per-second figure.
    #[arg(long, default_value_t = 500)]
    steps: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn cmd_bench_diffusion(a: BenchDiffusionArgs) -> Result<()> {
    use latticeml::diffusion::bench::{DiffusionBench, TRAIN_BATCH};
    use latticeml::io::json::Json;
    if a.steps == 0 {
        return Err(Error::InvalidInput("--steps must be at least 1".into()));
    }
    let frame = super::NetBench {
        device: &a.device,
        dims: &a.dims,
        seconds: a.seconds,
        sample_batch: a.sample_batch,
        json: a.json,
    };
    let header = |d: &str| {
        format!(
            "score U-Net on {} (channels 16, 32, 4 groups, 16 frequencies, periodic), f32, {d}",
            a.dims
        )
    };
    super::net_bench(frame, header, |device, lattice| {
        let dims = match lattice.extents() {
            [h, w] => [*h, *w],
            _ => {
                return Err(Error::InvalidInput(format!(
                    "--dims {}: the score network is 2D",
                    a.dims
                )))
            }
        };
        let f = DiffusionBench::new(device, dims)?.run(a.seconds, a.sample_batch)?;
        let per_config = f.configurations_per_second(a.steps);
        Ok((
            vec![
                ("train_batch", Json::Num(TRAIN_BATCH as f64)),
                ("train_samples_per_second", Json::Num(f.train_samples_per_second)),
                ("sample_batch", Json::Num(f.sample_batch as f64)),
                ("evaluations_per_second", Json::Num(f.evaluations_per_second)),
                ("sampler_steps", Json::Num(a.steps as f64)),
                ("configurations_per_second", Json::Num(per_config)),
            ],
            format!(
                "  training:          {:>9.1} samples/s (batch {TRAIN_BATCH})\n  score evaluations: \
                 {:>9.1} configurations/s (batch {})\n  sampling:          {:>9.2} configurations/s \
                 ({} steps)",
                f.train_samples_per_second,
                f.evaluations_per_second,
                f.sample_batch,
                per_config,
                a.steps
            ),
        ))
    })
}
