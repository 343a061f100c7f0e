//! `latticeml can scan`: trains a network at each β of a list (the first from scratch with
//! annealing, every later one warm-started from the previous β's weights), draws an exact
//! ensemble from each by independence Metropolis, and reports the helicity modulus Υ and the
//! vortex density against T = 1/β. The Kosterlitz–Thouless temperature is estimated where Υ(T)
//! crosses 2T/π (the universal jump, Nelson and Kosterlitz, PRL 39, 1201 (1977)), by linear
//! interpolation between the two temperatures around the crossing. Files: `scan.csv`,
//! `summary.json`, `scan.svg`, a vortex map `vortices_beta_B.svg` of one configuration per β, and
//! every model in `models/beta_B/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::job::{train, CanTrainJob};
use super::sampler::CanSampler;
use super::symmetry::Symmetry;
use crate::analysis::Estimate;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::hmc::Start;
use crate::io::json::Json;
use crate::io::outdir::{Claim, Manifest, OutputDir};
use crate::io::write_atomic;
use crate::lattice::Lattice;
use crate::sampler::Sampler;
use crate::theory::xy::Xy;
use crate::theory::{Theory, TheoryConfig};

/// Everything `can scan` is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanConfig {
    /// The lattice (2D, even extents).
    pub lattice: Lattice,
    /// The couplings, in the order trained.
    pub betas: Vec<f64>,
    /// The training of the first β (its theory is replaced per β).
    pub job: CanTrainJob,
    /// Training steps at every later β.
    pub warm_steps: u64,
    /// Independence-Metropolis draws per β (after `therm` per chain).
    pub samples: u64,
    /// Chains of the independence Metropolis runs.
    pub chains: usize,
    /// The symmetries the proposals are averaged over ([`super::symmetry`]).
    pub symmetry: Symmetry,
}

/// One β's results.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanPoint {
    /// The coupling.
    pub beta: f64,
    /// Energy per site, helicity modulus, vortex density (Γ-method errors).
    pub energy: Estimate,
    /// Helicity modulus Υ along axis 0.
    pub helicity: Estimate,
    /// Vortices and antivortices per site.
    pub vortex_density: Estimate,
    /// Acceptance of the independence Metropolis chains.
    pub acceptance: f64,
    /// ESS per draw.
    pub ess_per_sample: f64,
    /// Reweighted free energy per site with its error.
    pub free_energy: (f64, f64),
}

/// Updates per chain discarded before measuring.
const THERM: u64 = 10;

/// Parses `first:last:step` or a comma-separated list of couplings, all positive.
pub fn parse_betas(s: &str) -> Result<Vec<f64>> {
    let betas = crate::io::parse_values(s, "betas", "0.6:1.4:0.1")?;
    if betas.iter().any(|b| *b <= 0.0) {
        return Err(Error::InvalidInput(format!(
            "--betas {s}: every coupling must be positive"
        )));
    }
    Ok(betas)
}

fn label(beta: f64) -> String {
    format!("beta_{beta:.4}")
}

impl ScanConfig {
    /// Checks everything before any file is touched.
    pub fn validate(&self) -> Result<()> {
        if self.betas.is_empty() || self.samples == 0 || self.chains == 0 || self.warm_steps == 0 {
            return Err(Error::InvalidInput(
                "--betas, --samples, --chains and --warm-steps must not be empty or 0".into(),
            ));
        }
        for &beta in &self.betas {
            let mut job = self.job.clone();
            job.theory = self.theory(beta);
            job.validate()?;
        }
        Ok(())
    }

    fn theory(&self, beta: f64) -> TheoryConfig {
        TheoryConfig::Xy {
            lattice: self.lattice.clone(),
            beta,
        }
    }

    /// The files the scan writes.
    fn files(&self) -> Vec<String> {
        let mut f: Vec<String> = ["scan.csv", "summary.json", "scan.svg", "models/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        f.extend(
            self.betas
                .iter()
                .map(|&b| format!("vortices_{}.svg", label(b))),
        );
        f
    }
}

/// Runs the scan into `out`; `progress(done, total)` after every β.
pub fn scan(
    cfg: &ScanConfig,
    device: &Device,
    out: &Path,
    claim: Claim,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<ScanPoint>> {
    cfg.validate()?;
    let manifest = Manifest {
        command: "can scan".into(),
        parameters: format!("{cfg:?}\n"),
        files: cfg.files(),
    };
    let dir = OutputDir::claim(out, &manifest, claim)?;
    let out = dir.path();
    let mut points = Vec::new();
    let mut previous: Option<PathBuf> = None;
    for (i, &beta) in cfg.betas.iter().enumerate() {
        let model: PathBuf = out.join("models").join(label(beta));
        let mut job = cfg.job.clone();
        job.theory = cfg.theory(beta);
        if i > 0 {
            job.steps = cfg.warm_steps;
            job.train.anneal = 0.0;
        }
        job.init = previous.replace(model.clone());
        train(&job, device, &model, Claim::Force, &mut |_, _| {})?;
        let (point, last) = measure(cfg, beta, &model, device)?;
        let xy = Xy::new(cfg.lattice.clone(), beta)?;
        write_atomic(
            &out.join(format!("vortices_{}.svg", label(beta))),
            vortex_map(&xy, &last).as_bytes(),
        )?;
        points.push(point);
        progress(i as u64 + 1, cfg.betas.len() as u64);
    }
    write_atomic(&out.join("scan.csv"), csv(&points).as_bytes())?;
    write_atomic(&out.join("scan.svg"), svg(&points).as_bytes())?;
    let t_kt = kt_crossing(&points);
    let summary = Json::obj([
        ("lattice", Json::Str(cfg.lattice.label())),
        (
            "t_kt",
            t_kt.map_or(Json::Null, |(t, e)| {
                Json::obj([("value", Json::Num(t)), ("error", Json::Num(e))])
            }),
        ),
        ("points", Json::Arr(points.iter().map(point_json).collect())),
    ]);
    write_atomic(&out.join("summary.json"), summary.pretty().as_bytes())?;
    Ok(points)
}

/// An exact ensemble at `beta` from the model in `dir`: the point and the last configuration of
/// chain 0.
fn measure(
    cfg: &ScanConfig,
    beta: f64,
    dir: &Path,
    device: &Device,
) -> Result<(ScanPoint, Vec<f64>)> {
    let theory: Arc<dyn Theory> = cfg.theory(beta).build()?;
    let mut s = CanSampler::new(theory.clone(), dir, cfg.chains, 1, true, device)?;
    s.symmetrise(cfg.symmetry)?;
    s.set_fields(&theory.start_fields(Start::Hot, 0..cfg.chains, 1))?;
    let per_chain = cfg.samples.div_ceil(cfg.chains as u64);
    let names = theory.primary_names().len();
    let mut series = vec![vec![Vec::new(); names]; cfg.chains];
    let (mut accepted, mut offered) = (0.0, 0.0);
    for t in 0..THERM + per_chain {
        let stats = s.update()?;
        if t < THERM {
            continue;
        }
        accepted += stats.accepted.iter().sum::<f64>();
        offered += stats.accepted.len() as f64;
        for (chain, m) in s.measure()?.into_iter().enumerate() {
            for (k, v) in m.primaries.into_iter().enumerate() {
                series[chain][k].push(v);
            }
        }
    }
    let est = theory.summarize(&series);
    let get = |n: &str| {
        est.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, e)| *e)
            .ok_or_else(|| Error::InvalidInput(format!("the XY summary lacks {n}")))
    };
    let v = theory.lattice().volume();
    let last = s.fields()?[..v].to_vec();
    Ok((
        ScanPoint {
            beta,
            energy: get("energy")?,
            helicity: get("helicity")?,
            vortex_density: get("vortex_density")?,
            acceptance: accepted / offered.max(1.0),
            ess_per_sample: s.ess_per_sample(),
            free_energy: s.free_energies()[1],
        },
        last,
    ))
}

/// T_KT where Υ(T) − 2T/π changes sign (linear interpolation), with the spread from moving Υ by
/// its error at the two temperatures; None without a crossing.
pub fn kt_crossing(points: &[ScanPoint]) -> Option<(f64, f64)> {
    let mut by_t: Vec<(f64, f64, f64)> = points
        .iter()
        .map(|p| (1.0 / p.beta, p.helicity.value, p.helicity.error))
        .collect();
    by_t.sort_by(|a, b| a.0.total_cmp(&b.0));
    let cross = |shift: f64| -> Option<f64> {
        by_t.windows(2).find_map(|w| {
            let f = |(t, y, e): (f64, f64, f64)| y + shift * e - 2.0 * t / std::f64::consts::PI;
            let (fa, fb) = (f(w[0]), f(w[1]));
            (fa >= 0.0 && fb < 0.0).then(|| w[0].0 + (w[1].0 - w[0].0) * fa / (fa - fb))
        })
    };
    let t = cross(0.0)?;
    let spread = [cross(1.0), cross(-1.0)]
        .iter()
        .flatten()
        .map(|x| (x - t).abs())
        .fold(0.0, f64::max);
    Some((t, spread))
}

fn point_json(p: &ScanPoint) -> Json {
    let e =
        |x: &Estimate| Json::obj([("value", Json::Num(x.value)), ("error", Json::Num(x.error))]);
    Json::obj([
        ("beta", Json::Num(p.beta)),
        ("T", Json::Num(1.0 / p.beta)),
        ("energy", e(&p.energy)),
        ("helicity", e(&p.helicity)),
        ("vortex_density", e(&p.vortex_density)),
        ("acceptance", Json::Num(p.acceptance)),
        ("ess_per_sample", Json::Num(p.ess_per_sample)),
        (
            "free_energy",
            Json::obj([
                ("value", Json::Num(p.free_energy.0)),
                ("error", Json::Num(p.free_energy.1)),
            ]),
        ),
    ])
}

fn csv(points: &[ScanPoint]) -> String {
    let mut s = String::from(
        "beta,T,energy,energy_error,helicity,helicity_error,vortex_density,vortex_density_error,\
         acceptance,ess_per_sample,free_energy,free_energy_error\n",
    );
    for p in points {
        s += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            p.beta,
            1.0 / p.beta,
            p.energy.value,
            p.energy.error,
            p.helicity.value,
            p.helicity.error,
            p.vortex_density.value,
            p.vortex_density.error,
            p.acceptance,
            p.ess_per_sample,
            p.free_energy.0,
            p.free_energy.1
        );
    }
    s
}

/// Υ (blue, with error bars) and the vortex density ×10 (red) against T, and the line 2T/π.
fn svg(points: &[ScanPoint]) -> String {
    let (w, h, m) = (640.0, 420.0, 60.0);
    let ts: Vec<f64> = points.iter().map(|p| 1.0 / p.beta).collect();
    let (t0, t1) = (
        ts.iter().copied().fold(f64::INFINITY, f64::min),
        ts.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (t0, t1) = if t1 > t0 {
        (t0, t1)
    } else {
        (t0 - 0.5, t0 + 0.5)
    };
    let x = |t: f64| m + (t - t0) / (t1 - t0) * (w - 2.0 * m);
    let y = |v: f64| h - m - v.clamp(0.0, 1.2) / 1.2 * (h - 2.0 * m);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n<rect x=\"{m}\" y=\"{m}\" width=\"{}\" height=\"{}\" fill=\"none\" \
         stroke=\"black\"/>\n",
        w - 2.0 * m,
        h - 2.0 * m
    );
    for tick in [0.0, 0.4, 0.8, 1.2] {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{tick:.1}</text>\n",
            m - 6.0,
            y(tick) + 4.0
        );
    }
    for &t in &ts {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{t:.3}</text>\n",
            x(t),
            h - m + 14.0
        );
    }
    s += &format!(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"gray\" stroke-dasharray=\"5,4\"/>\n",
        x(t0),
        y(2.0 * t0 / std::f64::consts::PI),
        x(t1),
        y(2.0 * t1 / std::f64::consts::PI)
    );
    for (p, &t) in points.iter().zip(&ts) {
        let (v, e) = (p.helicity.value, p.helicity.error);
        s += &format!(
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"steelblue\"/>\
             <circle cx=\"{0}\" cy=\"{3}\" r=\"4\" fill=\"steelblue\"/>\n",
            x(t),
            y(v - e),
            y(v + e),
            y(v)
        );
        s += &format!(
            "<rect x=\"{}\" y=\"{}\" width=\"7\" height=\"7\" fill=\"firebrick\"/>\n",
            x(t) - 3.5,
            y(10.0 * p.vortex_density.value) - 3.5
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">T = 1/β</text>\n\
         <text x=\"{m}\" y=\"{}\" fill=\"steelblue\">● helicity modulus Υ</text>\
         <text x=\"{}\" y=\"{}\" fill=\"firebrick\">■ vortex density × 10</text>\
         <text x=\"{}\" y=\"{}\" fill=\"gray\">- - 2T/π</text>\n\
         <text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">Υ, 10 × vortices per site</text>\n</svg>\n",
        w / 2.0,
        h - 20.0,
        m - 10.0,
        m + 180.0,
        m - 10.0,
        m + 370.0,
        m - 10.0,
        h / 2.0,
        h / 2.0
    );
    s
}

/// A configuration's angles as arrows on the lattice, vortices (+1) as red and antivortices (−1)
/// as blue discs at the centres of their plaquettes.
pub fn vortex_map(xy: &Xy, th: &[f64]) -> String {
    let lat = Theory::lattice(xy);
    let (rows, cols) = (lat.extents()[0], lat.extents()[1]);
    let cell = (560.0 / rows.max(cols) as f64).clamp(6.0, 40.0);
    let (w, h) = (cols as f64 * cell + 20.0, rows as f64 * cell + 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">\n<rect \
         width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let centre = |r: usize, c: usize| {
        (
            10.0 + (c as f64 + 0.5) * cell,
            10.0 + (r as f64 + 0.5) * cell,
        )
    };
    for (x, &t) in th.iter().enumerate() {
        let (cx, cy) = centre(x / cols, x % cols);
        let (dx, dy) = (0.4 * cell * t.cos(), -0.4 * cell * t.sin());
        s += &format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\" \
             stroke-width=\"1.2\"/><circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\"/>\n",
            cx - dx,
            cy - dy,
            cx + dx,
            cy + dy,
            cx + dx,
            cy + dy
        );
    }
    // Plaquette x spans rows r, r+1 (axis 0) and columns c, c+1 (axis 1): its centre is half a
    // cell down and right of site x.
    for (x, &wnd) in xy.windings(th).iter().enumerate() {
        if wnd == 0 {
            continue;
        }
        let (cx, cy) = centre(x / cols, x % cols);
        let colour = if wnd > 0 { "firebrick" } else { "steelblue" };
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{:.1}\" fill=\"{colour}\" fill-opacity=\"0.6\"/>\n",
            cx + 0.5 * cell,
            cy + 0.5 * cell,
            0.3 * cell
        );
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(beta: f64, hel: f64) -> ScanPoint {
        let e = |v| Estimate {
            value: v,
            error: 0.01,
            tau_int: 0.5,
            tau_int_error: 0.0,
            note: None,
        };
        ScanPoint {
            beta,
            energy: e(-1.0),
            helicity: e(hel),
            vortex_density: e(0.01),
            acceptance: 0.5,
            ess_per_sample: 0.3,
            free_energy: (-2.0, 0.001),
        }
    }

    #[test]
    fn betas_parse_and_the_kt_crossing_interpolates() {
        assert_eq!(parse_betas("0.6:1.0:0.2").unwrap().len(), 3);
        assert_eq!(parse_betas("1.2,0.8").unwrap(), vec![1.2, 0.8]);
        for bad in ["", "0.6:0.4:0.1", "1:2:0", "a,b", "-1", "1:2"] {
            assert!(parse_betas(bad).is_err(), "{bad}");
        }
        // Υ = 0.8 at T = 0.8 (above 2T/π = 0.509), 0.2 at T = 1 (below 0.637): the crossing of
        // the chord 0.8 − 3(T − 0.8) with 2T/π.
        let pts = [point(1.0, 0.2), point(1.25, 0.8)];
        let (t, spread) = kt_crossing(&pts).unwrap();
        let want = (0.8 + 2.4) / (3.0 + 2.0 / std::f64::consts::PI);
        assert!((t - want).abs() < 1e-12, "{t} vs {want}");
        assert!(spread > 0.0 && spread < 0.02);
        assert!(kt_crossing(&[point(1.0, 0.9), point(1.25, 0.9)]).is_none());
    }
}
