//! The model directory of an autoregressive network: `can.json` (theory, architecture, training
//! record), `model.safetensors` (weights) and `optimizer.safetensors` (Adam's moments).

use std::path::Path;

use super::data::DataTerm;
use super::model::{Can, CanConfig};
use super::train::CanTrainConfig;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::json::{Fields, Json};
use crate::io::{read, write_atomic};
use crate::nn::layers::Activation;
use crate::nn::{safetensors, Ctx, ParamStore};
use crate::theory::xy::Xy;
use crate::theory::TheoryConfig;

/// The weights.
pub const MODEL_FILE: &str = "model.safetensors";
/// The architecture, target and training record.
pub const RECORD_FILE: &str = "can.json";
/// Adam's moments, for resuming training.
pub const OPTIMISER_FILE: &str = "optimizer.safetensors";
const FORMAT: &str = "latticeml-can-1";

/// What a model directory records besides the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct CanRecord {
    /// The theory (XY) the network targets.
    pub theory: TheoryConfig,
    /// The architecture.
    pub net: CanConfig,
    /// The training hyper-parameters.
    pub train: CanTrainConfig,
    /// The forward-KL term on an ensemble, when the training has one.
    pub data: Option<DataTerm>,
    /// Training steps done.
    pub steps: u64,
}

impl CanRecord {
    /// The record as JSON.
    pub fn to_json(&self) -> Json {
        let n = |v: f64| Json::Num(v);
        let s = |v: u64| Json::Str(v.to_string());
        let slope = match self.net.activation {
            Activation::LeakyRelu(a) => a,
            _ => 0.0,
        };
        let mut record = Json::obj([
            ("format", Json::Str(FORMAT.into())),
            ("theory", self.theory.to_json()),
            ("channels", n(self.net.channels as f64)),
            ("residual", n(self.net.residual as f64)),
            ("kernel", n(self.net.kernel as f64)),
            ("components", n(self.net.components as f64)),
            ("activation", Json::Str(self.net.activation.name().into())),
            ("slope", n(slope)),
            ("init_seed", s(self.net.seed)),
            ("batch", n(self.train.batch as f64)),
            ("lr", n(self.train.lr)),
            ("seed", s(self.train.seed)),
            ("anneal", n(self.train.anneal)),
            ("steps", s(self.steps)),
        ]);
        // Written only when set, so records (and resume identities) of networks without it are
        // what they were before the option existed.
        if let Json::Obj(items) = &mut record {
            if self.net.running_means {
                items.push(("running_means".into(), Json::Bool(true)));
            }
            if let Some(d) = &self.data {
                items.push(("data".into(), Json::Str(d.run.display().to_string())));
                items.push(("data_weight".into(), n(d.weight)));
            }
        }
        record
    }

    /// Reads a record; every missing or malformed member is an error naming it.
    pub fn from_json(j: &Json) -> Result<Self> {
        let f = Fields::new(j, RECORD_FILE);
        let bad = |k: &str| f.bad(k);
        let (num, int, big) = (|k: &str| f.num(k), |k: &str| f.count(k), |k: &str| f.big(k));
        f.format(FORMAT)?;
        let activation = match j.get("activation") {
            Some(Json::Str(a)) => {
                Activation::parse(a, num("slope")?).map_err(|_| bad("activation"))?
            }
            _ => return Err(bad("activation")),
        };
        let record = CanRecord {
            theory: TheoryConfig::from_json(j.get("theory").ok_or_else(|| bad("theory"))?)?,
            net: CanConfig {
                channels: int("channels")?,
                residual: int("residual")?,
                kernel: int("kernel")?,
                components: int("components")?,
                activation,
                running_means: f.flag_or("running_means", false)?,
                seed: big("init_seed")?,
            },
            train: CanTrainConfig {
                batch: int("batch")?,
                lr: num("lr")?,
                seed: big("seed")?,
                anneal: num("anneal")?,
            },
            data: match f.get("data") {
                None => None,
                Some(Json::Str(run)) => Some(DataTerm {
                    run: run.into(),
                    weight: num("data_weight")?,
                }),
                Some(_) => return Err(bad("data")),
            },
            steps: big("steps")?,
        };
        record.net.validate()?;
        if let Some(d) = &record.data {
            d.validate().map_err(|_| bad("data_weight"))?;
        }
        record.train.validate()?;
        record.xy()?;
        Ok(record)
    }

    /// Reads `dir/can.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(RECORD_FILE);
        let text = String::from_utf8(read(&path)?).map_err(|_| Error::BadFile {
            path: path.display().to_string(),
            reason: "not UTF-8".into(),
        })?;
        Json::parse(&text)
            .and_then(|j| Self::from_json(&j))
            .map_err(|e| Error::BadFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Writes `dir/can.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(RECORD_FILE), self.to_json().pretty().as_bytes())
    }

    /// The XY model the network targets (only XY is supported).
    pub fn xy(&self) -> Result<Xy> {
        xy_of(&self.theory)
    }
}

/// The XY model of a theory configuration, or an error: the networks model angles.
pub fn xy_of(theory: &TheoryConfig) -> Result<Xy> {
    match theory {
        TheoryConfig::Xy { lattice, beta } if *beta > 0.0 => Xy::new(lattice.clone(), *beta),
        TheoryConfig::Xy { beta, .. } => Err(Error::InvalidInput(format!(
            "beta = {beta}: the variational free energy needs beta > 0"
        ))),
        other => Err(Error::InvalidInput(format!(
            "the autoregressive networks model the 2D XY model (--theory xy), not {}",
            other.to_json().pretty().replace('\n', "")
        ))),
    }
}

/// A trained network loaded from its directory.
pub struct LoadedCan {
    /// The record.
    pub record: CanRecord,
    /// The network.
    pub can: Can,
    /// Its weights.
    pub params: ParamStore<f32>,
}

/// Loads `dir/can.json` and `dir/model.safetensors` onto `device`, checking that the weights fit.
pub fn load(dir: &Path, device: &Device) -> Result<LoadedCan> {
    let record = CanRecord::load(dir)?;
    let xy = record.xy()?;
    let can = Can::shape_only(&record.net, crate::theory::Theory::lattice(&xy))?;
    let ctx = Ctx::<f32>::new(device.clone());
    let path = dir.join(MODEL_FILE);
    let params = safetensors::load(&ctx, &path)?;
    can.check_store(&params).map_err(|e| Error::BadFile {
        path: path.display().to_string(),
        reason: format!("{e}; the file does not belong to this {RECORD_FILE}"),
    })?;
    Ok(LoadedCan {
        record,
        can,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::Lattice;

    fn record(running_means: bool) -> CanRecord {
        CanRecord {
            theory: TheoryConfig::Xy {
                lattice: Lattice::new(&[4, 4]).unwrap(),
                beta: 1.0,
            },
            net: CanConfig {
                running_means,
                ..CanConfig::default()
            },
            train: CanTrainConfig {
                batch: 8,
                lr: 1e-3,
                seed: 3,
                anneal: 0.99,
            },
            data: None,
            steps: 10,
        }
    }

    #[test]
    fn the_running_means_flag_round_trips_and_older_records_lack_it() {
        for means in [false, true] {
            let j = record(means).to_json();
            assert_eq!(CanRecord::from_json(&j).unwrap(), record(means));
            // Records without the option are written as before it existed.
            assert_eq!(j.get("running_means").is_some(), means);
        }
        let text = record(true)
            .to_json()
            .pretty()
            .replace("\"running_means\": true", "\"running_means\": 1");
        let err = CanRecord::from_json(&Json::parse(&text).unwrap()).unwrap_err();
        assert!(err.to_string().contains("running_means"), "{err}");
    }
}
