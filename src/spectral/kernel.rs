//! Kernels of G = K ρ as matrices on an ω-grid with quadrature weights (shared/conventions.md).

use super::linalg::Matrix;
use crate::error::{require_finite, Error, Result};

/// Which integral kernel relates the data to ρ(ω).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelKind {
    /// Källén–Lehmann, for propagators D(p): K(p, ω) = ω / (π(ω² + p²)).
    KallenLehmann,
    /// Zero temperature, G(τ): K(τ, ω) = e^{−ωτ}.
    Exponential,
    /// Finite temperature, bosonic: K(τ, ω) = cosh(ω(τ − β/2)) / sinh(ωβ/2) (needs ω > 0).
    FiniteT {
        /// Inverse temperature β.
        beta: f64,
    },
    /// The ω-regularised finite-temperature kernel ω·K(τ, ω) (→ 2/β as ω → 0), for ρ(ω)/ω.
    FiniteTRegularised {
        /// Inverse temperature β.
        beta: f64,
    },
    /// Finite temperature, fermionic, for G(τ) = −⟨c(τ)c†⟩ up to sign:
    /// K(τ, ω) = e^{−τω}/(1 + e^{−βω}), all ω.
    Fermionic {
        /// Inverse temperature β.
        beta: f64,
    },
}

impl KernelKind {
    /// Parses `kl`, `exp`, `finite-t`, `finite-t-reg` or `fermi` (the last three need β).
    pub fn from_name(name: &str, beta: Option<f64>) -> Result<Self> {
        let need_beta = || {
            beta.filter(|b| b.is_finite() && *b > 0.0)
                .ok_or_else(|| Error::InvalidInput(format!("kernel {name} needs --beta B > 0")))
        };
        match name {
            "kl" => Ok(KernelKind::KallenLehmann),
            "exp" => Ok(KernelKind::Exponential),
            "finite-t" => Ok(KernelKind::FiniteT { beta: need_beta()? }),
            "finite-t-reg" => Ok(KernelKind::FiniteTRegularised { beta: need_beta()? }),
            "fermi" => Ok(KernelKind::Fermionic { beta: need_beta()? }),
            _ => Err(Error::InvalidInput(format!(
                "unknown kernel '{name}': use kl, exp, finite-t, finite-t-reg or fermi"
            ))),
        }
    }

    /// Whether data of `axis` suit this kernel: momenta for Källén–Lehmann, times for the rest.
    pub fn takes(&self, axis: super::data::Axis) -> bool {
        use super::data::Axis;
        match self {
            KernelKind::KallenLehmann => axis == Axis::Momentum,
            _ => axis == Axis::Time,
        }
    }

    /// Refuses data points outside the kernel's domain: τ < 0 for e^{−ωτ}, τ outside [0, β] at
    /// finite temperature.
    pub fn check_points(&self, x: &[f64]) -> Result<()> {
        match *self {
            KernelKind::Exponential => match x.iter().find(|&&t| t < 0.0 || t.is_nan()) {
                Some(t) => Err(Error::InvalidInput(format!(
                    "tau = {t}: the exponential kernel e^(-omega tau) needs tau >= 0"
                ))),
                None => Ok(()),
            },
            KernelKind::FiniteT { beta }
            | KernelKind::FiniteTRegularised { beta }
            | KernelKind::Fermionic { beta } => {
                match x.iter().find(|&&t| !(0.0..=beta).contains(&t)) {
                    Some(t) => Err(Error::InvalidInput(format!(
                        "tau = {t} lies outside [0, beta = {beta}]"
                    ))),
                    None => Ok(()),
                }
            }
            KernelKind::KallenLehmann => Ok(()),
        }
    }

    /// K(x, ω) with x = p or τ.
    pub fn eval(&self, x: f64, w: f64) -> f64 {
        match *self {
            KernelKind::KallenLehmann => w / (std::f64::consts::PI * (w * w + x * x)),
            KernelKind::Exponential => (-w * x).exp(),
            KernelKind::FiniteT { beta } => (w * (x - beta / 2.0)).cosh() / (w * beta / 2.0).sinh(),
            KernelKind::FiniteTRegularised { beta } => {
                if w * beta < 1e-8 {
                    2.0 / beta
                } else {
                    w * (w * (x - beta / 2.0)).cosh() / (w * beta / 2.0).sinh()
                }
            }
            // Written so that no exponent is positive: e^{−τω}/(1 + e^{−βω}) for ω ≥ 0,
            // e^{(β−τ)ω}/(1 + e^{βω}) for ω < 0.
            KernelKind::Fermionic { beta } => {
                if w >= 0.0 {
                    (-x * w).exp() / (1.0 + (-beta * w).exp())
                } else {
                    ((beta - x) * w).exp() / (1.0 + (beta * w).exp())
                }
            }
        }
    }
}

/// An ω-grid with quadrature weights: ∫ f dω ≈ Σⱼ wⱼ f(ωⱼ).
#[derive(Clone, Debug, PartialEq)]
pub struct OmegaGrid {
    /// Grid points, increasing.
    pub omega: Vec<f64>,
    /// Quadrature weights.
    pub weights: Vec<f64>,
}

impl OmegaGrid {
    /// `n` equidistant points from `min` to `max` with the rectangle rule ρⱼΔω (as in
    /// Shi, Wang, Zhou, Comput. Phys. Commun. 282 (2023) 108547).
    pub fn uniform(min: f64, max: f64, n: usize) -> Result<Self> {
        require_finite("omega-min", min)?;
        require_finite("omega-max", max)?;
        if n < 2 || max <= min || min < 0.0 {
            return Err(Error::InvalidInput(format!(
                "omega grid needs 0 <= omega-min < omega-max and at least 2 points (got {min}, {max}, {n})"
            )));
        }
        let d = (max - min) / (n - 1) as f64;
        Ok(OmegaGrid {
            omega: (0..n).map(|j| min + j as f64 * d).collect(),
            weights: vec![d; n],
        })
    }

    /// Arbitrary increasing points with trapezoid weights.
    pub fn from_points(omega: Vec<f64>) -> Result<Self> {
        if omega.len() < 2
            || omega
                .windows(2)
                .any(|w| w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater))
            || omega[0] < 0.0
        {
            return Err(Error::InvalidInput(
                "omega points must be non-negative and strictly increasing".into(),
            ));
        }
        let n = omega.len();
        let weights = (0..n)
            .map(|j| {
                let left = if j > 0 { omega[j] - omega[j - 1] } else { 0.0 };
                let right = if j + 1 < n {
                    omega[j + 1] - omega[j]
                } else {
                    0.0
                };
                0.5 * (left + right)
            })
            .collect();
        Ok(OmegaGrid { omega, weights })
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.omega.len()
    }

    /// True for an empty grid.
    pub fn is_empty(&self) -> bool {
        self.omega.is_empty()
    }
}

/// The discretised kernel A_ij = K(x_i, ω_j)·w_j, so that G ≈ A ρ.
pub fn kernel_matrix(kind: KernelKind, x: &[f64], grid: &OmegaGrid) -> Result<Matrix> {
    if let KernelKind::FiniteT { .. } = kind {
        if grid.omega[0] <= 0.0 {
            return Err(Error::InvalidInput(
                "the finite-temperature kernel diverges at omega = 0: use omega-min > 0 or the kernel finite-t-reg".into(),
            ));
        }
    }
    kind.check_points(x)?;
    crate::device::memory::check_host(
        4 * 8 * (x.len() as u128) * (grid.len() as u128),
        &format!(
            "a kernel matrix of {} × {} (with its SVD)",
            x.len(),
            grid.len()
        ),
        "use fewer omega points or data points",
    )?;
    let mut m = Matrix::zeros(x.len(), grid.len());
    for (i, &xi) in x.iter().enumerate() {
        for (j, (&w, &q)) in grid.omega.iter().zip(&grid.weights).enumerate() {
            m.data[i * grid.len() + j] = kind.eval(xi, w) * q;
        }
    }
    if m.data.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidInput(
            "kernel matrix has non-finite entries: check the grid and the data points".into(),
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fermionic kernel: K(0, ω) + K(β, ω) = 1 (G(0) + G(β) = ∫ρ), finite for large |ω|,
    /// continuous at ω = 0 where it is e^{−0}/2 at τ = 0.
    #[test]
    fn the_fermionic_kernel_has_its_identities() {
        let k = KernelKind::Fermionic { beta: 10.0 };
        for w in [-800.0, -3.0, -1e-9, 0.0, 1e-9, 0.5, 800.0] {
            let sum = k.eval(0.0, w) + k.eval(10.0, w);
            assert!((sum - 1.0).abs() < 1e-12, "ω = {w}: {sum}");
            for t in [0.0, 2.5, 7.0, 10.0] {
                assert!(k.eval(t, w).is_finite() && k.eval(t, w) >= 0.0);
            }
        }
        assert!((k.eval(0.0, 0.0) - 0.5).abs() < 1e-15);
        assert!((k.eval(3.0, 1e-12) - k.eval(3.0, -1e-12)).abs() < 1e-10);
        assert!(KernelKind::from_name("fermi", None).is_err());
        assert!(k.check_points(&[11.0]).is_err());
    }
}
