//! `latticeml can train|sample|scan`: continuous-mixture autoregressive networks for the 2D XY
//! model (the library side is `latticeml::can`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use latticeml::can::data::DataTerm;
use latticeml::can::files::CanRecord;
use latticeml::can::job::{train, CanTrainJob};
use latticeml::can::symmetry::Symmetry;
use latticeml::can::train::CanTrainConfig;
use latticeml::can::CanConfig;
use latticeml::hmc::Start;
use latticeml::nn::layers::Activation;
use latticeml::run::RunConfig;
use latticeml::sampler::SamplerConfig;
use latticeml::theory::LocalAlgorithm;
use latticeml::{Error, Result};

use super::{claim_of, run_and_print, with_progress, RunFileArgs, TheoryArgs};

#[derive(Subcommand)]
pub enum CanWhat {
    /// Train a network for the 2D XY model by minimising the variational free energy
    /// (REINFORCE, beta annealing).
    Train(Box<CanTrainArgs>),
    /// Draw from a trained network: independence Metropolis with --mh (exact), raw draws
    /// otherwise; the usual run files plus acceptance, ess_per_sample and free_energy.
    Sample(CanSampleArgs),
    /// Train and sample across beta (warm-starting each from the previous), with the helicity
    /// modulus and vortex density against T and the line 2T/pi (KT transition).
    Scan(Box<CanScanArgs>),
}

/// The network and training flags shared by `train` and `scan`.
#[derive(Args, Clone)]
pub struct NetArgs {
    /// Hidden channels.
    #[arg(long, default_value_t = 16)]
    channels: usize,
    /// Residual masked (type B) layers after the first (type A) layer.
    #[arg(long, default_value_t = 2)]
    residual: usize,
    /// Kernel size (odd: centred; at most the lattice extent).
    #[arg(long, default_value_t = 5)]
    kernel: usize,
    /// Beta-mixture components per site.
    #[arg(long, default_value_t = 4)]
    components: usize,
    /// Activation: silu, tanh or leaky-relu.
    #[arg(long, default_value = "silu")]
    activation: String,
    /// Negative slope of the leaky ReLU.
    #[arg(long, default_value_t = 0.01)]
    slope: f64,
    /// Give every site the running means of the earlier sites' (cos, sin): over the whole past
    /// and over the row behind it (long-wavelength information beyond the kernels' window).
    #[arg(long)]
    running_means: bool,
    /// Samples per training step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Training steps in all (a resume trains up to this many).
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// a of the annealing beta_t = beta (1 - a^(t+1)); 0 = none.
    #[arg(long, default_value_t = 0.995)]
    anneal: f64,
    /// Log a row of train.csv (and write a checkpoint) every this many steps.
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    /// Seed of the initial weights and of every draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

impl NetArgs {
    fn job(&self, theory: latticeml::theory::TheoryConfig) -> Result<CanTrainJob> {
        let job = CanTrainJob {
            theory,
            net: CanConfig {
                channels: self.channels,
                residual: self.residual,
                kernel: self.kernel,
                components: self.components,
                activation: Activation::parse(&self.activation, self.slope)?,
                running_means: self.running_means,
                seed: self.seed,
            },
            train: CanTrainConfig {
                batch: self.batch,
                lr: self.lr,
                seed: self.seed,
                anneal: self.anneal,
            },
            data: None,
            init: None,
            steps: self.steps,
            log_every: self.log_every,
        };
        job.validate()?;
        Ok(job)
    }
}

#[derive(Args)]
pub struct CanTrainArgs {
    #[command(flatten)]
    couplings: TheoryArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Also minimise lambda KL(p||q) on the configurations of this run (`latticeml sample
    /// --theory xy` on the same lattice and beta; each draw moved by a random symmetry): the
    /// network then covers p, and an independence sampler does not stick on its rare draws.
    #[arg(long)]
    data: Option<PathBuf>,
    /// lambda of --data: the loss is KL(q||p) + lambda KL(p||q).
    #[arg(long, default_value_t = 1.0, requires = "data")]
    data_weight: f64,
    /// Start from the weights of this model directory (the same architecture and lattice), e.g.
    /// to fine-tune a network with --data; the step count and the annealing start afresh.
    #[arg(long, conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Output (model) directory.
    #[arg(long, default_value = "latticeml-can")]
    out: PathBuf,
    #[command(flatten)]
    claim: super::TrainClaimArgs,
}

#[derive(Args)]
pub struct CanSampleArgs {
    /// The model directory of `latticeml can train`.
    #[arg(long)]
    model: PathBuf,
    /// Measured samples in all (spread over the chains).
    #[arg(long, default_value_t = 10000)]
    samples: u64,
    /// Metropolis–Hastings test of every draw (exact); without it every draw is kept.
    #[arg(long)]
    mh: bool,
    /// Sweeps of --local after every independence step (exact still; the chains no longer
    /// stick after a draw of large weight).
    #[arg(long, requires = "mh")]
    local_between: Option<usize>,
    /// The local update of --local-between: metropolis or overrelax.
    #[arg(long, default_value = "metropolis", requires = "local_between")]
    local: String,
    /// Average the proposals over symmetries of the XY model: none, flip (θ → −θ), lattice (the
    /// torus's reflections and rotations) or all (both; 16 forward passes per draw on a square
    /// lattice). Still exact, and the network's own asymmetries (raster order, seam) average out.
    #[arg(long, default_value = "none")]
    symmetry: String,
    /// Independent Markov chains.
    #[arg(long, default_value_t = 16)]
    chains: usize,
    /// Updates per chain left out of the analysis.
    #[arg(long, default_value_t = 20)]
    therm: u64,
    /// Seed of the draws and the accept/reject decisions.
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

#[derive(Args)]
pub struct CanScanArgs {
    /// Lattice extents (2D, even).
    #[arg(long, default_value = "16x16")]
    dims: String,
    /// Couplings beta, as first:last:step or a comma-separated list.
    #[arg(long, default_value = "0.6:1.4:0.1")]
    betas: String,
    #[command(flatten)]
    net: NetArgs,
    /// Training steps at each later beta (warm-started) [default: --steps / 2].
    #[arg(long)]
    warm_steps: Option<u64>,
    /// Independence-Metropolis draws per beta.
    #[arg(long, default_value_t = 4096)]
    samples: u64,
    /// Chains of the independence Metropolis runs.
    #[arg(long, default_value_t = 64)]
    chains: usize,
    /// Average the proposals over symmetries: none, flip, lattice or all (as for `can sample`).
    #[arg(long, default_value = "none")]
    symmetry: String,
    /// Output directory.
    #[arg(long, default_value = "latticeml-can-scan")]
    out: PathBuf,
    /// Replace the results of an earlier command in --out.
    #[arg(long)]
    force: bool,
}

pub fn cmd_can(what: CanWhat) -> Result<()> {
    match what {
        CanWhat::Train(a) => cmd_train(*a),
        CanWhat::Sample(a) => cmd_sample(a),
        CanWhat::Scan(a) => cmd_scan(*a),
    }
}

fn cmd_train(a: CanTrainArgs) -> Result<()> {
    let mut job = a.net.job(a.couplings.config()?)?;
    job.init = a.init;
    if let Some(run) = a.data {
        // Absolute, so that a resume from another directory still finds it.
        let run = std::fs::canonicalize(&run)
            .map_err(|e| Error::InvalidInput(format!("--data {}: {e}", run.display())))?;
        job.data = Some(DataTerm {
            run,
            weight: a.data_weight,
        });
        job.validate()?;
    }
    let o = with_progress(&a.net.device, job.steps, "steps", |d, p| {
        train(&job, d, &a.out, a.claim.claim(), p)
    })?;
    println!(
        "step {}: beta {:.4}  F/V {:.5} (variance {:.3e})  ESS/sample {:.3}  acceptance {:.3}  \
         ({:.2} steps/s)",
        o.last.step,
        o.last.beta,
        o.last.free_energy,
        o.last.variance,
        o.last.ess,
        o.last.acceptance,
        o.steps_per_second
    );
    Ok(())
}

fn cmd_sample(a: CanSampleArgs) -> Result<()> {
    let record = CanRecord::load(&a.model)?;
    if a.chains == 0 || a.samples == 0 || a.therm == 0 {
        return Err(Error::InvalidInput(
            "--samples, --chains and --therm must be at least 1 (the first update replaces the \
             start by the network's draw)"
                .into(),
        ));
    }
    let cfg = RunConfig {
        theory: record.theory,
        chains: a.chains,
        trajectories: a.samples.div_ceil(a.chains as u64) + a.therm,
        therm: a.therm,
        sampler: SamplerConfig::Can {
            model: a.model.clone(),
            seed: a.seed,
            mh: a.mh,
            local_between: match a.local_between {
                Some(k) => Some((LocalAlgorithm::from_name(&a.local, None, None)?, k)),
                None => None,
            },
            symmetry: Symmetry::parse(&a.symmetry)?,
        },
        start: Start::from_name("hot")?,
        save_every: a.files.save_every_or(crate::SAVE_EVERY),
        checkpoint_every: a.files.checkpoint_every,
    };
    run_and_print(&cfg, &a.device, &a.out, &a.files)
}

fn cmd_scan(a: CanScanArgs) -> Result<()> {
    use latticeml::can::scan::{kt_crossing, parse_betas, scan, ScanConfig};
    let lattice = latticeml::lattice::Lattice::parse(&a.dims)?;
    let betas = parse_betas(&a.betas)?;
    let job = a.net.job(latticeml::theory::TheoryConfig::Xy {
        lattice: lattice.clone(),
        beta: betas[0],
    })?;
    let cfg = ScanConfig {
        lattice,
        warm_steps: a.warm_steps.unwrap_or((job.steps / 2).max(1)),
        betas,
        job,
        samples: a.samples,
        chains: a.chains,
        symmetry: Symmetry::parse(&a.symmetry)?,
    };
    cfg.validate()?;
    let claim = claim_of(false, a.force);
    let points = with_progress(
        &a.net.device,
        cfg.betas.len() as u64,
        "couplings",
        |d, p| scan(&cfg, d, &a.out, claim, p),
    )?;
    println!(
        "{:>7} {:>7} {:>22} {:>22} {:>7} {:>6}",
        "beta", "T", "helicity", "vortex density", "accept", "ESS"
    );
    for p in &points {
        println!(
            "{:>7.4} {:>7.4} {:>13.5} ± {:<7.5} {:>13.6} ± {:<7.6} {:>7.3} {:>6.3}",
            p.beta,
            1.0 / p.beta,
            p.helicity.value,
            p.helicity.error,
            p.vortex_density.value,
            p.vortex_density.error,
            p.acceptance,
            p.ess_per_sample
        );
    }
    match kt_crossing(&points) {
        Some((t, e)) => println!("helicity crosses 2T/pi at T = {t:.4} ± {e:.4}"),
        None => println!("helicity does not cross 2T/pi in this range of T"),
    }
    println!(
        "files in {}/: scan.csv scan.svg summary.json vortices_*.svg models/",
        a.out.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct BenchCanArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Lattice extents (2D, even).
    #[arg(long, default_value = "16x16")]
    dims: String,
    /// Seconds to time training, and as many for each way of generating.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Samples per batch of cached generation (naive generation uses at most 64).
    #[arg(long, default_value_t = 1024)]
    sample_batch: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn cmd_bench_can(a: BenchCanArgs) -> Result<()> {
    use latticeml::can::bench::{CanBench, TRAIN_BATCH};
    use latticeml::io::json::Json;
    let frame = super::NetBench {
        device: &a.device,
        dims: &a.dims,
        seconds: a.seconds,
        sample_batch: a.sample_batch,
        json: a.json,
    };
    let header = |d: &str| {
        format!(
            "CAN on xy {} (beta = 1): 16 channels, mask A + 2 residual mask-B layers 5×5, 4 Beta \
             components, f32, {d}",
            a.dims
        )
    };
    super::net_bench(frame, header, |device, lattice| {
        let f = CanBench::new(device, lattice)?.run(a.seconds, a.sample_batch)?;
        let saving = f.samples_per_second / f.naive_samples_per_second;
        Ok((
            vec![
                ("train_batch", Json::Num(TRAIN_BATCH as f64)),
                ("train_steps_per_second", Json::Num(f.train_steps_per_second)),
                ("grad_steps_per_second", Json::Num(f.grad_steps_per_second)),
                ("sample_batch", Json::Num(f.sample_batch as f64)),
                ("samples_per_second", Json::Num(f.samples_per_second)),
                ("naive_samples_per_second", Json::Num(f.naive_samples_per_second)),
                ("cached_over_naive", Json::Num(saving)),
            ],
            format!(
                "  training:          {:>9.2} steps/s (batch {TRAIN_BATCH})\n  gradient only:     \
                 {:>9.2} steps/s (fixed batch)\n  cached generation: {:>9.1} samples/s (batch {})\n  \
                 naive generation:  {:>9.1} samples/s ({saving:.0}× slower)",
                f.train_steps_per_second,
                f.grad_steps_per_second,
                f.samples_per_second,
                f.sample_batch,
                f.naive_samples_per_second,
            ),
        ))
    })
}
