//! Sums over axes (kernel `reduce_to`: a fixed order, accumulated in f64 on both backends).

use super::super::kernels::{self, Binary, Unary};
use super::super::op::{Backward, Op};
use super::super::tensor::{Real, Tensor};
use crate::error::{Error, Result};

/// Σ over `axes` (kept as size-1 dimensions), times `scale`.
pub struct SumOp {
    axes: Vec<usize>,
    scale: f64,
}

impl SumOp {
    /// A sum over `axes` times `scale`.
    pub fn new(axes: &[usize], scale: f64) -> Self {
        SumOp {
            axes: axes.to_vec(),
            scale,
        }
    }
}

impl<T: Real> Op<T> for SumOp {
    fn name(&self) -> &str {
        "sum"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let mut target = x[0].shape().to_vec();
        for &a in &self.axes {
            *target.get_mut(a).ok_or_else(|| {
                Error::InvalidInput(format!("axis {a} out of range for {:?}", x[0].shape()))
            })? = 1;
        }
        Ok(vec![kernels::reduce_to(x[0], &target, self.scale)?])
    }

    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let g = b.grad(0)?;
        let spread = kernels::binary(Binary::First, g, g, b.input(0).shape())?;
        Ok(vec![Some(if self.scale == 1.0 {
            spread
        } else {
            kernels::unary(Unary::Scale(self.scale), &spread)?
        })])
    }
}
