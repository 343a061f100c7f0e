//! Output files of a reconstruction: `rho.csv`, `rho.npy`, `fit.csv`, `summary.json`, `rho.svg`.

use std::path::Path;

use super::data::Correlator;
use super::{Metrics, Reconstruction};
use crate::error::Result;
use crate::io::json::Json;
use crate::io::{npy, write_atomic};

/// Writes one method's files into `dir` (for `--method all`, one sub-directory per method).
pub fn write(
    dir: &Path,
    r: &Reconstruction,
    data: &Correlator,
    truth: Option<&[f64]>,
    metrics: Option<&Metrics>,
    extra: &[(&str, Json)],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::io::io_err(dir, e))?;
    let mut csv = String::from("omega,rho,rho_lo,rho_hi\n");
    for j in 0..r.omega.len() {
        let (lo, hi) = r
            .band
            .as_ref()
            .map_or((r.rho[j], r.rho[j]), |(l, h)| (l[j], h[j]));
        csv.push_str(&format!(
            "{:e},{:e},{:e},{:e}\n",
            r.omega[j], r.rho[j], lo, hi
        ));
    }
    write_atomic(&dir.join("rho.csv"), csv.as_bytes())?;
    let mut cols = vec![r.omega.clone(), r.rho.clone()];
    if let Some((lo, hi)) = &r.band {
        cols.push(lo.clone());
        cols.push(hi.clone());
    }
    let arr: Vec<f64> = (0..r.omega.len())
        .flat_map(|j| cols.iter().map(move |c| c[j]))
        .collect();
    write_atomic(
        &dir.join("rho.npy"),
        &npy::encode(&[r.omega.len(), cols.len()], &arr),
    )?;
    let mut fit = String::from("x,data,reproduced,error\n");
    for i in 0..data.x.len() {
        fit.push_str(&format!(
            "{:e},{:e},{:e},{:e}\n",
            data.x[i], data.value[i], r.reproduced[i], data.error[i]
        ));
    }
    write_atomic(&dir.join("fit.csv"), fit.as_bytes())?;
    write_atomic(
        &dir.join("summary.json"),
        summary(r, metrics, extra).pretty().as_bytes(),
    )?;
    write_atomic(&dir.join("rho.svg"), svg(r, truth).as_bytes())
}

/// The summary object of one method.
pub fn summary(r: &Reconstruction, m: Option<&Metrics>, extra: &[(&str, Json)]) -> Json {
    let mut items: Vec<(String, Json)> = vec![
        ("method".into(), Json::Str(r.method.clone())),
        ("chi2".into(), Json::Num(r.chi2)),
        ("chi2_per_point".into(), Json::Num(r.chi2_per_point)),
        ("seconds".into(), Json::Num(r.seconds)),
    ];
    if let Some((k, v)) = r.choice {
        items.push((k.into(), Json::Num(v)));
    }
    if let Some(w) = &r.warning {
        items.push(("warning".into(), Json::Str(w.clone())));
    }
    if let Some(m) = m {
        let peaks = Json::Arr(
            m.peaks
                .iter()
                .map(|(p, w)| Json::obj([("position", Json::Num(*p)), ("width", Json::Num(*w))]))
                .collect(),
        );
        items.push((
            "metrics".into(),
            Json::obj([
                ("l2", Json::Num(m.l2)),
                ("relative_l2", Json::Num(m.relative_l2)),
                ("mse", Json::Num(m.mse)),
                ("kl", Json::Num(m.kl)),
                ("peaks", peaks),
                ("band_coverage", m.coverage.map_or(Json::Null, Json::Num)),
            ]),
        ));
    }
    for (k, v) in extra {
        items.push((k.to_string(), v.clone()));
    }
    Json::Obj(items)
}

/// A self-contained SVG: the band (shaded), the reconstruction, and the truth where known.
pub fn svg(r: &Reconstruction, truth: Option<&[f64]>) -> String {
    let (w, h, pad) = (720.0, 420.0, 50.0);
    let mut ys: Vec<f64> = r.rho.clone();
    if let Some((lo, hi)) = &r.band {
        ys.extend(lo.iter().chain(hi));
    }
    if let Some(t) = truth {
        ys.extend_from_slice(t);
    }
    let (ymin, ymax) = (
        ys.iter().cloned().fold(0.0, f64::min),
        ys.iter().cloned().fold(f64::MIN_POSITIVE, f64::max),
    );
    let (x0, x1) = (r.omega[0], r.omega[r.omega.len() - 1]);
    let px = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
    let py = |y: f64| h - pad - (y - ymin) / (ymax - ymin) * (h - 2.0 * pad);
    let path = |v: &[f64]| -> String {
        r.omega
            .iter()
            .zip(v)
            .enumerate()
            .map(|(i, (x, y))| {
                format!(
                    "{}{:.2},{:.2}",
                    if i == 0 { "M" } else { " L" },
                    px(*x),
                    py(*y)
                )
            })
            .collect()
    };
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    if let Some((lo, hi)) = &r.band {
        let mut poly: Vec<String> = r
            .omega
            .iter()
            .zip(hi)
            .map(|(x, y)| format!("{:.2},{:.2}", px(*x), py(*y)))
            .collect();
        poly.extend(
            r.omega
                .iter()
                .zip(lo)
                .rev()
                .map(|(x, y)| format!("{:.2},{:.2}", px(*x), py(*y))),
        );
        s.push_str(&format!(
            "<polygon points=\"{}\" fill=\"#9ecae1\" fill-opacity=\"0.6\" stroke=\"none\"/>\n",
            poly.join(" ")
        ));
    }
    if let Some(t) = truth {
        s.push_str(&format!("<path d=\"{}\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n", path(t)));
    }
    s.push_str(&format!(
        "<path d=\"{}\" fill=\"none\" stroke=\"#08519c\" stroke-width=\"2\"/>\n",
        path(&r.rho)
    ));
    s.push_str(&format!(
        "<line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n",
        b = h - pad,
        r = w - pad
    ));
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">ω</text>\n",
        w / 2.0,
        h - 12.0
    ));
    s.push_str(&format!("<text x=\"{pad}\" y=\"{}\">{x0:.3}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{x1:.3}</text>\n", h - pad + 18.0, w - pad, h - pad + 18.0));
    s.push_str(&format!("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{ymax:.3}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{ymin:.3}</text>\n", pad - 4.0, pad + 4.0, pad - 4.0, h - pad));
    let legend = if truth.is_some() {
        "— reconstruction   - - truth   ▒ band"
    } else {
        "— reconstruction   ▒ band"
    };
    s.push_str(&format!(
        "<text x=\"{}\" y=\"24\">ρ(ω), {}: {legend}</text>\n</svg>\n",
        pad, r.method
    ));
    s
}
