//! CPU twins of `kernels/nn.cu`: the same functions, multi-threaded over independent output
//! elements; every reduction sums in a fixed order, independent of the thread count.

use super::kernels::{check_len, AdamHyper, Bcast, Binary, ConvSpec, ReduceSpec, Unary};
use super::tensor::Real;
use crate::device::{simd, CpuDevice};
use crate::error::{Error, Result};

mod elementary;
mod lanes;
pub use elementary::{exp_f32, tanh_f32};

fn sigm<T: Real>(x: T) -> T {
    T::from_f64(1.0) / (T::from_f64(1.0) + (-x).exp())
}

/// The twin of `unary_f`.
#[inline(always)]
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
#[inline(always)]
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

#[inline(always)]
fn binary_f<T: Real>(op: Binary, a: T, b: T) -> T {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::First => a,
    }
}

#[inline(always)]
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

/// Runs `$body` with `$o` bound to a closure returning `$op`, one match arm per variant. Called
/// inside a loop, `unary_f(o(), x)` then folds to that variant's formula (the tiny closure is
/// inlined and constructs a known variant; a captured enum value would be loaded at run time)
/// and the loop is a plain loop the compiler vectorises, instead of a jump per element.
macro_rules! specialise_unary {
    ($op:expr, $o:ident => $body:expr) => {
        match $op {
            Unary::Exp => {
                let $o = move || Unary::Exp;
                $body
            }
            Unary::Log => {
                let $o = move || Unary::Log;
                $body
            }
            Unary::Tanh => {
                let $o = move || Unary::Tanh;
                $body
            }
            Unary::Sigmoid => {
                let $o = move || Unary::Sigmoid;
                $body
            }
            Unary::Softplus => {
                let $o = move || Unary::Softplus;
                $body
            }
            Unary::LeakyRelu(a) => {
                let $o = move || Unary::LeakyRelu(a);
                $body
            }
            Unary::Silu => {
                let $o = move || Unary::Silu;
                $body
            }
            Unary::Scale(a) => {
                let $o = move || Unary::Scale(a);
                $body
            }
            Unary::Shift(a) => {
                let $o = move || Unary::Shift(a);
                $body
            }
            Unary::Square => {
                let $o = move || Unary::Square;
                $body
            }
        }
    };
}

/// [`specialise_unary`] for [`Binary`].
macro_rules! specialise_binary {
    ($op:expr, $o:ident => $body:expr) => {
        match $op {
            Binary::Add => {
                let $o = move || Binary::Add;
                $body
            }
            Binary::Sub => {
                let $o = move || Binary::Sub;
                $body
            }
            Binary::Mul => {
                let $o = move || Binary::Mul;
                $body
            }
            Binary::Div => {
                let $o = move || Binary::Div;
                $body
            }
            Binary::First => {
                let $o = move || Binary::First;
                $body
            }
        }
    };
}

// After the macros above, which it uses.
pub mod stack;

/// y = f(x) for one row, one loop per function (so it folds into the loop, which vectorises:
/// exp and tanh in f32 are branch-free, [`elementary`]).
#[inline(always)]
fn unary_rows<T: Real>(op: Unary, x: &[T], y: &mut [T]) {
    specialise_unary!(op, o => for (out, &xi) in y.iter_mut().zip(x) {
        *out = unary_f(o(), xi);
    })
}

simd::dispatch! {
    /// [`unary_rows`] compiled for `level`.
    fn unary_rows_at = unary_rows<T: Real>(op: Unary, x: &[T], y: &mut [T])
}

/// dx = f′(x, y)·dy for one row.
#[inline(always)]
fn unary_grad_rows<T: Real>(op: Unary, [x, y, dy]: [&[T]; 3], dx: &mut [T]) {
    specialise_unary!(op, o => for (((out, &xi), &yi), &di) in dx.iter_mut().zip(x).zip(y).zip(dy) {
        *out = unary_df(o(), xi, yi, di);
    })
}

simd::dispatch! {
    /// [`unary_grad_rows`] compiled for `level`.
    fn unary_grad_rows_at = unary_grad_rows<T: Real>(op: Unary, xyd: [&[T]; 3], dx: &mut [T])
}

/// y = f(x).
pub fn unary<T: Real>(dev: &CpuDevice, op: Unary, x: &[T], y: &mut [T]) -> Result<()> {
    check_len("unary input", x.len(), y.len())?;
    dev.for_chunks(1, y, None, |first, chunk, _| {
        unary_rows_at(simd::level(), op, &x[first..first + chunk.len()], chunk)
    })
}

/// dx = f′(x)·dy.
pub fn unary_grad<T: Real>(
    dev: &CpuDevice,
    op: Unary,
    x: &[T],
    y: &[T],
    dy: &[T],
    dx: &mut [T],
) -> Result<()> {
    let n = dx.len();
    check_len("unary_grad x", x.len(), n)?;
    check_len("unary_grad y", y.len(), n)?;
    check_len("unary_grad dy", dy.len(), n)?;
    dev.for_chunks(1, dx, None, |first, chunk, _| {
        let at = first..first + chunk.len();
        let rows = [&x[at.clone()], &y[at.clone()], &dy[at]];
        unary_grad_rows_at(simd::level(), op, rows, chunk)
    })
}

/// One row of a broadcast: out[t] = f(a[oa + t·sa], b[ob + t·sb]) with the strides 0 or 1, the
/// three patterns of contiguous and broadcast inputs as their own loops.
#[inline(always)]
fn broadcast_row<T: Real>(
    out: &mut [T],
    a: &[T],
    b: &[T],
    (oa, sa): (usize, usize),
    (ob, sb): (usize, usize),
    f: impl Fn(T, T, usize) -> T,
) {
    let len = out.len();
    match (sa, sb) {
        (1, 1) => {
            let (ar, br) = (&a[oa..oa + len], &b[ob..ob + len]);
            for (t, ((o, &x), &y)) in out.iter_mut().zip(ar).zip(br).enumerate() {
                *o = f(x, y, t);
            }
        }
        (1, 0) => {
            let y = b[ob];
            for (t, (o, &x)) in out.iter_mut().zip(&a[oa..oa + len]).enumerate() {
                *o = f(x, y, t);
            }
        }
        (0, 1) => {
            let x = a[oa];
            for (t, (o, &y)) in out.iter_mut().zip(&b[ob..ob + len]).enumerate() {
                *o = f(x, y, t);
            }
        }
        _ => {
            for (t, o) in out.iter_mut().enumerate() {
                *o = f(a[oa + t * sa], b[ob + t * sb], t);
            }
        }
    }
}

/// c = a ∘ b, broadcast by `g`; row by row, one offset computation per row.
pub fn binary<T: Real>(
    dev: &CpuDevice,
    op: Binary,
    a: &[T],
    b: &[T],
    c: &mut [T],
    g: &Bcast,
) -> Result<()> {
    check_bcast(g, a.len(), b.len(), c.len())?;
    let (len, sa, sb) = g.row();
    specialise_binary!(op, o => dev.for_chunks(len, c, None, |first_row, rows, _| {
        for (r, out) in rows.chunks_mut(len).enumerate() {
            let (oa, ob) = g.offsets((first_row + r) * len);
            broadcast_row(out, a, b, (oa, sa), (ob, sb), |x, y, _| binary_f(o(), x, y));
        }
    }))
}

/// The buffers hold what the broadcast `g` reads and writes.
fn check_bcast(g: &Bcast, a: usize, b: usize, out: usize) -> Result<()> {
    let (n, ra, rb) = g.extents();
    if out != n {
        return Err(Error::InvalidInput(format!(
            "broadcast output of {out} values for a shape of {n}"
        )));
    }
    check_len("broadcast input a", a, ra)?;
    check_len("broadcast input b", b, rb)
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
) -> Result<()> {
    check_bcast(g, a.len(), b.len(), out.len())?;
    check_len("binary_grad dc", dc.len(), out.len())?;
    let (len, sa, sb) = g.row();
    specialise_binary!(op, o => dev.for_chunks(len, out, None, |first_row, rows, _| {
        for (r, o_row) in rows.chunks_mut(len).enumerate() {
            let start = (first_row + r) * len;
            let (oa, ob) = g.offsets(start);
            let dcr = &dc[start..start + len];
            broadcast_row(o_row, a, b, (oa, sa), (ob, sb), |x, y, t| {
                binary_df(o(), wrt, x, y, dcr[t])
            });
        }
    }))
}

/// Sums onto each target element in a fixed (source) order, accumulating in f64.
pub fn reduce_to<T: Real>(
    dev: &CpuDevice,
    x: &[T],
    y: &mut [T],
    r: &ReduceSpec,
    scale: T,
) -> Result<()> {
    if y.len() != r.targets() {
        return Err(Error::InvalidInput(format!(
            "reduction onto {} targets given {} outputs",
            r.targets(),
            y.len()
        )));
    }
    check_len("reduction input", x.len(), r.source_extent())?;
    let scale = scale.to_f64();
    dev.for_chunks(1, y, None, |first, chunk, _| {
        for (i, o) in chunk.iter_mut().enumerate() {
            let mut acc = 0.0;
            r.for_each_reduced(r.base(first + i), |off| acc += x[off].to_f64());
            *o = T::from_f64(acc * scale);
        }
    })
}

/// Products summed in `T` before they are added in f64 (as `TILE` in `matmul` of nn.cu).
pub const MATMUL_LEAF: usize = 16;

/// C (m × n) = op(A)·op(B).
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
) -> Result<()> {
    check_len("matmul A", a.len(), m.saturating_mul(k))?;
    check_len("matmul B", b.len(), k.saturating_mul(n))?;
    if c.len() != m.saturating_mul(n) {
        return Err(Error::InvalidInput(format!(
            "matmul output of {} values for {m} × {n}",
            c.len()
        )));
    }
    // B as [k][n] rows, so the inner loop runs over contiguous memory.
    let bt: Vec<T>;
    let brow: &[T] = if tb {
        // Row kk of the [k][n] copy is column kk of B's [n][k] rows: one pass, no divisions.
        let mut t = vec![T::zero(); k * n];
        for (j, col) in b.chunks_exact(k.max(1)).take(n).enumerate() {
            for (kk, &v) in col.iter().enumerate() {
                t[kk * n + j] = v;
            }
        }
        bt = t;
        &bt
    } else {
        b
    };
    dev.for_chunks(n.max(1), c, None, |first_row, rows, _| {
        let spec = MatmulRows {
            a,
            b: brow,
            first_row,
            m,
            n,
            k,
            ta,
        };
        matmul_rows_at(simd::level(), &spec, rows)
    })
}

/// The operands of a run of output rows of [`matmul`]: A (transposed when `ta`), B as `[k][n]`
/// rows, and the first row's index.
struct MatmulRows<'a, T> {
    a: &'a [T],
    b: &'a [T],
    first_row: usize,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
}

/// Rows `first_row…` of C. Each entry sums k products: in `T` over leaves of MATMUL_LEAF terms,
/// the leaves in f64, so a long sum (a weight gradient over a large batch) keeps f64 accuracy in
/// f32. Every output column is its own chain of additions, so the SIMD variants (which vectorise
/// across columns) compute the same bits.
#[inline(always)]
fn matmul_rows<T: Real>(s: &MatmulRows<'_, T>, rows: &mut [T]) {
    let (m, n, k) = (s.m, s.n, s.k);
    let (mut wide, mut part) = (vec![0.0f64; n], vec![T::zero(); n]);
    for (r, crow) in rows.chunks_mut(n).enumerate() {
        let i = s.first_row + r;
        wide.iter_mut().for_each(|x| *x = 0.0);
        for k0 in (0..k).step_by(MATMUL_LEAF) {
            part.iter_mut().for_each(|x| *x = T::zero());
            for kk in k0..k.min(k0 + MATMUL_LEAF) {
                let aik = if s.ta {
                    s.a[kk * m + i]
                } else {
                    s.a[i * k + kk]
                };
                for (cij, &bkj) in part.iter_mut().zip(&s.b[kk * n..(kk + 1) * n]) {
                    *cij += aik * bkj;
                }
            }
            for (w, &p) in wide.iter_mut().zip(&part) {
                *w += p.to_f64();
            }
        }
        for (cij, &w) in crow.iter_mut().zip(&wide) {
            *cij = T::from_f64(w);
        }
    }
}

simd::dispatch! {
    /// [`matmul_rows`] compiled for `level`.
    fn matmul_rows_at = matmul_rows<T: Real>(s: &MatmulRows<'_, T>, rows: &mut [T])
}

fn wrap(v: i64, n: i64) -> usize {
    v.rem_euclid(n) as usize
}

/// Whether output `dst` reads `src` under causal `mode` (1 exclusive, 2 inclusive; 0 and the
/// zero padding 3 mask by position, not by order).
fn allowed(mode: i32, dst: usize, src: usize) -> bool {
    match mode {
        1 => src < dst,
        2 => src <= dst,
        _ => true,
    }
}

/// dst = src rotated left by `by` (dst[i] = src[(i + by) mod n]): two contiguous copies.
#[inline(always)]
fn rotate_into<T: Copy>(dst: &mut [T], src: &[T], by: usize) {
    let n = src.len();
    copy_short(&mut dst[..n - by], &src[by..]);
    copy_short(&mut dst[n - by..], &src[..by]);
}

/// dst = src; short copies (the rows and planes of small lattices) as fixed-size moves the
/// compiler inlines, since a call to `memcpy` costs more than copying a few values.
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    if n > 128 {
        dst.copy_from_slice(src);
        return;
    }
    let mut i = 0;
    macro_rules! piece {
        ($w:literal) => {
            if n - i >= $w {
                let d: &mut [T; $w] = (&mut dst[i..i + $w]).try_into().expect("piece");
                *d = src[i..i + $w].try_into().expect("piece");
                i += $w;
            }
        };
    }
    piece!(64);
    piece!(32);
    piece!(16);
    piece!(8);
    piece!(4);
    piece!(2);
    piece!(1);
    debug_assert_eq!(i, n);
}

/// Periodic im2col of one sample: `col[(c·KH + ky)·KW + kx][site]` = the input that tap (ky, kx)
/// of channel c reads for output `site` (0 where the causal mask forbids it). With `inverse`, the
/// transposed gather of the input gradient: the output site that reads `site` through the tap.
/// Per channel the plane is first rotated along x once per kx (`shifted`, KW planes); a tap's
/// row is then that plane rotated by whole rows, two contiguous copies per tap rather than two
/// per lattice row.
fn im2col<T: Real>(
    planes: &[T],
    channels: usize,
    c: &ConvSpec,
    inverse: bool,
    col: &mut [T],
    shifted: &mut Vec<T>,
) {
    let (h, wd, kh, kw) = (c.h as usize, c.w as usize, c.kh as usize, c.kw as usize);
    let plane = h * wd;
    let offset = |k: usize, n: usize| -> i64 {
        let o = k as i64 - (n / 2) as i64;
        if inverse {
            -o
        } else {
            o
        }
    };
    if wd < GATHER_BELOW_WIDTH {
        return im2col_gather(planes, channels, c, inverse, col);
    }
    shifted.resize(kw * plane, T::zero());
    for ch in 0..channels {
        let src_plane = &planes[ch * plane..(ch + 1) * plane];
        for kx in 0..kw {
            let shift = wrap(offset(kx, kw), wd as i64);
            let rows = shifted[kx * plane..(kx + 1) * plane].chunks_exact_mut(wd);
            for (dst, src) in rows.zip(src_plane.chunks_exact(wd)) {
                rotate_into(dst, src, shift);
            }
        }
        for ky in 0..kh {
            let oy = offset(ky, kh);
            let by = wrap(oy, h as i64) * wd;
            for kx in 0..kw {
                let tap = (ch * kh + ky) * kw + kx;
                let dst = &mut col[tap * plane..(tap + 1) * plane];
                rotate_into(dst, &shifted[kx * plane..(kx + 1) * plane], by);
                if c.mode != 0 {
                    mask_zero(dst, c, inverse, (oy, offset(kx, kw)));
                }
            }
        }
    }
}

/// Rows narrower than this are gathered through a table of offsets: their copies would be too
/// short to pay for themselves.
const GATHER_BELOW_WIDTH: usize = 32;

/// Offsets of the periodic im2col of one geometry: `table[tap·plane + site]` is the site of the
/// plane that tap reads for output `site` (or, with `inverse`, the transposed gather).
fn gather_table(c: &ConvSpec, inverse: bool) -> Vec<u32> {
    let (h, wd, kh, kw) = (c.h as usize, c.w as usize, c.kh as usize, c.kw as usize);
    let mut table = Vec::with_capacity(kh * kw * h * wd);
    for ky in 0..kh {
        for kx in 0..kw {
            let (oy, ox) = tap_offset(c, inverse, (ky, kx));
            for py in 0..h {
                let sy = wrap(py as i64 + oy, h as i64);
                for px in 0..wd {
                    table.push((sy * wd + wrap(px as i64 + ox, wd as i64)) as u32);
                }
            }
        }
    }
    table
}

/// The geometry a gather table is built for: (h, w, kh, kw, inverse).
type TableKey = (i32, i32, i32, i32, bool);

thread_local! {
    /// Gather tables by geometry, built once per thread.
    static GATHER_TABLES: std::cell::RefCell<Vec<(TableKey, std::rc::Rc<Vec<u32>>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The cached [`gather_table`] of `c`.
fn cached_table(c: &ConvSpec, inverse: bool) -> std::rc::Rc<Vec<u32>> {
    let key = (c.h, c.w, c.kh, c.kw, inverse);
    GATHER_TABLES.with(|t| {
        let mut tables = t.borrow_mut();
        if let Some((_, table)) = tables.iter().find(|(k, _)| *k == key) {
            return table.clone();
        }
        let table = std::rc::Rc::new(gather_table(c, inverse));
        tables.push((key, table.clone()));
        table
    })
}

/// [`im2col`] of narrow planes: each tap's row gathered through the cached offsets.
fn im2col_gather<T: Real>(
    planes: &[T],
    channels: usize,
    c: &ConvSpec,
    inverse: bool,
    col: &mut [T],
) {
    let plane = (c.h * c.w) as usize;
    let taps = (c.kh * c.kw) as usize;
    let table = cached_table(c, inverse);
    for ch in 0..channels {
        let src: &[T] = &planes[ch * plane..(ch + 1) * plane];
        let rows = col[ch * taps * plane..(ch + 1) * taps * plane].chunks_exact_mut(plane);
        for (tap, (dst, offsets)) in rows.zip(table.chunks_exact(plane)).enumerate() {
            for (d, &o) in dst.iter_mut().zip(offsets) {
                *d = src[o as usize];
            }
            if c.mode != 0 {
                let tap_yx = (tap / c.kw as usize, tap % c.kw as usize);
                mask_zero(dst, c, inverse, tap_offset(c, inverse, tap_yx));
            }
        }
    }
}

/// Zeroes the entries of one im2col row that the mode forbids: output `here` reads `there`
/// (forward), or `there` reads `here` (inverse); with zero padding, every entry whose unwrapped
/// `there` lies outside the lattice.
fn mask_zero<T: Real>(dst: &mut [T], c: &ConvSpec, inverse: bool, offset: (i64, i64)) {
    let wd = c.w as usize;
    for (site, v) in dst.iter_mut().enumerate() {
        if !tap_open(c, inverse, offset, (site / wd, site % wd)) {
            *v = T::zero();
        }
    }
}

/// Whether the im2col entry of output site (py, px) for the tap at `offset` (oy, ox) holds a
/// value under the mode of `c`, or is zero (causal masks, zero padding).
fn tap_open(c: &ConvSpec, inverse: bool, (oy, ox): (i64, i64), (py, px): (usize, usize)) -> bool {
    let (h, wd) = (c.h as usize, c.w as usize);
    let inside = |v: i64, n: usize| (0..n as i64).contains(&v);
    if c.mode == 3 {
        return inside(py as i64 + oy, h) && inside(px as i64 + ox, wd);
    }
    let here = py * wd + px;
    let there = wrap(py as i64 + oy, h as i64) * wd + wrap(px as i64 + ox, wd as i64);
    if inverse {
        allowed(c.mode, there, here)
    } else {
        allowed(c.mode, here, there)
    }
}

/// The offset (oy, ox) that tap (ky, kx) of `c` reads at (negated for the inverse gather).
fn tap_offset(c: &ConvSpec, inverse: bool, (ky, kx): (usize, usize)) -> (i64, i64) {
    let sign = if inverse { -1 } else { 1 };
    (
        sign * (ky as i64 - (c.kh / 2) as i64),
        sign * (kx as i64 - (c.kw / 2) as i64),
    )
}

/// out[i][s] = Σ_k a[i·k_n + k] · b[k][s] for i < m, s < n: R rows × C columns of accumulators
/// per tile, each summed over k in order (deterministic, and the same sums whatever the tile
/// shape). Full tiles take a loop of constant shape (fixed-size rows, no bounds checks inside),
/// which the compiler vectorises to the register width of the variant it is compiled for.
#[inline(always)]
fn gemm_tiles<T: Real, const R: usize, const C: usize>(
    a: &[T],
    b: &[T],
    out: &mut [T],
    m: usize,
    n: usize,
    k_n: usize,
) {
    let whole = m - m % R;
    if whole < m && R > 1 {
        // The last rows one at a time, each with the fast full-width tiles.
        let (a_rest, out_rest) = (&a[whole * k_n..], &mut out[whole * n..]);
        gemm_tiles::<T, 1, C>(a_rest, b, out_rest, m - whole, n, k_n);
    }
    let blocks = if R > 1 { whole } else { m };
    for i0 in (0..blocks).step_by(R) {
        let rows = R.min(m - i0);
        let mut s0 = 0;
        while s0 < n {
            let cols = C.min(n - s0);
            let mut acc = [[T::zero(); C]; R];
            if cols == C && rows == R {
                let arows: [&[T]; R] =
                    std::array::from_fn(|j| &a[(i0 + j) * k_n..(i0 + j + 1) * k_n]);
                acc = full_tile(arows, &b[s0..], n, k_n);
            } else {
                for k in 0..k_n {
                    let brow = &b[k * n + s0..k * n + s0 + cols];
                    for (j, accr) in acc.iter_mut().enumerate().take(rows) {
                        let wj = a[(i0 + j) * k_n + k];
                        for (x, &bv) in accr.iter_mut().zip(brow) {
                            *x += wj * bv;
                        }
                    }
                }
            }
            for (j, accr) in acc.iter().enumerate().take(rows) {
                out[(i0 + j) * n + s0..(i0 + j) * n + s0 + cols].copy_from_slice(&accr[..cols]);
            }
            s0 += cols;
        }
    }
}

/// One full R × C tile of [`gemm_tiles`], its accumulators local to this function so that they
/// can live in registers throughout the k loop.
#[inline(always)]
fn full_tile<T: Real, const R: usize, const C: usize>(
    arows: [&[T]; R],
    b: &[T],
    n: usize,
    k_n: usize,
) -> [[T; C]; R] {
    let mut acc = [[T::zero(); C]; R];
    for k in 0..k_n {
        let brow: &[T; C] = b[k * n..k * n + C]
            .try_into()
            .expect("a full tile row has C values");
        for (accr, arow) in acc.iter_mut().zip(&arows) {
            let wj = arow[k];
            for (x, &bv) in accr.iter_mut().zip(brow) {
                *x += wj * bv;
            }
        }
    }
    acc
}

/// [`gemm_tiles`] with the tile for the register file: 4 × 32 where AVX-512 has 32 wide
/// registers, 4 × 8 otherwise.
#[inline(always)]
fn gemm_body<T: Real>(a: &[T], b: &[T], out: &mut [T], dims: [usize; 4]) {
    let [m, n, k_n, wide] = dims;
    if wide == 1 {
        gemm_tiles::<T, 4, 32>(a, b, out, m, n, k_n)
    } else {
        gemm_tiles::<T, 4, 8>(a, b, out, m, n, k_n)
    }
}

simd::dispatch! {
    /// [`gemm_body`] compiled for `level`.
    fn gemm_at = gemm_body<T: Real>(a: &[T], b: &[T], out: &mut [T], dims: [usize; 4])
}

/// out = a · b (`[m, k_n]` · `[k_n, n]`) on this CPU's widest instruction set.
fn gemm<T: Real>(a: &[T], b: &[T], out: &mut [T], m: usize, n: usize, k_n: usize) {
    let level = simd::level();
    let wide = usize::from(level == simd::Level::Avx512);
    gemm_at(level, a, b, out, [m, n, k_n, wide])
}

/// What a convolution's paths take: `src` with `src_ch` planes per sample, the weights as
/// `[out_ch, src_ch·KH·KW]`, the geometry, and whether the gather is the inverse one (∂L/∂x).
#[derive(Clone, Copy)]
struct Operands<'a, T> {
    src: &'a [T],
    src_ch: usize,
    weights: &'a [T],
    out_ch: usize,
    c: &'a ConvSpec,
    inverse: bool,
}

impl<T> Operands<'_, T> {
    /// Sites per plane, and the length of a weight row (`src_ch·KH·KW`).
    fn sizes(&self) -> (usize, usize) {
        let c = self.c;
        ((c.h * c.w) as usize, self.src_ch * (c.kh * c.kw) as usize)
    }
}

/// Per sample: im2col of `src` (inverse gather when `inverse`), then `out = weights · col`;
/// parallel over samples.
fn im2col_gemm<T: Real>(dev: &CpuDevice, ops: Operands<'_, T>, out: &mut [T]) -> Result<()> {
    let ((plane, k_n), c) = (ops.sizes(), ops.c);
    let (src, src_ch, weights, out_ch) = (ops.src, ops.src_ch, ops.weights, ops.out_ch);
    dev.for_heavy_chunks(out_ch * plane, out, |first, chunk, _| {
        let (mut col, mut shifted) = (vec![T::zero(); k_n * plane], Vec::new());
        for (s, o) in chunk.chunks_mut(out_ch * plane).enumerate() {
            let b = first + s;
            im2col(
                &src[b * src_ch * plane..(b + 1) * src_ch * plane],
                src_ch,
                c,
                ops.inverse,
                &mut col,
                &mut shifted,
            );
            gemm(weights, &col, o, out_ch, plane, k_n);
        }
    })
}

/// The buffers hold exactly what convolution `c` reads and writes: x, w, y in that order.
fn check_conv(c: &ConvSpec, x: usize, w: usize, y: usize) -> Result<()> {
    let [nx, nw, ny] = c.sizes()?;
    if [x, w, y] != [nx, nw, ny] {
        return Err(Error::InvalidInput(format!(
            "convolution {c:?} needs x, w, y of {nx}, {nw}, {ny} values; got {x}, {w}, {y}"
        )));
    }
    Ok(())
}

/// Periodic (or causal) 2D convolution: per sample, im2col then one GEMM with the weights
/// `[Co, Ci·KH·KW]`.
pub fn conv2d<T: Real>(dev: &CpuDevice, x: &[T], w: &[T], y: &mut [T], c: &ConvSpec) -> Result<()> {
    check_conv(c, x.len(), w.len(), y.len())?;
    let ops = Operands {
        src: x,
        src_ch: c.ci as usize,
        weights: w,
        out_ch: c.co as usize,
        c,
        inverse: false,
    };
    convolve(dev, ops, y)
}

/// [`im2col_gemm`], or the same sums with the samples in the lanes where that is faster.
fn convolve<T: Real>(dev: &CpuDevice, ops: Operands<'_, T>, out: &mut [T]) -> Result<()> {
    if lanes::suits(ops.c) {
        lanes::convolve(dev, ops, out)
    } else {
        im2col_gemm(dev, ops, out)
    }
}

/// ∂L/∂x: per sample, the inverse im2col of ∂L/∂y and one GEMM with the weights rearranged to
/// `[Ci, Co·KH·KW]`.
pub fn conv2d_grad_input<T: Real>(
    dev: &CpuDevice,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    c: &ConvSpec,
) -> Result<()> {
    check_conv(c, dx.len(), w.len(), dy.len())?;
    let wt = inverse_weights(w, c);
    let ops = Operands {
        src: dy,
        src_ch: c.co as usize,
        weights: &wt,
        out_ch: c.ci as usize,
        c,
        inverse: true,
    };
    convolve(dev, ops, dx)
}

/// The weights `[Co, Ci, KH, KW]` of `c` rearranged to `[Ci, Co·KH·KW]`, as the inverse
/// gather of ∂L/∂x reads them.
fn inverse_weights<T: Real>(w: &[T], c: &ConvSpec) -> Vec<T> {
    let (ci_n, co_n, taps) = (c.ci as usize, c.co as usize, (c.kh * c.kw) as usize);
    let k_n = co_n * taps;
    let mut wt = vec![T::zero(); ci_n * k_n];
    for co in 0..co_n {
        for ci in 0..ci_n {
            for t in 0..taps {
                wt[ci * k_n + co * taps + t] = w[(co * ci_n + ci) * taps + t];
            }
        }
    }
    wt
}

/// Σ a[j]·b[j]: eight interleaved lanes in `T` over leaves of 256 products (32 per lane), the
/// lanes combined by a fixed tree and each leaf's sum added in f64. Deterministic; the rounding
/// error of an f32 sum grows with the leaf, not with the whole length, as in NumPy's blocked
/// pairwise summation, while the hot loop stays in `T`'s SIMD width.
#[inline(always)]
fn dot8<T: Real>(a: &[T], b: &[T]) -> f64 {
    const LEAF: usize = DOT_LEAF;
    /// Σ x·y of one leaf, in `T`.
    #[inline(always)]
    fn leaf<T: Real>(xa: &[T], xb: &[T]) -> T {
        let mut l = [T::zero(); 8];
        let (ca, cb) = (xa.chunks_exact(8), xb.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for k in 0..8 {
                l[k] += x[k] * y[k];
            }
        }
        for (k, (&x, &y)) in ra.iter().zip(rb).enumerate() {
            l[k] += x * y;
        }
        ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
    }
    let n = a.len().min(b.len());
    let full = n - n % LEAF;
    let mut acc = 0.0f64;
    for (xa, xb) in a[..full]
        .chunks_exact(LEAF)
        .zip(b[..full].chunks_exact(LEAF))
    {
        acc += leaf(xa, xb).to_f64();
    }
    acc + leaf(&a[full..n], &b[full..n]).to_f64()
}

/// Leaf length of [`dot8`] and [`dot_block`]: f32 sums grow their rounding error with the leaf.
const DOT_LEAF: usize = 256;

/// The dots of R rows of `a` with Q rows of `b` at once (each loaded vector used R or Q times),
/// every one summed exactly as [`dot8`] sums it: eight lanes in `T` over leaves of
/// [`DOT_LEAF`], the lanes combined by the same tree, each leaf added in f64.
#[inline(always)]
fn dot_block<T: Real, const R: usize, const Q: usize>(a: [&[T]; R], b: [&[T]; Q]) -> [[f64; Q]; R] {
    let n = a[0].len();
    let mut acc = [[0.0f64; Q]; R];
    // The same leaves as dot8: the full ones, then the partial (possibly empty) last one.
    let full = n - n % DOT_LEAF;
    for start in (0..full).step_by(DOT_LEAF) {
        dot_block_leaf(&a, &b, start, start + DOT_LEAF, &mut acc);
    }
    dot_block_leaf(&a, &b, full, n, &mut acc);
    acc
}

/// One leaf [start, end) of [`dot_block`] (a function, not a closure, so that it is inlined into
/// the instruction-set variants: closures do not inherit their target features).
#[inline(always)]
fn dot_block_leaf<T: Real, const R: usize, const Q: usize>(
    a: &[&[T]; R],
    b: &[&[T]; Q],
    start: usize,
    end: usize,
    acc: &mut [[f64; Q]; R],
) {
    let mut l = [[[T::zero(); 8]; Q]; R];
    let full = start + (end - start) / 8 * 8;
    for c in (start..full).step_by(8) {
        for r in 0..R {
            let ar: &[T; 8] = a[r][c..c + 8].try_into().expect("8 values");
            for q in 0..Q {
                let bq: &[T; 8] = b[q][c..c + 8].try_into().expect("8 values");
                madd8(&mut l[r][q], ar, bq);
            }
        }
    }
    for (k, c) in (full..end).enumerate() {
        for (lr, ar) in l.iter_mut().zip(a) {
            for (lq, bq) in lr.iter_mut().zip(b) {
                lq[k] += ar[c] * bq[c];
            }
        }
    }
    for (accr, lr) in acc.iter_mut().zip(&l) {
        for (x, v) in accr.iter_mut().zip(lr) {
            *x += (((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))).to_f64();
        }
    }
}

/// l[k] += a[k]·b[k] for the eight lanes (a multiply and an add, never fused).
#[inline(always)]
fn madd8<T: Real>(l: &mut [T; 8], a: &[T; 8], b: &[T; 8]) {
    for k in 0..8 {
        l[k] += a[k] * b[k];
    }
}

/// Row `i` of a matrix of rows of `len` values.
#[inline(always)]
fn row_of<T>(m: &[T], i: usize, len: usize) -> &[T] {
    &m[i * len..(i + 1) * len]
}

/// part[co·K + k] = Σ_s dy[co][s] · col[k][s] for one sample (rows of `plane` values): blocks
/// of 2 × 4 dots, the edges one dot at a time; every dot is [`dot8`]'s.
#[inline(always)]
fn weight_dots<T: Real>(dy: &[T], col: &[T], part: &mut [f64], plane: usize) {
    const R: usize = 2;
    const Q: usize = 4;
    let k_n = col.len() / plane;
    let co_n = dy.len() / plane;
    for co0 in (0..co_n).step_by(R) {
        for k0 in (0..k_n).step_by(Q) {
            if co0 + R <= co_n && k0 + Q <= k_n {
                let a: [&[T]; R] = std::array::from_fn(|r| row_of(dy, co0 + r, plane));
                let b: [&[T]; Q] = std::array::from_fn(|q| row_of(col, k0 + q, plane));
                for (r, vals) in dot_block::<T, R, Q>(a, b).iter().enumerate() {
                    part[(co0 + r) * k_n + k0..(co0 + r) * k_n + k0 + Q].copy_from_slice(vals);
                }
            } else {
                for co in co0..co_n.min(co0 + R) {
                    for k in k0..k_n.min(k0 + Q) {
                        part[co * k_n + k] = dot8(row_of(dy, co, plane), row_of(col, k, plane));
                    }
                }
            }
        }
    }
}

simd::dispatch! {
    /// [`weight_dots`] compiled for `level`.
    fn weight_dots_at = weight_dots<T: Real>(dy: &[T], col: &[T], part: &mut [f64], plane: usize)
}

/// ∂L/∂w: per sample the products ∂L/∂y · colᵀ (parallel over samples; with the samples in
/// the lanes on small planes), then the per-sample parts summed in sample order (in f64), so the result does not depend on the thread count.
pub fn conv2d_grad_weight<T: Real>(
    dev: &CpuDevice,
    dy: &[T],
    x: &[T],
    dw: &mut [T],
    c: &ConvSpec,
) -> Result<()> {
    check_conv(c, x.len(), dw.len(), dy.len())?;
    let (ci_n, co_n, bn) = (c.ci as usize, c.co as usize, c.b as usize);
    let k_n = ci_n * (c.kh * c.kw) as usize;
    let mut parts = vec![0.0f64; bn * co_n * k_n];
    if lanes::suits(c) {
        lanes::weight_grad_parts(dev, dy, x, &mut parts, c)?;
    } else {
        im2col_weight_parts(dev, dy, x, &mut parts, c)?;
    }
    sum_samples(dev, &parts, bn, dw)
}

/// out[e] = Σ_b parts[b·len + e] for the `len = out.len()` entries, summed in f64 in sample
/// order (so the result does not depend on the thread count).
fn sum_samples<T: Real>(dev: &CpuDevice, parts: &[f64], bn: usize, out: &mut [T]) -> Result<()> {
    let n = out.len();
    check_len("per-sample parts", parts.len(), bn.saturating_mul(n))?;
    dev.for_chunks(1, out, None, |first, chunk, _| {
        for (i, o) in chunk.iter_mut().enumerate() {
            let mut acc = 0.0;
            for b in 0..bn {
                acc += parts[b * n + first + i];
            }
            *o = T::from_f64(acc);
        }
    })
}

/// Per-sample parts of ∂L/∂w (`[b][co·K + k]`, f64): per sample the products ∂L/∂y · colᵀ;
/// parallel over samples.
fn im2col_weight_parts<T: Real>(
    dev: &CpuDevice,
    dy: &[T],
    x: &[T],
    parts: &mut [f64],
    c: &ConvSpec,
) -> Result<()> {
    let (ci_n, co_n, plane) = (c.ci as usize, c.co as usize, (c.h * c.w) as usize);
    let k_n = ci_n * (c.kh * c.kw) as usize;
    dev.for_heavy_chunks(co_n * k_n, parts, |first, chunk, _| {
        let (mut col, mut shifted) = (vec![T::zero(); k_n * plane], Vec::new());
        for (s, part) in chunk.chunks_mut(co_n * k_n).enumerate() {
            let b = first + s;
            im2col(
                &x[b * ci_n * plane..(b + 1) * ci_n * plane],
                ci_n,
                c,
                false,
                &mut col,
                &mut shifted,
            );
            let dyb = &dy[b * co_n * plane..(b + 1) * co_n * plane];
            weight_dots_at(simd::level(), dyb, &col, part, plane);
        }
    })
}

/// The twin of `slab_copy`: `dst[o·ds + doff + k] = src[o·ss + soff + k]` for o < outer, k < len,
/// with `g` = [outer, len, ss, soff, ds, doff]; slabs outside either buffer are an error.
pub fn slab_copy<T: Real>(src: &[T], dst: &mut [T], g: [usize; 6]) -> Result<()> {
    let [outer, len, ss, soff, ds, doff] = g;
    let end = |stride: usize, off: usize| {
        (outer.max(1) - 1)
            .checked_mul(stride)
            .and_then(|v| v.checked_add(off))
            .and_then(|v| v.checked_add(len))
    };
    let fits = |stride, off, n| outer == 0 || len == 0 || end(stride, off).is_some_and(|e| e <= n);
    if !fits(ss, soff, src.len()) || !fits(ds, doff, dst.len()) {
        return Err(Error::InvalidInput(format!(
            "slab copy {g:?} outside buffers of {} and {}",
            src.len(),
            dst.len()
        )));
    }
    if len > 0 {
        for o in 0..outer {
            dst[o * ds + doff..o * ds + doff + len]
                .copy_from_slice(&src[o * ss + soff..o * ss + soff + len]);
        }
    }
    Ok(())
}

/// Adam's update of one run of parameters (see `adam` in nn.cu); every value on its own, so the
/// SIMD variants compute the same bits.
#[inline(always)]
fn adam_rows<T: Real>([p, m, v]: [&mut [T]; 3], g: &[T], h: &AdamHyper) {
    let f = T::from_f64;
    for (((pi, mi), vi), &g0) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let mut gi = g0 * f(h.gscale);
        if h.decoupled == 0 {
            gi += f(h.weight_decay) * *pi;
        }
        let mn = f(h.beta1) * *mi + f(1.0 - h.beta1) * gi;
        let vn = f(h.beta2) * *vi + f(1.0 - h.beta2) * gi * gi;
        *mi = mn;
        *vi = vn;
        let mut step = (mn / f(h.bias1)) / ((vn / f(h.bias2)).sqrt() + f(h.eps));
        if h.decoupled != 0 {
            step += f(h.weight_decay) * *pi;
        }
        *pi = *pi - f(h.lr) * step;
    }
}

simd::dispatch! {
    /// [`adam_rows`] compiled for `level`.
    fn adam_rows_at = adam_rows<T: Real>(pmv: [&mut [T]; 3], g: &[T], h: &AdamHyper)
}

/// One Adam / AdamW step of parameters `p` with gradients `g` and moments `m`, `v`, spread over
/// the threads.
pub fn adam<T: Real>(
    dev: &CpuDevice,
    [p, m, v]: [&mut [T]; 3],
    g: &[T],
    h: &AdamHyper,
) -> Result<()> {
    let n = p.len();
    if [g.len(), m.len(), v.len()] != [n; 3] {
        return Err(Error::InvalidInput(format!(
            "Adam on {n} parameters given {}, {} and {} gradients and moments",
            g.len(),
            m.len(),
            v.len()
        )));
    }
    dev.for_zipped_chunks([p, m, v], |first, pmv| {
        let len = pmv[0].len();
        adam_rows_at(simd::level(), pmv, &g[first..first + len], h)
    })
}

#[cfg(test)]
mod simd_tests {
    use super::*;
    use crate::device::simd::Level;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut v = vec![0.0; n];
        crate::philox::fill_normals(&mut v, 3, seed, 0, 1);
        v.iter().map(|&x| x as f32).collect()
    }

    /// Every instruction-set variant computes the same bits as the baseline (odd sizes reach
    /// the partial tiles too), and the product is right.
    #[test]
    fn dispatched_variants_are_bit_identical() {
        for (m, n, k) in [
            (16, 64, 9),
            (2, 1024, 144),
            (5, 37, 13),
            (1, 4096, 144),
            (3, 300, 7),
        ] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let mut want = vec![0.0f32; m * n];
            gemm_at(Level::Baseline, &a, &b, &mut want, [m, n, k, 0]);
            for i in [0, m - 1] {
                for s in [0, n / 2, n - 1] {
                    let exact: f64 = (0..k)
                        .map(|j| a[i * k + j] as f64 * b[j * n + s] as f64)
                        .sum();
                    assert!((want[i * n + s] as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()));
                }
            }
            for level in Level::available() {
                for wide in [0, 1] {
                    let mut got = vec![0.0f32; m * n];
                    gemm_at(level, &a, &b, &mut got, [m, n, k, wide]);
                    assert_eq!(got, want, "gemm {level:?} wide {wide} at {m}x{n}x{k}");
                }
                let (plane, k_n) = (n, k);
                let (dy, col) = (values(m * plane, 3), values(k_n * plane, 4));
                let mut base = vec![0.0; m * k_n];
                weight_dots_at(Level::Baseline, &dy, &col, &mut base, plane);
                // The blocked dots are dot8's, bit for bit.
                for co in 0..m {
                    for kk in 0..k_n {
                        let d = dot8(row_of(&dy, co, plane), row_of(&col, kk, plane));
                        assert_eq!(base[co * k_n + kk], d, "dot ({co}, {kk}) at plane {plane}");
                    }
                }
                let mut got = vec![0.0; m * k_n];
                weight_dots_at(level, &dy, &col, &mut got, plane);
                assert_eq!(got, base, "weight dots {level:?}");
            }
        }
        eprintln!("instruction sets here: {:?}", Level::available());
    }

    /// Every elementwise function and its gradient, at every level, computes what `unary_f`
    /// and `unary_df` compute value by value (including ±∞, NaN and large arguments).
    #[test]
    fn dispatched_elementwise_rows_are_bit_identical() {
        let mut x = values(1000, 5);
        x.iter_mut().step_by(7).for_each(|v| *v *= 40.0);
        x.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            95.0,
            -110.0,
        ]);
        let (y, dy) = (values(x.len(), 6), values(x.len(), 7));
        let ops = [
            Unary::Exp,
            Unary::Log,
            Unary::Tanh,
            Unary::Sigmoid,
            Unary::Softplus,
            Unary::LeakyRelu(0.01),
            Unary::Silu,
            Unary::Scale(-1.5),
            Unary::Shift(0.25),
            Unary::Square,
        ];
        // Bits, with every NaN as one (a NaN's sign and payload carry nothing).
        let bits = |v: &[f32]| {
            let canonical = |x: &f32| if x.is_nan() { u32::MAX } else { x.to_bits() };
            v.iter().map(canonical).collect::<Vec<_>>()
        };
        for op in ops {
            let want: Vec<f32> = x.iter().map(|&v| unary_f(op, v)).collect();
            let want_grad: Vec<f32> = (0..x.len())
                .map(|i| unary_df(op, x[i], y[i], dy[i]))
                .collect();
            for level in Level::available() {
                let mut got = vec![0.0f32; x.len()];
                unary_rows_at(level, op, &x, &mut got);
                assert_eq!(bits(&got), bits(&want), "{op:?} at {level:?}");
                unary_grad_rows_at(level, op, [&x, &y, &dy], &mut got);
                assert_eq!(bits(&got), bits(&want_grad), "{op:?}′ at {level:?}");
            }
        }
    }

    /// Adam's update: the same bits at every instruction-set level and on any number of
    /// threads (a size above the serial threshold, odd so the chunks end unevenly), for Adam and
    /// AdamW; and one step by hand.
    #[test]
    fn adam_is_the_same_at_every_level_and_thread_count() {
        let n = (1 << 15) + 7;
        let (p0, g) = (values(n, 11), values(n, 12));
        let (m0, v0): (Vec<f32>, Vec<f32>) = (
            values(n, 13).iter().map(|x| 0.1 * x).collect(),
            values(n, 14).iter().map(|x| 0.01 * x * x).collect(),
        );
        for decoupled in [0, 1] {
            let h = AdamHyper {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                gscale: 0.7,
                bias1: 0.19,
                bias2: 0.002,
                decoupled,
            };
            let run = |threads: usize, level: Option<Level>| {
                let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
                match level {
                    Some(l) => adam_rows_at(l, [&mut p, &mut m, &mut v], &g, &h),
                    None => adam(
                        &CpuDevice::with_threads(threads),
                        [&mut p, &mut m, &mut v],
                        &g,
                        &h,
                    )
                    .unwrap(),
                }
                [p, m, v].map(|x| x.iter().map(|y| y.to_bits()).collect::<Vec<_>>())
            };
            let want = run(1, Some(Level::Baseline));
            for level in Level::available() {
                assert_eq!(run(1, Some(level)), want, "{level:?}");
            }
            assert_eq!(run(1, None), want, "one thread");
            assert_eq!(run(3, None), want, "three threads");
        }
        // One value by hand: m = 0.1·g, v = 0.001·g², p −= lr·m̂/(√v̂ + ε) with m̂ = m/0.1.
        let h = AdamHyper {
            lr: 0.5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 0.0,
            weight_decay: 0.0,
            gscale: 1.0,
            bias1: 0.1,
            bias2: 0.001,
            decoupled: 1,
        };
        let (mut p, mut m, mut v) = ([1.0f64], [0.0f64], [0.0f64]);
        adam(
            &CpuDevice::with_threads(1),
            [&mut p, &mut m, &mut v],
            &[2.0],
            &h,
        )
        .unwrap();
        assert!((p[0] - 0.5).abs() < 1e-12 && (m[0] - 0.2).abs() < 1e-15);
    }

    /// The tape's matmul rows: the same bits at every level, in f32 and f64, with A transposed
    /// or not and k beyond one leaf of MATMUL_LEAF terms.
    #[test]
    fn matmul_rows_are_the_same_at_every_level() {
        fn check<T: Real>() {
            for (m, n, k, ta) in [(3, 37, 40, false), (5, 100, 500, true), (1, 1, 1, false)] {
                let cast = |v: Vec<f32>| v.iter().map(|&x| T::from_f64(x as f64)).collect();
                let (a, b): (Vec<T>, Vec<T>) = (cast(values(m * k, 21)), cast(values(k * n, 22)));
                let s = MatmulRows {
                    a: &a,
                    b: &b,
                    first_row: 0,
                    m,
                    n,
                    k,
                    ta,
                };
                let mut want = vec![T::zero(); m * n];
                matmul_rows_at(Level::Baseline, &s, &mut want);
                for level in Level::available() {
                    let mut got = vec![T::zero(); m * n];
                    matmul_rows_at(level, &s, &mut got);
                    let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{} {level:?} {m}x{n}x{k}", T::NAME);
                }
                // Entry (0, 0) against a direct f64 sum.
                let exact: f64 = (0..k)
                    .map(|j| {
                        let aij = if ta { a[j * m] } else { a[j] };
                        aij.to_f64() * b[j * n].to_f64()
                    })
                    .sum();
                assert!((want[0].to_f64() - exact).abs() < 1e-4 * (1.0 + exact.abs()));
            }
        }
        check::<f32>();
        check::<f64>();
    }
}
