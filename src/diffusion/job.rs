//! `latticeml diffusion train`: denoising score matching on the configurations of a production run
//! (`configs.npy` of `latticeml sample`, with the theory read from its `summary.json`), Adam and an
//! exponential moving average of the weights (the EMA weights are the model), seeded shuffles,
//! a checkpoint after every epoch and `--resume` that continues bit-identically. Files:
//! `model.safetensors` (EMA), `weights.safetensors` and `optimizer.safetensors` (to resume),
//! `diffusion.json`, `train.csv` (epoch, loss, seconds), `summary.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::sde::VeSde;
use super::unet::{ScoreConfig, ScoreNet};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::json::{Fields, Json};
use crate::io::outdir::{Claim, Manifest, OutputDir};
use crate::io::{read, run_dir, write_atomic};
use crate::nn::{safetensors, Adam, ConvMode, Ctx, ParamStore, Tape};
use crate::philox;
use crate::theory::TheoryConfig;

/// The EMA weights: the model.
pub const MODEL_FILE: &str = "model.safetensors";
/// The trained weights (for resuming).
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// Adam's moments.
pub const OPTIMISER_FILE: &str = "optimizer.safetensors";
/// The record.
pub const RECORD_FILE: &str = "diffusion.json";
const TRAIN_HEADER: &str = "epoch,loss,seconds";
/// Philox streams of training: diffusion times and noise.
const STREAM_TIME: u32 = 12;
const STREAM_NOISE: u32 = 13;
const STREAM_SHUFFLE: u32 = 14;
const STREAM_AUGMENT: u32 = 17;
/// The record's format (2: padding and the data's second moment recorded).
const FORMAT: &str = "latticeml-diffusion-2";

/// The name of a score network's boundary in files and on the command line.
pub fn padding_name(mode: ConvMode) -> &'static str {
    match mode {
        ConvMode::Zero => "zero",
        _ => "periodic",
    }
}

/// The boundary of a name (`periodic` or `zero`).
pub fn padding_of(name: &str) -> Option<ConvMode> {
    match name {
        "periodic" => Some(ConvMode::Periodic),
        "zero" => Some(ConvMode::Zero),
        _ => None,
    }
}

/// Smallest diffusion time trained on (and sampled to).
pub const T_MIN: f64 = 1e-3;

/// Everything `diffusion train` is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffusionJob {
    /// The run directory whose `configs.npy` is the data.
    pub data: PathBuf,
    /// The network.
    pub net: ScoreConfig,
    /// σ of the VE SDE.
    pub sigma: f64,
    /// Epochs in all (a resume trains up to this many).
    pub epochs: u64,
    /// Samples per step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Decay of the weights' moving average.
    pub ema: f64,
    /// Seed of the shuffles, times and noise.
    pub seed: u64,
    /// Symmetries of the action applied to every training sample at random.
    pub augment: Augment,
}

/// Data augmentation by exact symmetries of the lattice action: every sample of every step is
/// moved by a random lattice translation and, with `flip`, its sign flipped with probability ½
/// (φ → −φ, a symmetry of φ⁴; leave it off for an ensemble meant to stay in one sector of the
/// broken phase). Draws keyed by (sample, step), so a resume stays bit-identical.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Augment {
    /// Random translations.
    pub shift: bool,
    /// Random global sign flips.
    pub flip: bool,
}

impl Augment {
    /// `none`, or a comma-separated list of `shift` and `flip`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut a = Augment::default();
        for part in text.split(',').filter(|p| !p.is_empty() && *p != "none") {
            match part {
                "shift" => a.shift = true,
                "flip" => a.flip = true,
                other => {
                    return Err(Error::InvalidInput(format!(
                        "--augment {other}: use none, or shift and/or flip separated by commas"
                    )))
                }
            }
        }
        Ok(a)
    }

    fn name(&self) -> String {
        let parts: Vec<&str> = [(self.shift, "shift"), (self.flip, "flip")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }

    /// Sample `b` of step `step` of configuration `x` on an `[h, w]` torus, moved as drawn.
    fn apply(&self, x: &[f64], [h, w]: [usize; 2], seed: u64, (b, step): (u32, u32)) -> Vec<f64> {
        let u = |k: u32| philox::uniform_at(seed, [k, b, step, STREAM_AUGMENT]);
        let (dy, dx) = match self.shift {
            true => (
                ((u(0) * h as f64) as usize).min(h - 1),
                ((u(1) * w as f64) as usize).min(w - 1),
            ),
            false => (0, 0),
        };
        let sign = if self.flip && u(2) < 0.5 { -1.0 } else { 1.0 };
        let mut out = vec![0.0; x.len()];
        for (i, row) in x.chunks(w).enumerate() {
            for (j, v) in row.iter().enumerate() {
                out[((i + dy) % h) * w + (j + dx) % w] = sign * v;
            }
        }
        out
    }
}

/// The theory of a run directory (2D φ⁴ only: the score network and its physics checks are φ⁴'s).
fn theory_of_run(dir: &Path) -> Result<TheoryConfig> {
    match run_dir::theory_of_run(dir)? {
        t @ TheoryConfig::Phi4 { .. } if t.build()?.lattice().extents().len() == 2 => Ok(t),
        _ => Err(Error::InvalidInput(format!(
            "{}: diffusion models train on 2D phi4 runs (latticeml sample --theory phi4 --dims LxL)",
            dir.display()
        ))),
    }
}

impl DiffusionJob {
    fn record(&self, theory: &TheoryConfig, epochs: u64, (mean, variance): (f64, f64)) -> Json {
        Json::obj([
            ("format", Json::Str(FORMAT.into())),
            ("theory", theory.to_json()),
            (
                "channels",
                Json::Arr(
                    self.net
                        .channels
                        .iter()
                        .map(|&c| Json::Num(c as f64))
                        .collect(),
                ),
            ),
            ("groups", Json::Num(self.net.groups as f64)),
            ("frequencies", Json::Num(self.net.frequencies as f64)),
            ("frequency_scale", Json::Num(self.net.frequency_scale)),
            ("padding", Json::Str(padding_name(self.net.padding).into())),
            ("data_mean", Json::Num(mean)),
            ("data_variance", Json::Num(variance)),
            ("init_seed", Json::Str(self.net.seed.to_string())),
            ("sigma", Json::Num(self.sigma)),
            ("batch", Json::Num(self.batch as f64)),
            ("lr", Json::Num(self.lr)),
            ("ema", Json::Num(self.ema)),
            ("seed", Json::Str(self.seed.to_string())),
            ("augment", Json::Str(self.augment.name())),
            ("data", Json::Str(self.data.display().to_string())),
            ("epochs", Json::Str(epochs.to_string())),
        ])
    }

    /// Checks the numbers before any file is touched.
    pub fn validate(&self) -> Result<()> {
        VeSde::new(self.sigma)?;
        let ok = self.epochs >= 1
            && (2..=1 << 16).contains(&self.batch)
            && self.lr.is_finite()
            && self.lr > 0.0
            && self.lr < 1.0
            && (0.0..1.0).contains(&self.ema);
        if !ok {
            return Err(Error::InvalidInput(format!(
                "--epochs {} (>= 1), --batch {} (2 to 65536), --lr {} (0 to 1), --ema {} \
                 ([0, 1)): out of range",
                self.epochs, self.batch, self.lr, self.ema
            )));
        }
        Ok(())
    }
}

/// What a training did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiffusionOutcome {
    /// The last epoch's mean loss.
    pub loss: f64,
    /// Training samples per second of this invocation.
    pub samples_per_second: f64,
}

/// Trains `job` into `out`; `progress(done, total)` after every epoch.
pub fn train(
    job: &DiffusionJob,
    device: &Device,
    out: &Path,
    claim: Claim,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<DiffusionOutcome> {
    job.validate()?;
    let theory = theory_of_run(&job.data)?;
    let lattice = theory.build()?.lattice().clone();
    let mut data = run_dir::configs_of_run(&job.data, &lattice)?;
    let (h, w) = (lattice.extents()[0], lattice.extents()[1]);
    let v = h * w;
    let n = data.len() / v;
    // The network learns the fluctuations about the ensemble's mean field: its group norms
    // cannot see the size of a constant field, which in the broken phase is most of φ. With
    // sign flips the augmented ensemble's mean is zero.
    let mean = if job.augment.flip {
        0.0
    } else {
        data.iter().sum::<f64>() / data.len() as f64
    };
    data.iter_mut().for_each(|x| *x -= mean);
    let moments = (
        mean,
        data.iter().map(|x| x * x).sum::<f64>() / data.len() as f64,
    );
    let sde = VeSde::new(job.sigma)?;
    let ctx = Ctx::<f32>::new(device.clone());
    let mut store = ParamStore::new(&ctx);
    let net = ScoreNet::new(&job.net, [h, w], &mut store)?;
    let mut ema = ParamStore::new(&ctx);
    for name in store.names() {
        ema.insert(&name, store.get(&name)?.copy()?);
    }
    let mut adam = Adam::new(job.lr);
    let mut identity = job.record(&theory, 0, moments);
    if let Json::Obj(items) = &mut identity {
        items.retain(|(k, _)| k != "epochs");
    }
    let manifest = Manifest {
        command: "diffusion train".into(),
        parameters: identity.pretty(),
        files: [
            MODEL_FILE,
            WEIGHTS_FILE,
            OPTIMISER_FILE,
            RECORD_FILE,
            "train.csv",
            "summary.json",
        ]
        .iter()
        .map(|f| f.to_string())
        .collect(),
    };
    let dir = OutputDir::claim(out, &manifest, claim)?;
    let out = dir.path();
    let (mut log, mut done, mut before) = (format!("{TRAIN_HEADER}\n"), 0u64, 0.0);
    if claim == Claim::Resume {
        let text = String::from_utf8(read(&out.join("train.csv"))?).unwrap_or_default();
        done = text.lines().count().saturating_sub(1) as u64;
        store = safetensors::load(&ctx, &out.join(WEIGHTS_FILE))?;
        ema = safetensors::load(&ctx, &out.join(MODEL_FILE))?;
        let steps = done as usize * n.div_ceil(job.batch);
        adam.restore(steps, &safetensors::load(&ctx, &out.join(OPTIMISER_FILE))?)?;
        before = crate::flow::job::seconds_so_far(&text, TRAIN_HEADER);
        log = text;
    }
    let start = Instant::now();
    let mut last = f64::NAN;
    for epoch in done..job.epochs {
        let order = shuffle(n, job.seed, epoch)?;
        let mut sum = 0.0;
        for (k, idx) in order.chunks(job.batch).enumerate() {
            let step = u32::try_from(epoch * n.div_ceil(job.batch) as u64 + k as u64)
                .map_err(|_| Error::InvalidInput("more than 2^32 training steps".into()))?;
            let x0: Vec<f64> = idx
                .iter()
                .enumerate()
                .flat_map(|(b, &i)| {
                    job.augment.apply(
                        &data[i * v..(i + 1) * v],
                        [h, w],
                        job.seed,
                        (b as u32, step),
                    )
                })
                .collect();
            let t: Vec<f64> = (0..idx.len())
                .map(|b| {
                    T_MIN + (1.0 - T_MIN) * philox::uniform(job.seed, b as u32, step, STREAM_TIME)
                })
                .collect();
            let mut z = vec![0.0; idx.len() * v];
            for (b, row) in z.chunks_mut(v).enumerate() {
                philox::fill_normals(row, job.seed, b as u32, step, STREAM_NOISE);
            }
            let mut model = Trainee {
                net: &net,
                weights: &mut store,
                ema: &mut ema,
                adam: &mut adam,
            };
            let value = model.step(&sde, (&x0, &t, &z), job.ema)?;
            if !value.is_finite() {
                return Err(Error::NonFinite(format!(
                    "the score-matching loss is {value} at epoch {epoch}: lower --lr"
                )));
            }
            sum += value * idx.len() as f64;
        }
        last = sum / n as f64;
        log.push_str(&format!(
            "{},{:e},{:.3}\n",
            epoch + 1,
            last,
            before + start.elapsed().as_secs_f64()
        ));
        safetensors::save(&ema, &out.join(MODEL_FILE))?;
        safetensors::save(&store, &out.join(WEIGHTS_FILE))?;
        safetensors::save(&adam.state(&ctx)?.1, &out.join(OPTIMISER_FILE))?;
        write_atomic(&out.join("train.csv"), log.as_bytes())?;
        write_atomic(
            &out.join(RECORD_FILE),
            job.record(&theory, epoch + 1, moments).pretty().as_bytes(),
        )?;
        progress(epoch + 1, job.epochs);
    }
    if last.is_nan() {
        return Err(Error::InvalidInput(format!(
            "the model in {} has {done} epochs already; raise --epochs to train further",
            out.display()
        )));
    }
    let rate = ((job.epochs - done) as f64 * n as f64) / start.elapsed().as_secs_f64().max(1e-9);
    let summary = Json::obj([
        ("theory", theory.to_json()),
        ("configurations", Json::Num(n as f64)),
        ("epochs", Json::Num(job.epochs as f64)),
        ("loss", Json::Num(last)),
        ("samples_per_second", Json::Num(rate)),
    ]);
    write_atomic(&out.join("summary.json"), summary.pretty().as_bytes())?;
    Ok(DiffusionOutcome {
        loss: last,
        samples_per_second: rate,
    })
}

/// A permutation of 0..n for `epoch` (Fisher–Yates with Philox uniforms keyed by position).
fn shuffle(n: usize, seed: u64, epoch: u64) -> Result<Vec<usize>> {
    let e = u32::try_from(epoch).map_err(|_| Error::InvalidInput("too many epochs".into()))?;
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let u = philox::uniform(seed, i as u32, e, STREAM_SHUFFLE);
        order.swap(i, ((u * (i + 1) as f64) as usize).min(i));
    }
    Ok(order)
}

/// A network with its trained weights, their moving average and the optimiser: what one
/// training step changes.
pub struct Trainee<'a> {
    /// The network.
    pub net: &'a ScoreNet,
    /// The trained weights.
    pub weights: &'a mut ParamStore<f32>,
    /// Their exponential moving average (the model).
    pub ema: &'a mut ParamStore<f32>,
    /// The optimiser.
    pub adam: &'a mut Adam<f32>,
}

impl Trainee<'_> {
    /// One step of denoising score matching on data x0 `[B][V]` at times t `[B]` with noise z
    /// `[B][V]`: the loss, its gradient, Adam, and the moving average with decay `ema`. Returns
    /// the loss (before the step).
    pub fn step(&mut self, sde: &VeSde, batch: (&[f64], &[f64], &[f64]), ema: f64) -> Result<f64> {
        let tape = Tape::new(self.weights.ctx());
        let loss = self.net.dsm_loss(&tape, self.weights, sde, batch)?;
        let value = loss.value().to_f64()?[0];
        if !value.is_finite() {
            return Ok(value);
        }
        let grads = tape.backward(&loss)?;
        drop(loss);
        self.adam.step(self.weights, &grads)?;
        update_ema(self.ema, self.weights, ema)?;
        Ok(value)
    }
}

/// ema ← d·ema + (1 − d)·θ for every parameter, on the parameters' device.
fn update_ema(ema: &mut ParamStore<f32>, store: &ParamStore<f32>, d: f64) -> Result<()> {
    use crate::nn::kernels::{binary, unary};
    use crate::nn::{Binary, Unary};
    for name in store.names() {
        let p = store.get(&name)?;
        let kept = unary(Unary::Scale(d), ema.get(&name)?)?;
        let new = unary(Unary::Scale(1.0 - d), p)?;
        ema.insert(&name, binary(Binary::Add, &kept, &new, p.shape())?);
    }
    Ok(())
}

/// A trained score network loaded from its directory.
pub struct LoadedDiffusion {
    /// The theory of the training data.
    pub theory: TheoryConfig,
    /// The SDE.
    pub sde: VeSde,
    /// The network.
    pub net: ScoreNet,
    /// Its (EMA) weights.
    pub params: ParamStore<f32>,
    /// Epochs trained.
    pub epochs: u64,
    /// The training ensemble's mean field, subtracted before training: the network's score is
    /// that of φ − `data_mean`, and draws are shifted back.
    pub data_mean: f64,
    /// The run directory of the training data.
    pub data: PathBuf,
}

/// Loads `dir/diffusion.json` and `dir/model.safetensors` onto `device`, checking that the
/// weights fit the network.
pub fn load(dir: &Path, device: &Device) -> Result<LoadedDiffusion> {
    let path = dir.join(RECORD_FILE);
    let bad = |why: String| Error::BadFile {
        path: path.display().to_string(),
        reason: why,
    };
    let text = String::from_utf8(read(&path)?).map_err(|_| bad("not UTF-8".into()))?;
    let j = Json::parse(&text).map_err(|e| bad(e.to_string()))?;
    let file = path.display().to_string();
    let f = Fields::new(&j, &file);
    f.format(FORMAT)?;
    let (num, count, big) = (|k: &str| f.num(k), |k: &str| f.count(k), |k: &str| f.big(k));
    let channels = match j.get("channels") {
        Some(Json::Arr(c)) if c.len() == 2 => {
            let c: Vec<usize> = c
                .iter()
                .map(|x| match x {
                    Json::Num(v) if *v >= 1.0 && v.fract() == 0.0 => Ok(*v as usize),
                    _ => Err(f.bad("channels")),
                })
                .collect::<Result<_>>()?;
            [c[0], c[1]]
        }
        _ => return Err(f.bad("channels")),
    };
    let theory = TheoryConfig::from_json(j.get("theory").ok_or_else(|| f.bad("theory"))?)?;
    let lattice = theory.build()?.lattice().clone();
    let config = ScoreConfig {
        channels,
        groups: count("groups")?,
        frequencies: count("frequencies")?,
        frequency_scale: num("frequency_scale")?,
        padding: match j.get("padding") {
            Some(Json::Str(p)) => padding_of(p).ok_or_else(|| f.bad("padding"))?,
            _ => return Err(f.bad("padding")),
        },
        seed: big("init_seed")?,
    };
    let ctx = Ctx::<f32>::new(device.clone());
    let mut fresh = ParamStore::new(&ctx);
    let dims = [lattice.extents()[0], lattice.extents()[1]];
    let net = ScoreNet::new(&config, dims, &mut fresh)?;
    let params = safetensors::load(&ctx, &dir.join(MODEL_FILE))?;
    for name in fresh.names() {
        let want = fresh.get(&name)?.shape();
        if params.get(&name).map(|t| t.shape() != want).unwrap_or(true) {
            return Err(Error::BadFile {
                path: dir.join(MODEL_FILE).display().to_string(),
                reason: format!("parameter {name} missing or not of shape {want:?}"),
            });
        }
    }
    Ok(LoadedDiffusion {
        theory,
        sde: VeSde::new(num("sigma")?)?.with_data_variance(num("data_variance")?)?,
        net,
        params,
        epochs: big("epochs")?,
        // Records written before the shift existed trained on φ itself.
        data_mean: match j.get("data_mean") {
            None => 0.0,
            Some(_) => num("data_mean")?,
        },
        data: match j.get("data") {
            Some(Json::Str(d)) => PathBuf::from(d),
            _ => return Err(f.bad("data")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drawn move is a translation (and sign) of the torus: the multiset of values and the
    /// neighbour sums are kept up to the sign; over many draws about half are flipped.
    #[test]
    fn augmentation_moves_configurations_by_symmetries() {
        let (h, w) = (4, 6);
        let x: Vec<f64> = (0..h * w).map(|i| (i * i % 7) as f64 - 2.5).collect();
        let both = Augment::parse("shift,flip").unwrap();
        let bond =
            |y: &[f64]| -> f64 { (0..h * w).map(|i| y[i] * y[(i + 1) % w + i / w * w]).sum() };
        let mut flips = 0;
        for step in 0..200 {
            let y = both.apply(&x, [h, w], 3, (1, step));
            let sign = if y.iter().sum::<f64>() * x.iter().sum::<f64>() < 0.0 {
                -1.0
            } else {
                1.0
            };
            flips += (sign < 0.0) as u32;
            let mut a: Vec<f64> = x.iter().map(|v| v * sign).collect();
            let mut b = y.clone();
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            assert_eq!(a, b);
            assert!((bond(&y) - bond(&x)).abs() < 1e-12);
        }
        assert!((70..130).contains(&flips), "{flips} flips in 200");
        assert_eq!(
            Augment::parse("none").unwrap().apply(&x, [h, w], 3, (1, 0)),
            x
        );
        assert!(Augment::parse("rotate").is_err());
    }
}
