//! The per-site conditional of a continuous-mixture autoregressive network: a K-component
//! mixture of Beta distributions over u = θ/2π (Wang, Jiang, He, Zhou, Chin. Phys. Lett. 39,
//! 120502 (2022)), with a uniform part of fixed weight ε = [`UNIFORM`]. For each site the
//! network gives 3K numbers — logits l_k, raw concentrations r^a_k, r^b_k — and
//! q(u) = ε + (1 − ε) Σ_k π_k Beta(u; a_k, b_k) with π = softmax(l), a = 1 + softplus(r^a),
//! b = 1 + softplus(r^b). Concentrations ≥ 1 keep every density bounded (no mass piles up at
//! u = 0 or 1, so quadrature of q converges and u never underflows); but a Beta density with a
//! concentration above 1 vanishes at that end, where the target does not, and the importance
//! weights p/q would have infinite variance there: the uniform part bounds them (a defensive
//! mixture, Hesterberg, Technometrics 37, 185 (1995)).
//!
//! Here: ln Γ and ψ, the site density and its gradient, the site draw (CPU twins of
//! `kernels/can.cu`), and [`BetaMixture`], the fused tape op (softmax, log-Beta density,
//! log-sum-exp and their gradients in one kernel per direction).

use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::device::cuda::CAN;
use crate::device::geometry::elementwise;
use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::nn::kernels::check_len;
use crate::nn::tensor::{mixed, Buffer};
use crate::nn::{Backward, Ctx, Op, Real, Tensor};
use crate::philox;

/// Most mixture components.
pub const MAX_COMPONENTS: usize = 16;
/// u is clamped to [2⁻²⁴, 1 − 2⁻²⁴] (representable in f32), so ln u and ln(1 − u) stay finite.
pub const U_MIN: f64 = 5.960_464_477_539_063e-8;
/// ln 2π: the density of θ = 2πu is q(u)/2π.
pub const LN_2PI: f64 = 1.837_877_066_409_345_3;
/// Rejections of one Γ draw before its mode is returned instead (probability < 1e-80).
const ATTEMPTS: usize = 64;
/// Weight ε of the uniform part of every site's density.
pub const UNIFORM: f64 = 0.05;

/// ln Γ(x) for x ≥ 1: the recurrence up to x ≥ 10, then Stirling's series (error < 2e-14).
/// Twin of `can_ln_gamma`.
pub fn ln_gamma(mut x: f64) -> f64 {
    let mut prod = 1.0;
    while x < 10.0 {
        prod *= x;
        x += 1.0;
    }
    let (r, r2) = (1.0 / x, 1.0 / (x * x));
    let series = r
        * (1.0 / 12.0
            - r2 * (1.0 / 360.0 - r2 * (1.0 / 1260.0 - r2 * (1.0 / 1680.0 - r2 / 1188.0))));
    (x - 0.5) * x.ln() - x + 0.5 * LN_2PI + series - prod.ln()
}

/// ψ(x) = d ln Γ(x)/dx for x ≥ 1: the recurrence up to x ≥ 10, then the asymptotic series.
/// Twin of `can_digamma`.
pub fn digamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let r2 = 1.0 / (x * x);
    let series = r2
        * (1.0 / 12.0 - r2 * (1.0 / 120.0 - r2 * (1.0 / 252.0 - r2 * (1.0 / 240.0 - r2 / 132.0))));
    acc + x.ln() - 0.5 / x - series
}

/// ln(1 − ε).
fn ln_mixture() -> f64 {
    (-UNIFORM).ln_1p()
}

fn softplus(r: f64) -> f64 {
    if r > 0.0 {
        r + (-r).exp().ln_1p()
    } else {
        r.exp().ln_1p()
    }
}

fn sigmoid(r: f64) -> f64 {
    1.0 / (1.0 + (-r).exp())
}

/// u clamped to [[`U_MIN`], 1 − [`U_MIN`]].
pub fn clamp_u(u: f64) -> f64 {
    u.clamp(U_MIN, 1.0 - U_MIN)
}

/// The concentrations (a, b) of raw outputs (r^a, r^b).
pub fn concentrations(ra: f64, rb: f64) -> (f64, f64) {
    (1.0 + softplus(ra), 1.0 + softplus(rb))
}

/// ln Σ_k exp(l_k) − max, and the max.
fn log_sum_exp(l: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let m = l.clone().fold(-1e300, f64::max);
    let z: f64 = l.map(|x| (x - m).exp()).sum();
    (m + z.ln(), m)
}

/// ln(1 − ε) + ln π_k + ln Beta(u; a_k, b_k) per component into `lp`, returning
/// ln q(u) = ln(ε + Σ_k e^{lp_k}). `p(j)` is raw output j of the site (0..3K). Twin of
/// `can_site_terms`.
fn site_terms(p: impl Fn(usize) -> f64, k: usize, u: f64, lp: &mut [f64]) -> f64 {
    let (lse, _) = log_sum_exp((0..k).map(&p));
    let (lu, l1u) = (u.ln(), (-u).ln_1p());
    let mut best = -1e300f64;
    for (j, out) in lp.iter_mut().enumerate().take(k) {
        let (a, b) = concentrations(p(k + j), p(2 * k + j));
        let lbeta = ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b);
        *out = ln_mixture() + p(j) - lse + (a - 1.0) * lu + (b - 1.0) * l1u - lbeta;
        best = best.max(*out);
    }
    let ln_uniform = UNIFORM.ln();
    let best = best.max(ln_uniform);
    let s: f64 = (ln_uniform - best).exp() + lp[..k].iter().map(|x| (x - best).exp()).sum::<f64>();
    best + s.ln()
}

/// ln q(θ) of one site (density of θ, so − ln 2π) from its 3K raw outputs `p` (contiguous).
pub fn site_log_density(p: &[f64], u: f64) -> f64 {
    let k = p.len() / 3;
    let mut lp = [0.0; MAX_COMPONENTS];
    site_terms(|j| p[j], k, clamp_u(u), &mut lp) - LN_2PI
}

/// Sizes of a mixture evaluation: `batch` samples of `volume` sites, `k` components.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixtureShape {
    /// Samples.
    pub batch: usize,
    /// Sites per sample.
    pub volume: usize,
    /// Components.
    pub k: usize,
}

impl MixtureShape {
    /// The shape of raw outputs `[B, 3K, sites…]` and values `[B, sites…]`.
    fn of(out: &[usize], u: &[usize]) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "a Beta mixture needs outputs [B, 3K, sites…] and values [B, sites…] with \
                 1 <= K <= {MAX_COMPONENTS}; got {out:?} and {u:?}"
            ))
        };
        if out.len() < 2 || u.is_empty() || out[0] != u[0] || out[2..] != u[1..] {
            return Err(bad());
        }
        let k = out[1] / 3;
        if !out[1].is_multiple_of(3) || k == 0 || k > MAX_COMPONENTS {
            return Err(bad());
        }
        let shape = MixtureShape {
            batch: out[0],
            volume: u[1..].iter().product(),
            k,
        };
        shape.check_size()?;
        Ok(shape)
    }

    fn check_size(&self) -> Result<()> {
        let n = self.batch.checked_mul(3 * self.k * self.volume);
        if n.is_none_or(|n| n >= 1 << 31) {
            return Err(Error::InvalidInput(format!(
                "a Beta mixture over {self:?} is too large for the kernels"
            )));
        }
        Ok(())
    }

    fn check(&self, out: usize, u: usize, per_site: usize) -> Result<()> {
        self.check_size()?;
        let n = self.batch * self.volume;
        check_len("mixture outputs", out, 3 * self.k * n)?;
        check_len("mixture values", u, n)?;
        check_len("mixture per-site values", per_site, n)
    }
}

/// CPU twin of `can_mixture_logp`: ln q per site, `[B, V]`, from outputs `[B, 3K, V]` and u.
pub fn log_density<T: Real>(
    dev: &CpuDevice,
    s: MixtureShape,
    out: &[T],
    u: &[T],
    logp: &mut [T],
) -> Result<()> {
    s.check(out.len(), u.len(), logp.len())?;
    let (v, k) = (s.volume, s.k);
    dev.for_chunks(v.max(1), logp, None, |first, rows, _| {
        let mut lp = [0.0; MAX_COMPONENTS];
        for (r, row) in rows.chunks_mut(v).enumerate() {
            let b = first + r;
            let p = &out[b * 3 * k * v..(b + 1) * 3 * k * v];
            for (site, o) in row.iter_mut().enumerate() {
                let uu = clamp_u(u[b * v + site].to_f64());
                let total = site_terms(|j| p[j * v + site].to_f64(), k, uu, &mut lp);
                *o = T::from_f64(total - LN_2PI);
            }
        }
    })
}

/// CPU twin of `can_mixture_grad`: ∂L/∂outputs `[B, 3K, V]` from g = ∂L/∂(ln q per site).
pub fn log_density_grad<T: Real>(
    dev: &CpuDevice,
    s: MixtureShape,
    out: &[T],
    u: &[T],
    g: &[T],
    dout: &mut [T],
) -> Result<()> {
    s.check(out.len(), u.len(), g.len())?;
    check_len("mixture output gradient", dout.len(), out.len())?;
    let (v, k) = (s.volume, s.k);
    dev.for_chunks((3 * k * v).max(1), dout, None, |first, rows, _| {
        let mut lp = [0.0; MAX_COMPONENTS];
        for (r, d) in rows.chunks_mut(3 * k * v).enumerate() {
            let b = first + r;
            let p = |j: usize, site: usize| out[(b * 3 * k + j) * v + site].to_f64();
            for site in 0..v {
                let uu = clamp_u(u[b * v + site].to_f64());
                let total = site_terms(|j| p(j, site), k, uu, &mut lp);
                let (lse, _) = log_sum_exp((0..k).map(|j| p(j, site)));
                let gi = g[b * v + site].to_f64();
                let (lu, l1u) = (uu.ln(), (-uu).ln_1p());
                let rsum: f64 = lp[..k].iter().map(|l| (l - total).exp()).sum();
                for j in 0..k {
                    let (ra, rb) = (p(k + j, site), p(2 * k + j, site));
                    let (a, bb) = concentrations(ra, rb);
                    let (r, pi) = ((lp[j] - total).exp(), (p(j, site) - lse).exp());
                    let pab = digamma(a + bb);
                    d[j * v + site] = T::from_f64(gi * (r - pi * rsum));
                    d[(k + j) * v + site] =
                        T::from_f64(gi * r * (lu - digamma(a) + pab) * sigmoid(ra));
                    d[(2 * k + j) * v + site] =
                        T::from_f64(gi * r * (l1u - digamma(bb) + pab) * sigmoid(rb));
                }
            }
        }
    })
}

/// The random numbers of one site's draw: block j of the Philox counter
/// (site, sample, step, stream | j << 8). Twin of `CanDraws`.
pub struct SiteDraws {
    counter: [u32; 4],
    key: [u32; 2],
    stream: u32,
    j: u32,
}

impl SiteDraws {
    /// The draws of `site` of `sample` at `step` of `stream` (< 256) under `seed`.
    pub fn new(seed: u64, site: u32, sample: u32, step: u32, stream: u32) -> Self {
        SiteDraws {
            counter: [site, sample, step, stream],
            key: philox::key_from_seed(seed),
            stream,
            j: 0,
        }
    }

    fn next(&mut self) -> [u32; 4] {
        self.counter[3] = self.stream | (self.j << 8);
        self.j += 1;
        philox::philox4x32_10(self.counter, self.key)
    }

    /// The next uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        let b = self.next();
        philox::uniform_from_words(b[0], b[1])
    }

    fn normal(&mut self) -> f64 {
        philox::normal_pair(self.next()).0
    }
}

/// Γ(a, 1) for a ≥ 1 (Marsaglia, Tsang, ACM TOMS 26, 363 (2000)). Twin of `can_gamma`.
fn gamma(r: &mut SiteDraws, a: f64) -> f64 {
    let d = a - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    for _ in 0..ATTEMPTS {
        let z = r.normal();
        let v = 1.0 + c * z;
        let uu = r.uniform();
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        if uu.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v;
        }
    }
    d
}

/// One draw of u from a site's density, raw outputs `p` (3K, contiguous): with probability ε
/// uniform, else a component by its weight, then Beta(a, b) = X/(X + Y) with X ~ Γ(a),
/// Y ~ Γ(b); clamped. Twin of `can_sample_site`.
pub fn sample_site(p: &[f64], r: &mut SiteDraws) -> f64 {
    let first = r.uniform();
    if first < UNIFORM {
        return clamp_u(r.uniform());
    }
    let k = p.len() / 3;
    let m = p[..k].iter().copied().fold(-1e300, f64::max);
    let z: f64 = p[..k].iter().map(|x| (x - m).exp()).sum();
    let pick = (first - UNIFORM) / (1.0 - UNIFORM) * z;
    let mut cum = 0.0;
    let mut c = k - 1;
    for (j, &l) in p[..k].iter().enumerate() {
        cum += (l - m).exp();
        if pick < cum {
            c = j;
            break;
        }
    }
    let (a, b) = concentrations(p[k + c], p[2 * k + c]);
    let x = gamma(r, a);
    let y = gamma(r, b);
    clamp_u(x / (x + y))
}

fn cuda_log_density<T: Real>(
    ctx: &Ctx<T>,
    s: MixtureShape,
    out: &CudaSlice<T>,
    u: &CudaSlice<T>,
    logp: &mut CudaSlice<T>,
) -> Result<()> {
    s.check(out.len(), u.len(), logp.len())?;
    let d = ctx.cuda().ok_or_else(mixed)?;
    let f = d.function(&CAN, &format!("can_mixture_logp_{}", T::NAME))?;
    let (b, k, v) = (s.batch as u32, s.k as u32, s.volume as u32);
    let mut l = d.stream().launch_builder(&f);
    l.arg(out).arg(u).arg(logp).arg(&b).arg(&k).arg(&v);
    // SAFETY: matches can_mixture_logp_T; buffer sizes checked above.
    unsafe { l.launch(elementwise(s.batch * s.volume)?) }?;
    Ok(())
}

fn cuda_log_density_grad<T: Real>(
    ctx: &Ctx<T>,
    s: MixtureShape,
    [out, u, g]: [&CudaSlice<T>; 3],
    dout: &mut CudaSlice<T>,
) -> Result<()> {
    s.check(out.len(), u.len(), g.len())?;
    check_len("mixture output gradient", dout.len(), out.len())?;
    let d = ctx.cuda().ok_or_else(mixed)?;
    let f = d.function(&CAN, &format!("can_mixture_grad_{}", T::NAME))?;
    let (b, k, v) = (s.batch as u32, s.k as u32, s.volume as u32);
    let mut l = d.stream().launch_builder(&f);
    l.arg(out).arg(u).arg(g).arg(dout).arg(&b).arg(&k).arg(&v);
    // SAFETY: matches can_mixture_grad_T; buffer sizes checked above.
    unsafe { l.launch(elementwise(s.batch * s.volume)?) }?;
    Ok(())
}

/// The Beta-mixture log density as a tape op. Inputs: the network's raw outputs
/// `[B, 3K, sites…]` and u `[B, sites…]` (data: no gradient flows into it). Output: ln q(θ_s | θ_<s)
/// per site, `[B, sites…]`; its sum over sites is ln q(θ).
pub struct BetaMixture;

impl<T: Real> Op<T> for BetaMixture {
    fn name(&self) -> &str {
        "beta_mixture_log_density"
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let [out, u] = inputs else {
            return Err(Error::InvalidInput(
                "a Beta mixture takes raw outputs and values".into(),
            ));
        };
        let s = MixtureShape::of(out.shape(), u.shape())?;
        let ctx = out.ctx();
        let mut logp = ctx.empty(u.shape())?;
        match (out.buf(), u.buf(), logp.buf_mut()) {
            (Buffer::Cpu(o), Buffer::Cpu(uu), Buffer::Cpu(l)) => {
                log_density(ctx.cpu().ok_or_else(mixed)?, s, o, uu, l)?
            }
            (Buffer::Cuda(o), Buffer::Cuda(uu), Buffer::Cuda(l)) => {
                cuda_log_density(ctx, s, o, uu, l)?
            }
            _ => return Err(mixed()),
        }
        Ok(vec![logp])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let (out, u, g) = (bw.input(0), bw.input(1), bw.grad(0)?);
        let s = MixtureShape::of(out.shape(), u.shape())?;
        let ctx = out.ctx();
        let mut dout = ctx.empty(out.shape())?;
        match ([out.buf(), u.buf(), g.buf()], dout.buf_mut()) {
            ([Buffer::Cpu(o), Buffer::Cpu(uu), Buffer::Cpu(gg)], Buffer::Cpu(d)) => {
                log_density_grad(ctx.cpu().ok_or_else(mixed)?, s, o, uu, gg, d)?
            }
            ([Buffer::Cuda(o), Buffer::Cuda(uu), Buffer::Cuda(gg)], Buffer::Cuda(d)) => {
                cuda_log_density_grad(ctx, s, [o, uu, gg], d)?
            }
            _ => return Err(mixed()),
        }
        Ok(vec![bw.needs(0).then_some(dout), None])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_and_digamma_match_known_values() {
        // Γ(1) = Γ(2) = 1, Γ(1/2)... (x ≥ 1 only): Γ(5) = 24, Γ(3.5) = 15√π/8.
        assert!(ln_gamma(1.0).abs() < 1e-13);
        assert!(ln_gamma(2.0).abs() < 1e-13);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        let g35 = 15.0 * std::f64::consts::PI.sqrt() / 8.0;
        assert!((ln_gamma(3.5) - g35.ln()).abs() < 1e-13);
        assert!((ln_gamma(123.4) - 469.336_097_442_190_6).abs() < 1e-9);
        // ψ(1) = −γ, ψ(n + 1) = ψ(n) + 1/n.
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-13);
        assert!((digamma(4.0) - (1.0 + 0.5 + 1.0 / 3.0 - euler)).abs() < 1e-13);
        for x in [1.0, 1.7, 9.99, 10.0, 42.0] {
            let fd = (ln_gamma(x + 1e-5) - ln_gamma(x - 1e-5)) / 2e-5;
            assert!((fd - digamma(x)).abs() < 1e-8, "ψ({x})");
        }
    }
}
