//! The Fourier flow of periodic paths (after S. Chen et al., "Fourier-flow model generating
//! Feynman paths", PRD 107 056001 (2023)): the flow acts on the real DFT modes of the path
//! (Matsubara modes) rather than on its sites. In that basis the kinetic term is diagonal, so a
//! mode-wise scale captures the harmonic part exactly, and the double well's bimodality lives in
//! one variable, the zero mode (√N times the path's mean), which a monotone map can split into
//! two wells — something no local coupling of a Gaussian in coordinate space can do at once for
//! all sites, which is why coordinate flows trained by the reverse KL collapse onto one well.
//!
//! In the forward direction (prior → path) a Fourier flow is: z ~ N(0, 1) per mode; u = e^a ⊙ z
//! (a per mode, log-det Σa); the zero-mode map u₀ ← u₀ + w(e^p − 1) tanh((u₀ − c)/w), monotone for
//! every (p, c, w) with log-det ln(1 + (e^p − 1) sech²); the inverse orthonormal real DFT
//! (log-det 0); then the affine couplings of [`super::model`] on the path's sites, which model the
//! local (anharmonic) structure that convolutions capture well. (Couplings on the modes
//! themselves, tried first, trained worse: the quartic term couples all modes at once.)
//! The scales start at the Gaussian approximation of the target around its constant minimum φ*
//! (a_k = −½ ln ∂²S/∂u_k²), and the zero-mode map at two Gaussians centred on ±√N φ* — the
//! free-field starting point of the paper's mode-wise scale, made symmetric.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::target::Target;
use crate::error::{Error, Result};
use crate::nn::tensor::Buffer;
use crate::nn::{kernels, Backward, Ctx, Op, Real, Tensor};

/// The orthonormal real DFT of N-site periodic paths, in the half-complex layout
/// u = [u₀, c₁, s₁, c₂, s₂, …] (and u_{N/2} last for even N), with
/// u₀ = Σx/√N, c_k = √(2/N) Σ x_n cos(2πkn/N), s_k = √(2/N) Σ x_n sin(2πkn/N),
/// u_{N/2} = Σ (−1)ⁿ x_n/√N. Orthogonal, so its inverse is its transpose and |det| = 1.
pub struct RealDft {
    n: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for RealDft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RealDft({})", self.n)
    }
}

impl RealDft {
    /// The transform of `n`-site paths, planned once (rustfft picks its SIMD at run time).
    pub fn new(n: usize) -> Result<Self> {
        if n < 2 {
            return Err(Error::InvalidInput(format!(
                "a Fourier flow needs at least 2 time slices, got {n}"
            )));
        }
        let mut planner = FftPlanner::new();
        Ok(RealDft {
            n,
            forward: planner.plan_fft_forward(n),
            inverse: planner.plan_fft_inverse(n),
        })
    }

    /// Sites (= modes) per path.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false: a transform has at least 2 modes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The frequency index k of mode `i` in the half-complex layout.
    pub fn frequency(&self, i: usize) -> usize {
        i.div_ceil(2)
    }

    /// Modes of one path: `u = R x`.
    pub fn modes(&self, x: &[f64], u: &mut [f64], buf: &mut Vec<Complex<f64>>) {
        let n = self.n;
        buf.clear();
        buf.extend(x.iter().map(|&v| Complex::new(v, 0.0)));
        self.forward.process(buf);
        let (r1, r2) = ((1.0 / n as f64).sqrt(), (2.0 / n as f64).sqrt());
        u[0] = buf[0].re * r1;
        for k in 1..n.div_ceil(2) {
            u[2 * k - 1] = buf[k].re * r2;
            u[2 * k] = -buf[k].im * r2;
        }
        if n.is_multiple_of(2) {
            u[n - 1] = buf[n / 2].re * r1;
        }
    }

    /// The path of given modes: `x = Rᵀ u`.
    pub fn path(&self, u: &[f64], x: &mut [f64], buf: &mut Vec<Complex<f64>>) {
        let n = self.n;
        let nf = n as f64;
        buf.clear();
        buf.resize(n, Complex::new(0.0, 0.0));
        buf[0] = Complex::new(u[0] * nf.sqrt(), 0.0);
        let h = (nf / 2.0).sqrt();
        for k in 1..n.div_ceil(2) {
            let c = Complex::new(u[2 * k - 1] * h, -u[2 * k] * h);
            buf[k] = c;
            buf[n - k] = c.conj();
        }
        if n.is_multiple_of(2) {
            buf[n / 2] = Complex::new(u[n - 1] * nf.sqrt(), 0.0);
        }
        self.inverse.process(buf);
        for (xi, b) in x.iter_mut().zip(buf.iter()) {
            *xi = b.re / nf;
        }
    }

    /// The transform as a matrix R `[N, N]` (row i = mode i), for the GPU, where the batched
    /// transform is one matrix product.
    pub fn matrix(&self) -> Vec<f64> {
        let n = self.n;
        let mut r = vec![0.0; n * n];
        let mut e = vec![0.0; n];
        let mut col = vec![0.0; n];
        let mut buf = Vec::new();
        for j in 0..n {
            e.iter_mut().for_each(|v| *v = 0.0);
            e[j] = 1.0;
            self.modes(&e, &mut col, &mut buf);
            for i in 0..n {
                r[i * n + j] = col[i];
            }
        }
        r
    }

    /// Applies the transform (or its inverse) to every path of `src` `[B, N]` into `dst`, in
    /// parallel over paths on the CPU.
    fn apply_cpu<T: Real>(
        &self,
        dev: &crate::device::CpuDevice,
        inverse: bool,
        src: &[T],
        dst: &mut [T],
    ) -> Result<()> {
        let n = self.n;
        dev.for_chunks(n, dst, None, |first, rows, _| {
            let (mut a, mut b, mut buf) = (vec![0.0; n], vec![0.0; n], Vec::with_capacity(n));
            for (k, out) in rows.chunks_mut(n).enumerate() {
                let p = first + k;
                for (ai, s) in a.iter_mut().zip(&src[p * n..(p + 1) * n]) {
                    *ai = s.to_f64();
                }
                if inverse {
                    self.path(&a, &mut b, &mut buf);
                } else {
                    self.modes(&a, &mut b, &mut buf);
                }
                for (o, v) in out.iter_mut().zip(&b) {
                    *o = T::from_f64(*v);
                }
            }
        })
    }
}

/// The real DFT as a tape op on `[B, …]` with N values per sample: modes (`inverse` false) or
/// paths (`inverse` true). rustfft on the CPU; on CUDA one matrix product with R (the batched DFT
/// as a GEMM: N² per path, nothing beside the network for the path lengths flows train on). The
/// backward pass is the other direction (R is orthogonal).
pub struct RealDftOp<T: Real> {
    /// The planned transform.
    pub dft: Arc<RealDft>,
    /// R on the tensors' device (used on CUDA).
    pub matrix: Arc<Tensor<T>>,
    /// Paths from modes instead of modes from paths.
    pub inverse: bool,
}

impl<T: Real> RealDftOp<T> {
    /// The op for `dft` on `ctx`.
    pub fn new(ctx: &Ctx<T>, dft: Arc<RealDft>, inverse: bool) -> Result<Self> {
        let n = dft.len();
        let matrix = Arc::new(ctx.from_f64(&[n, n], &dft.matrix())?);
        Ok(RealDftOp {
            dft,
            matrix,
            inverse,
        })
    }

    fn run(&self, x: &Tensor<T>, inverse: bool) -> Result<Tensor<T>> {
        let n = self.dft.len();
        let b = x.shape().first().copied().unwrap_or(0);
        if b == 0 || x.len() != b * n {
            return Err(Error::InvalidInput(format!(
                "the real DFT of {n}-site paths takes [batch, …] with {n} values per sample; \
                 got {:?}",
                x.shape()
            )));
        }
        let ctx = x.ctx();
        let mut out = ctx.empty(x.shape())?;
        if let (Buffer::Cpu(src), Buffer::Cpu(dst)) = (x.buf(), out.buf_mut()) {
            let dev = ctx.cpu().ok_or_else(crate::nn::tensor::mixed)?;
            self.dft.apply_cpu(dev, inverse, src, dst)?;
            return Ok(out);
        }
        // Rows are paths: modes = x Rᵀ, paths = u R.
        let flat = x.reshape(&[b, n])?;
        let y = kernels::matmul(&flat, &self.matrix, false, !inverse)?;
        y.reshape(x.shape())
    }
}

impl<T: Real> Op<T> for RealDftOp<T> {
    fn name(&self) -> &str {
        if self.inverse {
            "real_dft_inverse"
        } else {
            "real_dft"
        }
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        Ok(vec![self.run(x[0], self.inverse)?])
    }

    fn backward(&self, b: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(self.run(b.grad(0)?, !self.inverse)?)])
    }
}

/// Parameters of the zero-mode map: (p, c, ln w).
pub const ZERO_MAP_PARAMS: usize = 3;

/// The zero-mode map y = u + w(e^p − 1) tanh((u − c)/w) of one value and its parameters
/// θ = (p, c, ln w): returns (y, ln y').
fn zero_map(u: f64, theta: &[f64]) -> (f64, f64) {
    let (e, c, w) = (theta[0].exp() - 1.0, theta[1], theta[2].exp());
    let th = ((u - c) / w).tanh();
    (u + w * e * th, (1.0 + e * (1.0 - th * th)).ln())
}

/// Partial derivatives of (y, ln y') of [`zero_map`] by (u, p, c, ln w).
fn zero_map_grad(u: f64, theta: &[f64]) -> ([f64; 4], [f64; 4]) {
    let (ep, c, w) = (theta[0].exp(), theta[1], theta[2].exp());
    let e = ep - 1.0;
    let r = (u - c) / w;
    let th = r.tanh();
    let sh2 = 1.0 - th * th;
    let d = 1.0 + e * sh2;
    let dy = [d, w * ep * th, -e * sh2, w * e * (th - r * sh2)];
    // ∂ ln d: d depends on r through sech², ∂sech²/∂r = −2 tanh sech².
    let k = -2.0 * e * th * sh2 / d;
    let dld = [k / w, ep * sh2 / d, -k / w, -k * r];
    (dy, dld)
}

/// The inverse of [`zero_map`] by safeguarded Newton (the map is strictly increasing, with
/// y' ≥ min(1, e^p), so bisection on a bracket always converges).
fn zero_map_inverse(y: f64, theta: &[f64]) -> f64 {
    let (e, w) = (theta[0].exp() - 1.0, theta[2].exp());
    let reach = w * e.abs() + 1.0;
    let (mut lo, mut hi) = (y - reach, y + reach);
    let mut u = y - w * e * ((y - theta[1]) / w).tanh();
    for _ in 0..400 {
        let (f, ld) = zero_map(u, theta);
        let g = f - y;
        if g == 0.0 {
            break;
        }
        if g > 0.0 {
            hi = u;
        } else {
            lo = u;
        }
        if hi - lo < 1e-15 * (1.0 + y.abs()) {
            break;
        }
        // Newton where it stays well inside the bracket, bisection otherwise (Newton alone can
        // cycle between the flat tails of tanh).
        let newton = u - g / ld.exp();
        u = if newton > lo && newton < hi && (newton - u).abs() < 0.5 * (hi - lo) {
            newton
        } else {
            0.5 * (lo + hi)
        };
    }
    u
}

/// The zero-mode map as a tape op: inputs u `[B, …]` (mode 0 first in each sample) and θ `[3]`;
/// outputs the mapped modes and ln|det| `[B]`. Evaluated in f64 on the host (B scalars).
/// The inverse direction is not differentiable (only log-densities use it).
pub struct ZeroModeOp {
    /// Undo the map instead.
    pub inverse: bool,
}

fn host_parts<T: Real>(u: &Tensor<T>, theta: &Tensor<T>) -> Result<(usize, Vec<f64>, Vec<f64>)> {
    let b = u.shape().first().copied().unwrap_or(0);
    if b == 0 || theta.len() != ZERO_MAP_PARAMS {
        return Err(Error::InvalidInput(format!(
            "the zero-mode map takes [batch, …] and {ZERO_MAP_PARAMS} parameters; got {:?} and {:?}",
            u.shape(),
            theta.shape()
        )));
    }
    Ok((b, u.to_f64()?, theta.to_f64()?))
}

impl<T: Real> Op<T> for ZeroModeOp {
    fn name(&self) -> &str {
        "zero_mode_map"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let (b, mut u, theta) = host_parts(x[0], x[1])?;
        let n = u.len() / b;
        let mut ld = vec![0.0; b];
        for (row, l) in u.chunks_mut(n).zip(&mut ld) {
            if self.inverse {
                let v = zero_map_inverse(row[0], &theta);
                *l = -zero_map(v, &theta).1;
                row[0] = v;
            } else {
                let (y, d) = zero_map(row[0], &theta);
                (row[0], *l) = (y, d);
            }
        }
        let ctx = x[0].ctx();
        Ok(vec![
            ctx.from_f64(x[0].shape(), &u)?,
            ctx.from_f64(&[b], &ld)?,
        ])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        if self.inverse {
            return Err(Error::InvalidInput(
                "the inverse zero-mode map has no gradient (log-densities only)".into(),
            ));
        }
        let (b, u, theta) = host_parts(bw.input(0), bw.input(1))?;
        let n = u.len() / b;
        let gy = match bw.grads[0] {
            Some(g) => g.to_f64()?,
            None => vec![0.0; u.len()],
        };
        let gld = match bw.grads[1] {
            Some(g) => g.to_f64()?,
            None => vec![0.0; b],
        };
        let mut du = gy.clone();
        let mut dtheta = [0.0; ZERO_MAP_PARAMS];
        for s in 0..b {
            let (dy, dld) = zero_map_grad(u[s * n], &theta);
            let (g, gl) = (gy[s * n], gld[s]);
            du[s * n] = g * dy[0] + gl * dld[0];
            for k in 0..ZERO_MAP_PARAMS {
                dtheta[k] += g * dy[k + 1] + gl * dld[k + 1];
            }
        }
        let ctx = bw.input(0).ctx();
        Ok(vec![
            Some(ctx.from_f64(bw.input(0).shape(), &du)?),
            Some(ctx.from_f64(&[ZERO_MAP_PARAMS], &dtheta)?),
        ])
    }
}

/// The Gaussian approximation of `target` around its constant minimum: per mode the log-scale
/// a_k = −½ ln ∂²S/∂u_k² (second differences of the action along the mode), and the zero-mode
/// map θ = (p, 0, a₀) that puts two such Gaussians at ±√N y* (θ = 0, the identity, when the
/// minimum is at 0). Curvatures below 10⁻⁶ (flat or unstable directions) are clamped.
pub fn gaussian_start(target: &Target, dft: &RealDft) -> (Vec<f64>, [f64; ZERO_MAP_PARAMS]) {
    let n = dft.len();
    let y_star = constant_minimum(target, n);
    let base = vec![y_star; n];
    let s0 = target.action_of(&base);
    let h = 1e-2;
    let (mut mode, mut y, mut buf) = (vec![0.0; n], vec![0.0; n], Vec::new());
    let mut log_scale = vec![0.0; n];
    for (k, a) in log_scale.iter_mut().enumerate() {
        mode.iter_mut().for_each(|m| *m = 0.0);
        mode[k] = 1.0;
        dft.path(&mode, &mut y, &mut buf);
        let at = |t: f64| -> Vec<f64> { base.iter().zip(&y).map(|(b, e)| b + t * e).collect() };
        let curv = (target.action_of(&at(h)) - 2.0 * s0 + target.action_of(&at(-h))) / (h * h);
        *a = -0.5 * curv.max(1e-6).ln();
    }
    let shift = (n as f64).sqrt() * y_star;
    let width = log_scale[0].exp();
    let p = if shift > 0.0 {
        (1.0 + shift / width).ln()
    } else {
        0.0
    };
    let theta = [p, 0.0, log_scale[0]];
    (log_scale, theta)
}

/// The non-negative y minimising S over constant fields: a scan of 0..10·max(1, y_ordered) in
/// 4000 steps, refined by golden sections (0 for a single well at the origin).
fn constant_minimum(target: &Target, n: usize) -> f64 {
    let s = |v: f64| target.action_of(&vec![v; n]);
    let guess = target.action().ordered_value() / target.scale();
    let top = 10.0 * guess.abs().max(1.0);
    let steps = 4000;
    let best = (0..=steps)
        .map(|i| top * i as f64 / steps as f64)
        .fold((0.0, s(0.0)), |(bv, bs), v| {
            let sv = s(v);
            if sv < bs {
                (v, sv)
            } else {
                (bv, bs)
            }
        })
        .0;
    if best == 0.0 {
        return 0.0;
    }
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (best - top / steps as f64, best + top / steps as f64);
    for _ in 0..60 {
        let (a, b) = (hi - g * (hi - lo), lo + g * (hi - lo));
        if s(a) < s(b) {
            hi = b;
        } else {
            lo = a;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_map_gradients_match_finite_differences() {
        let theta = [1.3, 0.4, -0.2];
        for &u in &[-3.0, -0.3, 0.1, 2.5] {
            let (dy, dld) = zero_map_grad(u, &theta);
            let h = 1e-6;
            let mut args = [u, theta[0], theta[1], theta[2]];
            for k in 0..4 {
                let f = |a: &[f64; 4]| zero_map(a[0], &a[1..]);
                args[k] += h;
                let (yp, lp) = f(&args);
                args[k] -= 2.0 * h;
                let (ym, lm) = f(&args);
                args[k] += h;
                assert!(
                    ((yp - ym) / (2.0 * h) - dy[k]).abs() < 1e-6,
                    "dy[{k}] at {u}"
                );
                assert!(
                    ((lp - lm) / (2.0 * h) - dld[k]).abs() < 1e-6,
                    "dld[{k}] at {u}"
                );
            }
        }
        // The inverse, also where the map is steep at its centre and flat in its tails.
        for theta in [[1.3, 0.4, -0.2], [8.0, 0.0, -1.4], [-2.0, 1.0, 0.5]] {
            for &u in &[-30.0, -3.0, -0.3, -0.01, 0.001, 0.1, 2.5, 40.0] {
                let back = zero_map_inverse(zero_map(u, &theta).0, &theta);
                assert!(
                    (back - u).abs() < 1e-12 * (1.0 + u.abs()),
                    "{theta:?}: {u} -> {back}"
                );
            }
        }
    }

    #[test]
    fn real_dft_is_orthonormal_and_matches_its_matrix() {
        for n in [2, 5, 8, 9] {
            let dft = RealDft::new(n).unwrap();
            let r = dft.matrix();
            for i in 0..n {
                for j in 0..n {
                    let dot: f64 = (0..n).map(|k| r[i * n + k] * r[j * n + k]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-12, "n {n}: R Rᵀ[{i},{j}] = {dot}");
                }
            }
            // Mode 1 of n ≥ 3 is √(2/N) cos(2πn/N), independently of the FFT.
            if n >= 3 {
                for j in 0..n {
                    let c = (2.0 / n as f64).sqrt()
                        * (2.0 * std::f64::consts::PI * j as f64 / n as f64).cos();
                    assert!((r[n + j] - c).abs() < 1e-12);
                }
            }
            let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin() + 0.1).collect();
            let (mut u, mut back, mut buf) = (vec![0.0; n], vec![0.0; n], Vec::new());
            dft.modes(&x, &mut u, &mut buf);
            dft.path(&u, &mut back, &mut buf);
            for i in 0..n {
                let ui: f64 = (0..n).map(|j| r[i * n + j] * x[j]).sum();
                assert!((ui - u[i]).abs() < 1e-12);
                assert!((back[i] - x[i]).abs() < 1e-12);
            }
        }
    }
}
