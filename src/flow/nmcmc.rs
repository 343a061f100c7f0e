//! Flow-based Markov chains (NMCMC; Albergo, Kanwar, Shanahan 2019, sec. III): independence
//! Metropolis ([`crate::independence`]) over a flow's proposals, optionally interleaved with HMC.
//! Also the model files a trained flow is kept in.

use std::path::Path;
use std::sync::Arc;

use super::model::{Flow, FlowBasis, FlowConfig, MaskKind};
use super::target::Target;
use super::train::{log_density, sample, Proposals, TrainConfig, STREAM_FLOW_SAMPLE};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::independence::{Between, IndependenceChains};
use crate::io::json::{Fields, Json};
use crate::io::{read, write_atomic};
use crate::nn::layers::Activation;
use crate::nn::{safetensors, Ctx, ParamStore};
use crate::sampler::{ChainMeasurement, Sampler, UpdateStats};
use crate::theory::{FieldKind, Theory, TheoryConfig};

/// File names of a model directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// The architecture, target and training record.
pub const RECORD_FILE: &str = "flow.json";
/// Adam's moments, for resuming training.
pub const OPTIMISER_FILE: &str = "optimizer.safetensors";

/// What a model directory records besides the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRecord {
    /// The theory the flow targets.
    pub theory: TheoryConfig,
    /// The architecture.
    pub flow: FlowConfig,
    /// c in φ = c·y.
    pub scale: f64,
    /// The training hyper-parameters.
    pub train: TrainConfig,
    /// Training steps done.
    pub steps: u64,
}

impl FlowRecord {
    /// The record as JSON.
    pub fn to_json(&self) -> Json {
        let n = |v: f64| Json::Num(v);
        Json::obj([
            ("format", Json::Str("latticeml-flow-1".into())),
            ("theory", self.theory.to_json()),
            ("scale", n(self.scale)),
            ("layers", n(self.flow.layers as f64)),
            (
                "hidden",
                Json::Arr(self.flow.hidden.iter().map(|&h| n(h as f64)).collect()),
            ),
            ("kernel", n(self.flow.kernel as f64)),
            ("activation", Json::Str(self.flow.activation.name().into())),
            (
                "slope",
                n(match self.flow.activation {
                    Activation::LeakyRelu(a) => a,
                    _ => 0.0,
                }),
            ),
            ("mask", Json::Str(self.flow.mask.name().into())),
            ("init_seed", Json::Str(self.flow.seed.to_string())),
            ("basis", Json::Str(self.flow.basis.name().into())),
            ("batch", n(self.train.batch as f64)),
            ("lr", n(self.train.lr)),
            ("seed", Json::Str(self.train.seed.to_string())),
            ("steps", Json::Str(self.steps.to_string())),
        ])
    }

    /// Reads a record; every missing or malformed member is an error naming it.
    pub fn from_json(j: &Json) -> Result<Self> {
        let f = Fields::new(j, RECORD_FILE);
        let bad = |k: &str| f.bad(k);
        let (num, int, big) = (|k: &str| f.num(k), |k: &str| f.count(k), |k: &str| f.big(k));
        f.format("latticeml-flow-1")?;
        let hidden = match j.get("hidden") {
            Some(Json::Arr(v)) => v
                .iter()
                .map(|h| match h {
                    Json::Num(x) if *x >= 1.0 && x.fract() == 0.0 => Ok(*x as usize),
                    _ => Err(bad("hidden")),
                })
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(bad("hidden")),
        };
        let record = FlowRecord {
            theory: TheoryConfig::from_json(j.get("theory").ok_or_else(|| bad("theory"))?)?,
            flow: FlowConfig {
                layers: int("layers")?,
                hidden,
                kernel: int("kernel")?,
                activation: match j.get("activation") {
                    None => Activation::LeakyRelu(num("slope")?),
                    Some(Json::Str(a)) => {
                        Activation::parse(a, num("slope")?).map_err(|_| bad("activation"))?
                    }
                    Some(_) => return Err(bad("activation")),
                },
                mask: match j.get("mask") {
                    None => MaskKind::Checkerboard,
                    Some(Json::Str(m)) => MaskKind::parse(m).map_err(|_| bad("mask"))?,
                    Some(_) => return Err(bad("mask")),
                },
                seed: big("init_seed")?,
                basis: match j.get("basis") {
                    None => FlowBasis::Real,
                    Some(Json::Str(b)) => FlowBasis::parse(b).map_err(|_| bad("basis"))?,
                    Some(_) => return Err(bad("basis")),
                },
            },
            scale: num("scale")?,
            train: TrainConfig {
                batch: int("batch")?,
                lr: num("lr")?,
                seed: big("seed")?,
            },
            steps: big("steps")?,
        };
        record.flow.validate()?;
        Ok(record)
    }

    /// Reads `dir/flow.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(RECORD_FILE);
        let text = String::from_utf8(read(&path)?).map_err(|_| Error::BadFile {
            path: path.display().to_string(),
            reason: "not UTF-8".into(),
        })?;
        Self::from_json(&Json::parse(&text)?)
    }

    /// Writes `dir/flow.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(RECORD_FILE), self.to_json().pretty().as_bytes())
    }

    /// The theory and its flow target.
    pub fn target(&self) -> Result<(Arc<dyn Theory>, Target)> {
        let theory = self.theory.build()?;
        let refuse = || {
            Error::InvalidInput(format!(
                "flows sample real fields on R^V; the theory {} has none (its field is {:?})",
                theory.name(),
                theory.field_kind()
            ))
        };
        if theory.field_kind() != FieldKind::Real {
            return Err(refuse());
        }
        let action = theory.clone().scalar_action().ok_or_else(refuse)?;
        Ok((theory, Target::new(action, self.scale)?))
    }
}

/// A trained flow loaded from its directory, on a device.
pub struct LoadedFlow {
    /// The record.
    pub record: FlowRecord,
    /// The flow.
    pub flow: Flow<f32>,
    /// Its weights.
    pub params: ParamStore<f32>,
}

/// Loads `dir/flow.json` and `dir/model.safetensors` onto `device`, checking that the weights
/// fit the architecture.
pub fn load(dir: &Path, device: &Device) -> Result<LoadedFlow> {
    let record = FlowRecord::load(dir)?;
    let ctx = Ctx::<f32>::new(device.clone());
    let mut fresh = ParamStore::new(&ctx);
    let (_, target) = record.target()?;
    let flow = Flow::new(&record.flow, &target, &mut fresh)?;
    let params = safetensors::load(&ctx, &dir.join(MODEL_FILE))?;
    for name in fresh.names() {
        let want = fresh.get(&name)?.shape();
        match params.get(&name) {
            Ok(t) if t.shape() == want => {}
            _ => {
                return Err(Error::InvalidInput(format!(
                    "{}: parameter {name} missing or not of shape {want:?}; the file does not \
                     belong to this {RECORD_FILE}",
                    dir.join(MODEL_FILE).display()
                )))
            }
        }
    }
    Ok(LoadedFlow {
        record,
        flow,
        params,
    })
}

/// Independence Metropolis over a flow's proposals, for a batch of chains.
pub struct FlowSampler {
    theory: Arc<dyn Theory>,
    target: Target,
    model: LoadedFlow,
    model_dir: String,
    chains: usize,
    /// Global index of the first chain in the ensemble (keys the proposals).
    first_chain: u32,
    seed: u64,
    done: u64,
    /// The chains in the flow's variables, their weights, and every proposal reweighted.
    independence: IndependenceChains,
    /// Updates of another sampler after every independence step.
    between: Option<Between>,
}

impl FlowSampler {
    /// `chains` chains over the flow in `dir` for `theory` (which must be the model's), drawing
    /// from `seed`.
    pub fn new(
        theory: Arc<dyn Theory>,
        dir: &Path,
        chains: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let model = load(dir, device)?;
        let (own, target) = model.record.target()?;
        if own.name() != theory.name()
            || own.lattice() != theory.lattice()
            || own.parameters() != theory.parameters()
        {
            return Err(Error::InvalidInput(format!(
                "the flow in {} was trained for {} on {} {:?}, not {} on {} {:?}",
                dir.display(),
                own.name(),
                own.lattice().label(),
                own.parameters(),
                theory.name(),
                theory.lattice().label(),
                theory.parameters()
            )));
        }
        let v = target.volume();
        Ok(FlowSampler {
            target,
            model,
            model_dir: dir.display().to_string(),
            chains,
            first_chain: 0,
            seed,
            done: 0,
            independence: IndependenceChains::new(
                chains,
                v,
                theory.primary_names().len(),
                seed,
                "flow_fields",
            ),
            theory,
            between: None,
        })
    }

    /// Runs `k` updates of `local` (e.g. HMC of the same theory and chains) after every
    /// independence step. Each is a Markov kernel leaving e^{−S} invariant, so the chain stays
    /// exact; the local updates reach what the flow rarely proposes (the double well's kink
    /// pairs), the flow's proposals what local updates rarely reach (the other well).
    pub fn interleave(&mut self, local: Box<dyn Sampler>, k: usize) -> Result<()> {
        self.between = Some(Between::new(local, k, self.chains)?);
        Ok(())
    }

    /// The local updates after an independence step: the chains move on, and their log w is
    /// recomputed exactly (the inverse flow's log q) for the next independence step. (The
    /// forward and inverse passes agree on log q to f32 rounding.)
    fn run_between(&mut self) -> Result<()> {
        let Some(between) = self.between.as_mut() else {
            return Ok(());
        };
        let moved = between.run(&self.target.to_theory(self.independence.current()))?;
        let current = self.target.to_flow(&moved);
        let log_q = log_density(&self.model.flow, &self.model.params, &current)?;
        let v = self.target.volume();
        let log_w: Vec<f64> = current
            .chunks(v)
            .zip(log_q)
            .map(|(y, q)| -self.target.action_of(y) - q)
            .collect();
        self.independence.set(&current, Some(&log_w))
    }

    /// ESS per sample of every proposal so far.
    pub fn ess_per_sample(&self) -> f64 {
        self.independence.reweighting().ess_per_sample()
    }

    /// The reweighted primaries, `{name: {"value", "error"}}` (every proposal, independent
    /// draws: no autocorrelation).
    pub fn reweighted(&self) -> Json {
        self.independence.reweighted(self.theory.primary_names())
    }

    /// Adds every proposal of `p` to the reweighted sums.
    fn reweight(&mut self, p: &Proposals) -> Result<()> {
        let v = self.target.volume();
        for (y, lw) in p.y.chunks(v).zip(p.log_weights()) {
            let m = self.theory.measure(&self.target.to_theory(y));
            self.independence.reweight(lw, &m.primaries)?;
        }
        Ok(())
    }
}

impl Sampler for FlowSampler {
    fn chains(&self) -> usize {
        self.chains
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn parameters(&self) -> String {
        let mut p = format!(
            "algorithm=flow\nmodel={}\nmodel_steps={}\nseed={}\n",
            self.model_dir, self.model.record.steps, self.seed
        );
        if let Some(between) = &self.between {
            p += &between.parameters();
        }
        p
    }

    fn summary(&self) -> Vec<(&'static str, Json)> {
        vec![
            ("algorithm", Json::Str("flow".into())),
            ("model", Json::Str(self.model_dir.clone())),
            ("model_steps", Json::Num(self.model.record.steps as f64)),
            ("seed", Json::Num(self.seed as f64)),
            ("ess_per_sample", Json::Num(self.ess_per_sample())),
            ("reweighted", self.reweighted()),
            (
                "updates_between",
                self.between.as_ref().map_or(Json::Null, Between::summary),
            ),
        ]
    }

    fn pool_summary(&mut self, team: &dyn crate::ensemble::Team) -> Result<()> {
        self.independence.pool(team)?;
        self.between.as_mut().map_or(Ok(()), |b| b.pool(team))
    }

    fn stalls_are_failures(&self) -> bool {
        false
    }

    fn low_acceptance_advice(&self) -> &'static str {
        "train the flow longer (flow train --resume --steps N with a larger N)"
    }

    fn set_warmup(&mut self, _level: u32) -> Result<()> {
        Ok(())
    }

    fn update(&mut self) -> Result<UpdateStats> {
        let t = self.done;
        let key = (self.seed, STREAM_FLOW_SAMPLE, t);
        let p = sample(
            &self.model.flow,
            &self.model.params,
            &self.target,
            key,
            self.first_chain as usize,
            self.chains,
        )?;
        self.reweight(&p)?;
        // The first update replaces the start unconditionally (`flow sample` requires --therm ≥ 1).
        let stats = self.independence.offer(t, &p.y, &p.log_weights(), false)?;
        self.run_between()?;
        self.done += 1;
        Ok(stats)
    }

    fn set_first_chain(&mut self, first: usize) -> Result<()> {
        self.first_chain = crate::sampler::first_chain_word(first, self.chains)?;
        self.independence.set_first_chain(first)?;
        match &mut self.between {
            Some(b) => b.set_first_chain(first),
            None => Ok(()),
        }
    }

    fn updates_done(&self) -> u64 {
        self.done
    }

    fn site_updates(&self) -> u64 {
        let own = (self.chains * self.target.volume()) as u64;
        match &self.between {
            Some(b) => own + b.site_updates(),
            None => own,
        }
    }

    fn measure(&mut self) -> Result<Vec<ChainMeasurement>> {
        let phi = self.fields()?;
        let v = self.target.volume();
        Ok(phi.chunks(v).map(|c| self.theory.measure(c)).collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.target.to_theory(self.independence.current()))
    }

    fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        // The chain starts from its first proposal (accepted unconditionally): a start far from
        // what the flow proposes could carry a huge weight w = e^{−S}/q and stall the chain for
        // many updates. The given configuration is kept until then.
        self.independence.set(&self.target.to_flow(phi), None)
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(self
            .independence
            .state()
            .into_iter()
            .chain(match &self.between {
                Some(b) => b.state()?,
                None => Vec::new(),
            })
            .collect())
    }

    fn restore(&mut self, done: u64, state: &[(String, Vec<f64>)]) -> Result<()> {
        self.independence.restore(state)?;
        if let Some(between) = self.between.as_mut() {
            between.restore(done, state)?;
        }
        self.done = done;
        Ok(())
    }
}
