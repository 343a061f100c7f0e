//! The building blocks of a U-Net on the lattice (the score network of the diffusion models):
//! group normalisation, 2×2 average pooling and nearest 2× up-sampling, and Gaussian Fourier
//! features of a scalar time. Kernels in `kernels/unet.cu`; the CPU twins are the functions here.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::super::op::{Backward, Op};
use super::super::tensor::{mixed, Buffer, Ctx, Real, Tensor};
use crate::device::cuda::UNET;
use crate::device::geometry::{elementwise, one_block_each};
use crate::device::{simd, CpuDevice};
use crate::error::{Error, Result};

/// ε of the group normalisation's variance.
pub const GROUP_NORM_EPS: f64 = 1e-5;

/// Σ f(i) for i < n in f64 as eight interleaved partial sums combined by a fixed tree: a fixed
/// order (the same bits for any thread count), and eight independent additions in flight where
/// one running sum would wait on each addition's latency.
#[inline(always)]
pub(super) fn sum8(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut l = [0.0f64; 8];
    let full = n - n % 8;
    for i in (0..full).step_by(8) {
        for (k, lk) in l.iter_mut().enumerate() {
            *lk += f(i + k);
        }
    }
    for (lk, i) in l.iter_mut().zip(full..n) {
        *lk += f(i);
    }
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// Mean and 1/√(σ² + ε) of one group (two passes in f64, [`sum8`]'s order).
#[inline(always)]
fn group_stats_body<T: Real>(x: &[T], eps: f64) -> (f64, f64) {
    let n = x.len() as f64;
    let m = sum8(x.len(), |i| x[i].to_f64()) / n;
    let q = sum8(x.len(), |i| (x[i].to_f64() - m).powi(2)) / n;
    (m, 1.0 / (q + eps).sqrt())
}

simd::dispatch! {
    /// [`group_stats_body`] compiled for `level`.
    fn group_stats_at = group_stats_body<T: Real>(x: &[T], eps: f64) -> (f64, f64)
}

/// Mean and 1/√(σ² + ε) of one group, on this CPU's widest instruction set (the same bits on
/// every one). Twin of `group_stats`.
pub(super) fn group_stats<T: Real>(x: &[T], eps: f64) -> (f64, f64) {
    group_stats_at(simd::level(), x, eps)
}

/// CPU twin of `group_norm`: every group of `n` contiguous values normalised.
pub fn group_norm<T: Real>(
    dev: &CpuDevice,
    x: &[T],
    y: &mut [T],
    n: usize,
    eps: f64,
) -> Result<()> {
    check_groups(x.len(), y.len(), n)?;
    dev.for_chunks(n, y, None, |first, out, _| {
        for (k, yg) in out.chunks_mut(n).enumerate() {
            let xg = &x[(first + k) * n..(first + k + 1) * n];
            let (m, r) = group_stats(xg, eps);
            for (o, &v) in yg.iter_mut().zip(xg) {
                *o = T::from_f64((v.to_f64() - m) * r);
            }
        }
    })
}

/// CPU twin of `group_norm_grad`: dx = r (dy − mean(dy) − y mean(dy y)) per group.
pub fn group_norm_grad<T: Real>(
    dev: &CpuDevice,
    [x, y, dy]: [&[T]; 3],
    dx: &mut [T],
    n: usize,
    eps: f64,
) -> Result<()> {
    check_groups(x.len(), dx.len(), n)?;
    if y.len() != x.len() || dy.len() != x.len() {
        return Err(Error::InvalidInput(
            "group norm gradient: lengths differ".into(),
        ));
    }
    dev.for_chunks(n, dx, None, |first, out, _| {
        for (k, dg) in out.chunks_mut(n).enumerate() {
            let o = (first + k) * n;
            let (_, r) = group_stats(&x[o..o + n], eps);
            let (yg, dyg) = (&y[o..o + n], &dy[o..o + n]);
            let mdy = sum8(n, |i| dyg[i].to_f64()) / n as f64;
            let mdyy = sum8(n, |i| dyg[i].to_f64() * yg[i].to_f64()) / n as f64;
            for ((d, a), b) in dg.iter_mut().zip(dyg).zip(yg) {
                *d = T::from_f64(r * (a.to_f64() - mdy - b.to_f64() * mdyy));
            }
        }
    })
}

fn check_groups(x: usize, y: usize, n: usize) -> Result<()> {
    if n == 0 || x != y || !x.is_multiple_of(n) || x >= 1 << 31 {
        return Err(Error::InvalidInput(format!(
            "group norm over groups of {n} of {x} values into {y}"
        )));
    }
    Ok(())
}

/// CPU twin of `pool2`: y `[planes][h][w]` = scale Σ of each 2×2 block of x `[planes][2h][2w]`.
pub fn pool2<T: Real>(
    dev: &CpuDevice,
    x: &[T],
    y: &mut [T],
    [h, w]: [usize; 2],
    scale: T,
) -> Result<()> {
    check_resample(x.len(), y.len(), h * w)?;
    dev.for_chunks(h * w, y, None, |first, out, _| {
        for (k, plane) in out.chunks_mut(h * w).enumerate() {
            let src = &x[(first + k) * 4 * h * w..(first + k + 1) * 4 * h * w];
            // Row by row: coarse row a reads fine rows 2a and 2a + 1.
            for (row, pair) in plane.chunks_mut(w).zip(src.chunks(4 * w)) {
                let (top, bottom) = pair.split_at(2 * w);
                for ((o, t), u) in row.iter_mut().zip(top.chunks(2)).zip(bottom.chunks(2)) {
                    *o = scale * (t[0] + t[1] + u[0] + u[1]);
                }
            }
        }
    })
}

/// CPU twin of `unpool2`: y `[planes][2h][2w]` = scale x `[planes][h][w]` at (i/2, j/2).
pub fn unpool2<T: Real>(
    dev: &CpuDevice,
    x: &[T],
    y: &mut [T],
    [h, w]: [usize; 2],
    scale: T,
) -> Result<()> {
    check_resample(y.len(), x.len(), h * w)?;
    dev.for_chunks(4 * h * w, y, None, |first, out, _| {
        for (k, plane) in out.chunks_mut(4 * h * w).enumerate() {
            let src = &x[(first + k) * h * w..(first + k + 1) * h * w];
            // Row by row: fine rows 2a and 2a + 1 repeat coarse row a, each value twice.
            for (rows, coarse) in plane.chunks_mut(4 * w).zip(src.chunks(w)) {
                for row in rows.chunks_mut(2 * w) {
                    for (o, &c) in row.chunks_mut(2).zip(coarse) {
                        o[0] = scale * c;
                        o[1] = scale * c;
                    }
                }
            }
        }
    })
}

fn check_resample(fine: usize, coarse: usize, plane: usize) -> Result<()> {
    if plane == 0 || fine != 4 * coarse || !coarse.is_multiple_of(plane) || fine >= 1 << 31 {
        return Err(Error::InvalidInput(format!(
            "2× resampling between {fine} and {coarse} values in planes of {plane}"
        )));
    }
    Ok(())
}

/// CPU twin of `fourier_features`: y `[B][2E]` = (sin 2π t w_k, cos 2π t w_k).
pub fn fourier_features<T: Real>(t: &[T], wk: &[T], y: &mut [T]) -> Result<()> {
    let e = wk.len();
    check_len(y.len(), 2 * e * t.len())?;
    for (b, row) in y.chunks_mut(2 * e.max(1)).enumerate() {
        for (k, &w) in wk.iter().enumerate() {
            let (s, c) = (std::f64::consts::TAU * t[b].to_f64() * w.to_f64()).sin_cos();
            row[k] = T::from_f64(s);
            row[e + k] = T::from_f64(c);
        }
    }
    Ok(())
}

/// CPU twin of `fourier_features_grad`: dt_b = Σ_k 2π w_k (cos · dy_sin − sin · dy_cos).
pub fn fourier_features_grad<T: Real>(t: &[T], wk: &[T], dy: &[T], dt: &mut [T]) -> Result<()> {
    let e = wk.len();
    check_len(dy.len(), 2 * e * t.len())?;
    check_len(dt.len(), t.len())?;
    for (b, d) in dt.iter_mut().enumerate() {
        let row = &dy[b * 2 * e..(b + 1) * 2 * e];
        let mut acc = 0.0;
        for (k, &w) in wk.iter().enumerate() {
            let f = std::f64::consts::TAU * w.to_f64();
            let (s, c) = (f * t[b].to_f64()).sin_cos();
            acc += f * (c * row[k].to_f64() - s * row[e + k].to_f64());
        }
        *d = T::from_f64(acc);
    }
    Ok(())
}

fn check_len(have: usize, need: usize) -> Result<()> {
    if have != need || need >= 1 << 31 {
        return Err(Error::InvalidInput(format!(
            "{have} values where the operation needs {need}"
        )));
    }
    Ok(())
}

/// The stream and the `kernels/unet.cu` kernel `name` (`_f32`/`_f64` appended) on `ctx`'s device.
pub(super) fn kernel<T: Real>(
    ctx: &Ctx<T>,
    name: &str,
) -> Result<(
    std::sync::Arc<cudarc::driver::CudaStream>,
    cudarc::driver::CudaFunction,
)> {
    let d = ctx.cuda().ok_or_else(mixed)?;
    Ok((
        d.stream().clone(),
        d.function(&UNET, &format!("{name}_{}", T::NAME))?,
    ))
}

/// Launches `$name` with the arguments, in order: every caller checked its buffers' lengths
/// against the launch's extents.
macro_rules! launch {
    ($ctx:expr, $name:expr, $cfg:expr, $($arg:expr),+) => {{
        let (stream, f) = kernel($ctx, $name)?;
        let mut l = stream.launch_builder(&f);
        $(l.arg($arg);)+
        // SAFETY: the argument list is the kernel's (see kernels/unet.cu), buffer lengths
        // checked by the caller.
        unsafe { l.launch($cfg) }?;
    }};
}

/// Refuses a launch over `need` elements of a buffer that holds fewer.
pub(super) fn cuda_len<T>(s: &CudaSlice<T>, need: usize) -> Result<()> {
    if s.len() < need {
        return Err(Error::InvalidInput(format!(
            "a kernel over {need} elements was given a buffer of {}",
            s.len()
        )));
    }
    Ok(())
}

/// The groups of `x` `[B, C, …]` in `groups` groups of channels: (count, values per group).
fn groups_of(shape: &[usize], groups: usize) -> Result<(usize, usize)> {
    let bad = || {
        Error::InvalidInput(format!(
            "group norm of {shape:?} in {groups} groups: the channels (axis 1) must split evenly"
        ))
    };
    let (&b, &c) = (
        shape.first().ok_or_else(bad)?,
        shape.get(1).ok_or_else(bad)?,
    );
    if groups == 0 || c % groups != 0 {
        return Err(bad());
    }
    let n = shape.iter().product::<usize>() / (b * groups).max(1);
    Ok((b * groups, n))
}

/// Group normalisation of x `[B, C, …]` in `.0` groups of channels, without the affine part
/// (multiply and add per-channel parameters on the tape).
pub struct GroupNorm(pub usize);

impl<T: Real> Op<T> for GroupNorm {
    fn name(&self) -> &str {
        "group_norm"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let x = x[0];
        let (count, n) = groups_of(x.shape(), self.0)?;
        let ctx = x.ctx();
        let mut y = ctx.empty(x.shape())?;
        match (x.buf(), y.buf_mut()) {
            (Buffer::Cpu(a), Buffer::Cpu(o)) => {
                group_norm(ctx.cpu().ok_or_else(mixed)?, a, o, n, GROUP_NORM_EPS)?
            }
            (Buffer::Cuda(a), Buffer::Cuda(o)) => {
                cuda_len(a, count * n)?;
                cuda_len(o, count * n)?;
                let (c32, n32) = (count as u32, n as u32);
                launch!(
                    ctx,
                    "group_norm",
                    one_block_each(count)?,
                    a,
                    o,
                    &c32,
                    &n32,
                    &GROUP_NORM_EPS
                )
            }
            _ => return Err(mixed()),
        }
        Ok(vec![y])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let (x, y, dy) = (bw.input(0), bw.output(0), bw.grad(0)?);
        let (count, n) = groups_of(x.shape(), self.0)?;
        let ctx = x.ctx();
        let mut dx = ctx.empty(x.shape())?;
        match ([x.buf(), y.buf(), dy.buf()], dx.buf_mut()) {
            ([Buffer::Cpu(a), Buffer::Cpu(b), Buffer::Cpu(c)], Buffer::Cpu(o)) => group_norm_grad(
                ctx.cpu().ok_or_else(mixed)?,
                [a, b, c],
                o,
                n,
                GROUP_NORM_EPS,
            )?,
            ([Buffer::Cuda(a), Buffer::Cuda(b), Buffer::Cuda(c)], Buffer::Cuda(o)) => {
                for s in [a, b, c] {
                    cuda_len(s, count * n)?;
                }
                cuda_len(o, count * n)?;
                let (c32, n32) = (count as u32, n as u32);
                launch!(
                    ctx,
                    "group_norm_grad",
                    one_block_each(count)?,
                    a,
                    b,
                    c,
                    o,
                    &c32,
                    &n32,
                    &GROUP_NORM_EPS
                )
            }
            _ => return Err(mixed()),
        }
        Ok(vec![Some(dx)])
    }
}

/// The planes and the coarse extents of a 2× resampling of `[B, C, H, W]` (`fine` = the shape
/// with the even extents).
fn coarse_of(fine: &[usize]) -> Result<(usize, [usize; 2])> {
    match fine {
        [b, c, h, w] if h % 2 == 0 && w % 2 == 0 && h * w > 0 => Ok((b * c, [h / 2, w / 2])),
        _ => Err(Error::InvalidInput(format!(
            "2× resampling needs [B, C, H, W] with even H and W; got {fine:?}"
        ))),
    }
}

/// `pool2` (`down`) or `unpool2` from `x` into a new tensor of `shape`.
fn resample<T: Real>(x: &Tensor<T>, shape: &[usize], down: bool, scale: f64) -> Result<Tensor<T>> {
    let fine = if down { x.shape() } else { shape };
    let (planes, hw) = coarse_of(fine)?;
    let ctx = x.ctx();
    let mut y = ctx.empty(shape)?;
    let s = T::from_f64(scale);
    match (x.buf(), y.buf_mut()) {
        (Buffer::Cpu(a), Buffer::Cpu(o)) => {
            let dev = ctx.cpu().ok_or_else(mixed)?;
            if down {
                pool2(dev, a, o, hw, s)?
            } else {
                unpool2(dev, a, o, hw, s)?
            }
        }
        (Buffer::Cuda(a), Buffer::Cuda(o)) => {
            let coarse = planes * hw[0] * hw[1];
            let (n_in, n_out) = if down {
                (4 * coarse, coarse)
            } else {
                (coarse, 4 * coarse)
            };
            cuda_len(a, n_in)?;
            cuda_len(o, n_out)?;
            let (p32, h32, w32) = (planes as u32, hw[0] as u32, hw[1] as u32);
            let name = if down { "pool2" } else { "unpool2" };
            launch!(ctx, name, elementwise(n_out)?, a, o, &p32, &h32, &w32, &s)
        }
        _ => return Err(mixed()),
    }
    Ok(y)
}

/// 2×2 average pooling of x `[B, C, H, W]` (H, W even) to `[B, C, H/2, W/2]`.
pub struct AvgPool2;

impl<T: Real> Op<T> for AvgPool2 {
    fn name(&self) -> &str {
        "avg_pool2"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let (_, [h, w]) = coarse_of(x[0].shape())?;
        let s = x[0].shape();
        Ok(vec![resample(x[0], &[s[0], s[1], h, w], true, 0.25)?])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(resample(
            bw.grad(0)?,
            bw.input(0).shape(),
            false,
            0.25,
        )?)])
    }
}

/// Nearest 2× up-sampling of x `[B, C, H, W]` to `[B, C, 2H, 2W]`.
pub struct Upsample2;

impl<T: Real> Op<T> for Upsample2 {
    fn name(&self) -> &str {
        "upsample2"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let s = x[0].shape();
        let fine = match s {
            [b, c, h, w] => [*b, *c, 2 * h, 2 * w],
            _ => {
                return Err(Error::InvalidInput(format!(
                    "up-sampling needs [B, C, H, W]; got {s:?}"
                )))
            }
        };
        Ok(vec![resample(x[0], &fine, false, 1.0)?])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(resample(
            bw.grad(0)?,
            bw.input(0).shape(),
            true,
            1.0,
        )?)])
    }
}

/// Gaussian Fourier features of times t `[B]` with frequencies w `[E]` (fixed, not trained):
/// `[B, 2E]` = (sin 2π t w, cos 2π t w). Gradients flow to t only.
pub struct FourierFeatures;

impl<T: Real> Op<T> for FourierFeatures {
    fn name(&self) -> &str {
        "fourier_features"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let [t, wk] = x else {
            return Err(Error::InvalidInput("fourier features take t and w".into()));
        };
        if t.shape().len() != 1 || wk.shape().len() != 1 {
            return Err(Error::InvalidInput(format!(
                "fourier features need t [B] and w [E]; got {:?} and {:?}",
                t.shape(),
                wk.shape()
            )));
        }
        let (b, e) = (t.len(), wk.len());
        let ctx = t.ctx();
        let mut y = ctx.empty(&[b, 2 * e])?;
        match (t.buf(), wk.buf(), y.buf_mut()) {
            (Buffer::Cpu(a), Buffer::Cpu(f), Buffer::Cpu(o)) => fourier_features(a, f, o)?,
            (Buffer::Cuda(a), Buffer::Cuda(f), Buffer::Cuda(o)) => {
                cuda_len(a, b)?;
                cuda_len(f, e)?;
                cuda_len(o, 2 * b * e)?;
                let (b32, e32) = (b as u32, e as u32);
                launch!(
                    ctx,
                    "fourier_features",
                    elementwise(b * e)?,
                    a,
                    f,
                    o,
                    &b32,
                    &e32
                )
            }
            _ => return Err(mixed()),
        }
        Ok(vec![y])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let (t, wk, dy) = (bw.input(0), bw.input(1), bw.grad(0)?);
        let (b, e) = (t.len(), wk.len());
        let ctx = t.ctx();
        let mut dt = ctx.empty(t.shape())?;
        match (t.buf(), wk.buf(), dy.buf(), dt.buf_mut()) {
            (Buffer::Cpu(a), Buffer::Cpu(f), Buffer::Cpu(g), Buffer::Cpu(o)) => {
                fourier_features_grad(a, f, g, o)?
            }
            (Buffer::Cuda(a), Buffer::Cuda(f), Buffer::Cuda(g), Buffer::Cuda(o)) => {
                cuda_len(a, b)?;
                cuda_len(f, e)?;
                cuda_len(g, 2 * b * e)?;
                cuda_len(o, b)?;
                let (b32, e32) = (b as u32, e as u32);
                launch!(
                    ctx,
                    "fourier_features_grad",
                    elementwise(b)?,
                    a,
                    f,
                    g,
                    o,
                    &b32,
                    &e32
                )
            }
            _ => return Err(mixed()),
        }
        Ok(vec![bw.needs(0).then_some(dt), None])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_values_by_hand() {
        let dev = CpuDevice::with_threads(2);
        // One plane 2×4 → 1×2 block averages, and back.
        let x = [1.0f64, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0];
        let mut y = [0.0; 2];
        pool2(&dev, &x, &mut y, [1, 2], 0.25).unwrap();
        assert_eq!(y, [2.5, 6.5]);
        let mut up = [0.0; 8];
        unpool2(&dev, &y, &mut up, [1, 2], 1.0).unwrap();
        assert_eq!(up, [2.5, 2.5, 6.5, 6.5, 2.5, 2.5, 6.5, 6.5]);
        assert!(pool2(&dev, &x, &mut [0.0; 3], [1, 2], 1.0).is_err());
        // Two groups of four: each normalised to mean 0 and variance σ²/(σ² + ε).
        let x = [1.0f64, 2.0, 3.0, 4.0, -10.0, 0.0, 10.0, 20.0];
        let mut y = [0.0; 8];
        group_norm(&dev, &x, &mut y, 4, GROUP_NORM_EPS).unwrap();
        for (g, var) in y.chunks(4).zip([1.25, 125.0]) {
            let m: f64 = g.iter().sum::<f64>() / 4.0;
            let v: f64 = g.iter().map(|a| a * a).sum::<f64>() / 4.0;
            assert!(m.abs() < 1e-15);
            assert!((v - var / (var + GROUP_NORM_EPS)).abs() < 1e-12);
        }
        // sin and cos of 2π t w.
        let mut f = [0.0f64; 4];
        fourier_features(&[0.25], &[1.0, 0.5], &mut f).unwrap();
        let want = [
            1.0,
            (std::f64::consts::FRAC_PI_4).sin(),
            0.0,
            (std::f64::consts::FRAC_PI_4).cos(),
        ];
        for (a, b) in f.iter().zip(want) {
            assert!((a - b).abs() < 1e-15);
        }
    }
}
