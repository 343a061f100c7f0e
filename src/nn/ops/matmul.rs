//! Matrix products of 2-D tensors.

use super::super::kernels;
use super::super::op::{Backward, Op};
use super::super::tensor::{Real, Tensor};
use crate::error::Result;

/// C = op(A)·op(B), op transposing where `ta`/`tb` is set.
pub struct MatmulOp {
    /// Transpose A.
    pub ta: bool,
    /// Transpose B.
    pub tb: bool,
}

impl<T: Real> Op<T> for MatmulOp {
    fn name(&self) -> &str {
        "matmul"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        Ok(vec![kernels::matmul(x[0], x[1], self.ta, self.tb)?])
    }

    // dA = dC·op(B)ᵀ, or op(B)·dCᵀ when A is transposed; likewise dB.
    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let (a, m, g) = (b.input(0), b.input(1), b.grad(0)?);
        let (ta, tb) = (self.ta, self.tb);
        let ga = match (b.needs(0), ta) {
            (false, _) => None,
            (true, true) => Some(kernels::matmul(m, g, tb, true)?),
            (true, false) => Some(kernels::matmul(g, m, false, !tb)?),
        };
        let gb = match (b.needs(1), tb) {
            (false, _) => None,
            (true, true) => Some(kernels::matmul(g, a, true, ta)?),
            (true, false) => Some(kernels::matmul(a, g, !ta, false)?),
        };
        Ok(vec![ga, gb])
    }
}
