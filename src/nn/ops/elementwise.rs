//! Elementwise functions of one tensor and broadcast arithmetic of two.

use super::super::kernels::{self, Binary, Unary};
use super::super::op::{Backward, Op};
use super::super::tensor::{Real, Tensor};
use super::sum_onto;
use crate::error::Result;

/// y = f(x) elementwise (kernels `unary_<f>` and `unary_grad_<f>`).
pub struct UnaryOp(pub Unary);

impl<T: Real> Op<T> for UnaryOp {
    fn name(&self) -> &str {
        self.0.kernel_name()
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        Ok(vec![kernels::unary(self.0, x[0])?])
    }

    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let dx = kernels::unary_grad(self.0, b.input(0), b.output(0), b.grad(0)?)?;
        Ok(vec![Some(dx)])
    }
}

/// c = a ∘ b with NumPy broadcasting (kernels `binary_<op>` and `binary_grad_<op>`); the
/// gradient of a broadcast input is summed back onto its shape.
pub struct BinaryOp(pub Binary);

impl<T: Real> Op<T> for BinaryOp {
    fn name(&self) -> &str {
        self.0.kernel_name()
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let out = kernels::broadcast_shape(x[0].shape(), x[1].shape())?;
        Ok(vec![kernels::binary(self.0, x[0], x[1], &out)?])
    }

    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let (x, y, g) = (b.input(0), b.input(1), b.grad(0)?);
        (0..2)
            .map(|wrt| {
                if !b.needs(wrt) {
                    return Ok(None);
                }
                let full = kernels::binary_grad(self.0, x, y, g, wrt as i32)?;
                sum_onto(full, b.input(wrt).shape()).map(Some)
            })
            .collect()
    }
}
