//! Periodic hypercubic lattices of dimension 1 to 4, and batches of independent chains stored together.
//!
//! Layout: row-major with axis 0 slowest (NumPy's C order), so a field batch has shape
//! `[chains, L_0, ..., L_{d-1}]` and one time slice (fixed `x_0`) of one chain is contiguous.
//! Axis 0 is the time direction for correlators.

use crate::error::{Error, Result};

/// Largest supported dimension.
pub const MAX_DIM: usize = 4;

/// A periodic hypercubic lattice with extents `L_0 × … × L_{d-1}`, each at least 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lattice {
    extents: Vec<usize>,
}

impl Lattice {
    /// Builds a lattice, rejecting zero or one-site extents, more than [`MAX_DIM`] dimensions,
    /// and volumes that do not fit a 32-bit site index (the GPU kernels index sites with `u32`).
    pub fn new(extents: &[usize]) -> Result<Self> {
        if extents.is_empty() || extents.len() > MAX_DIM {
            return Err(Error::InvalidInput(format!(
                "a lattice needs 1 to {MAX_DIM} dimensions, got {} ({extents:?}); give e.g. --dims 32x32",
                extents.len()
            )));
        }
        if let Some(&l) = extents.iter().find(|&&l| l < 2) {
            return Err(Error::InvalidInput(format!(
                "lattice extent {l} in {extents:?} is too small: every extent must be at least 2"
            )));
        }
        let volume = extents.iter().try_fold(1usize, |v, &l| v.checked_mul(l));
        match volume {
            Some(v) if v <= u32::MAX as usize / 2 => Ok(Lattice {
                extents: extents.to_vec(),
            }),
            _ => Err(Error::InvalidInput(format!(
                "lattice {extents:?} has more than 2^31 sites; use a smaller lattice"
            ))),
        }
    }

    /// Parses extents written as `64x64` (or `64`, `16x16x16x16`).
    pub fn parse(spec: &str) -> Result<Self> {
        let extents: std::result::Result<Vec<usize>, _> = spec
            .split(['x', 'X'])
            .map(|s| s.trim().parse::<usize>())
            .collect();
        match extents {
            Ok(e) => Lattice::new(&e),
            Err(_) => Err(Error::InvalidInput(format!(
                "cannot read lattice extents '{spec}': write them as e.g. 32x32 or 16x16x16x16"
            ))),
        }
    }

    /// Number of dimensions d.
    pub fn dim(&self) -> usize {
        self.extents.len()
    }

    /// Extents `[L_0, …, L_{d-1}]`.
    pub fn extents(&self) -> &[usize] {
        &self.extents
    }

    /// Number of sites V.
    pub fn volume(&self) -> usize {
        self.extents.iter().product()
    }

    /// Extent of the time direction (axis 0).
    pub fn time_extent(&self) -> usize {
        self.extents[0]
    }

    /// Sites in one time slice (V / L_0).
    pub fn slice_volume(&self) -> usize {
        self.volume() / self.extents[0]
    }

    /// Row-major stride of each axis (the last axis has stride 1).
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1usize; self.dim()];
        for mu in (0..self.dim().saturating_sub(1)).rev() {
            s[mu] = s[mu + 1] * self.extents[mu + 1];
        }
        s
    }

    /// Linear index of the site `x ± μ̂` (periodic), for a site given by its linear index.
    pub fn neighbour(&self, site: usize, mu: usize, forward: bool) -> usize {
        let stride = self.strides()[mu];
        let l = self.extents[mu];
        let x = (site / stride) % l;
        let xn = if forward {
            (x + 1) % l
        } else {
            (x + l - 1) % l
        };
        site + xn * stride - x * stride
    }

    /// Text form `L0xL1x…`, as accepted by [`Lattice::parse`].
    pub fn label(&self) -> String {
        self.extents
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("x")
    }
}
