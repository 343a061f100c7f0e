//! Ops that move values without arithmetic: reshape, concatenation, split.

use super::super::kernels;
use super::super::op::{Backward, Op};
use super::super::tensor::{Real, Tensor};
use crate::error::{Error, Result};

/// (outer, inner block) sizes of a tensor split at `axis`: shape[..axis] and shape[axis..].
fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis..].iter().product(),
    )
}

/// The same values under another shape.
pub struct ReshapeOp(pub Vec<usize>);

impl<T: Real> Op<T> for ReshapeOp {
    fn name(&self) -> &str {
        "reshape"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        Ok(vec![x[0].reshape(&self.0)?])
    }

    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(b.grad(0)?.reshape(b.input(0).shape())?)])
    }
}

/// Concatenation along `axis` (e.g. channels, axis 1).
pub struct ConcatOp(pub usize);

impl<T: Real> Op<T> for ConcatOp {
    fn name(&self) -> &str {
        "concat"
    }

    fn forward(&self, parts: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let axis = self.0;
        let first = parts
            .first()
            .ok_or_else(|| Error::InvalidInput("concat of nothing".into()))?
            .shape();
        if axis >= first.len() {
            return Err(Error::InvalidInput(format!(
                "concat along axis {axis} of shape {first:?}"
            )));
        }
        let mut out = first.to_vec();
        out[axis] = 0;
        for p in parts {
            let s = p.shape();
            if s.len() != first.len() || (0..s.len()).any(|k| k != axis && s[k] != first[k]) {
                return Err(Error::InvalidInput(format!(
                    "concat along {axis}: shapes {first:?} and {s:?} differ"
                )));
            }
            out[axis] += s[axis];
        }
        let mut v = parts[0].ctx().empty(&out)?;
        let (outer, total) = outer_inner(&out, axis);
        let mut off = 0;
        for p in parts {
            let (_, len) = outer_inner(p.shape(), axis);
            kernels::slab_copy(p, &mut v, outer, len, len, 0, total, off)?;
            off += len;
        }
        Ok(vec![v])
    }

    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let g = b.grad(0)?;
        let (outer, total) = outer_inner(g.shape(), self.0);
        let mut off = 0;
        let mut v = Vec::with_capacity(b.inputs.len());
        for (i, p) in b.inputs.iter().enumerate() {
            let (_, len) = outer_inner(p.shape(), self.0);
            v.push(if b.needs(i) {
                let mut gp = g.ctx().empty(p.shape())?;
                kernels::slab_copy(g, &mut gp, outer, len, total, off, len, 0)?;
                Some(gp)
            } else {
                None
            });
            off += len;
        }
        Ok(v)
    }
}

/// Splits along `axis` into pieces of the given sizes: one output per piece.
pub struct SplitOp {
    axis: usize,
    sizes: Vec<usize>,
}

impl SplitOp {
    /// Pieces of `sizes` along `axis`.
    pub fn new(axis: usize, sizes: &[usize]) -> Self {
        SplitOp {
            axis,
            sizes: sizes.to_vec(),
        }
    }
}

impl<T: Real> Op<T> for SplitOp {
    fn name(&self) -> &str {
        "split"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let (x, axis) = (x[0], self.axis);
        if axis >= x.shape().len() || self.sizes.iter().sum::<usize>() != x.shape()[axis] {
            return Err(Error::InvalidInput(format!(
                "split sizes {:?} along axis {axis} do not add up to {:?}",
                self.sizes,
                x.shape()
            )));
        }
        let (outer, total) = outer_inner(x.shape(), axis);
        let per = total / x.shape()[axis].max(1);
        let mut start = 0;
        self.sizes
            .iter()
            .map(|&n| {
                let mut shape = x.shape().to_vec();
                shape[axis] = n;
                let mut v = x.ctx().empty(&shape)?;
                kernels::slab_copy(x, &mut v, outer, n * per, total, start * per, n * per, 0)?;
                start += n;
                Ok(v)
            })
            .collect()
    }

    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let x = b.input(0);
        let (outer, total) = outer_inner(x.shape(), self.axis);
        let per = total / x.shape()[self.axis].max(1);
        let mut gx = x.ctx().zeros(x.shape())?;
        let mut start = 0;
        for (g, &n) in b.grads.iter().zip(&self.sizes) {
            if let Some(g) = g {
                kernels::slab_copy(g, &mut gx, outer, n * per, n * per, 0, total, start * per)?;
            }
            start += n;
        }
        Ok(vec![Some(gx)])
    }
}
