//! Periodic and causal 2D convolutions on lattice-shaped tensors `[B, C, H, W]`.

use super::super::kernels::{self, ConvMode};
use super::super::op::{Backward, Op};
use super::super::tensor::{Real, Tensor};
use crate::error::Result;

/// y = conv(x, w) for x `[B, Ci, H, W]`, w `[Co, Ci, KH, KW]` (no bias: add one by broadcast).
pub struct Conv2dOp(pub ConvMode);

impl<T: Real> Op<T> for Conv2dOp {
    fn name(&self) -> &str {
        "conv2d"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        Ok(vec![kernels::conv2d(x[0], x[1], self.0)?])
    }

    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let (x, w, g) = (b.input(0), b.input(1), b.grad(0)?);
        let dx = match b.needs(0) {
            true => Some(kernels::conv2d_grad_input(g, w, x.shape(), self.0)?),
            false => None,
        };
        let dw = match b.needs(1) {
            true => Some(kernels::conv2d_grad_weight(g, x, w.shape(), self.0)?),
            false => None,
        };
        Ok(vec![dx, dw])
    }
}
