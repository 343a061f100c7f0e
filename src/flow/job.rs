//! `latticeml flow train` as a library function: trains a flow into a model directory with a
//! checkpoint every so many steps, so that `--resume` continues bit-identically, and writes
//! `train.csv` (step, loss, ess, acceptance, seconds of training so far) and `summary.json`.

use std::path::Path;

use super::nmcmc::{FlowRecord, MODEL_FILE, OPTIMISER_FILE};
use super::train::{StepStats, TrainConfig, Trainer};
use super::FlowConfig;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::json::Json;
use crate::io::outdir::{Claim, Manifest, OutputDir};
use crate::io::{read, write_atomic};
use crate::nn::{safetensors, Ctx};
use crate::theory::TheoryConfig;
use crate::training::{drive, Training};

/// The training log.
pub const TRAIN_CSV: &str = "train.csv";
/// Its header (files of earlier versions lack the seconds column and are continued without it).
const TRAIN_HEADER: &str = "step,loss,ess,acceptance,seconds";
/// The summary of the training.
pub const SUMMARY: &str = "summary.json";

/// Everything `flow train` is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainJob {
    /// The target theory.
    pub theory: TheoryConfig,
    /// The architecture.
    pub flow: FlowConfig,
    /// Batch, learning rate, seed.
    pub train: TrainConfig,
    /// Total training steps (a resume trains up to this many).
    pub steps: u64,
    /// Log (and checkpoint) every this many steps.
    pub log_every: u64,
}

/// What a training did.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    /// The last logged interval's mean statistics.
    pub last: StepStats,
    /// Steps per second of this invocation.
    pub steps_per_second: f64,
}

impl TrainJob {
    /// The record of a model with `steps` done.
    fn record(&self, scale: f64, steps: u64) -> FlowRecord {
        FlowRecord {
            theory: self.theory.clone(),
            flow: self.flow.clone(),
            scale,
            train: self.train,
            steps,
        }
    }

    /// `key=value` lines fixing the training (all but the number of steps).
    fn identity(&self) -> String {
        let mut r = self.record(1.0, 0).to_json();
        if let Json::Obj(items) = &mut r {
            items.retain(|(k, _)| k != "steps" && k != "scale");
        }
        format!(
            "flow={}\nlog_every={}\n",
            r.pretty().replace('\n', ""),
            self.log_every
        )
    }
}

/// The field scale c of a theory's flow variables: 1/√κ for φ⁴ (the standard-form field), 1
/// otherwise.
pub fn field_scale(theory: &TheoryConfig) -> f64 {
    match theory {
        TheoryConfig::Phi4 { kappa, .. } => 1.0 / kappa.sqrt(),
        _ => 1.0,
    }
}

/// Trains `job` into `out`; `progress(done, total)` after every step.
pub fn train(
    job: &TrainJob,
    device: &Device,
    out: &Path,
    claim: Claim,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TrainOutcome> {
    if job.steps == 0 || job.log_every == 0 {
        return Err(Error::InvalidInput(
            "--steps and --log-every must be at least 1".into(),
        ));
    }
    let scale = field_scale(&job.theory);
    let (_, target) = job.record(scale, 0).target()?;
    let ctx = Ctx::<f32>::new(device.clone());
    let mut trainer = Trainer::new(&ctx, &job.flow, target, job.train)?;
    let manifest = Manifest {
        command: "flow train".into(),
        parameters: job.identity(),
        files: [
            MODEL_FILE,
            OPTIMISER_FILE,
            super::nmcmc::RECORD_FILE,
            TRAIN_CSV,
            SUMMARY,
        ]
        .iter()
        .map(|f| f.to_string())
        .collect(),
    };
    let dir = OutputDir::claim(out, &manifest, claim)?;
    let out = dir.path();
    let mut log = format!("{TRAIN_HEADER}\n");
    // Wall time of earlier invocations (a resume continues the clock of train.csv).
    let mut before = 0.0;
    if claim == Claim::Resume {
        before = resume(&mut trainer, &ctx, out, &mut log, job)?;
    }
    let timed = log.starts_with(TRAIN_HEADER);
    let mut run = Run {
        trainer,
        ctx,
        out,
        job,
        scale,
    };
    let d = drive(
        &mut run,
        (job.steps, job.log_every),
        &mut log,
        (before, timed),
        progress,
    )?;
    write_summary(out, job, &d.last, d.steps_per_second)?;
    Ok(TrainOutcome {
        last: d.last,
        steps_per_second: d.steps_per_second,
    })
}

/// A training in its directory, for the shared loop.
struct Run<'a> {
    trainer: Trainer<f32>,
    ctx: Ctx<f32>,
    out: &'a Path,
    job: &'a TrainJob,
    scale: f64,
}

impl Training for Run<'_> {
    type Stats = StepStats;
    fn steps(&self) -> u64 {
        self.trainer.steps()
    }
    fn step(&mut self) -> Result<StepStats> {
        self.trainer.step()
    }
    fn mean(interval: &[StepStats]) -> StepStats {
        interval_mean(interval)
    }
    fn row(m: &StepStats) -> String {
        format!("{},{:e},{:e},{:e}", m.step, m.loss, m.ess, m.acceptance)
    }
    fn checkpoint(&self, log: &str) -> Result<()> {
        checkpoint(
            &self.trainer,
            &self.ctx,
            self.out,
            log,
            self.job,
            self.scale,
        )
    }
}

fn interval_mean(v: &[StepStats]) -> StepStats {
    let n = v.len().max(1) as f64;
    let mean = |f: fn(&StepStats) -> f64| v.iter().map(f).sum::<f64>() / n;
    StepStats {
        step: v.last().map(|s| s.step).unwrap_or(0),
        loss: mean(|s| s.loss),
        ess: mean(|s| s.ess),
        acceptance: mean(|s| s.acceptance),
    }
}

fn checkpoint(
    trainer: &Trainer<f32>,
    ctx: &Ctx<f32>,
    out: &Path,
    log: &str,
    job: &TrainJob,
    scale: f64,
) -> Result<()> {
    let (steps, adam) = trainer.optimiser().state(ctx)?;
    safetensors::save(trainer.params(), &out.join(MODEL_FILE))?;
    safetensors::save(&adam, &out.join(OPTIMISER_FILE))?;
    write_atomic(&out.join(TRAIN_CSV), log.as_bytes())?;
    // The record last: it names the step count the other files hold.
    job.record(scale, steps as u64).save(out)
}

/// Restores the training in `out`; returns the seconds of training train.csv records so far.
fn resume(
    trainer: &mut Trainer<f32>,
    ctx: &Ctx<f32>,
    out: &Path,
    log: &mut String,
    job: &TrainJob,
) -> Result<f64> {
    let record = FlowRecord::load(out)?;
    let params = safetensors::load(ctx, &out.join(MODEL_FILE))?;
    let adam = safetensors::load(ctx, &out.join(OPTIMISER_FILE))?;
    let text = String::from_utf8(read(&out.join(TRAIN_CSV))?).map_err(|_| Error::BadFile {
        path: out.join(TRAIN_CSV).display().to_string(),
        reason: "not UTF-8".into(),
    })?;
    if record.steps > job.steps {
        return Err(Error::InvalidInput(format!(
            "the model has {} steps, more than --steps {}",
            record.steps, job.steps
        )));
    }
    trainer.restore(params, record.steps, &adam)?;
    let seconds = seconds_so_far(&text, TRAIN_HEADER);
    *log = text;
    Ok(seconds)
}

/// The seconds of training a log records so far: the last column of its last row, when the log
/// starts with `header` (whose last column is the seconds); 0 otherwise.
pub fn seconds_so_far(text: &str, header: &str) -> f64 {
    match text.lines().last() {
        Some(row) if text.starts_with(header) => row
            .rsplit(',')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(0.0),
        _ => 0.0,
    }
}

fn write_summary(out: &Path, job: &TrainJob, last: &StepStats, rate: f64) -> Result<()> {
    let j = Json::obj([
        ("theory", job.theory.to_json()),
        ("steps", Json::Num(last.step as f64)),
        ("loss", Json::Num(last.loss)),
        ("ess", Json::Num(last.ess)),
        ("acceptance", Json::Num(last.acceptance)),
        ("steps_per_second", Json::Num(rate)),
        ("batch", Json::Num(job.train.batch as f64)),
        ("layers", Json::Num(job.flow.layers as f64)),
    ]);
    write_atomic(&out.join(SUMMARY), j.pretty().as_bytes())
}
