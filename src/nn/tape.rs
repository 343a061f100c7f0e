//! The reverse-mode autodiff tape (a Wengert list).
//!
//! [`Tape::apply`] runs an [`Op`]'s forward pass at once; when recording, it also appends a node
//! holding the op, its inputs and its outputs. [`Tape::backward`] walks the nodes once in
//! reverse, asks each op for its inputs' gradients, accumulates them, returns those of the named
//! parameters, and clears the tape (freeing the intermediates). In no-grad mode nothing is
//! recorded: values are freed as soon as the last [`Var`] holding them is dropped.
//!
//! Every recorded [`Var`] remembers its tape and the tape's epoch (how many times it was
//! cleared), so a `Var` from another tape, or one recorded before a clear, is refused with an
//! error instead of silently pointing at some other node.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::kernels::{self, Binary, ConvMode, Unary};
use super::op::{Backward, Op};
use super::ops::batched_linear::BatchedLinear;
use super::ops::conv::Conv2dOp;
use super::ops::conv_stack::ConvStackOp;
use super::ops::elementwise::{BinaryOp, UnaryOp};
use super::ops::group_norm_silu::GroupNormSilu;
use super::ops::matmul::MatmulOp;
use super::ops::reduce::SumOp;
use super::ops::shape::{ConcatOp, ReshapeOp, SplitOp};
use super::ops::unet::{AvgPool2, FourierFeatures, GroupNorm, Upsample2};
use super::params::ParamStore;
use super::tensor::{Ctx, Real, Tensor};
use crate::error::{Error, Result};

/// Identities of tapes, so that a `Var` can name the tape it was recorded on.
static NEXT_TAPE: AtomicU64 = AtomicU64::new(1);

/// Where a recorded value came from: tape, epoch, node and output slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Origin {
    tape: u64,
    epoch: u64,
    node: usize,
    slot: usize,
}

/// A value on the tape: a tensor and, when recorded, where it came from.
pub struct Var<T: Real> {
    value: Arc<Tensor<T>>,
    origin: Option<Origin>,
}

impl<T: Real> Clone for Var<T> {
    fn clone(&self) -> Self {
        Var {
            value: self.value.clone(),
            origin: self.origin,
        }
    }
}

impl<T: Real> Var<T> {
    /// The value.
    pub fn value(&self) -> &Tensor<T> {
        &self.value
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
    /// Whether a gradient can flow through this value (it was recorded from a parameter).
    pub fn is_recorded(&self) -> bool {
        self.origin.is_some()
    }
}

enum Node<T: Real> {
    Leaf(String),
    Op {
        op: Box<dyn Op<T>>,
        inputs: Vec<Var<T>>,
        outputs: Vec<Arc<Tensor<T>>>,
    },
}

/// Gradients of the named parameters after [`Tape::backward`].
pub struct Grads<T: Real> {
    map: BTreeMap<String, Tensor<T>>,
}

impl<T: Real> Grads<T> {
    /// ∂loss/∂(parameter `name`), if the loss depends on it.
    pub fn get(&self, name: &str) -> Option<&Tensor<T>> {
        self.map.get(name)
    }
    /// (name, gradient) pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor<T>)> {
        self.map.iter()
    }
}

/// The tape. Single-threaded (kernels parallelise internally).
pub struct Tape<T: Real> {
    ctx: Ctx<T>,
    id: u64,
    epoch: Cell<u64>,
    nodes: RefCell<Vec<Node<T>>>,
    recording: Cell<bool>,
    frozen: Cell<bool>,
}

impl<T: Real> Tape<T> {
    /// An empty, recording tape on `ctx`.
    pub fn new(ctx: &Ctx<T>) -> Self {
        Tape {
            ctx: ctx.clone(),
            id: NEXT_TAPE.fetch_add(1, Ordering::Relaxed),
            epoch: Cell::new(0),
            nodes: RefCell::new(Vec::new()),
            recording: Cell::new(true),
            frozen: Cell::new(false),
        }
    }

    /// The context.
    pub fn ctx(&self) -> &Ctx<T> {
        &self.ctx
    }

    /// Switches recording on or off (off: sampling pays nothing for the tape).
    pub fn set_grad_enabled(&self, on: bool) {
        self.recording.set(on);
    }

    /// With `on`, [`Tape::param`] hands out parameters as constants while the ops are still
    /// recorded: a backward pass then gives gradients with respect to [`Tape::watch`]ed inputs
    /// only and skips the weight gradients (e.g. input Jacobians of a trained network).
    pub fn set_params_frozen(&self, on: bool) {
        self.frozen.set(on);
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every recorded node; `Var`s recorded so far become invalid on this tape.
    pub fn clear(&self) {
        self.nodes.borrow_mut().clear();
        self.epoch.set(self.epoch.get() + 1);
    }

    /// The node a recorded `v` points at on this tape, or an error when it belongs to another
    /// tape or to an epoch before the last clear.
    fn node_of(&self, v: &Var<T>) -> Result<Option<Origin>> {
        let Some(o) = v.origin else { return Ok(None) };
        if o.tape != self.id {
            return Err(Error::InvalidInput(
                "a value recorded on another tape was used here: build the whole computation \
                 on one tape"
                    .into(),
            ));
        }
        if o.epoch != self.epoch.get() {
            return Err(Error::InvalidInput(
                "a value recorded before the tape was cleared (by backward) was used again: \
                 recompute it after each backward, or pass retain to backward_seeded"
                    .into(),
            ));
        }
        Ok(Some(o))
    }

    fn push(&self, node: Node<T>) -> usize {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        nodes.len() - 1
    }

    fn origin(&self, node: usize, slot: usize) -> Origin {
        Origin {
            tape: self.id,
            epoch: self.epoch.get(),
            node,
            slot,
        }
    }

    /// Runs `op` on `inputs` and, when recording and some input carries a gradient, records it.
    /// Returns one `Var` per output.
    pub fn apply_multi(&self, op: impl Op<T>, inputs: &[&Var<T>]) -> Result<Vec<Var<T>>> {
        let record = self.records(inputs)?;
        let values: Vec<&Tensor<T>> = inputs.iter().map(|v| &*v.value).collect();
        let outputs: Vec<Arc<Tensor<T>>> = op.forward(&values)?.into_iter().map(Arc::new).collect();
        if outputs.is_empty() {
            return Err(Error::InvalidInput(format!(
                "op {} produced no output",
                op.name()
            )));
        }
        if !record {
            return Ok(outputs
                .into_iter()
                .map(|value| Var {
                    value,
                    origin: None,
                })
                .collect());
        }
        let node = self.push(Node::Op {
            op: Box::new(op),
            inputs: inputs.iter().map(|&v| v.clone()).collect(),
            outputs: outputs.clone(),
        });
        Ok(outputs
            .into_iter()
            .enumerate()
            .map(|(slot, value)| Var {
                value,
                origin: Some(self.origin(node, slot)),
            })
            .collect())
    }

    /// Whether an op applied to `inputs` is recorded: the tape records and some input carries a
    /// gradient (an error for inputs of another tape or epoch, as in [`Tape::apply_multi`]).
    pub fn records(&self, inputs: &[&Var<T>]) -> Result<bool> {
        let mut need = false;
        for v in inputs {
            need |= self.node_of(v)?.is_some();
        }
        Ok(need && self.recording.get())
    }

    /// [`Tape::apply_multi`] for an op with one output.
    pub fn apply(&self, op: impl Op<T>, inputs: &[&Var<T>]) -> Result<Var<T>> {
        let name = op.name().to_string();
        let mut out = self.apply_multi(op, inputs)?;
        if out.len() != 1 {
            return Err(Error::InvalidInput(format!(
                "op {name} has {} outputs: use apply_multi",
                out.len()
            )));
        }
        Ok(out.remove(0))
    }

    /// A constant (no gradient flows into it).
    pub fn constant(&self, t: Tensor<T>) -> Var<T> {
        Var {
            value: Arc::new(t),
            origin: None,
        }
    }

    /// A constant shared with the caller (no copy): for data every step reuses, such as inputs
    /// and kernel matrices.
    pub fn constant_shared(&self, t: &Arc<Tensor<T>>) -> Var<T> {
        Var {
            value: t.clone(),
            origin: None,
        }
    }

    /// A trainable parameter of `store`.
    pub fn param(&self, store: &ParamStore<T>, name: &str) -> Result<Var<T>> {
        let value = store.shared(name)?;
        if self.frozen.get() {
            return Ok(Var {
                value,
                origin: None,
            });
        }
        Ok(self.leaf(name, value))
    }

    /// An input whose gradient the backward pass reports under `name` (also while the parameters
    /// are frozen).
    pub fn watch(&self, name: &str, value: Tensor<T>) -> Var<T> {
        self.leaf(name, Arc::new(value))
    }

    fn leaf(&self, name: &str, value: Arc<Tensor<T>>) -> Var<T> {
        if !self.recording.get() {
            return Var {
                value,
                origin: None,
            };
        }
        let node = self.push(Node::Leaf(name.to_string()));
        Var {
            value,
            origin: Some(self.origin(node, 0)),
        }
    }

    /// y = f(x) elementwise.
    pub fn unary(&self, op: Unary, x: &Var<T>) -> Result<Var<T>> {
        self.apply(UnaryOp(op), &[x])
    }

    /// eˣ.
    pub fn exp(&self, x: &Var<T>) -> Result<Var<T>> {
        self.unary(Unary::Exp, x)
    }
    /// ln x.
    pub fn log(&self, x: &Var<T>) -> Result<Var<T>> {
        self.unary(Unary::Log, x)
    }
    /// tanh x.
    pub fn tanh(&self, x: &Var<T>) -> Result<Var<T>> {
        self.unary(Unary::Tanh, x)
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self, x: &Var<T>) -> Result<Var<T>> {
        self.unary(Unary::Sigmoid, x)
    }
    /// ln(1 + eˣ).
    pub fn softplus(&self, x: &Var<T>) -> Result<Var<T>> {
        self.unary(Unary::Softplus, x)
    }
    /// Leaky ReLU with negative slope `slope`.
    pub fn leaky_relu(&self, x: &Var<T>, slope: f64) -> Result<Var<T>> {
        self.unary(Unary::LeakyRelu(slope), x)
    }
    /// x·sigmoid(x).
    pub fn silu(&self, x: &Var<T>) -> Result<Var<T>> {
        self.unary(Unary::Silu, x)
    }
    /// a·x.
    pub fn scale(&self, x: &Var<T>, a: f64) -> Result<Var<T>> {
        self.unary(Unary::Scale(a), x)
    }
    /// x + a.
    pub fn shift(&self, x: &Var<T>, a: f64) -> Result<Var<T>> {
        self.unary(Unary::Shift(a), x)
    }
    /// x².
    pub fn square(&self, x: &Var<T>) -> Result<Var<T>> {
        self.unary(Unary::Square, x)
    }

    /// a ∘ b with NumPy broadcasting.
    pub fn binary(&self, op: Binary, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        self.apply(BinaryOp(op), &[a, b])
    }
    /// a + b.
    pub fn add(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        self.binary(Binary::Add, a, b)
    }
    /// a − b.
    pub fn sub(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        self.binary(Binary::Sub, a, b)
    }
    /// a · b (elementwise; also applies fixed masks).
    pub fn mul(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        self.binary(Binary::Mul, a, b)
    }
    /// a / b.
    pub fn div(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        self.binary(Binary::Div, a, b)
    }

    /// Σ over `axes` (kept as size 1).
    pub fn sum(&self, x: &Var<T>, axes: &[usize]) -> Result<Var<T>> {
        self.apply(SumOp::new(axes, 1.0), &[x])
    }
    /// Mean over `axes` (kept as size 1).
    pub fn mean(&self, x: &Var<T>, axes: &[usize]) -> Result<Var<T>> {
        let n: usize = axes
            .iter()
            .map(|&a| x.shape().get(a).copied().unwrap_or(1))
            .product();
        self.apply(SumOp::new(axes, 1.0 / n.max(1) as f64), &[x])
    }
    /// Σ of every element (shape all ones).
    pub fn sum_all(&self, x: &Var<T>) -> Result<Var<T>> {
        self.sum(x, &(0..x.shape().len()).collect::<Vec<_>>())
    }
    /// Mean of every element.
    pub fn mean_all(&self, x: &Var<T>) -> Result<Var<T>> {
        self.mean(x, &(0..x.shape().len()).collect::<Vec<_>>())
    }

    /// Matrix product of 2-D values.
    pub fn matmul(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        self.matmul_t(a, b, false, false)
    }

    /// op(a)·op(b), op transposing where `ta`/`tb` is set.
    pub fn matmul_t(&self, a: &Var<T>, b: &Var<T>, ta: bool, tb: bool) -> Result<Var<T>> {
        self.apply(MatmulOp { ta, tb }, &[a, b])
    }

    /// `Linear`: x `[N, In]` · wᵀ (w `[Out, In]`) + b `[Out]`.
    pub fn linear(&self, x: &Var<T>, w: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        let xw = self.matmul_t(x, w, false, true)?;
        self.add(&xw, b)
    }

    /// Periodic (or causal) 2D convolution of x `[B, Ci, H, W]` with w `[Co, Ci, KH, KW]`,
    /// plus bias `[Co]` when given.
    pub fn conv2d(
        &self,
        x: &Var<T>,
        w: &Var<T>,
        bias: Option<&Var<T>>,
        mode: ConvMode,
    ) -> Result<Var<T>> {
        let y = self.apply(Conv2dOp(mode), &[x, w])?;
        match bias {
            None => Ok(y),
            Some(b) => {
                let b3 = self.reshape(b, &[b.shape()[0], 1, 1])?;
                self.add(&y, &b3)
            }
        }
    }

    /// A stack of convolutions of x `[B, C, H, W]`, each plus its bias and followed by its
    /// activation: `layers` holds (w `[Co, Ci, KH, KW]`, b `[Co]`) per layer, `acts` the
    /// activations ([`ConvStackOp`]: one op, in the CPU's lanes where that is faster).
    pub fn conv_stack(
        &self,
        x: &Var<T>,
        layers: &[(Var<T>, Var<T>)],
        acts: &[Unary],
        mode: ConvMode,
    ) -> Result<Var<T>> {
        let mut inputs = vec![x];
        for (w, b) in layers {
            inputs.extend([w, b]);
        }
        let op = ConvStackOp {
            mode,
            acts: acts.to_vec(),
            keep: self.records(&inputs)?,
        };
        let mut out = self.apply_multi(op, &inputs)?;
        Ok(out.swap_remove(0))
    }

    /// Periodic (or causal) 1D convolution of x `[B, Ci, N]` with w `[Co, Ci, K]`, plus bias `[Co]`.
    pub fn conv1d(
        &self,
        x: &Var<T>,
        w: &Var<T>,
        bias: Option<&Var<T>>,
        mode: ConvMode,
    ) -> Result<Var<T>> {
        let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
        if xs.len() != 3 || ws.len() != 3 {
            return Err(Error::InvalidInput(format!(
                "conv1d needs x [B, C, N] and w [Co, C, K]; got {xs:?} and {ws:?}"
            )));
        }
        let x4 = self.reshape(x, &[xs[0], xs[1], 1, xs[2]])?;
        let w4 = self.reshape(w, &[ws[0], ws[1], 1, ws[2]])?;
        let y = self.conv2d(&x4, &w4, None, mode)?;
        let y3 = self.reshape(&y, &[xs[0], ws[0], xs[2]])?;
        match bias {
            None => Ok(y3),
            Some(b) => {
                let b2 = self.reshape(b, &[b.shape()[0], 1])?;
                self.add(&y3, &b2)
            }
        }
    }

    /// The same values under another shape.
    pub fn reshape(&self, x: &Var<T>, shape: &[usize]) -> Result<Var<T>> {
        self.apply(ReshapeOp(shape.to_vec()), &[x])
    }

    /// Concatenation along `axis` (e.g. channels, axis 1).
    pub fn concat(&self, parts: &[Var<T>], axis: usize) -> Result<Var<T>> {
        let refs: Vec<&Var<T>> = parts.iter().collect();
        self.apply(ConcatOp(axis), &refs)
    }

    /// Splits along `axis` into pieces of the given sizes.
    pub fn split(&self, x: &Var<T>, axis: usize, sizes: &[usize]) -> Result<Vec<Var<T>>> {
        self.apply_multi(SplitOp::new(axis, sizes), &[x])
    }

    /// Group normalisation of x `[B, C, …]` in `groups` groups of channels (no affine part).
    pub fn group_norm(&self, x: &Var<T>, groups: usize) -> Result<Var<T>> {
        self.apply(GroupNorm(groups), &[x])
    }

    /// SiLU(γ_c · GroupNorm(x + s_bc) + β_c) of x `[B, C, …]` with a shift s `[B, C]` and the
    /// affine parameters γ, β `[C]`, in `groups` groups of channels: a U-Net block's tail as one
    /// op ([`GroupNormSilu`]).
    pub fn group_norm_silu(
        &self,
        x: &Var<T>,
        [s, gamma, beta]: [&Var<T>; 3],
        groups: usize,
    ) -> Result<Var<T>> {
        let mut out = self.apply_multi(GroupNormSilu(groups), &[x, s, gamma, beta])?;
        Ok(out.swap_remove(0))
    }

    /// 2×2 average pooling of x `[B, C, H, W]` (H, W even).
    pub fn avg_pool2(&self, x: &Var<T>) -> Result<Var<T>> {
        self.apply(AvgPool2, &[x])
    }

    /// Nearest 2× up-sampling of x `[B, C, H, W]`.
    pub fn upsample2(&self, x: &Var<T>) -> Result<Var<T>> {
        self.apply(Upsample2, &[x])
    }

    /// Gaussian Fourier features `[B, 2E]` of times t `[B]` with fixed frequencies w `[E]`.
    pub fn fourier_features(&self, t: &Var<T>, w: &Var<T>) -> Result<Var<T>> {
        self.apply(FourierFeatures, &[t, w])
    }

    /// B independent linear maps y_b = x_b W_b + c_b: x `[B, H]`, w `[B, H, N]`, c `[B, N]`
    /// (x and c may carry extra unit axes) → y `[B, N]`, without the `[B, H, N]` product.
    pub fn batched_linear(&self, x: &Var<T>, w: &Var<T>, c: &Var<T>) -> Result<Var<T>> {
        self.apply(BatchedLinear, &[x, w, c])
    }

    /// Runs the backward pass from a one-element `loss`, returns the parameters' gradients and
    /// clears the tape.
    pub fn backward(&self, loss: &Var<T>) -> Result<Grads<T>> {
        if loss.value.len() != 1 {
            return Err(Error::InvalidInput(format!(
                "backward needs a one-element loss, got shape {:?}",
                loss.shape()
            )));
        }
        let seed = self.ctx.from_f64(loss.shape(), &[1.0])?;
        self.backward_seeded(loss, seed, false)
    }

    /// The vector–Jacobian product seedᵀ·∂out/∂θ for every parameter θ: a backward pass from `out`
    /// with the given output gradient. With `retain`, the tape is kept for further passes (e.g. one
    /// per row of a Jacobian); otherwise it is cleared.
    pub fn backward_seeded(&self, out: &Var<T>, seed: Tensor<T>, retain: bool) -> Result<Grads<T>> {
        if seed.shape() != out.shape() {
            return Err(Error::InvalidInput(format!(
                "seed {:?} does not match the output {:?}",
                seed.shape(),
                out.shape()
            )));
        }
        let root = self.node_of(out)?;
        let result = match root {
            Some(r) => self.propagate(r, seed),
            None => Ok(BTreeMap::new()),
        };
        if !retain {
            self.clear();
        }
        Ok(Grads { map: result? })
    }

    /// Walks the nodes from `root` down, accumulating gradients per (node, output slot).
    fn propagate(&self, root: Origin, seed: Tensor<T>) -> Result<BTreeMap<String, Tensor<T>>> {
        let nodes = self.nodes.borrow();
        let mut grads: Vec<Vec<Option<Tensor<T>>>> = nodes
            .iter()
            .map(|n| match n {
                Node::Leaf(_) => vec![None],
                Node::Op { outputs, .. } => outputs.iter().map(|_| None).collect(),
            })
            .collect();
        grads[root.node][root.slot] = Some(seed);
        let mut map = BTreeMap::new();
        for i in (0..=root.node).rev() {
            if grads[i].iter().all(Option::is_none) {
                continue;
            }
            let g = std::mem::take(&mut grads[i]);
            match &nodes[i] {
                Node::Leaf(name) => {
                    if let Some(g) = g.into_iter().next().flatten() {
                        add_into(&mut map, name, g)?;
                    }
                }
                Node::Op {
                    op,
                    inputs,
                    outputs,
                } => {
                    for (input, gi) in inputs
                        .iter()
                        .zip(node_backward(&**op, inputs, outputs, &g)?)
                    {
                        if let (Some(o), Some(gi)) = (input.origin, gi) {
                            accumulate(&mut grads[o.node][o.slot], gi)?;
                        }
                    }
                }
            }
        }
        Ok(map)
    }
}

/// One op's backward pass, with the contract of [`Op::backward`] checked.
fn node_backward<T: Real>(
    op: &dyn Op<T>,
    inputs: &[Var<T>],
    outputs: &[Arc<Tensor<T>>],
    grads: &[Option<Tensor<T>>],
) -> Result<Vec<Option<Tensor<T>>>> {
    let ins: Vec<&Tensor<T>> = inputs.iter().map(|v| &*v.value).collect();
    let outs: Vec<&Tensor<T>> = outputs.iter().map(|t| &**t).collect();
    let gs: Vec<Option<&Tensor<T>>> = grads.iter().map(Option::as_ref).collect();
    let need: Vec<bool> = inputs.iter().map(Var::is_recorded).collect();
    let b = Backward {
        inputs: &ins,
        outputs: &outs,
        grads: &gs,
        need: &need,
    };
    let got = op.backward(&b)?;
    if got.len() != inputs.len() {
        return Err(Error::InvalidInput(format!(
            "op {}: backward gave {} gradients for {} inputs",
            op.name(),
            got.len(),
            inputs.len()
        )));
    }
    for (i, (g, x)) in got.iter().zip(&ins).enumerate() {
        if let Some(g) = g {
            if g.shape() != x.shape() {
                return Err(Error::InvalidInput(format!(
                    "op {}: gradient of input {i} has shape {:?}, the input {:?}",
                    op.name(),
                    g.shape(),
                    x.shape()
                )));
            }
        }
    }
    Ok(got)
}

fn add_into<T: Real>(
    map: &mut BTreeMap<String, Tensor<T>>,
    name: &str,
    g: Tensor<T>,
) -> Result<()> {
    let merged = match map.remove(name) {
        None => g,
        Some(prev) => kernels::binary(Binary::Add, &prev, &g, prev.shape())?,
    };
    map.insert(name.to_string(), merged);
    Ok(())
}

fn accumulate<T: Real>(slot: &mut Option<Tensor<T>>, g: Tensor<T>) -> Result<()> {
    *slot = Some(match slot.take() {
        None => g,
        Some(prev) => kernels::binary(Binary::Add, &prev, &g, prev.shape())?,
    });
    Ok(())
}
