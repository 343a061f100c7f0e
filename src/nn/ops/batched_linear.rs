//! B independent linear maps in one op: y_b = x_b W_b + c_b for x `[B, H]`, W `[B, H, N]` and
//! c `[B, N]` (one small network per correlator or bootstrap sample, all trained at once). As the
//! chain mul → sum → add it writes the `[B, H, N]` product forward and two more tensors of that
//! size backward; fused, the forward reads W once and the backward writes ∂L/∂W and reads W once.
//! Kernels `batched_linear`, `batched_linear_grad_w` and `batched_linear_grad_x` in
//! `kernels/nn.cu`; the CPU twins are the functions here. Products are formed in T and summed in
//! f64 in ascending index order, as the chain's reductions do, so on the CPU every output and
//! gradient equals the chain's bit for bit.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::super::cuda::func;
use super::super::op::{Backward, Op};
use super::super::tensor::{mixed, Buffer, Ctx, Real, Tensor};
use crate::device::geometry::{elementwise, one_block_each};
use crate::device::CpuDevice;
use crate::error::{Error, Result};

/// The extents of `batch` linear maps from `inputs` to `outputs` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchedLinearShape {
    /// Maps B.
    pub batch: usize,
    /// Inputs per map H.
    pub inputs: usize,
    /// Outputs per map N.
    pub outputs: usize,
}

impl BatchedLinearShape {
    /// The extents of x, W `[B, H, N]` and c: refuses a W that is not 3-D, an x or c whose
    /// leading axis is not B or whose size is not B·H or B·N, empty maps, and sizes beyond the
    /// kernels' 32-bit indices.
    pub fn of(x: &[usize], w: &[usize], c: &[usize]) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "batched linear of x {x:?}, w {w:?}, c {c:?}: {why}"
            ))
        };
        let [batch, inputs, outputs] = *w else {
            return Err(bad("w must be [B, H, N]"));
        };
        let total = batch
            .checked_mul(inputs)
            .and_then(|v| v.checked_mul(outputs));
        if batch == 0 || inputs == 0 || outputs == 0 || total.is_none_or(|t| t >= 1 << 31) {
            return Err(bad("empty, or 2^31 weights or more"));
        }
        let size = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if x.first() != Some(&batch) || c.first() != Some(&batch) {
            return Err(bad("x and c need the maps B as their first axis"));
        }
        if size(x) != Some(batch * inputs) || size(c) != Some(batch * outputs) {
            return Err(bad("x needs B·H values and c B·N"));
        }
        Ok(BatchedLinearShape {
            batch,
            inputs,
            outputs,
        })
    }

    /// Weights B·H·N (saturating, for a hand-made shape).
    pub fn weights(&self) -> usize {
        self.batch
            .saturating_mul(self.inputs)
            .saturating_mul(self.outputs)
    }

    /// Values of x, B·H.
    fn x_len(&self) -> usize {
        self.batch.saturating_mul(self.inputs)
    }

    /// Values of c and y, B·N.
    fn y_len(&self) -> usize {
        self.batch.saturating_mul(self.outputs)
    }

    /// Refuses a buffer that is not `need` long, and (for a hand-made shape) an empty extent.
    fn check<T>(&self, what: &str, have: &[T], need: usize) -> Result<()> {
        if self.batch == 0 || self.inputs == 0 || self.outputs == 0 {
            return Err(Error::InvalidInput(format!(
                "batched linear over {self:?}: every extent must be at least 1"
            )));
        }
        if have.len() != need {
            return Err(Error::InvalidInput(format!(
                "batched linear {what}: {} values for {self:?}, which needs {need}",
                have.len()
            )));
        }
        Ok(())
    }

    fn dims(&self) -> [u32; 3] {
        [self.batch, self.inputs, self.outputs].map(|v| v as u32)
    }
}

/// CPU twin of `batched_linear`: y `[B, N]` = Σ_h x[b, h] w[b, h, ·] + c.
pub fn batched_linear<T: Real>(
    dev: &CpuDevice,
    [x, w, c]: [&[T]; 3],
    y: &mut [T],
    s: &BatchedLinearShape,
) -> Result<()> {
    let (h, n) = (s.inputs, s.outputs);
    s.check("x", x, s.x_len())?;
    s.check("w", w, s.weights())?;
    s.check("c", c, s.y_len())?;
    s.check("y", y, s.y_len())?;
    dev.for_chunks(n, y, None, |first, chunk, _| {
        let mut acc = vec![0.0f64; n];
        for (k, yb) in chunk.chunks_mut(n).enumerate() {
            let b = first + k;
            acc.fill(0.0);
            // h outer, n inner: each output's sum still runs over h in ascending order.
            for (xh, wh) in x[b * h..(b + 1) * h]
                .iter()
                .zip(w[b * h * n..(b + 1) * h * n].chunks(n))
            {
                for (a, &wv) in acc.iter_mut().zip(wh) {
                    *a += (*xh * wv).to_f64();
                }
            }
            for ((o, a), cv) in yb.iter_mut().zip(&acc).zip(&c[b * n..(b + 1) * n]) {
                *o = T::from_f64(*a) + *cv;
            }
        }
    })
}

/// CPU twin of `batched_linear_grad_w`: ∂L/∂w[b, h, n] = dy[b, n] · x[b, h].
pub fn batched_linear_grad_w<T: Real>(
    dev: &CpuDevice,
    [x, dy]: [&[T]; 2],
    dw: &mut [T],
    s: &BatchedLinearShape,
) -> Result<()> {
    let (h, n) = (s.inputs, s.outputs);
    s.check("x", x, s.x_len())?;
    s.check("dy", dy, s.y_len())?;
    s.check("dw", dw, s.weights())?;
    dev.for_chunks(n, dw, None, |first, chunk, _| {
        for (k, row) in chunk.chunks_mut(n).enumerate() {
            let bh = first + k;
            let (xv, g) = (x[bh], &dy[bh / h * n..(bh / h + 1) * n]);
            for (o, gv) in row.iter_mut().zip(g) {
                *o = *gv * xv;
            }
        }
    })
}

/// Rows of w summed at once in [`batched_linear_grad_x`]: independent f64 chains that keep the
/// adder busy, each still in ascending order.
const ROWS_AT_ONCE: usize = 8;

/// CPU twin of `batched_linear_grad_x`: ∂L/∂x[b, h] = Σ_n dy[b, n] w[b, h, n].
pub fn batched_linear_grad_x<T: Real>(
    dev: &CpuDevice,
    [w, dy]: [&[T]; 2],
    dx: &mut [T],
    s: &BatchedLinearShape,
) -> Result<()> {
    let (h, n) = (s.inputs, s.outputs);
    s.check("w", w, s.weights())?;
    s.check("dy", dy, s.y_len())?;
    s.check("dx", dx, s.x_len())?;
    dev.for_chunks(h, dx, None, |first, chunk, _| {
        for (k, dxb) in chunk.chunks_mut(h).enumerate() {
            let b = first + k;
            let (g, wb) = (&dy[b * n..(b + 1) * n], &w[b * h * n..(b + 1) * h * n]);
            for (rows, out) in wb
                .chunks(ROWS_AT_ONCE * n)
                .zip(dxb.chunks_mut(ROWS_AT_ONCE))
            {
                let mut acc = [0.0f64; ROWS_AT_ONCE];
                for (j, gv) in g.iter().enumerate() {
                    for (a, row) in acc.iter_mut().zip(rows.chunks(n)) {
                        *a += (*gv * row[j]).to_f64();
                    }
                }
                for (o, a) in out.iter_mut().zip(acc) {
                    *o = T::from_f64(a);
                }
            }
        }
    })
}

/// y_b = x_b W_b + c_b over the batch (see the module doc); inputs x, W, c.
pub struct BatchedLinear;

impl<T: Real> Op<T> for BatchedLinear {
    fn name(&self) -> &str {
        "batched_linear"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let [x, w, c] = inputs else {
            return Err(Error::InvalidInput(
                "batched linear takes x, w and c".into(),
            ));
        };
        let s = BatchedLinearShape::of(x.shape(), w.shape(), c.shape())?;
        let ctx = x.ctx();
        let mut y = ctx.empty(&[s.batch, s.outputs])?;
        match (x.buf(), w.buf(), c.buf(), y.buf_mut()) {
            (Buffer::Cpu(xv), Buffer::Cpu(wv), Buffer::Cpu(cv), Buffer::Cpu(o)) => {
                batched_linear(ctx.cpu().ok_or_else(mixed)?, [xv, wv, cv], o, &s)?
            }
            (Buffer::Cuda(xv), Buffer::Cuda(wv), Buffer::Cuda(cv), Buffer::Cuda(o)) => {
                let need = [s.x_len(), s.weights(), s.y_len()];
                launch(
                    ctx,
                    "batched_linear",
                    elementwise(s.y_len())?,
                    &[(xv, need[0]), (wv, need[1]), (cv, need[2])],
                    (o, need[2]),
                    &s,
                )?
            }
            _ => return Err(mixed()),
        }
        Ok(vec![y])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let (x, w, dy) = (bw.input(0), bw.input(1), bw.grad(0)?);
        let s = BatchedLinearShape::of(x.shape(), w.shape(), bw.input(2).shape())?;
        let grad_x: GradientOf<T> = (batched_linear_grad_x, "batched_linear_grad_x");
        let dx = bw
            .needs(0)
            .then(|| {
                let cfg = one_block_each(s.x_len())?;
                gradient(
                    grad_x,
                    cfg,
                    [(w, s.weights()), (dy, s.y_len())],
                    x.shape(),
                    &s,
                )
            })
            .transpose()?;
        let grad_w: GradientOf<T> = (batched_linear_grad_w, "batched_linear_grad_w");
        let dw = bw
            .needs(1)
            .then(|| {
                let cfg = elementwise(s.weights())?;
                gradient(
                    grad_w,
                    cfg,
                    [(x, s.x_len()), (dy, s.y_len())],
                    w.shape(),
                    &s,
                )
            })
            .transpose()?;
        let dc = if bw.needs(2) {
            let mut dc = dy.copy()?;
            dc.set_shape(bw.input(2).shape())?;
            Some(dc)
        } else {
            None
        };
        Ok(vec![dx, dw, dc])
    }
}

/// A gradient's CPU twin and kernel, both taking two inputs to one output.
type GradientOf<T> = (
    fn(&CpuDevice, [&[T]; 2], &mut [T], &BatchedLinearShape) -> Result<()>,
    &'static str,
);

/// One gradient, shaped `shape`, from the inputs (each with the values its kernel reads) by the
/// twin or, on CUDA, the kernel launched with `cfg`.
fn gradient<T: Real>(
    (twin, name): GradientOf<T>,
    cfg: LaunchConfig,
    [(a, na), (b, nb)]: [(&Tensor<T>, usize); 2],
    shape: &[usize],
    s: &BatchedLinearShape,
) -> Result<Tensor<T>> {
    let ctx = a.ctx();
    let mut out = ctx.empty(shape)?;
    let len = out.len();
    match (a.buf(), b.buf(), out.buf_mut()) {
        (Buffer::Cpu(av), Buffer::Cpu(bv), Buffer::Cpu(o)) => {
            twin(ctx.cpu().ok_or_else(mixed)?, [av, bv], o, s)?
        }
        (Buffer::Cuda(av), Buffer::Cuda(bv), Buffer::Cuda(o)) => {
            launch(ctx, name, cfg, &[(av, na), (bv, nb)], (o, len), s)?
        }
        _ => return Err(mixed()),
    }
    Ok(out)
}

/// Launches `name` with the inputs, the output and the extents (B, H, N), each buffer checked
/// against the values the kernel touches.
fn launch<T: Real>(
    ctx: &Ctx<T>,
    name: &str,
    cfg: LaunchConfig,
    inputs: &[(&CudaSlice<T>, usize)],
    (out, need): (&mut CudaSlice<T>, usize),
    s: &BatchedLinearShape,
) -> Result<()> {
    for (buf, need) in inputs
        .iter()
        .map(|(b, n)| (b.len(), *n))
        .chain([(out.len(), need)])
    {
        if buf < need {
            return Err(Error::InvalidInput(format!(
                "{name}: a buffer of {buf} values where the kernel reads {need}"
            )));
        }
    }
    let (d, f) = func(ctx, name)?;
    let dims = s.dims();
    let mut l = d.stream().launch_builder(&f);
    for (buf, _) in inputs {
        l.arg(*buf);
    }
    l.arg(out).arg(&dims[0]).arg(&dims[1]).arg(&dims[2]);
    // SAFETY: the argument list is the kernel's (kernels/nn.cu: inputs, output, B, H, N), every
    // buffer checked above to hold what the launch touches.
    unsafe { l.launch(cfg) }?;
    Ok(())
}
