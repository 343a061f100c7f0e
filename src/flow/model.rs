//! The affine-coupling flow: a stack of checkerboard-masked couplings, each with a periodic
//! convolution network for s and t, on a Gaussian prior (Albergo, Kanwar, Shanahan, PRD 100
//! 034515 (2019); the tutorial arXiv:2101.08176), acting on the sites or, for 1D paths, on their
//! Fourier modes ([`super::fourier`]). log q is exact: the prior's density minus the layers'
//! log-determinants.

use std::sync::Arc;

use super::coupling::{Coupling, Direction};
use super::fourier::{gaussian_start, RealDft, RealDftOp, ZeroModeOp, ZERO_MAP_PARAMS};
use super::target::Target;
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::nn::layers::{Activation, ConvStack};
use crate::nn::{masks, ParamStore, Real, Tape, Tensor, Var};

/// Where the couplings act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowBasis {
    /// On the lattice sites (checkerboard masks over sites).
    Real,
    /// On the real DFT modes of a 1D path, with mode-wise scales and the zero-mode map
    /// ([`super::fourier`]).
    Fourier,
}

impl FlowBasis {
    /// The name on the command line and in `flow.json`.
    pub fn name(self) -> &'static str {
        match self {
            FlowBasis::Real => "real",
            FlowBasis::Fourier => "fourier",
        }
    }

    /// The basis of a name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "real" => Ok(FlowBasis::Real),
            "fourier" => Ok(FlowBasis::Fourier),
            _ => Err(Error::InvalidInput(format!(
                "--flow {s}: choose real (couplings on the sites) or fourier (on a 1D path's modes)"
            ))),
        }
    }
}

/// Which sites a coupling layer keeps frozen (conditioning the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskKind {
    /// Sites whose coordinates sum to the layer's parity (even, odd, even, …).
    Checkerboard,
    /// Rows or columns of the layer's parity; the axis alternates every two layers in 2D, so
    /// four layers update every site twice, once per orientation (in 1D: alternate sites).
    Stripes,
}

impl MaskKind {
    /// The name on the command line and in `flow.json`.
    pub fn name(self) -> &'static str {
        match self {
            MaskKind::Checkerboard => "checkerboard",
            MaskKind::Stripes => "stripes",
        }
    }

    /// The mask kind of a name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "checkerboard" => Ok(MaskKind::Checkerboard),
            "stripes" => Ok(MaskKind::Stripes),
            _ => Err(Error::InvalidInput(format!(
                "--mask {s}: choose checkerboard or stripes"
            ))),
        }
    }

    /// (axis, parity) of layer `l`'s mask on a plane `[H, W]` (axis None: checkerboard).
    fn layout(self, plane: [usize; 2], l: usize) -> MaskLayout {
        match self {
            MaskKind::Checkerboard => (None, l % 2),
            MaskKind::Stripes if plane[0] == 1 => (Some(1), l % 2),
            MaskKind::Stripes => (Some((l / 2) % 2), l % 2),
        }
    }
}

/// A mask's stripe axis (None: checkerboard) and parity.
type MaskLayout = (Option<usize>, usize);

/// Parameter names of a Fourier flow's mode layers.
const LOG_SCALE: &str = "modes.log_scale";
const ZERO_MAP: &str = "modes.zero_map";

/// The architecture of a flow.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowConfig {
    /// Coupling layers (the checkerboard parity alternates).
    pub layers: usize,
    /// Hidden channel widths of each coupling's network (input 1, output 2 = s, t).
    pub hidden: Vec<usize>,
    /// Convolution kernel size (k × k in 2D, 1 × k in 1D).
    pub kernel: usize,
    /// The activation between convolutions (tanh after the last).
    pub activation: Activation,
    /// Which sites each coupling freezes.
    pub mask: MaskKind,
    /// Seed of the initial weights.
    pub seed: u64,
    /// Sites or Fourier modes.
    pub basis: FlowBasis,
}

impl FlowConfig {
    /// The architecture of the flow papers' L = 8 runs: 16 layers, hidden 8, 8, kernel 3.
    pub fn albergo(seed: u64) -> Self {
        FlowConfig {
            layers: 16,
            hidden: vec![8, 8],
            kernel: 3,
            activation: Activation::LeakyRelu(0.01),
            mask: MaskKind::Checkerboard,
            seed,
            basis: FlowBasis::Real,
        }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.layers == 0 || self.layers > 1024 {
            return Err(Error::InvalidInput(format!(
                "--layers {} must be between 1 and 1024",
                self.layers
            )));
        }
        if self.hidden.contains(&0) || self.hidden.len() > 16 {
            return Err(Error::InvalidInput(format!(
                "--hidden {:?}: up to 16 positive widths",
                self.hidden
            )));
        }
        if self.kernel == 0 || self.kernel.is_multiple_of(2) {
            return Err(Error::InvalidInput(format!(
                "--kernel {} must be odd (a centred stencil)",
                self.kernel
            )));
        }
        if let Activation::LeakyRelu(a) = self.activation {
            Activation::parse("leaky-relu", a)?;
        }
        Ok(())
    }
}

/// A flow on one lattice: its networks and masks. Parameters live in a [`ParamStore`] beside it.
pub struct Flow<T: Real> {
    config: FlowConfig,
    plane: [usize; 2],
    nets: Vec<ConvStack>,
    masks: Vec<Arc<Tensor<T>>>,
    fourier: Option<(Arc<RealDft>, RealDftOp<T>)>,
}

/// The lattice as the `[H, W]` plane of the convolutions: 2D as it is, 1D as `[1, N]`.
pub fn plane_of(lattice: &Lattice) -> Result<[usize; 2]> {
    match lattice.extents() {
        [n] => Ok([1, *n]),
        [h, w] => Ok([*h, *w]),
        e => Err(Error::InvalidInput(format!(
            "flows run on 1D and 2D lattices; got {} dimensions ({e:?})",
            e.len()
        ))),
    }
}

impl<T: Real> Flow<T> {
    /// A new flow for `target` with its parameters registered in `store` (a Fourier flow's
    /// mode layers start at the target's Gaussian approximation, [`gaussian_start`]).
    pub fn new(config: &FlowConfig, target: &Target, store: &mut ParamStore<T>) -> Result<Self> {
        config.validate()?;
        let lattice = target.action().lattice();
        let plane = plane_of(lattice)?;
        if plane.iter().any(|&l| l < 2 || l % 2 == 1) && plane != [1, plane[1]] {
            return Err(Error::InvalidInput(format!(
                "checkerboard couplings need even extents, got {:?}",
                lattice.extents()
            )));
        }
        if plane[1] % 2 == 1 {
            return Err(Error::InvalidInput(format!(
                "checkerboard couplings need an even number of sites per row, got {}",
                plane[1]
            )));
        }
        let k = config.kernel;
        let kernel = if plane[0] == 1 { [1, k] } else { [k, k] };
        if kernel[0] > plane[0] || kernel[1] > plane[1] {
            return Err(Error::InvalidInput(format!(
                "--kernel {k} is larger than the lattice {:?}",
                lattice.extents()
            )));
        }
        let mut channels = vec![1];
        channels.extend(&config.hidden);
        channels.push(2);
        let mut nets = Vec::with_capacity(config.layers);
        let mut built: Vec<(MaskLayout, Arc<Tensor<T>>)> = Vec::new();
        let mut masks_l = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let key = config.mask.layout(plane, l);
            let mask = match built.iter().find(|(k, _)| *k == key) {
                Some((_, m)) => m.clone(),
                None => {
                    let m = Arc::new(match key {
                        (None, parity) => masks::checkerboard(store.ctx(), &plane, parity)?,
                        (Some(axis), parity) => masks::stripes(store.ctx(), &plane, axis, parity)?,
                    });
                    built.push((key, m.clone()));
                    m
                }
            };
            masks_l.push(mask);
        }
        for l in 0..config.layers {
            let seed = config
                .seed
                .wrapping_mul(1 << 20)
                .wrapping_add(l as u64 * 64);
            nets.push(ConvStack::with_kernel(
                store,
                &format!("coupling.{l}"),
                &channels,
                kernel,
                config.activation,
                seed,
            )?);
        }
        let fourier = match config.basis {
            FlowBasis::Real => None,
            FlowBasis::Fourier => Some(Self::mode_layers(target, plane, store)?),
        };
        Ok(Flow {
            config: config.clone(),
            plane,
            nets,
            masks: masks_l,
            fourier,
        })
    }

    /// A Fourier flow's transform, and its mode layers registered at the Gaussian start.
    fn mode_layers(
        target: &Target,
        plane: [usize; 2],
        store: &mut ParamStore<T>,
    ) -> Result<(Arc<RealDft>, RealDftOp<T>)> {
        if plane[0] != 1 {
            return Err(Error::InvalidInput(format!(
                "the Fourier flow acts on 1D paths (the oscillator, 1D phi4); got a {}x{} \
                 lattice: use --flow real",
                plane[0], plane[1]
            )));
        }
        let dft = Arc::new(RealDft::new(plane[1])?);
        let (log_scale, theta) = gaussian_start(target, &dft);
        let ctx = store.ctx().clone();
        store.insert(LOG_SCALE, ctx.from_f64(&[plane[1]], &log_scale)?);
        store.insert(ZERO_MAP, ctx.from_f64(&[ZERO_MAP_PARAMS], &theta)?);
        let op = RealDftOp::new(&ctx, dft.clone(), true)?;
        Ok((dft, op))
    }

    /// The architecture.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// Sites per configuration.
    pub fn volume(&self) -> usize {
        self.plane[0] * self.plane[1]
    }

    /// The shape of a batch: `[batch, 1, H, W]`.
    pub fn shape(&self, batch: usize) -> [usize; 4] {
        [batch, 1, self.plane[0], self.plane[1]]
    }

    /// Sets every coupling's last layer to zero, so s = t = 0, and a Fourier flow's mode layers
    /// to the identity: the flow then maps the prior onto itself (up to the orthogonal DFT).
    pub fn zero_output_layers(&self, store: &mut ParamStore<T>) -> Result<()> {
        let mut names: Vec<String> = self.nets.iter().flat_map(|n| n.output_layer()).collect();
        if self.fourier.is_some() {
            names.extend([LOG_SCALE.to_string(), ZERO_MAP.to_string()]);
        }
        for name in names {
            store.get_mut(&name)?.fill(T::zero())?;
        }
        Ok(())
    }

    /// The DFT op of a Fourier flow (modes from paths, or paths from modes with `inverse`).
    fn dft_op(&self, inverse: bool) -> Option<RealDftOp<T>> {
        self.fourier.as_ref().map(|(dft, op)| RealDftOp {
            dft: dft.clone(),
            matrix: op.matrix.clone(),
            inverse,
        })
    }

    /// A Fourier flow's mode layers (scale, zero-mode map) on modes `h`, forward or undone;
    /// returns the new modes and their log-determinant `[B]`.
    fn modes(
        &self,
        tape: &Tape<T>,
        store: &ParamStore<T>,
        h: &Var<T>,
        dir: Direction,
    ) -> Result<(Var<T>, Var<T>)> {
        let a = tape.param(store, LOG_SCALE)?;
        let theta = tape.param(store, ZERO_MAP)?;
        let sum_a = tape.reshape(&tape.sum_all(&a)?, &[1])?;
        Ok(match dir {
            Direction::Forward => {
                let u = tape.mul(h, &tape.exp(&a)?)?;
                let mut out = tape.apply_multi(ZeroModeOp { inverse: false }, &[&u, &theta])?;
                let ld = out.pop().expect("the zero-mode map has two outputs");
                (out.pop().expect("two outputs"), tape.add(&ld, &sum_a)?)
            }
            Direction::Inverse => {
                let mut out = tape.apply_multi(ZeroModeOp { inverse: true }, &[h, &theta])?;
                let ld = out.pop().expect("the zero-mode map has two outputs");
                let u = out.pop().expect("two outputs");
                let neg = tape.scale(&a, -1.0)?;
                (tape.mul(&u, &tape.exp(&neg)?)?, tape.sub(&ld, &sum_a)?)
            }
        })
    }

    /// Pushes `x` `[B, 1, H, W]` through every coupling (prior → target for
    /// [`Direction::Forward`], the reverse order and inverse maps for [`Direction::Inverse`]);
    /// returns the result and Σ log|det| per sample `[B]`.
    pub fn push(
        &self,
        tape: &Tape<T>,
        store: &ParamStore<T>,
        x: &Var<T>,
        dir: Direction,
    ) -> Result<(Var<T>, Var<T>)> {
        let b = x.shape().first().copied().unwrap_or(0);
        if x.shape() != self.shape(b) {
            return Err(Error::InvalidInput(format!(
                "a flow on {:?} takes [batch, 1, {}, {}], got {:?}",
                self.plane,
                self.plane[0],
                self.plane[1],
                x.shape()
            )));
        }
        let order: Vec<usize> = match dir {
            Direction::Forward => (0..self.nets.len()).collect(),
            Direction::Inverse => (0..self.nets.len()).rev().collect(),
        };
        let mut h = x.clone();
        let mut total: Option<Var<T>> = None;
        if self.fourier.is_some() && dir == Direction::Forward {
            let (u, ld) = self.modes(tape, store, &h, dir)?;
            let op = self.dft_op(true).expect("a Fourier flow");
            (h, total) = (tape.apply(op, &[&u])?, Some(ld));
        }
        for l in order {
            let mask = tape.constant_shared(&self.masks[l]);
            let frozen = tape.mul(&h, &mask)?;
            let st = self.nets[l].forward(tape, store, &frozen)?;
            let mut out = tape.apply_multi(Coupling(dir), &[&h, &st, &mask])?;
            let ld = out.pop().expect("a coupling has two outputs");
            h = out.pop().expect("a coupling has two outputs");
            total = Some(match total {
                None => ld,
                Some(t) => tape.add(&t, &ld)?,
            });
        }
        let mut total = total.expect("a flow has at least one layer");
        if self.fourier.is_some() && dir == Direction::Inverse {
            let op = self.dft_op(false).expect("a Fourier flow");
            let (z, ld) = self.modes(tape, store, &tape.apply(op, &[&h])?, dir)?;
            (h, total) = (z, tape.add(&total, &ld)?);
        }
        Ok((h, total))
    }
}

/// log N(z; 0, 1) per sample of z `[B, V]` (host f64, summed in site order).
pub fn log_prior(z: &[f64], volume: usize) -> Vec<f64> {
    let c = -0.5 * volume as f64 * (2.0 * std::f64::consts::PI).ln();
    z.chunks(volume)
        .map(|s| c - 0.5 * s.iter().map(|v| v * v).sum::<f64>())
        .collect()
}
