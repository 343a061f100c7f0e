//! The one interface of a differentiable operation. An op is a value implementing [`Op`]: its
//! forward pass maps input tensors to output tensors, its backward pass maps output gradients to
//! input gradients, and both dispatch to the CPU twin or the CUDA kernel through the tensors'
//! context. The tape ([`super::tape::Tape::apply`]) stores the op beside its inputs and outputs
//! and knows nothing else about it, so an op can live anywhere in the crate (or in a user's
//! crate): the built-in ones are in [`super::ops`], the flows' fused coupling in
//! [`crate::flow::coupling`].

use super::tensor::{Real, Tensor};
use crate::error::{Error, Result};

/// What a backward pass sees: the op's inputs and outputs as recorded, the gradient of the loss
/// with respect to each output (`None` where nothing downstream used that output), and which
/// inputs need a gradient.
pub struct Backward<'a, T: Real> {
    /// The inputs of the forward pass, in order.
    pub inputs: &'a [&'a Tensor<T>],
    /// The outputs of the forward pass, in order.
    pub outputs: &'a [&'a Tensor<T>],
    /// ∂loss/∂output, per output.
    pub grads: &'a [Option<&'a Tensor<T>>],
    /// Whether input i needs a gradient (an op may skip the others).
    pub need: &'a [bool],
}

impl<'a, T: Real> Backward<'a, T> {
    /// ∂loss/∂(output `slot`); an error where no gradient reached it (only multi-output ops
    /// see that, and they ask [`Backward::grads`] directly).
    pub fn grad(&self, slot: usize) -> Result<&'a Tensor<T>> {
        self.grads.get(slot).copied().flatten().ok_or_else(|| {
            Error::InvalidInput(format!("no gradient reached output {slot} of the op"))
        })
    }

    /// Input `i`.
    pub fn input(&self, i: usize) -> &'a Tensor<T> {
        self.inputs[i]
    }

    /// Output `slot`.
    pub fn output(&self, slot: usize) -> &'a Tensor<T> {
        self.outputs[slot]
    }

    /// Whether input `i` needs a gradient.
    pub fn needs(&self, i: usize) -> bool {
        self.need.get(i).copied().unwrap_or(false)
    }
}

/// A differentiable operation with a forward and a backward pass on every backend.
///
/// Contract, checked by the tape: `forward` returns at least one output; `backward` returns one
/// entry per input, and every gradient it gives has its input's shape. Gradients may be `None`
/// for inputs that do not need one.
pub trait Op<T: Real>: 'static {
    /// The op's name, for error messages (e.g. `conv2d`).
    fn name(&self) -> &str;

    /// The outputs from the inputs.
    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>>;

    /// ∂loss/∂input for every input that needs it.
    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>>;
}
