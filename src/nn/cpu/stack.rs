//! A whole convolution stack (per layer: convolution, bias, activation) on small planes with the
//! samples in the SIMD lanes from the first layer's input to the last layer's output.
//!
//! Layer by layer through the tape, every convolution transposes its input into lane blocks
//! and its output back ([`super::lanes`]), and every bias and activation is a pass of its own
//! over memory and a wake-up of the threads. Here a block of samples is transposed once on the
//! way in and once on the way out; the activations in between stay in the lanes (and, for the
//! backward pass, are kept there), and the whole stack is one parallel region per pass.
//!
//! Every value is computed by the same arithmetic in the same order as the layer-by-layer ops
//! (the lane products, `unary_f`/`unary_df`, the per-sample weight-gradient parts summed in
//! sample order), so outputs, input gradients and weight gradients are the same bits; only the
//! bias gradients are summed in another (fixed) order: per sample over the sites, then over the
//! samples, in f64.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::lanes::{self, LANES};
use super::{inverse_weights, sum_samples, unary_df, unary_f, ConvSpec, Real, Unary};
use crate::device::{simd, CpuDevice};
use crate::error::{Error, Result};

/// One layer of a stack: its convolution (`b` the batch) and the activation after it.
#[derive(Clone, Copy, Debug)]
pub struct StackLayer {
    /// The convolution.
    pub conv: ConvSpec,
    /// The activation applied to convolution + bias.
    pub act: Unary,
}

/// Whether a stack over `layers` runs with the samples in the lanes (small planes, enough
/// samples); otherwise the caller runs it op by op.
pub fn suits(layers: &[StackLayer]) -> bool {
    layers.first().is_some_and(|l| lanes::suits(&l.conv))
}

/// Where a block's values live: for each layer i its input a_i (`ci·plane` rows and a zero
/// row) and its pre-activation z_i (`co·plane` rows), then the stack's output a_n (and a zero
/// row); a row is [`LANES`] values.
struct Layout {
    plane: usize,
    a: Vec<usize>,
    z: Vec<usize>,
    len: usize,
}

impl Layout {
    fn new(layers: &[StackLayer]) -> Self {
        let c0 = &layers[0].conv;
        let plane = (c0.h * c0.w) as usize;
        let (mut a, mut z, mut at) = (Vec::new(), Vec::new(), 0);
        for l in layers {
            a.push(at);
            at += (l.conv.ci as usize * plane + 1) * LANES;
            z.push(at);
            at += l.conv.co as usize * plane * LANES;
        }
        a.push(at);
        let last = layers[layers.len() - 1].conv.co as usize;
        at += (last * plane + 1) * LANES;
        Layout {
            plane,
            a,
            z,
            len: at,
        }
    }

    /// Rows of `channels` planes.
    fn rows(&self, channels: i32) -> usize {
        channels as usize * self.plane * LANES
    }
}

/// The blocks of samples (first, count ≤ [`LANES`]): full blocks where there are enough
/// samples for every thread, otherwise one smaller block per thread.
fn blocks(batch: usize, threads: usize) -> Vec<(usize, usize)> {
    let per = if batch >= threads * LANES {
        LANES
    } else {
        batch.div_ceil(threads.clamp(1, batch.max(1)))
    };
    (0..batch)
        .step_by(per.max(1))
        .map(|b0| (b0, per.min(batch - b0)))
        .collect()
}

/// Values the backward pass needs from a forward pass over `batch` samples on `dev`.
pub fn saved_len(dev: &CpuDevice, layers: &[StackLayer]) -> usize {
    match layers.first() {
        Some(l) => blocks(l.conv.b as usize, dev.threads()).len() * Layout::new(layers).len,
        None => 0,
    }
}

/// Checks the chain of layers and the buffers of the input (where given), output and parameters.
fn check<T: Real>(
    layers: &[StackLayer],
    x: Option<usize>,
    y: usize,
    params: &[(&[T], &[T])],
) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidInput(format!("convolution stack: {what}")));
    let Some(first) = layers.first() else {
        return bad("no layers".into());
    };
    if params.len() != layers.len() {
        return bad(format!(
            "{} layers, {} parameter pairs",
            layers.len(),
            params.len()
        ));
    }
    let c0 = first.conv;
    for (i, (l, (w, b))) in layers.iter().zip(params).enumerate() {
        let c = l.conv;
        let chained = i == 0 || layers[i - 1].conv.co == c.ci;
        if !chained || (c.b, c.h, c.w) != (c0.b, c0.h, c0.w) || c.ci < 1 || c.co < 1 {
            return bad(format!(
                "layer {i} ({c:?}) does not follow layer {}",
                i.max(1) - 1
            ));
        }
        let taps = (c.kh * c.kw) as usize;
        if w.len() != (c.co * c.ci) as usize * taps || b.len() != c.co as usize {
            return bad(format!(
                "layer {i} has {} weights and {} biases",
                w.len(),
                b.len()
            ));
        }
    }
    let planes = (c0.b * c0.h * c0.w) as usize;
    let last = layers[layers.len() - 1].conv.co as usize;
    let x_ok = x.is_none_or(|x| x == planes * c0.ci as usize);
    if !x_ok || y != planes * last {
        return bad(format!("input of {x:?} and output of {y} values"));
    }
    Ok(())
}

/// z += b per channel, a = act(z), for rows of `row` values (the bias add and activation of
/// the layer-by-layer ops, value by value).
#[inline(always)]
fn bias_act<T: Real>(z: &mut [T], a: &mut [T], bias: &[T], act: Unary, row: usize) {
    for ((zc, ac), &bc) in z
        .chunks_exact_mut(row)
        .zip(a.chunks_exact_mut(row))
        .zip(bias)
    {
        // One loop per activation, so the function folds into it and the loop vectorises.
        specialise_unary!(act, o => for (zv, av) in zc.iter_mut().zip(ac.iter_mut()) {
            *zv += bc;
            *av = unary_f(o(), *zv);
        })
    }
}

simd::dispatch! {
    /// [`bias_act`] compiled for `level`.
    fn bias_act_at = bias_act<T: Real>(z: &mut [T], a: &mut [T], bias: &[T], act: Unary, row: usize)
}

/// dz = act'(z, a)·da, and per channel and lane Σ_sites dz in f64 into `sums` (`[c][lane]`),
/// for rows of `row` = plane·[`LANES`] values.
#[inline(always)]
fn act_grad<T: Real>(
    [z, a, da]: [&[T]; 3],
    dz: &mut [T],
    sums: &mut [[f64; LANES]],
    act: Unary,
    row: usize,
) {
    let rows = dz.chunks_exact_mut(row).zip(sums);
    for (c, (dzc, sum)) in rows.enumerate() {
        let at = c * row;
        let (zc, ac, dac) = (&z[at..at + row], &a[at..at + row], &da[at..at + row]);
        *sum = [0.0; LANES];
        let site_rows = dzc.chunks_exact_mut(LANES).zip(zc.chunks_exact(LANES));
        specialise_unary!(act, o => for (site, (d, zs)) in site_rows.enumerate() {
            let (at_a, at_da) = (&ac[site * LANES..], &dac[site * LANES..]);
            for lane in 0..LANES {
                d[lane] = unary_df(o(), zs[lane], at_a[lane], at_da[lane]);
                sum[lane] += d[lane].to_f64();
            }
        })
    }
}

simd::dispatch! {
    /// [`act_grad`] compiled for `level`.
    fn act_grad_at = act_grad<T: Real>(zad: [&[T]; 3], dz: &mut [T], sums: &mut [[f64; LANES]], act: Unary, row: usize)
}

/// One block's forward pass: `x` holds its samples, `y` receives their outputs, `buf` (a
/// [`Layout`]) the activations.
fn forward_block<T: Real>(
    layers: &[StackLayer],
    params: &[(&[T], &[T])],
    x: &[T],
    y: &mut [T],
    buf: &mut [T],
    layout: &Layout,
) {
    let level = simd::level();
    let plane = layout.plane;
    let ci0 = layers[0].conv.ci as usize;
    lanes::transpose_in(x, ci0 * plane, &mut buf[layout.a[0]..layout.z[0]]);
    for (i, (l, (w, b))) in layers.iter().zip(params).enumerate() {
        let c = l.conv;
        let table = lanes::cached_read_table(&c, c.ci as usize, false);
        let (input, rest) = buf[layout.a[i]..].split_at_mut(layout.z[i] - layout.a[i]);
        let (z, next) = rest.split_at_mut(layout.rows(c.co));
        let k_n = c.ci as usize * (c.kh * c.kw) as usize;
        lanes::products_at(level, w, input, &table, z, [c.co as usize, plane, k_n]);
        let (a, zero_row) = next.split_at_mut(layout.rows(c.co));
        bias_act_at(level, z, a, b, l.act, plane * LANES);
        zero_row[..LANES].fill(T::zero());
    }
    let n = layers.len();
    let last = layers[n - 1].conv.co;
    let out = &buf[layout.a[n]..layout.a[n] + layout.rows(last)];
    lanes::transpose_out(out, last as usize * plane, y);
}

/// The stack's forward pass: y from x (`[B, C, H, W]` both), with per layer the weights
/// `[Co, Ci, KH, KW]` and biases `[Co]`; keeps the activations in `saved` ([`saved_len`]
/// values) where given, for [`backward`].
pub fn forward<T: Real>(
    dev: &CpuDevice,
    layers: &[StackLayer],
    params: &[(&[T], &[T])],
    x: &[T],
    y: &mut [T],
    saved: Option<&mut [T]>,
) -> Result<()> {
    check(layers, Some(x.len()), y.len(), params)?;
    let layout = Layout::new(layers);
    let c0 = layers[0].conv;
    let (len_in, len_out) = (x.len() / c0.b as usize, y.len() / c0.b as usize);
    let blocks = blocks(c0.b as usize, dev.threads());
    if let Some(s) = &saved {
        if s.len() != blocks.len() * layout.len {
            return Err(Error::InvalidInput(format!(
                "convolution stack: {} values to keep the activations in, {} needed",
                s.len(),
                blocks.len() * layout.len
            )));
        }
    }
    // Each block's output rows and activation buffer, handed to the task that runs it.
    let ys = per_block(Some(y), blocks.iter().map(|&(_, n)| n * len_out));
    let kept = per_block(saved, blocks.iter().map(|_| layout.len));
    let outs: Vec<_> = (ys.into_iter().zip(kept))
        .map(|(yb, sb)| Mutex::new(yb.map(|yb| (yb, sb))))
        .collect();
    each_block(dev, blocks.len(), |k, scratch: &mut Vec<T>| {
        let Some((yb, sb)) = outs[k].lock().ok().and_then(|mut o| o.take()) else {
            return;
        };
        let (b0, n) = blocks[k];
        let xb = &x[b0 * len_in..(b0 + n) * len_in];
        let buf = match sb {
            Some(s) => s,
            None => {
                scratch.resize(layout.len, T::zero());
                &mut scratch[..]
            }
        };
        forward_block(layers, params, xb, yb, buf, &layout);
    });
    Ok(())
}

/// `buf` cut into consecutive pieces of the given lengths, one per block (all None without `buf`).
fn per_block<U>(buf: Option<&mut [U]>, lens: impl Iterator<Item = usize>) -> Vec<Option<&mut [U]>> {
    let mut rest = buf;
    lens.map(|len| {
        let (piece, tail) = rest.take()?.split_at_mut(len);
        rest = Some(tail);
        Some(piece)
    })
    .collect()
}

/// Runs `f(block, scratch)` for blocks 0..`count`: each thread claims the next block until none
/// is left (a thread slowed down takes fewer), and the blocks a thread runs share one scratch
/// vector (allocated once, not once per block).
fn each_block<T: Real, F: Fn(usize, &mut Vec<T>) + Sync>(dev: &CpuDevice, count: usize, f: F) {
    let next = AtomicUsize::new(0);
    dev.parallel_for(dev.threads().min(count), |_| {
        let mut scratch = Vec::new();
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= count {
                break;
            }
            f(k, &mut scratch);
        }
    });
}

/// The gradients [`backward`] fills: ∂L/∂x where given, and per layer ∂L/∂w and ∂L/∂b where
/// `dw`/`db` are not empty.
pub struct StackGrads<'a, T> {
    /// ∂L/∂x, `[B, C, H, W]`.
    pub dx: Option<&'a mut [T]>,
    /// ∂L/∂w per layer (all or none).
    pub dw: Vec<&'a mut [T]>,
    /// ∂L/∂b per layer (all or none).
    pub db: Vec<&'a mut [T]>,
}

/// Offsets of each layer's weight and bias parts in a sample's row of parts, and the row length.
fn part_offsets(layers: &[StackLayer]) -> (Vec<(usize, usize)>, usize) {
    let mut at = 0;
    let offsets = layers
        .iter()
        .map(|l| {
            let c = l.conv;
            let w = at;
            at += (c.co * c.ci * c.kh * c.kw) as usize;
            let b = at;
            at += c.co as usize;
            (w, b)
        })
        .collect();
    (offsets, at)
}

/// What one block's backward pass reads and writes.
struct BlockGrads<'a, T> {
    saved: &'a [T],
    gy: &'a [T],
    dx: Option<&'a mut [T]>,
    /// `[n][P]` per-sample parts of the parameter gradients, where wanted.
    parts: Option<&'a mut [f64]>,
}

/// One block's backward pass through the layers, from ∂L/∂y to ∂L/∂x and the parameters'
/// per-sample parts.
fn backward_block<T: Real>(
    layers: &[StackLayer],
    inverse: &[Vec<T>],
    layout: &Layout,
    n: usize,
    g: BlockGrads<'_, T>,
    scratch: &mut Vec<T>,
) {
    let BlockGrads {
        saved,
        gy,
        dx,
        mut parts,
    } = g;
    let level = simd::level();
    let plane = layout.plane;
    let widest = layers.iter().map(|l| l.conv.ci.max(l.conv.co)).max();
    let widest = widest.unwrap_or(1) as usize;
    scratch.resize(2 * (widest * plane + 1) * LANES, T::zero());
    let (da, dz) = scratch.split_at_mut((widest * plane + 1) * LANES);
    let last = layers[layers.len() - 1].conv.co as usize;
    lanes::transpose_in(gy, last * plane, &mut da[..(last * plane + 1) * LANES]);
    let (offsets, stride) = part_offsets(layers);
    let mut sums = vec![[0.0f64; LANES]; widest];
    for (i, l) in layers.iter().enumerate().rev() {
        let c = l.conv;
        let (co, ci) = (c.co as usize, c.ci as usize);
        let z = &saved[layout.z[i]..layout.z[i] + layout.rows(c.co)];
        let a = &saved[layout.a[i + 1]..layout.a[i + 1] + layout.rows(c.co)];
        let dzs = &mut dz[..(co * plane + 1) * LANES];
        let (dzv, zero_row) = dzs.split_at_mut(co * plane * LANES);
        act_grad_at(
            level,
            [z, a, da],
            dzv,
            &mut sums[..co],
            l.act,
            plane * LANES,
        );
        zero_row.fill(T::zero());
        if let Some(p) = parts.as_deref_mut() {
            let input = &saved[layout.a[i]..layout.z[i]];
            let reads = lanes::cached_reads_by_k(&c);
            let k_n = ci * (c.kh * c.kw) as usize;
            let (w_at, b_at) = offsets[i];
            let dims = [co, plane, k_n, n, stride, w_at];
            lanes::weight_parts_at(level, dzs, input, &reads, p, dims);
            for (lane, row) in p.chunks_mut(stride).take(n).enumerate() {
                for (v, s) in row[b_at..b_at + co].iter_mut().zip(&sums[..co]) {
                    *v = s[lane];
                }
            }
        }
        if i == 0 && dx.is_none() {
            break;
        }
        let table = lanes::cached_read_table(&c, co, true);
        let k_n = co * (c.kh * c.kw) as usize;
        let out = &mut da[..ci * plane * LANES];
        lanes::products_at(level, &inverse[i], dzs, &table, out, [ci, plane, k_n]);
    }
    if let Some(dx) = dx {
        let ci = layers[0].conv.ci as usize;
        lanes::transpose_out(&da[..ci * plane * LANES], ci * plane, dx);
    }
}

/// The stack's backward pass from ∂L/∂y (`gy`) and the activations [`forward`] kept in
/// `saved`, on the same device (the same blocks).
pub fn backward<T: Real>(
    dev: &CpuDevice,
    layers: &[StackLayer],
    params: &[(&[T], &[T])],
    saved: &[T],
    gy: &[T],
    grads: StackGrads<'_, T>,
) -> Result<()> {
    let StackGrads { dx, mut dw, mut db } = grads;
    check(layers, dx.as_ref().map(|d| d.len()), gy.len(), params)?;
    let want_params = !(dw.is_empty() && db.is_empty());
    let sizes_ok = dw.len() == layers.len()
        && db.len() == layers.len()
        && dw.iter().zip(params).all(|(g, (w, _))| g.len() == w.len())
        && db.iter().zip(params).all(|(g, (_, b))| g.len() == b.len());
    if want_params && !sizes_ok {
        return Err(Error::InvalidInput(
            "convolution stack: the parameter gradients do not match the parameters".into(),
        ));
    }
    let layout = Layout::new(layers);
    let batch = layers[0].conv.b as usize;
    let blocks = blocks(batch, dev.threads());
    if saved.len() != blocks.len() * layout.len {
        return Err(Error::InvalidInput(format!(
            "convolution stack: {} kept values where the forward pass keeps {} (another device?)",
            saved.len(),
            blocks.len() * layout.len
        )));
    }
    let (offsets, stride) = part_offsets(layers);
    let mut parts = vec![0.0f64; if want_params { batch * stride } else { 0 }];
    let inverse: Vec<Vec<T>> = layers
        .iter()
        .zip(params)
        .map(|(l, (w, _))| inverse_weights(w, &l.conv))
        .collect();
    let (len_in, len_out) = (layers[0].conv.ci as usize, gy.len() / batch);
    let len_in = len_in * layout.plane;
    let dxs = per_block(dx, blocks.iter().map(|&(_, n)| n * len_in));
    let wanted = Some(&mut parts[..]).filter(|_| want_params);
    let ps = per_block(wanted, blocks.iter().map(|&(_, n)| n * stride));
    let tasks: Vec<_> = (dxs.into_iter().zip(ps))
        .map(|pair| Mutex::new(Some(pair)))
        .collect();
    each_block(dev, blocks.len(), |k, scratch: &mut Vec<T>| {
        let Some((dx, parts)) = tasks[k].lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        let (b0, n) = blocks[k];
        let g = BlockGrads {
            saved: &saved[k * layout.len..(k + 1) * layout.len],
            gy: &gy[b0 * len_out..(b0 + n) * len_out],
            dx,
            parts,
        };
        backward_block(layers, &inverse, &layout, n, g, scratch);
    });
    if want_params {
        let mut total = vec![T::zero(); stride];
        sum_samples(dev, &parts, batch, &mut total)?;
        for (i, &(w_at, b_at)) in offsets.iter().enumerate() {
            let (nw, nb) = (dw[i].len(), db[i].len());
            dw[i].copy_from_slice(&total[w_at..w_at + nw]);
            db[i].copy_from_slice(&total[b_at..b_at + nb]);
        }
    }
    Ok(())
}
