//! `latticeml vae library|train|encode|decode`: a variational autoencoder of Anderson-impurity
//! spectral functions (the library side is `latticeml::spectral::{aim, vae, vae_job}`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use latticeml::io::parse_values;
use latticeml::spectral::aim::{Bath, LibrarySpec};
use latticeml::spectral::vae::VaeConfig;
use latticeml::spectral::vae_job;
use latticeml::spectral::vae_prior::PriorSettings;
use latticeml::{Error, Result};

use super::{claim_of, with_progress};

#[derive(Subcommand)]
pub enum VaeWhat {
    /// Solve a library of impurity spectral functions (second order in U) over a grid of U/Gamma
    /// and eps_d/U: spectra.npy, params.npy, omega.npy.
    Library(LibraryArgs),
    /// Train a VAE on a library: model, train.csv, latent.npy, latent.svg and summary.json
    /// (held-out errors; how each latent tracks n_d - 1, Z and U/Gamma).
    Train(Box<TrainArgs>),
    /// Latent means of spectra (an .npy [n, points] on the model's grid) -> latent.npy.
    Encode(ApplyArgs),
    /// Spectra of latents (an .npy [n, latent]) -> spectra.npy.
    Decode(ApplyArgs),
    /// The decoder as a prior: reconstruct the held-out library spectra from mock
    /// imaginary-time data (fermionic kernel) by MEM, by a fit over the latent space, and by
    /// MEM with the decoded spectrum as default model; prior.csv and summary.json.
    Prior(PriorArgs),
}

#[derive(Args)]
pub struct PriorArgs {
    /// The model directory of `latticeml vae train`.
    #[arg(long)]
    model: PathBuf,
    /// The library it was trained on.
    #[arg(long)]
    data: PathBuf,
    /// Inverse temperature of the mock data (units of 1/Gamma).
    #[arg(long, default_value_t = 10.0)]
    beta: f64,
    /// Points tau on [0, beta].
    #[arg(long, default_value_t = 41)]
    taus: usize,
    /// Relative noise of G(tau).
    #[arg(long, default_value_t = 1e-3)]
    noise: f64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory.
    #[arg(long, default_value = "latticeml-vae-prior")]
    out: PathBuf,
    /// Replace what is in --out.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct LibraryArgs {
    /// Values of U/Gamma: first:last:step or a comma-separated list.
    #[arg(long, default_value = "0.5:8:0.5")]
    u: String,
    /// Values of eps_d/U (-0.5: particle-hole symmetric): first:last:step or a list.
    #[arg(long, default_value = "-1:0:0.05", allow_hyphen_values = true)]
    eps_ratio: String,
    /// Temperature T/Gamma.
    #[arg(long, default_value_t = 0.01)]
    temperature: f64,
    /// flat (a wide band) or lorentzian:D (a band of half-width D Gamma).
    #[arg(long, default_value = "flat")]
    bath: String,
    /// Points of the output grid on [-range, range].
    #[arg(long, default_value_t = 128)]
    points: usize,
    /// Half-width of the output grid in units of Gamma.
    #[arg(long, default_value_t = 10.0)]
    range: f64,
    /// Output directory.
    #[arg(long, default_value = "latticeml-aim")]
    out: PathBuf,
    /// Replace what is in --out.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// A library directory of `latticeml vae library`.
    #[arg(long)]
    data: PathBuf,
    /// Latent dimensions.
    #[arg(long, default_value_t = 2)]
    latent: usize,
    /// Units per hidden layer.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Weight of the KL term (beta-VAE).
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Effective counts of the multinomial likelihood of a spectrum.
    #[arg(long, default_value_t = 1000.0)]
    precision: f64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Spectra per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Training steps.
    #[arg(long, default_value_t = 4000)]
    steps: usize,
    /// Fraction of the library held out to measure the reconstruction error.
    #[arg(long, default_value_t = 0.1)]
    holdout: f64,
    /// Seed of the weights, the batches, the noise and the held-out split.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output (model) directory.
    #[arg(long, default_value = "latticeml-vae")]
    out: PathBuf,
    /// Replace what is in --out.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct ApplyArgs {
    /// The model directory of `latticeml vae train`.
    #[arg(long)]
    model: PathBuf,
    /// The input .npy.
    #[arg(long)]
    input: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Replace what is in --out.
    #[arg(long)]
    force: bool,
}

pub fn cmd_vae(what: VaeWhat) -> Result<()> {
    match what {
        VaeWhat::Library(a) => cmd_library(a),
        VaeWhat::Train(a) => cmd_train(*a),
        VaeWhat::Encode(a) => cmd_apply(a, true),
        VaeWhat::Decode(a) => cmd_apply(a, false),
        VaeWhat::Prior(a) => cmd_prior(a),
    }
}

fn bath(s: &str) -> Result<Bath> {
    if s == "flat" {
        return Ok(Bath::Flat);
    }
    match s.strip_prefix("lorentzian:").map(|w| w.parse::<f64>()) {
        Some(Ok(width)) if width.is_finite() && width > 0.0 => Ok(Bath::Lorentzian { width }),
        _ => Err(Error::InvalidInput(format!(
            "--bath {s}: use flat or lorentzian:D with a positive half-width D (units of Gamma)"
        ))),
    }
}

fn cmd_library(a: LibraryArgs) -> Result<()> {
    let spec = LibrarySpec {
        u: parse_values(&a.u, "u", "0.5:8:0.5")?,
        eps_ratio: parse_values(&a.eps_ratio, "eps-ratio", "-1:0:0.05")?,
        temperature: a.temperature,
        bath: bath(&a.bath)?,
        points: a.points,
        half_width: a.range,
    };
    let n = spec.u.len() * spec.eps_ratio.len();
    eprintln!("latticeml: solving {n} impurities (second order in U) on the CPU");
    let lib = vae_job::write_library(&spec, &a.out, claim_of(false, a.force))?;
    println!(
        "{} spectra of {} points on [-{}, {}] Gamma in {}/",
        lib.len(),
        lib.omega.len(),
        a.range,
        a.range,
        a.out.display()
    );
    Ok(())
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let config = VaeConfig {
        latent: a.latent,
        hidden: a.hidden,
        beta: a.beta,
        precision: a.precision,
        lr: a.lr,
        batch: a.batch,
        steps: a.steps,
        seed: a.seed,
    };
    config.validate()?;
    let claim = claim_of(false, a.force);
    let o = with_progress(&a.device, a.steps as u64, "steps", |device, progress| {
        vae_job::train(
            &a.data,
            config,
            a.holdout,
            device,
            &a.out,
            claim,
            &mut |s| progress(s.step as u64 + 1, a.steps as u64),
        )
    })?;
    println!(
        "held out {}: reconstruction KL {:.4} (mean-spectrum baseline {:.4}), L1 {:.4} ({:.4})",
        o.held_out, o.recon_kl, o.baseline_kl, o.recon_l1, o.baseline_l1
    );
    for (d, qs) in o.tracking.iter().enumerate() {
        let parts: Vec<String> = qs
            .iter()
            .map(|(n, r, s, m)| format!("{n} r={r:+.2} spearman={s:+.2} monotone R2={m:.2}"))
            .collect();
        println!("z{}: {}", d + 1, parts.join("; "));
    }
    println!("files in {}/", a.out.display());
    Ok(())
}

fn cmd_apply(a: ApplyArgs, encode: bool) -> Result<()> {
    let (device, _) = latticeml::Device::from_name(&a.device)?;
    let n = vae_job::apply(
        &a.model,
        &a.input,
        encode,
        &device,
        &a.out,
        claim_of(false, a.force),
    )?;
    let what = if encode { "latent.npy" } else { "spectra.npy" };
    println!("{n} rows -> {}/{what}", a.out.display());
    Ok(())
}

fn cmd_prior(a: PriorArgs) -> Result<()> {
    let settings = PriorSettings {
        beta: a.beta,
        taus: a.taus,
        noise: a.noise,
        seed: a.seed,
    };
    let (device, _) = latticeml::Device::from_name("cpu")?;
    let rows = vae_job::prior(
        &a.model,
        &a.data,
        &settings,
        &device,
        &a.out,
        claim_of(false, a.force),
    )?;
    println!(
        "{:<8} {:>12} {:>10} {:>10}",
        "method", "chi2/N", "L1", "MSE"
    );
    for (m, c, l1, mse) in vae_job::prior_means(&rows) {
        println!("{m:<8} {c:>12.3} {l1:>10.4} {mse:>10.5}");
    }
    println!(
        "{} held-out spectra; files in {}/",
        rows.len() / 3,
        a.out.display()
    );
    Ok(())
}
