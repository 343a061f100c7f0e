//! Blocked jackknife for derived quantities: each replica (chain) is cut into blocks and one block
//! at a time is left out; blocks much longer than τ_int make the error honest for correlated data.

use super::gamma::Estimate;

/// Jackknife estimate of f(means) from `replicas[r][α]` (as in [`super::gamma_derived`]), with
/// `blocks_per_replica` blocks cut from each replica. τ_int is not estimated (reported as NaN).
pub fn jackknife<F: Fn(&[f64]) -> f64>(
    replicas: &[Vec<Vec<f64>>],
    blocks_per_replica: usize,
    f: F,
) -> Estimate {
    let n_obs = replicas.first().map_or(0, |r| r.len());
    // Per block: its length and per-observable sums.
    let mut blocks: Vec<(f64, Vec<f64>)> = Vec::new();
    for r in replicas {
        let len = r[0].len();
        let nb = blocks_per_replica.clamp(1, len.max(1));
        for b in 0..nb {
            let (lo, hi) = (b * len / nb, (b + 1) * len / nb);
            blocks.push((
                (hi - lo) as f64,
                (0..n_obs).map(|a| r[a][lo..hi].iter().sum()).collect(),
            ));
        }
    }
    let total_n: f64 = blocks.iter().map(|b| b.0).sum();
    let totals: Vec<f64> = (0..n_obs)
        .map(|a| blocks.iter().map(|b| b.1[a]).sum())
        .collect();
    let value = f(&totals.iter().map(|s| s / total_n).collect::<Vec<_>>());
    let k = blocks.len() as f64;
    let loo: Vec<f64> = blocks
        .iter()
        .map(|(n, s)| {
            f(&(0..n_obs)
                .map(|a| (totals[a] - s[a]) / (total_n - n))
                .collect::<Vec<_>>())
        })
        .collect();
    let mean_loo = loo.iter().sum::<f64>() / k;
    let var = (k - 1.0) / k * loo.iter().map(|x| (x - mean_loo).powi(2)).sum::<f64>();
    Estimate {
        value,
        error: var.sqrt(),
        tau_int: f64::NAN,
        tau_int_error: f64::NAN,
        note: None,
    }
}
