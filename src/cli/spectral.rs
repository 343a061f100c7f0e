//! `latticeml spectral`: spectral functions from Euclidean correlators by every method of
//! `latticeml::spectral`, one mock or input correlator, many samples, or many noise draws.

use std::path::PathBuf;

use clap::Args;

use latticeml::io::json::Json;
use latticeml::io::outdir::{Claim, Manifest, OutputDir};
use latticeml::{Device, Error, Result};

#[derive(Args)]
pub struct SpectralArgs {
    /// CSV with header p,value,error (or tau,value,error).
    #[arg(long, conflicts_with = "mock")]
    input: Option<PathBuf>,
    /// Full covariance of the data (CSV of numbers, no header).
    #[arg(long, requires = "input")]
    cov: Option<PathBuf>,
    /// Many data vectors measured like --input (e.g. bootstrap samples): CSV of numbers, one per row;
    /// all are reconstructed in one batched run, and the band is their spread.
    #[arg(long, requires = "input")]
    samples: Option<PathBuf>,
    /// Benchmark on a mock over N noise draws (seeds --seed, --seed + 1, …) and the noiseless
    /// data: every method's chi2/N, MSE, KL, relative L2 and band coverage per draw in
    /// benchmark.csv, and their means.
    #[arg(long, requires = "mock")]
    draws: Option<u64>,
    /// Built-in mock instead of --input: bw1, bw2, gauss2, nonpositive, or paper (the Shi–Wang–Zhou benchmark).
    #[arg(long)]
    mock: Option<String>,
    /// Mock noise: relative size (or absolute, with --noise-kind absolute).
    #[arg(long, default_value_t = 1e-4, allow_hyphen_values = true)]
    noise: f64,
    /// relative, absolute or momentum (σ = noise·D·p/Δp, as in the benchmark paper).
    #[arg(long, default_value = "relative")]
    noise_kind: String,
    /// Mock data points: x from --x-min to --x-max.
    #[arg(long, default_value_t = 100)]
    points: usize,
    /// First mock data point (p or τ).
    #[arg(long, default_value_t = 0.2, allow_hyphen_values = true)]
    x_min: f64,
    /// Last mock data point.
    #[arg(long, default_value_t = 20.0, allow_hyphen_values = true)]
    x_max: f64,
    /// Seed of the mock noise and of the networks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// kl, exp, finite-t, finite-t-reg or fermi (fermionic, all omega; default: kl for
    /// p,value,error data and mock data, exp for tau,value,error data).
    #[arg(long)]
    kernel: Option<String>,
    /// Inverse temperature for the finite-temperature kernels.
    #[arg(long)]
    beta: Option<f64>,
    /// Smallest ω.
    #[arg(long, default_value_t = 0.04, allow_hyphen_values = true)]
    omega_min: f64,
    /// Largest ω.
    #[arg(long, default_value_t = 20.0, allow_hyphen_values = true)]
    omega_max: f64,
    /// Points of the ω-grid.
    #[arg(long, default_value_t = 500)]
    omega_points: usize,
    /// nn, nn-p2p, nn-p2p-signfree, mem, mem-classic, br, tikhonov, tikhonov-lcurve, tsvd, or all.
    #[arg(long, default_value = "all")]
    method: String,
    /// Adam steps of the neural methods.
    #[arg(long)]
    steps: Option<usize>,
    /// Restarts of the neural methods, averaged (their spread is the native band; with --samples,
    /// networks per sample, default 1).
    #[arg(long)]
    restarts: Option<usize>,
    /// auto, cpu, cuda or cuda:N (for the neural methods).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// How the band is made: native (each method's own: the networks' restarts, MEM's posterior,
    /// Tikhonov's and TSVD's propagated noise; they miss the regulariser's bias) or bootstrap (the
    /// method's RMS error, bias included, at a spectrum like the reconstruction, from
    /// --band-samples data vectors drawn around its fit; --band-scale calibrates it). Default:
    /// bootstrap for nn, native for the rest.
    #[arg(long)]
    band: Option<String>,
    /// Data vectors of the bootstrap band.
    #[arg(long, default_value_t = 16)]
    band_samples: usize,
    /// Multiply the band's half-widths by this calibration factor (`--draws` on mocks like the
    /// data reports the factor that gives 68 %).
    #[arg(long, default_value_t = 1.0)]
    band_scale: f64,
    /// Output directory.
    #[arg(long, default_value = "spectral-out")]
    out: PathBuf,
    /// Replace the results of an earlier command in --out.
    #[arg(long)]
    force: bool,
}

pub fn cmd_spectral(a: SpectralArgs) -> Result<()> {
    use latticeml::spectral::{self, data::Axis, kernel, mock, report, Problem};
    check_band_args(&a)?;
    if a.cov.is_some() && a.input.is_none() {
        return Err(Error::InvalidInput(
            "--cov describes the errors of --input data; mock data take their noise from --noise"
                .into(),
        ));
    }
    let input = match &a.input {
        Some(path) => Some(spectral::data::Correlator::read_csv_axis(path)?),
        None => None,
    };
    let points = input.as_ref().map_or(a.points, |(d, _)| d.x.len());
    // The ω grid with its weights, then the kernel matrix with an SVD's copies of it.
    latticeml::device::memory::check_host(
        8 * (a.omega_points as u128) * (2 + 4 * points as u128),
        &format!("a reconstruction on {} omega points", a.omega_points),
        "use fewer --omega-points",
    )?;
    let paper = a.mock.as_deref() == Some("paper");
    let axis = input.as_ref().map(|(_, axis)| *axis);
    let kind = match (a.kernel.as_deref(), axis) {
        _ if paper => kernel::KernelKind::KallenLehmann,
        (None, Some(Axis::Time)) => kernel::KernelKind::Exponential,
        (None, _) => kernel::KernelKind::KallenLehmann,
        (Some(name), _) => {
            let k = kernel::KernelKind::from_name(name, a.beta)?;
            if let Some(axis) = axis.filter(|&ax| !k.takes(ax)) {
                return Err(Error::InvalidInput(format!(
                    "the data are {} but --kernel {name} takes {}: use {}",
                    if axis == Axis::Time {
                        "times (tau,value,error)"
                    } else {
                        "momenta (p,value,error)"
                    },
                    if axis == Axis::Time {
                        "momenta"
                    } else {
                        "times"
                    },
                    if axis == Axis::Time {
                        "--kernel exp, finite-t or finite-t-reg"
                    } else {
                        "--kernel kl"
                    }
                )));
            }
            k
        }
    };
    let grid = kernel::OmegaGrid::uniform(a.omega_min, a.omega_max, a.omega_points)?;
    let (data, truth) = match (input, &a.mock) {
        (Some((d, _)), _) => (
            match &a.cov {
                Some(c) => d.with_cov_csv(c)?,
                None => d,
            },
            None,
        ),
        (None, Some(name)) => {
            let spec = mock::Spectrum::named(if paper { "bw2" } else { name })?;
            let total = spec.abs_integral(0.0, 1000.0, 400_000);
            let inside = spec.abs_integral(grid.omega[0], grid.omega[grid.len() - 1], 200_000);
            if total - inside > 0.01 * total {
                return Err(Error::InvalidInput(format!(
                    "the ω-grid [{}, {}] misses {:.1}% of the spectral function's weight; widen --omega-min/--omega-max",
                    a.omega_min,
                    a.omega_max,
                    100.0 * (total - inside) / total
                )));
            }
            if a.points < 2 || a.x_max.partial_cmp(&a.x_min) != Some(std::cmp::Ordering::Greater) {
                return Err(Error::InvalidInput(
                    "mock data need --points >= 2 and --x-max > --x-min".into(),
                ));
            }
            let x: Vec<f64> = (0..a.points)
                .map(|i| a.x_min + (a.x_max - a.x_min) * i as f64 / (a.points - 1) as f64)
                .collect();
            let noise = match (paper, a.noise_kind.as_str()) {
                (true, _) | (_, "momentum") => mock::Noise::MomentumScaled(a.noise),
                (_, "relative") => mock::Noise::Relative(a.noise),
                (_, "absolute") => mock::Noise::Absolute(a.noise),
                (_, k) => {
                    return Err(Error::InvalidInput(format!(
                        "unknown noise kind '{k}': use relative, absolute or momentum"
                    )))
                }
            };
            if !(a.noise > 0.0 && a.noise.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "--noise {} must be positive",
                    a.noise
                )));
            }
            let t = spec.on(&grid);
            let amat = kernel::kernel_matrix(kind, &x, &grid)?;
            let data = mock::mock_data(&amat, &t, &x, &noise, a.seed)?;
            if let Some(n) = a.draws {
                kind.check_points(&data.x)?;
                let source = MockSource {
                    a: amat,
                    truth: t,
                    x,
                    noise,
                };
                return spectral_draws(&a, n, &Problem { data, kind, grid }, &source);
            }
            (data, Some(t))
        }
        (None, None) => {
            return Err(Error::InvalidInput(
                "give --input data.csv or --mock bw1|bw2|gauss2|nonpositive|paper".into(),
            ))
        }
    };
    kind.check_points(&data.x)?;
    let (device, _) = Device::from_name(&a.device)?;
    let names = method_names(&a);
    let _out = claim_spectral_out(&a, &names)?;
    let problem = Problem { data, kind, grid };
    let (mut poor_fit, mut warnings) = (false, Vec::new());
    if let Some(path) = &a.samples {
        return spectral_samples(&a, &problem, path, &device);
    }
    println!(
        "{:<16} {:>10} {:>12} {:>12} {:>10} {:>9}  peaks (position/width)",
        "method", "chi2/N", "MSE", "KL", "rel L2", "seconds"
    );
    for name in names {
        let method = method_of(&a, name)?;
        eprint!("running {name}…\r");
        let (r, _) = banded(&a, (&problem, &method, a.seed), &device)?;
        let m = truth.as_ref().map(|t| spectral::Metrics {
            coverage: r.band.as_ref().map(|b| spectral::band_coverage(b, t)),
            ..spectral::metrics(&problem.grid, &r.rho, t)
        });
        let dir = if a.method == "all" {
            a.out.join(&r.method)
        } else {
            a.out.clone()
        };
        report::write(&dir, &r, &problem.data, truth.as_deref(), m.as_ref(), &[])?;
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3e}"));
        // The three highest peaks (all of them are in summary.json).
        let pk: Vec<String> = m.as_ref().map_or(Vec::new(), |m| {
            let height = |p: f64| {
                r.omega
                    .iter()
                    .position(|&o| o == p)
                    .map_or(0.0, |j| r.rho[j])
            };
            let mut by_height = m.peaks.clone();
            by_height.sort_by(|a, b| height(b.0).total_cmp(&height(a.0)));
            by_height
                .iter()
                .take(3)
                .map(|(p, w)| format!("{p:.2}/{w:.2}"))
                .collect()
        });
        let flag = match (&r.warning, r.chi2_per_point > 3.0) {
            (Some(w), _) => {
                warnings.push(format!("! {}: {w}", r.method));
                "!"
            }
            (None, true) => {
                poor_fit = true;
                "*"
            }
            (None, false) => " ",
        };
        println!(
            "{:<16} {:>10.3}{flag}{:>12} {:>12} {:>10} {:>9.2}  {}",
            r.method,
            r.chi2_per_point,
            f(m.as_ref().map(|m| m.mse)),
            f(m.as_ref().map(|m| m.kl)),
            f(m.as_ref().map(|m| m.relative_l2)),
            r.seconds,
            pk.join(" ")
        );
    }
    if poor_fit {
        println!("* chi2/N > 3: the method cannot reproduce these data (MEM and the positive networks assume rho >= 0;");
        println!("  a sign-changing spectrum needs tikhonov, tsvd or nn-p2p-signfree), or it needs more --steps");
    }
    warnings.iter().for_each(|w| println!("{w}"));
    println!("files in {}/", a.out.display());
    Ok(())
}

/// The methods `--method` names (`all`: every principal one).
fn method_names(a: &SpectralArgs) -> Vec<&str> {
    if a.method == "all" {
        vec!["nn", "nn-p2p", "mem", "br", "tikhonov", "tsvd"]
    } else {
        vec![a.method.as_str()]
    }
}

/// `method`'s reconstruction with the band `--band` asks for (a bootstrap's noise keyed by
/// `seed`), widened by `--band-scale`, and the band before widening.
fn banded(
    a: &SpectralArgs,
    (problem, method, seed): (
        &latticeml::spectral::Problem,
        &latticeml::spectral::Method,
        u64,
    ),
    device: &Device,
) -> Result<(
    latticeml::spectral::Reconstruction,
    Option<latticeml::spectral::Band>,
)> {
    use latticeml::spectral;
    let band = band_of(a, method, seed)?;
    let mut r = spectral::reconstruct_with_band(problem, method, band, device)?;
    let raw = r.band.clone();
    r.band = raw
        .as_ref()
        .map(|b| spectral::widen(b, &r.rho, a.band_scale));
    Ok((r, raw))
}

/// Refuses band settings that cannot work, before `--out` is touched.
fn check_band_args(a: &SpectralArgs) -> Result<()> {
    if !(a.band_scale.is_finite() && a.band_scale > 0.0) {
        return Err(Error::InvalidInput(format!(
            "--band-scale {} must be positive",
            a.band_scale
        )));
    }
    if a.band_samples < 2 {
        return Err(Error::InvalidInput(format!(
            "a bootstrap band needs at least 2 samples, not {}: raise --band-samples",
            a.band_samples
        )));
    }
    band_of(a, &latticeml::spectral::Method::Tsvd, a.seed).map(|_| ())
}

/// The band `--band` asks for (or the method's default), a bootstrap keyed by `seed`.
fn band_of(
    a: &SpectralArgs,
    method: &latticeml::spectral::Method,
    seed: u64,
) -> Result<latticeml::spectral::BandKind> {
    use latticeml::spectral::BandKind;
    match &a.band {
        Some(name) => BandKind::from_name(name, a.band_samples, seed),
        None => Ok(BandKind::default_for(method, a.band_samples, seed)),
    }
}

/// The method `name` with the command line's network settings.
fn method_of(a: &SpectralArgs, name: &str) -> Result<latticeml::spectral::Method> {
    let mut method = latticeml::spectral::Method::from_name(name)?;
    if let latticeml::spectral::Method::Neural(o) = &mut method {
        o.seed = a.seed;
        o.steps = a.steps.unwrap_or(o.steps);
        o.restarts = a.restarts.unwrap_or(o.restarts);
    }
    Ok(method)
}

/// Claims `--out` for `spectral` (held until the command ends): its files, or one directory per
/// method with `--method all`.
fn claim_spectral_out(a: &SpectralArgs, names: &[&str]) -> Result<OutputDir> {
    let files: Vec<String> = if a.draws.is_some() {
        vec!["benchmark.csv".into()]
    } else if a.method == "all" {
        names.iter().map(|n| format!("{n}/")).collect()
    } else {
        [
            "rho.csv",
            "rho.npy",
            "fit.csv",
            "summary.json",
            "rho.svg",
            "samples.npy",
        ]
        .iter()
        .map(|f| f.to_string())
        .collect()
    };
    let source = match (&a.input, &a.mock) {
        (Some(p), _) => format!("input={}", p.display()),
        (None, m) => format!("mock={}", m.as_deref().unwrap_or("")),
    };
    let manifest = Manifest {
        command: "spectral".into(),
        parameters: format!(
            "{source}\nmethod={}\nkernel={}\nomega={}:{}:{}\nseed={}\n",
            a.method,
            a.kernel.as_deref().unwrap_or("auto"),
            a.omega_min,
            a.omega_max,
            a.omega_points,
            a.seed
        ),
        files,
    };
    let claim = if a.force { Claim::Force } else { Claim::Fresh };
    OutputDir::claim(&a.out, &manifest, claim)
}

/// `--samples`: every data vector reconstructed in one batched run; writes the mean with the
/// samples' standard deviation as the band, and every sample's ρ in `samples.npy`.
fn spectral_samples(
    a: &SpectralArgs,
    problem: &latticeml::spectral::Problem,
    path: &std::path::Path,
    device: &Device,
) -> Result<()> {
    use latticeml::spectral::{self, report, Method, Reconstruction};
    if a.band.is_some() {
        return Err(Error::InvalidInput(
            "with --samples the band is the samples' spread: drop --band".into(),
        ));
    }
    if a.method == "all" {
        return Err(Error::InvalidInput(
            "--samples takes one --method (nn batches best; tikhonov and tsvd share one SVD)"
                .into(),
        ));
    }
    let values = problem.data.read_samples(path)?;
    let mut method = Method::from_name(&a.method)?;
    if let Method::Neural(o) = &mut method {
        o.seed = a.seed;
        o.steps = a.steps.unwrap_or(o.steps);
        // The samples' spread is the band; restarts per sample only when asked for.
        o.restarts = a.restarts.unwrap_or(1);
    }
    let unit = match method {
        Method::Neural(_) => "Adam steps + LM iterations",
        _ => "samples",
    };
    let bar = super::progress::Progress::new(0, unit)?;
    let started = std::time::Instant::now();
    let rs = spectral::reconstruct_many(problem, &values, &method, device, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let rs = rs?;
    let (nw, k) = (problem.grid.len(), rs.len() as f64);
    let mean: Vec<f64> = (0..nw)
        .map(|j| rs.iter().map(|r| r.rho[j]).sum::<f64>() / k)
        .collect();
    let sd: Vec<f64> = (0..nw)
        .map(|j| {
            (rs.iter().map(|r| (r.rho[j] - mean[j]).powi(2)).sum::<f64>() / (k - 1.0).max(1.0))
                .sqrt()
        })
        .collect();
    let kmat = spectral::kernel::kernel_matrix(problem.kind, &problem.data.x, &problem.grid)?;
    let chi2_mean = rs.iter().map(|r| r.chi2_per_point).sum::<f64>() / k;
    // A method's warning (BR without a stationary point) on some samples: how many, and why.
    let warned: Vec<&String> = rs.iter().filter_map(|r| r.warning.as_ref()).collect();
    let warning = warned
        .first()
        .map(|w| format!("on {} of {} samples: {w}", warned.len(), rs.len()));
    let agg = Reconstruction {
        method: format!("{} ({} samples)", rs[0].method, rs.len()),
        omega: problem.grid.omega.clone(),
        band: Some((
            mean.iter().zip(&sd).map(|(m, s)| m - s).collect(),
            mean.iter().zip(&sd).map(|(m, s)| m + s).collect(),
        )),
        reproduced: kmat.mul_vec(&mean),
        rho: mean,
        chi2: chi2_mean * problem.data.x.len() as f64,
        chi2_per_point: chi2_mean,
        choice: None,
        warning,
        // Wall time: the samples of unbatched methods run side by side on the CPU threads.
        seconds: started.elapsed().as_secs_f64(),
    };
    let extra = [
        ("samples", Json::Num(k)),
        ("mean_chi2_per_point_over_samples", Json::Num(chi2_mean)),
        ("samples_with_warning", Json::Num(warned.len() as f64)),
    ];
    report::write(&a.out, &agg, &problem.data, None, None, &extra)?;
    let all: Vec<f64> = rs.iter().flat_map(|r| r.rho.iter().copied()).collect();
    latticeml::io::write_atomic(
        &a.out.join("samples.npy"),
        &latticeml::io::npy::encode(&[rs.len(), nw], &all),
    )?;
    println!(
        "{}: {} samples, mean chi2/N {:.3}, {:.2} s in all; files in {}/",
        agg.method,
        rs.len(),
        chi2_mean,
        agg.seconds,
        a.out.display()
    );
    if let Some(w) = &agg.warning {
        println!("! {}: {w}", rs[0].method);
    }
    Ok(())
}

/// A mock's ingredients, for drawing its data again with other seeds.
struct MockSource {
    a: latticeml::spectral::linalg::Matrix,
    truth: Vec<f64>,
    x: Vec<f64>,
    noise: latticeml::spectral::mock::Noise,
}

/// `--draws N`: every method on the noiseless mock data (the exact A·ρ with the noise model's
/// errors) and on N noise draws, each draw (and its networks) seeded as `--seed S` alone would be; one row per (draw, method) in benchmark.csv, then a table of the
/// noiseless MSE and the draws' mean MSE, KL, χ²/N and band coverage.
fn spectral_draws(
    a: &SpectralArgs,
    n: u64,
    template: &latticeml::spectral::Problem,
    src: &MockSource,
) -> Result<()> {
    use latticeml::spectral::{self, mock, Problem};
    if n == 0 {
        return Err(Error::InvalidInput("--draws needs at least 1 draw".into()));
    }
    let (device, _) = Device::from_name(&a.device)?;
    let names = method_names(a);
    let methods: Vec<_> = names
        .iter()
        .map(|name| method_of(a, name))
        .collect::<Result<_>>()?;
    let _out = claim_spectral_out(a, &names)?;
    let mut csv =
        String::from("draw,seed,method,chi2_per_point,mse,kl,relative_l2,coverage,seconds\n");
    // Per method: noiseless MSE, [MSE, KL, χ²/N, coverage] of each draw, and the draws' pooled
    // ratios of error to (unscaled) band half-width, and the method's warning with the number of
    // data sets it was given on.
    type Row = (f64, Vec<[f64; 4]>, Vec<f64>, Option<(String, usize)>);
    let mut table: Vec<Row> = vec![(f64::NAN, Vec::new(), Vec::new(), None); names.len()];
    for draw in 0..=n {
        let seed = a.seed + draw.saturating_sub(1);
        let mut data = mock::mock_data(&src.a, &src.truth, &src.x, &src.noise, seed)?;
        if draw == 0 {
            data.value = src.a.mul_vec(&src.truth);
        }
        let problem = Problem {
            data,
            ..template.clone()
        };
        for ((name, method), row) in names.iter().zip(&methods).zip(table.iter_mut()) {
            // The networks start from the draw's seed, as `--seed S` alone would.
            let mut method = method.clone();
            if let latticeml::spectral::Method::Neural(o) = &mut method {
                o.seed = seed;
            }
            let method = &method;
            eprint!("draw {draw}/{n}: {name}…        \r");
            let (r, raw) = banded(a, (&problem, method, seed), &device)?;
            if let Some(w) = &r.warning {
                row.3.get_or_insert_with(|| (w.clone(), 0)).1 += 1;
            }
            if let (Some(b), true) = (&raw, draw > 0) {
                row.2.extend(spectral::band_ratios(b, &r.rho, &src.truth));
            }
            let m = spectral::metrics(&problem.grid, &r.rho, &src.truth);
            let cover = r
                .band
                .as_ref()
                .map_or(f64::NAN, |b| spectral::band_coverage(b, &src.truth));
            csv += &format!(
                "{},{},{name},{:e},{:e},{:e},{:e},{:e},{:e}\n",
                if draw == 0 {
                    "noiseless".to_string()
                } else {
                    draw.to_string()
                },
                if draw == 0 {
                    "-".to_string()
                } else {
                    seed.to_string()
                },
                r.chi2_per_point,
                m.mse,
                m.kl,
                m.relative_l2,
                cover,
                r.seconds
            );
            if draw == 0 {
                row.0 = m.mse;
            } else {
                row.1.push([m.mse, m.kl, r.chi2_per_point, cover]);
            }
        }
    }
    eprint!("{:40}\r", "");
    latticeml::io::write_atomic(&a.out.join("benchmark.csv"), csv.as_bytes())?;
    println!(
        "{:<16} {:>10} {:>22} {:>10} {:>10} {:>9} {:>12}",
        "method", "noiseless", "MSE over draws", "KL", "chi2/N", "coverage", "scale for 68%"
    );
    for (name, (clean, rows, ratios, _)) in names.iter().zip(&table) {
        let col = |k: usize| -> Vec<f64> { rows.iter().map(|r| r[k]).collect() };
        let (mse, sd) = mean_sd(&col(0));
        let c68 = spectral::calibration_scale(ratios, 0.6827);
        println!(
            "{name:<16} {clean:>10.3} {:>22} {:>10.3} {:>10.3} {:>9} {:>12}",
            format!("{mse:.3} ± {sd:.3}"),
            mean_sd(&col(1)).0,
            mean_sd(&col(2)).0,
            match mean_sd(&col(3)).0 {
                c if c.is_finite() => format!("{:.0} %", 100.0 * c),
                _ => "-".into(),
            },
            if c68.is_nan() {
                "-".into()
            } else {
                format!("{c68:.3}")
            }
        );
    }
    println!(
        "(means over {n} draws, seeds {}..={}; ± the draws' standard deviation; coverage of the truth by the ±1σ band, nominally 68 %;\n the scale for 68 %: the --band-scale at which the draws' bands together would hold the truth at 68 % of the points)",
        a.seed,
        a.seed + n - 1
    );
    for (name, (_, _, _, warned)) in names.iter().zip(&table) {
        if let Some((w, k)) = warned {
            println!("! {name} on {k} of the {} data sets: {w}", n + 1);
        }
    }
    println!("files in {}/", a.out.display());
    Ok(())
}

/// Mean and standard deviation (n − 1) of `v`.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let k = v.len() as f64;
    let mean = v.iter().sum::<f64>() / k;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
    (mean, var.sqrt())
}

#[derive(Args)]
pub struct BenchSpectralArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// List networks trained together (e.g. bootstrap samples).
    #[arg(long, default_value_t = 100)]
    networks: usize,
    /// Adam steps to time (after one untimed step).
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `latticeml bench spectral`: batched list-network training at the paper's problem size.
pub fn cmd_bench_spectral(a: BenchSpectralArgs) -> Result<()> {
    use latticeml::spectral::bench::{self, HIDDEN, MOMENTA, OMEGA_POINTS};
    let (device, why) = Device::from_name(&a.device)?;
    if !a.json {
        eprintln!("latticeml: {why}");
        println!(
            "{} list networks (hidden {HIDDEN}, f64) on the paper's problem ({MOMENTA} momenta, {OMEGA_POINTS} ω), Adam, {}",
            a.networks,
            device.describe()
        );
    }
    let f = bench::list_training(&device, a.networks, a.steps)?;
    let (rate, gbs) = (f.network_steps_per_second(), f.effective_gb_per_second());
    if a.json {
        let j = Json::obj([
            ("device", Json::Str(device.describe())),
            ("networks", Json::Num(f.networks as f64)),
            ("steps", Json::Num(f.steps as f64)),
            ("seconds", Json::Num(f.seconds)),
            ("network_steps_per_second", Json::Num(rate)),
            (
                "bytes_per_network_step",
                Json::Num(bench::bytes_per_network_step()),
            ),
            ("effective_gb_per_second", Json::Num(gbs)),
        ]);
        print!("{}", j.pretty());
    } else {
        println!(
            "{} steps in {:.2} s: {rate:.0} network-steps/s, {gbs:.1} GB/s effective (fused minimum {:.2} MB per network-step)",
            f.steps,
            f.seconds,
            bench::bytes_per_network_step() / 1e6
        );
    }
    Ok(())
}
