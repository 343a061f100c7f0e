//! A stack of convolutions, each followed by a bias and an activation, as one op: the network
//! inside a flow's coupling layers.
//!
//! On the CPU, for small planes and enough samples, the whole stack runs with the samples in
//! the SIMD lanes ([`crate::nn::cpu::stack`]): no transposes between layers, one parallel region
//! per pass. Elsewhere (CUDA, wide planes, small batches) it runs the layer-by-layer kernels
//! (`conv2d`, `binary_add`, `unary_<f>` and their gradients). Both compute what the same layers
//! built from single ops compute, bit for bit except the bias gradients' summation order on the
//! lane path (tested in `tests/conv_stack.rs`).

use super::super::cpu::stack::{self, StackGrads, StackLayer};
use super::super::kernels::{self, Binary, ConvMode, Unary};
use super::super::op::{Backward, Op};
use super::super::tensor::{mixed, Buffer, Real, Tensor};
use crate::error::{Error, Result};

/// y = act_n(conv(… act_1(conv(x, w_1) + b_1) …, w_n) + b_n) for inputs
/// `[x, w_1, b_1, …, w_n, b_n]`: x `[B, C, H, W]`, w_i `[Co, Ci, KH, KW]`, b_i `[Co]`.
///
/// Output 0 is y; with `keep`, the further outputs hold the activations the backward pass
/// needs, in a layout private to the backend (do not read them).
pub struct ConvStackOp {
    /// The boundary of every convolution.
    pub mode: ConvMode,
    /// The activation after each layer.
    pub acts: Vec<Unary>,
    /// Whether to keep the activations for a backward pass (a recording tape).
    pub keep: bool,
}

impl ConvStackOp {
    /// The layers' geometry from the inputs, checked.
    fn layers<T: Real>(&self, inputs: &[&Tensor<T>]) -> Result<Vec<StackLayer>> {
        let n = self.acts.len();
        if n == 0 || inputs.len() != 1 + 2 * n {
            return Err(Error::InvalidInput(format!(
                "conv_stack takes x and a weight and bias per layer: {} inputs for {n} layers",
                inputs.len()
            )));
        }
        let mut shape = inputs[0].shape().to_vec();
        let mut layers = Vec::with_capacity(n);
        for (i, &act) in self.acts.iter().enumerate() {
            let (w, b) = (inputs[1 + 2 * i], inputs[2 + 2 * i]);
            let conv = kernels::conv_spec(&shape, w.shape(), self.mode)?;
            if b.shape() != [w.shape()[0]] {
                return Err(Error::InvalidInput(format!(
                    "conv_stack layer {i}: bias {:?} for weights {:?}",
                    b.shape(),
                    w.shape()
                )));
            }
            kernels::check_size(shape.iter().product::<usize>().max(w.len()))?;
            shape[1] = w.shape()[0];
            layers.push(StackLayer { conv, act });
        }
        kernels::check_size(shape.iter().product())?;
        Ok(layers)
    }

    /// The output's shape.
    fn out_shape<T: Real>(inputs: &[&Tensor<T>], layers: &[StackLayer]) -> Vec<usize> {
        let mut shape = inputs[0].shape().to_vec();
        shape[1] = layers[layers.len() - 1].conv.co as usize;
        shape
    }
}

/// Whether the stack runs in the CPU's lanes (decided from the inputs alone, so the forward and
/// backward passes agree).
fn in_lanes<T: Real>(x: &Tensor<T>, layers: &[StackLayer]) -> bool {
    matches!(x.buf(), Buffer::Cpu(_)) && stack::suits(layers)
}

/// A CPU tensor's values (an error for a CUDA one).
fn host<T: Real>(t: &Tensor<T>) -> Result<&[T]> {
    match t.buf() {
        Buffer::Cpu(v) => Ok(v),
        Buffer::Cuda(_) => Err(mixed()),
    }
}

/// A CPU tensor's values, to write.
fn host_mut<T: Real>(t: &mut Tensor<T>) -> Result<&mut [T]> {
    match t.buf_mut() {
        Buffer::Cpu(v) => Ok(v),
        Buffer::Cuda(_) => Err(mixed()),
    }
}

/// The CPU slices of the parameters, `(w_i, b_i)` per layer.
fn param_slices<'a, T: Real>(inputs: &[&'a Tensor<T>]) -> Result<Vec<(&'a [T], &'a [T])>> {
    inputs[1..]
        .chunks_exact(2)
        .map(|p| Ok((host(p[0])?, host(p[1])?)))
        .collect()
}

impl ConvStackOp {
    fn forward_lanes<T: Real>(
        &self,
        inputs: &[&Tensor<T>],
        layers: &[StackLayer],
    ) -> Result<Vec<Tensor<T>>> {
        let x = inputs[0];
        let dev = x.ctx().cpu().ok_or_else(mixed)?;
        let mut y = x.ctx().empty(&Self::out_shape(inputs, layers))?;
        let mut kept = match self.keep {
            true => Some(x.ctx().empty(&[stack::saved_len(dev, layers)])?),
            false => None,
        };
        let params = param_slices(inputs)?;
        let saved = kept.as_mut().map(host_mut).transpose()?;
        stack::forward(dev, layers, &params, host(x)?, host_mut(&mut y)?, saved)?;
        Ok(std::iter::once(y).chain(kept).collect())
    }

    /// Layer by layer with the single kernels; outputs y, then with `keep` z_0 … z_{n−1} (the
    /// pre-activations) and a_1 … a_{n−1} (the hidden layers' outputs).
    fn forward_layers<T: Real>(&self, inputs: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let n = self.acts.len();
        let (mut zs, mut hidden) = (Vec::new(), Vec::new());
        let mut h: Option<Tensor<T>> = None;
        for (i, &act) in self.acts.iter().enumerate() {
            let (w, b) = (inputs[1 + 2 * i], inputs[2 + 2 * i]);
            let input = h.as_ref().unwrap_or(inputs[0]);
            let conv = kernels::conv2d(input, w, self.mode)?;
            let bias = b.reshape(&[b.len(), 1, 1])?;
            let z = kernels::binary(Binary::Add, &conv, &bias, conv.shape())?;
            let a = kernels::unary(act, &z)?;
            if self.keep {
                zs.push(z);
                hidden.extend(h.take());
            }
            h = Some(a);
        }
        let y = h.ok_or_else(|| Error::InvalidInput("conv_stack without layers".into()))?;
        debug_assert!(!self.keep || (zs.len() == n && hidden.len() == n - 1));
        Ok(std::iter::once(y).chain(zs).chain(hidden).collect())
    }

    fn backward_lanes<T: Real>(
        &self,
        b: &Backward<'_, T>,
        layers: &[StackLayer],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let x = b.input(0);
        let dev = x.ctx().cpu().ok_or_else(mixed)?;
        let params = param_slices(b.inputs)?;
        let want_params = (1..b.inputs.len()).any(|i| b.needs(i));
        let mut dx = match b.needs(0) {
            true => Some(x.ctx().empty(x.shape())?),
            false => None,
        };
        let mut grads: Vec<Tensor<T>> = Vec::new();
        if want_params {
            for t in &b.inputs[1..] {
                grads.push(x.ctx().empty(t.shape())?);
            }
        }
        let (mut dw, mut db) = (Vec::new(), Vec::new());
        for (k, g) in grads.iter_mut().enumerate() {
            let side = if k % 2 == 0 { &mut dw } else { &mut db };
            side.push(host_mut(g)?);
        }
        let out = StackGrads {
            dx: dx.as_mut().map(host_mut).transpose()?,
            dw,
            db,
        };
        let (saved, gy) = (host(b.output(1))?, host(b.grad(0)?)?);
        stack::backward(dev, layers, &params, saved, gy, out)?;
        let mut result = vec![dx];
        let mut grads = grads.into_iter();
        for i in 1..b.inputs.len() {
            let g = grads.next();
            result.push(g.filter(|_| b.needs(i)));
        }
        Ok(result)
    }

    /// The backward pass of [`ConvStackOp::forward_layers`].
    fn backward_layers<T: Real>(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let n = self.acts.len();
        let input_of = |i: usize| match i {
            0 => b.input(0),
            _ => b.output(n + i),
        };
        let mut result: Vec<Option<Tensor<T>>> = (0..b.inputs.len()).map(|_| None).collect();
        let mut g: Option<Tensor<T>> = None;
        for (i, &act) in self.acts.iter().enumerate().rev() {
            let a_out = if i + 1 == n {
                b.output(0)
            } else {
                b.output(n + i + 1)
            };
            let gy = match &g {
                Some(t) => t,
                None => b.grad(0)?,
            };
            let dz = kernels::unary_grad(act, b.output(1 + i), a_out, gy)?;
            let w = b.input(1 + 2 * i);
            if b.needs(1 + 2 * i) {
                let dw = kernels::conv2d_grad_weight(&dz, input_of(i), w.shape(), self.mode)?;
                result[1 + 2 * i] = Some(dw);
            }
            if b.needs(2 + 2 * i) {
                let mut db = kernels::reduce_to(&dz, &[1, w.shape()[0], 1, 1], 1.0)?;
                db.set_shape(&[w.shape()[0]])?;
                result[2 + 2 * i] = Some(db);
            }
            if i == 0 && !b.needs(0) {
                break;
            }
            let x_shape = input_of(i).shape();
            g = Some(kernels::conv2d_grad_input(&dz, w, x_shape, self.mode)?);
        }
        result[0] = g.filter(|_| b.needs(0));
        Ok(result)
    }
}

impl<T: Real> Op<T> for ConvStackOp {
    fn name(&self) -> &str {
        "conv_stack"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let layers = self.layers(inputs)?;
        match in_lanes(inputs[0], &layers) {
            true => self.forward_lanes(inputs, &layers),
            false => self.forward_layers(inputs),
        }
    }

    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        if b.outputs.len() == 1 {
            return Err(Error::InvalidInput(
                "conv_stack ran without keeping its activations, so it has no backward pass: \
                 build it with keep (Tape::conv_stack does on a recording tape)"
                    .into(),
            ));
        }
        let layers = self.layers(b.inputs)?;
        match in_lanes(b.input(0), &layers) {
            true => self.backward_lanes(b, &layers),
            false => self.backward_layers(b),
        }
    }
}
