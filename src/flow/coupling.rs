//! The fused affine coupling: the masked affine transform and its log-determinant in one pass,
//! forward and backward, as an [`Op`] of the tape (kernels `coupling_forward`/`coupling_backward`
//! in `kernels/flow.cu`; the CPU twins are [`forward`] and [`backward`] here).
//!
//! With frozen sites m = 1 and the network's output `st` = `[B, 2, …]` (s, t): in the forward
//! direction y = m⊙x + (1−m)⊙(x e^s + t) and log|det ∂y/∂x| = Σ (1−m)⊙s per sample (Albergo,
//! Kanwar, Shanahan, PRD 100 034515 (2019), eq. 11); the inverse direction undoes it,
//! x = (y − t) e^{−s}, with log-determinant −Σ (1−m)⊙s.

use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::device::cuda::FLOW;
use crate::device::geometry::{elementwise, one_block_each};
use crate::device::{simd, CpuDevice};
use crate::error::{Error, Result};
use crate::nn::kernels::check_len;
use crate::nn::tensor::Buffer;
use crate::nn::{Backward, Ctx, Op, Real, Tensor};

/// Which way a coupling runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Prior towards the target: y = x e^s + t.
    Forward,
    /// Target towards the prior: x = (y − t) e^{−s}.
    Inverse,
}

impl Direction {
    fn sign(self) -> i32 {
        match self {
            Direction::Forward => 1,
            Direction::Inverse => -1,
        }
    }
}

/// Sizes of one coupling: `batch` samples of `volume` sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Samples.
    pub batch: usize,
    /// Sites per sample.
    pub volume: usize,
}

impl Geometry {
    /// Checks the buffers of a forward pass: x, y `[B, V]`, st `[B, 2, V]`, mask `[V]`, logdet `[B]`.
    fn check(&self, x: usize, st: usize, mask: usize, y: usize, logdet: usize) -> Result<()> {
        let n = self.batch.checked_mul(self.volume).filter(|&n| n < 1 << 31);
        let n = n.ok_or_else(|| {
            Error::InvalidInput(format!(
                "a coupling over {self:?} is too large for the kernels"
            ))
        })?;
        for (what, have, need) in [
            ("coupling x", x, n),
            ("coupling s, t", st, 2 * n),
            ("coupling mask", mask, self.volume),
            ("coupling y", y, n),
            ("coupling log-determinant", logdet, self.batch),
        ] {
            if have != need {
                return Err(Error::InvalidInput(format!(
                    "{what}: {have} values where the coupling needs {need}"
                )));
            }
        }
        Ok(())
    }
}

/// CPU twin of `coupling_forward`: y and the per-sample log-determinant (summed in f64, in site
/// order), in parallel over samples.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Real>(
    dev: &CpuDevice,
    g: Geometry,
    dir: Direction,
    x: &[T],
    st: &[T],
    mask: &[T],
    y: &mut [T],
    logdet: &mut [T],
) -> Result<()> {
    g.check(x.len(), st.len(), mask.len(), y.len(), logdet.len())?;
    let v = g.volume;
    let mut parts = vec![0.0f64; g.batch];
    dev.for_chunks(1, &mut parts, None, |first, chunk, _| {
        for (k, ld) in chunk.iter_mut().enumerate() {
            let b = first + k;
            let s = &st[2 * b * v..(2 * b + 1) * v];
            let mut acc = 0.0;
            for i in 0..v {
                if mask[i] == T::zero() {
                    acc += s[i].to_f64();
                }
            }
            *ld = if dir == Direction::Forward { acc } else { -acc };
        }
    })?;
    dev.for_chunks(v.max(1), y, None, |first, rows, _| {
        for (k, yb) in rows.chunks_mut(v).enumerate() {
            let b = first + k;
            let xb = &x[b * v..(b + 1) * v];
            let (s, t) = (
                &st[2 * b * v..(2 * b + 1) * v],
                &st[(2 * b + 1) * v..(2 * b + 2) * v],
            );
            move_row_at(
                simd::level(),
                [xb, s, t, mask],
                yb,
                dir == Direction::Forward,
            );
        }
    })?;
    for (o, p) in logdet.iter_mut().zip(parts) {
        *o = T::from_f64(p);
    }
    Ok(())
}

/// CPU twin of `coupling_backward`: dx `[B, V]` and dst `[B, 2, V]` from gy `[B, V]` and gld `[B]`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dev: &CpuDevice,
    g: Geometry,
    dir: Direction,
    x: &[T],
    st: &[T],
    mask: &[T],
    y: &[T],
    gy: &[T],
    gld: &[T],
    dx: &mut [T],
    dst: &mut [T],
) -> Result<()> {
    g.check(x.len(), st.len(), mask.len(), y.len(), gld.len())?;
    let n = g.batch * g.volume;
    check_len("coupling gy", gy.len(), n)?;
    if dx.len() != n || dst.len() != 2 * n {
        return Err(Error::InvalidInput(format!(
            "coupling gradients of {} and {} values for {n} sites",
            dx.len(),
            dst.len()
        )));
    }
    let v = g.volume;
    let forward = dir == Direction::Forward;
    dev.for_chunks(v.max(1), dx, None, |first, rows, _| {
        for (k, dxb) in rows.chunks_mut(v).enumerate() {
            let b = first + k;
            let (gyb, s) = (&gy[b * v..(b + 1) * v], &st[2 * b * v..(2 * b + 1) * v]);
            input_grad_row_at(simd::level(), [gyb, s, mask], dxb, forward);
        }
    })?;
    dev.for_chunks(2 * v.max(1), dst, None, |first, rows, _| {
        for (k, row) in rows.chunks_mut(2 * v).enumerate() {
            let b = first + k;
            let at = b * v..(b + 1) * v;
            let s = &st[2 * b * v..(2 * b + 1) * v];
            let rows = [&gy[at.clone()], &x[at.clone()], &y[at], s, mask];
            st_grad_row_at(simd::level(), rows, gld[b], row, forward);
        }
    })
}

/// One sample's y: frozen sites (mask ≠ 0) copied, the others x e^s + t (`forward`) or
/// (x − t) e^{−s}. Branch-free (e^{±s} is computed everywhere and selected), so it vectorises.
#[inline(always)]
fn move_row<T: Real>([x, s, t, mask]: [&[T]; 4], y: &mut [T], forward: bool) {
    let sites = y.iter_mut().zip(x).zip(s).zip(t).zip(mask);
    if forward {
        for ((((y, &x), &s), &t), &m) in sites {
            let moved = x * s.exp() + t;
            *y = if m != T::zero() { x } else { moved };
        }
    } else {
        for ((((y, &x), &s), &t), &m) in sites {
            let moved = (x - t) * (-s).exp();
            *y = if m != T::zero() { x } else { moved };
        }
    }
}

simd::dispatch! {
    /// [`move_row`] compiled for `level`.
    fn move_row_at = move_row<T: Real>(rows: [&[T]; 4], y: &mut [T], forward: bool)
}

/// One sample's ∂L/∂x: gy at frozen sites, gy e^{±s} at the others.
#[inline(always)]
fn input_grad_row<T: Real>([gy, s, mask]: [&[T]; 3], dx: &mut [T], forward: bool) {
    let sign = T::from_f64(if forward { 1.0 } else { -1.0 });
    for (((d, &g), &s), &m) in dx.iter_mut().zip(gy).zip(s).zip(mask) {
        let moved = g * (sign * s).exp();
        *d = if m != T::zero() { g } else { moved };
    }
}

simd::dispatch! {
    /// [`input_grad_row`] compiled for `level`.
    fn input_grad_row_at = input_grad_row<T: Real>(rows: [&[T]; 3], dx: &mut [T], forward: bool)
}

/// One sample's ∂L/∂s and ∂L/∂t (`dst` = [ds | dt]): zero at frozen sites; forward
/// (gy x e^s + gld, gy), inverse (−gy y − gld, −gy e^{−s}).
#[inline(always)]
fn st_grad_row<T: Real>([gy, x, y, s, mask]: [&[T]; 5], gld: T, dst: &mut [T], forward: bool) {
    let (ds, dt) = dst.split_at_mut(gy.len());
    let sites = ds
        .iter_mut()
        .zip(dt.iter_mut())
        .zip(gy)
        .zip(x)
        .zip(y)
        .zip(s)
        .zip(mask);
    for ((((((ds, dt), &g), &x), &y), &s), &m) in sites {
        let (a, b) = match forward {
            true => (g * x * s.exp() + gld, g),
            false => (-g * y - gld, -(g * (-s).exp())),
        };
        let frozen = m != T::zero();
        *ds = if frozen { T::zero() } else { a };
        *dt = if frozen { T::zero() } else { b };
    }
}

simd::dispatch! {
    /// [`st_grad_row`] compiled for `level`.
    fn st_grad_row_at = st_grad_row<T: Real>(rows: [&[T]; 5], gld: T, dst: &mut [T], forward: bool)
}

fn cuda_forward<T: Real>(
    ctx: &Ctx<T>,
    g: Geometry,
    dir: Direction,
    bufs: [&CudaSlice<T>; 3],
    y: &mut CudaSlice<T>,
    logdet: &mut CudaSlice<T>,
) -> Result<()> {
    let [x, st, mask] = bufs;
    g.check(x.len(), st.len(), mask.len(), y.len(), logdet.len())?;
    let d = ctx.cuda().ok_or_else(crate::nn::tensor::mixed)?;
    let f = d.function(&FLOW, &format!("coupling_forward_{}", T::NAME))?;
    let (v, sign) = (g.volume as u32, dir.sign());
    let mut b = d.stream().launch_builder(&f);
    b.arg(x)
        .arg(st)
        .arg(mask)
        .arg(y)
        .arg(logdet)
        .arg(&v)
        .arg(&sign);
    // SAFETY: matches coupling_forward_T; one block per sample; buffer sizes checked above.
    unsafe { b.launch(one_block_each(g.batch)?) }?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn cuda_backward<T: Real>(
    ctx: &Ctx<T>,
    g: Geometry,
    dir: Direction,
    bufs: [&CudaSlice<T>; 6],
    dx: &mut CudaSlice<T>,
    dst: &mut CudaSlice<T>,
) -> Result<()> {
    let [x, st, mask, y, gy, gld] = bufs;
    g.check(x.len(), st.len(), mask.len(), y.len(), gld.len())?;
    let n = g.batch * g.volume;
    check_len("coupling gy", gy.len(), n)?;
    check_len("coupling dx", dx.len(), n)?;
    check_len("coupling ds, dt", dst.len(), 2 * n)?;
    let d = ctx.cuda().ok_or_else(crate::nn::tensor::mixed)?;
    let f = d.function(&FLOW, &format!("coupling_backward_{}", T::NAME))?;
    let (bn, v, sign) = (g.batch as u32, g.volume as u32, dir.sign());
    let mut b = d.stream().launch_builder(&f);
    b.arg(x).arg(st).arg(mask).arg(y).arg(gy).arg(gld);
    b.arg(dx).arg(dst).arg(&bn).arg(&v).arg(&sign);
    // SAFETY: matches coupling_backward_T; buffer sizes checked above.
    unsafe { b.launch(elementwise(n)?) }?;
    Ok(())
}

/// The fused coupling as a tape op. Inputs: x `[B, …]`, st `[B, 2, …]` (the network's s and t),
/// mask (the sites' shape, 1 = frozen). Outputs: y (x's shape) and log|det| `[B]`.
pub struct Coupling(pub Direction);

fn geometry<T: Real>(x: &Tensor<T>) -> Result<Geometry> {
    let batch = *x
        .shape()
        .first()
        .ok_or_else(|| Error::InvalidInput("a coupling needs a batch axis".into()))?;
    Ok(Geometry {
        batch,
        volume: x.len() / batch.max(1),
    })
}

impl<T: Real> Op<T> for Coupling {
    fn name(&self) -> &str {
        "affine_coupling"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let [x, st, mask] = inputs else {
            return Err(Error::InvalidInput(
                "a coupling takes x, s/t and a mask".into(),
            ));
        };
        let g = geometry(x)?;
        let ctx = x.ctx();
        let mut y = ctx.empty(x.shape())?;
        let mut ld = ctx.empty(&[g.batch])?;
        match (x.buf(), st.buf(), mask.buf(), y.buf_mut(), ld.buf_mut()) {
            (Buffer::Cpu(a), Buffer::Cpu(b), Buffer::Cpu(m), Buffer::Cpu(o), Buffer::Cpu(l)) => {
                let dev = ctx.cpu().ok_or_else(crate::nn::tensor::mixed)?;
                forward(dev, g, self.0, a, b, m, o, l)?
            }
            (
                Buffer::Cuda(a),
                Buffer::Cuda(b),
                Buffer::Cuda(m),
                Buffer::Cuda(o),
                Buffer::Cuda(l),
            ) => cuda_forward(ctx, g, self.0, [a, b, m], o, l)?,
            _ => return Err(crate::nn::tensor::mixed()),
        }
        Ok(vec![y, ld])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let (x, st, mask, y) = (bw.input(0), bw.input(1), bw.input(2), bw.output(0));
        let g = geometry(x)?;
        let ctx = x.ctx();
        // A missing output gradient is a zero one.
        let zero_y;
        let gy = match bw.grads[0] {
            Some(t) => t,
            None => {
                zero_y = ctx.zeros(x.shape())?;
                &zero_y
            }
        };
        let zero_ld;
        let gld = match bw.grads[1] {
            Some(t) => t,
            None => {
                zero_ld = ctx.zeros(&[g.batch])?;
                &zero_ld
            }
        };
        let mut dx = ctx.empty(x.shape())?;
        let mut dst = ctx.empty(st.shape())?;
        match (
            [x.buf(), st.buf(), mask.buf(), y.buf(), gy.buf(), gld.buf()],
            dx.buf_mut(),
            dst.buf_mut(),
        ) {
            (
                [Buffer::Cpu(a), Buffer::Cpu(b), Buffer::Cpu(m), Buffer::Cpu(yv), Buffer::Cpu(gyv), Buffer::Cpu(gl)],
                Buffer::Cpu(o),
                Buffer::Cpu(p),
            ) => {
                let dev = ctx.cpu().ok_or_else(crate::nn::tensor::mixed)?;
                backward(dev, g, self.0, a, b, m, yv, gyv, gl, o, p)?
            }
            (
                [Buffer::Cuda(a), Buffer::Cuda(b), Buffer::Cuda(m), Buffer::Cuda(yv), Buffer::Cuda(gyv), Buffer::Cuda(gl)],
                Buffer::Cuda(o),
                Buffer::Cuda(p),
            ) => cuda_backward(ctx, g, self.0, [a, b, m, yv, gyv, gl], o, p)?,
            _ => return Err(crate::nn::tensor::mixed()),
        }
        Ok(vec![
            bw.needs(0).then_some(dx),
            bw.needs(1).then_some(dst),
            None,
        ])
    }
}
