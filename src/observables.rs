//! Observables of scalar fields (shared/conventions.md): per-configuration primaries, their
//! averages with Γ-method errors, derived quantities (χ₂, Binder cumulant) by linearisation, and the
//! zero-momentum time-slice correlator with its cosh effective mass.

use crate::action::{Action, ObservableSet};
use crate::analysis::{gamma_derived, gamma_primary, Estimate};
use crate::hmc::SliceMoments;
use crate::lattice::Lattice;

/// What is kept of one configuration of one chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Σ_{spatial} φ(t, ·) for each time slice t.
    pub slice_sums: Vec<f64>,
    /// (1/V) Σ φ².
    pub phi2: f64,
    /// (1/V) Σ φ⁴.
    pub phi4: f64,
    /// S(φ).
    pub action: f64,
}

impl Measurement {
    /// Builds one chain's measurement from its slice moments (`T` entries) and action.
    pub fn from_moments(moments: &[[f64; 3]], action: f64, volume: usize) -> Self {
        let v = volume as f64;
        Measurement {
            slice_sums: moments.iter().map(|m| m[0]).collect(),
            phi2: moments.iter().map(|m| m[1]).sum::<f64>() / v,
            phi4: moments.iter().map(|m| m[2]).sum::<f64>() / v,
            action,
        }
    }

    /// The measurement of one configuration `phi` of `action` (sequential, f64).
    pub fn of_field(action: &dyn Action, phi: &[f64]) -> Self {
        let lat = action.lattice();
        let per = lat.volume() / lat.time_extent();
        let moments: Vec<[f64; 3]> = phi
            .chunks(per)
            .map(|s| {
                s.iter().fold([0.0; 3], |m, &x| {
                    let x2 = x * x;
                    [m[0] + x, m[1] + x2, m[2] + x2 * x2]
                })
            })
            .collect();
        Measurement::from_moments(&moments, action.action(phi), lat.volume())
    }

    /// Splits backend output `[chain][slice]` into per-chain measurements.
    pub fn batch(moments: &SliceMoments, actions: &[f64], lattice: &Lattice) -> Vec<Measurement> {
        let t = lattice.time_extent();
        actions
            .iter()
            .enumerate()
            .map(|(c, &s)| {
                Measurement::from_moments(&moments[c * t..(c + 1) * t], s, lattice.volume())
            })
            .collect()
    }

    /// Magnetisation M = (1/V) Σφ.
    pub fn magnetisation(&self, volume: usize) -> f64 {
        self.slice_sums.iter().sum::<f64>() / volume as f64
    }
}

/// Names of the per-configuration primary observables (CSV columns) of a theory.
pub fn primary_names(set: ObservableSet) -> &'static [&'static str] {
    match set {
        ObservableSet::Magnetisation => &["M", "absM", "M2", "M4", "action_density"],
        ObservableSet::Oscillator { .. } => {
            &["x", "x2", "x4", "E0", "action_density", "right_well"]
        }
    }
}

/// Primary observables of one configuration, in the order of [`primary_names`].
pub fn primaries(set: ObservableSet, m: &Measurement, volume: usize) -> Vec<f64> {
    let mag = m.magnetisation(volume);
    let s = m.action / volume as f64;
    match set {
        ObservableSet::Magnetisation => vec![mag, mag.abs(), mag * mag, mag.powi(4), s],
        ObservableSet::Oscillator { lambda, f } => {
            // Virial ground-state energy E₀ = 3λ⟨x⁴⟩ − 4λf²⟨x²⟩ + λf⁴ (shared/conventions.md).
            let e0 = 3.0 * lambda * m.phi4 - 4.0 * lambda * f * f * m.phi2 + lambda * f.powi(4);
            // Which well the path sits in, by the sign of its mean (½ on the barrier top): its
            // average, the well fraction, is exactly ½ by the x → −x symmetry.
            let right = match mag.partial_cmp(&0.0) {
                Some(std::cmp::Ordering::Greater) => 1.0,
                Some(std::cmp::Ordering::Less) => 0.0,
                _ => 0.5,
            };
            vec![mag, m.phi2, m.phi4, e0, s, right]
        }
    }
}

/// Named estimates of a theory's observables from `series[chain][primary][config]`.
pub fn summarize(
    set: ObservableSet,
    volume: usize,
    series: &[Vec<Vec<f64>>],
) -> Vec<(&'static str, Estimate)> {
    let v = volume as f64;
    let pick = |idx: &[usize]| -> Vec<Vec<Vec<f64>>> {
        series
            .iter()
            .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
            .collect()
    };
    let prim = |i: usize| {
        let reps: Vec<&[f64]> = series.iter().map(|r| r[i].as_slice()).collect();
        gamma_primary(&reps)
    };
    match set {
        ObservableSet::Magnetisation => {
            let chi2 = scale(prim(2), v);
            // χ_conn = V(⟨M²⟩ − ⟨|M|⟩²); U_L = 1 − ⟨M⁴⟩/(3⟨M²⟩²).
            let chi_conn = gamma_derived(&pick(&[2, 1]), |a| v * (a[0] - a[1] * a[1]));
            let binder = gamma_derived(&pick(&[3, 2]), |a| 1.0 - a[0] / (3.0 * a[1] * a[1]));
            vec![
                ("M", prim(0)),
                ("absM", prim(1)),
                ("chi2", chi2),
                ("chi2_connected", chi_conn),
                ("binder", binder),
                ("action_density", prim(4)),
            ]
        }
        ObservableSet::Oscillator { .. } => {
            vec![
                ("x2", prim(1)),
                ("x4", prim(2)),
                ("E0", prim(3)),
                ("action_density", prim(4)),
                ("well_fraction", prim(5)),
            ]
        }
    }
}

fn scale(e: Estimate, k: f64) -> Estimate {
    Estimate {
        value: e.value * k,
        error: e.error * k.abs(),
        ..e
    }
}

/// One point of the time-slice correlator.
#[derive(Clone, Copy, Debug)]
pub struct CorrelatorPoint {
    /// Time separation.
    pub t: usize,
    /// C(t) = (1/V) Σ_{t₀} S(t₀+t) S(t₀), S(t) the spatial sum of φ on slice t.
    pub c: Estimate,
    /// cosh effective mass arccosh((C(t−1)+C(t+1)) / (2C(t))), for 1 ≤ t < T/2.
    pub m_eff: Option<Estimate>,
}

/// C(t) of one configuration for t = 0..=T/2.
pub fn correlator_of(slice_sums: &[f64], volume: usize) -> Vec<f64> {
    let t_ext = slice_sums.len();
    (0..=t_ext / 2)
        .map(|t| {
            (0..t_ext)
                .map(|t0| slice_sums[(t0 + t) % t_ext] * slice_sums[t0])
                .sum::<f64>()
                / volume as f64
        })
        .collect()
}

/// The correlator and effective mass with Γ-method errors from `slice_sums[chain][config]`.
pub fn correlator(slice_sums: &[Vec<Vec<f64>>], volume: usize) -> Vec<CorrelatorPoint> {
    // per chain, per t, per config
    let series: Vec<Vec<Vec<f64>>> = slice_sums
        .iter()
        .map(|chain| {
            let per_cfg: Vec<Vec<f64>> = chain.iter().map(|s| correlator_of(s, volume)).collect();
            let nt = per_cfg.first().map_or(0, |c| c.len());
            (0..nt)
                .map(|t| per_cfg.iter().map(|c| c[t]).collect())
                .collect()
        })
        .collect();
    let nt = series.first().map_or(0, |c| c.len());
    (0..nt)
        .map(|t| {
            let reps: Vec<&[f64]> = series.iter().map(|r| r[t].as_slice()).collect();
            let m_eff = (t >= 1 && t + 1 < nt).then(|| {
                let three: Vec<Vec<Vec<f64>>> = series
                    .iter()
                    .map(|r| vec![r[t - 1].clone(), r[t].clone(), r[t + 1].clone()])
                    .collect();
                gamma_derived(&three, |a| ((a[0] + a[2]) / (2.0 * a[1])).acosh())
            });
            CorrelatorPoint {
                t,
                c: gamma_primary(&reps),
                m_eff,
            }
        })
        .collect()
}
