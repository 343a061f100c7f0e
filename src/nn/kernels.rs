//! The tensor kernels of the autodiff tape, one function each, dispatching to the CPU twin
//! ([`super::cpu`]) or the CUDA kernel (`kernels/nn.cu`, launched by [`super::cuda`]).

use cudarc::driver::DeviceRepr;

use super::tensor::{mixed, Buffer, Real, Tensor};
use super::{cpu, cuda};
use crate::error::{Error, Result};

/// Most tensor dimensions a kernel handles.
pub const MAX_DIMS: usize = 6;

/// Elementwise functions, with their parameter where they have one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// eˣ.
    Exp,
    /// ln x.
    Log,
    /// tanh x.
    Tanh,
    /// 1/(1+e⁻ˣ).
    Sigmoid,
    /// ln(1+eˣ), computed stably.
    Softplus,
    /// x for x > 0, slope·x otherwise.
    LeakyRelu(f64),
    /// x·sigmoid(x).
    Silu,
    /// a·x.
    Scale(f64),
    /// x + a.
    Shift(f64),
    /// x².
    Square,
}

impl Unary {
    /// The function's name: its kernels are `unary_<name>_<T>` and `unary_grad_<name>_<T>`
    /// in `kernels/nn.cu`.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Softplus => "softplus",
            Unary::LeakyRelu(_) => "leaky_relu",
            Unary::Silu => "silu",
            Unary::Scale(_) => "scale",
            Unary::Shift(_) => "shift",
            Unary::Square => "square",
        }
    }

    /// The function's parameter (0 for those without one).
    pub fn parameter(self) -> f64 {
        match self {
            Unary::LeakyRelu(a) | Unary::Scale(a) | Unary::Shift(a) => a,
            _ => 0.0,
        }
    }
}

/// Elementwise binary operations with broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// a + b.
    Add,
    /// a − b.
    Sub,
    /// a · b.
    Mul,
    /// a / b.
    Div,
    /// a broadcast to the output shape (b ignored).
    First,
}

impl Binary {
    /// The operation's name: its kernels are `binary_<name>_<T>` and `binary_grad_<name>_<T>`.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
            Binary::First => "first",
        }
    }
}

/// How a convolution treats the lattice boundary and the raster order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvMode {
    /// Circular padding: the lattice is a torus.
    Periodic,
    /// Periodic, but a site only sees sources strictly before it in raster order (PixelCNN mask A).
    CausalExclusive,
    /// As `CausalExclusive`, also seeing itself (mask B).
    CausalInclusive,
    /// Zero padding: a tap reaching past the lattice's edge reads 0 (the open boundary of image
    /// networks, e.g. the U-Net of Wang, Aarts, Zhou, arXiv:2309.17082).
    Zero,
}

/// Broadcast geometry (`struct Bcast` in `nn.cu`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Bcast {
    ndim: i32,
    out: [i32; MAX_DIMS],
    sa: [i32; MAX_DIMS],
    sb: [i32; MAX_DIMS],
}
// SAFETY: plain repr(C) integers, laid out as in nn.cu.
unsafe impl DeviceRepr for Bcast {}

/// Reduction geometry (`struct Reduce`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReduceSpec {
    nkeep: i32,
    keep: [i32; MAX_DIMS],
    keep_stride: [i32; MAX_DIMS],
    nred: i32,
    red: [i32; MAX_DIMS],
    red_stride: [i32; MAX_DIMS],
    count: u32,
}
// SAFETY: plain repr(C) integers, laid out as in nn.cu.
unsafe impl DeviceRepr for ReduceSpec {}

/// Convolution geometry (`struct Conv`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Batch.
    pub b: i32,
    /// Input channels.
    pub ci: i32,
    /// Output channels.
    pub co: i32,
    /// Height (axis 2).
    pub h: i32,
    /// Width (axis 3).
    pub w: i32,
    /// Kernel height.
    pub kh: i32,
    /// Kernel width.
    pub kw: i32,
    /// 0 periodic, 1 causal exclusive, 2 causal inclusive, 3 zero padding.
    pub mode: i32,
}
// SAFETY: plain repr(C) integers, laid out as in nn.cu.
unsafe impl DeviceRepr for ConvSpec {}

/// Adam hyper-parameters of one step (`struct AdamHyper`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Factor on the gradient (clipping).
    pub gscale: f64,
    /// 1 − β₁ᵗ.
    pub bias1: f64,
    /// 1 − β₂ᵗ.
    pub bias2: f64,
    /// 1: AdamW (decoupled decay); 0: Adam with L2 in the gradient.
    pub decoupled: i32,
}
// SAFETY: plain repr(C) doubles and an int, laid out as in nn.cu.
unsafe impl DeviceRepr for AdamHyper {}

/// Refuses tensors too large for the kernels' 32-bit indices.
pub(crate) fn check_size(n: usize) -> Result<()> {
    if n >= 1 << 31 {
        return Err(Error::InvalidInput(format!(
            "tensor of {n} elements: kernels take fewer than 2^31"
        )));
    }
    Ok(())
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

/// NumPy broadcasting of two shapes (right-aligned).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let get = |s: &[usize], k: usize| {
        if k + s.len() >= n {
            s[k + s.len() - n]
        } else {
            1
        }
    };
    (0..n)
        .map(|k| match (get(a, k), get(b, k)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(Error::InvalidInput(format!(
                "shapes {a:?} and {b:?} do not broadcast"
            ))),
        })
        .collect()
}

/// Broadcast spec for inputs `a`, `b` onto `out`.
pub fn bcast_spec(a: &[usize], b: &[usize], out: &[usize]) -> Result<Bcast> {
    if out.len() > MAX_DIMS {
        return Err(Error::InvalidInput(format!(
            "{} dimensions; at most {MAX_DIMS}",
            out.len()
        )));
    }
    let mut g = Bcast {
        ndim: out.len() as i32,
        ..Default::default()
    };
    let n = out.len();
    for (which, s) in [a, b].into_iter().enumerate() {
        let st = strides(s);
        for k in 0..n {
            let stride = if k + s.len() >= n && s[k + s.len() - n] == out[k] {
                st[k + s.len() - n] as i32
            } else {
                0
            };
            if which == 0 {
                g.sa[k] = stride;
            } else {
                g.sb[k] = stride;
            }
        }
    }
    for (k, &d) in out.iter().enumerate() {
        g.out[k] = d as i32;
    }
    Ok(coalesce(g))
}

/// The same broadcast over fewer dimensions: extents of 1 vanish, and a dimension merges into
/// the next inner one where both inputs step through the pair as through one (outer stride =
/// inner stride × inner extent; 0 = 0 for broadcast ones), so rows are as long as possible.
fn coalesce(g: Bcast) -> Bcast {
    let n = g.ndim as usize;
    if g.out[..n].contains(&0) {
        return g;
    }
    let mut dims: Vec<(i32, i32, i32)> = Vec::with_capacity(n);
    for k in (0..n).filter(|&k| g.out[k] != 1) {
        let (d, a, b) = (g.out[k], g.sa[k], g.sb[k]);
        match dims.last_mut() {
            Some(last) if last.1 == a * d && last.2 == b * d => *last = (last.0 * d, a, b),
            _ => dims.push((d, a, b)),
        }
    }
    let mut c = Bcast {
        ndim: dims.len() as i32,
        ..Default::default()
    };
    for (k, (d, a, b)) in dims.into_iter().enumerate() {
        (c.out[k], c.sa[k], c.sb[k]) = (d, a, b);
    }
    c
}

/// Spec summing `src` onto `target` (same rank after left-padding `target` with 1s; each target
/// dim equals the source's or is 1).
pub fn reduce_spec(src: &[usize], target: &[usize]) -> Result<ReduceSpec> {
    if target.len() > src.len() || src.len() > MAX_DIMS {
        return Err(Error::InvalidInput(format!(
            "cannot sum {src:?} onto {target:?}"
        )));
    }
    let pad = src.len() - target.len();
    let st = strides(src);
    let mut r = ReduceSpec {
        count: 1,
        ..Default::default()
    };
    for k in 0..src.len() {
        let t = if k >= pad { target[k - pad] } else { 1 };
        if t == src[k] {
            r.keep[r.nkeep as usize] = src[k] as i32;
            r.keep_stride[r.nkeep as usize] = st[k] as i32;
            r.nkeep += 1;
        } else if t == 1 {
            r.red[r.nred as usize] = src[k] as i32;
            r.red_stride[r.nred as usize] = st[k] as i32;
            r.nred += 1;
            r.count *= src[k] as u32;
        } else {
            return Err(Error::InvalidInput(format!(
                "cannot sum {src:?} onto {target:?}"
            )));
        }
    }
    Ok(r)
}

/// Refuses a buffer shorter than `need` values (`what` names it in the message).
pub fn check_len(what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(Error::InvalidInput(format!(
            "{what}: {have} values where the operation needs {need}"
        )));
    }
    Ok(())
}

impl ConvSpec {
    /// Element counts of x `[B, Ci, H, W]`, w `[Co, Ci, KH, KW]` and y `[B, Co, H, W]`, after
    /// checking that every size is positive and the kernel fits the lattice.
    pub fn sizes(&self) -> Result<[usize; 3]> {
        let dims = [self.b, self.ci, self.co, self.h, self.w, self.kh, self.kw];
        if dims.iter().any(|&d| d <= 0) || self.kh > self.h || self.kw > self.w {
            return Err(Error::InvalidInput(format!("invalid convolution {self:?}")));
        }
        let u = |v: i32| v as usize;
        let plane = u(self.h) * u(self.w);
        Ok([
            u(self.b) * u(self.ci) * plane,
            u(self.co) * u(self.ci) * u(self.kh) * u(self.kw),
            u(self.b) * u(self.co) * plane,
        ])
    }
}

impl Bcast {
    /// Values of the output, and how many values of a and b it reads (the largest offset + 1).
    pub fn extents(&self) -> (usize, usize, usize) {
        let n = self.ndim.clamp(0, MAX_DIMS as i32) as usize;
        let out: usize = self.out[..n].iter().map(|&d| d.max(0) as usize).product();
        let reach = |st: &[i32; MAX_DIMS]| {
            if out == 0 {
                return 0;
            }
            1 + (0..n)
                .map(|k| (self.out[k].max(1) as usize - 1) * st[k].max(0) as usize)
                .sum::<usize>()
        };
        (out, reach(&self.sa), reach(&self.sb))
    }

    /// Length of the output's rows (its last dimension) and the strides of a and b along it.
    pub fn row(&self) -> (usize, usize, usize) {
        let k = (self.ndim as usize).saturating_sub(1);
        if self.ndim == 0 {
            return (1, 0, 0);
        }
        (
            self.out[k] as usize,
            self.sa[k] as usize,
            self.sb[k] as usize,
        )
    }

    /// Offsets into a and b of output element `i` (the CPU twin of `bcast_offsets`).
    #[inline]
    pub fn offsets(&self, mut i: usize) -> (usize, usize) {
        let (mut a, mut b) = (0usize, 0usize);
        for k in (0..self.ndim as usize).rev() {
            let c = i % self.out[k] as usize;
            i /= self.out[k] as usize;
            a += c * self.sa[k] as usize;
            b += c * self.sb[k] as usize;
        }
        (a, b)
    }
}

impl ReduceSpec {
    /// How many source values the reduction reads (the largest offset + 1).
    pub fn source_extent(&self) -> usize {
        let span = |d: &[i32], st: &[i32]| -> usize {
            d.iter()
                .zip(st)
                .map(|(&d, &s)| (d.max(1) as usize - 1) * s.max(0) as usize)
                .sum()
        };
        let (nk, nr) = (
            self.nkeep.clamp(0, MAX_DIMS as i32) as usize,
            self.nred.clamp(0, MAX_DIMS as i32) as usize,
        );
        1 + span(&self.keep[..nk], &self.keep_stride[..nk])
            + span(&self.red[..nr], &self.red_stride[..nr])
    }

    /// Number of target elements.
    pub fn targets(&self) -> usize {
        self.keep[..self.nkeep as usize]
            .iter()
            .map(|&d| d as usize)
            .product()
    }
    /// Offset of the first source element of target `t`.
    pub fn base(&self, mut t: usize) -> usize {
        let mut off = 0;
        for k in (0..self.nkeep as usize).rev() {
            off += (t % self.keep[k] as usize) * self.keep_stride[k] as usize;
            t /= self.keep[k] as usize;
        }
        off
    }
    /// Calls `f(offset)` for every reduced position of a target, in order (an odometer, no division).
    #[inline]
    pub fn for_each_reduced(&self, base: usize, mut f: impl FnMut(usize)) {
        let nred = self.nred as usize;
        if nred == 0 {
            f(base);
            return;
        }
        let (dims, strides) = (&self.red[..nred], &self.red_stride[..nred]);
        let (last, last_stride) = (dims[nred - 1] as usize, strides[nred - 1] as usize);
        let mut idx = [0usize; MAX_DIMS];
        let mut off = base;
        loop {
            for t in 0..last {
                f(off + t * last_stride);
            }
            // Carry into the outer reduced dims.
            let mut k = nred - 1;
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                idx[k] += 1;
                off += strides[k] as usize;
                if idx[k] < dims[k] as usize {
                    break;
                }
                off -= idx[k] * strides[k] as usize;
                idx[k] = 0;
            }
        }
    }
}

/// y = f(x).
pub fn unary<T: Real>(op: Unary, x: &Tensor<T>) -> Result<Tensor<T>> {
    check_size(x.len())?;
    let mut y = x.ctx().empty(x.shape())?;
    match (x.buf(), y.buf_mut()) {
        (Buffer::Cpu(xv), Buffer::Cpu(yv)) => {
            cpu::unary(x.ctx().cpu().ok_or_else(mixed)?, op, xv, yv)?
        }
        (Buffer::Cuda(xs), Buffer::Cuda(ys)) => cuda::unary(x.ctx(), op, xs, ys, x.len())?,
        _ => return Err(mixed()),
    }
    Ok(y)
}

/// dx = f′(x)·dy, given y = f(x).
pub fn unary_grad<T: Real>(
    op: Unary,
    x: &Tensor<T>,
    y: &Tensor<T>,
    dy: &Tensor<T>,
) -> Result<Tensor<T>> {
    let mut dx = x.ctx().empty(x.shape())?;
    match (x.buf(), y.buf(), dy.buf(), dx.buf_mut()) {
        (Buffer::Cpu(a), Buffer::Cpu(b), Buffer::Cpu(c), Buffer::Cpu(d)) => {
            cpu::unary_grad(x.ctx().cpu().ok_or_else(mixed)?, op, a, b, c, d)?
        }
        (Buffer::Cuda(a), Buffer::Cuda(b), Buffer::Cuda(c), Buffer::Cuda(d)) => {
            cuda::unary_grad(x.ctx(), op, a, b, c, d, x.len())?
        }
        _ => return Err(mixed()),
    }
    Ok(dx)
}

/// c = a ∘ b with broadcasting; `out` is the broadcast shape.
pub fn binary<T: Real>(
    op: Binary,
    a: &Tensor<T>,
    b: &Tensor<T>,
    out: &[usize],
) -> Result<Tensor<T>> {
    let g = bcast_spec(a.shape(), b.shape(), out)?;
    let mut c = a.ctx().empty(out)?;
    check_size(c.len())?;
    match (a.buf(), b.buf(), c.buf_mut()) {
        (Buffer::Cpu(x), Buffer::Cpu(y), Buffer::Cpu(z)) => {
            cpu::binary(a.ctx().cpu().ok_or_else(mixed)?, op, x, y, z, &g)?
        }
        (Buffer::Cuda(x), Buffer::Cuda(y), Buffer::Cuda(z)) => {
            cuda::binary(a.ctx(), op, x, y, z, &g, out.iter().product())?
        }
        _ => return Err(mixed()),
    }
    Ok(c)
}

/// ∂(a ∘ b)/∂a·dc (`wrt` = 0) or ∂/∂b (`wrt` = 1), on the output's shape.
pub fn binary_grad<T: Real>(
    op: Binary,
    a: &Tensor<T>,
    b: &Tensor<T>,
    dc: &Tensor<T>,
    wrt: i32,
) -> Result<Tensor<T>> {
    let g = bcast_spec(a.shape(), b.shape(), dc.shape())?;
    let mut o = a.ctx().empty(dc.shape())?;
    match (a.buf(), b.buf(), dc.buf(), o.buf_mut()) {
        (Buffer::Cpu(x), Buffer::Cpu(y), Buffer::Cpu(d), Buffer::Cpu(z)) => {
            cpu::binary_grad(a.ctx().cpu().ok_or_else(mixed)?, op, x, y, d, z, &g, wrt)?
        }
        (Buffer::Cuda(x), Buffer::Cuda(y), Buffer::Cuda(d), Buffer::Cuda(z)) => {
            cuda::binary_grad(a.ctx(), op, x, y, d, z, &g, wrt, dc.len())?
        }
        _ => return Err(mixed()),
    }
    Ok(o)
}

/// Σ of `x` onto `target` (dims equal or 1), times `scale`; each target summed in a fixed order.
pub fn reduce_to<T: Real>(x: &Tensor<T>, target: &[usize], scale: f64) -> Result<Tensor<T>> {
    let r = reduce_spec(x.shape(), target)?;
    let mut y = x.ctx().empty(target)?;
    match (x.buf(), y.buf_mut()) {
        (Buffer::Cpu(a), Buffer::Cpu(b)) => cpu::reduce_to(
            x.ctx().cpu().ok_or_else(mixed)?,
            a,
            b,
            &r,
            T::from_f64(scale),
        )?,
        (Buffer::Cuda(a), Buffer::Cuda(b)) => {
            cuda::reduce_to(x.ctx(), a, b, &r, T::from_f64(scale))?
        }
        _ => return Err(mixed()),
    }
    Ok(y)
}

/// C = op(A)·op(B) for 2-D tensors; `ta`/`tb` transpose.
pub fn matmul<T: Real>(a: &Tensor<T>, b: &Tensor<T>, ta: bool, tb: bool) -> Result<Tensor<T>> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() != 2 || sb.len() != 2 {
        return Err(Error::InvalidInput(format!(
            "matmul takes 2-D tensors, got {sa:?} and {sb:?}"
        )));
    }
    let (m, k) = if ta { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
    let (k2, n) = if tb { (sb[1], sb[0]) } else { (sb[0], sb[1]) };
    if k != k2 {
        return Err(Error::InvalidInput(format!(
            "matmul: inner sizes differ ({sa:?}, {sb:?})"
        )));
    }
    let mut c = a.ctx().empty(&[m, n])?;
    match (a.buf(), b.buf(), c.buf_mut()) {
        (Buffer::Cpu(x), Buffer::Cpu(y), Buffer::Cpu(z)) => {
            cpu::matmul(a.ctx().cpu().ok_or_else(mixed)?, x, y, z, m, n, k, ta, tb)?
        }
        (Buffer::Cuda(x), Buffer::Cuda(y), Buffer::Cuda(z)) => {
            cuda::matmul(a.ctx(), x, y, z, m, n, k, ta, tb)?
        }
        _ => return Err(mixed()),
    }
    Ok(c)
}

/// Convolution spec from x `[B, Ci, H, W]` and w `[Co, Ci, KH, KW]`.
pub fn conv_spec(x: &[usize], w: &[usize], mode: ConvMode) -> Result<ConvSpec> {
    if x.len() != 4 || w.len() != 4 || x[1] != w[1] {
        return Err(Error::InvalidInput(format!(
            "conv2d needs x [B, C, H, W] and w [Co, C, KH, KW]; got {x:?} and {w:?}"
        )));
    }
    if w[2] > x[2] || w[3] > x[3] {
        return Err(Error::InvalidInput(format!(
            "kernel {:?} larger than the lattice {:?}",
            &w[2..],
            &x[2..]
        )));
    }
    let mode = match mode {
        ConvMode::Periodic => 0,
        ConvMode::CausalExclusive => 1,
        ConvMode::CausalInclusive => 2,
        ConvMode::Zero => 3,
    };
    let i = |v: usize| v as i32;
    Ok(ConvSpec {
        b: i(x[0]),
        ci: i(x[1]),
        co: i(w[0]),
        h: i(x[2]),
        w: i(x[3]),
        kh: i(w[2]),
        kw: i(w[3]),
        mode,
    })
}

/// y = conv(x, w), `[B, Co, H, W]`.
pub fn conv2d<T: Real>(x: &Tensor<T>, w: &Tensor<T>, mode: ConvMode) -> Result<Tensor<T>> {
    let c = conv_spec(x.shape(), w.shape(), mode)?;
    let mut y = x
        .ctx()
        .empty(&[x.shape()[0], w.shape()[0], x.shape()[2], x.shape()[3]])?;
    check_size(y.len().max(x.len()))?;
    match (x.buf(), w.buf(), y.buf_mut()) {
        (Buffer::Cpu(a), Buffer::Cpu(b), Buffer::Cpu(o)) => {
            cpu::conv2d(x.ctx().cpu().ok_or_else(mixed)?, a, b, o, &c)?
        }
        (Buffer::Cuda(a), Buffer::Cuda(b), Buffer::Cuda(o)) => cuda::conv2d(x.ctx(), a, b, o, &c)?,
        _ => return Err(mixed()),
    }
    Ok(y)
}

/// ∂L/∂x of a convolution from ∂L/∂y.
pub fn conv2d_grad_input<T: Real>(
    dy: &Tensor<T>,
    w: &Tensor<T>,
    x_shape: &[usize],
    mode: ConvMode,
) -> Result<Tensor<T>> {
    let c = conv_spec(x_shape, w.shape(), mode)?;
    let mut dx = dy.ctx().empty(x_shape)?;
    match (dy.buf(), w.buf(), dx.buf_mut()) {
        (Buffer::Cpu(a), Buffer::Cpu(b), Buffer::Cpu(o)) => {
            cpu::conv2d_grad_input(dy.ctx().cpu().ok_or_else(mixed)?, a, b, o, &c)?
        }
        (Buffer::Cuda(a), Buffer::Cuda(b), Buffer::Cuda(o)) => {
            cuda::conv2d_grad_input(dy.ctx(), a, b, o, &c)?
        }
        _ => return Err(mixed()),
    }
    Ok(dx)
}

/// ∂L/∂w of a convolution from ∂L/∂y and x.
pub fn conv2d_grad_weight<T: Real>(
    dy: &Tensor<T>,
    x: &Tensor<T>,
    w_shape: &[usize],
    mode: ConvMode,
) -> Result<Tensor<T>> {
    let c = conv_spec(x.shape(), w_shape, mode)?;
    let mut dw = dy.ctx().empty(w_shape)?;
    match (dy.buf(), x.buf(), dw.buf_mut()) {
        (Buffer::Cpu(a), Buffer::Cpu(b), Buffer::Cpu(o)) => {
            cpu::conv2d_grad_weight(dy.ctx().cpu().ok_or_else(mixed)?, a, b, o, &c)?
        }
        (Buffer::Cuda(a), Buffer::Cuda(b), Buffer::Cuda(o)) => {
            cuda::conv2d_grad_weight(dy.ctx(), a, b, o, &c)?
        }
        _ => return Err(mixed()),
    }
    Ok(dw)
}

/// Copies `len`-long slabs: `dst[o·ds + doff + k] = src[o·ss + soff + k]` for o < outer (concat/split).
#[allow(clippy::too_many_arguments)]
pub fn slab_copy<T: Real>(
    src: &Tensor<T>,
    dst: &mut Tensor<T>,
    outer: usize,
    len: usize,
    ss: usize,
    soff: usize,
    ds: usize,
    doff: usize,
) -> Result<()> {
    let ctx = src.ctx().clone();
    match (src.buf(), dst.buf_mut()) {
        (Buffer::Cpu(a), Buffer::Cpu(b)) => cpu::slab_copy(a, b, [outer, len, ss, soff, ds, doff])?,
        (Buffer::Cuda(a), Buffer::Cuda(b)) => {
            cuda::slab_copy(&ctx, a, b, [outer, len, ss, soff, ds, doff])?
        }
        _ => return Err(mixed()),
    }
    Ok(())
}

/// One fused Adam/AdamW update of a parameter and its moments.
pub fn adam<T: Real>(
    p: &mut Tensor<T>,
    g: &Tensor<T>,
    m: &mut Tensor<T>,
    v: &mut Tensor<T>,
    h: &AdamHyper,
) -> Result<()> {
    let ctx = g.ctx().clone();
    let n = g.len();
    match (p.buf_mut(), g.buf(), m.buf_mut(), v.buf_mut()) {
        (Buffer::Cpu(p), Buffer::Cpu(g), Buffer::Cpu(m), Buffer::Cpu(v)) => {
            cpu::adam(ctx.cpu().ok_or_else(mixed)?, [p, m, v], g, h)?
        }
        (Buffer::Cuda(p), Buffer::Cuda(g), Buffer::Cuda(m), Buffer::Cuda(v)) => {
            cuda::adam(&ctx, p, g, m, v, h, n)?
        }
        _ => return Err(mixed()),
    }
    Ok(())
}
