//! The variance-exploding SDE of the score-based diffusion models (Song et al., ICLR 2021; on the
//! lattice Wang, Aarts, Zhou, arXiv:2309.17082): dx = σᵗ dw for t ∈ [0, 1], so the marginal at
//! time t is the data smeared by a Gaussian of variance σ_t² = (σ^{2t} − 1)/(2 ln σ).
//!
//! The reverse process, with the score s(x, t) = ∇ ln p_t(x), is sampled from the h-interpolated
//! family of the path-integral view, dx = −½(1 + h²) g² s dt + h g dw̄ with g(t) = σᵗ: h = 1 the
//! reverse SDE (Euler–Maruyama), h = 0 the probability-flow ODE (here by Heun's method).

use crate::error::{Error, Result};
use crate::philox;

/// The VE SDE with parameter σ (25 in the papers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VeSde {
    /// σ > 1.
    pub sigma: f64,
    /// The data's mean per-site second moment c (1 unless set): the marginal's scale is then
    /// about σ̄_t² = c + σ_t², which sets the predictor–corrector's Langevin step.
    pub data_variance: f64,
}

impl VeSde {
    /// The SDE of `sigma` (> 1, finite).
    pub fn new(sigma: f64) -> Result<Self> {
        if !(sigma.is_finite() && sigma > 1.0) {
            return Err(Error::InvalidInput(format!(
                "sigma = {sigma}: the VE SDE needs a finite sigma > 1 (25 in the papers)"
            )));
        }
        Ok(VeSde {
            sigma,
            data_variance: 1.0,
        })
    }

    /// The same SDE for data of mean per-site second moment `c` (> 0, finite).
    pub fn with_data_variance(self, c: f64) -> Result<Self> {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::InvalidInput(format!(
                "data variance {c}: must be positive and finite"
            )));
        }
        Ok(VeSde {
            data_variance: c,
            ..self
        })
    }

    /// g(t) = σᵗ.
    pub fn g(&self, t: f64) -> f64 {
        self.sigma.powf(t)
    }

    /// The marginal standard deviation σ_t = √((σ^{2t} − 1)/(2 ln σ)).
    pub fn marginal_std(&self, t: f64) -> f64 {
        ((self.sigma.powf(2.0 * t) - 1.0) / (2.0 * self.sigma.ln())).sqrt()
    }
}

/// How the reverse process is integrated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Integrator {
    /// Euler–Maruyama of the h-interpolated family (h = 1: the reverse SDE).
    Euler {
        /// The interpolation h ∈ [0, 1].
        h: f64,
    },
    /// The reverse SDE by Euler–Maruyama (the predictor), each step followed by Langevin
    /// corrector steps at the new time (Song et al., ICLR 2021, Algorithm 4 for the VE SDE) of
    /// size ε = 2 r² σ̄_t²: their rule ε = 2 (r ‖z‖/‖s‖)² with the norms replaced by their values
    /// for Gaussian data of the training ensemble's scale (‖z‖² ≈ V, ‖s‖² ≈ V/σ̄_t²). Per-sample
    /// norms make ε depend on the state and bias the corrector's fixed point (by 6 % in the
    /// variance at r = 0.05); Song's batch means make a draw depend on the rest of its batch.
    PredictorCorrector {
        /// The signal-to-noise ratio r of the corrector.
        snr: f64,
        /// Langevin steps after every predictor step.
        corrector_steps: usize,
    },
    /// Heun's method for the probability-flow ODE (h = 0), second order, fixed steps.
    Heun,
    /// The adaptive Dormand–Prince 5(4) pair for the probability-flow ODE, with a step size
    /// per sample (so a draw does not depend on the others in its batch).
    Rk45 {
        /// Relative (and absolute) tolerance of the local error.
        tol: f64,
    },
}

impl Integrator {
    /// Whether it integrates the probability-flow ODE (deterministic; a density can come with
    /// the draw).
    pub fn is_ode(&self) -> bool {
        matches!(self, Integrator::Heun | Integrator::Rk45 { .. })
    }

    /// Checks the integrator's parameters.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidInput(what));
        match *self {
            Integrator::Euler { h } if !(0.0..=1.0).contains(&h) => {
                bad(format!("--h {h}: use 0 <= h <= 1"))
            }
            Integrator::PredictorCorrector { snr, .. } if !(snr.is_finite() && snr > 0.0) => bad(
                format!("--snr {snr}: use a positive signal-to-noise ratio (0.16 in the papers)"),
            ),
            Integrator::PredictorCorrector {
                corrector_steps, ..
            } if corrector_steps > 255 => bad(format!(
                "--corrector-steps {corrector_steps}: use at most 255"
            )),
            Integrator::Rk45 { tol } if !(tol.is_finite() && tol > 0.0 && tol < 1.0) => {
                bad(format!("--tol {tol}: use 0 < tol < 1 (1e-5 is usual)"))
            }
            _ => Ok(()),
        }
    }
}

/// The keys of a batch's draws: sample `sample0 + b` of `seed`'s `stream`, step words from
/// `first_step` (the start x₁ uses `first_step`, step i of the reverse SDE `first_step + i + 1`,
/// corrector step j of it the same word with `stream | (j + 1) << 8`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DrawKey {
    /// The seed.
    pub seed: u64,
    /// Philox stream word (below 256).
    pub stream: u32,
    /// The global index of the batch's first sample.
    pub sample0: u32,
    /// The first step word.
    pub first_step: u64,
}

impl DrawKey {
    /// Standard normals `[batch][volume]` of step word `first_step + step`, corrector `sub`.
    fn normals(&self, (batch, volume): (usize, usize), step: usize, sub: u32) -> Vec<f64> {
        let mut z = vec![0.0; batch * volume];
        let word = (self.first_step + step as u64) as u32;
        for (b, row) in z.chunks_mut(volume.max(1)).enumerate() {
            philox::fill_normals(
                row,
                self.seed,
                self.sample0 + b as u32,
                word,
                self.stream | sub << 8,
            );
        }
        z
    }
}

/// A batch of draws of the reverse process.
#[derive(Clone, Debug, PartialEq)]
pub struct Draws {
    /// The configurations `[batch][volume]`.
    pub x: Vec<f64>,
    /// ln q of every draw (the ODE integrated with the divergence), if asked for.
    pub log_q: Option<Vec<f64>>,
    /// Score evaluations of one sample (the mean over the batch for the adaptive integrator).
    pub evaluations_per_sample: f64,
}

/// Evaluations past which the adaptive integrator gives up (per sample).
const MAX_RK45_EVALUATIONS: usize = 200_000;

/// Integrates the reverse process from t = 1 to `t_end` for `batch` configurations of `volume`
/// sites, starting from N(0, σ_1²): `steps` equal steps (the initial step of `Rk45`).
/// `score(x, t)` gives s(x, t) `[B][V]` of x `[B][V]` at per-sample times t `[B]`.
pub fn reverse<F>(
    sde: &VeSde,
    integrator: Integrator,
    (steps, t_end): (usize, f64),
    (batch, volume): (usize, usize),
    key: DrawKey,
    mut score: F,
) -> Result<Draws>
where
    F: FnMut(&[f64], &[f64]) -> Result<Vec<f64>>,
{
    check_schedule(integrator, steps, t_end, &key)?;
    if integrator.is_ode() {
        return probability_flow(
            sde,
            integrator,
            (steps, t_end),
            (batch, volume),
            key,
            |x, t, _| Ok((score(x, t)?, Vec::new())),
        );
    }
    let shape = (batch, volume);
    let mut x = key.normals(shape, 0, 0);
    x.iter_mut().for_each(|z| *z *= sde.marginal_std(1.0));
    let dt = (1.0 - t_end) / steps as f64;
    let mut evaluations = 0;
    for i in 0..steps {
        let t = 1.0 - i as f64 * dt;
        let s = score(&x, &vec![t; batch])?;
        let h = match integrator {
            Integrator::Euler { h } => h,
            _ => 1.0,
        };
        let z = key.normals(shape, i + 1, 0);
        let (drift, noise) = (
            0.5 * (1.0 + h * h) * sde.g(t).powi(2) * dt,
            h * sde.g(t) * dt.sqrt(),
        );
        for ((xi, si), zi) in x.iter_mut().zip(&s).zip(&z) {
            *xi += drift * si + noise * zi;
        }
        evaluations += 1;
        if let Integrator::PredictorCorrector {
            snr,
            corrector_steps,
        } = integrator
        {
            let eps = 2.0 * snr * snr * (sde.data_variance + sde.marginal_std(t - dt).powi(2));
            for j in 0..corrector_steps {
                let s = score(&x, &vec![t - dt; batch])?;
                let z = key.normals(shape, i + 1, j as u32 + 1);
                let noise = (2.0 * eps).sqrt();
                for ((xi, si), zi) in x.iter_mut().zip(&s).zip(&z) {
                    *xi += eps * si + noise * zi;
                }
                evaluations += 1;
            }
        }
    }
    Ok(Draws {
        x,
        log_q: None,
        evaluations_per_sample: evaluations as f64,
    })
}

fn check_schedule(integrator: Integrator, steps: usize, t_end: f64, key: &DrawKey) -> Result<()> {
    integrator.validate()?;
    if steps == 0 || !(0.0..1.0).contains(&t_end) {
        return Err(Error::InvalidInput(format!(
            "{steps} steps down to t = {t_end}: give at least one step and 0 <= t_end < 1"
        )));
    }
    if key.first_step + steps as u64 >= 1 << 32 || key.stream >= 256 {
        return Err(Error::InvalidInput(
            "more reverse-process steps than the 2^32 the draws can tell apart".into(),
        ));
    }
    Ok(())
}

/// The probability-flow ODE from t = 1 to `t_end` with the log-density along the path:
/// d ln p_t(x(t))/dt = −∇·f = ½ g² ∇·s, so
/// ln q(x_end) = ln N(x_1; 0, σ_1²) − ½ ∫_{t_end}^1 g² ∇·s dt, integrated by the same steps as x
/// (exact up to the integrator's error: the Metropolis correction built on it is exact up to
/// that). `integrator` is `Heun` or `Rk45`; `score_div(x, t, rows)` gives s `[B'][V]` and ∇·s
/// `[B']` at per-sample times t `[B']` for the batch's samples `rows` (all of them for Heun, those
/// still moving for the adaptive integrator).
pub fn reverse_ode_with_density<F>(
    sde: &VeSde,
    integrator: Integrator,
    (steps, t_end): (usize, f64),
    shape: (usize, usize),
    key: DrawKey,
    score_div: F,
) -> Result<Draws>
where
    F: FnMut(&[f64], &[f64], &[usize]) -> Result<(Vec<f64>, Vec<f64>)>,
{
    check_schedule(integrator, steps, t_end, &key)?;
    if !integrator.is_ode() {
        return Err(Error::InvalidInput(
            "the draws' density needs the probability-flow ODE (heun or rk45)".into(),
        ));
    }
    let mut d = probability_flow(sde, integrator, (steps, t_end), shape, key, score_div)?;
    if d.log_q.is_none() {
        d.log_q = Some(vec![0.0; shape.0]);
    }
    Ok(d)
}

/// ln q(x) of given configurations `x` `[B][V]` under the probability-flow ODE's model: the ODE
/// integrated forward from t = `t_end` (where x sits) to 1 by Heun's `steps` equal steps with the
/// divergence, ln q(x) = ln N(x_1; 0, σ_1²) − ½ ∫_{t_end}^1 g² ∇·s dt (the reverse of
/// [`reverse_ode_with_density`]; the two agree to the integrator's O(Δt²)). For a configuration
/// the model did not propose, e.g. one moved on by HMC between independence steps.
/// `score_div` as for [`reverse_ode_with_density`].
pub fn ode_log_density<F>(
    sde: &VeSde,
    (steps, t_end): (usize, f64),
    x: &[f64],
    batch: usize,
    mut score_div: F,
) -> Result<Vec<f64>>
where
    F: FnMut(&[f64], &[f64], &[usize]) -> Result<(Vec<f64>, Vec<f64>)>,
{
    if steps == 0 || !(t_end > 0.0 && t_end < 1.0) || batch == 0 || !x.len().is_multiple_of(batch) {
        return Err(Error::InvalidInput(format!(
            "the forward ODE needs steps >= 1, 0 < t_end < 1 and [{batch}][V] configurations"
        )));
    }
    let volume = x.len() / batch;
    let rows: Vec<usize> = (0..batch).collect();
    let mut y = OdeState {
        x: x.to_vec(),
        l: vec![0.0; batch],
    };
    let mut g =
        |y: &OdeState, t: f64| flow_velocity(sde, &mut score_div, y, &vec![t; batch], &rows);
    // Forward in t is backward in τ = 1 − t: steps of −dt in τ.
    let dt = (1.0 - t_end) / steps as f64;
    for i in 0..steps {
        let t = t_end + i as f64 * dt;
        let k1 = g(&y, t)?;
        let pred = axpy(&y, &[(-dt, &k1)]);
        let k2 = g(&pred, t + dt)?;
        y = axpy(&y, &[(-0.5 * dt, &k1), (-0.5 * dt, &k2)]);
    }
    // y.l = −∫ (d ln q/dτ) dτ over the path, so ln q(x) = ln N(x_1) + ∫ … = ln N(x_1) − y.l.
    Ok(y.x
        .chunks(volume.max(1))
        .zip(&y.l)
        .map(|(x1, l)| gaussian_log_density(x1, sde.marginal_std(1.0)) - l)
        .collect())
}

/// ln N(x; 0, s²) of a configuration.
fn gaussian_log_density(x: &[f64], s: f64) -> f64 {
    let n = x.len() as f64;
    -0.5 * x.iter().map(|v| v * v).sum::<f64>() / (s * s)
        - 0.5 * n * (2.0 * std::f64::consts::PI * s * s).ln()
}

/// The ODE's state: x `[B][V]` and ln q `[B]`, moving in reverse time τ = 1 − t.
#[derive(Clone)]
struct OdeState {
    x: Vec<f64>,
    l: Vec<f64>,
}

/// dx/dτ = ½ g² s and d ln q/dτ = −½ g² ∇·s at per-sample times (ln q's rate is zero when the
/// divergence is not asked for).
fn flow_velocity<F>(
    sde: &VeSde,
    f: &mut F,
    y: &OdeState,
    t: &[f64],
    rows: &[usize],
) -> Result<OdeState>
where
    F: FnMut(&[f64], &[f64], &[usize]) -> Result<(Vec<f64>, Vec<f64>)>,
{
    let v = y.x.len() / t.len().max(1);
    let (s, div) = f(&y.x, t, rows)?;
    if s.len() != y.x.len() || !(div.is_empty() || div.len() == t.len()) {
        return Err(Error::InvalidInput(
            "the score function returned the wrong number of values".into(),
        ));
    }
    let half_g2: Vec<f64> = t.iter().map(|&ti| 0.5 * sde.g(ti).powi(2)).collect();
    let x = s
        .iter()
        .enumerate()
        .map(|(i, si)| half_g2[i / v.max(1)] * si)
        .collect();
    let l = match div.is_empty() {
        true => vec![0.0; t.len()],
        false => div.iter().zip(&half_g2).map(|(d, h)| -h * d).collect(),
    };
    Ok(OdeState { x, l })
}

fn probability_flow<F>(
    sde: &VeSde,
    integrator: Integrator,
    (steps, t_end): (usize, f64),
    (batch, volume): (usize, usize),
    key: DrawKey,
    mut f: F,
) -> Result<Draws>
where
    F: FnMut(&[f64], &[f64], &[usize]) -> Result<(Vec<f64>, Vec<f64>)>,
{
    let s1 = sde.marginal_std(1.0);
    let mut x = key.normals((batch, volume), 0, 0);
    x.iter_mut().for_each(|z| *z *= s1);
    let l = x
        .chunks(volume.max(1))
        .map(|row| gaussian_log_density(row, s1))
        .collect();
    let mut y = OdeState { x, l };
    let mut with_density = false;
    let mut g = |y: &OdeState, t: &[f64], rows: &[usize]| -> Result<OdeState> {
        let v = flow_velocity(sde, &mut f, y, t, rows)?;
        with_density |= v.l.iter().any(|&r| r != 0.0);
        Ok(v)
    };
    let evaluations = match integrator {
        Integrator::Rk45 { tol } => {
            dormand_prince(&mut y, volume, (1.0, t_end), tol, steps, &mut g)?
        }
        _ => {
            let dt = (1.0 - t_end) / steps as f64;
            let rows: Vec<usize> = (0..batch).collect();
            for i in 0..steps {
                let t = 1.0 - i as f64 * dt;
                let k1 = g(&y, &vec![t; batch], &rows)?;
                let pred = axpy(&y, &[(dt, &k1)]);
                let k2 = g(&pred, &vec![t - dt; batch], &rows)?;
                y = axpy(&y, &[(0.5 * dt, &k1), (0.5 * dt, &k2)]);
            }
            2.0 * steps as f64
        }
    };
    Ok(Draws {
        x: y.x,
        log_q: with_density.then_some(y.l),
        evaluations_per_sample: evaluations,
    })
}

/// y + Σ c_k k_k.
fn axpy(y: &OdeState, terms: &[(f64, &OdeState)]) -> OdeState {
    let mut out = y.clone();
    for (c, k) in terms {
        out.x.iter_mut().zip(&k.x).for_each(|(a, b)| *a += c * b);
        out.l.iter_mut().zip(&k.l).for_each(|(a, b)| *a += c * b);
    }
    out
}

/// The Dormand–Prince 5(4) tableau (Dormand and Prince, J. Comput. Appl. Math. 6, 19 (1980)):
/// nodes c, the stages' weights a, the fifth-order weights (the last row of a, so the last stage
/// is the next step's first) and the difference to the embedded fourth-order weights.
const DP_C: [f64; 7] = [0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0];
const DP_A: [[f64; 6]; 7] = [
    [0.0; 6],
    [0.2, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
const DP_E: [f64; 7] = [
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
];

/// Rows `idx` of a batch state.
fn gather(y: &OdeState, idx: &[usize], v: usize) -> OdeState {
    OdeState {
        x: idx
            .iter()
            .flat_map(|&b| y.x[b * v..(b + 1) * v].iter().copied())
            .collect(),
        l: idx.iter().map(|&b| y.l[b]).collect(),
    }
}

/// Integrates every sample from `t0` down to `t_end` with its own adaptive step (initial
/// (t0 − t_end)/`steps`), the samples still moving evaluated together. The error norm is the RMS
/// over a sample's values of the local error over tol·(1 + max(|y|, |y_new|)). Returns the mean
/// evaluations per sample.
fn dormand_prince<G>(
    y: &mut OdeState,
    v: usize,
    (t0, t_end): (f64, f64),
    tol: f64,
    steps: usize,
    g: &mut G,
) -> Result<f64>
where
    G: FnMut(&OdeState, &[f64], &[usize]) -> Result<OdeState>,
{
    let batch = y.l.len();
    let mut t = vec![t0; batch];
    let mut h = vec![(t0 - t_end) / steps as f64; batch];
    let mut first: Vec<Option<OdeState>> = vec![None; batch];
    let mut evaluations = vec![0usize; batch];
    loop {
        let live: Vec<usize> = (0..batch).filter(|&b| t[b] - t_end > 1e-12).collect();
        if live.is_empty() {
            break;
        }
        if live.iter().any(|&b| evaluations[b] > MAX_RK45_EVALUATIONS) {
            return Err(Error::InvalidInput(format!(
                "the adaptive ODE integrator needed more than {MAX_RK45_EVALUATIONS} score \
                 evaluations for one draw: loosen --tol"
            )));
        }
        let hs: Vec<f64> = live.iter().map(|&b| h[b].min(t[b] - t_end)).collect();
        let y0 = gather(y, &live, v);
        let times =
            |c: f64| -> Vec<f64> { live.iter().zip(&hs).map(|(&b, hb)| t[b] - c * hb).collect() };
        let mut k: Vec<OdeState> = Vec::with_capacity(7);
        k.push(match live.iter().all(|&b| first[b].is_some()) {
            true => stack(live.iter().map(|&b| first[b].as_ref().unwrap()), v),
            false => {
                live.iter().for_each(|&b| evaluations[b] += 1);
                g(&y0, &times(0.0), &live)?
            }
        });
        for s in 1..7 {
            let yi = stage(&y0, &k, &DP_A[s][..s], &hs, v);
            live.iter().for_each(|&b| evaluations[b] += 1);
            k.push(g(&yi, &times(DP_C[s]), &live)?);
        }
        let y5 = stage(&y0, &k, &DP_A[6], &hs, v);
        let err = stage(&zero_like(&y0), &k, &DP_E, &hs, v);
        for (j, &b) in live.iter().enumerate() {
            let e = error_norm(&y0, &y5, &err, j, v, tol);
            if e <= 1.0 {
                y.x[b * v..(b + 1) * v].copy_from_slice(&y5.x[j * v..(j + 1) * v]);
                y.l[b] = y5.l[j];
                t[b] -= hs[j];
                first[b] = Some(gather(&k[6], &[j], v));
            } else {
                first[b] = Some(gather(&k[0], &[j], v));
            }
            if e.is_nan() {
                return Err(Error::NonFinite(
                    "the score is not finite along the probability-flow ODE".into(),
                ));
            }
            // e = 0 gives an infinite power, clamped to the largest growth.
            let factor = (0.9 * e.powf(-0.2)).clamp(0.2, 5.0);
            h[b] = hs[j] * if e <= 1.0 { factor } else { factor.min(1.0) };
        }
    }
    Ok(evaluations.iter().sum::<usize>() as f64 / batch.max(1) as f64)
}

/// Rows of single-sample states stacked into a batch.
fn stack<'a>(rows: impl Iterator<Item = &'a OdeState>, v: usize) -> OdeState {
    let mut out = OdeState {
        x: Vec::new(),
        l: Vec::new(),
    };
    for r in rows {
        out.x.extend_from_slice(&r.x[..v]);
        out.l.push(r.l[0]);
    }
    out
}

fn zero_like(y: &OdeState) -> OdeState {
    OdeState {
        x: vec![0.0; y.x.len()],
        l: vec![0.0; y.l.len()],
    }
}

/// y + h_b Σ_s a_s k_s per sample b.
fn stage(y: &OdeState, k: &[OdeState], a: &[f64], h: &[f64], v: usize) -> OdeState {
    let mut out = y.clone();
    for (ks, &as_) in k.iter().zip(a) {
        if as_ == 0.0 {
            continue;
        }
        for (i, (o, kv)) in out.x.iter_mut().zip(&ks.x).enumerate() {
            *o += h[i / v.max(1)] * as_ * kv;
        }
        for ((o, kv), hb) in out.l.iter_mut().zip(&ks.l).zip(h) {
            *o += hb * as_ * kv;
        }
    }
    out
}

/// Sample j's RMS of err / (tol (1 + max(|y0|, |y1|))) over its sites and ln q.
fn error_norm(y0: &OdeState, y1: &OdeState, err: &OdeState, j: usize, v: usize, tol: f64) -> f64 {
    let scaled = |e: f64, a: f64, b: f64| e / (tol * (1.0 + a.abs().max(b.abs())));
    let mut sum = 0.0;
    for i in j * v..(j + 1) * v {
        sum += scaled(err.x[i], y0.x[i], y1.x[i]).powi(2);
    }
    sum += scaled(err.l[j], y0.l[j], y1.l[j]).powi(2);
    (sum / (v + 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: DrawKey = DrawKey {
        seed: 1,
        stream: 9,
        sample0: 0,
        first_step: 0,
    };

    /// The exact score of N(0, v) data per site: the smeared marginal is N(0, v + σ_t²).
    fn gaussian_score(sde: &VeSde, v: f64, n: usize) -> impl Fn(&[f64], &[f64]) -> Vec<f64> + '_ {
        move |x, t| {
            x.iter()
                .enumerate()
                .map(|(i, xi)| -xi / (v + sde.marginal_std(t[i / n]).powi(2)))
                .collect()
        }
    }

    /// For Gaussian data every member of the family ends at variance v (to the integrator's
    /// error), and so do the predictor–corrector and the adaptive ODE.
    #[test]
    fn the_reverse_process_with_the_exact_score_recovers_gaussian_data() {
        let (v, n) = (0.7, 64);
        let sde = VeSde::new(25.0).unwrap().with_data_variance(v).unwrap();
        let score = gaussian_score(&sde, v, n);
        let pc = |steps| Integrator::PredictorCorrector {
            snr: 0.1,
            corrector_steps: steps,
        };
        for (integrator, steps) in [
            (Integrator::Euler { h: 1.0 }, 1000),
            (Integrator::Euler { h: 0.5 }, 1000),
            (Integrator::Euler { h: 0.0 }, 1000),
            (pc(1), 500),
            (Integrator::Heun, 200),
            (Integrator::Rk45 { tol: 1e-5 }, 10),
        ] {
            let d = reverse(&sde, integrator, (steps, 1e-3), (250, n), KEY, |x, t| {
                Ok(score(x, t))
            })
            .unwrap();
            let got = d.x.iter().map(|a| a * a).sum::<f64>() / d.x.len() as f64;
            // 16 000 values: the variance's relative error is about √(2/16000) ≈ 1.1 %.
            assert!(
                (got / v - 1.0).abs() < 0.05,
                "{integrator:?}: variance {got} vs {v}"
            );
        }
        assert!(VeSde::new(1.0).is_err());
        let f = |x: &[f64], _: &[f64]| Ok(x.to_vec());
        for bad in [
            Integrator::Euler { h: 2.0 },
            Integrator::Rk45 { tol: 0.0 },
            Integrator::PredictorCorrector {
                snr: f64::NAN,
                corrector_steps: 1,
            },
        ] {
            assert!(reverse(&sde, bad, (10, 0.0), (1, 1), KEY, f).is_err());
        }
    }

    /// Twenty Euler–Maruyama steps overshoot the data's variance (5 % here); Langevin corrector
    /// steps pull the draws back towards the marginal they are at.
    #[test]
    fn corrector_steps_reduce_the_predictors_error() {
        let (v, n) = (0.7, 64);
        let sde = VeSde::new(25.0).unwrap().with_data_variance(v).unwrap();
        let score = gaussian_score(&sde, v, n);
        let error = |integrator| {
            let d = reverse(&sde, integrator, (20, 1e-3), (250, n), KEY, |x, t| {
                Ok(score(x, t))
            })
            .unwrap();
            (d.x.iter().map(|a| a * a).sum::<f64>() / d.x.len() as f64 / v - 1.0).abs()
        };
        let em = error(Integrator::Euler { h: 1.0 });
        let pc = error(Integrator::PredictorCorrector {
            snr: 0.1,
            corrector_steps: 4,
        });
        assert!(em > 0.03 && pc < 0.5 * em, "EM {em}, PC {pc}");
    }

    #[test]
    fn marginal_std_and_g_match_the_sde() {
        let sde = VeSde::new(25.0).unwrap();
        assert_eq!(sde.marginal_std(0.0), 0.0);
        // dσ_t²/dt = g(t)².
        for t in [0.1, 0.5, 0.9] {
            let e = 1e-6;
            let d = (sde.marginal_std(t + e).powi(2) - sde.marginal_std(t - e).powi(2)) / (2.0 * e);
            assert!((d / sde.g(t).powi(2) - 1.0).abs() < 1e-6);
        }
    }

    /// With the exact score of N(0, v) data the ODE's map is linear,
    /// x_end = x_1 √((v + σ_end²)/(v + σ_1²)), so from x_1 ~ N(0, σ_1²) the draws have the exact
    /// density N(0, σ_1² (v + σ_end²)/(v + σ_1²)): what the integrated log-density must give,
    /// by Heun's fixed steps and by the adaptive pair (which needs far fewer evaluations).
    #[test]
    fn the_ode_density_is_the_exact_gaussian_density() {
        let sde = VeSde::new(25.0).unwrap();
        let (v, n, t_end) = (0.7, 3, 1e-3);
        let score = gaussian_score(&sde, v, n);
        let s1 = sde.marginal_std(1.0).powi(2);
        let var = s1 * (v + sde.marginal_std(t_end).powi(2)) / (v + s1);
        for (integrator, steps, tol) in [
            (Integrator::Heun, 400, 1e-4),
            (Integrator::Rk45 { tol: 1e-7 }, 10, 1e-5),
        ] {
            let d = reverse_ode_with_density(
                &sde,
                integrator,
                (steps, t_end),
                (50, n),
                KEY,
                |x, t, _| {
                    let div = t
                        .iter()
                        .map(|&ti| -(n as f64) / (v + sde.marginal_std(ti).powi(2)))
                        .collect();
                    Ok((score(x, t), div))
                },
            )
            .unwrap();
            for (row, l) in d.x.chunks(n).zip(d.log_q.as_ref().unwrap()) {
                let exact = -0.5 * row.iter().map(|a| a * a).sum::<f64>() / var
                    - 0.5 * n as f64 * (2.0 * std::f64::consts::PI * var).ln();
                assert!(
                    (l - exact).abs() < tol * exact.abs().max(1.0),
                    "{integrator:?}: {l} vs {exact}"
                );
            }
            if let Integrator::Rk45 { .. } = integrator {
                assert!(
                    d.evaluations_per_sample < 400.0,
                    "{} evaluations",
                    d.evaluations_per_sample
                );
            }
        }
    }

    /// The forward ODE gives the model's exact density of given points (Gaussian data, exact
    /// score), and agrees with the reverse path's ln q of its own draws to O(Δt²).
    #[test]
    fn the_forward_ode_density_matches_the_exact_and_the_reverse_one() {
        let sde = VeSde::new(25.0).unwrap();
        let (v, n, t_end) = (0.7, 3, 1e-3);
        let score = gaussian_score(&sde, v, n);
        let score_div = |x: &[f64], t: &[f64], _: &[usize]| {
            let div = t
                .iter()
                .map(|&ti| -(n as f64) / (v + sde.marginal_std(ti).powi(2)))
                .collect();
            Ok((score(x, t), div))
        };
        // The model's density: N(0, σ_1²) at t = 1 carried by the linear map of the exact score
        // (see the previous test), not the smeared data's N(0, v + σ_end²).
        let s1 = sde.marginal_std(1.0).powi(2);
        let var = s1 * (v + sde.marginal_std(t_end).powi(2)) / (v + s1);
        let x: Vec<f64> = KEY
            .normals((20, n), 0, 0)
            .iter()
            .map(|z| z * var.sqrt())
            .collect();
        let lq = ode_log_density(&sde, (400, t_end), &x, 20, score_div).unwrap();
        for (row, l) in x.chunks(n).zip(&lq) {
            let exact = gaussian_log_density(row, var.sqrt());
            assert!(
                (l - exact).abs() < 1e-4 * exact.abs().max(1.0),
                "{l} vs {exact}"
            );
        }
        let d = reverse_ode_with_density(
            &sde,
            Integrator::Heun,
            (400, t_end),
            (20, n),
            KEY,
            score_div,
        )
        .unwrap();
        let back = ode_log_density(&sde, (400, t_end), &d.x, 20, score_div).unwrap();
        for (a, b) in back.iter().zip(d.log_q.as_ref().unwrap()) {
            assert!((a - b).abs() < 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
        assert!(ode_log_density(&sde, (0, t_end), &x, 20, score_div).is_err());
    }

    /// The adaptive integrator steps every sample on its own: a draw is the same alone as in a
    /// batch whose other members need other steps.
    #[test]
    fn adaptive_draws_do_not_depend_on_the_batch() {
        let sde = VeSde::new(25.0).unwrap();
        let n = 2;
        // A nonlinear score whose stiffness depends on the sample.
        let f = |x: &[f64], t: &[f64]| -> Result<Vec<f64>> {
            Ok(x.iter()
                .enumerate()
                .map(|(i, a)| {
                    -a * (1.0 + 0.3 * a.sin()) / (0.5 + sde.marginal_std(t[i / n]).powi(2))
                })
                .collect())
        };
        let rk = Integrator::Rk45 { tol: 1e-6 };
        let all = reverse(&sde, rk, (20, 1e-3), (5, n), KEY, f).unwrap();
        let key3 = DrawKey { sample0: 3, ..KEY };
        let alone = reverse(&sde, rk, (20, 1e-3), (1, n), key3, f).unwrap();
        assert_eq!(alone.x, all.x[3 * n..4 * n]);
    }
}
