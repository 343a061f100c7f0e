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

/// Stripe mask: 1 where the coordinate along `axis` is `parity` mod 2, else 0; shape `extents`.
pub fn stripes<T: Real>(
    ctx: &Ctx<T>,
    extents: &[usize],
    axis: usize,
    parity: usize,
) -> Result<Tensor<T>> {
    if axis >= extents.len() {
        return Err(Error::InvalidInput(format!(
            "stripes along axis {axis} of a {}-dimensional lattice",
            extents.len()
        )));
    }
    let inner: usize = extents[axis + 1..].iter().product();
    let n: usize = extents.iter().product();
    let data: Vec<f64> = (0..n)
        .map(|i| (((i / inner) % extents[axis]) % 2 == parity % 2) as u8 as f64)
        .collect();
    ctx.from_f64(extents, &data)
}

/// The complement 1 − m of a 0/1 mask.
pub fn complement<T: Real>(mask: &Tensor<T>) -> Result<Tensor<T>> {
    let v: Vec<f64> = mask.to_f64()?.into_iter().map(|m| 1.0 - m).collect();
    mask.ctx().from_f64(mask.shape(), &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{CpuDevice, Device};

    #[test]
    fn stripes_follow_one_axis() {
        let ctx = Ctx::<f64>::new(Device::Cpu(CpuDevice::with_threads(1)));
        let cols = stripes(&ctx, &[2, 3], 1, 0).unwrap().to_f64().unwrap();
        assert_eq!(cols, vec![1.0, 0.0, 1.0, 1.0, 0.0, 1.0]);
        let rows = stripes(&ctx, &[2, 3], 0, 1).unwrap().to_f64().unwrap();
        assert_eq!(rows, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        assert!(stripes(&ctx, &[2, 3], 2, 0).is_err());
        let board = checkerboard(&ctx, &[2, 3], 0).unwrap().to_f64().unwrap();
        assert_eq!(board, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    }
}
