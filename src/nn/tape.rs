//! The reverse-mode autodiff tape (a Wengert list).
//!
//! Each operation computes its value at once; when recording, it also appends a node holding
//! what its backward pass needs. [`Tape::backward`] walks the nodes once in reverse, accumulates
//! gradients, returns those of the named parameters, and clears the tape (freeing the
//! intermediates). In no-grad mode nothing is recorded: values are freed as soon as the last
//! [`Var`] holding them is dropped.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use super::kernels::{self, broadcast_shape, Binary, ConvMode, Unary};
use super::params::ParamStore;
use super::tensor::{Ctx, Real, Tensor};
use crate::error::{Error, Result};

/// A value on the tape: a tensor and, when recorded, the node that produced it.
pub struct Var<T: Real> {
    value: Rc<Tensor<T>>,
    node: Option<usize>,
}

impl<T: Real> Clone for Var<T> {
    fn clone(&self) -> Self {
        Var {
            value: self.value.clone(),
            node: self.node,
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
}

enum Op<T: Real> {
    Leaf(String),
    Unary {
        op: Unary,
        x: Var<T>,
        y: Rc<Tensor<T>>,
    },
    Binary {
        op: Binary,
        a: Var<T>,
        b: Var<T>,
    },
    Sum {
        x: Var<T>,
        scale: f64,
    },
    Matmul {
        a: Var<T>,
        b: Var<T>,
        ta: bool,
        tb: bool,
    },
    Conv {
        x: Var<T>,
        w: Var<T>,
        mode: ConvMode,
    },
    Reshape {
        x: Var<T>,
    },
    Concat {
        parts: Vec<Var<T>>,
        axis: usize,
    },
    Slice {
        x: Var<T>,
        axis: usize,
        offset: usize,
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
    nodes: RefCell<Vec<Op<T>>>,
    recording: Cell<bool>,
}

/// (outer, inner block) sizes of a tensor split at `axis`: shape[..axis] and shape[axis..].
fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis..].iter().product(),
    )
}

impl<T: Real> Tape<T> {
    /// An empty, recording tape on `ctx`.
    pub fn new(ctx: &Ctx<T>) -> Self {
        Tape {
            ctx: ctx.clone(),
            nodes: RefCell::new(Vec::new()),
            recording: Cell::new(true),
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

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&self, op: Op<T>, value: Tensor<T>, inputs_need_grad: bool) -> Var<T> {
        self.record_rc(op, Rc::new(value), inputs_need_grad)
    }

    fn record_rc(&self, op: Op<T>, value: Rc<Tensor<T>>, inputs_need_grad: bool) -> Var<T> {
        if self.recording.get() && inputs_need_grad {
            let mut nodes = self.nodes.borrow_mut();
            nodes.push(op);
            Var {
                value,
                node: Some(nodes.len() - 1),
            }
        } else {
            Var { value, node: None }
        }
    }

    /// A constant (no gradient flows into it).
    pub fn constant(&self, t: Tensor<T>) -> Var<T> {
        Var {
            value: Rc::new(t),
            node: None,
        }
    }

    /// A constant shared with the caller (no copy): for data every step reuses, such as inputs
    /// and kernel matrices.
    pub fn constant_shared(&self, t: &Rc<Tensor<T>>) -> Var<T> {
        Var {
            value: t.clone(),
            node: None,
        }
    }

    /// A trainable parameter of `store`.
    pub fn param(&self, store: &ParamStore<T>, name: &str) -> Result<Var<T>> {
        let value = store.shared(name)?;
        if !self.recording.get() {
            return Ok(Var { value, node: None });
        }
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Op::Leaf(name.to_string()));
        Ok(Var {
            value,
            node: Some(nodes.len() - 1),
        })
    }

    /// y = f(x) elementwise.
    pub fn unary(&self, op: Unary, x: &Var<T>) -> Result<Var<T>> {
        let y = Rc::new(kernels::unary(op, &x.value)?);
        Ok(self.record_rc(
            Op::Unary {
                op,
                x: x.clone(),
                y: y.clone(),
            },
            y,
            x.node.is_some(),
        ))
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
        let out = broadcast_shape(a.shape(), b.shape())?;
        let v = kernels::binary(op, &a.value, &b.value, &out)?;
        Ok(self.record(
            Op::Binary {
                op,
                a: a.clone(),
                b: b.clone(),
            },
            v,
            a.node.is_some() || b.node.is_some(),
        ))
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

    /// Sum over `axes`, keeping them as size-1 dimensions, times `scale`.
    fn reduce(&self, x: &Var<T>, axes: &[usize], scale: f64) -> Result<Var<T>> {
        let mut target = x.shape().to_vec();
        for &a in axes {
            *target.get_mut(a).ok_or_else(|| {
                Error::InvalidInput(format!("axis {a} out of range for {:?}", x.shape()))
            })? = 1;
        }
        let v = kernels::reduce_to(&x.value, &target, scale)?;
        Ok(self.record(
            Op::Sum {
                x: x.clone(),
                scale,
            },
            v,
            x.node.is_some(),
        ))
    }
    /// Σ over `axes` (kept as size 1).
    pub fn sum(&self, x: &Var<T>, axes: &[usize]) -> Result<Var<T>> {
        self.reduce(x, axes, 1.0)
    }
    /// Mean over `axes` (kept as size 1).
    pub fn mean(&self, x: &Var<T>, axes: &[usize]) -> Result<Var<T>> {
        let n: usize = axes
            .iter()
            .map(|&a| x.shape().get(a).copied().unwrap_or(1))
            .product();
        self.reduce(x, axes, 1.0 / n as f64)
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
        let v = kernels::matmul(&a.value, &b.value, ta, tb)?;
        let need = a.node.is_some() || b.node.is_some();
        Ok(self.record(
            Op::Matmul {
                a: a.clone(),
                b: b.clone(),
                ta,
                tb,
            },
            v,
            need,
        ))
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
        let v = kernels::conv2d(&x.value, &w.value, mode)?;
        let y = self.record(
            Op::Conv {
                x: x.clone(),
                w: w.clone(),
                mode,
            },
            v,
            x.node.is_some() || w.node.is_some(),
        );
        match bias {
            None => Ok(y),
            Some(b) => {
                let b3 = self.reshape(b, &[b.shape()[0], 1, 1])?;
                self.add(&y, &b3)
            }
        }
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
        let v = x.value.reshape(shape)?;
        Ok(self.record(Op::Reshape { x: x.clone() }, v, x.node.is_some()))
    }

    /// Concatenation along `axis` (e.g. channels, axis 1).
    pub fn concat(&self, parts: &[Var<T>], axis: usize) -> Result<Var<T>> {
        let first = parts
            .first()
            .ok_or_else(|| Error::InvalidInput("concat of nothing".into()))?
            .shape()
            .to_vec();
        let mut out = first.clone();
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
        let mut v = self.ctx.empty(&out)?;
        let (outer, total) = outer_inner(&out, axis);
        let mut off = 0;
        for p in parts {
            let (_, len) = outer_inner(p.shape(), axis);
            kernels::slab_copy(&p.value, &mut v, outer, len, len, 0, total, off)?;
            off += len;
        }
        let need = parts.iter().any(|p| p.node.is_some());
        Ok(self.record(
            Op::Concat {
                parts: parts.to_vec(),
                axis,
            },
            v,
            need,
        ))
    }

    /// Splits along `axis` into pieces of the given sizes.
    pub fn split(&self, x: &Var<T>, axis: usize, sizes: &[usize]) -> Result<Vec<Var<T>>> {
        if sizes.iter().sum::<usize>() != x.shape()[axis] {
            return Err(Error::InvalidInput(format!(
                "split sizes {sizes:?} do not add up to {:?}[{axis}]",
                x.shape()
            )));
        }
        let (outer, total) = outer_inner(x.shape(), axis);
        let per = total / x.shape()[axis];
        let mut start = 0;
        sizes
            .iter()
            .map(|&n| {
                let mut shape = x.shape().to_vec();
                shape[axis] = n;
                let mut v = self.ctx.empty(&shape)?;
                kernels::slab_copy(
                    &x.value,
                    &mut v,
                    outer,
                    n * per,
                    total,
                    start * per,
                    n * per,
                    0,
                )?;
                let var = self.record(
                    Op::Slice {
                        x: x.clone(),
                        axis,
                        offset: start * per,
                    },
                    v,
                    x.node.is_some(),
                );
                start += n;
                Ok(var)
            })
            .collect()
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
        let mut map = BTreeMap::new();
        if let Some(root) = out.node {
            let nodes = self.nodes.borrow();
            let mut grads: Vec<Option<Tensor<T>>> = (0..nodes.len()).map(|_| None).collect();
            grads[root] = Some(seed);
            for i in (0..=root).rev() {
                let Some(g) = grads[i].take() else { continue };
                for (target, gi) in self.input_grads(&nodes[i], &g)? {
                    accumulate(&mut grads, target, gi)?;
                }
                if let Op::Leaf(name) = &nodes[i] {
                    add_into(&mut map, name, g)?;
                }
            }
        }
        if !retain {
            self.nodes.borrow_mut().clear();
        }
        Ok(Grads { map })
    }

    /// Gradients of one node's inputs, as (input node, gradient) pairs.
    fn input_grads(&self, op: &Op<T>, g: &Tensor<T>) -> Result<Vec<(usize, Tensor<T>)>> {
        let mut v = Vec::new();
        match op {
            Op::Leaf(_) => {}
            Op::Unary { op, x, y } => {
                if let Some(n) = x.node {
                    v.push((n, kernels::unary_grad(*op, &x.value, y, g)?));
                }
            }
            Op::Binary { op, a, b } => {
                for (wrt, inp) in [(0, a), (1, b)] {
                    if let Some(n) = inp.node {
                        let full = kernels::binary_grad(*op, &a.value, &b.value, g, wrt)?;
                        let gi = if full.shape() == inp.shape() {
                            full
                        } else {
                            sum_onto(&full, inp.shape())?
                        };
                        v.push((n, gi));
                    }
                }
            }
            Op::Sum { x, scale } => {
                if let Some(n) = x.node {
                    let b = kernels::binary(Binary::First, g, g, x.shape())?;
                    v.push((
                        n,
                        if *scale == 1.0 {
                            b
                        } else {
                            kernels::unary(Unary::Scale(*scale), &b)?
                        },
                    ));
                }
            }
            // C = op(A)·op(B): dA = dC·op(B)ᵀ, or op(B)·dCᵀ when A is transposed; likewise dB.
            Op::Matmul { a, b, ta, tb } => {
                if let Some(n) = a.node {
                    let ga = if *ta {
                        kernels::matmul(&b.value, g, *tb, true)?
                    } else {
                        kernels::matmul(g, &b.value, false, !*tb)?
                    };
                    v.push((n, ga));
                }
                if let Some(n) = b.node {
                    let gb = if *tb {
                        kernels::matmul(g, &a.value, true, *ta)?
                    } else {
                        kernels::matmul(&a.value, g, !*ta, false)?
                    };
                    v.push((n, gb));
                }
            }
            Op::Conv { x, w, mode } => {
                if let Some(n) = x.node {
                    v.push((
                        n,
                        kernels::conv2d_grad_input(g, &w.value, x.shape(), *mode)?,
                    ));
                }
                if let Some(n) = w.node {
                    v.push((
                        n,
                        kernels::conv2d_grad_weight(g, &x.value, w.shape(), *mode)?,
                    ));
                }
            }
            Op::Reshape { x } => {
                if let Some(n) = x.node {
                    v.push((n, g.reshape(x.shape())?));
                }
            }
            Op::Concat { parts, axis } => {
                let (outer, total) = outer_inner(g.shape(), *axis);
                let mut off = 0;
                for p in parts {
                    let (_, len) = outer_inner(p.shape(), *axis);
                    if let Some(n) = p.node {
                        let mut gp = self.ctx.empty(p.shape())?;
                        kernels::slab_copy(g, &mut gp, outer, len, total, off, len, 0)?;
                        v.push((n, gp));
                    }
                    off += len;
                }
            }
            Op::Slice { x, axis, offset } => {
                if let Some(n) = x.node {
                    let (outer, total) = outer_inner(x.shape(), *axis);
                    let (_, len) = outer_inner(g.shape(), *axis);
                    let mut gx = self.ctx.zeros(x.shape())?;
                    kernels::slab_copy(g, &mut gx, outer, len, len, 0, total, *offset)?;
                    v.push((n, gx));
                }
            }
        }
        Ok(v)
    }
}

fn sum_onto<T: Real>(full: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
    let mut r = kernels::reduce_to(full, &left_pad(shape, full.shape().len()), 1.0)?;
    r.set_shape(shape)?;
    Ok(r)
}

fn left_pad(shape: &[usize], n: usize) -> Vec<usize> {
    let mut v = vec![1; n - shape.len()];
    v.extend_from_slice(shape);
    v
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

fn accumulate<T: Real>(grads: &mut [Option<Tensor<T>>], target: usize, g: Tensor<T>) -> Result<()> {
    grads[target] = Some(match grads[target].take() {
        None => g,
        Some(prev) => kernels::binary(Binary::Add, &prev, &g, prev.shape())?,
    });
    Ok(())
}
