//! `latticeml can train` as a library function: trains a network into a model directory with a
//! checkpoint at every log line, so that `--resume` continues bit-identically, and writes
//! `train.csv` (step, β, F, its variance, ESS, acceptance, seconds so far) and `summary.json`.

use std::path::{Path, PathBuf};

use super::data::{DataTerm, Ensemble};
use super::files::{self, xy_of, CanRecord, MODEL_FILE, OPTIMISER_FILE, RECORD_FILE};
use super::model::CanConfig;
use super::train::{CanStepStats, CanTrainConfig, CanTrainer};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::json::Json;
use crate::io::outdir::{Claim, Manifest, OutputDir};
use crate::io::{read, write_atomic};
use crate::nn::{safetensors, Ctx, ParamStore};
use crate::theory::TheoryConfig;
use crate::training::{drive, Training};

/// The training log.
pub const TRAIN_CSV: &str = "train.csv";
const TRAIN_HEADER: &str = "step,beta,free_energy,variance,ess,acceptance,seconds";
/// The summary of the training.
pub const SUMMARY: &str = "summary.json";

/// Everything `can train` is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct CanTrainJob {
    /// The XY model.
    pub theory: TheoryConfig,
    /// The architecture.
    pub net: CanConfig,
    /// Batch, learning rate, seed, annealing.
    pub train: CanTrainConfig,
    /// λ·KL(p‖q) on a run's configurations added to the loss, when given.
    pub data: Option<DataTerm>,
    /// Start from the weights of this model directory (the same network and lattice) instead
    /// of fresh ones; recorded in `summary.json`, not part of the training's identity.
    pub init: Option<PathBuf>,
    /// Total training steps (a resume trains up to this many).
    pub steps: u64,
    /// Log (and checkpoint) every this many steps.
    pub log_every: u64,
}

/// What a training did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CanTrainOutcome {
    /// The last logged interval's mean statistics.
    pub last: CanStepStats,
    /// Steps per second of this invocation.
    pub steps_per_second: f64,
}

impl CanTrainJob {
    fn record(&self, steps: u64) -> CanRecord {
        CanRecord {
            theory: self.theory.clone(),
            net: self.net.clone(),
            train: self.train,
            data: self.data.clone(),
            steps,
        }
    }

    /// `key=value` lines fixing the training (all but the number of steps).
    fn identity(&self) -> String {
        let mut r = self.record(0).to_json();
        if let Json::Obj(items) = &mut r {
            items.retain(|(k, _)| k != "steps");
        }
        format!(
            "can={}\nlog_every={}\n",
            r.pretty().replace('\n', ""),
            self.log_every
        )
    }

    /// Checks everything before any file is touched.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 || self.log_every == 0 {
            return Err(Error::InvalidInput(
                "--steps and --log-every must be at least 1".into(),
            ));
        }
        self.net.validate()?;
        self.train.validate()?;
        if let Some(d) = &self.data {
            d.validate()?;
        }
        xy_of(&self.theory).map(|_| ())
    }
}

/// Trains `job` into `out`, starting from the weights of `job.init` when given (a fine-tuning, a
/// scan's previous β; a resume continues from its own checkpoint instead); `progress(done,
/// total)` after every step.
pub fn train(
    job: &CanTrainJob,
    device: &Device,
    out: &Path,
    claim: Claim,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CanTrainOutcome> {
    job.validate()?;
    let ctx = Ctx::<f32>::new(device.clone());
    let mut trainer = CanTrainer::new(&ctx, &job.net, xy_of(&job.theory)?, job.train)?;
    if let Some(d) = &job.data {
        trainer.set_data(Ensemble::load(&d.run, &job.theory)?, d.weight)?;
    }
    let warm = match (&job.init, claim) {
        (Some(dir), c) if c != Claim::Resume => Some(warm_start(dir, job, device)?),
        _ => None,
    };
    let manifest = Manifest {
        command: "can train".into(),
        parameters: job.identity(),
        files: [MODEL_FILE, OPTIMISER_FILE, RECORD_FILE, TRAIN_CSV, SUMMARY]
            .iter()
            .map(|f| f.to_string())
            .collect(),
    };
    let dir = OutputDir::claim(out, &manifest, claim)?;
    let out = dir.path();
    let mut log = format!("{TRAIN_HEADER}\n");
    let mut before = 0.0;
    if claim == Claim::Resume {
        before = resume(&mut trainer, &ctx, out, &mut log, job)?;
    } else if let Some(w) = warm {
        trainer.restore(w, 0, None)?;
    }
    let mut run = Run {
        trainer,
        ctx,
        out,
        job,
    };
    let d = drive(
        &mut run,
        (job.steps, job.log_every),
        &mut log,
        (before, true),
        progress,
    )?;
    write_summary(out, job, &d.last, d.steps_per_second)?;
    Ok(CanTrainOutcome {
        last: d.last,
        steps_per_second: d.steps_per_second,
    })
}

/// The weights of the model in `dir`, checked to be those of `job`'s network on its lattice.
fn warm_start(dir: &Path, job: &CanTrainJob, device: &Device) -> Result<ParamStore<f32>> {
    let loaded = files::load(dir, device)?;
    let same_net = CanConfig {
        seed: job.net.seed,
        ..loaded.record.net.clone()
    } == job.net;
    let same_lattice = loaded.record.theory.build()?.lattice() == job.theory.build()?.lattice();
    if !(same_net && same_lattice) {
        return Err(Error::InvalidInput(format!(
            "--init {}: its network or lattice differs from this one (give the same --dims, \
             --channels, --residual, --kernel, --components, --activation and --running-means)",
            dir.display()
        )));
    }
    Ok(loaded.params)
}

/// A training in its directory, for the shared loop.
struct Run<'a> {
    trainer: CanTrainer<f32>,
    ctx: Ctx<f32>,
    out: &'a Path,
    job: &'a CanTrainJob,
}

impl Training for Run<'_> {
    type Stats = CanStepStats;
    fn steps(&self) -> u64 {
        self.trainer.steps()
    }
    fn step(&mut self) -> Result<CanStepStats> {
        self.trainer.step()
    }
    fn mean(interval: &[CanStepStats]) -> CanStepStats {
        interval_mean(interval)
    }
    fn row(m: &CanStepStats) -> String {
        format!(
            "{},{},{:e},{:e},{:e},{:e}",
            m.step, m.beta, m.free_energy, m.variance, m.ess, m.acceptance
        )
    }
    fn checkpoint(&self, log: &str) -> Result<()> {
        checkpoint(&self.trainer, &self.ctx, self.out, log, self.job)
    }
}

fn interval_mean(v: &[CanStepStats]) -> CanStepStats {
    let n = v.len().max(1) as f64;
    let mean = |f: fn(&CanStepStats) -> f64| v.iter().map(f).sum::<f64>() / n;
    let last = v.last().copied();
    CanStepStats {
        step: last.map_or(0, |s| s.step),
        beta: last.map_or(0.0, |s| s.beta),
        free_energy: mean(|s| s.free_energy),
        variance: mean(|s| s.variance),
        ess: mean(|s| s.ess),
        acceptance: mean(|s| s.acceptance),
    }
}

fn checkpoint(
    trainer: &CanTrainer<f32>,
    ctx: &Ctx<f32>,
    out: &Path,
    log: &str,
    job: &CanTrainJob,
) -> Result<()> {
    let (steps, adam) = trainer.optimiser().state(ctx)?;
    safetensors::save(trainer.params(), &out.join(MODEL_FILE))?;
    safetensors::save(&adam, &out.join(OPTIMISER_FILE))?;
    write_atomic(&out.join(TRAIN_CSV), log.as_bytes())?;
    // The record last: it names the step count the other files hold.
    job.record(steps as u64).save(out)
}

/// Restores the training in `out`; returns the seconds of training train.csv records so far.
fn resume(
    trainer: &mut CanTrainer<f32>,
    ctx: &Ctx<f32>,
    out: &Path,
    log: &mut String,
    job: &CanTrainJob,
) -> Result<f64> {
    let record = CanRecord::load(out)?;
    if record.steps > job.steps {
        return Err(Error::InvalidInput(format!(
            "the model has {} steps, more than --steps {}",
            record.steps, job.steps
        )));
    }
    let params = safetensors::load(ctx, &out.join(MODEL_FILE))?;
    let adam = safetensors::load(ctx, &out.join(OPTIMISER_FILE))?;
    let path = out.join(TRAIN_CSV);
    let text = String::from_utf8(read(&path)?).map_err(|_| Error::BadFile {
        path: path.display().to_string(),
        reason: "not UTF-8".into(),
    })?;
    trainer.restore(params, record.steps, Some(&adam))?;
    let seconds = crate::flow::job::seconds_so_far(&text, TRAIN_HEADER);
    *log = text;
    Ok(seconds)
}

fn write_summary(out: &Path, job: &CanTrainJob, last: &CanStepStats, rate: f64) -> Result<()> {
    let j = Json::obj([
        ("theory", job.theory.to_json()),
        ("steps", Json::Num(last.step as f64)),
        ("beta", Json::Num(last.beta)),
        ("free_energy", Json::Num(last.free_energy)),
        ("free_energy_variance", Json::Num(last.variance)),
        ("ess", Json::Num(last.ess)),
        ("acceptance", Json::Num(last.acceptance)),
        ("steps_per_second", Json::Num(rate)),
        ("batch", Json::Num(job.train.batch as f64)),
    ]);
    let j = match (&job.init, j) {
        (Some(dir), Json::Obj(mut items)) => {
            items.push(("init".into(), Json::Str(dir.display().to_string())));
            Json::Obj(items)
        }
        (_, j) => j,
    };
    write_atomic(&out.join(SUMMARY), j.pretty().as_bytes())
}
