//! The XY (O(2)) model, S = −β Σ_⟨xy⟩ cos(θ_x − θ_y), θ ∈ [0, 2π), on a periodic lattice in
//! d = 1..4 with even extents (for the checkerboard): Metropolis with independent uniform
//! proposals (`hits` per site) and overrelaxation, both one colour at a time, on the CPU
//! ([`cpu`]) and in `kernels/xy.cu` ([`cuda`]).
//!
//! Observables (per configuration, V sites): `energy` = −(1/V) Σ_x Σ_μ cos(θ_x − θ_{x+μ̂});
//! m = (1/V)|Σ e^{iθ}| (`absM`), `M2` = m²; along axis 0, `cos0` = (1/V) Σ cos(θ_x − θ_{x+0̂}) and
//! `sin0sq` = (1/V) (Σ sin(θ_x − θ_{x+0̂}))²; `vortex_density`: the number of plaquettes of the
//! (0, 1) plane with a winding of ±1, per site (d ≥ 2). The summary adds χ = V⟨m²⟩ and the
//! helicity modulus along axis 0, Υ = ⟨cos0⟩ − β⟨sin0sq⟩ (per site, in units of the coupling).

pub mod cpu;
pub mod cuda;

use std::f64::consts::TAU;
use std::sync::Arc;

use crate::action::{Action, ForceLaw, ObservableSet, ScalarCouplings};

use crate::analysis::{gamma_derived, gamma_primary, Estimate};
use crate::device::Device;
use crate::error::{require_finite, Error, Result};
use crate::hmc::Start;
use crate::lattice::Lattice;
use crate::philox;
use crate::sampler::ChainMeasurement;
use crate::theory::checkerboard::{require_even, Checkerboard, ColourPass};
use crate::theory::{check_offers, slice_sums, FieldKind, LocalAlgorithm, Sweeper, Theory};

/// θ mod 2π in [0, 2π), as `xy_wrap` in the kernel.
#[inline(always)]
pub fn wrap(x: f64) -> f64 {
    let r = x - TAU * (x / TAU).floor();
    if !(0.0..TAU).contains(&r) {
        0.0
    } else {
        r
    }
}

/// The angle difference mapped to (−π, π].
fn principal(d: f64) -> f64 {
    let r = d - TAU * ((d + std::f64::consts::PI) / TAU).floor();
    if r <= -std::f64::consts::PI {
        r + TAU
    } else {
        r
    }
}

/// The XY model on a lattice with even extents at coupling β ≥ 0.
#[derive(Clone, Debug)]
pub struct Xy {
    lattice: Lattice,
    beta: f64,
}

impl Xy {
    /// The model on `lattice` (every extent even) at β ≥ 0.
    pub fn new(lattice: Lattice, beta: f64) -> Result<Self> {
        require_finite("beta", beta)?;
        if beta < 0.0 {
            return Err(Error::InvalidInput(format!(
                "beta = {beta} < 0 is the antiferromagnet; use beta >= 0"
            )));
        }
        require_even(&lattice, "the XY model")?;
        Ok(Xy { lattice, beta })
    }

    /// Coupling β.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// −Σ_x Σ_μ cos(θ_x − θ_{x+μ̂}) of one configuration (the action is β times this).
    pub fn bond_energy(&self, th: &[f64]) -> f64 {
        let lat = &self.lattice;
        -(0..lat.volume())
            .map(|x| {
                (0..lat.dim())
                    .map(|mu| (th[x] - th[lat.neighbour(x, mu, true)]).cos())
                    .sum::<f64>()
            })
            .sum::<f64>()
    }

    /// The winding of every plaquette of the (0, 1) plane (2D and up), indexed by its corner site
    /// x (the plaquette x, x + 0̂, x + 0̂ + 1̂, x + 1̂): +1 a vortex, −1 an antivortex, 0 none. The
    /// sum of the four angle differences, each mapped to (−π, π], is 2π times the winding.
    pub fn windings(&self, th: &[f64]) -> Vec<i8> {
        let lat = &self.lattice;
        if lat.dim() < 2 {
            return Vec::new();
        }
        (0..lat.volume())
            .map(|x| {
                let a = lat.neighbour(x, 0, true);
                let b = lat.neighbour(a, 1, true);
                let c = lat.neighbour(x, 1, true);
                let w = principal(th[a] - th[x])
                    + principal(th[b] - th[a])
                    + principal(th[c] - th[b])
                    + principal(th[x] - th[c]);
                (w / TAU).round() as i8
            })
            .collect()
    }

    /// Plaquettes of the (0, 1) plane with nonzero winding (2D and up).
    fn vortices(&self, th: &[f64]) -> f64 {
        self.windings(th).iter().filter(|&&w| w != 0).count() as f64
    }
}

/// The XY action S = −β Σ cos(θ_x − θ_{x+μ̂}) with its force, for HMC and Langevin on the
/// (unbounded) angles.
impl Action for Xy {
    fn name(&self) -> &'static str {
        "xy"
    }
    fn lattice(&self) -> &Lattice {
        &self.lattice
    }
    fn couplings(&self) -> ScalarCouplings {
        ScalarCouplings {
            law: ForceLaw::Cosine,
            hop: self.beta,
            u0: 0.0,
            u2: 0.0,
            u4: 0.0,
        }
    }
    /// Unused: the XY samplers measure through [`Theory::measure`].
    fn observable_set(&self) -> ObservableSet {
        ObservableSet::Magnetisation
    }
    fn parameters(&self) -> Vec<(&'static str, f64)> {
        vec![("beta", self.beta)]
    }
}

impl Theory for Xy {
    fn name(&self) -> &'static str {
        "xy"
    }
    fn lattice(&self) -> &Lattice {
        &self.lattice
    }
    fn field_kind(&self) -> FieldKind {
        FieldKind::Angle
    }
    fn parameters(&self) -> Vec<(&'static str, f64)> {
        vec![("beta", self.beta)]
    }
    fn algorithms(&self) -> &'static [&'static str] {
        &[
            "metropolis",
            "overrelax",
            "hmc",
            "fa-hmc",
            "mala",
            "langevin",
            "can",
        ]
    }
    fn canonical(&self, field: &mut [f64]) {
        field.iter_mut().for_each(|t| *t = wrap(*t));
    }
    fn scalar_action(self: Arc<Self>) -> Option<Arc<dyn Action>> {
        Some(self)
    }
    fn primary_names(&self) -> &'static [&'static str] {
        const NAMES: [&str; 6] = ["energy", "absM", "M2", "cos0", "sin0sq", "vortex_density"];
        // A chain has no plaquettes, hence no vortices.
        &NAMES[..if self.lattice.dim() < 2 { 5 } else { 6 }]
    }
    fn measure(&self, th: &[f64]) -> ChainMeasurement {
        let lat = &self.lattice;
        let v = lat.volume() as f64;
        let (mc, ms) = th
            .iter()
            .fold((0.0, 0.0), |(c, s), &t| (c + t.cos(), s + t.sin()));
        let m2 = (mc * mc + ms * ms) / (v * v);
        let (c0, s0) = (0..lat.volume()).fold((0.0, 0.0), |(c, s), x| {
            let d = th[x] - th[lat.neighbour(x, 0, true)];
            (c + d.cos(), s + d.sin())
        });
        ChainMeasurement {
            primaries: vec![
                self.bond_energy(th) / v,
                m2.sqrt(),
                m2,
                c0 / v,
                s0 * s0 / v,
                self.vortices(th) / v,
            ][..self.primary_names().len()]
                .to_vec(),
            slices: slice_sums(lat, th, f64::cos),
        }
    }
    fn summarize(&self, series: &[Vec<Vec<f64>>]) -> Vec<(&'static str, Estimate)> {
        let prim = |i: usize| {
            let reps: Vec<&[f64]> = series.iter().map(|r| r[i].as_slice()).collect();
            gamma_primary(&reps)
        };
        let pick = |idx: &[usize]| -> Vec<Vec<Vec<f64>>> {
            series
                .iter()
                .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
                .collect()
        };
        let (v, beta) = (self.lattice.volume() as f64, self.beta);
        let mut out = vec![
            ("energy", prim(0)),
            ("absM", prim(1)),
            ("chi", gamma_derived(&pick(&[2]), |a| v * a[0])),
            (
                "helicity",
                gamma_derived(&pick(&[3, 4]), |a| a[0] - beta * a[1]),
            ),
        ];
        if self.lattice.dim() >= 2 {
            out.push(("vortex_density", prim(5)));
        }
        out
    }
    fn start_fields(&self, start: Start, chains: std::ops::Range<usize>, seed: u64) -> Vec<f64> {
        let v = self.lattice.volume();
        let first = chains.start;
        let chains = chains.len();
        match start {
            Start::Hot => (0..chains * v)
                .map(|i| {
                    let chain = (first + i / v) as u32;
                    let counter = [(i % v) as u32, chain, 0, philox::STREAM_INIT];
                    TAU * philox::uniform_at(seed, counter)
                })
                .collect(),
            Start::Cold | Start::Ordered => vec![0.0; chains * v],
        }
    }
    fn sweeper(
        &self,
        algorithm: LocalAlgorithm,
        chains: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Box<dyn Sweeper>> {
        check_offers(self, algorithm.name())?;
        let (lat, beta) = (&self.lattice, self.beta);
        let pass: Box<dyn ColourPass> = match device {
            Device::Cpu(d) => Box::new(cpu::XyCpu::new(d.clone(), lat.clone(), chains, beta, seed)),
            Device::Cuda(d) => Box::new(cuda::XyCuda::new(d.clone(), lat, chains, beta, seed)?),
        };
        Ok(Box::new(Checkerboard::new(
            pass,
            algorithm,
            lat,
            chains,
            cpu::check_angles,
        )))
    }
}
