//! The `latticeml` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

#[path = "cli/can.rs"]
mod can_cli;
#[path = "cli/diffusion.rs"]
mod diffusion_cli;
#[path = "cli/progress.rs"]
mod progress;
#[path = "cli/spectral.rs"]
mod spectral_cli;
#[path = "cli/vae.rs"]
mod vae_cli;

use latticeml::action::Phi4;
use latticeml::csd::{run_csd, CsdConfig};
use latticeml::hmc::{Hmc, HmcParams, Integrator, Start};
use latticeml::io::json::Json;
use latticeml::io::outdir::Claim;
use latticeml::nn::bench::{ConvStackBench, BATCH};
use latticeml::run::{run, RunConfig, RunOutcome};
use latticeml::sampler::SamplerConfig;
use latticeml::theory::{LocalAlgorithm, TheoryConfig};
use latticeml::{Device, Error, Lattice, Result};

#[derive(Parser)]
#[command(
    name = "latticeml",
    version,
    about = "Lattice field theory sampling with CUDA kernels and CPU twins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample phi^4, the anharmonic oscillator, the XY or the Ising model (defaults: HMC on 2D
    /// phi^4, 32x32); `hmc` is the same command.
    #[command(alias = "hmc")]
    Sample(HmcArgs),
    /// Spectral function from a Euclidean correlator (NN, MEM, Tikhonov, TSVD).
    Spectral(spectral_cli::SpectralArgs),
    /// Critical slowing down: tau_int and cost per independent sample of each algorithm
    /// against L, and the dynamical exponent z.
    Csd(CsdArgs),
    /// Normalizing flows: train one by the reverse KL divergence, then sample exactly with it
    /// (independence Metropolis).
    Flow {
        #[command(subcommand)]
        what: FlowWhat,
    },
    /// Continuous-mixture autoregressive networks for the 2D XY model: train by the variational
    /// free energy, sample exactly (independence Metropolis), scan beta across the KT transition.
    Can {
        #[command(subcommand)]
        what: can_cli::CanWhat,
    },
    /// Score-based diffusion models of 2D phi4: train on a run's configurations, draw by the
    /// reverse SDE, the probability-flow ODE or the h-interpolated family.
    Diffusion {
        #[command(subcommand)]
        what: diffusion_cli::DiffusionWhat,
    },
    /// A variational autoencoder of Anderson-impurity spectral functions: solve a library,
    /// train, encode and decode.
    Vae {
        #[command(subcommand)]
        what: vae_cli::VaeWhat,
    },
    /// Throughput benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum FlowWhat {
    /// Train an affine-coupling flow for phi4 (1D or 2D) or the oscillator.
    Train(Box<FlowTrainArgs>),
    /// Independence Metropolis over a trained flow: the usual run files plus acceptance and
    /// ess_per_sample.
    Sample(FlowSampleArgs),
}

#[derive(Args)]
struct FlowTrainArgs {
    #[command(flatten)]
    couplings: TheoryArgs,
    /// Coupling layers.
    #[arg(long, default_value_t = 16)]
    layers: usize,
    /// Hidden channel widths of each coupling's convolution network, comma-separated.
    #[arg(long, default_value = "8,8", value_delimiter = ',')]
    hidden: Vec<usize>,
    /// Convolution kernel size (odd).
    #[arg(long, default_value_t = 3)]
    kernel: usize,
    /// Activation between convolutions: leaky-relu, tanh or silu (tanh after the last).
    #[arg(long, default_value = "leaky-relu")]
    activation: String,
    /// Negative slope of the leaky ReLU.
    #[arg(long, default_value_t = 0.01)]
    slope: f64,
    /// Which sites each coupling freezes: checkerboard, or stripes (rows and columns in turn).
    #[arg(long, default_value = "checkerboard")]
    mask: String,
    /// Where the couplings act: real (the sites) or fourier (a 1D path's DFT modes, with
    /// mode-wise scales and a zero-mode map, for the double well).
    #[arg(long = "flow", default_value = "real")]
    basis: String,
    /// Samples per training step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Training steps in all (a resume trains up to this many).
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Log a row of train.csv (and write a checkpoint) every this many steps.
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    /// Seed of the initial weights and of every prior draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output (model) directory.
    #[arg(long, default_value = "latticeml-flow")]
    out: PathBuf,
    #[command(flatten)]
    claim: TrainClaimArgs,
}

#[derive(Args)]
struct FlowSampleArgs {
    /// The model directory of `latticeml flow train`.
    #[arg(long)]
    model: PathBuf,
    /// Measured samples in all (spread over the chains).
    #[arg(long, default_value_t = 10000)]
    samples: u64,
    /// Independent Markov chains.
    #[arg(long, default_value_t = 16)]
    chains: usize,
    /// Updates per chain left out of the analysis.
    #[arg(long, default_value_t = 20)]
    therm: u64,
    /// Seed of the proposals and the accept/reject decisions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// HMC trajectories (--tau, --steps, --integrator) after every independence step: exact
    /// still, and they reach what the flow rarely proposes.
    #[arg(long)]
    hmc_between: Option<usize>,
    #[command(flatten)]
    md: HmcFlags,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output directory.
    #[arg(long, default_value = "latticeml-out")]
    out: PathBuf,
    #[command(flatten)]
    files: RunFileArgs,
}

fn claim_of(resume: bool, force: bool) -> Claim {
    match (resume, force) {
        (true, _) => Claim::Resume,
        (false, true) => Claim::Force,
        (false, false) => Claim::Fresh,
    }
}

/// Runs `f` on the device `device` (printing why it was chosen) with a progress bar of `total`
/// `unit`s that `f` advances.
fn with_progress<R>(
    device: &str,
    total: u64,
    unit: &str,
    f: impl FnOnce(&Device, &mut dyn FnMut(u64, u64)) -> Result<R>,
) -> Result<R> {
    let (device, why) = Device::from_name(device)?;
    eprintln!("latticeml: {why}");
    let progress = progress::Progress::new(total, unit)?;
    let outcome = f(&device, &mut |d, _| progress.set_position(d));
    progress.finish_and_clear();
    outcome
}

/// The production run of `cfg` into `out` with the file flags `files`, and its table.
/// Chains listed one by one up to this many; beyond, their range and median.
const LISTED_CHAINS: usize = 16;

/// The acceptance line of the table: every chain's, or for many chains the lowest, the median
/// and the highest.
fn chain_acceptances(chains: &[latticeml::run::ChainStats]) -> String {
    let mut a: Vec<f64> = chains.iter().map(|c| c.acceptance).collect();
    if a.len() <= LISTED_CHAINS {
        let each: Vec<String> = a.iter().map(|x| format!("{x:.2}")).collect();
        return format!("acceptance per chain: {}", each.join(" "));
    }
    a.sort_by(f64::total_cmp);
    format!(
        "acceptance per chain ({} chains): lowest {:.2}, median {:.2}, highest {:.2}",
        a.len(),
        a[0],
        a[a.len() / 2],
        a[a.len() - 1]
    )
}

fn run_and_print(
    cfg: &RunConfig,
    device: &str,
    out: &std::path::Path,
    files: &RunFileArgs,
) -> Result<()> {
    cfg.validate()?;
    let outcome = with_progress(device, cfg.trajectories, "updates", |d, p| {
        run(cfg, d, out, files.claim(), p)
    })?;
    print_table(&outcome);
    Ok(())
}

fn cmd_flow_train(a: FlowTrainArgs) -> Result<()> {
    use latticeml::flow::job::{train, TrainJob};
    let job = TrainJob {
        theory: a.couplings.config()?,
        flow: latticeml::flow::FlowConfig {
            layers: a.layers,
            hidden: a.hidden.clone(),
            kernel: a.kernel,
            activation: latticeml::nn::layers::Activation::parse(&a.activation, a.slope)?,
            mask: latticeml::flow::MaskKind::parse(&a.mask)?,
            seed: a.seed,
            basis: latticeml::flow::FlowBasis::parse(&a.basis)?,
        },
        train: latticeml::flow::TrainConfig {
            batch: a.batch,
            lr: a.lr,
            seed: a.seed,
        },
        steps: a.steps,
        log_every: a.log_every,
    };
    job.flow.validate()?;
    job.train.validate()?;
    let o = with_progress(&a.device, a.steps, "steps", |d, p| {
        train(&job, d, &a.out, a.claim.claim(), p)
    })?;
    println!(
        "step {}: loss {:.4}  ESS/sample {:.3}  acceptance {:.3}  ({:.1} steps/s)",
        o.last.step, o.last.loss, o.last.ess, o.last.acceptance, o.steps_per_second
    );
    Ok(())
}

fn cmd_flow_sample(a: FlowSampleArgs) -> Result<()> {
    let record = latticeml::flow::nmcmc::FlowRecord::load(&a.model)?;
    if a.chains == 0 || a.samples == 0 || a.therm == 0 {
        return Err(Error::InvalidInput(
            "--samples, --chains and --therm must be at least 1 (the first update replaces the \
             start by the flow's proposal)"
                .into(),
        ));
    }
    let per_chain = a.samples.div_ceil(a.chains as u64);
    let cfg = RunConfig {
        theory: record.theory,
        chains: a.chains,
        trajectories: per_chain + a.therm,
        therm: a.therm,
        sampler: SamplerConfig::Flow {
            model: a.model.clone(),
            seed: a.seed,
            hmc_between: match a.hmc_between {
                Some(k) => Some((a.md.params(a.seed)?, k)),
                None if a.md.any() => {
                    return Err(Error::InvalidInput(
                        "--tau, --steps and --integrator set the HMC of --hmc-between K".into(),
                    ))
                }
                None => None,
            },
        },
        start: Start::from_name("hot")?,
        save_every: a.files.save_every_or(SAVE_EVERY),
        checkpoint_every: a.files.checkpoint_every,
    };
    run_and_print(&cfg, &a.device, &a.out, &a.files)
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Fused molecular-dynamics steps: site-steps/s and, on a GPU, effective vs copy bandwidth.
    Hmc(BenchHmcArgs),
    /// Whole-lattice updates of a sampler: site-updates/s and, on a GPU, effective vs copy
    /// bandwidth.
    Sample(BenchSampleArgs),
    /// Forward+backward of the reference periodic conv stack (batch 256, 1→16→16→2, 3×3, f32).
    Nn(BenchNnArgs),
    /// Flow training steps/s and sampling samples/s (phi4 at m2 = -4, lambda0 = 8; 16 couplings,
    /// conv 1→8→8→2, batch 64, f32).
    Flow(BenchFlowArgs),
    /// Autoregressive-network (CAN, 2D XY) training steps/s and samples/s of cached and naive
    /// generation.
    Can(can_cli::BenchCanArgs),
    /// Score-network (diffusion) training samples/s and score evaluations/s, hence
    /// configurations/s of an N-step sampler.
    Diffusion(diffusion_cli::BenchDiffusionArgs),
    /// Batched spectral reconstruction: Adam network-steps/s of B list networks trained
    /// together (as for bootstrap samples) at the benchmark paper's problem size.
    Spectral(spectral_cli::BenchSpectralArgs),
}

#[derive(Args)]
struct CsdArgs {
    /// phi4 (the only theory of the study for now).
    #[arg(long, default_value = "phi4")]
    theory: String,
    /// Hopping parameter.
    #[arg(long, default_value_t = 0.271, allow_hyphen_values = true)]
    kappa: f64,
    /// Quartic coupling (hopping form).
    #[arg(long, default_value_t = 0.022, allow_hyphen_values = true)]
    lambda: f64,
    /// Dimension d of the L^d lattices.
    #[arg(long, default_value_t = 2)]
    d: usize,
    /// Extents L, comma-separated.
    #[arg(long, default_value = "16,32,64", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Algorithms, comma-separated: hmc, fa-hmc, metropolis, cluster, wolff.
    #[arg(
        long,
        default_value = "hmc,fa-hmc,metropolis,cluster",
        value_delimiter = ','
    )]
    algorithms: Vec<String>,
    /// Wall-clock seconds of each (algorithm, L) run.
    #[arg(long, default_value_t = 20.0)]
    budget_seconds: f64,
    /// Chains per run.
    #[arg(long, default_value_t = 4)]
    chains: usize,
    /// Seed of all random numbers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// cpu (the cluster steps run on the CPU), auto, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output directory.
    #[arg(long, default_value = "csd-out")]
    out: PathBuf,
    /// Replace the results of an earlier command in --out.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct BenchSampleArgs {
    /// ising or xy.
    #[arg(long, default_value = "ising")]
    theory: String,
    /// metropolis, heatbath (ising) or overrelax (xy).
    #[arg(long, default_value = "metropolis")]
    algorithm: String,
    /// Lattice extents.
    #[arg(long, default_value = "4096x4096")]
    dims: String,
    /// Coupling [default: the critical point, 0.4406868 for ising and 1.12 for xy].
    #[arg(long, allow_hyphen_values = true)]
    beta: Option<f64>,
    /// Metropolis proposals per site per sweep.
    #[arg(long, default_value_t = 1)]
    hits: u32,
    /// Chains.
    #[arg(long, default_value_t = 1)]
    chains: usize,
    /// Sweeps to time (after one untimed sweep).
    #[arg(long, default_value_t = 20)]
    sweeps: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchFlowArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Lattice extents (2D).
    #[arg(long, default_value = "8x8")]
    dims: String,
    /// Seconds to time training, and as many to time sampling.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Samples per batch when timing sampling.
    #[arg(long, default_value_t = 1024)]
    sample_batch: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchNnArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Lattice sizes L (L×L), comma-separated.
    #[arg(long, default_value = "8,32,64", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Seconds to time each size.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The theory and its couplings, shared by every command that builds one.
#[derive(Args)]
struct TheoryArgs {
    /// phi4, oscillator, xy or ising.
    #[arg(long, default_value = "phi4")]
    theory: String,
    /// Lattice extents for phi4, xy and ising, e.g. 64x64 or 16x16x16x16.
    #[arg(long, default_value = "32x32")]
    dims: String,
    /// Hopping parameter (phi4) [default: 0.21].
    #[arg(long, allow_hyphen_values = true, conflicts_with_all = ["m2", "lambda0"])]
    kappa: Option<f64>,
    /// Quartic coupling (phi4 hopping form [default: 0.022], or the oscillator's lambda
    /// [default: 1]).
    #[arg(long, allow_hyphen_values = true, conflicts_with_all = ["m2", "lambda0"])]
    lambda: Option<f64>,
    /// phi4 in the standard form of the flow papers, S = sum[-2 sum_mu phi phi' + (2d + m2)
    /// phi^2 + lambda0 phi^4]: the bare mass squared (with --lambda0; converted to kappa, lambda).
    #[arg(long, allow_hyphen_values = true, requires = "lambda0")]
    m2: Option<f64>,
    /// phi4 standard form: the quartic coupling lambda0 (with --m2).
    #[arg(long, allow_hyphen_values = true, requires = "m2")]
    lambda0: Option<f64>,
    /// Oscillator mass.
    #[arg(long, default_value_t = 0.5, allow_hyphen_values = true)]
    m: f64,
    /// Oscillator well position.
    #[arg(long, default_value_t = 1.4, allow_hyphen_values = true)]
    f: f64,
    /// The oscillator's inverse temperature [default: 20]; the XY [default: 1.0] or Ising
    /// [default: 0.4] coupling.
    #[arg(long, allow_hyphen_values = true)]
    beta: Option<f64>,
    /// Oscillator time slices.
    #[arg(long, default_value_t = 100)]
    n: usize,
}

impl TheoryArgs {
    /// The theory these flags name.
    fn config(&self) -> Result<TheoryConfig> {
        let dims = || Lattice::parse(&self.dims);
        if (self.m2.is_some() || self.lambda0.is_some()) && self.theory != "phi4" {
            return Err(Error::InvalidInput(
                "--m2 and --lambda0 are couplings of phi4".into(),
            ));
        }
        Ok(match self.theory.as_str() {
            "phi4" => {
                let lattice = dims()?;
                let (kappa, lambda) = match (self.m2, self.lambda0) {
                    (Some(m2), Some(lambda0)) => latticeml::action::standard_to_hopping(
                        latticeml::action::StandardCouplings { m2, lambda0 },
                        lattice.dim(),
                    )?,
                    _ => (self.kappa.unwrap_or(0.21), self.lambda.unwrap_or(0.022)),
                };
                TheoryConfig::Phi4 {
                    lattice,
                    kappa,
                    lambda,
                }
            }
            "oscillator" => TheoryConfig::Oscillator {
                mass: self.m,
                lambda: self.lambda.unwrap_or(1.0),
                f: self.f,
                beta: self.beta.unwrap_or(20.0),
                n: self.n,
            },
            "xy" => TheoryConfig::Xy {
                lattice: dims()?,
                beta: self.beta.unwrap_or(1.0),
            },
            "ising" => TheoryConfig::Ising {
                lattice: dims()?,
                beta: self.beta.unwrap_or(0.4),
            },
            t => {
                return Err(Error::InvalidInput(format!(
                    "unknown theory '{t}': use phi4, oscillator, xy or ising"
                )))
            }
        })
    }
}

/// The molecular-dynamics flags of HMC-type updates.
#[derive(Args)]
struct HmcFlags {
    /// HMC: integration steps per trajectory [default: 4].
    #[arg(long)]
    steps: Option<usize>,
    /// HMC: trajectory length [default: 1.0].
    #[arg(long, allow_hyphen_values = true)]
    tau: Option<f64>,
    /// HMC: leapfrog, omelyan (2MN) or omelyan4 (fourth order) [default: omelyan].
    #[arg(long)]
    integrator: Option<String>,
}

impl HmcFlags {
    /// Whether any flag was given.
    fn any(&self) -> bool {
        self.steps.is_some() || self.tau.is_some() || self.integrator.is_some()
    }

    /// The parameters, defaults filled in.
    fn params(&self, seed: u64) -> Result<HmcParams> {
        Ok(HmcParams {
            tau: self.tau.unwrap_or(1.0),
            steps: self.steps.unwrap_or(4),
            integrator: Integrator::from_name(self.integrator.as_deref().unwrap_or("omelyan"))?,
            seed,
        })
    }
}

#[derive(Args)]
struct HmcArgs {
    #[command(flatten)]
    couplings: TheoryArgs,
    /// Trajectories per chain, thermalisation included.
    #[arg(long, default_value_t = 5000)]
    trajectories: u64,
    /// Thermalisation trajectories left out of the analysis.
    #[arg(long, default_value_t = 200)]
    therm: u64,
    #[command(flatten)]
    md: HmcFlags,
    /// With --algorithm flow: HMC trajectories (--tau, --steps, --integrator) after every
    /// independence step.
    #[arg(long)]
    hmc_between: Option<usize>,
    /// hmc; fa-hmc (Fourier-accelerated, mass kernel k^2 + --fa-mass); mala (Metropolis-adjusted Langevin, exact) or langevin (unadjusted Euler–Maruyama,
    /// biased at O(epsilon)), which take --epsilon instead of --tau, --steps and --integrator;
    /// metropolis (checkerboard, --hits per site), overrelax (xy), heatbath (ising), or cluster
    /// (Swendsen–Wang) and wolff: a Metropolis sweep then embedded-Ising clusters (phi4, oscillator).
    /// [default: hmc, or metropolis for xy and ising]
    #[arg(long)]
    algorithm: Option<String>,
    /// Metropolis proposals per site per sweep [default: 1].
    #[arg(long)]
    hits: Option<u32>,
    /// Wolff clusters per update [default: 4].
    #[arg(long)]
    clusters: Option<u32>,
    /// fa-hmc: the mass m2 of the kernel k^2 + m2 [default: 4 sin^2(pi/L), the smallest
    /// nonzero k^2].
    #[arg(long, allow_hyphen_values = true)]
    fa_mass: Option<f64>,
    /// flow: the directory of a trained flow (`latticeml flow train`); can: of a trained
    /// autoregressive network (`latticeml can train`).
    #[arg(long = "model")]
    flow_model: Option<PathBuf>,
    /// Langevin time step of mala and langevin [default: 0.01].
    #[arg(long, allow_hyphen_values = true)]
    epsilon: Option<f64>,
    /// Independent chains run together.
    #[arg(long, default_value_t = 4)]
    chains: usize,
    /// Under `mpirun` (the `mpi` build): cut every chain's lattice over the ranks, this many
    /// ranks per axis (e.g. 2x2; the product is the number of ranks), on the CPU, with hmc;
    /// the files are bit-identical to one process's.
    #[arg(long)]
    decompose: Option<String>,
    /// Seed of all random numbers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output directory.
    #[arg(long, default_value = "latticeml-out")]
    out: PathBuf,
    /// How the chains start: hot (unit Gaussian), cold (φ = 0) or ordered (the uniform
    /// minimum of the action: the broken phase, or the oscillator's right well).
    #[arg(long, default_value = "hot")]
    start: String,
    #[command(flatten)]
    files: RunFileArgs,
}

/// Updates between kept configurations unless `--save-every` says otherwise.
const SAVE_EVERY: u64 = 10;

/// How a production run writes its files, shared by `sample` and `flow sample`.
#[derive(Args)]
struct RunFileArgs {
    /// Keep a configuration every K updates (trajectories, sweeps) in configs.npy [default: 10; 1
    /// for diffusion sample, whose updates are independent draws].
    #[arg(long)]
    save_every: Option<u64>,
    /// Write the checkpoint and files every K updates.
    #[arg(long, default_value_t = 250)]
    checkpoint_every: u64,
    /// Continue the run stored in --out (same parameters; the number of updates may grow).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Replace the results of an earlier command in --out.
    #[arg(long)]
    force: bool,
}

impl RunFileArgs {
    /// `--save-every`, or the command's default.
    fn save_every_or(&self, default: u64) -> u64 {
        self.save_every.unwrap_or(default)
    }

    fn claim(&self) -> Claim {
        claim_of(self.resume, self.force)
    }
}

/// How a training command treats an occupied model directory (`flow|can|diffusion train`).
#[derive(Args)]
struct TrainClaimArgs {
    /// Continue the training stored in --out (same parameters; the steps or epochs may grow).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Replace the results of an earlier command in --out.
    #[arg(long)]
    force: bool,
}

impl TrainClaimArgs {
    fn claim(&self) -> Claim {
        claim_of(self.resume, self.force)
    }
}

#[derive(Args)]
struct BenchHmcArgs {
    /// Lattice extents.
    #[arg(long, default_value = "256x256")]
    dims: String,
    /// Chains.
    #[arg(long, default_value_t = 1)]
    chains: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Fused MD updates to time.
    #[arg(long, default_value_t = 200)]
    updates: usize,
    /// unit (plain HMC) or fourier (Fourier acceleration, CPU: also reports the FFT share).
    #[arg(long, default_value = "unit")]
    mass: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sample(a) => cmd_sample(a),
        Command::Spectral(a) => spectral_cli::cmd_spectral(a),
        Command::Csd(a) => cmd_csd(a),
        Command::Flow {
            what: FlowWhat::Train(a),
        } => cmd_flow_train(*a),
        Command::Flow {
            what: FlowWhat::Sample(a),
        } => cmd_flow_sample(a),
        Command::Can { what } => can_cli::cmd_can(what),
        Command::Diffusion { what } => diffusion_cli::cmd_diffusion(what),
        Command::Vae { what } => vae_cli::cmd_vae(what),
        Command::Bench {
            what: BenchWhat::Hmc(a),
        } => cmd_bench_hmc(a),
        Command::Bench {
            what: BenchWhat::Nn(a),
        } => cmd_bench_nn(a),
        Command::Bench {
            what: BenchWhat::Sample(a),
        } => cmd_bench_sample(a),
        Command::Bench {
            what: BenchWhat::Flow(a),
        } => cmd_bench_flow(a),
        Command::Bench {
            what: BenchWhat::Can(a),
        } => can_cli::cmd_bench_can(a),
        Command::Bench {
            what: BenchWhat::Diffusion(a),
        } => diffusion_cli::cmd_bench_diffusion(a),
        Command::Bench {
            what: BenchWhat::Spectral(a),
        } => spectral_cli::cmd_bench_spectral(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The sampler of `--algorithm` with its parameters; a parameter of another algorithm is refused
/// rather than silently ignored.
fn sampler_config(a: &HmcArgs, lattice: &Lattice) -> Result<SamplerConfig> {
    let hmc_flags = a.md.any();
    let algorithm = a
        .algorithm
        .as_deref()
        .unwrap_or(match a.couplings.theory.as_str() {
            "xy" | "ising" => "metropolis",
            _ => "hmc",
        });
    let refuse = |what: &str| {
        Err(Error::InvalidInput(format!(
            "--algorithm {algorithm} takes {what}"
        )))
    };
    if a.hits.is_some() && !matches!(algorithm, "metropolis" | "cluster" | "wolff") {
        return refuse("no --hits (metropolis, cluster and wolff do)");
    }
    if a.clusters.is_some() && algorithm != "wolff" {
        return refuse("no --clusters (only wolff does)");
    }
    if a.fa_mass.is_some() && algorithm != "fa-hmc" {
        return refuse("no --fa-mass (only fa-hmc does)");
    }
    if a.flow_model.is_some() && !matches!(algorithm, "flow" | "can") {
        return refuse("no --model (only flow and can do)");
    }
    if a.hmc_between.is_some() && algorithm != "flow" {
        return refuse("no --hmc-between (only flow does)");
    }
    let hmc_params = || a.md.params(a.seed);
    let local = |algorithm| {
        if hmc_flags || a.epsilon.is_some() {
            refuse("no --tau, --steps, --integrator or --epsilon")
        } else {
            Ok(SamplerConfig::Local {
                algorithm,
                seed: a.seed,
            })
        }
    };
    match algorithm {
        "hmc" | "fa-hmc" if a.epsilon.is_some() => {
            refuse("--tau, --steps and --integrator, not --epsilon")
        }
        "hmc" => Ok(SamplerConfig::Hmc(hmc_params()?)),
        "fa-hmc" => Ok(SamplerConfig::FaHmc {
            params: hmc_params()?,
            m2: a
                .fa_mass
                .unwrap_or_else(|| latticeml::hmc::fourier::default_mass(lattice)),
        }),
        "mala" | "langevin" if hmc_flags => refuse("--epsilon, not --tau, --steps or --integrator"),
        "mala" => Ok(SamplerConfig::Mala {
            epsilon: a.epsilon.unwrap_or(0.01),
            seed: a.seed,
        }),
        "langevin" => Ok(SamplerConfig::Langevin {
            epsilon: a.epsilon.unwrap_or(0.01),
            seed: a.seed,
        }),
        "flow" if (hmc_flags && a.hmc_between.is_none()) || a.epsilon.is_some() => refuse(
            "--model (and --tau, --steps, --integrator only with --hmc-between), not --epsilon",
        ),
        "flow" => Ok(SamplerConfig::Flow {
            model: a.flow_model.clone().ok_or_else(|| {
                Error::InvalidInput(
                    "--algorithm flow needs --model DIR (a flow trained by `latticeml flow train`)"
                        .into(),
                )
            })?,
            seed: a.seed,
            hmc_between: match a.hmc_between {
                Some(k) => Some((hmc_params()?, k)),
                None => None,
            },
        }),
        "can" if hmc_flags || a.epsilon.is_some() => refuse("--model only"),
        "can" => Ok(SamplerConfig::Can {
            model: a.flow_model.clone().ok_or_else(|| {
                Error::InvalidInput(
                    "--algorithm can needs --model DIR (a network trained by `latticeml can \
                     train`)"
                        .into(),
                )
            })?,
            seed: a.seed,
            mh: true,
            local_between: None,
            symmetry: latticeml::can::symmetry::Symmetry::None,
        }),
        "metropolis" | "overrelax" | "heatbath" | "cluster" | "wolff" => {
            local(LocalAlgorithm::from_name(algorithm, a.hits, a.clusters)?)
        }
        other => Err(Error::InvalidInput(format!(
            "unknown algorithm '{other}': use hmc, fa-hmc, mala, langevin, flow, can, \
             metropolis, overrelax, heatbath, cluster or wolff"
        ))),
    }
}

fn run_config(a: &HmcArgs) -> Result<RunConfig> {
    let theory = a.couplings.config()?;
    let built = theory.build()?;
    let cfg = RunConfig {
        theory,
        chains: a.chains,
        trajectories: a.trajectories,
        therm: a.therm,
        sampler: sampler_config(a, built.lattice())?,
        start: Start::from_name(&a.start)?,
        save_every: a.files.save_every_or(SAVE_EVERY),
        checkpoint_every: a.files.checkpoint_every,
    };
    cfg.validate()?;
    latticeml::theory::check_offers(built.as_ref(), cfg.sampler.name())?;
    Ok(cfg)
}

/// `sample` under `mpirun -np N` (the `mpi` feature): the chains spread over the ranks, rank 0
/// writing the files and printing; a single rank runs as without MPI.
#[cfg(feature = "mpi")]
fn cmd_sample(a: HmcArgs) -> Result<()> {
    use latticeml::ensemble::{mpi::MpiTeam, Team};
    let (_universe, team) = MpiTeam::init()?;
    if let Some(grid) = &a.decompose {
        return sample_decomposed(&a, grid, team);
    }
    if team.size() == 1 {
        return sample_alone(a);
    }
    let cfg = run_config(&a)?;
    let (local, locals) = team.node_local();
    let (device, why) = Device::for_local_rank(&a.device, local, locals)?;
    eprintln!("latticeml rank {}/{}: {why}", team.rank(), team.size());
    let mut bar = trajectory_bar(cfg.trajectories)?;
    if team.rank() != 0 {
        bar.hide();
    }
    let outcome = latticeml::run::run_team(
        &cfg,
        &device,
        &a.out,
        a.files.claim(),
        &mut |done, _| bar.set_position(done),
        &team,
    );
    bar.finish_and_clear();
    if let Some(outcome) = outcome? {
        print_table(&outcome);
    }
    Ok(())
}

/// `sample --decompose GRID` under `mpirun`: every rank runs every chain on its box.
#[cfg(feature = "mpi")]
fn sample_decomposed(
    a: &HmcArgs,
    grid: &str,
    team: latticeml::ensemble::mpi::MpiTeam,
) -> Result<()> {
    use latticeml::ensemble::Team;
    let grid = latticeml::domain::Decomposition::parse_grid(grid)?;
    let cfg = run_config(a)?;
    // A grid that does not fit the lattice or the ranks is refused before anything is said.
    let lattice = cfg.theory.build()?.lattice().clone();
    latticeml::domain::Decomposition::new(&lattice, &grid, team.rank(), team.size())?;
    let root = team.rank() == 0;
    // One GPU per rank where there are GPUs; else the ranks on a node share its cores
    // (LATTICEML_THREADS overrides). Either way the trajectories are one process's.
    let (local, locals) = team.node_local();
    let (device, why) = Device::for_local_rank(&a.device, local, locals)?;
    if root {
        eprintln!(
            "latticeml: {} ranks, lattice cut {}; {why}",
            team.size(),
            latticeml::domain::grid_name(&grid)
        );
    }
    let mut bar = trajectory_bar(cfg.trajectories)?;
    if !root {
        bar.hide();
    }
    let outcome = latticeml::run::run_decomposed(
        &cfg,
        &device,
        &a.out,
        a.files.claim(),
        &mut |done, _| bar.set_position(done),
        std::sync::Arc::new(team),
        &grid,
    );
    bar.finish_and_clear();
    if let Some(outcome) = outcome? {
        print_table(&outcome);
    }
    Ok(())
}

#[cfg(not(feature = "mpi"))]
fn cmd_sample(a: HmcArgs) -> Result<()> {
    if let Some(grid) = &a.decompose {
        let grid = latticeml::domain::Decomposition::parse_grid(grid)?;
        if grid.iter().product::<usize>() != 1 {
            return Err(Error::InvalidInput(format!(
                "--decompose {} needs MPI: build with `cargo build --release --features mpi` and \
                 start `mpirun -np {} latticeml sample ...`",
                latticeml::domain::grid_name(&grid),
                grid.iter().product::<usize>()
            )));
        }
    }
    sample_alone(a)
}

/// The progress bar of a run of `total` trajectories.
fn trajectory_bar(total: u64) -> Result<progress::Progress> {
    progress::Progress::new(total, "trajectories")
}

fn sample_alone(a: HmcArgs) -> Result<()> {
    let cfg = run_config(&a)?;
    let (device, why) = Device::from_name(&a.device)?;
    eprintln!("latticeml: {why}");
    let bar = trajectory_bar(cfg.trajectories)?;
    let outcome = run(&cfg, &device, &a.out, a.files.claim(), &mut |done, _| {
        bar.set_position(done)
    });
    bar.finish_and_clear();
    let outcome = outcome?;
    print_table(&outcome);
    Ok(())
}

fn cmd_csd(a: CsdArgs) -> Result<()> {
    if a.theory != "phi4" {
        return Err(Error::InvalidInput(format!(
            "csd studies --theory phi4, not '{}'",
            a.theory
        )));
    }
    let cfg = CsdConfig {
        kappa: a.kappa,
        lambda: a.lambda,
        dim: a.d,
        sizes: a.sizes.clone(),
        algorithms: a.algorithms.clone(),
        budget_seconds: a.budget_seconds,
        chains: a.chains,
        seed: a.seed,
    };
    cfg.validate()?;
    let (device, why) = Device::from_name(&a.device)?;
    eprintln!("latticeml: {why}");
    let claim = if a.force { Claim::Force } else { Claim::Fresh };
    let runs = cfg.sizes.len() * cfg.algorithms.len();
    eprintln!(
        "{runs} runs of {} s each: about {:.0} s in all",
        cfg.budget_seconds,
        runs as f64 * cfg.budget_seconds
    );
    println!(
        "{:<11} {:>5} {:>16} {:>16} {:>12} {:>14}",
        "algorithm", "L", "tau_int(chi2)", "tau_int(absM)", "s/update", "s/indep chi2"
    );
    let outcome = run_csd(&cfg, &device, &a.out, claim, &mut |r| {
        let t = |i: usize| {
            format!(
                "{:.2} ± {:.2}",
                r.tau[i].1.tau_int, r.tau[i].1.tau_int_error
            )
        };
        println!(
            "{:<11} {:>5} {:>16} {:>16} {:>12.3e} {:>14.3e}",
            r.algorithm,
            r.l,
            t(0),
            t(1),
            r.seconds_per_update,
            r.cost("chi2")
        );
    })?;
    for (alg, obs, f) in outcome.z.iter().filter(|(_, o, _)| *o == "chi2") {
        println!(
            "z({alg}, {obs}) = {:.3} ± {:.3}   (chi2/dof {:.2})",
            f.z, f.z_error, f.chi2_dof
        );
    }
    println!(
        "files in {}/: csd.csv summary.json csd.svg",
        a.out.display()
    );
    Ok(())
}

fn print_table(o: &RunOutcome) {
    println!(
        "{:<16} {:>26} {:>14}",
        "observable", "value ± error", "tau_int"
    );
    for (name, e) in &o.observables {
        println!(
            "{:<16} {:>26} {:>14}{}",
            name,
            format!("{:.6} ± {:.6}", e.value, e.error),
            format!("{:.2} ± {:.2}", e.tau_int, e.tau_int_error),
            e.note.map_or(String::new(), |n| format!("   ({n})"))
        );
    }
    let m: Vec<String> = o
        .correlator
        .iter()
        .filter_map(|p| {
            p.m_eff
                .map(|e| format!("{}:{:.3}({:.0})", p.t, e.value, e.error * 1e3))
        })
        .take(4)
        .collect();
    println!("effective mass   {}", m.join("  "));
    if o.global_proposals {
        println!(
            "acceptance {:.3}   <exp(-dH)> = {:.4} ± {:.4}   <dH> = {:.2e} ± {:.1e}   rms dH = {:.3}",
            o.acceptance,
            o.exp_minus_dh.value,
            o.exp_minus_dh.error,
            o.delta_h.value,
            o.delta_h.error,
            o.delta_h_rms
        );
        if o.acceptance < 0.3 {
            println!("warning: low acceptance; {}", o.low_acceptance_advice);
        }
    } else {
        println!("acceptance {:.3} (per site update)", o.acceptance);
    }
    println!(
        "{} updates   {:.3e} site-updates/s on {}",
        o.trajectories, o.site_steps_per_second, o.device
    );
    println!("{}", chain_acceptances(&o.chains));
    let worst = o
        .replicas
        .iter()
        .filter_map(|(n, r)| r.map(|r| (n, r)))
        .min_by(|a, b| a.1.q.total_cmp(&b.1.q));
    if let Some((name, r)) = worst {
        println!(
            "replica consistency: lowest Q = {:.3} ({name}: chi2 = {:.1} for {} dof)",
            r.q, r.chi2, r.dof
        );
        if r.q < 0.01 {
            println!("warning: the chains disagree on {name}: thermalise longer (--therm), or a chain is stuck in one sector");
        }
    }
    print_drift(&o.drift);
    println!(
        "files in {}/: observables.csv configs.npy slices.npy correlator.csv summary.json checkpoint",
        o.out.display()
    );
}

/// The largest start-up drift of any chain and observable, and a warning when it is alarming.
fn print_drift(drift: &[(&str, Option<(usize, latticeml::analysis::DriftCheck)>)]) {
    let worst = drift
        .iter()
        .filter_map(|(n, d)| d.map(|d| (n, d)))
        .max_by(|a, b| a.1 .1.z.abs().total_cmp(&b.1 .1.z.abs()));
    let Some((name, (chain, d))) = worst else {
        return;
    };
    println!(
        "start-up drift: largest |z| = {:.1} ({name}, chain {chain}: its first {} measurements against its last {})",
        d.z.abs(),
        d.head,
        d.tail
    );
    if d.alarming() {
        println!(
            "warning: chain {chain} had not thermalised (or is stuck): the mean of {name} over its first \
             tenth of measurements is {:.1} sigma from its second half's, and it settled only after \
             {} measurements; thermalise longer (--therm larger by {} or more) or start cold or \
             ordered (--start)",
            d.z.abs(),
            d.settled,
            2 * d.settled
        );
    }
}

/// Bytes the fused f64 update must move per site: read φ and p, write p and φ_new.
const BYTES_PER_SITE_STEP: f64 = 32.0;

fn cmd_bench_hmc(a: BenchHmcArgs) -> Result<()> {
    let lattice = Lattice::parse(&a.dims)?;
    let (device, why) = Device::from_name(&a.device)?;
    if !a.json {
        eprintln!("latticeml: {why}");
    }
    if a.updates < 2 {
        return Err(Error::InvalidInput(format!(
            "--updates {} must be at least 2 (a trajectory of n steps is n + 1 fused updates)",
            a.updates
        )));
    }
    let fourier = match a.mass.as_str() {
        "unit" => false,
        "fourier" => true,
        other => {
            return Err(Error::InvalidInput(format!(
                "--mass {other}: use unit or fourier"
            )))
        }
    };
    let time_integration = |with_fourier: bool| -> Result<(f64, u64)> {
        let action = Arc::new(Phi4::new(lattice.clone(), 0.15, 0.022)?);
        let steps = a.updates - 1;
        let params = HmcParams {
            tau: 0.02 * steps as f64,
            steps,
            integrator: Integrator::Leapfrog,
            seed: 7,
        };
        let mut hmc = Hmc::new(action, a.chains, params, &device)?;
        if with_fourier {
            hmc.set_fourier_mass(latticeml::hmc::fourier::default_mass(&lattice))?;
        }
        hmc.trajectory()?; // warm-up: compiles kernels, sets momenta
        hmc.synchronize()?;
        let start = Instant::now();
        hmc.integrate()?;
        hmc.synchronize()?;
        Ok((
            start.elapsed().as_secs_f64(),
            hmc.site_updates_per_trajectory(),
        ))
    };
    let (secs, updates) = time_integration(fourier)?;
    let rate = updates as f64 / secs;
    // The filter's share of the trajectory: the time beyond that of the same plain update.
    let fft_share = if fourier {
        Some(1.0 - time_integration(false)?.0 / secs)
    } else {
        None
    };
    let mut fields = vec![
        ("device", Json::Str(device.describe())),
        ("dims", Json::Str(lattice.label())),
        ("chains", Json::Num(a.chains as f64)),
        ("mass", Json::Str(a.mass.clone())),
        ("site_steps_per_second", Json::Num(rate)),
    ];
    if let Some(share) = fft_share {
        fields.push(("fft_share", Json::Num(share)));
    }
    if let Device::Cuda(d) = &device {
        let field_bytes = a.chains * lattice.volume() * 8;
        let copy = d.copy_bandwidth(field_bytes.max(1 << 28), 20)?;
        let eff = rate * BYTES_PER_SITE_STEP / 1e9;
        fields.push(("effective_gb_per_second", Json::Num(eff)));
        fields.push(("copy_gb_per_second", Json::Num(copy)));
        fields.push(("fraction_of_copy", Json::Num(eff / copy)));
    }
    if a.json {
        print!("{}", Json::obj(fields).pretty());
    } else {
        println!(
            "fused MD step ({} mass), {} x {} chains, f64, {}",
            a.mass,
            lattice.label(),
            a.chains,
            device.describe()
        );
        println!("  {rate:.3e} site-steps/s");
        if let Some(share) = fft_share {
            println!(
                "  Fourier filter (one real FFT pair per update, threads over rows and lines): {:.0}% of the time",
                100.0 * share
            );
        }
        if let Device::Cuda(_) = &device {
            let get = |k: &str| {
                fields.iter().find(|(n, _)| *n == k).and_then(|(_, v)| {
                    if let Json::Num(x) = v {
                        Some(*x)
                    } else {
                        None
                    }
                })
            };
            println!(
                "  effective {:.1} GB/s ({BYTES_PER_SITE_STEP} B/site-step) vs device-to-device copy {:.1} GB/s: {:.0}%",
                get("effective_gb_per_second").unwrap_or(f64::NAN),
                get("copy_gb_per_second").unwrap_or(f64::NAN),
                100.0 * get("fraction_of_copy").unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// Minimal DRAM traffic of one site update, for the bandwidth figure: a colour pass reads and
/// writes its own sites and reads the other colour once. Ising packs 64 spins in 8 bytes.
fn bytes_per_site_update(theory: &str) -> f64 {
    match theory {
        "ising" => 24.0 / 64.0,
        _ => 24.0,
    }
}

fn cmd_bench_sample(a: BenchSampleArgs) -> Result<()> {
    let lattice = Lattice::parse(&a.dims)?;
    let theory = match a.theory.as_str() {
        "ising" => TheoryConfig::Ising {
            lattice: lattice.clone(),
            beta: a.beta.unwrap_or(0.440_686_8),
        },
        "xy" => TheoryConfig::Xy {
            lattice: lattice.clone(),
            beta: a.beta.unwrap_or(1.12),
        },
        t => {
            return Err(Error::InvalidInput(format!(
                "bench sample runs --theory ising or xy, not '{t}'"
            )))
        }
    }
    .build()?;
    let algorithm = match a.algorithm.as_str() {
        "metropolis" => LocalAlgorithm::Metropolis { hits: a.hits },
        "heatbath" => LocalAlgorithm::Heatbath,
        "overrelax" => LocalAlgorithm::Overrelax,
        other => {
            return Err(Error::InvalidInput(format!(
                "bench sample times metropolis, heatbath or overrelax, not '{other}'"
            )))
        }
    };
    if a.sweeps == 0 || a.chains == 0 {
        return Err(Error::InvalidInput(
            "--sweeps and --chains must be at least 1".into(),
        ));
    }
    let cfg = SamplerConfig::Local { algorithm, seed: 7 };
    cfg.validate()?;
    latticeml::theory::check_offers(theory.as_ref(), cfg.name())?;
    let (device, why) = Device::from_name(&a.device)?;
    if !a.json {
        eprintln!("latticeml: {why}");
    }
    let mut sampler = cfg.build(theory.clone(), a.chains, &device)?;
    sampler.set_fields(&theory.start_fields(Start::Hot, 0..a.chains, 7))?;
    sampler.update()?; // warm-up: compiles kernels
    let start = Instant::now();
    for _ in 0..a.sweeps {
        sampler.update()?; // returns the acceptance counts: synchronises
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = (sampler.site_updates() * a.sweeps) as f64 / secs;
    let mut fields = vec![
        ("device", Json::Str(device.describe())),
        ("theory", Json::Str(a.theory.clone())),
        ("algorithm", Json::Str(algorithm.name().into())),
        ("dims", Json::Str(lattice.label())),
        ("chains", Json::Num(a.chains as f64)),
        ("site_updates_per_second", Json::Num(rate)),
        ("updates_per_ns", Json::Num(rate * 1e-9)),
    ];
    let mut bandwidth = String::new();
    if let Device::Cuda(d) = &device {
        let bytes = bytes_per_site_update(&a.theory);
        let copy = d.copy_bandwidth((lattice.volume() * a.chains * 8).max(1 << 28), 20)?;
        let eff = rate * bytes / 1e9;
        fields.push(("effective_gb_per_second", Json::Num(eff)));
        fields.push(("copy_gb_per_second", Json::Num(copy)));
        fields.push(("fraction_of_copy", Json::Num(eff / copy)));
        bandwidth = format!(
            "\n  effective {eff:.1} GB/s ({bytes} B/site-update) vs device-to-device copy {copy:.1} GB/s: {:.0}%",
            100.0 * eff / copy
        );
    }
    if a.json {
        print!("{}", Json::obj(fields).pretty());
    } else {
        println!(
            "{} {}, {} x {} chains, {}\n  {rate:.3e} site-updates/s ({:.3} per ns){bandwidth}",
            a.theory,
            algorithm.name(),
            lattice.label(),
            a.chains,
            device.describe(),
            rate * 1e-9
        );
    }
    Ok(())
}

fn check_seconds(seconds: f64) -> Result<()> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        return Err(Error::InvalidInput(format!(
            "--seconds {seconds} must be a number of seconds between 0 and 3600"
        )));
    }
    Ok(())
}

/// What the network benchmarks (`bench flow|can|diffusion`) share: their common flags.
struct NetBench<'a> {
    device: &'a str,
    dims: &'a str,
    seconds: f64,
    sample_batch: usize,
    json: bool,
}

/// Checks `--seconds` and `--sample-batch`, picks the device, prints `header(device)` (not with
/// `--json`), runs `run(device, lattice)` for its figures as JSON members and as text, and
/// prints them (JSON after the device and the extents).
fn net_bench(
    a: NetBench,
    header: impl FnOnce(&str) -> String,
    run: impl FnOnce(
        &Device,
        latticeml::lattice::Lattice,
    ) -> Result<(Vec<(&'static str, Json)>, String)>,
) -> Result<()> {
    check_seconds(a.seconds)?;
    if a.sample_batch == 0 || a.sample_batch > 1 << 20 {
        return Err(Error::InvalidInput(format!(
            "--sample-batch {} must be between 1 and 2^20",
            a.sample_batch
        )));
    }
    let (device, why) = Device::from_name(a.device)?;
    let lattice = latticeml::lattice::Lattice::parse(a.dims)?;
    if !a.json {
        eprintln!("latticeml: {why}");
        println!("{}", header(&device.describe()));
    }
    let (members, text) = run(&device, lattice)?;
    if a.json {
        let mut all = vec![
            ("device", Json::Str(device.describe())),
            ("dims", Json::Str(a.dims.to_string())),
        ];
        all.extend(members);
        print!("{}", Json::obj(all).pretty());
    } else {
        println!("{text}");
    }
    Ok(())
}

fn cmd_bench_flow(a: BenchFlowArgs) -> Result<()> {
    use latticeml::flow::bench::{FlowBench, TRAIN_BATCH};
    let frame = NetBench {
        device: &a.device,
        dims: &a.dims,
        seconds: a.seconds,
        sample_batch: a.sample_batch,
        json: a.json,
    };
    let header = |d: &str| {
        format!(
            "flow on phi4 {} (m2 = -4, lambda0 = 8): 16 couplings, conv 1→8→8→2 3×3, f32, {d}",
            a.dims
        )
    };
    net_bench(frame, header, |device, lattice| {
        let f = FlowBench::new(device, lattice)?.run(a.seconds, a.sample_batch)?;
        Ok((
            vec![
                ("train_batch", Json::Num(TRAIN_BATCH as f64)),
                (
                    "train_steps_per_second",
                    Json::Num(f.train_steps_per_second),
                ),
                ("sample_batch", Json::Num(f.sample_batch as f64)),
                ("samples_per_second", Json::Num(f.samples_per_second)),
            ],
            format!(
                "  training: {:>8.1} steps/s (batch {TRAIN_BATCH})\n  sampling: {:>8.1} samples/s \
                 (batch {})",
                f.train_steps_per_second, f.samples_per_second, f.sample_batch
            ),
        ))
    })
}

fn cmd_bench_nn(a: BenchNnArgs) -> Result<()> {
    check_seconds(a.seconds)?;
    let (device, why) = Device::from_name(&a.device)?;
    if !a.json {
        eprintln!("latticeml: {why}");
        println!(
            "conv stack 1→16→16→2, 3×3 periodic, batch {}, f32, forward+backward, {}",
            BATCH,
            device.describe()
        );
    }
    let mut results = Vec::new();
    for &l in &a.sizes {
        if l < 3 {
            return Err(Error::InvalidInput(format!(
                "lattice size {l} is smaller than the 3×3 kernel"
            )));
        }
        let bench = ConvStackBench::new(&device, l)?;
        let rate = bench.samples_per_second(a.seconds)?;
        let gflops = rate * 3.0 * 2.0 * bench.forward_macs_per_sample() as f64 / 1e9;
        if !a.json {
            println!("  L = {l:>3}: {rate:>10.1} samples/s  (~{gflops:.1} GFLOP/s, counting backward as 2× forward)");
        }
        results.push((l.to_string(), Json::Num(rate)));
    }
    if a.json {
        print!(
            "{}",
            Json::obj([
                ("device", Json::Str(device.describe())),
                ("conv_stack", Json::Obj(results))
            ])
            .pretty()
        );
    }
    Ok(())
}
