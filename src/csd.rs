//! Critical slowing down: for each algorithm and lattice size, a tuned run of 2D (or d-dim) φ⁴
//! measuring the integrated autocorrelation times (Γ-method) of χ₂, |M|, the energy and the
//! slowest measured mode, the wall time per update and the cost per independent sample
//! (seconds per update × 2τ_int); then τ_int ∝ L^z fitted per algorithm. The study behind
//! `latticeml csd`; files `csd.csv`, `summary.json`, `csd.svg`.
//!
//! Tuning rules (a study is only as good as its worst-tuned competitor):
//! - `hmc`: Omelyan 2MN, trajectory length τ = max(1, L/16) (growing with the correlation length,
//!   which is of order L near the critical point), MD steps 2·2^k with the smallest k at which 20
//!   trajectories from a thermalised state accept at least 70 %.
//! - `fa-hmc`: the same with τ = π/(2√(2κ)), a quarter period of every mode when the mass kernel
//!   k̂² + m̃² is close to the free propagator, and m̃² = max(4 sin²(π/L), 0.01)
//!   ([`fourier::default_mass`]).
//! - `metropolis`: one hit per site, the proposal width of [`crate::theory::scalar`].
//! - `cluster` / `wolff`: a Metropolis sweep, then Swendsen–Wang, or 4 Wolff clusters.

use std::f64::consts::PI;
use std::path::Path;
use std::time::Instant;

use crate::analysis::{fit_power_law, gamma_primary, Estimate, PowerLaw};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::hmc::{fourier, HmcParams, Integrator, Start};
use crate::io::json::Json;
use crate::io::outdir::{Claim, Manifest, OutputDir};
use crate::io::write_atomic;
use crate::lattice::Lattice;
use crate::sampler::{Sampler, SamplerConfig};
use crate::theory::{ClusterKind, LocalAlgorithm, TheoryConfig};

/// The algorithms a study can compare.
pub const ALGORITHMS: [&str; 5] = ["hmc", "fa-hmc", "metropolis", "cluster", "wolff"];

/// The observables whose τ_int is reported.
pub const OBSERVABLES: [&str; 4] = ["chi2", "absM", "energy", "slowest"];

/// Updates of a run at least, whatever the budget.
const MIN_UPDATES: u64 = 200;

/// What a study measures.
#[derive(Clone, Debug)]
pub struct CsdConfig {
    /// Hopping parameter κ.
    pub kappa: f64,
    /// Quartic coupling λ.
    pub lambda: f64,
    /// Dimension d (lattices L^d).
    pub dim: usize,
    /// Extents L.
    pub sizes: Vec<usize>,
    /// Algorithms, from [`ALGORITHMS`].
    pub algorithms: Vec<String>,
    /// Wall-clock budget of each (algorithm, L) run, thermalisation included.
    pub budget_seconds: f64,
    /// Chains per run.
    pub chains: usize,
    /// Seed of every run.
    pub seed: u64,
}

impl CsdConfig {
    /// Checks the sizes, algorithms and budget (the couplings are checked by the theory).
    pub fn validate(&self) -> Result<()> {
        if let Some(a) = self
            .algorithms
            .iter()
            .find(|a| !ALGORITHMS.contains(&a.as_str()))
        {
            return Err(Error::InvalidInput(format!(
                "unknown algorithm '{a}' for csd: use {}",
                ALGORITHMS.join(", ")
            )));
        }
        if self.algorithms.is_empty() || self.sizes.is_empty() {
            return Err(Error::InvalidInput(
                "csd needs at least one algorithm and one size".into(),
            ));
        }
        if !(self.budget_seconds.is_finite() && self.budget_seconds > 0.0) {
            return Err(Error::InvalidInput(format!(
                "--budget-seconds {} must be a positive number",
                self.budget_seconds
            )));
        }
        if self.chains == 0 {
            return Err(Error::InvalidInput("--chains must be at least 1".into()));
        }
        for &l in &self.sizes {
            self.theory(l)?.build()?;
        }
        Ok(())
    }

    fn theory(&self, l: usize) -> Result<TheoryConfig> {
        Ok(TheoryConfig::Phi4 {
            lattice: Lattice::new(&vec![l; self.dim])?,
            kappa: self.kappa,
            lambda: self.lambda,
        })
    }

    /// `key=value` lines of the study, for the manifest.
    fn identity(&self) -> String {
        format!(
            "kappa={:?}\nlambda={:?}\nd={}\nsizes={:?}\nalgorithms={}\nbudget_seconds={:?}\nchains={}\nseed={}\n",
            self.kappa,
            self.lambda,
            self.dim,
            self.sizes,
            self.algorithms.join(","),
            self.budget_seconds,
            self.chains,
            self.seed
        )
    }
}

/// One (algorithm, L) run.
#[derive(Clone, Debug)]
pub struct CsdRun {
    /// The algorithm.
    pub algorithm: String,
    /// The extent L.
    pub l: usize,
    /// The tuned sampler's parameters.
    pub parameters: String,
    /// Updates measured (after thermalisation) per chain.
    pub updates: u64,
    /// Wall seconds per update of all chains.
    pub seconds_per_update: f64,
    /// Site updates (MD site-steps, or proposals) per update of all chains.
    pub site_updates_per_update: u64,
    /// Acceptance after thermalisation.
    pub acceptance: f64,
    /// τ_int per observable of [`OBSERVABLES`] (with the estimate of its mean).
    pub tau: Vec<(&'static str, Estimate)>,
}

impl CsdRun {
    /// Seconds per independent sample of `observable`: seconds per update × 2τ_int.
    pub fn cost(&self, observable: &str) -> f64 {
        let tau = self.tau.iter().find(|(n, _)| *n == observable);
        tau.map_or(f64::NAN, |(_, e)| self.seconds_per_update * 2.0 * e.tau_int)
    }
}

/// A finished study.
#[derive(Clone, Debug)]
pub struct CsdOutcome {
    /// Every run.
    pub runs: Vec<CsdRun>,
    /// Per algorithm and observable, the fit τ_int ∝ L^z (where two or more sizes fit).
    pub z: Vec<(String, &'static str, PowerLaw)>,
}

/// The sampler of `algorithm` for φ⁴ on L, tuned by the rules of this module.
pub fn tuned(cfg: &CsdConfig, algorithm: &str, l: usize, device: &Device) -> Result<SamplerConfig> {
    let local = |algorithm| SamplerConfig::Local {
        algorithm,
        seed: cfg.seed,
    };
    let hmc = |tau: f64, m2: Option<f64>| -> Result<SamplerConfig> {
        let make = |steps: usize| {
            let params = HmcParams {
                tau,
                steps,
                integrator: Integrator::Omelyan,
                seed: cfg.seed,
            };
            match m2 {
                Some(m2) => SamplerConfig::FaHmc { params, m2 },
                None => SamplerConfig::Hmc(params),
            }
        };
        Ok(make(tune_steps(cfg, &make(2), l, device)?))
    };
    let lat = Lattice::new(&vec![l; cfg.dim])?;
    match algorithm {
        "hmc" => hmc((l as f64 / 16.0).max(1.0), None),
        "fa-hmc" => hmc(
            PI / (2.0 * (2.0 * cfg.kappa).sqrt()),
            Some(fourier::default_mass(&lat)),
        ),
        "metropolis" => Ok(local(LocalAlgorithm::Metropolis { hits: 1 })),
        "cluster" => Ok(local(LocalAlgorithm::Cluster {
            hits: 1,
            kind: ClusterKind::SwendsenWang,
        })),
        "wolff" => Ok(local(LocalAlgorithm::Cluster {
            hits: 1,
            kind: ClusterKind::Wolff { clusters: 4 },
        })),
        other => Err(Error::InvalidInput(format!("unknown algorithm '{other}'"))),
    }
}

/// The fewest MD steps, 2·2^k, at which the trajectories of `sampler` (built with 2 steps)
/// accept at least 70 %: thermalised first at 128 steps (the warm-up levels of
/// [`Sampler::set_warmup`] multiply the steps at fixed τ), then 20 trajectories per k upwards.
fn tune_steps(
    cfg: &CsdConfig,
    sampler: &SamplerConfig,
    l: usize,
    device: &Device,
) -> Result<usize> {
    let mut s = build(cfg, sampler, l, device)?;
    s.set_warmup(6)?;
    for _ in 0..30 {
        s.update()?;
    }
    for k in 0..10 {
        s.set_warmup(k)?;
        let mut acc = 0.0;
        for _ in 0..20 {
            acc += s.update()?.accepted.iter().sum::<f64>();
        }
        if acc >= 0.7 * (20 * cfg.chains) as f64 {
            return Ok(2 << k);
        }
    }
    Ok(2 << 10)
}

fn build(
    cfg: &CsdConfig,
    sampler: &SamplerConfig,
    l: usize,
    device: &Device,
) -> Result<Box<dyn Sampler>> {
    let theory = cfg.theory(l)?.build()?;
    let mut s = sampler.build(theory.clone(), cfg.chains, device)?;
    s.set_fields(&theory.start_fields(Start::Ordered, 0..cfg.chains, cfg.seed))?;
    Ok(s)
}

/// Runs one (algorithm, L) cell of the study within the budget.
pub fn run_one(cfg: &CsdConfig, algorithm: &str, l: usize, device: &Device) -> Result<CsdRun> {
    let sampler = tuned(cfg, algorithm, l, device)?;
    let mut s = build(cfg, &sampler, l, device)?;
    // Time a few updates to turn the budget into a number of updates.
    let start = Instant::now();
    for _ in 0..5 {
        s.update()?;
    }
    let per = start.elapsed().as_secs_f64() / 5.0;
    let total = ((cfg.budget_seconds / per.max(1e-9)) as u64).max(MIN_UPDATES);
    let therm = total / 10;
    for _ in 0..therm {
        s.update()?;
    }
    let v = (l as f64).powi(cfg.dim as i32);
    // Per chain: M, |M|, χ₂ = V M², energy (action density), M⁴.
    let mut series = vec![vec![Vec::new(); 5]; cfg.chains];
    let (mut accepted, mut seconds) = (0.0, 0.0);
    let measured = total - therm;
    for _ in 0..measured {
        let t0 = Instant::now();
        accepted += s.update()?.accepted.iter().sum::<f64>();
        seconds += t0.elapsed().as_secs_f64();
        for (c, m) in s.measure()?.iter().enumerate() {
            let p = &m.primaries; // M, absM, M2, M4, action_density
            for (k, x) in [p[0], p[1], v * p[2], p[4], p[3]].into_iter().enumerate() {
                series[c][k].push(x);
            }
        }
    }
    let est = |k: usize| {
        let reps: Vec<&[f64]> = series.iter().map(|c| c[k].as_slice()).collect();
        gamma_primary(&reps)
    };
    let all: Vec<Estimate> = (0..5).map(est).collect();
    let slowest = *all
        .iter()
        .filter(|e| e.tau_int.is_finite())
        .max_by(|a, b| a.tau_int.total_cmp(&b.tau_int))
        .unwrap_or(&all[2]);
    Ok(CsdRun {
        algorithm: algorithm.to_string(),
        l,
        parameters: s.parameters().replace('\n', " ").trim().to_string(),
        updates: measured,
        seconds_per_update: seconds / measured as f64,
        site_updates_per_update: s.site_updates(),
        acceptance: accepted / (measured as f64 * cfg.chains as f64),
        tau: vec![
            ("chi2", all[2]),
            ("absM", all[1]),
            ("energy", all[3]),
            ("slowest", slowest),
        ],
    })
}

/// Fits τ_int ∝ L^z per algorithm and observable.
fn fits(runs: &[CsdRun], algorithms: &[String]) -> Vec<(String, &'static str, PowerLaw)> {
    let mut out = Vec::new();
    for a in algorithms {
        for obs in OBSERVABLES {
            let pts: Vec<(f64, Estimate)> = runs
                .iter()
                .filter(|r| &r.algorithm == a)
                .filter_map(|r| {
                    r.tau
                        .iter()
                        .find(|(n, _)| *n == obs)
                        .map(|(_, e)| (r.l as f64, *e))
                })
                .collect();
            let (x, (y, dy)): (Vec<f64>, (Vec<f64>, Vec<f64>)) = pts
                .iter()
                .map(|(l, e)| (*l, (e.tau_int, e.tau_int_error)))
                .unzip();
            if let Ok(fit) = fit_power_law(&x, &y, &dy) {
                out.push((a.clone(), obs, fit));
            }
        }
    }
    out
}

/// Runs the study into `out` (owned like every command's directory); `progress` gets a line
/// per finished run.
pub fn run_csd(
    cfg: &CsdConfig,
    device: &Device,
    out: &Path,
    claim: Claim,
    progress: &mut dyn FnMut(&CsdRun),
) -> Result<CsdOutcome> {
    cfg.validate()?;
    let manifest = Manifest {
        command: "csd".into(),
        parameters: cfg.identity(),
        files: ["csd.csv", "summary.json", "csd.svg"]
            .map(String::from)
            .to_vec(),
    };
    let dir = OutputDir::claim(out, &manifest, claim)?;
    let mut runs = Vec::new();
    for &l in &cfg.sizes {
        for a in &cfg.algorithms {
            let r = run_one(cfg, a, l, device)?;
            progress(&r);
            runs.push(r);
        }
    }
    let outcome = CsdOutcome {
        z: fits(&runs, &cfg.algorithms),
        runs,
    };
    write_atomic(&dir.path().join("csd.csv"), csv(&outcome).as_bytes())?;
    write_atomic(
        &dir.path().join("summary.json"),
        summary(cfg, &outcome, device).pretty().as_bytes(),
    )?;
    write_atomic(&dir.path().join("csd.svg"), svg(&outcome).as_bytes())?;
    Ok(outcome)
}

fn csv(o: &CsdOutcome) -> String {
    let mut s = String::from(
        "algorithm,L,observable,tau_int,tau_int_error,seconds_per_update,cost_per_independent\n",
    );
    for r in &o.runs {
        for (name, e) in &r.tau {
            s.push_str(&format!(
                "{},{},{name},{:e},{:e},{:e},{:e}\n",
                r.algorithm,
                r.l,
                e.tau_int,
                e.tau_int_error,
                r.seconds_per_update,
                r.cost(name)
            ));
        }
    }
    s
}

fn summary(cfg: &CsdConfig, o: &CsdOutcome, device: &Device) -> Json {
    let z = Json::obj(cfg.algorithms.iter().map(|a| {
        let per = o.z.iter().filter(|(b, _, _)| b == a).map(|(_, obs, f)| {
            (
                *obs,
                Json::obj([
                    ("value", Json::Num(f.z)),
                    ("error", Json::Num(f.z_error)),
                    ("chi2_dof", Json::Num(f.chi2_dof)),
                ]),
            )
        });
        (a.clone(), Json::obj(per))
    }));
    let runs = Json::Arr(
        o.runs
            .iter()
            .map(|r| {
                Json::obj([
                    ("algorithm", Json::Str(r.algorithm.clone())),
                    ("L", Json::Num(r.l as f64)),
                    ("parameters", Json::Str(r.parameters.clone())),
                    ("updates", Json::Num(r.updates as f64)),
                    ("seconds_per_update", Json::Num(r.seconds_per_update)),
                    (
                        "site_updates_per_update",
                        Json::Num(r.site_updates_per_update as f64),
                    ),
                    ("acceptance", Json::Num(r.acceptance)),
                    (
                        "tau_int",
                        Json::obj(r.tau.iter().map(|(n, e)| {
                            (
                                *n,
                                Json::obj([
                                    ("value", Json::Num(e.tau_int)),
                                    ("error", Json::Num(e.tau_int_error)),
                                ]),
                            )
                        })),
                    ),
                    ("chi2_mean", Json::Num(r.tau[0].1.value)),
                    ("chi2_mean_error", Json::Num(r.tau[0].1.error)),
                ])
            })
            .collect(),
    );
    Json::obj([
        ("theory", Json::Str("phi4".into())),
        ("kappa", Json::Num(cfg.kappa)),
        ("lambda", Json::Num(cfg.lambda)),
        ("d", Json::Num(cfg.dim as f64)),
        ("chains", Json::Num(cfg.chains as f64)),
        ("budget_seconds", Json::Num(cfg.budget_seconds)),
        ("device", Json::Str(device.describe())),
        ("z", z),
        ("runs", runs),
    ])
}

/// Log-log plot of τ_int(χ₂) against L, one colour per algorithm, with the fitted lines.
fn svg(o: &CsdOutcome) -> String {
    let (w, h, pad) = (640.0, 420.0, 60.0);
    let pts: Vec<(&str, f64, f64)> = o
        .runs
        .iter()
        .map(|r| {
            (
                r.algorithm.as_str(),
                r.l as f64,
                r.tau[0].1.tau_int.max(0.1),
            )
        })
        .collect();
    let (lx, ly): (Vec<f64>, Vec<f64>) = pts.iter().map(|p| (p.1.ln(), p.2.ln())).unzip();
    let range = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        if hi > lo {
            (lo - 0.2, hi + 0.2)
        } else {
            (lo - 1.0, hi + 1.0)
        }
    };
    let ((x0, x1), (y0, y1)) = (range(&lx), range(&ly));
    let px = |x: f64| pad + (x.ln() - x0) / (x1 - x0) * (w - 2.0 * pad);
    let py = |y: f64| h - pad - (y.ln() - y0) / (y1 - y0) * (h - 2.0 * pad);
    let colours = ["#08519c", "#d94801", "#238b45", "#6a51a3", "#a50f15"];
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let mut algs: Vec<&str> = pts.iter().map(|p| p.0).collect();
    algs.sort_unstable();
    algs.dedup();
    for (i, a) in algs.iter().enumerate() {
        let c = colours[i % colours.len()];
        for p in pts.iter().filter(|p| p.0 == *a) {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{c}\"/>\n",
                px(p.1),
                py(p.2)
            ));
        }
        if let Some((_, _, f)) = o.z.iter().find(|(b, obs, _)| b == a && *obs == "chi2") {
            let (la, lb) = (x0.exp(), x1.exp());
            s.push_str(&format!(
                "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{c}\" stroke-dasharray=\"5 3\"/>\n",
                px(la), py(f.amplitude * la.powf(f.z)), px(lb), py(f.amplitude * lb.powf(f.z))
            ));
        }
        let z =
            o.z.iter()
                .find(|(b, obs, _)| b == a && *obs == "chi2")
                .map_or(String::new(), |(_, _, f)| {
                    format!(": z = {:.2} ± {:.2}", f.z, f.z_error)
                });
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{a}{z}</text>\n",
            pad + 10.0,
            pad + 18.0 * (i as f64 + 1.0)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n",
        b = h - pad,
        r = w - pad
    ));
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">L (log scale, {:.0} to {:.0})</text>\n",
        w / 2.0,
        h - 15.0,
        x0.exp(),
        x1.exp()
    ));
    s.push_str(&format!(
        "<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">τ_int(χ₂) (log scale, {:.2} to {:.0})</text>\n</svg>\n",
        h / 2.0, h / 2.0, y0.exp(), y1.exp()
    ));
    s
}
