//! The tail of a U-Net block as one op: y = SiLU(γ_c · GroupNorm(x + s_bc) + β_c), for x
//! `[B, C, …]`, a per-sample, per-channel shift s `[B, C]` (the time embedding) and the affine
//! parameters γ, β `[C]`. As a chain of tape ops this is five passes over the activations forward
//! and about as many backward, each writing a full tensor (and three broadcast gradients summed
//! back by generic reductions); fused, it is one pass forward and two backward. Kernels
//! `group_norm_silu`, `group_norm_silu_grad` and `channel_fold` in `kernels/unet.cu`; the CPU
//! twins are the functions here. Each value is computed by the chain's own formulas in the same
//! order, so on the CPU the forward values and ∂L/∂x equal the chain's bit for bit.

use cudarc::driver::PushKernelArg;

use super::super::cpu::{unary_df, unary_f};
use super::super::kernels::Unary;
use super::super::op::{Backward, Op};
use super::super::tensor::{mixed, Buffer, Real, Tensor};
use super::unet::{cuda_len, group_stats, kernel, sum8, GROUP_NORM_EPS};
use crate::device::geometry::{elementwise, one_block_each};
use crate::device::{simd, CpuDevice};
use crate::error::{Error, Result};

/// The extents of a fused block: `batch` samples of `channels` planes of `plane` values, in
/// `groups` groups of channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormSiluShape {
    /// Samples B.
    pub batch: usize,
    /// Channels C.
    pub channels: usize,
    /// Groups G (dividing C).
    pub groups: usize,
    /// Values per channel plane (H·W).
    pub plane: usize,
}

impl NormSiluShape {
    /// The extents of x `[B, C, …]` in `groups` groups; refuses a shape without two axes,
    /// channels that do not split into the groups, and sizes beyond the kernels' 32-bit indices.
    pub fn of(shape: &[usize], groups: usize) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "group norm + SiLU of {shape:?} in {groups} groups: {why}"
            ))
        };
        let (batch, channels) = match shape {
            [b, c, ..] => (*b, *c),
            _ => return Err(bad("x needs at least a batch and a channel axis")),
        };
        if groups == 0 || channels == 0 || channels % groups != 0 {
            return Err(bad(
                "the channels (axis 1) must split evenly into the groups",
            ));
        }
        let plane = shape[2..].iter().product::<usize>();
        let total = batch
            .checked_mul(channels)
            .and_then(|v| v.checked_mul(plane));
        if plane == 0 || batch == 0 || total.is_none_or(|t| t >= 1 << 31) {
            return Err(bad("empty, or more than 2^31 values"));
        }
        Ok(NormSiluShape {
            batch,
            channels,
            groups,
            plane,
        })
    }

    /// Values of x.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// Whether x is empty (never, for a shape from [`NormSiluShape::of`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channels per group.
    fn per_group(&self) -> usize {
        self.channels / self.groups
    }

    /// Refuses an inconsistent shape (its fields are public) and buffers whose lengths are not
    /// x, s, γ, β of this shape.
    fn check(&self, [x, s, gamma, beta]: [usize; 4]) -> Result<()> {
        NormSiluShape::of(&[self.batch, self.channels, self.plane], self.groups)?;
        let want = [
            self.len(),
            self.batch * self.channels,
            self.channels,
            self.channels,
        ];
        if [x, s, gamma, beta] != want {
            return Err(Error::InvalidInput(format!(
                "group norm + SiLU of {self:?}: x, s, γ, β need {want:?} values; got {:?}",
                [x, s, gamma, beta]
            )));
        }
        Ok(())
    }
}

/// One channel's row of shifted values v = x + s: n = T((v − m)·r), then y = SiLU(n·γ + β), in the
/// chain's operations (the f64 normalisation rounded once, a T multiply and add).
#[inline(always)]
fn forward_row<T: Real>(v: &[T], (gamma, beta): (T, T), (m, r): (f64, f64), [n, y]: [&mut [T]; 2]) {
    for ((yi, ni), &vi) in y.iter_mut().zip(n.iter_mut()).zip(v) {
        *ni = T::from_f64((vi.to_f64() - m) * r);
        *yi = unary_f(Unary::Silu, *ni * gamma + beta);
    }
}

simd::dispatch! {
    /// [`forward_row`] compiled for `level`.
    fn forward_row_at = forward_row<T: Real>(v: &[T], gb: (T, T), mr: (f64, f64), ny: [&mut [T]; 2])
}

/// The shifted values v = x + s of group `g` (sample g / G) into `v`.
fn shifted<T: Real>(x: &[T], s: &[T], shape: &NormSiluShape, g: usize, v: &mut [T]) {
    let (cpg, plane) = (shape.per_group(), shape.plane);
    let base = g * cpg;
    for (j, row) in v.chunks_mut(plane).enumerate() {
        let src = &x[(base + j) * plane..(base + j + 1) * plane];
        let sj = s[base + j];
        for (o, &xi) in row.iter_mut().zip(src) {
            *o = xi + sj;
        }
    }
}

/// CPU twin of `group_norm_silu`: y = SiLU(γ_c · GroupNorm(x + s_bc) + β_c), and the normalised
/// values n (what the backward pass reads).
pub fn group_norm_silu<T: Real>(
    dev: &CpuDevice,
    [x, s, gamma, beta]: [&[T]; 4],
    [y, n]: [&mut [T]; 2],
    shape: &NormSiluShape,
    eps: f64,
) -> Result<()> {
    shape.check([x.len(), s.len(), gamma.len(), beta.len()])?;
    check_len("y", y.len(), shape.len())?;
    let (cpg, plane, level) = (shape.per_group(), shape.plane, simd::level());
    let len = cpg * plane;
    dev.for_chunks(len, y, Some(n), |first, ys, ns| {
        let Some(ns) = ns else { return };
        let mut v = vec![T::zero(); len];
        for (k, (yg, ng)) in ys.chunks_mut(len).zip(ns.chunks_mut(len)).enumerate() {
            let g = first + k;
            shifted(x, s, shape, g, &mut v);
            let stats = group_stats(&v, eps);
            let rows = yg.chunks_mut(plane).zip(ng.chunks_mut(plane));
            for (j, ((yr, nr), vr)) in rows.zip(v.chunks(plane)).enumerate() {
                let c = (g * cpg + j) % shape.channels;
                forward_row_at(level, vr, (gamma[c], beta[c]), stats, [nr, yr]);
            }
        }
    })
}

/// One channel's first backward pass: da = SiLU′(a)·dy at a = n·γ + β, then dn = da·γ into
/// `dn`; returns Σ da and Σ da·n (this channel's parts of ∂L/∂β and ∂L/∂γ), summed in eight
/// lanes as [`sum8`] sums, in the same loop.
#[inline(always)]
fn backward_row<T: Real>(n: &[T], dy: &[T], (gamma, beta): (T, T), dn: &mut [T]) -> [f64; 2] {
    let mut lanes = [[0.0f64; 8]; 2];
    let mut step = |k: usize, d: &mut T, ni: T, di: T| {
        let a = ni * gamma + beta;
        let da = unary_df(Unary::Silu, a, a, di);
        lanes[0][k] += da.to_f64();
        lanes[1][k] += da.to_f64() * ni.to_f64();
        *d = da * gamma;
    };
    let (mut dc, nc, yc) = (
        dn.chunks_exact_mut(8),
        n.chunks_exact(8),
        dy.chunks_exact(8),
    );
    let (nr, yr) = (nc.remainder(), yc.remainder());
    for ((d8, n8), y8) in (&mut dc).zip(nc).zip(yc) {
        for k in 0..8 {
            step(k, &mut d8[k], n8[k], y8[k]);
        }
    }
    for (k, ((d, &ni), &di)) in dc.into_remainder().iter_mut().zip(nr).zip(yr).enumerate() {
        step(k, d, ni, di);
    }
    lanes.map(|l| ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])))
}

simd::dispatch! {
    /// [`backward_row`] compiled for `level`.
    fn backward_row_at = backward_row<T: Real>(n: &[T], dy: &[T], gb: (T, T), dn: &mut [T]) -> [f64; 2]
}

/// The group-norm gradient of one row in place, dn → r (dn − mean dn − n · mean(dn n)) (the
/// formula of `group_norm_grad`); returns the row's Σ ∂L/∂x.
#[inline(always)]
fn normalise_grad_row<T: Real>(n: &[T], (r, mdn, mdnn): (f64, f64, f64), d: &mut [T]) -> f64 {
    for (di, &ni) in d.iter_mut().zip(n) {
        *di = T::from_f64(r * (di.to_f64() - mdn - ni.to_f64() * mdnn));
    }
    sum8(d.len(), |i| d[i].to_f64())
}

simd::dispatch! {
    /// [`normalise_grad_row`] compiled for `level`.
    fn normalise_grad_row_at = normalise_grad_row<T: Real>(n: &[T], coeffs: (f64, f64, f64), d: &mut [T]) -> f64
}

/// CPU twin of `group_norm_silu_grad`: ∂L/∂x into `dx`, and per (sample, channel) the sums
/// `parts[(b·C + c)·3 + k]` = Σ ∂L/∂a, Σ ∂L/∂a · n, Σ ∂L/∂x over the plane (k = 0, 1, 2: the
/// parts of ∂L/∂β, ∂L/∂γ and ∂L/∂s, folded by [`channel_fold`]).
pub fn group_norm_silu_grad<T: Real>(
    dev: &CpuDevice,
    [x, s, gamma, beta, n, dy]: [&[T]; 6],
    dx: &mut [T],
    parts: &mut [f64],
    shape: &NormSiluShape,
    eps: f64,
) -> Result<()> {
    shape.check([x.len(), s.len(), gamma.len(), beta.len()])?;
    for (what, have) in [("n", n.len()), ("dy", dy.len()), ("dx", dx.len())] {
        check_len(what, have, shape.len())?;
    }
    check_len("parts", parts.len(), 3 * shape.batch * shape.channels)?;
    let (cpg, plane, level) = (shape.per_group(), shape.plane, simd::level());
    let len = cpg * plane;
    dev.for_paired_chunks((len, dx), (3 * cpg, parts), |first, dxs, ps| {
        let mut v = vec![T::zero(); len];
        for (k, (dg, pg)) in dxs.chunks_mut(len).zip(ps.chunks_mut(3 * cpg)).enumerate() {
            let g = first + k;
            shifted(x, s, shape, g, &mut v);
            let (_, r) = group_stats(&v, eps);
            let (ng, dyg) = (&n[g * len..(g + 1) * len], &dy[g * len..(g + 1) * len]);
            // Pass 1: dn into dx, and the channels' sums.
            for (j, dr) in dg.chunks_mut(plane).enumerate() {
                let c = (g * cpg + j) % shape.channels;
                let rows = j * plane..(j + 1) * plane;
                let (nr, dyr) = (&ng[rows.clone()], &dyg[rows]);
                let sums = backward_row_at(level, nr, dyr, (gamma[c], beta[c]), dr);
                pg[3 * j..3 * j + 2].copy_from_slice(&sums);
            }
            // The group's means over all its values in order, as group_norm_grad takes them.
            let mdn = sum8(len, |i| dg[i].to_f64()) / len as f64;
            let mdnn = sum8(len, |i| dg[i].to_f64() * ng[i].to_f64()) / len as f64;
            // Pass 2: the group-norm gradient in place.
            for (j, dr) in dg.chunks_mut(plane).enumerate() {
                let nr = &ng[j * plane..(j + 1) * plane];
                pg[3 * j + 2] = normalise_grad_row_at(level, nr, (r, mdn, mdnn), dr);
            }
        }
    })
}

/// CPU twin of `channel_fold`: from the per-(sample, channel) sums of [`group_norm_silu_grad`],
/// ∂L/∂β_c and ∂L/∂γ_c summed over the samples in order, and ∂L/∂s_bc.
pub fn channel_fold<T: Real>(
    parts: &[f64],
    [dgamma, dbeta, ds]: [&mut [T]; 3],
    batch: usize,
) -> Result<()> {
    let channels = dgamma.len();
    check_len("parts", parts.len(), 3 * batch * channels)?;
    check_len("dbeta", dbeta.len(), channels)?;
    check_len("ds", ds.len(), batch * channels)?;
    for c in 0..channels {
        let (mut b_sum, mut g_sum) = (0.0f64, 0.0f64);
        for b in 0..batch {
            b_sum += parts[3 * (b * channels + c)];
            g_sum += parts[3 * (b * channels + c) + 1];
        }
        dbeta[c] = T::from_f64(b_sum);
        dgamma[c] = T::from_f64(g_sum);
    }
    for (d, p) in ds.iter_mut().zip(parts.chunks_exact(3)) {
        *d = T::from_f64(p[2]);
    }
    Ok(())
}

fn check_len(what: &str, have: usize, need: usize) -> Result<()> {
    if have != need {
        return Err(Error::InvalidInput(format!(
            "group norm + SiLU: {what} holds {have} values where {need} are needed"
        )));
    }
    Ok(())
}

/// The kernels' extents: groups in all, channels per group, plane, channels.
fn extents(shape: &NormSiluShape) -> [u32; 4] {
    [
        (shape.batch * shape.groups) as u32,
        shape.per_group() as u32,
        shape.plane as u32,
        shape.channels as u32,
    ]
}

/// Pushes the arguments both block kernels end with: the extents, then ε.
fn push_extents<'a>(l: &mut cudarc::driver::LaunchArgs<'a>, e: &'a [u32; 4]) {
    for v in e {
        l.arg(v);
    }
    l.arg(&GROUP_NORM_EPS);
}

/// y = SiLU(γ_c · GroupNorm(x + s_bc) + β_c) for x `[B, C, …]`, s `[B, C]`, γ, β `[C]`, in
/// `.0` groups of channels. Outputs y and the normalised values n.
pub struct GroupNormSilu(pub usize);

impl GroupNormSilu {
    fn shape_of<T: Real>(&self, x: &[&Tensor<T>]) -> Result<NormSiluShape> {
        let shape = NormSiluShape::of(x[0].shape(), self.0)?;
        let (b, c) = (shape.batch, shape.channels);
        if x[1].shape() != [b, c] || x[2].shape() != [c] || x[3].shape() != [c] {
            return Err(Error::InvalidInput(format!(
                "group norm + SiLU of x {:?}: s must be [{b}, {c}], γ and β [{c}]; got {:?}, {:?}, {:?}",
                x[0].shape(),
                x[1].shape(),
                x[2].shape(),
                x[3].shape()
            )));
        }
        Ok(shape)
    }
}

impl<T: Real> Op<T> for GroupNormSilu {
    fn name(&self) -> &str {
        "group_norm_silu"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        if x.len() != 4 {
            return Err(Error::InvalidInput(
                "group norm + SiLU takes x, s, γ, β".into(),
            ));
        }
        let shape = self.shape_of(x)?;
        let ctx = x[0].ctx();
        let (mut y, mut n) = (ctx.empty(x[0].shape())?, ctx.empty(x[0].shape())?);
        match (
            [x[0].buf(), x[1].buf(), x[2].buf(), x[3].buf()],
            y.buf_mut(),
            n.buf_mut(),
        ) {
            (
                [Buffer::Cpu(a), Buffer::Cpu(s), Buffer::Cpu(g), Buffer::Cpu(b)],
                Buffer::Cpu(yo),
                Buffer::Cpu(no),
            ) => {
                let dev = ctx.cpu().ok_or_else(mixed)?;
                group_norm_silu(dev, [a, s, g, b], [yo, no], &shape, GROUP_NORM_EPS)?
            }
            (
                [Buffer::Cuda(a), Buffer::Cuda(s), Buffer::Cuda(g), Buffer::Cuda(b)],
                Buffer::Cuda(yo),
                Buffer::Cuda(no),
            ) => {
                shape.check([a.len(), s.len(), g.len(), b.len()])?;
                cuda_len(yo, shape.len())?;
                cuda_len(no, shape.len())?;
                let e = extents(&shape);
                let (stream, f) = kernel(ctx, "group_norm_silu")?;
                let mut l = stream.launch_builder(&f);
                l.arg(a).arg(s).arg(g).arg(b).arg(yo).arg(no);
                push_extents(&mut l, &e);
                // SAFETY: the argument list is group_norm_silu's (kernels/unet.cu); every buffer
                // holds what the shape says (checked above).
                unsafe { l.launch(one_block_each(e[0] as usize)?) }?;
            }
            _ => return Err(mixed()),
        }
        Ok(vec![y, n])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        if bw.grads.get(1).copied().flatten().is_some() {
            return Err(Error::InvalidInput(
                "group norm + SiLU: its second output (the normalised values) is for the \
                 backward pass and takes no gradient"
                    .into(),
            ));
        }
        let inputs: Vec<&Tensor<T>> = (0..4).map(|i| bw.input(i)).collect();
        let shape = self.shape_of(&inputs)?;
        let (n, dy) = (bw.output(1), bw.grad(0)?);
        let ctx = inputs[0].ctx();
        let mut dx = ctx.empty(inputs[0].shape())?;
        let (b, c) = (shape.batch, shape.channels);
        let (mut dgamma, mut dbeta, mut ds) =
            (ctx.empty(&[c])?, ctx.empty(&[c])?, ctx.empty(&[b, c])?);
        let bufs = [
            inputs[0].buf(),
            inputs[1].buf(),
            inputs[2].buf(),
            inputs[3].buf(),
            n.buf(),
            dy.buf(),
        ];
        match (
            bufs,
            dx.buf_mut(),
            [dgamma.buf_mut(), dbeta.buf_mut(), ds.buf_mut()],
        ) {
            (
                [Buffer::Cpu(a), Buffer::Cpu(s), Buffer::Cpu(g), Buffer::Cpu(be), Buffer::Cpu(nn), Buffer::Cpu(d)],
                Buffer::Cpu(dxo),
                [Buffer::Cpu(go), Buffer::Cpu(bo), Buffer::Cpu(so)],
            ) => {
                let dev = ctx.cpu().ok_or_else(mixed)?;
                let mut parts = vec![0.0f64; 3 * b * c];
                group_norm_silu_grad(
                    dev,
                    [a, s, g, be, nn, d],
                    dxo,
                    &mut parts,
                    &shape,
                    GROUP_NORM_EPS,
                )?;
                channel_fold(&parts, [go, bo, so], b)?;
            }
            (
                [Buffer::Cuda(a), Buffer::Cuda(s), Buffer::Cuda(g), Buffer::Cuda(be), Buffer::Cuda(nn), Buffer::Cuda(d)],
                Buffer::Cuda(dxo),
                [Buffer::Cuda(go), Buffer::Cuda(bo), Buffer::Cuda(so)],
            ) => {
                shape.check([a.len(), s.len(), g.len(), be.len()])?;
                for t in [nn, d, &*dxo] {
                    cuda_len(t, shape.len())?;
                }
                cuda_len(go, c)?;
                cuda_len(bo, c)?;
                cuda_len(so, b * c)?;
                let dev = ctx.cuda().ok_or_else(mixed)?;
                let mut parts = dev.stream().alloc_zeros::<f64>(3 * b * c)?;
                let e = extents(&shape);
                let (stream, f) = kernel(ctx, "group_norm_silu_grad")?;
                let mut l = stream.launch_builder(&f);
                l.arg(a)
                    .arg(s)
                    .arg(g)
                    .arg(be)
                    .arg(nn)
                    .arg(d)
                    .arg(dxo)
                    .arg(&mut parts);
                push_extents(&mut l, &e);
                // SAFETY: the argument list is group_norm_silu_grad's (kernels/unet.cu); every
                // buffer holds what the shape says (checked above), parts 3·B·C values.
                unsafe { l.launch(one_block_each(e[0] as usize)?) }?;
                let (stream, f) = kernel(ctx, "channel_fold")?;
                let (b32, c32) = (b as u32, c as u32);
                let mut l = stream.launch_builder(&f);
                l.arg(&parts).arg(go).arg(bo).arg(so).arg(&b32).arg(&c32);
                // SAFETY: channel_fold's argument list; parts holds 3·B·C values, γ and β C,
                // s B·C (checked above).
                unsafe { l.launch(elementwise(b * c)?) }?;
            }
            _ => return Err(mixed()),
        }
        Ok(vec![Some(dx), Some(ds), Some(dgamma), Some(dbeta)])
    }
}
