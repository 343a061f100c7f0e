//! The files of the spectral-function VAE: `latticeml vae library|train|encode|decode`.
//!
//! A library directory holds `spectra.npy` `[spectrum][ω]`, `params.npy` `[spectrum][parameter]`
//! (columns [`super::aim::PARAM_NAMES`]), `omega.npy` and `library.json`. A model directory holds
//! `model.safetensors`, `vae.json` (settings and grid), `train.csv`, `latent.npy` (μ of every
//! library spectrum), `latent.svg` and `summary.json` (held-out reconstruction errors against the
//! mean-spectrum baseline, and how each latent tracks each physical parameter).

use std::path::Path;

use super::aim::{library, Bath, Library, LibrarySpec, PARAM_NAMES};
use super::vae::{reconstruction_errors, Vae, VaeConfig, VaeStep};
use super::vae_prior::{compare, PriorRow, PriorSettings};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::json::{Fields, Json};
use crate::io::outdir::{Claim, Manifest, OutputDir};
use crate::io::{npy, read, svg, write_atomic};
use crate::nn::safetensors;
use crate::philox;

const SPECTRA: &str = "spectra.npy";
const PARAMS: &str = "params.npy";
const OMEGA: &str = "omega.npy";
const LIBRARY_JSON: &str = "library.json";
const MODEL: &str = "model.safetensors";
const VAE_JSON: &str = "vae.json";
const TRAIN_CSV: &str = "train.csv";
const LATENT: &str = "latent.npy";
const LATENT_SVG: &str = "latent.svg";
const SUMMARY: &str = "summary.json";
const PRIOR_CSV: &str = "prior.csv";

/// Solves the library of `spec` and writes it to `out`.
pub fn write_library(spec: &LibrarySpec, out: &Path, claim: Claim) -> Result<Library> {
    let manifest = Manifest {
        command: "vae library".into(),
        parameters: format!("{spec:?}\n"),
        files: [SPECTRA, PARAMS, OMEGA, LIBRARY_JSON]
            .map(String::from)
            .to_vec(),
    };
    let dir = OutputDir::claim(out, &manifest, claim)?;
    let lib = library(spec)?;
    let (n, m) = (lib.len(), lib.omega.len());
    let out = dir.path();
    write_atomic(&out.join(SPECTRA), &npy::encode(&[n, m], &lib.spectra))?;
    write_atomic(
        &out.join(PARAMS),
        &npy::encode(&[n, PARAM_NAMES.len()], &lib.params),
    )?;
    write_atomic(&out.join(OMEGA), &npy::encode(&[m], &lib.omega))?;
    let bath = match spec.bath {
        Bath::Flat => Json::Str("flat".into()),
        Bath::Lorentzian { width } => Json::obj([("lorentzian_width", Json::Num(width))]),
    };
    let json = Json::obj([
        ("format", Json::Str("latticeml-aim-library-1".into())),
        (
            "model",
            Json::Str(
                "single-impurity Anderson model, second order in U around the charge-consistent \
                 Hartree level; energies in units of Gamma"
                    .into(),
            ),
        ),
        ("spectra", Json::Num(n as f64)),
        ("points", Json::Num(m as f64)),
        ("temperature", Json::Num(spec.temperature)),
        ("bath", bath),
        (
            "params",
            Json::Arr(
                PARAM_NAMES
                    .iter()
                    .map(|p| Json::Str(p.to_string()))
                    .collect(),
            ),
        ),
    ]);
    write_atomic(&out.join(LIBRARY_JSON), json.pretty().as_bytes())?;
    Ok(lib)
}

/// A library read back: (ω, spectra `[n][m]`, params `[n][PARAM_NAMES]`).
pub fn read_library(dir: &Path) -> Result<Library> {
    let load = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
        let path = dir.join(name);
        npy::decode(&read(&path)?).map_err(|e| Error::BadFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    };
    let (ws, omega) = load(OMEGA)?;
    let (ss, spectra) = load(SPECTRA)?;
    let (ps, params) = load(PARAMS)?;
    let m = omega.len();
    if ws.len() != 1 || ss.len() != 2 || ss[1] != m || ps != [ss[0], PARAM_NAMES.len()] || m < 2 {
        return Err(Error::BadFile {
            path: dir.display().to_string(),
            reason: format!(
                "shapes omega {ws:?}, spectra {ss:?}, params {ps:?} do not fit together (write \
                 the library with `latticeml vae library`)"
            ),
        });
    }
    Ok(Library {
        omega,
        spectra,
        params,
    })
}

/// What `vae train` measured.
#[derive(Clone, Debug)]
pub struct VaeOutcome {
    /// Held-out spectra.
    pub held_out: usize,
    /// Mean held-out KL(p ‖ p̂) and L1 distance of the reconstructions (z = μ).
    pub recon_kl: f64,
    /// Mean held-out L1 distance Σ|ρ − ρ̂|Δω.
    pub recon_l1: f64,
    /// The same for the training set's mean spectrum (the baseline a model must beat).
    pub baseline_kl: f64,
    /// Its L1 distance.
    pub baseline_l1: f64,
    /// Per latent, per tracked quantity: (name, Pearson r, Spearman ρ, R² of a monotone fit).
    pub tracking: Vec<Vec<(String, f64, f64, f64)>>,
}

/// Trains a VAE on the library in `data`, holding out every `holdout`-th spectrum (by a seeded
/// shuffle), and writes the model directory `out`.
pub fn train(
    data: &Path,
    config: VaeConfig,
    holdout: f64,
    device: &Device,
    out: &Path,
    claim: Claim,
    log: &mut dyn FnMut(&VaeStep),
) -> Result<VaeOutcome> {
    config.validate()?;
    if !(0.0..0.9).contains(&holdout) {
        return Err(Error::InvalidInput(format!(
            "--holdout {holdout}: give a fraction in [0, 0.9)"
        )));
    }
    let lib = read_library(data)?;
    let (n, m) = (lib.len(), lib.omega.len());
    let dw = lib.omega[1] - lib.omega[0];
    let manifest = Manifest {
        command: "vae train".into(),
        parameters: format!("data={}\n{config:?}\nholdout={holdout}\n", data.display()),
        files: [MODEL, VAE_JSON, TRAIN_CSV, LATENT, LATENT_SVG, SUMMARY]
            .map(String::from)
            .to_vec(),
    };
    let dir = OutputDir::claim(out, &manifest, claim)?;
    let out = dir.path();
    let (train_idx, test_idx) = split(n, holdout, config.seed);
    if train_idx.is_empty() {
        return Err(Error::InvalidInput("no spectra left to train on".into()));
    }
    let rows = |idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| lib.spectra[i * m..(i + 1) * m].to_vec())
            .collect()
    };
    let (train_set, test_set) = (rows(&train_idx), rows(&test_idx));
    let mut vae = Vae::new(config.clone(), m, dw, device)?;
    let mut csv = String::from("step,loss,recon_kl,latent_kl\n");
    let logged = vae.train(&train_set, (config.steps / 100).max(1), log)?;
    for s in &logged {
        csv.push_str(&format!("{},{},{},{}\n", s.step, s.loss, s.recon, s.kl));
    }
    safetensors::save(&vae.store, &out.join(MODEL))?;
    write_atomic(&out.join(TRAIN_CSV), csv.as_bytes())?;
    write_atomic(
        &out.join(VAE_JSON),
        model_json(&vae, &lib.omega, holdout).pretty().as_bytes(),
    )?;
    let latent = vae.encode(&lib.spectra)?;
    let l = config.latent;
    write_atomic(&out.join(LATENT), &npy::encode(&[n, l], &latent))?;
    let outcome = evaluate(&vae, &lib, &train_set, &test_set, &latent)?;
    write_atomic(
        &out.join(LATENT_SVG),
        latent_svg(&lib, &latent, l).as_bytes(),
    )?;
    write_atomic(
        &out.join(SUMMARY),
        summary_json(&outcome, &logged).pretty().as_bytes(),
    )?;
    Ok(outcome)
}

/// Indices shuffled by Philox (seed) and cut: (training, held out).
fn split(n: usize, holdout: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut keyed: Vec<(u64, usize)> = (0..n)
        .map(|i| {
            let b = philox::philox4x32_10([i as u32, 0, 0, 22], philox::key_from_seed(seed));
            ((b[0] as u64) << 32 | b[1] as u64, i)
        })
        .collect();
    keyed.sort_unstable();
    let cut = ((n as f64) * holdout).round() as usize;
    let idx: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    (idx[cut..].to_vec(), idx[..cut].to_vec())
}

/// Held-out errors against the mean-spectrum baseline, and how the latents track the physics.
fn evaluate(
    vae: &Vae,
    lib: &Library,
    train_set: &[f64],
    test_set: &[f64],
    latent: &[f64],
) -> Result<VaeOutcome> {
    let (m, dw) = (vae.points, vae.dw);
    // Without held-out spectra the errors are those on the training set.
    let judged = if test_set.is_empty() {
        train_set
    } else {
        test_set
    };
    let k = judged.len() / m;
    let hat = vae.decode(&vae.encode(judged)?)?;
    let mean_of = |e: &[(f64, f64)]| {
        let n = e.len().max(1) as f64;
        (
            e.iter().map(|x| x.0).sum::<f64>() / n,
            e.iter().map(|x| x.1).sum::<f64>() / n,
        )
    };
    let (recon_kl, recon_l1) = mean_of(&reconstruction_errors(judged, &hat, m, dw));
    let rows = train_set.len() / m;
    let mean: Vec<f64> = (0..m)
        .map(|j| (0..rows).map(|r| train_set[r * m + j]).sum::<f64>() / rows as f64)
        .collect();
    let baseline: Vec<f64> = (0..k).flat_map(|_| mean.clone()).collect();
    let (baseline_kl, baseline_l1) = mean_of(&reconstruction_errors(judged, &baseline, m, dw));
    let tracking = tracking(lib, latent, vae.config.latent);
    Ok(VaeOutcome {
        held_out: test_set.len() / m,
        recon_kl,
        recon_l1,
        baseline_kl,
        baseline_l1,
        tracking,
    })
}

/// The quantities each latent is compared with: particle–hole asymmetry (n_d − 1 and ⟨ω⟩), the
/// low-energy scale (Z) and U/Γ.
fn tracked(lib: &Library) -> Vec<(String, Vec<f64>)> {
    let p = PARAM_NAMES.len();
    let col = |c: usize| lib.params.chunks(p).map(|r| r[c]).collect::<Vec<_>>();
    vec![
        (
            "n_d_minus_1".into(),
            col(2).iter().map(|x| x - 1.0).collect(),
        ),
        ("mean_omega".into(), col(4)),
        ("z".into(), col(3)),
        ("u_over_gamma".into(), col(0)),
    ]
}

fn tracking(lib: &Library, latent: &[f64], l: usize) -> Vec<Vec<(String, f64, f64, f64)>> {
    let qs = tracked(lib);
    (0..l)
        .map(|d| {
            let z: Vec<f64> = latent.chunks(l).map(|r| r[d]).collect();
            qs.iter()
                .map(|(name, q)| {
                    (
                        name.clone(),
                        pearson(&z, q),
                        spearman(&z, q),
                        monotone_r2(&z, q),
                    )
                })
                .collect()
        })
        .collect()
}

/// Pearson's correlation coefficient.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

/// Ranks 0..n (ties share their mean rank).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            r[k] = 0.5 * (i + j) as f64;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// R² of the best monotone (increasing or decreasing) map y ≈ f(x): isotonic regression by pool
/// adjacent violators, in both directions.
pub fn monotone_r2(x: &[f64], y: &[f64]) -> f64 {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let ys: Vec<f64> = idx.iter().map(|&i| y[i]).collect();
    let my = ys.iter().sum::<f64>() / ys.len().max(1) as f64;
    let total: f64 = ys.iter().map(|v| (v - my).powi(2)).sum();
    if total == 0.0 {
        return 0.0;
    }
    let fit = |ys: &[f64]| -> f64 {
        let fitted = isotonic(ys);
        ys.iter()
            .zip(&fitted)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
    };
    let down: Vec<f64> = ys.iter().map(|v| -v).collect();
    1.0 - fit(&ys).min(fit(&down)) / total
}

/// The non-decreasing least-squares fit to `y` (pool adjacent violators).
fn isotonic(y: &[f64]) -> Vec<f64> {
    let mut blocks: Vec<(f64, usize)> = Vec::new();
    for &v in y {
        blocks.push((v, 1));
        while blocks.len() > 1 && blocks[blocks.len() - 2].0 > blocks[blocks.len() - 1].0 {
            let (b, nb) = blocks.pop().unwrap_or((0.0, 0));
            let (a, na) = blocks.pop().unwrap_or((0.0, 0));
            let n = na + nb;
            blocks.push(((a * na as f64 + b * nb as f64) / n as f64, n));
        }
    }
    blocks
        .into_iter()
        .flat_map(|(v, n)| std::iter::repeat_n(v, n))
        .collect()
}

fn model_json(vae: &Vae, omega: &[f64], holdout: f64) -> Json {
    let c = &vae.config;
    Json::obj([
        ("holdout", Json::Num(holdout)),
        ("format", Json::Str("latticeml-vae-1".into())),
        ("latent", Json::Num(c.latent as f64)),
        ("hidden", Json::Num(c.hidden as f64)),
        ("beta", Json::Num(c.beta)),
        ("precision", Json::Num(c.precision)),
        ("lr", Json::Num(c.lr)),
        ("batch", Json::Num(c.batch as f64)),
        ("steps", Json::Num(c.steps as f64)),
        ("seed", Json::Str(c.seed.to_string())),
        ("omega_min", Json::Num(omega[0])),
        ("omega_max", Json::Num(omega[omega.len() - 1])),
        ("points", Json::Num(omega.len() as f64)),
    ])
}

/// The parsed `vae.json` of a model directory.
fn model_record(dir: &Path) -> Result<Json> {
    let path = dir.join(VAE_JSON);
    let text = String::from_utf8_lossy(&read(&path)?).into_owned();
    Json::parse(&text).map_err(|e| Error::BadFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The trained model of a directory written by [`train`].
pub fn load_model(dir: &Path, device: &Device) -> Result<Vae> {
    let json = model_record(dir)?;
    let f = Fields::new(&json, VAE_JSON);
    f.format("latticeml-vae-1")?;
    let config = VaeConfig {
        latent: f.count("latent")?,
        hidden: f.count("hidden")?,
        beta: f.num("beta")?,
        precision: f.num("precision")?,
        lr: f.num("lr")?,
        batch: f.count("batch")?,
        steps: f.count("steps")?,
        seed: f.big("seed")?,
    };
    let points = f.count("points")?;
    let (lo, hi) = (f.num("omega_min")?, f.num("omega_max")?);
    let mut vae = Vae::new(
        config,
        points,
        (hi - lo) / (points.max(2) - 1) as f64,
        device,
    )?;
    let ctx = vae.store.ctx().clone();
    let stored = safetensors::load(&ctx, &dir.join(MODEL))?;
    for name in vae.store.names() {
        let want = vae.store.get(&name)?.shape().to_vec();
        let got = stored.get(&name).map_err(|_| Error::BadFile {
            path: dir.join(MODEL).display().to_string(),
            reason: format!("no tensor '{name}'"),
        })?;
        if got.shape() != want.as_slice() {
            return Err(Error::BadFile {
                path: dir.join(MODEL).display().to_string(),
                reason: format!("'{name}' has shape {:?}, {want:?} expected", got.shape()),
            });
        }
        vae.store.insert(&name, got.copy()?);
    }
    Ok(vae)
}

/// Encodes (`encode`) the spectra of an `.npy` `[n][points]`, or decodes the latents of an
/// `.npy` `[n][latent]`, with the model in `model`; writes `latent.npy` or `spectra.npy` to `out`.
pub fn apply(
    model: &Path,
    input: &Path,
    encode: bool,
    device: &Device,
    out: &Path,
    claim: Claim,
) -> Result<usize> {
    let vae = load_model(model, device)?;
    let (shape, data) = npy::decode(&read(input)?).map_err(|e| Error::BadFile {
        path: input.display().to_string(),
        reason: e.to_string(),
    })?;
    let width = if encode {
        vae.points
    } else {
        vae.config.latent
    };
    if shape.len() != 2 || shape[1] != width {
        return Err(Error::BadFile {
            path: input.display().to_string(),
            reason: format!("shape {shape:?}; [n, {width}] expected for this model"),
        });
    }
    let file = if encode { LATENT } else { SPECTRA };
    let manifest = Manifest {
        command: if encode { "vae encode" } else { "vae decode" }.into(),
        parameters: format!("model={}\ninput={}\n", model.display(), input.display()),
        files: vec![file.to_string()],
    };
    let dir = OutputDir::claim(out, &manifest, claim)?;
    let (result, w) = match encode {
        true => (vae.encode(&data)?, vae.config.latent),
        false => (vae.decode(&data)?, vae.points),
    };
    write_atomic(
        &dir.path().join(file),
        &npy::encode(&[shape[0], w], &result),
    )?;
    Ok(shape[0])
}

/// The decoder as a prior ([`super::vae_prior`]) on mock imaginary-time data of the library
/// spectra the model in `model` held out; writes `prior.csv` (per spectrum and method) and
/// `summary.json` (means per method) to `out`. Returns the rows.
pub fn prior(
    model: &Path,
    data: &Path,
    settings: &PriorSettings,
    device: &Device,
    out: &Path,
    claim: Claim,
) -> Result<Vec<PriorRow>> {
    settings.validate()?;
    let vae = load_model(model, device)?;
    let json = model_record(model)?;
    let holdout = Fields::new(&json, VAE_JSON).num("holdout")?;
    let lib = read_library(data)?;
    let (_, held_out) = split(lib.len(), holdout, vae.config.seed);
    if held_out.is_empty() {
        return Err(Error::InvalidInput(
            "the model held out no spectra (trained with --holdout 0): nothing unseen to test on"
                .into(),
        ));
    }
    let manifest = Manifest {
        command: "vae prior".into(),
        parameters: format!(
            "model={}\ndata={}\n{settings:?}\n",
            model.display(),
            data.display()
        ),
        files: vec![PRIOR_CSV.into(), SUMMARY.into()],
    };
    let dir = OutputDir::claim(out, &manifest, claim)?;
    let rows = compare(&vae, &lib.omega, &lib.spectra, &held_out, settings)?;
    let mut csv = String::from("spectrum,method,chi2_per_point,l1,mse\n");
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            r.spectrum, r.method, r.chi2, r.l1, r.mse
        ));
    }
    write_atomic(&dir.path().join(PRIOR_CSV), csv.as_bytes())?;
    let methods = prior_means(&rows).into_iter().map(|(m, c, l1, mse)| {
        (
            m.to_string(),
            Json::obj([
                ("chi2_per_point", Json::Num(c)),
                ("l1", Json::Num(l1)),
                ("mse", Json::Num(mse)),
            ]),
        )
    });
    let summary = Json::obj([
        ("spectra", Json::Num(held_out.len() as f64)),
        ("beta", Json::Num(settings.beta)),
        ("taus", Json::Num(settings.taus as f64)),
        ("noise", Json::Num(settings.noise)),
        ("methods", Json::obj(methods)),
    ]);
    write_atomic(&dir.path().join(SUMMARY), summary.pretty().as_bytes())?;
    Ok(rows)
}

/// Per method (in order of appearance): mean χ²/N, L1 and MSE.
pub fn prior_means(rows: &[PriorRow]) -> Vec<(&'static str, f64, f64, f64)> {
    let mut methods: Vec<&'static str> = Vec::new();
    for r in rows {
        if !methods.contains(&r.method) {
            methods.push(r.method);
        }
    }
    methods
        .into_iter()
        .map(|m| {
            let of: Vec<&PriorRow> = rows.iter().filter(|r| r.method == m).collect();
            let n = of.len() as f64;
            let mean = |f: fn(&PriorRow) -> f64| of.iter().map(|r| f(r)).sum::<f64>() / n;
            (m, mean(|r| r.chi2), mean(|r| r.l1), mean(|r| r.mse))
        })
        .collect()
}

fn summary_json(o: &VaeOutcome, logged: &[VaeStep]) -> Json {
    let last = logged.last();
    let tracking = o.tracking.iter().enumerate().map(|(d, qs)| {
        (
            format!("z{}", d + 1),
            Json::obj(qs.iter().map(|(name, r, s, m)| {
                (
                    name.clone(),
                    Json::obj([
                        ("pearson", Json::Num(*r)),
                        ("spearman", Json::Num(*s)),
                        ("monotone_r2", Json::Num(*m)),
                    ]),
                )
            })),
        )
    });
    Json::obj([
        ("held_out", Json::Num(o.held_out as f64)),
        ("recon_kl", Json::Num(o.recon_kl)),
        ("recon_l1", Json::Num(o.recon_l1)),
        ("baseline_kl", Json::Num(o.baseline_kl)),
        ("baseline_l1", Json::Num(o.baseline_l1)),
        ("final_loss", Json::Num(last.map_or(f64::NAN, |s| s.loss))),
        ("latents", Json::obj(tracking)),
    ])
}

/// The latent plane (the first two latents) coloured by n_d − 1, Z and U/Γ, one panel each.
fn latent_svg(lib: &Library, latent: &[f64], l: usize) -> String {
    let x: Vec<f64> = latent.chunks(l).map(|r| r[0]).collect();
    let y: Vec<f64> = latent
        .chunks(l)
        .map(|r| if l > 1 { r[1] } else { 0.0 })
        .collect();
    let qs = tracked(lib);
    let panels: Vec<svg::ScatterPanel> = [0usize, 2, 3]
        .iter()
        .map(|&k| svg::ScatterPanel {
            title: &qs[k].0,
            x: &x,
            y: &y,
            colour: &qs[k].1,
        })
        .collect();
    svg::scatter(&panels, ("z1", if l > 1 { "z2" } else { "(one latent)" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlations_and_monotone_fits_know_their_answers() {
        let x: Vec<f64> = (0..50).map(|i| i as f64 / 10.0).collect();
        let y: Vec<f64> = x.iter().map(|v| (-v).exp()).collect();
        assert!(
            (pearson(&x, &x.iter().map(|v| 3.0 - 2.0 * v).collect::<Vec<_>>()) + 1.0).abs() < 1e-12
        );
        assert!((spearman(&x, &y) + 1.0).abs() < 1e-12);
        assert!((monotone_r2(&x, &y) - 1.0).abs() < 1e-12);
        // A parabola is not monotone: a monotone fit explains part of it only.
        let p: Vec<f64> = x.iter().map(|v| (v - 2.5).powi(2)).collect();
        assert!(monotone_r2(&x, &p) < 0.6 && spearman(&x, &p).abs() < 0.1);
        assert_eq!(isotonic(&[3.0, 1.0, 2.0, 5.0]), vec![2.0, 2.0, 2.0, 5.0]);
    }
}
