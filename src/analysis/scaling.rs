//! Power laws with errors, for critical slowing down: τ_int ∝ L^z fitted by weighted least
//! squares of ln τ against ln L, each point weighted by its relative error (δ ln τ = δτ/τ).

use crate::error::{Error, Result};

/// The fitted power law y = A·x^z.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerLaw {
    /// The exponent z.
    pub z: f64,
    /// Its standard error (from the points' errors, scaled by √(χ²/dof) when that exceeds 1).
    pub z_error: f64,
    /// The amplitude A.
    pub amplitude: f64,
    /// χ² per degree of freedom of the fit (NaN with two points).
    pub chi2_dof: f64,
}

/// Fits y = A·x^z to points (x, y ± dy); needs at least two points with x > 0, y > 0, dy > 0.
pub fn fit_power_law(x: &[f64], y: &[f64], dy: &[f64]) -> Result<PowerLaw> {
    if x.len() != y.len() || x.len() != dy.len() || x.len() < 2 {
        return Err(Error::InvalidInput(format!(
            "a power-law fit needs at least two points with one x, y and error each (got {}, {}, {})",
            x.len(),
            y.len(),
            dy.len()
        )));
    }
    let usable = |i: usize| {
        [x[i], y[i], dy[i]]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
    };
    if let Some(i) = (0..x.len()).find(|&i| !usable(i)) {
        return Err(Error::InvalidInput(format!(
            "point {i}: x = {}, y = {}, error = {}: all must be positive and finite",
            x[i], y[i], dy[i]
        )));
    }
    // Weighted straight line through (ln x, ln y) with weights w = (y/dy)².
    let (lx, ly): (Vec<f64>, Vec<f64>) = x.iter().zip(y).map(|(a, b)| (a.ln(), b.ln())).unzip();
    let w: Vec<f64> = y.iter().zip(dy).map(|(v, e)| (v / e).powi(2)).collect();
    let sw: f64 = w.iter().sum();
    let mx = w.iter().zip(&lx).map(|(w, a)| w * a).sum::<f64>() / sw;
    let my = w.iter().zip(&ly).map(|(w, b)| w * b).sum::<f64>() / sw;
    let sxx: f64 = w.iter().zip(&lx).map(|(w, a)| w * (a - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return Err(Error::InvalidInput(
            "a power-law fit needs at least two different x".into(),
        ));
    }
    let z = w
        .iter()
        .zip(&lx)
        .zip(&ly)
        .map(|((w, a), b)| w * (a - mx) * (b - my))
        .sum::<f64>()
        / sxx;
    let intercept = my - z * mx;
    let chi2: f64 = w
        .iter()
        .zip(&lx)
        .zip(&ly)
        .map(|((w, a), b)| w * (b - intercept - z * a).powi(2))
        .sum();
    let dof = x.len() - 2;
    let chi2_dof = if dof > 0 { chi2 / dof as f64 } else { f64::NAN };
    // Inflate the error when the points scatter more than their errors say (PDG convention).
    let scale = if chi2_dof > 1.0 { chi2_dof.sqrt() } else { 1.0 };
    Ok(PowerLaw {
        z,
        z_error: scale / sxx.sqrt(),
        amplitude: intercept.exp(),
        chi2_dof,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_power_laws_and_bad_input() {
        let x = [8.0, 16.0, 32.0, 64.0];
        let y: Vec<f64> = x.iter().map(|l: &f64| 0.3 * l.powf(2.17)).collect();
        let dy: Vec<f64> = y.iter().map(|v| 0.05 * v).collect();
        let f = fit_power_law(&x, &y, &dy).unwrap();
        assert!((f.z - 2.17).abs() < 1e-12 && (f.amplitude - 0.3).abs() < 1e-12);
        assert!(f.chi2_dof < 1e-20);
        // Equal relative errors r: δz = r / √Σ(ln L − mean ln L)².
        let mean = x.iter().map(|a| a.ln()).sum::<f64>() / 4.0;
        let spread: f64 = x.iter().map(|a| (a.ln() - mean).powi(2)).sum();
        assert!((f.z_error - 0.05 / spread.sqrt()).abs() < 1e-12);
        assert!(fit_power_law(&[8.0], &[1.0], &[0.1]).is_err());
        assert!(fit_power_law(&[8.0, 8.0], &[1.0, 2.0], &[0.1, 0.1]).is_err());
        assert!(fit_power_law(&[8.0, 16.0], &[1.0, -2.0], &[0.1, 0.1]).is_err());
    }
}
