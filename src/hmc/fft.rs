//! The transforms of Fourier acceleration as the GPU runs them (`kernels/fourier.cu`), with their
//! CPU twins: per axis a radix-2 Stockham FFT (one pass per stage) when the extent is a power of
//! two, else a direct DFT. The CPU backend itself filters with `rustfft` ([`super::fourier`]);
//! these twins define the GPU's arithmetic, and the tests hold both against `rustfft`.

use std::f64::consts::PI;

use crate::device::geometry::REDUCE_CHUNK;
use crate::error::{Error, Result};
use crate::lattice::Lattice;

/// How one axis is transformed.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisPlan {
    /// Extent L.
    pub extent: usize,
    /// Stride of the axis in the row-major site order.
    pub stride: usize,
    /// exp(−2πi m/L) interleaved (re, im): m < L/2 for the FFT, m < L for the DFT.
    pub twiddles: Vec<f64>,
    /// Radix-2 FFT stages (a power-of-two extent ≥ 2), else one direct DFT.
    pub radix2: bool,
}

impl AxisPlan {
    /// The plan of every axis of `lat`.
    pub fn for_lattice(lat: &Lattice) -> Vec<AxisPlan> {
        lat.extents()
            .iter()
            .zip(lat.strides())
            .map(|(&l, stride)| {
                let radix2 = l >= 2 && l.is_power_of_two();
                let count = if radix2 { l / 2 } else { l };
                let twiddles = (0..count)
                    .flat_map(|m| {
                        let (s, c) = (2.0 * PI * m as f64 / l as f64).sin_cos();
                        [c, -s]
                    })
                    .collect();
                AxisPlan {
                    extent: l,
                    stride,
                    twiddles,
                    radix2,
                }
            })
            .collect()
    }

    /// The stage lengths ns = 1, 2, …, L/2 of the FFT (empty for a DFT axis).
    pub fn stages(&self) -> Vec<usize> {
        if !self.radix2 {
            return Vec::new();
        }
        std::iter::successors(Some(1), |&ns| Some(2 * ns))
            .take_while(|&ns| ns < self.extent)
            .collect()
    }

    /// Lines along this axis in a batch of `n` sites.
    pub fn lines(&self, n: usize) -> usize {
        n / self.extent
    }
}

/// The first site of line `line` along an axis of extent `l` and stride `st`.
#[inline]
fn line_start(line: usize, l: usize, st: usize) -> usize {
    (line / st) * st * l + line % st
}

fn twiddle(tw: &[f64], m: usize, inverse: bool) -> (f64, f64) {
    let wi = tw[2 * m + 1];
    (tw[2 * m], if inverse { -wi } else { wi })
}

/// CPU twin of `fft_stage`: stage `ns` of the radix-2 Stockham FFT along one axis, from `input`
/// into `output` (interleaved complex batches of `2 * lines * l` values).
#[allow(clippy::too_many_arguments)]
pub fn fft_stage(
    input: &[f64],
    output: &mut [f64],
    lines: usize,
    l: usize,
    st: usize,
    ns: usize,
    tw: &[f64],
    inverse: bool,
) -> Result<()> {
    check(input.len(), output.len(), lines, l)?;
    let half = l / 2;
    if !(l.is_power_of_two() && ns.is_power_of_two() && ns < l && tw.len() >= l) {
        return Err(Error::InvalidInput(format!(
            "fft stage {ns} of a length-{l} transform with {} twiddle values",
            tw.len()
        )));
    }
    for t in 0..lines * half {
        let (line, j) = (t / half, t % half);
        let (base, k) = (line_start(line, l, st), j % ns);
        let (wr, wi) = twiddle(tw, k * (half / ns), inverse);
        let (a, b) = (2 * (base + j * st), 2 * (base + (j + half) * st));
        let (ar, ai) = (input[a], input[a + 1]);
        let br = input[b] * wr - input[b + 1] * wi;
        let bi = input[b] * wi + input[b + 1] * wr;
        let d = 2 * (j - k) + k;
        let (o0, o1) = (2 * (base + d * st), 2 * (base + (d + ns) * st));
        output[o0] = ar + br;
        output[o0 + 1] = ai + bi;
        output[o1] = ar - br;
        output[o1 + 1] = ai - bi;
    }
    Ok(())
}

/// CPU twin of `dft_axis`: the direct DFT along one axis, each output summed in input order.
#[allow(clippy::too_many_arguments)]
pub fn dft_axis(
    input: &[f64],
    output: &mut [f64],
    lines: usize,
    l: usize,
    st: usize,
    tw: &[f64],
    inverse: bool,
) -> Result<()> {
    check(input.len(), output.len(), lines, l)?;
    if tw.len() < 2 * l {
        return Err(Error::InvalidInput(format!(
            "a length-{l} DFT needs {} twiddle values, got {}",
            2 * l,
            tw.len()
        )));
    }
    for t in 0..lines * l {
        let (line, k) = (t / l, t % l);
        let base = line_start(line, l, st);
        let (mut sr, mut si) = (0.0, 0.0);
        for n in 0..l {
            let (wr, wi) = twiddle(tw, (k * n) % l, inverse);
            let x = 2 * (base + n * st);
            sr += input[x] * wr - input[x + 1] * wi;
            si += input[x] * wi + input[x + 1] * wr;
        }
        output[2 * (base + k * st)] = sr;
        output[2 * (base + k * st) + 1] = si;
    }
    Ok(())
}

fn check(input: usize, output: usize, lines: usize, l: usize) -> Result<()> {
    let want = 2 * lines * l;
    if input != want || output != want {
        return Err(Error::InvalidInput(format!(
            "transform of {lines} lines of {l}: buffers of {input} and {output} values, need {want}"
        )));
    }
    Ok(())
}

/// The d-dimensional transform of the complex batch `z` (every chain at once) by the twins,
/// axis by axis in the order of `plans`, as the GPU runs it; `spare` is a buffer of the same size.
pub fn transform(
    z: &mut Vec<f64>,
    spare: &mut Vec<f64>,
    plans: &[AxisPlan],
    inverse: bool,
) -> Result<()> {
    let n = z.len() / 2;
    for plan in plans {
        let (l, st, lines) = (plan.extent, plan.stride, plan.lines(n));
        if plan.radix2 {
            for ns in plan.stages() {
                fft_stage(z, spare, lines, l, st, ns, &plan.twiddles, inverse)?;
                std::mem::swap(z, spare);
            }
        } else if l > 1 {
            dft_axis(z, spare, lines, l, st, &plan.twiddles, inverse)?;
            std::mem::swap(z, spare);
        }
    }
    Ok(())
}

/// CPU twin of `fourier_load`: the complex batch x + 0i.
pub fn load(x: &[f64]) -> Vec<f64> {
    x.iter().flat_map(|&r| [r, 0.0]).collect()
}

/// CPU twin of `fourier_scale`: z *= filter[site] for every chain (`filter` per site).
pub fn scale(z: &mut [f64], filter: &[f64]) {
    let v = filter.len().max(1);
    for (i, c) in z.chunks_mut(2).enumerate() {
        let f = filter[i % v];
        c[0] *= f;
        c[1] *= f;
    }
}

/// CPU twin of `fourier_store`: x = Re z.
pub fn store(z: &[f64], x: &mut [f64]) {
    for (r, c) in x.iter_mut().zip(z.chunks(2)) {
        *r = c[0];
    }
}

/// CPU twin of `axpy`: out = x + a·y.
pub fn axpy(out: &mut [f64], x: &[f64], a: f64, y: &[f64]) {
    for ((o, &xi), &yi) in out.iter_mut().zip(x).zip(y) {
        *o = xi + a * yi;
    }
}

/// CPU twin of `dot_chunks`: per chunk of [`REDUCE_CHUNK`] values of each segment of `seg_len`,
/// Σ aᵢbᵢ in order.
pub fn dot_chunks(a: &[f64], b: &[f64], seg_len: usize) -> Vec<f64> {
    a.chunks(seg_len)
        .zip(b.chunks(seg_len))
        .flat_map(|(sa, sb)| {
            sa.chunks(REDUCE_CHUNK)
                .zip(sb.chunks(REDUCE_CHUNK))
                .map(|(ca, cb)| ca.iter().zip(cb).map(|(x, y)| x * y).sum::<f64>())
        })
        .collect()
}

/// x ← F⁻¹ (filter · F x) for every chain of the real batch `x`, by the twins (the GPU's filter).
pub fn filter_twin(x: &mut [f64], lat: &Lattice, filter: &[f64]) -> Result<()> {
    let v = lat.volume();
    if filter.len() != v || !x.len().is_multiple_of(v) {
        return Err(Error::InvalidInput(format!(
            "a filter of {} values for a batch of {} on {v} sites",
            filter.len(),
            x.len()
        )));
    }
    let plans = AxisPlan::for_lattice(lat);
    let mut z = load(x);
    let mut spare = vec![0.0; z.len()];
    transform(&mut z, &mut spare, &plans, false)?;
    scale(&mut z, filter);
    transform(&mut z, &mut spare, &plans, true)?;
    store(&z, x);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustfft::num_complex::Complex;
    use rustfft::FftPlanner;

    /// The twins' 1D transform of a line against rustfft, for power-of-two and other lengths,
    /// forward and inverse.
    #[test]
    fn the_twins_transform_like_rustfft() {
        for l in [2usize, 3, 4, 6, 8, 12, 32, 64, 100] {
            let lat = Lattice::new(&[l]).unwrap();
            let plans = AxisPlan::for_lattice(&lat);
            let x: Vec<Complex<f64>> = (0..l)
                .map(|i| Complex::new((i as f64 * 0.7).sin(), (i as f64 * 1.3).cos()))
                .collect();
            for inverse in [false, true] {
                let mut z: Vec<f64> = x.iter().flat_map(|c| [c.re, c.im]).collect();
                let mut spare = vec![0.0; z.len()];
                transform(&mut z, &mut spare, &plans, inverse).unwrap();
                let mut want = x.clone();
                let mut planner = FftPlanner::new();
                let fft = match inverse {
                    false => planner.plan_fft_forward(l),
                    true => planner.plan_fft_inverse(l),
                };
                fft.process(&mut want);
                for (k, w) in want.iter().enumerate() {
                    let err = (Complex::new(z[2 * k], z[2 * k + 1]) - w).norm();
                    assert!(err < 1e-12 * (l as f64), "L = {l} k = {k}: {err:e}");
                }
            }
        }
    }
}
