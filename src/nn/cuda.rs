//! Launches of `kernels/nn.cu`; each function is the CUDA side of the same name in [`super::cpu`].

use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};

use super::kernels::{AdamHyper, Bcast, Binary, ConvSpec, ReduceSpec, Unary};
use super::tensor::{mixed, Ctx, Real};
use crate::device::cuda::NN;
use crate::device::CudaDevice;
use crate::error::Result;

const THREADS: u32 = 256;

fn device<T: Real>(ctx: &Ctx<T>) -> Result<&CudaDevice> {
    ctx.cuda().ok_or_else(mixed)
}

fn func<T: Real>(ctx: &Ctx<T>, name: &str) -> Result<(CudaDevice, CudaFunction)> {
    let d = device(ctx)?;
    Ok((d.clone(), d.function(&NN, &format!("{name}_{}", T::NAME))?))
}

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n as u32).div_ceil(THREADS).max(1), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn blocks(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.max(1) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
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
    let (d, f) = func(ctx, "unary")?;
    let (code, a) = op.code();
    let (n32, a) = (n as u32, T::from_f64(a));
    let mut b = d.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(&n32).arg(&code).arg(&a);
    // SAFETY: matches unary_T(const T*, T*, unsigned, int, T); buffers hold n elements.
    unsafe { b.launch(grid(n)) }?;
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
    let (d, f) = func(ctx, "unary_grad")?;
    let (code, a) = op.code();
    let (n32, a) = (n as u32, T::from_f64(a));
    let mut b = d.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(dy).arg(dx).arg(&n32).arg(&code).arg(&a);
    // SAFETY: matches unary_grad_T.
    unsafe { b.launch(grid(n)) }?;
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
    let (d, f) = func(ctx, "binary")?;
    let (n32, code) = (n as u32, op.code());
    let mut b = d.stream().launch_builder(&f);
    b.arg(a).arg(bb).arg(c).arg(&n32).arg(g).arg(&code);
    // SAFETY: matches binary_T.
    unsafe { b.launch(grid(n)) }?;
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
    let (d, f) = func(ctx, "binary_grad")?;
    let (n32, code) = (n as u32, op.code());
    let mut b = d.stream().launch_builder(&f);
    b.arg(a)
        .arg(bb)
        .arg(dc)
        .arg(out)
        .arg(&n32)
        .arg(g)
        .arg(&code)
        .arg(&wrt);
    // SAFETY: matches binary_grad_T.
    unsafe { b.launch(grid(n)) }?;
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
    let (d, f) = func(ctx, "reduce_to")?;
    let mut b = d.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(r).arg(&scale);
    // SAFETY: matches reduce_to_T; one block per target element.
    unsafe { b.launch(blocks(r.targets())) }?;
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
    let (d, f) = func(ctx, "matmul")?;
    let (m32, n32, k32, ta, tb) = (m as i32, n as i32, k as i32, ta as i32, tb as i32);
    let cfg = LaunchConfig {
        grid_dim: ((n as u32).div_ceil(16), (m as u32).div_ceil(16), 1),
        block_dim: (16, 16, 1),
        shared_mem_bytes: 0,
    };
    let mut b = d.stream().launch_builder(&f);
    b.arg(a)
        .arg(bm)
        .arg(c)
        .arg(&m32)
        .arg(&n32)
        .arg(&k32)
        .arg(&ta)
        .arg(&tb);
    // SAFETY: matches matmul_T.
    unsafe { b.launch(cfg) }?;
    Ok(())
}

fn conv_launch<T: Real>(
    ctx: &Ctx<T>,
    name: &str,
    a: &CudaSlice<T>,
    w: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
    c: &ConvSpec,
    cfg: LaunchConfig,
) -> Result<()> {
    let (d, f) = func(ctx, name)?;
    let mut b = d.stream().launch_builder(&f);
    b.arg(a).arg(w).arg(out).arg(c);
    // SAFETY: matches conv2d*_T(const T*, const T*, T*, Conv).
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
    conv_launch(
        ctx,
        "conv2d",
        x,
        w,
        y,
        c,
        grid((c.b * c.co * c.h * c.w) as usize),
    )
}

/// ∂L/∂x.
pub fn conv2d_grad_input<T: Real>(
    ctx: &Ctx<T>,
    dy: &CudaSlice<T>,
    w: &CudaSlice<T>,
    dx: &mut CudaSlice<T>,
    c: &ConvSpec,
) -> Result<()> {
    conv_launch(
        ctx,
        "conv2d_grad_input",
        dy,
        w,
        dx,
        c,
        grid((c.b * c.ci * c.h * c.w) as usize),
    )
}

/// ∂L/∂w, one block per weight element.
pub fn conv2d_grad_weight<T: Real>(
    ctx: &Ctx<T>,
    dy: &CudaSlice<T>,
    x: &CudaSlice<T>,
    dw: &mut CudaSlice<T>,
    c: &ConvSpec,
) -> Result<()> {
    conv_launch(
        ctx,
        "conv2d_grad_weight",
        dy,
        x,
        dw,
        c,
        blocks((c.co * c.ci * c.kh * c.kw) as usize),
    )
}

/// Slab copy; `g` = [outer, len, src_stride, src_off, dst_stride, dst_off].
pub fn slab_copy<T: Real>(
    ctx: &Ctx<T>,
    src: &CudaSlice<T>,
    dst: &mut CudaSlice<T>,
    g: [usize; 6],
) -> Result<()> {
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
    // SAFETY: matches slab_copy_T; the caller checked the slabs lie inside both buffers.
    unsafe { b.launch(grid(g[0] * g[1])) }?;
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
    let (d, f) = func(ctx, "adam")?;
    let n32 = n as u32;
    let mut b = d.stream().launch_builder(&f);
    b.arg(p).arg(g).arg(m).arg(v).arg(&n32).arg(h);
    // SAFETY: matches adam_T.
    unsafe { b.launch(grid(n)) }?;
    Ok(())
}
