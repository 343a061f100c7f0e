//! The double-well oscillator on the lattice, exactly: moments of x from the transfer matrix
//! T(x, y) = exp(−m(x−y)²/(2a) − a(V(x)+V(y))/2) on a fine x-grid, ⟨O⟩ = Tr(Tᴺ O)/Tr(Tᴺ)
//! (`../shared/conventions.md`), at the same finite (a, β) as the simulation.

use crate::error::{Error, Result};

/// Exact lattice moments of the oscillator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OscillatorMoments {
    /// ⟨x²⟩.
    pub x2: f64,
    /// ⟨x⁴⟩.
    pub x4: f64,
    /// The virial E₀ = 3λ⟨x⁴⟩ − 4λf²⟨x²⟩ + λf⁴ of these moments.
    pub e0: f64,
}

/// Grid points of the transfer matrix and its half-width: the quadrature error is far below
/// the statistical errors of any run here (checked against the one-site integral in the tests).
const POINTS: usize = 701;
const XMAX: f64 = 4.5;

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for (cij, bkj) in c[i * n..(i + 1) * n].iter_mut().zip(&b[k * n..(k + 1) * n]) {
                *cij += aik * bkj;
            }
        }
    }
    // Only ratios of traces matter: rescale so powers do not overflow.
    let max = c.iter().copied().fold(0.0, f64::max);
    c.iter_mut().for_each(|x| *x /= max);
    c
}

/// ⟨x²⟩, ⟨x⁴⟩ and the virial E₀ of S = Σ a[m(x_{n+1}−x_n)²/(2a²) + λ(x_n² − f²)²], a = β/N, on
/// N periodic slices. Refuses couplings whose wells lie outside the grid (|f| > 3).
pub fn oscillator_moments(
    m: f64,
    lambda: f64,
    f: f64,
    beta: f64,
    n: usize,
) -> Result<OscillatorMoments> {
    let ok = m > 0.0 && lambda > 0.0 && f.abs() <= 3.0 && beta > 0.0 && n >= 1;
    if !(ok && m.is_finite() && lambda.is_finite() && beta.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "transfer matrix of m = {m}, lambda = {lambda}, f = {f}, beta = {beta}, N = {n}: \
             needs m, lambda, beta > 0, |f| <= 3 and N >= 1"
        )));
    }
    let a = beta / n as f64;
    let h = 2.0 * XMAX / (POINTS - 1) as f64;
    let x: Vec<f64> = (0..POINTS).map(|i| -XMAX + i as f64 * h).collect();
    let v = |x: f64| lambda * (x * x - f * f).powi(2);
    let t: Vec<f64> = (0..POINTS * POINTS)
        .map(|ij| {
            let (xi, xj) = (x[ij / POINTS], x[ij % POINTS]);
            h * (-m * (xi - xj).powi(2) / (2.0 * a) - a * (v(xi) + v(xj)) / 2.0).exp()
        })
        .collect();
    // Tᴺ by repeated squaring.
    let (mut result, mut base, mut e) = (None::<Vec<f64>>, t, n);
    while e > 0 {
        if e & 1 == 1 {
            result = Some(match result {
                None => base.clone(),
                Some(r) => matmul(&r, &base, POINTS),
            });
        }
        e >>= 1;
        if e > 0 {
            base = matmul(&base, &base, POINTS);
        }
    }
    let tn = result.expect("N >= 1");
    let trace =
        |w: &dyn Fn(f64) -> f64| -> f64 { (0..POINTS).map(|i| tn[i * POINTS + i] * w(x[i])).sum() };
    let z = trace(&|_| 1.0);
    let (x2, x4) = (trace(&|x| x * x) / z, trace(&|x| x.powi(4)) / z);
    Ok(OscillatorMoments {
        x2,
        x4,
        e0: 3.0 * lambda * x4 - 4.0 * lambda * f * f * x2 + lambda * f.powi(4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With N = 1 the lattice is one site coupled to itself: ⟨x²⟩ = ∫x² e^{−βV}/∫e^{−βV}.
    #[test]
    fn one_site_is_the_classical_integral() {
        let (lambda, f, beta) = (1.0, 1.2, 0.7);
        let got = oscillator_moments(0.5, lambda, f, beta, 1).unwrap();
        let h = 1e-4;
        let w = |x: f64| (-beta * lambda * (x * x - f * f).powi(2)).exp();
        let (mut num, mut den) = (0.0, 0.0);
        let mut x = -4.5;
        while x <= 4.5 {
            num += x * x * w(x) * h;
            den += w(x) * h;
            x += h;
        }
        assert!(
            (got.x2 - num / den).abs() < 1e-6,
            "{} vs {}",
            got.x2,
            num / den
        );
        assert!(oscillator_moments(0.5, 1.0, 5.0, 1.0, 4).is_err());
    }

    /// The harmonic limit (λ → 0 is not representable; use a single deep well instead): at f = 0
    /// the moments are finite and positive, and E₀ follows from them.
    #[test]
    fn moments_are_consistent() {
        let e = oscillator_moments(0.5, 1.0, 0.0, 4.0, 16).unwrap();
        assert!(e.x2 > 0.0 && e.x4 > e.x2 * e.x2);
        assert!((e.e0 - 3.0 * e.x4).abs() < 1e-12);
    }
}
