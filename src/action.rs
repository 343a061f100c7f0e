//! Lattice actions behind one [`Action`] trait.
//!
//! Both scalar φ⁴ in hopping form and the 1D anharmonic oscillator are of the form
//! S = Σₓ [ −h Σ_μ φ(x)φ(x+μ̂) + u₀ + u₂φ(x)² + u₄φ(x)⁴ ] ([`ScalarCouplings`]), so one CPU routine
//! and one CUDA kernel family serve both; a theory only states its couplings and its observables.

use std::sync::Arc;

use crate::analysis::Estimate;
use crate::device::Device;
use crate::error::{require_finite, Error, Result};
use crate::hmc::Start;
use crate::lattice::Lattice;
use crate::observables::{primaries, primary_names, summarize, Measurement};
use crate::sampler::ChainMeasurement;
use crate::theory::{FieldKind, LocalAlgorithm, Sweeper, Theory};

/// The form of a nearest-neighbour action of one real field, as the HMC kernels know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForceLaw {
    /// S = Σₓ [ −hop Σ_μ φ(x)φ(x+μ̂) + u0 + u2 φ² + u4 φ⁴ ] (φ⁴, the oscillator).
    Polynomial,
    /// S = −hop Σₓ Σ_μ cos(θ(x) − θ(x+μ̂)) (the XY model, hop = β; u0, u2, u4 unused), with
    /// force −∂S/∂θ(x) = −hop Σ_{±μ} sin(θ(x) − θ(x±μ̂)).
    Cosine,
}

/// Couplings of the action of one real field with nearest-neighbour interactions: the
/// polynomial S = Σₓ [ −hop Σ_μ φ(x)φ(x+μ̂) + u0 + u2 φ² + u4 φ⁴ ] (forward neighbours only), or
/// the cosine law of [`ForceLaw::Cosine`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalarCouplings {
    /// Which action.
    pub law: ForceLaw,
    /// Nearest-neighbour hopping coefficient.
    pub hop: f64,
    /// Constant per site (does not affect dynamics; keeps S equal to the theory's action).
    pub u0: f64,
    /// Coefficient of φ².
    pub u2: f64,
    /// Coefficient of φ⁴.
    pub u4: f64,
}

impl ScalarCouplings {
    /// Action density at one site given φ(x) and the sum of its forward neighbours.
    #[inline(always)]
    pub fn site_action(&self, phi: f64, forward_sum: f64) -> f64 {
        let phi2 = phi * phi;
        -self.hop * phi * forward_sum + self.u0 + phi2 * (self.u2 + self.u4 * phi2)
    }

    /// Force −∂S/∂φ(x) given φ(x) and the sum of all 2d neighbours.
    #[inline(always)]
    pub fn site_force(&self, phi: f64, neighbour_sum: f64) -> f64 {
        self.hop * neighbour_sum - phi * (2.0 * self.u2 + 4.0 * self.u4 * phi * phi)
    }
}

/// Which per-configuration observables a theory reports (see `observables`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ObservableSet {
    /// Magnetisation, susceptibility, Binder cumulant, action density.
    Magnetisation,
    /// ⟨x²⟩, ⟨x⁴⟩ and the virial ground-state energy E₀ = 3λ⟨x⁴⟩ − 4λf²⟨x²⟩ + λf⁴.
    Oscillator {
        /// Quartic coupling λ.
        lambda: f64,
        /// Well position f.
        f: f64,
    },
}

/// A lattice action: its lattice, couplings, and which observables it reports.
/// `action` and `force` are the reference (CPU, one configuration) definitions.
pub trait Action: Send + Sync + std::fmt::Debug {
    /// Short name, e.g. `phi4`.
    fn name(&self) -> &'static str;
    /// The lattice the field lives on.
    fn lattice(&self) -> &Lattice;
    /// The couplings the kernels use.
    fn couplings(&self) -> ScalarCouplings;
    /// The observables this theory reports.
    fn observable_set(&self) -> ObservableSet;
    /// Parameters as (name, value) pairs, for summaries and checkpoints.
    fn parameters(&self) -> Vec<(&'static str, f64)>;

    /// S(φ) for one configuration (sequential, f64).
    fn action(&self, phi: &[f64]) -> f64 {
        reference_action(self.lattice(), &self.couplings(), phi)
    }

    /// The uniform field value that minimises the action (the start `--start ordered`): with
    /// φ constant, S/site = (u2 − d·hop)φ² + u4φ⁴ + u0, so φ² = (d·hop − u2)/(2u4) when that is
    /// positive (φ⁴'s broken phase, the oscillator's well at x = f); 1 where the minimum is at 0.
    fn ordered_value(&self) -> f64 {
        let c = self.couplings();
        let v2 = (self.lattice().dim() as f64 * c.hop - c.u2) / (2.0 * c.u4);
        if v2 > 0.0 && v2.is_finite() {
            v2.sqrt()
        } else {
            1.0
        }
    }

    /// −∂S/∂φ for one configuration.
    fn force(&self, phi: &[f64], out: &mut [f64]) {
        let lat = self.lattice();
        let c = self.couplings();
        for (x, o) in out.iter_mut().enumerate().take(lat.volume()) {
            let nbs = (0..lat.dim())
                .flat_map(|mu| [lat.neighbour(x, mu, true), lat.neighbour(x, mu, false)]);
            *o = match c.law {
                ForceLaw::Polynomial => c.site_force(phi[x], nbs.map(|n| phi[n]).sum()),
                ForceLaw::Cosine => -c.hop * nbs.map(|n| (phi[x] - phi[n]).sin()).sum::<f64>(),
            };
        }
    }
}

/// S of one configuration `phi` of the action with couplings `c` on `lat` (sequential, f64): the
/// reference definition the kernels are tested against.
pub fn reference_action(lat: &Lattice, c: &ScalarCouplings, phi: &[f64]) -> f64 {
    (0..lat.volume())
        .map(|x| {
            let fwd = (0..lat.dim()).map(|mu| phi[lat.neighbour(x, mu, true)]);
            match c.law {
                ForceLaw::Polynomial => c.site_action(phi[x], fwd.sum()),
                ForceLaw::Cosine => -c.hop * fwd.map(|y| (phi[x] - y).cos()).sum::<f64>(),
            }
        })
        .sum()
}

/// Scalar φ⁴ in hopping form, any d:
/// S = Σₓ [ −2κ Σ_μ φ(x)φ(x+μ̂) + (1−2λ)φ(x)² + λφ(x)⁴ ] (shared/conventions.md).
#[derive(Clone, Debug)]
pub struct Phi4 {
    lattice: Lattice,
    kappa: f64,
    lambda: f64,
}

impl Phi4 {
    /// φ⁴ with hopping parameter κ ≥ 0 and quartic coupling λ ≥ 0 (λ < 0 leaves the action unbounded).
    pub fn new(lattice: Lattice, kappa: f64, lambda: f64) -> Result<Self> {
        require_finite("kappa", kappa)?;
        require_finite("lambda", lambda)?;
        if lambda < 0.0 {
            return Err(Error::InvalidInput(format!(
                "lambda = {lambda} < 0 makes the phi^4 action unbounded below; use lambda >= 0"
            )));
        }
        if kappa < 0.0 {
            return Err(Error::InvalidInput(format!("kappa = {kappa} must be >= 0")));
        }
        if lambda == 0.0 && 2.0 * kappa * lattice.dim() as f64 >= 1.0 {
            return Err(Error::InvalidInput(format!(
                "the free field (lambda = 0) needs kappa < 1/(2d) = {}; got kappa = {kappa}",
                0.5 / lattice.dim() as f64
            )));
        }
        Ok(Phi4 {
            lattice,
            kappa,
            lambda,
        })
    }

    /// Hopping parameter κ.
    pub fn kappa(&self) -> f64 {
        self.kappa
    }

    /// Quartic coupling λ (hopping form).
    pub fn lambda(&self) -> f64 {
        self.lambda
    }
}

impl Action for Phi4 {
    fn name(&self) -> &'static str {
        "phi4"
    }
    fn lattice(&self) -> &Lattice {
        &self.lattice
    }
    fn couplings(&self) -> ScalarCouplings {
        ScalarCouplings {
            law: ForceLaw::Polynomial,
            hop: 2.0 * self.kappa,
            u0: 0.0,
            u2: 1.0 - 2.0 * self.lambda,
            u4: self.lambda,
        }
    }
    fn observable_set(&self) -> ObservableSet {
        ObservableSet::Magnetisation
    }
    fn parameters(&self) -> Vec<(&'static str, f64)> {
        vec![("kappa", self.kappa), ("lambda", self.lambda)]
    }
}

/// φ⁴ couplings in the standard (flow-literature) form S = Σ [ Σ_μ (φ(x+μ̂)−φ(x))² + m²φ² + λ₀φ⁴ ]
/// (Albergo, Kanwar, Shanahan, PRD 100 (2019) 034515), related to the hopping form by φ_std = √κ φ_hop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StandardCouplings {
    /// Bare mass squared m² (may be negative).
    pub m2: f64,
    /// Quartic coupling λ₀.
    pub lambda0: f64,
}

/// Hopping (κ, λ) → standard (m², λ₀) in d dimensions: m² = (1−2λ)/κ − 2d, λ₀ = λ/κ².
pub fn hopping_to_standard(kappa: f64, lambda: f64, d: usize) -> Result<StandardCouplings> {
    require_finite("kappa", kappa)?;
    require_finite("lambda", lambda)?;
    if kappa <= 0.0 {
        return Err(Error::InvalidInput(format!(
            "kappa = {kappa} must be > 0 for the standard form"
        )));
    }
    Ok(StandardCouplings {
        m2: (1.0 - 2.0 * lambda) / kappa - 2.0 * d as f64,
        lambda0: lambda / (kappa * kappa),
    })
}

/// Standard (m², λ₀) → hopping (κ, λ) in d dimensions, inverting [`hopping_to_standard`]:
/// with λ = λ₀κ², κ solves 2λ₀κ² + (m² + 2d)κ − 1 = 0 (the positive root).
pub fn standard_to_hopping(s: StandardCouplings, d: usize) -> Result<(f64, f64)> {
    require_finite("m2", s.m2)?;
    require_finite("lambda0", s.lambda0)?;
    if s.lambda0 < 0.0 {
        return Err(Error::InvalidInput(format!(
            "lambda0 = {} must be >= 0",
            s.lambda0
        )));
    }
    let b = s.m2 + 2.0 * d as f64;
    let kappa = if s.lambda0 == 0.0 {
        if b <= 0.0 {
            return Err(Error::InvalidInput(format!(
                "free field needs m2 > -2d, got m2 = {}",
                s.m2
            )));
        }
        1.0 / b
    } else {
        // Stable form of (−b + √(b² + 8λ₀)) / (4λ₀).
        2.0 / (b + (b * b + 8.0 * s.lambda0).sqrt())
    };
    Ok((kappa, s.lambda0 * kappa * kappa))
}

/// 1D anharmonic (double-well) oscillator, ħ = 1, periodic in Euclidean time:
/// S = Σₙ a [ m(x_{n+1}−x_n)²/(2a²) + λ(x_n²−f²)² ], a = β/N (shared/conventions.md).
#[derive(Clone, Debug)]
pub struct Oscillator {
    lattice: Lattice,
    mass: f64,
    lambda: f64,
    f: f64,
    beta: f64,
}

impl Oscillator {
    /// Oscillator with mass m > 0, λ ≥ 0, well position f, inverse temperature β > 0, on N ≥ 2 sites.
    pub fn new(mass: f64, lambda: f64, f: f64, beta: f64, n: usize) -> Result<Self> {
        for (name, v) in [("m", mass), ("lambda", lambda), ("f", f), ("beta", beta)] {
            require_finite(name, v)?;
        }
        if mass <= 0.0 || beta <= 0.0 {
            return Err(Error::InvalidInput(format!(
                "the oscillator needs m > 0 and beta > 0 (got m = {mass}, beta = {beta})"
            )));
        }
        if lambda < 0.0 {
            return Err(Error::InvalidInput(format!(
                "lambda = {lambda} < 0 makes the potential unbounded below; use lambda >= 0"
            )));
        }
        if lambda == 0.0 {
            return Err(Error::InvalidInput(
                "lambda = 0 leaves no confining potential; use lambda > 0".into(),
            ));
        }
        Ok(Oscillator {
            lattice: Lattice::new(&[n])?,
            mass,
            lambda,
            f,
            beta,
        })
    }

    /// Lattice spacing a = β/N.
    pub fn spacing(&self) -> f64 {
        self.beta / self.lattice.volume() as f64
    }

    /// The potential V(x) = λ(x² − f²)².
    pub fn potential(&self, x: f64) -> f64 {
        let d = x * x - self.f * self.f;
        self.lambda * d * d
    }

    /// (m, λ, f, β).
    pub fn params(&self) -> (f64, f64, f64, f64) {
        (self.mass, self.lambda, self.f, self.beta)
    }
}

impl Action for Oscillator {
    fn name(&self) -> &'static str {
        "oscillator"
    }
    fn lattice(&self) -> &Lattice {
        &self.lattice
    }
    fn couplings(&self) -> ScalarCouplings {
        // m(x'−x)²/(2a) summed periodically = Σ (m/a)x² − (m/a) Σ x x'; aλ(x²−f²)² expanded.
        let a = self.spacing();
        let (m, l, f) = (self.mass, self.lambda, self.f);
        ScalarCouplings {
            law: ForceLaw::Polynomial,
            hop: m / a,
            u0: a * l * f.powi(4),
            u2: m / a - 2.0 * a * l * f * f,
            u4: a * l,
        }
    }
    fn observable_set(&self) -> ObservableSet {
        ObservableSet::Oscillator {
            lambda: self.lambda,
            f: self.f,
        }
    }
    fn parameters(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("m", self.mass),
            ("lambda", self.lambda),
            ("f", self.f),
            ("beta", self.beta),
            ("n", self.lattice.volume() as f64),
        ]
    }
}

/// The [`Theory`] of a real scalar [`Action`]: HMC and Langevin through [`Theory::scalar_action`],
/// observables from [`crate::observables`].
macro_rules! scalar_theory {
    ($t:ty) => {
        impl Theory for $t {
            fn name(&self) -> &'static str {
                Action::name(self)
            }
            fn lattice(&self) -> &Lattice {
                Action::lattice(self)
            }
            fn field_kind(&self) -> FieldKind {
                FieldKind::Real
            }
            fn parameters(&self) -> Vec<(&'static str, f64)> {
                Action::parameters(self)
            }
            fn algorithms(&self) -> &'static [&'static str] {
                &[
                    "hmc",
                    "fa-hmc",
                    "mala",
                    "langevin",
                    "flow",
                    "diffusion",
                    "metropolis",
                    "cluster",
                    "wolff",
                ]
            }
            fn primary_names(&self) -> &'static [&'static str] {
                primary_names(self.observable_set())
            }
            fn measure(&self, field: &[f64]) -> ChainMeasurement {
                let m = Measurement::of_field(self, field);
                ChainMeasurement {
                    primaries: primaries(self.observable_set(), &m, self.lattice.volume()),
                    slices: m.slice_sums,
                }
            }
            fn summarize(&self, series: &[Vec<Vec<f64>>]) -> Vec<(&'static str, Estimate)> {
                summarize(self.observable_set(), self.lattice.volume(), series)
            }
            fn start_fields(
                &self,
                start: Start,
                chains: std::ops::Range<usize>,
                seed: u64,
            ) -> Vec<f64> {
                start.fields(self, chains, seed)
            }
            fn scalar_action(self: Arc<Self>) -> Option<Arc<dyn Action>> {
                Some(self)
            }
            fn sweeper(
                &self,
                algorithm: LocalAlgorithm,
                chains: usize,
                seed: u64,
                device: &Device,
            ) -> Result<Box<dyn Sweeper>> {
                crate::theory::scalar::sweeper(self, algorithm, chains, seed, device)
            }
        }
    };
}

scalar_theory!(Phi4);
scalar_theory!(Oscillator);
