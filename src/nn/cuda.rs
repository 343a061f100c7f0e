//! Launches of `kernels/nn.cu`; each function is the CUDA side of the same name in [`super::cpu`].

use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};

use super::kernels::{AdamHyper, Bcast, Binary, ConvSpec, ReduceSpec, Unary};
use super::tensor::{mixed, Ctx, Real};
use crate::device::cuda::NN;
use crate::device::geometry::{elementwise, one_block_each, tiles16};
use crate::device::CudaDevice;
use crate::error::{Error, Result};

fn device<T: Real>(ctx: &Ctx<T>) -> Result<&CudaDevice> {
    ctx.cuda().ok_or_else(mixed)
}

pub(super) fn func<T: Real>(ctx: &Ctx<T>, name: &str) -> Result<(CudaDevice, CudaFunction)> {
    let d = device(ctx)?;
    Ok((d.clone(), d.function(&NN, &format!("{name}_{}", T::NAME))?))
}

/// Refuses a launch when a buffer holds fewer than the `n` elements the kernel will touch.
fn check_bufs<T>(n: usize, bufs: &[&CudaSlice<T>]) -> Result<()> {
    match bufs.iter().find(|b| b.len() < n) {
        Some(b) => Err(Error::InvalidInput(format!(
            "a kernel over {n} elements was given a buffer of {}",
            b.len()
        ))),
        None => Ok(()),
    }
}

/// y = f(x).
pub fn unary<T: Real>(
    ctx: &Ctx<T>,
    op: Unary,
    x: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
    n: usize,
) -> Result<()> {
    check_bufs(n, &[x, &*y])?;
    let (d, f) = func(ctx, &format!("unary_{}", op.kernel_name()))?;
    let (n32, a) = (n as u32, T::from_f64(op.parameter()));
    let mut b = d.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(&n32).arg(&a);
    // SAFETY: matches unary_<f>_T(const T*, T*, unsigned, T); buffers hold n elements (checked).
    unsafe { b.launch(elementwise(n)?) }?;
    Ok(())
}

/// dx = f′(x)·dy.
pub fn unary_grad<T: Real>(
    ctx: &Ctx<T>,
    op: Unary,
    x: &CudaSlice<T>,
    y: &CudaSlice<T>,
    dy: &CudaSlice<T>,
    dx: &mut CudaSlice<T>,
    n: usize,
) -> Result<()> {
    check_bufs(n, &[x, y, dy, &*dx])?;
    let (d, f) = func(ctx, &format!("unary_grad_{}", op.kernel_name()))?;
    let (n32, a) = (n as u32, T::from_f64(op.parameter()));
    let mut b = d.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(dy).arg(dx).arg(&n32).arg(&a);
    // SAFETY: matches unary_grad_<f>_T; buffers hold n elements (checked).
    unsafe { b.launch(elementwise(n)?) }?;
    Ok(())
}

/// c = a ∘ b with broadcasting.
pub fn binary<T: Real>(
    ctx: &Ctx<T>,
    op: Binary,
    a: &CudaSlice<T>,
    bb: &CudaSlice<T>,
    c: &mut CudaSlice<T>,
    g: &Bcast,
    n: usize,
) -> Result<()> {
    check_bufs(n, &[&*c])?;
    let (d, f) = func(ctx, &format!("binary_{}", op.kernel_name()))?;
    let n32 = n as u32;
    let mut b = d.stream().launch_builder(&f);
    b.arg(a).arg(bb).arg(c).arg(&n32).arg(g);
    // SAFETY: matches binary_<op>_T; `g` was built from the tensors' shapes.
    unsafe { b.launch(elementwise(n)?) }?;
    Ok(())
}

/// Gradient of a ∘ b on the output's shape.
#[allow(clippy::too_many_arguments)]
pub fn binary_grad<T: Real>(
    ctx: &Ctx<T>,
    op: Binary,
    a: &CudaSlice<T>,
    bb: &CudaSlice<T>,
    dc: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
    g: &Bcast,
    wrt: i32,
    n: usize,
) -> Result<()> {
    check_bufs(n, &[dc, &*out])?;
    let (d, f) = func(ctx, &format!("binary_grad_{}", op.kernel_name()))?;
    let n32 = n as u32;
    let mut b = d.stream().launch_builder(&f);
    b.arg(a).arg(bb).arg(dc).arg(out).arg(&n32).arg(g).arg(&wrt);
    // SAFETY: matches binary_grad_<op>_T; `g` was built from the tensors' shapes.
    unsafe { b.launch(elementwise(n)?) }?;
    Ok(())
}

/// Sum onto target elements, one block each.
pub fn reduce_to<T: Real>(
    ctx: &Ctx<T>,
    x: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
    r: &ReduceSpec,
    scale: T,
) -> Result<()> {
    check_bufs(r.targets(), &[&*y])?;
    let (d, f) = func(ctx, "reduce_to")?;
    let mut b = d.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(r).arg(&scale);
    // SAFETY: matches reduce_to_T; one block per target element.
    unsafe { b.launch(one_block_each(r.targets())?) }?;
    Ok(())
}

/// C = op(A)·op(B) by 16×16 tiles.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    ctx: &Ctx<T>,
    a: &CudaSlice<T>,
    bm: &CudaSlice<T>,
    c: &mut CudaSlice<T>,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
) -> Result<()> {
    let cfg = tiles16(m, n)?;
    check_bufs(m * k, &[a])?;
    check_bufs(k * n, &[bm])?;
    check_bufs(m * n, &[&*c])?;
    let (d, f) = func(ctx, "matmul")?;
    let (m32, n32, k32, ta, tb) = (m as i32, n as i32, k as i32, ta as i32, tb as i32);
    let mut b = d.stream().launch_builder(&f);
    b.arg(a)
        .arg(bm)
        .arg(c)
        .arg(&m32)
        .arg(&n32)
        .arg(&k32)
        .arg(&ta)
        .arg(&tb);
    // SAFETY: matches matmul_T; the buffers hold the matrices (checked).
    unsafe { b.launch(cfg) }?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn conv_launch<T: Real>(
    ctx: &Ctx<T>,
    name: &str,
    a: &CudaSlice<T>,
    w: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
    c: &ConvSpec,
    lens: [usize; 3],
    cfg: LaunchConfig,
) -> Result<()> {
    check_bufs(lens[0], &[a])?;
    check_bufs(lens[1], &[w])?;
    check_bufs(lens[2], &[&*out])?;
    let (d, f) = func(ctx, name)?;
    let mut b = d.stream().launch_builder(&f);
    b.arg(a).arg(w).arg(out).arg(c);
    // SAFETY: matches conv2d*_T(const T*, const T*, T*, Conv); buffer sizes checked against `c`.
    unsafe { b.launch(cfg) }?;
    Ok(())
}

/// y = conv(x, w).
pub fn conv2d<T: Real>(
    ctx: &Ctx<T>,
    x: &CudaSlice<T>,
    w: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
    c: &ConvSpec,
) -> Result<()> {
    let [nx, nw, ny] = c.sizes()?;
    conv_launch(ctx, "conv2d", x, w, y, c, [nx, nw, ny], elementwise(ny)?)
}

/// ∂L/∂x.
pub fn conv2d_grad_input<T: Real>(
    ctx: &Ctx<T>,
    dy: &CudaSlice<T>,
    w: &CudaSlice<T>,
    dx: &mut CudaSlice<T>,
    c: &ConvSpec,
) -> Result<()> {
    let [nx, nw, ny] = c.sizes()?;
    let cfg = elementwise(nx)?;
    conv_launch(ctx, "conv2d_grad_input", dy, w, dx, c, [ny, nw, nx], cfg)
}

/// ∂L/∂w, one block per weight element.
pub fn conv2d_grad_weight<T: Real>(
    ctx: &Ctx<T>,
    dy: &CudaSlice<T>,
    x: &CudaSlice<T>,
    dw: &mut CudaSlice<T>,
    c: &ConvSpec,
) -> Result<()> {
    let [nx, nw, ny] = c.sizes()?;
    let cfg = one_block_each(nw)?;
    conv_launch(ctx, "conv2d_grad_weight", dy, x, dw, c, [ny, nx, nw], cfg)
}

/// Slab copy; `g` = [outer, len, src_stride, src_off, dst_stride, dst_off].
pub fn slab_copy<T: Real>(
    ctx: &Ctx<T>,
    src: &CudaSlice<T>,
    dst: &mut CudaSlice<T>,
    g: [usize; 6],
) -> Result<()> {
    let [o, l, ss, so, ds, dof] = g;
    let last = |stride: usize, off: usize| (o.max(1) - 1) * stride + off + l;
    if o > 0 && l > 0 && (last(ss, so) > src.len() || last(ds, dof) > dst.len()) {
        return Err(Error::InvalidInput(format!(
            "slab copy {g:?} outside buffers of {} and {}",
            src.len(),
            dst.len()
        )));
    }
    let cfg = elementwise(o.saturating_mul(l))?;
    let (d, f) = func(ctx, "slab_copy")?;
    let [o, l, ss, so, ds, dof] = g.map(|v| v as u32);
    let mut b = d.stream().launch_builder(&f);
    b.arg(src)
        .arg(dst)
        .arg(&o)
        .arg(&l)
        .arg(&ss)
        .arg(&so)
        .arg(&ds)
        .arg(&dof);
    // SAFETY: matches slab_copy_T; the slabs lie inside both buffers (checked).
    unsafe { b.launch(cfg) }?;
    Ok(())
}

/// Fused Adam/AdamW.
pub fn adam<T: Real>(
    ctx: &Ctx<T>,
    p: &mut CudaSlice<T>,
    g: &CudaSlice<T>,
    m: &mut CudaSlice<T>,
    v: &mut CudaSlice<T>,
    h: &AdamHyper,
    n: usize,
) -> Result<()> {
    check_bufs(n, &[g])?;
    check_bufs(n, &[&*p, &*m, &*v])?;
    let (d, f) = func(ctx, "adam")?;
    let n32 = n as u32;
    let mut b = d.stream().launch_builder(&f);
    b.arg(p).arg(g).arg(m).arg(v).arg(&n32).arg(h);
    // SAFETY: matches adam_T; every buffer holds n elements (checked).
    unsafe { b.launch(elementwise(n)?) }?;
    Ok(())
}
