//! CPU twins of `kernels/nn.cu`: the same functions, multi-threaded over independent output
//! elements; every reduction sums in a fixed order, independent of the thread count.

use super::kernels::{AdamHyper, Bcast, Binary, ConvSpec, ReduceSpec, Unary};
use super::tensor::Real;
use crate::device::CpuDevice;

fn sigm<T: Real>(x: T) -> T {
    T::from_f64(1.0) / (T::from_f64(1.0) + (-x).exp())
}

/// The twin of `unary_f`.
#[inline]
pub fn unary_f<T: Real>(op: Unary, x: T) -> T {
    let zero = T::zero();
    match op {
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Tanh => x.tanh(),
        Unary::Sigmoid => sigm(x),
        Unary::Softplus => (if x > zero { x } else { zero }) + (-x.abs()).exp().ln_1p(),
        Unary::LeakyRelu(a) => {
            if x > zero {
                x
            } else {
                T::from_f64(a) * x
            }
        }
        Unary::Silu => x * sigm(x),
        Unary::Scale(a) => T::from_f64(a) * x,
        Unary::Shift(a) => x + T::from_f64(a),
        Unary::Square => x * x,
    }
}

/// The twin of `unary_df`.
#[inline]
pub fn unary_df<T: Real>(op: Unary, x: T, y: T, dy: T) -> T {
    let one = T::from_f64(1.0);
    match op {
        Unary::Exp => dy * y,
        Unary::Log => dy / x,
        Unary::Tanh => dy * (one - y * y),
        Unary::Sigmoid => dy * y * (one - y),
        Unary::Softplus => dy * sigm(x),
        Unary::LeakyRelu(a) => {
            if x > T::zero() {
                dy
            } else {
                T::from_f64(a) * dy
            }
        }
        Unary::Silu => {
            let s = sigm(x);
            dy * (s + x * s * (one - s))
        }
        Unary::Scale(a) => T::from_f64(a) * dy,
        Unary::Shift(_) => dy,
        Unary::Square => T::from_f64(2.0) * x * dy,
    }
}

fn binary_f<T: Real>(op: Binary, a: T, b: T) -> T {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::First => a,
    }
}

fn binary_df<T: Real>(op: Binary, wrt: i32, a: T, b: T, dc: T) -> T {
    match (op, wrt) {
        (Binary::Add, _) | (Binary::Sub, 0) | (Binary::First, 0) => dc,
        (Binary::Sub, _) => -dc,
        (Binary::Mul, 0) => dc * b,
        (Binary::Mul, _) => dc * a,
        (Binary::Div, 0) => dc / b,
        (Binary::Div, _) => -dc * a / (b * b),
        (Binary::First, _) => T::zero(),
    }
}

/// y = f(x).
pub fn unary<T: Real>(dev: &CpuDevice, op: Unary, x: &[T], y: &mut [T]) {
    dev.for_chunks(1, y, None, |first, chunk, _| {
        for (o, &xi) in chunk.iter_mut().zip(&x[first..]) {
            *o = unary_f(op, xi);
        }
    });
}

/// dx = f′(x)·dy.
pub fn unary_grad<T: Real>(dev: &CpuDevice, op: Unary, x: &[T], y: &[T], dy: &[T], dx: &mut [T]) {
    dev.for_chunks(1, dx, None, |first, chunk, _| {
        for (i, o) in chunk.iter_mut().enumerate() {
            let j = first + i;
            *o = unary_df(op, x[j], y[j], dy[j]);
        }
    });
}

/// c = a ∘ b, broadcast by `g`.
pub fn binary<T: Real>(dev: &CpuDevice, op: Binary, a: &[T], b: &[T], c: &mut [T], g: &Bcast) {
    dev.for_chunks(1, c, None, |first, chunk, _| {
        for (i, o) in chunk.iter_mut().enumerate() {
            let (oa, ob) = g.offsets(first + i);
            *o = binary_f(op, a[oa], b[ob]);
        }
    });
}

/// Gradient of a ∘ b wrt a or b, on the output's shape.
#[allow(clippy::too_many_arguments)]
pub fn binary_grad<T: Real>(
    dev: &CpuDevice,
    op: Binary,
    a: &[T],
    b: &[T],
    dc: &[T],
    out: &mut [T],
    g: &Bcast,
    wrt: i32,
) {
    dev.for_chunks(1, out, None, |first, chunk, _| {
        for (i, o) in chunk.iter_mut().enumerate() {
            let (oa, ob) = g.offsets(first + i);
            *o = binary_df(op, wrt, a[oa], b[ob], dc[first + i]);
        }
    });
}

/// Sums onto each target element in a fixed (source) order.
pub fn reduce_to<T: Real>(dev: &CpuDevice, x: &[T], y: &mut [T], r: &ReduceSpec, scale: T) {
    dev.for_chunks(1, y, None, |first, chunk, _| {
        for (i, o) in chunk.iter_mut().enumerate() {
            let base = r.base(first + i);
            let mut acc = T::zero();
            for j in 0..r.count() {
                acc += x[base + r.reduced(j)];
            }
            *o = acc * scale;
        }
    });
}

/// C[m,n] = op(A)·op(B).
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    dev: &CpuDevice,
    a: &[T],
    b: &[T],
    c: &mut [T],
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
) {
    // B as [k][n] rows, so the inner loop runs over contiguous memory.
    let bt: Vec<T>;
    let brow: &[T] = if tb {
        bt = (0..k * n).map(|i| b[(i % n) * k + i / n]).collect();
        &bt
    } else {
        b
    };
    dev.for_chunks(n.max(1), c, None, |first_row, rows, _| {
        for (r, crow) in rows.chunks_mut(n).enumerate() {
            let i = first_row + r;
            crow.iter_mut().for_each(|x| *x = T::zero());
            for kk in 0..k {
                let aik = if ta { a[kk * m + i] } else { a[i * k + kk] };
                for (cij, &bkj) in crow.iter_mut().zip(&brow[kk * n..(kk + 1) * n]) {
                    *cij += aik * bkj;
                }
            }
        }
    });
}

fn wrap(v: i64, n: i64) -> usize {
    v.rem_euclid(n) as usize
}

fn allowed(mode: i32, dst: usize, src: usize) -> bool {
    match mode {
        0 => true,
        1 => src < dst,
        _ => src <= dst,
    }
}

/// `out[j] += w · src[(j + shift) mod W]` over one row, as two contiguous (vectorisable) runs.
#[inline]
fn axpy_shifted<T: Real>(out: &mut [T], src: &[T], w: T, shift: usize) {
    let width = out.len();
    let (head, tail) = out.split_at_mut(width - shift);
    for (o, &s) in head.iter_mut().zip(&src[shift..]) {
        *o += w * s;
    }
    for (o, &s) in tail.iter_mut().zip(&src[..shift]) {
        *o += w * s;
    }
}

/// Periodic (or causal) 2D convolution, parallel over (batch, output channel) planes.
pub fn conv2d<T: Real>(dev: &CpuDevice, x: &[T], w: &[T], y: &mut [T], c: &ConvSpec) {
    let (h, wd, kh, kw) = (c.h as usize, c.w as usize, c.kh as usize, c.kw as usize);
    let (ci_n, co_n, plane) = (c.ci as usize, c.co as usize, h * wd);
    dev.for_chunks(plane, y, None, |first, planes, _| {
        for (p, out) in planes.chunks_mut(plane).enumerate() {
            let (b, co) = ((first + p) / co_n, (first + p) % co_n);
            out.iter_mut().for_each(|v| *v = T::zero());
            for ci in 0..ci_n {
                let xp = &x[(b * ci_n + ci) * plane..(b * ci_n + ci + 1) * plane];
                let wp = &w[(co * ci_n + ci) * kh * kw..(co * ci_n + ci + 1) * kh * kw];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wt = wp[ky * kw + kx];
                        let (oy, ox) = (ky as i64 - (kh / 2) as i64, kx as i64 - (kw / 2) as i64);
                        for py in 0..h {
                            let sy = wrap(py as i64 + oy, h as i64);
                            let row = &mut out[py * wd..(py + 1) * wd];
                            let src = &xp[sy * wd..(sy + 1) * wd];
                            if c.mode == 0 {
                                axpy_shifted(row, src, wt, wrap(ox, wd as i64));
                            } else {
                                for (px, o) in row.iter_mut().enumerate() {
                                    let s = sy * wd + wrap(px as i64 + ox, wd as i64);
                                    if allowed(c.mode, py * wd + px, s) {
                                        *o += wt * xp[s];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// ∂L/∂x: the transposed convolution, parallel over (batch, input channel) planes.
pub fn conv2d_grad_input<T: Real>(dev: &CpuDevice, dy: &[T], w: &[T], dx: &mut [T], c: &ConvSpec) {
    let (h, wd, kh, kw) = (c.h as usize, c.w as usize, c.kh as usize, c.kw as usize);
    let (ci_n, co_n, plane) = (c.ci as usize, c.co as usize, h * wd);
    dev.for_chunks(plane, dx, None, |first, planes, _| {
        for (p, out) in planes.chunks_mut(plane).enumerate() {
            let (b, ci) = ((first + p) / ci_n, (first + p) % ci_n);
            out.iter_mut().for_each(|v| *v = T::zero());
            for co in 0..co_n {
                let dp = &dy[(b * co_n + co) * plane..(b * co_n + co + 1) * plane];
                let wp = &w[(co * ci_n + ci) * kh * kw..(co * ci_n + ci + 1) * kh * kw];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wt = wp[ky * kw + kx];
                        let (oy, ox) = (ky as i64 - (kh / 2) as i64, kx as i64 - (kw / 2) as i64);
                        for qy in 0..h {
                            let ty = wrap(qy as i64 - oy, h as i64);
                            let row = &mut out[qy * wd..(qy + 1) * wd];
                            if c.mode == 0 {
                                axpy_shifted(
                                    row,
                                    &dp[ty * wd..(ty + 1) * wd],
                                    wt,
                                    wrap(-ox, wd as i64),
                                );
                            } else {
                                for (qx, o) in row.iter_mut().enumerate() {
                                    let d = ty * wd + wrap(qx as i64 - ox, wd as i64);
                                    if allowed(c.mode, d, qy * wd + qx) {
                                        *o += wt * dp[d];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Σ a[j]·b[j] with eight interleaved partial sums combined in a fixed order: deterministic, and
/// free of the add-latency chain of a plain sequential sum.
#[inline]
fn dot8<T: Real>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let mut acc = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (&x, &y) in ra.iter().zip(rb) {
        acc += x * y;
    }
    acc
}

/// ∂L/∂w: one task per (co, ci) pair computing all its taps, each summed over batch and sites
/// in a fixed order.
pub fn conv2d_grad_weight<T: Real>(dev: &CpuDevice, dy: &[T], x: &[T], dw: &mut [T], c: &ConvSpec) {
    let (h, wd, kh, kw) = (c.h as usize, c.w as usize, c.kh as usize, c.kw as usize);
    let (ci_n, co_n, plane, bn) = (c.ci as usize, c.co as usize, h * wd, c.b as usize);
    let per = kh * kw;
    dev.for_heavy_chunks(per, dw, |first, chunk, _| {
        for (q, taps) in chunk.chunks_mut(per).enumerate() {
            let (co, ci) = ((first + q) / ci_n, (first + q) % ci_n);
            for (t, out) in taps.iter_mut().enumerate() {
                let (oy, ox) = (
                    (t / kw) as i64 - (kh / 2) as i64,
                    (t % kw) as i64 - (kw / 2) as i64,
                );
                let shift = wrap(ox, wd as i64);
                let mut acc = T::zero();
                for b in 0..bn {
                    let dp = &dy[(b * co_n + co) * plane..(b * co_n + co + 1) * plane];
                    let xp = &x[(b * ci_n + ci) * plane..(b * ci_n + ci + 1) * plane];
                    for py in 0..h {
                        let sy = wrap(py as i64 + oy, h as i64);
                        let (drow, src) =
                            (&dp[py * wd..(py + 1) * wd], &xp[sy * wd..(sy + 1) * wd]);
                        if c.mode == 0 {
                            acc += dot8(&drow[..wd - shift], &src[shift..])
                                + dot8(&drow[wd - shift..], &src[..shift]);
                        } else {
                            for (px, &d) in drow.iter().enumerate() {
                                let s = sy * wd + wrap(px as i64 + ox, wd as i64);
                                if allowed(c.mode, py * wd + px, s) {
                                    acc += d * xp[s];
                                }
                            }
                        }
                    }
                }
                *out = acc;
            }
        }
    });
}

/// Fused Adam/AdamW update (sequential: parameters are small).
pub fn adam<T: Real>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: &AdamHyper) {
    let f = T::from_f64;
    for i in 0..p.len() {
        let mut gi = g[i] * f(h.gscale);
        if h.decoupled == 0 {
            gi += f(h.weight_decay) * p[i];
        }
        let mi = f(h.beta1) * m[i] + f(1.0 - h.beta1) * gi;
        let vi = f(h.beta2) * v[i] + f(1.0 - h.beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        let mut step = (mi / f(h.bias1)) / ((vi / f(h.bias2)).sqrt() + f(h.eps));
        if h.decoupled != 0 {
            step += f(h.weight_decay) * p[i];
        }
        p[i] = p[i] - f(h.lr) * step;
    }
}
