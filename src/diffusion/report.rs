//! `histograms.svg` of a diffusion run: the distributions of the magnetisation and the action
//! density of the model's configurations beside those of its training ensemble, both read from
//! the runs' `observables.csv` (thermalisation rows left out).

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::svg::{histograms, Panel, Series};
use crate::io::{read, write_atomic};

/// The figure's file name in the run directory.
pub const HISTOGRAM_FILE: &str = "histograms.svg";

/// The observables drawn, by their `observables.csv` column names.
const QUANTITIES: [(&str, &str); 2] = [
    ("M", "magnetisation per site M"),
    ("action_density", "action density S/V"),
];

/// The measured columns `names` of a run's `observables.csv`, thermalisation rows left out.
pub fn columns(run: &Path, names: &[&str]) -> Result<Vec<Vec<f64>>> {
    let path = run.join("observables.csv");
    let bad = |why: String| Error::BadFile {
        path: path.display().to_string(),
        reason: why,
    };
    let text = String::from_utf8(read(&path)?).map_err(|_| bad("not UTF-8".into()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let index = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| bad(format!("no column {name}")))
    };
    let (therm, wanted) = (
        index("thermalisation")?,
        names.iter().map(|n| index(n)).collect::<Result<Vec<_>>>()?,
    );
    let mut out = vec![Vec::new(); names.len()];
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != header.len() {
            return Err(bad(format!("line {} has {} cells", i + 2, cells.len())));
        }
        if cells[therm] == "1" {
            continue;
        }
        for (col, &k) in out.iter_mut().zip(&wanted) {
            col.push(
                cells[k]
                    .parse()
                    .map_err(|_| bad(format!("line {}", i + 2)))?,
            );
        }
    }
    Ok(out)
}

/// Writes `run/histograms.svg`: the model's draws in `run` against the training ensemble in
/// `data` (or alone, when `data` is no longer readable: the reason is returned).
pub fn write_histograms(run: &Path, data: &Path) -> Result<Option<String>> {
    let names = QUANTITIES.map(|q| q.0);
    let model = columns(run, &names)?;
    let (training, missing) = match columns(data, &names) {
        Ok(c) => (c, None),
        Err(e) => (vec![Vec::new(); names.len()], Some(e.to_string())),
    };
    let panels: Vec<Panel> = QUANTITIES
        .iter()
        .zip(model.iter().zip(&training))
        .map(|((_, title), (m, t))| Panel {
            title,
            series: vec![
                Series {
                    label: "training ensemble",
                    colour: "#777777",
                    values: t,
                },
                Series {
                    label: "diffusion model",
                    colour: "#1f5fbf",
                    values: m,
                },
            ],
        })
        .collect();
    write_atomic(
        &run.join(HISTOGRAM_FILE),
        histograms(&panels, 40).as_bytes(),
    )?;
    Ok(missing)
}
