//! Reading a production run's directory back as training data: the theory from its
//! `summary.json` and the configurations of its `configs.npy` (`[saved, chains, extents…]`).
//! Samplers trained on an ensemble (diffusion models; autoregressive networks by maximum
//! likelihood) share these, so a run written by `latticeml sample` is read one way everywhere.

use std::path::Path;

use super::json::Json;
use super::{npy, read};
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::theory::TheoryConfig;

/// The theory and couplings of the run in `dir`, from its `summary.json`.
pub fn theory_of_run(dir: &Path) -> Result<TheoryConfig> {
    let path = dir.join("summary.json");
    let bad = |why: &str| Error::BadFile {
        path: path.display().to_string(),
        reason: format!("{why} (is this the directory of a latticeml sample run?)"),
    };
    let text = String::from_utf8(read(&path)?).map_err(|_| bad("not UTF-8"))?;
    let j = Json::parse(&text).map_err(|e| bad(&e.to_string()))?;
    let extents: Vec<String> = match j.get("lattice") {
        Some(Json::Arr(v)) => v
            .iter()
            .map(|x| match x {
                Json::Num(n) if *n >= 1.0 && n.fract() == 0.0 => Ok(format!("{n}")),
                _ => Err(bad("bad lattice")),
            })
            .collect::<Result<_>>()?,
        _ => return Err(bad("no lattice")),
    };
    let mut record = vec![
        (
            "theory".to_string(),
            j.get("theory").cloned().unwrap_or(Json::Null),
        ),
        ("lattice".to_string(), Json::Str(extents.join("x"))),
    ];
    match j.get("parameters") {
        Some(Json::Obj(p)) => record.extend(p.iter().cloned()),
        _ => return Err(bad("no parameters")),
    }
    TheoryConfig::from_json(&Json::Obj(record)).map_err(|e| bad(&e.to_string()))
}

/// The configurations of the run in `dir`, `[N][V]` (every saved configuration of every chain),
/// checked to be finite configurations of `lattice`.
pub fn configs_of_run(dir: &Path, lattice: &Lattice) -> Result<Vec<f64>> {
    let path = dir.join("configs.npy");
    let bad = |reason: String| Error::BadFile {
        path: path.display().to_string(),
        reason,
    };
    let (shape, data) = npy::decode(&read(&path)?).map_err(|e| bad(e.to_string()))?;
    let v = lattice.volume();
    let d = lattice.extents().len();
    if shape.len() < d + 1 || shape[shape.len() - d..] != lattice.extents()[..] || data.is_empty() {
        return Err(bad(format!(
            "shape {shape:?} is not [saved, chains, {:?}]",
            lattice.extents()
        )));
    }
    if data.iter().any(|x| !x.is_finite()) || data.len() % v != 0 {
        return Err(bad("non-finite or incomplete configurations".into()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "latticeml-test-rundir-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_theory_and_configurations_of_a_run_are_read_back() {
        let d = dir("xy");
        let summary =
            r#"{"theory": "xy", "parameters": {"beta": 1.1}, "lattice": [2, 3], "chains": 1}"#;
        std::fs::write(d.join("summary.json"), summary).unwrap();
        let lattice = Lattice::new(&[2, 3]).unwrap();
        let theory = theory_of_run(&d).unwrap();
        assert_eq!(
            theory,
            TheoryConfig::Xy {
                lattice: lattice.clone(),
                beta: 1.1
            }
        );
        let x: Vec<f64> = (0..12).map(|i| i as f64 * 0.1).collect();
        std::fs::write(d.join("configs.npy"), npy::encode(&[2, 1, 2, 3], &x)).unwrap();
        assert_eq!(configs_of_run(&d, &lattice).unwrap(), x);
        // A different lattice, a NaN and a summary without couplings are errors naming the file.
        let other = Lattice::new(&[3, 2]).unwrap();
        assert!(configs_of_run(&d, &other)
            .unwrap_err()
            .to_string()
            .contains("shape"));
        let mut nan = x.clone();
        nan[5] = f64::NAN;
        std::fs::write(d.join("configs.npy"), npy::encode(&[2, 1, 2, 3], &nan)).unwrap();
        assert!(configs_of_run(&d, &lattice).is_err());
        std::fs::write(
            d.join("summary.json"),
            r#"{"theory": "xy", "lattice": [2, 3]}"#,
        )
        .unwrap();
        let err = theory_of_run(&d).unwrap_err().to_string();
        assert!(
            err.contains("summary.json") && err.contains("parameters"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
