//! Fixed masks for coupling layers, applied with [`super::Tape::mul`].

use super::tensor::{Ctx, Real, Tensor};
use crate::error::{Error, Result};

/// Checkerboard mask of a lattice with the given extents: 1 where the coordinates sum to
/// `parity` mod 2, else 0; shape `extents` (broadcasts over `[B, C, …]`).
pub fn checkerboard<T: Real>(ctx: &Ctx<T>, extents: &[usize], parity: usize) -> Result<Tensor<T>> {
    if extents.is_empty() {
        return Err(Error::InvalidInput(
            "a checkerboard needs at least one dimension".into(),
        ));
    }
    let n: usize = extents.iter().product();
    let data: Vec<f64> = (0..n)
        .map(|mut i| {
            let mut sum = 0;
            for &l in extents.iter().rev() {
                sum += i % l;
                i /= l;
            }
            ((sum % 2 == parity % 2) as u8) as f64
        })
        .collect();
    ctx.from_f64(extents, &data)
}

/// The complement 1 − m of a 0/1 mask.
pub fn complement<T: Real>(mask: &Tensor<T>) -> Result<Tensor<T>> {
    let v: Vec<f64> = mask.to_f64()?.into_iter().map(|m| 1.0 - m).collect();
    mask.ctx().from_f64(mask.shape(), &v)
}
