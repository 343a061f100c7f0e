//! The periodic XY chain, exactly: E = −Σᵢ cos(θᵢ − θᵢ₊₁) on L sites (θ_{L+1} = θ₁), weight
//! e^{−βE}. With the generating function e^{β cos φ} = Σ_n I_n(β) e^{inφ} every angle integrates
//! out: Z = (2π)^L Σ_n I_n(β)^L, and the energy per site is
//! e = −Σ_n I_n^{L−1} I_n′ / Σ_n I_n^L with I_n′ = (I_{n−1} + I_{n+1})/2, which tends to
//! −I₁(β)/I₀(β) as L → ∞. (The 2D model has no closed form; these are the exact checks of a
//! sampler's XY kernels on a chain.)

use crate::error::{Error, Result};

/// Modified Bessel functions I_0 … I_{nmax}(x) for x ≥ 0, by the power series
/// Σ_k (x/2)^{2k+n} / (k! (k+n)!), which converges for every x.
fn bessel_i(x: f64, nmax: usize) -> Vec<f64> {
    let h = x / 2.0;
    (0..=nmax)
        .map(|n| {
            // First term (x/2)^n / n!, then term_{k+1} = term_k · h² / ((k+1)(k+1+n)).
            let mut term = (0..n).fold(1.0, |t, j| t * h / (j + 1) as f64);
            let mut sum = term;
            for k in 0.. {
                term *= h * h / ((k + 1) as f64 * (k + 1 + n) as f64);
                sum += term;
                if term <= sum * 1e-17 {
                    break;
                }
            }
            sum
        })
        .collect()
}

/// Largest β for which the sums over n are complete to double precision.
pub const MAX_BETA: f64 = 20.0;

/// Energy per site of the periodic XY chain of `l` sites (l ≥ 2) at inverse temperature
/// 0 ≤ β ≤ [`MAX_BETA`].
pub fn chain_energy_per_site(l: usize, beta: f64) -> Result<f64> {
    if l < 2 || !(0.0..=MAX_BETA).contains(&beta) {
        return Err(Error::InvalidInput(format!(
            "XY chain of {l} sites at beta = {beta}: need at least 2 sites and 0 <= beta <= {MAX_BETA}"
        )));
    }
    // I_n decays like (β/2)^n/n!: terms beyond n = 60 are below 1e-30 of I_0 for β ≤ 20.
    let nmax = 60;
    let i = bessel_i(beta, nmax + 1);
    let lf = l as f64;
    // Σ over n ≥ 0 and its mirror n < 0 (I_{−n} = I_n), scaled by I_0^L against overflow.
    let (mut num, mut den) = (0.0, 0.0);
    for n in 0..=nmax {
        let weight = if n == 0 { 1.0 } else { 2.0 };
        let ratio = (i[n] / i[0]).powf(lf - 1.0);
        let deriv = if n == 0 {
            i[1]
        } else {
            0.5 * (i[n - 1] + i[n + 1])
        };
        num += weight * ratio * deriv / i[0];
        den += weight * ratio * i[n] / i[0];
    }
    Ok(-num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bessel_values() {
        // Abramowitz & Stegun table 9.8: I₀(1) = 1.266065878, I₁(1) = 0.565159104.
        let i = bessel_i(1.0, 2);
        assert!((i[0] - 1.266_065_877_752_008_4).abs() < 1e-14);
        assert!((i[1] - 0.565_159_103_992_485).abs() < 1e-14);
    }

    #[test]
    fn long_chains_give_the_bessel_ratio_and_small_ones_the_integral() {
        let i = bessel_i(1.0, 1);
        assert!((chain_energy_per_site(400, 1.0).unwrap() + i[1] / i[0]).abs() < 1e-12);
        // Three sites, integrated directly (θ₁ = 0 by symmetry; the trapezoid rule converges
        // exponentially for periodic analytic integrands).
        let (beta, k) = (1.3, 96);
        let (mut z, mut e) = (0.0, 0.0);
        for a in 0..k {
            for b in 0..k {
                let (t2, t3) = (
                    std::f64::consts::TAU * a as f64 / k as f64,
                    std::f64::consts::TAU * b as f64 / k as f64,
                );
                let s = t2.cos() + (t2 - t3).cos() + t3.cos();
                let w = (beta * s).exp();
                z += w;
                e -= s * w;
            }
        }
        assert!((chain_energy_per_site(3, beta).unwrap() - e / z / 3.0).abs() < 1e-12);
        // High temperature: e ≈ −β/2.
        assert!((chain_energy_per_site(8, 0.01).unwrap() + 0.005).abs() < 1e-5);
        assert!(chain_energy_per_site(1, 1.0).is_err() && chain_energy_per_site(4, 25.0).is_err());
    }
}
