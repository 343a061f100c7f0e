//! The built-in ops of the tape, one family per file; each is a small value implementing
//! [`super::op::Op`] with its forward and backward passes. Adding an op: a type implementing
//! `Op` (here or anywhere else) and, for convenience, a method on [`super::tape::Tape`].

pub mod batched_linear;
pub mod conv;
pub mod conv_stack;
pub mod elementwise;
pub mod group_norm_silu;
pub mod matmul;
pub mod reduce;
pub mod shape;
pub mod unet;

use super::kernels;
use super::tensor::{Real, Tensor};
use crate::error::Result;

/// Sums a broadcast gradient `full` back onto an input's `shape` (right-aligned broadcasting).
pub fn sum_onto<T: Real>(full: Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
    if full.shape() == shape {
        return Ok(full);
    }
    let mut target = vec![1; full.shape().len() - shape.len().min(full.shape().len())];
    target.extend_from_slice(shape);
    let mut r = kernels::reduce_to(&full, &target, 1.0)?;
    r.set_shape(shape)?;
    Ok(r)
}
