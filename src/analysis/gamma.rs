//! Wolff's Γ-method (U. Wolff, "Monte Carlo errors with less errors", Comput. Phys. Commun. 156
//! (2004) 143): autocorrelation-aware errors with the automatic window, for primary observables
//! and for derived quantities f(⟨a₁⟩, …, ⟨aₙ⟩) by linearisation. Independent chains are replicas.
//! Anticorrelated series (Γ(1) ≤ 0) take Geyer's pair window instead of Wolff's, whose criterion
//! assumes τ_int > ½.

use super::jackknife::jackknife;
use super::replicas::chi2_q;

/// A value with its error and integrated autocorrelation time (in units of measurements).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Its statistical error (autocorrelations included).
    pub error: f64,
    /// Integrated autocorrelation time τ_int (½ for uncorrelated data, below ½ for anticorrelated).
    pub tau_int: f64,
    /// Error of τ_int.
    pub tau_int_error: f64,
    /// Why the error is not to be trusted, when it is not: a series without fluctuations (error
    /// NaN: a stuck chain, never "exactly 0"), or one too short for the automatic window.
    pub note: Option<&'static str>,
}

/// [`Estimate::note`] of a series without fluctuations.
pub const NOTE_CONSTANT: &str = "no fluctuations: the series is constant (a stuck chain?)";
/// [`Estimate::note`] of a series too short for its autocorrelation: fewer than
/// [`MIN_TAUS`] τ_int of measurements (Wolff asks for N ≫ τ_int, ~100 τ_int for errors good to
/// a few per cent), or no window satisfying the automatic criterion.
pub const NOTE_TOO_SHORT: &str =
    "series too short for its autocorrelation (fewer than 50 tau_int): error and tau_int unreliable";

/// [`Estimate::note`] when independent chains scatter more than the Γ-method's error allows: a
/// slow mode (a chain that sticks after a draw of large weight, a sector it rarely leaves) that
/// the automatic window cuts off. The error given is then the chains' scatter.
pub const NOTE_CHAINS_SCATTER: &str = "the chains scatter more than the Gamma-method error allows \
     (slow modes beyond its window): the error is the chains' scatter (leave-one-chain-out \
     jackknife)";

/// Replicas from which their scatter is tested against the Γ-method's error.
const MIN_REPLICAS: usize = 4;

/// Significance at which the chains' scatter overrules the Γ-method's error.
const SCATTER_LEVEL: f64 = 0.05;

/// Measurements per τ_int below which [`NOTE_TOO_SHORT`] is attached.
pub const MIN_TAUS: f64 = 50.0;

/// Wolff's S parameter of the automatic window (his recommended 1.5).
const S_TAU: f64 = 1.5;

/// Γ-method for a primary observable measured on several replicas (independent chains).
pub fn gamma_primary(replicas: &[&[f64]]) -> Estimate {
    let series: Vec<Vec<Vec<f64>>> = replicas.iter().map(|r| vec![r.to_vec()]).collect();
    gamma_derived(&series, |a| a[0])
}

/// Γ-method for f of the means of several primary observables. `replicas[r][α]` is the series of
/// observable α on replica r (all α of one replica have the same length).
pub fn gamma_derived<F: Fn(&[f64]) -> f64>(replicas: &[Vec<Vec<f64>>], f: F) -> Estimate {
    let n_obs = replicas.first().map_or(0, |r| r.len());
    let n_total: usize = replicas
        .iter()
        .map(|r| r.first().map_or(0, |s| s.len()))
        .sum();
    if n_obs == 0 || n_total == 0 {
        return Estimate {
            value: f64::NAN,
            error: f64::NAN,
            tau_int: f64::NAN,
            tau_int_error: f64::NAN,
            note: Some("no measurements"),
        };
    }
    let means: Vec<f64> = (0..n_obs)
        .map(|a| {
            replicas
                .iter()
                .map(|r| r[a].iter().sum::<f64>())
                .sum::<f64>()
                / n_total as f64
        })
        .collect();
    let value = f(&means);
    let grad = gradient(replicas, &means, n_total, &f);
    // Projected fluctuations δᵢ = Σ_α f_α (a_α,i − ā_α), per replica.
    let deltas: Vec<Vec<f64>> = replicas
        .iter()
        .map(|r| {
            (0..r[0].len())
                .map(|i| (0..n_obs).map(|a| grad[a] * (r[a][i] - means[a])).sum())
                .collect()
        })
        .collect();
    let (error, tau_int, tau_int_error, note) = gamma_window(&deltas, n_total);
    let (error, note) = match chains_scatter(replicas, &f, error) {
        Some(scatter) => (scatter, Some(NOTE_CHAINS_SCATTER)),
        None => (error, note),
    };
    Estimate {
        value,
        error,
        tau_int,
        tau_int_error,
        note,
    }
}

/// The chains' own error of f, the leave-one-chain-out jackknife, where it is significantly
/// larger than the Γ-method's `error`. Independent chains' means scatter with the variance of
/// one chain's mean whatever the autocorrelations, so (R − 1) σ²_jack/σ²_Γ is χ² with R − 1
/// degrees of freedom if σ_Γ is right; below Q = 5 % it is not, and the scatter is the honest
/// error (the χ² check of replicas that Wolff recommends, applied to the combined error).
fn chains_scatter<F: Fn(&[f64]) -> f64>(
    replicas: &[Vec<Vec<f64>>],
    f: &F,
    error: f64,
) -> Option<f64> {
    let r = replicas.len();
    if r < MIN_REPLICAS || !(error > 0.0 && error.is_finite()) {
        return None;
    }
    let scatter = jackknife(replicas, 1, f).error;
    let chi2 = (r - 1) as f64 * (scatter / error).powi(2);
    (chi2_q(chi2, r - 1) < SCATTER_LEVEL).then_some(scatter)
}

/// ∂f/∂ā_α by central differences with a step on the scale of each observable's fluctuations.
fn gradient<F: Fn(&[f64]) -> f64>(
    replicas: &[Vec<Vec<f64>>],
    means: &[f64],
    n: usize,
    f: &F,
) -> Vec<f64> {
    (0..means.len())
        .map(|a| {
            let var = replicas
                .iter()
                .flat_map(|r| r[a].iter())
                .map(|x| (x - means[a]).powi(2))
                .sum::<f64>()
                / n as f64;
            let h = var.sqrt() / (n as f64).sqrt() * 0.01;
            if h == 0.0 || !h.is_finite() {
                return 0.0;
            }
            let mut up = means.to_vec();
            let mut dn = means.to_vec();
            up[a] += h;
            dn[a] -= h;
            (f(&up) - f(&dn)) / (2.0 * h)
        })
        .collect()
}

/// Autocorrelation function Γ(t) summed over replicas (Wolff eq. 31 with replicas).
fn autocorrelation(deltas: &[Vec<f64>], t: usize) -> f64 {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for d in deltas {
        if d.len() > t {
            sum += d.iter().zip(&d[t..]).map(|(a, b)| a * b).sum::<f64>();
            pairs += d.len() - t;
        }
    }
    if pairs == 0 {
        0.0
    } else {
        sum / pairs as f64
    }
}

/// Automatic window, bias correction, error of the mean, τ_int and its error, and a note when
/// the error cannot be trusted.
fn gamma_window(deltas: &[Vec<f64>], n_total: usize) -> (f64, f64, f64, Option<&'static str>) {
    let n = n_total as f64;
    let gamma0 = autocorrelation(deltas, 0);
    if gamma0 <= 0.0 || !gamma0.is_finite() {
        return (f64::NAN, f64::NAN, f64::NAN, Some(NOTE_CONSTANT));
    }
    let w_max = deltas.iter().map(|d| d.len()).min().unwrap_or(0) / 2;
    let anticorrelated = w_max >= 1 && autocorrelation(deltas, 1) <= 0.0;
    let (gammas, window, found) = if anticorrelated {
        pair_window(deltas, gamma0, w_max)
    } else {
        wolff_window(deltas, gamma0, w_max, n)
    };
    // Bias correction Γ(t) → Γ(t) + C(W)/N (Wolff eq. 49).
    let c_w: f64 = gammas[0] + 2.0 * gammas[1..=window].iter().sum::<f64>();
    let corr = c_w / n;
    let g0 = gammas[0] + corr;
    let c_w = c_w + (2 * window + 1) as f64 * corr;
    let c_w = c_w.max(0.0);
    // An anticorrelated series may have τ_int < ½ (its mean is better than independent data's).
    let tau = c_w / (2.0 * g0);
    let tau = if anticorrelated { tau } else { tau.max(0.5) };
    let error = (c_w / n).sqrt();
    let dtau = 2.0 * tau * ((window as f64 + 0.5 - tau).max(0.0) / n).sqrt();
    let short = !found || n < MIN_TAUS * tau;
    (error, tau, dtau, short.then_some(NOTE_TOO_SHORT))
}

/// Wolff's automatic window (his eq. 52): the first W at which the estimated systematic error
/// of truncating the sum, e^{−W/τ̃}, falls below its statistical error, √(τ̃/(W N)). Returns
/// Γ(0…W), W, and whether the criterion was met before half the shortest replica.
fn wolff_window(deltas: &[Vec<f64>], gamma0: f64, w_max: usize, n: f64) -> (Vec<f64>, usize, bool) {
    let mut gammas = vec![gamma0];
    let mut cw = gamma0;
    for w in 1..=w_max {
        let g = autocorrelation(deltas, w);
        gammas.push(g);
        cw += 2.0 * g;
        let tau = cw / (2.0 * gamma0);
        let tau_tilde = if tau <= 0.5 {
            f64::MIN_POSITIVE
        } else {
            S_TAU / ((2.0 * tau + 1.0) / (2.0 * tau - 1.0)).ln()
        };
        let g_w = (-(w as f64) / tau_tilde).exp() - tau_tilde / (w as f64 * n).sqrt();
        if g_w < 0.0 {
            return (gammas, w, true);
        }
    }
    (gammas, w_max, false)
}

/// Geyer's initial positive sequence (C. J. Geyer, Stat. Sci. 7 (1992) 473) for series whose
/// Γ(1) ≤ 0, where Wolff's criterion, which needs τ_int > ½, would stop at W = 1 and drop every
/// later lag (a slow mode under an anticorrelation at lag 1). For a reversible chain the pair
/// sums Γ(2k) + Γ(2k + 1) are positive, so the sum runs over whole pairs while they stay
/// positive: W = 2K − 1 for the first non-positive pair K. Returns Γ(0…W), W, and whether a
/// non-positive pair was met before half the shortest replica.
fn pair_window(deltas: &[Vec<f64>], gamma0: f64, w_max: usize) -> (Vec<f64>, usize, bool) {
    let mut gammas = vec![gamma0, autocorrelation(deltas, 1)];
    let mut k = 1;
    while 2 * k < w_max {
        let pair = [
            autocorrelation(deltas, 2 * k),
            autocorrelation(deltas, 2 * k + 1),
        ];
        if pair[0] + pair[1] <= 0.0 {
            return (gammas, 2 * k - 1, true);
        }
        gammas.extend(pair);
        k += 1;
    }
    (gammas, 2 * k - 1, false)
}
