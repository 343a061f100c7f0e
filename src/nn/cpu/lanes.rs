//! Convolutions of small planes with the samples in the SIMD lanes.
//!
//! On an 8 × 8 plane a convolution's GEMM is tiny (m = 8 or 2 output channels, n = 64 sites), so
//! im2col, which writes every input value KH·KW times, costs more than the products. Here a
//! block of [`LANES`] samples is transposed to `[channel·site][lane]` (one row per input value,
//! plus a zero row), and every output row `[lane]` is Σ_k w[k] · row(table[site][k]): the table
//! names, per output site and reduction index k = channel·KH·KW + tap, the input row the tap reads
//! (the zero row where a causal mask or the zero padding forbids it). Nothing is expanded, one
//! vector load serves R output channels, and the masks cost nothing.
//!
//! Every sum runs over k (or over the sites) in the order the im2col path sums it, with a
//! multiply and an add per term, so both paths give the same bits; `lane_tests` checks it.

use super::{tap_offset, tap_open, ConvSpec, Operands, Real, DOT_LEAF};
use crate::device::{simd, CpuDevice};
use crate::error::Result;
use std::rc::Rc;

/// Samples per block: the width of an output row.
pub(super) const LANES: usize = 32;

/// Whether convolution `c` is better done with samples in the lanes: small planes (where the
/// im2col path gathers through a table anyway) and enough samples to fill the lanes. (Both
/// paths compute the same bits, so the choice never changes a result.)
pub(super) fn suits(c: &ConvSpec) -> bool {
    c.w < super::GATHER_BELOW_WIDTH as i32 && c.b as usize >= LANES / 2
}

/// `table[site·K + k]`: the row of the transposed source (`channel·plane + site'`) that output
/// `site` reads through reduction index k = channel·KH·KW + tap, or `channels·plane` (the zero
/// row) where the mode of `c` forbids the tap.
fn read_table(c: &ConvSpec, channels: usize, inverse: bool) -> Vec<u32> {
    let (wd, plane) = (c.w as usize, (c.h * c.w) as usize);
    let taps = (c.kh * c.kw) as usize;
    let sites = super::cached_table(c, inverse);
    let zero_row = (channels * plane) as u32;
    let mut table = vec![zero_row; plane * channels * taps];
    for site in 0..plane {
        let row = &mut table[site * channels * taps..(site + 1) * channels * taps];
        for tap in 0..taps {
            let offset = tap_offset(c, inverse, (tap / c.kw as usize, tap % c.kw as usize));
            if c.mode != 0 && !tap_open(c, inverse, offset, (site / wd, site % wd)) {
                continue;
            }
            let read = sites[tap * plane + site] as usize;
            for ch in 0..channels {
                row[ch * taps + tap] = (ch * plane + read) as u32;
            }
        }
    }
    table
}

/// The geometry a read table is built for: (h, w, kh, kw, mode, channels, inverse, k-major).
type Key = (i32, i32, i32, i32, i32, usize, bool, bool);

thread_local! {
    /// Read tables by geometry, built once per thread.
    static TABLES: std::cell::RefCell<Vec<(Key, Rc<Vec<u32>>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The cached [`read_table`] of `c`.
pub(super) fn cached_read_table(c: &ConvSpec, channels: usize, inverse: bool) -> Rc<Vec<u32>> {
    cached(c, channels, inverse, false)
}

/// The cached forward read table of `c` (input channels `c.ci`) transposed to `[k][site]`, as
/// [`weight_parts_at`] reads it.
pub(super) fn cached_reads_by_k(c: &ConvSpec) -> Rc<Vec<u32>> {
    cached(c, c.ci as usize, false, true)
}

/// A read table from the thread's cache, built on first use.
fn cached(c: &ConvSpec, channels: usize, inverse: bool, k_major: bool) -> Rc<Vec<u32>> {
    let key = (c.h, c.w, c.kh, c.kw, c.mode, channels, inverse, k_major);
    TABLES.with(|t| {
        let mut tables = t.borrow_mut();
        if let Some((_, table)) = tables.iter().find(|(k, _)| *k == key) {
            return table.clone();
        }
        let table = read_table(c, channels, inverse);
        let table = Rc::new(if k_major {
            by_k(&table, (c.h * c.w) as usize)
        } else {
            table
        });
        tables.push((key, table.clone()));
        table
    })
}

/// A read table `[site][k]` transposed to `[k][site]`.
fn by_k(table: &[u32], plane: usize) -> Vec<u32> {
    let k_n = table.len() / plane;
    let mut reads = vec![0u32; table.len()];
    for (site, row) in table.chunks_exact(k_n).enumerate() {
        for (k, &r) in row.iter().enumerate() {
            reads[k * plane + site] = r;
        }
    }
    reads
}

/// `rows[i·LANES + lane] = samples[lane][i]` for the `n` samples of `len` values each, lanes
/// past `n` zero, and one zero row after the last (`rows` holds `(len + 1)·LANES` values).
pub(super) fn transpose_in<T: Real>(samples: &[T], len: usize, rows: &mut [T]) {
    let n = samples.len() / len;
    if n < LANES {
        rows.fill(T::zero());
    } else {
        rows[len * LANES..].fill(T::zero());
    }
    transpose(samples, len, rows, LANES, [n, len]);
}

/// The inverse of [`transpose_in`] for the samples `out` has room for.
pub(super) fn transpose_out<T: Real>(rows: &[T], len: usize, out: &mut [T]) {
    transpose(rows, LANES, out, len, [len, out.len() / len]);
}

/// `dst[j·ds + i] = src[i·ss + j]` for i < n_i, j < n_j: blocks of 8 × 8 moved by shuffles
/// where the values are f32 and the CPU has AVX, the rest one value at a time. The blocks go
/// in 16 × 16 groups, so that every cache line read or written is used whole at once: the
/// samples' rows are a power-of-two stride apart and map to few cache sets, and a line left
/// half used is evicted before its second half is needed.
fn transpose<T: Real>(src: &[T], ss: usize, dst: &mut [T], ds: usize, [n_i, n_j]: [usize; 2]) {
    let (i8, j8) = (n_i - n_i % 8, n_j - n_j % 8);
    let level = simd::level();
    let is_f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    let group = |start: usize, end: usize| (start..(start + 16).min(end)).step_by(8);
    let blocks = (0..j8).step_by(16).flat_map(|j| {
        (0..i8).step_by(16).flat_map(move |i| {
            group(j, j8).flat_map(move |jb| group(i, i8).map(move |ib| (ib, jb)))
        })
    });
    for (i0, j0) in blocks {
        let (from, to) = (i0 * ss + j0, j0 * ds + i0);
        let shuffled = is_f32
            && simd::transpose8_f32(
                level,
                bytemuck::cast_slice(&src[from..]),
                ss,
                bytemuck::cast_slice_mut(&mut dst[to..]),
                ds,
            );
        if !shuffled {
            move_one_by_one(src, ss, dst, ds, [i0..i0 + 8, j0..j0 + 8]);
        }
    }
    move_one_by_one(src, ss, dst, ds, [i8..n_i, 0..n_j]);
    move_one_by_one(src, ss, dst, ds, [0..i8, j8..n_j]);
}

/// [`transpose`] of the block `i` × `j`, one value at a time.
fn move_one_by_one<T: Real>(
    src: &[T],
    ss: usize,
    dst: &mut [T],
    ds: usize,
    [i, j]: [std::ops::Range<usize>; 2],
) {
    for ii in i {
        for jj in j.clone() {
            dst[jj * ds + ii] = src[ii * ss + jj];
        }
    }
}

/// One row of [`LANES`] values of the transposed source.
#[inline(always)]
fn lane_row<T: Real>(rows: &[T], r: u32) -> &[T; LANES] {
    let at = r as usize * LANES;
    rows[at..at + LANES]
        .try_into()
        .expect("a row has LANES values")
}

/// out[co·plane + site][lane] = Σ_k w[co·K + k] · src[table[site·K + k]][lane] for the output
/// channels from `co_first`, R at a time; k summed in order, as the im2col path's GEMM sums it.
#[inline(always)]
fn products_tiles<T: Real, const R: usize>(
    w: &[T],
    src: &[T],
    table: &[u32],
    out: &mut [T],
    [co_first, co_n, plane, k_n]: [usize; 4],
) {
    let whole = co_first + (co_n - co_first) / R * R;
    for co0 in (co_first..whole).step_by(R) {
        let wrows: [&[T]; R] = std::array::from_fn(|j| &w[(co0 + j) * k_n..(co0 + j + 1) * k_n]);
        for (site, reads) in table.chunks_exact(k_n).enumerate() {
            let mut acc = [[T::zero(); LANES]; R];
            for (k, &r) in reads.iter().enumerate() {
                let x = lane_row(src, r);
                for (a, wr) in acc.iter_mut().zip(&wrows) {
                    let wk = wr[k];
                    for (v, &xv) in a.iter_mut().zip(x) {
                        *v += wk * xv;
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                let at = ((co0 + j) * plane + site) * LANES;
                out[at..at + LANES].copy_from_slice(a);
            }
        }
    }
    if whole < co_n && R > 2 {
        products_tiles::<T, 2>(w, src, table, out, [whole, co_n, plane, k_n]);
    } else if whole < co_n && R > 1 {
        products_tiles::<T, 1>(w, src, table, out, [whole, co_n, plane, k_n]);
    }
}

/// [`products_tiles`] over all output channels, four at a time (the last two or one apart).
#[inline(always)]
fn products<T: Real>(w: &[T], src: &[T], table: &[u32], out: &mut [T], dims: [usize; 3]) {
    let [co_n, plane, k_n] = dims;
    products_tiles::<T, 4>(w, src, table, out, [0, co_n, plane, k_n])
}

simd::dispatch! {
    /// [`products`] compiled for `level`.
    pub(super) fn products_at = products<T: Real>(w: &[T], src: &[T], table: &[u32], out: &mut [T], dims: [usize; 3])
}

/// `out = weights ⋆ src` per sample (as the im2col path's `im2col_gemm`); blocks of [`LANES`]
/// samples, parallel over samples.
pub(super) fn convolve<T: Real>(
    dev: &CpuDevice,
    ops: Operands<'_, T>,
    out: &mut [T],
) -> Result<()> {
    let ((plane, k_n), level) = (ops.sizes(), simd::level());
    let (src, src_ch, out_ch) = (ops.src, ops.src_ch, ops.out_ch);
    dev.for_heavy_chunks(out_ch * plane, out, |first, chunk, _| {
        let table = cached_read_table(ops.c, src_ch, ops.inverse);
        let (mut rows, mut outs) = (Vec::new(), vec![T::zero(); out_ch * plane * LANES]);
        for (block, o) in chunk.chunks_mut(LANES * out_ch * plane).enumerate() {
            let b0 = first + block * LANES;
            let n = o.len() / (out_ch * plane);
            let samples = &src[b0 * src_ch * plane..(b0 + n) * src_ch * plane];
            rows.resize((src_ch * plane + 1) * LANES, T::zero());
            transpose_in(samples, src_ch * plane, &mut rows);
            products_at(
                level,
                ops.weights,
                &rows,
                &table,
                &mut outs,
                [out_ch, plane, k_n],
            );
            transpose_out(&outs, out_ch * plane, o);
        }
    })
}

/// Partial sum `j` of the per-lane dots of dy with Q reduction indices' reads over `sites`:
/// Σ over the sites s ≡ j (mod 8), in order, of dy[s] · x(reads_q[s]), into `acc`. The im2col
/// path's `dot8` keeps these eight partials side by side; each is a sum of its own, so
/// computing them one after another gives the same bits, with one register row per index.
#[inline(always)]
fn partial<T: Real, const Q: usize>(
    dy: &[T],
    x: &[T],
    reads: &[&[u32]; Q],
    sites: &std::ops::Range<usize>,
    j: usize,
    acc: &mut [[T; LANES]; Q],
) {
    // A local accumulator, which the compiler keeps in registers (through `acc` it would
    // load and store every row at every site).
    let mut sums = [[T::zero(); LANES]; Q];
    for s in (sites.start + j..sites.end).step_by(8) {
        let d: [T; LANES] = *lane_row(dy, s as u32);
        for (a, r) in sums.iter_mut().zip(reads) {
            let xv = lane_row(x, r[s]);
            for ((v, &dv), &xx) in a.iter_mut().zip(&d).zip(xv) {
                *v += dv * xx;
            }
        }
    }
    *acc = sums;
}

/// `sum[lane]` += (((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)))[lane] in f64, with
/// l_j = `parts[j][q]`: the tree of `dot8`, lane by lane.
#[inline(always)]
fn add_tree8<T: Real, const Q: usize>(
    parts: &[[[T; LANES]; Q]; 8],
    q: usize,
    sum: &mut [f64; LANES],
) {
    for (i, v) in sum.iter_mut().enumerate() {
        let l = |j: usize| parts[j][q][i];
        *v += (((l(0) + l(1)) + (l(2) + l(3))) + ((l(4) + l(5)) + (l(6) + l(7)))).to_f64();
    }
}

/// The dots of output channel `co` with reduction indices `k_first..k_n`, Q at a time, for
/// every lane: leaves of `DOT_LEAF` sites, each leaf's eight partials combined by [`tree8`]
/// and added in f64, as `dot8` sums them. `out[k][lane]` receives the sums.
#[inline(always)]
fn dots_tiles<T: Real, const Q: usize>(
    dy: &[T],
    x: &[T],
    reads: &[u32],
    out: &mut [[f64; LANES]],
    [k_first, k_n, plane]: [usize; 3],
) {
    let full = plane - plane % DOT_LEAF;
    let leaves = (0..full)
        .step_by(DOT_LEAF)
        .map(|s| s..s + DOT_LEAF)
        .chain(std::iter::once(full..plane));
    let whole = k_first + (k_n - k_first) / Q * Q;
    for k0 in (k_first..whole).step_by(Q) {
        let rq: [&[u32]; Q] =
            std::array::from_fn(|q| &reads[(k0 + q) * plane..(k0 + q + 1) * plane]);
        let sums = &mut out[k0..k0 + Q];
        sums.fill([0.0; LANES]);
        let mut parts = [[[T::zero(); LANES]; Q]; 8];
        for leaf in leaves.clone() {
            for (j, p) in parts.iter_mut().enumerate() {
                partial(dy, x, &rq, &leaf, j, p);
            }
            for (q, sum) in sums.iter_mut().enumerate() {
                add_tree8(&parts, q, sum);
            }
        }
    }
    if whole < k_n && Q > 1 {
        dots_tiles::<T, 1>(dy, x, reads, out, [whole, k_n, plane]);
    }
}

/// parts[lane·stride + offset + co·K + k] = Σ_site dy[co][site] · x(table[site][k]) for every
/// lane below `n`, summed as the im2col path's `dot8` sums each sample's dot. `dy` is
/// `[co·plane + site][lane]`; `reads` is the read table transposed to `[k][site]`.
#[inline(always)]
fn weight_parts<T: Real>(dy: &[T], x: &[T], reads: &[u32], parts: &mut [f64], dims: [usize; 6]) {
    let [co_n, plane, k_n, n, stride, offset] = dims;
    let mut sums = vec![[0.0f64; LANES]; k_n];
    for co in 0..co_n {
        let dyc = &dy[co * plane * LANES..(co + 1) * plane * LANES];
        dots_tiles::<T, 4>(dyc, x, reads, &mut sums, [0, k_n, plane]);
        let at = offset + co * k_n;
        for (lane, part) in parts.chunks_mut(stride).take(n).enumerate() {
            for (p, s) in part[at..at + k_n].iter_mut().zip(&sums) {
                *p = s[lane];
            }
        }
    }
}

simd::dispatch! {
    /// [`weight_parts`] compiled for `level`.
    pub(super) fn weight_parts_at = weight_parts<T: Real>(dy: &[T], x: &[T], reads: &[u32], parts: &mut [f64], dims: [usize; 6])
}

/// Per-sample parts of ∂L/∂w (`[b][co·K + k]`, f64) as the im2col path computes them: x's
/// reads through the forward table, dotted with ∂L/∂y over the sites; parallel over samples.
pub(super) fn weight_grad_parts<T: Real>(
    dev: &CpuDevice,
    dy: &[T],
    x: &[T],
    parts: &mut [f64],
    c: &ConvSpec,
) -> Result<()> {
    let (ci_n, co_n, plane) = (c.ci as usize, c.co as usize, (c.h * c.w) as usize);
    let k_n = ci_n * (c.kh * c.kw) as usize;
    let level = simd::level();
    dev.for_heavy_chunks(co_n * k_n, parts, |first, chunk, _| {
        let reads = cached_reads_by_k(c);
        let mut xs = vec![T::zero(); (ci_n * plane + 1) * LANES];
        let mut dys = vec![T::zero(); (co_n * plane + 1) * LANES];
        for (block, p) in chunk.chunks_mut(LANES * co_n * k_n).enumerate() {
            let b0 = first + block * LANES;
            let n = p.len() / (co_n * k_n);
            transpose_in(
                &x[b0 * ci_n * plane..(b0 + n) * ci_n * plane],
                ci_n * plane,
                &mut xs,
            );
            let dyb = &dy[b0 * co_n * plane..(b0 + n) * co_n * plane];
            transpose_in(dyb, co_n * plane, &mut dys);
            let dims = [co_n, plane, k_n, n, co_n * k_n, 0];
            weight_parts_at(level, &dys, &xs, &reads, p, dims);
        }
    })
}

#[cfg(test)]
mod lane_tests {
    use super::super::{im2col_gemm, im2col_weight_parts};
    use super::*;

    fn values<T: Real>(n: usize, seed: u32) -> Vec<T> {
        let mut v = vec![0.0; n];
        crate::philox::fill_normals(&mut v, 5, seed, 0, 1);
        v.iter().map(|&x| T::from_f64(x)).collect()
    }

    /// Both paths, forward, inverse and weight parts, on one geometry: the same bits.
    fn same_bits<T: Real>(dev: &CpuDevice, c: ConvSpec) {
        let (b, ci, co) = (c.b as usize, c.ci as usize, c.co as usize);
        let (plane, taps) = ((c.h * c.w) as usize, (c.kh * c.kw) as usize);
        let (x, w, dy) = (
            values::<T>(b * ci * plane, 1),
            values::<T>(co * ci * taps, 2),
            values::<T>(b * co * plane, 3),
        );
        let run = |lanes: bool, src: &[T], src_ch, weights: &[T], out_ch, inverse| {
            let mut out = vec![T::zero(); b * out_ch * plane];
            let ops = Operands {
                src,
                src_ch,
                weights,
                out_ch,
                c: &c,
                inverse,
            };
            let r = if lanes {
                convolve(dev, ops, &mut out)
            } else {
                im2col_gemm(dev, ops, &mut out)
            };
            r.expect("convolution");
            out
        };
        let forward = run(false, &x, ci, &w, co, false);
        // (A 1 × 1 kernel under the exclusive causal mask reads nothing.)
        let reads_nothing = c.mode == 1 && taps == 1;
        assert!(reads_nothing || forward.iter().any(|v| *v != T::zero()));
        assert_eq!(run(true, &x, ci, &w, co, false), forward, "forward {c:?}");
        // The inverse gather with the weights as they come: any [Ci, Co·taps] matrix will do.
        let inverse = run(false, &dy, co, &w, ci, true);
        assert_eq!(run(true, &dy, co, &w, ci, true), inverse, "inverse {c:?}");
        let mut want = vec![0.0; b * co * ci * taps];
        im2col_weight_parts(dev, &dy, &x, &mut want, &c).expect("parts");
        let mut got = vec![1.0; want.len()];
        weight_grad_parts(dev, &dy, &x, &mut got, &c).expect("parts");
        assert_eq!(got, want, "weight parts {c:?}");
    }

    /// Every mode, kernel size, odd plane and batch (partial blocks, one or two threads, a
    /// plane of more than one dot leaf): the lane path computes the im2col path's bits.
    #[test]
    fn lanes_compute_the_im2col_bits() {
        for threads in [1, 2] {
            let dev = CpuDevice::with_threads(threads);
            for (b, ci, co, h, w, k) in [
                (64, 8, 8, 8, 8, 3),
                (37, 1, 8, 5, 7, 3),
                (70, 3, 2, 6, 6, 5),
                (33, 2, 5, 18, 20, 3),
                (16, 4, 3, 4, 4, 1),
            ] {
                for mode in 0..4 {
                    let c = ConvSpec {
                        b,
                        ci,
                        co,
                        h,
                        w,
                        kh: k,
                        kw: k,
                        mode,
                    };
                    same_bits::<f32>(&dev, c);
                    same_bits::<f64>(&dev, c);
                }
            }
        }
    }
}
