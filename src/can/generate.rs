//! Cached generation (fast PixelCNN sampling, in the spirit of Ramachandran et al., arXiv:1704.06001):
//! sites are drawn in raster order and, at each site, every layer is evaluated *at that site
//! only*. A causal layer's activation at site s depends on earlier sites alone, and those are
//! final once they are drawn, so a whole configuration costs one forward pass instead of V.
//!
//! The CPU twin [`generate`] and the kernel `can_generate` (one block per sample) take the same
//! packed weights ([`pack`]) and draw the same numbers (keyed by site, sample, step).

use cudarc::driver::{DeviceRepr, PushKernelArg};

use super::mixture::{clamp_u, sample_site, site_log_density, SiteDraws, LN_2PI, MAX_COMPONENTS};
use crate::device::cuda::{CudaDevice, CAN};
use crate::device::geometry::one_block_each;
use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::nn::layers::Activation;
use crate::nn::Real;
use crate::philox;

/// The network's geometry (`struct CanNet` in `kernels/can.cu`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetSpec {
    /// Lattice extent along axis 0 (rows).
    pub h: i32,
    /// Lattice extent along axis 1 (columns).
    pub w: i32,
    /// Kernel rows.
    pub kh: i32,
    /// Kernel columns.
    pub kw: i32,
    /// Hidden channels.
    pub c: i32,
    /// Input features per site: [`INPUTS`] (cos φ, sin φ) or [`INPUTS_WITH_MEANS`].
    pub cin: i32,
    /// Residual (mask-B) layers after the mask-A layer.
    pub res: i32,
    /// Mixture components.
    pub k: i32,
    /// 0 leaky ReLU, 1 tanh, 2 SiLU.
    pub act: i32,
    /// The leaky ReLU's negative slope.
    pub slope: f64,
}
// SAFETY: plain repr(C) integers and a double, laid out as CanNet in can.cu.
unsafe impl DeviceRepr for NetSpec {}

impl NetSpec {
    /// Sites.
    pub fn volume(&self) -> usize {
        (self.h * self.w) as usize
    }
    fn taps(&self) -> usize {
        (self.kh * self.kw) as usize
    }
    fn channels(&self) -> usize {
        self.c as usize
    }
    /// Input features per site.
    pub fn inputs(&self) -> usize {
        self.cin as usize
    }
    /// Values of the packed weights.
    pub fn packed_len(&self) -> usize {
        let (t, c, nh) = (self.taps(), self.channels(), 3 * self.k as usize);
        t * self.inputs() * c + c + self.res as usize * (t * c * c + c) + nh * c + nh
    }
    /// Scratch values per sample: every layer's activations `[res + 1][V][C]`.
    pub fn scratch_len(&self) -> usize {
        (self.res as usize + 1) * self.volume() * self.channels()
    }
    /// f64 scratch values per sample of `can_generate`: the relative angles `[V]` and the
    /// running sums `[V + 1][2]` ([`RunningSums`]).
    pub fn angle_scratch_len(&self) -> usize {
        3 * self.volume() + 2
    }
    /// The activation code of `a`.
    pub fn activation_code(a: Activation) -> (i32, f64) {
        match a {
            Activation::LeakyRelu(s) => (0, s),
            Activation::Tanh => (1, 0.0),
            Activation::Silu => (2, 0.0),
        }
    }
    /// Checks the extents the kernels handle.
    pub fn validate(&self) -> Result<()> {
        let ok = self.h >= 1
            && self.w >= 1
            && self.kh >= 1
            && self.kw >= 1
            && self.c >= 1
            && (self.cin == INPUTS as i32 || self.cin == INPUTS_WITH_MEANS as i32)
            && self.res >= 0
            && (1..=MAX_COMPONENTS as i32).contains(&self.k)
            && (0..=2).contains(&self.act)
            && self.slope.is_finite()
            && (self.volume() as u64) * (self.res as u64 + 1) * (self.c as u64) < 1 << 28;
        if !ok {
            return Err(Error::InvalidInput(format!(
                "an autoregressive network of {self:?} is outside what the kernels handle"
            )));
        }
        Ok(())
    }
}

/// Input features per site without running means: (cos φ, sin φ) of the angle relative to site 0.
pub const INPUTS: usize = 2;
/// Input features per site with running means: (cos φ, sin φ), then the mean of (cos φ, sin φ)
/// over all earlier sites and over the last W earlier sites (the row behind the site).
pub const INPUTS_WITH_MEANS: usize = 6;

/// The running sums behind the input features, Σ_{j<s} (cos φ_j, sin φ_j), filled site by site
/// in raster order. A PixelCNN's conditional of site s sees only a window of earlier sites; the
/// running means hand every site the direction of the whole past and of the row behind it, the
/// long-wavelength information a near-critical XY configuration carries beyond any window. They
/// depend on earlier sites only, so the order stays causal. Twin of the sums in `can_generate`
/// (the same additions in the same order).
pub struct RunningSums {
    pre: Vec<[f64; 2]>,
    w: usize,
}

impl RunningSums {
    /// Sums for a lattice of `v` sites, `w` columns wide.
    pub fn new(v: usize, w: usize) -> Self {
        RunningSums {
            pre: vec![[0.0; 2]; v + 1],
            w,
        }
    }

    /// The features of site s with relative angle φ_s: (cos φ_s, sin φ_s, the mean of (cos, sin)
    /// over sites < s, the mean over sites s − W..s − 1 (fewer near the start); means of no sites
    /// are 0). Sites must come in order s = 0, 1, … (site 0 restarts the sums).
    pub fn features(&mut self, s: usize, phi: f64) -> [f64; INPUTS_WITH_MEANS] {
        let (sn, cs) = phi.sin_cos();
        let p = self.pre[s];
        self.pre[s + 1] = [p[0] + cs, p[1] + sn];
        let lo = s.saturating_sub(self.w);
        let mean = |a: f64, b: f64, n: usize| if n == 0 { 0.0 } else { (a - b) / n as f64 };
        let q = self.pre[lo];
        [
            cs,
            sn,
            mean(p[0], 0.0, s),
            mean(p[1], 0.0, s),
            mean(p[0], q[0], s - lo),
            mean(p[1], q[1], s - lo),
        ]
    }
}

/// A layer's weights `[Co, Ci, KH, KW]` (row-major) rearranged to the generation's `[tap][Ci][Co]`.
pub fn pack_layer<T: Real>(w: &[T], co: usize, ci: usize, taps: usize, out: &mut Vec<T>) {
    for tap in 0..taps {
        for i in 0..ci {
            for o in 0..co {
                out.push(w[(o * ci + i) * taps + tap]);
            }
        }
    }
}

/// The reference of site s > 0 in a lattice `w` columns wide: the left neighbour, or for the
/// first column the one above. Site 0 carries θ_0 = 2πu_0; every later site the angle relative to
/// its reference, θ_s = θ_ref(s) + 2πu_s − π (mod 2π): the seam u = 0 ≡ 1 sits where the spin is
/// anti-aligned with its neighbour (least weight in a ferromagnet), and the shift has unit
/// Jacobian. Twin of `can_reference`.
pub fn reference(s: usize, w: usize) -> usize {
    if !s.is_multiple_of(w) {
        s - 1
    } else {
        s - w
    }
}

/// The angle (mod 2π) at u relative to the reference angle `r`. Twin of `can_relative_angle`.
pub fn relative_angle(r: f64, u: f64) -> f64 {
    let p = r + std::f64::consts::TAU * u - std::f64::consts::PI;
    p - std::f64::consts::TAU * (p / std::f64::consts::TAU).floor()
}

/// Where a generation's random numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrawKey {
    /// Seed (the Philox key).
    pub seed: u64,
    /// Philox stream word (< 256).
    pub stream: u32,
    /// Step word (training step or sampler update).
    pub step: u32,
    /// Global index of the first sample (chain).
    pub sample0: u32,
}

fn activate<T: Real>(x: T, n: &NetSpec) -> T {
    match n.act {
        1 => x.tanh(),
        2 => x / (T::from_f64(1.0) + (-x).exp()),
        _ if x > T::zero() => x,
        _ => T::from_f64(n.slope * x.to_f64()),
    }
}

/// acc[co] += Σ_taps Σ_ci wt[tap][ci][co] h[src][ci] over the taps whose wrapped source precedes
/// `site` (or is it, when `inclusive`). Twin of `can_site_conv`, vectorised over co.
fn site_conv<T: Real>(
    wt: &[T],
    h: &[T],
    ci: usize,
    site: usize,
    inclusive: bool,
    n: &NetSpec,
    acc: &mut [T],
) {
    let (hh, ww, kh, kw) = (n.h as usize, n.w as usize, n.kh as usize, n.kw as usize);
    let co = acc.len();
    let (y, x) = (site / ww, site % ww);
    for ky in 0..kh {
        let sy = (y + ky + hh * kh - kh / 2) % hh;
        for kx in 0..kw {
            let src = sy * ww + (x + kx + ww * kw - kw / 2) % ww;
            if src > site || (src == site && !inclusive) {
                continue;
            }
            let wtap = &wt[(ky * kw + kx) * ci * co..(ky * kw + kx + 1) * ci * co];
            for (i, wrow) in wtap.chunks_exact(co).enumerate() {
                let hv = h[src * ci + i];
                for (a, &wv) in acc.iter_mut().zip(wrow) {
                    *a += wv * hv;
                }
            }
        }
    }
}

/// One sample's generation (the body of one block of `can_generate`): fills `u` `[V]` and
/// returns ln q(θ). `act` is the sample's scratch `[res + 1][V][C]`, `xin` `[V][cin]` (the
/// input features of [`RunningSums::features`]).
fn generate_one<T: Real>(
    wpack: &[T],
    n: &NetSpec,
    key: DrawKey,
    sample: u32,
    act: &mut [T],
    xin: &mut [T],
    u: &mut [T],
) -> f64 {
    let (v, t, c, nh) = (n.volume(), n.taps(), n.channels(), 3 * n.k as usize);
    let cin = n.inputs();
    let (w0, rest) = wpack.split_at(t * cin * c);
    let (b0, rest) = rest.split_at(c);
    let res_stride = t * c * c + c;
    let (wres, rest) = rest.split_at(res_stride * n.res as usize);
    let (wh, bh) = rest.split_at(nh * c);
    let mut acc = vec![T::zero(); c];
    let mut head = vec![0.0f64; nh];
    let mut phi = vec![0.0f64; v];
    let ww = n.w as usize;
    let mut sums = RunningSums::new(v, ww);
    let mut lq = 0.0;
    for s in 0..v {
        acc.copy_from_slice(b0);
        site_conv(w0, xin, cin, s, false, n, &mut acc);
        for (o, &a) in act[s * c..(s + 1) * c].iter_mut().zip(&acc) {
            *o = activate(a, n);
        }
        for l in 0..n.res as usize {
            let wl = &wres[l * res_stride..(l + 1) * res_stride];
            let (before, after) = act.split_at_mut((l + 1) * v * c);
            let hin = &before[l * v * c..];
            acc.copy_from_slice(&wl[t * c * c..]);
            site_conv(&wl[..t * c * c], hin, c, s, true, n, &mut acc);
            for ((o, &a), &x) in after[s * c..(s + 1) * c]
                .iter_mut()
                .zip(&acc)
                .zip(&hin[s * c..(s + 1) * c])
            {
                *o = x + activate(a, n);
            }
        }
        let hl = &act[n.res as usize * v * c + s * c..][..c];
        for (j, hd) in head.iter_mut().enumerate() {
            let mut a = bh[j];
            for (&wv, &hv) in wh[j * c..(j + 1) * c].iter().zip(hl) {
                a += wv * hv;
            }
            *hd = a.to_f64();
        }
        let mut draws = SiteDraws::new(key.seed, s as u32, sample, key.step, key.stream);
        if s == 0 {
            // The first angle is uniform (the model is exactly U(1) invariant).
            u[0] = T::from_f64(clamp_u(draws.uniform()));
            lq -= LN_2PI;
            phi[0] = 0.0;
        } else {
            u[s] = T::from_f64(sample_site(&head, &mut draws));
            lq += site_log_density(&head, u[s].to_f64());
            phi[s] = relative_angle(phi[reference(s, ww)], u[s].to_f64());
        }
        let f = sums.features(s, phi[s]);
        for (x, &fv) in xin[cin * s..cin * (s + 1)].iter_mut().zip(&f) {
            *x = T::from_f64(fv);
        }
    }
    lq
}

fn check(n: &NetSpec, wpack: usize, batch: usize, u: usize, logq: usize) -> Result<()> {
    n.validate()?;
    if wpack != n.packed_len() || u != batch * n.volume() || logq != batch {
        return Err(Error::InvalidInput(format!(
            "generation buffers of {wpack}, {u} and {logq} values do not fit {batch} samples of \
             {n:?} ({} weights)",
            n.packed_len()
        )));
    }
    Ok(())
}

/// CPU twin of `can_generate`: `batch` samples (global indices `key.sample0..`), u `[B, V]`
/// and ln q `[B]`, in parallel over samples.
pub fn generate<T: Real>(
    dev: &CpuDevice,
    wpack: &[T],
    n: &NetSpec,
    key: DrawKey,
    u: &mut [T],
    logq: &mut [f64],
) -> Result<()> {
    let batch = logq.len();
    check(n, wpack.len(), batch, u.len(), logq.len())?;
    sample_range(key, batch)?;
    let v = n.volume();
    let mut rows: Vec<(f64, Vec<T>)> = (0..batch).map(|_| (0.0, vec![T::zero(); v])).collect();
    dev.for_heavy_chunks(1, &mut rows, |first, chunk, _| {
        let mut act = vec![T::zero(); n.scratch_len()];
        let mut xin = vec![T::zero(); n.inputs() * v];
        for (k, (lq, row)) in chunk.iter_mut().enumerate() {
            let sample = key.sample0 + (first + k) as u32;
            xin.iter_mut().for_each(|x| *x = T::zero());
            *lq = generate_one(wpack, n, key, sample, &mut act, &mut xin, row);
        }
    })?;
    for ((lq, row), (l, out)) in rows.into_iter().zip(logq.iter_mut().zip(u.chunks_mut(v))) {
        *l = lq;
        out.copy_from_slice(&row);
    }
    Ok(())
}

fn sample_range(key: DrawKey, batch: usize) -> Result<()> {
    if key.sample0 as u64 + batch as u64 > 1 << 32 || key.stream >= 256 {
        return Err(Error::InvalidInput(format!(
            "samples {}..{} (stream {}) exceed the 2^32 sample indices",
            key.sample0,
            key.sample0 as u64 + batch as u64,
            key.stream
        )));
    }
    Ok(())
}

/// Samples per launch of `can_generate`, so the scratch stays under 256 MiB.
fn launch_batch<T: Real>(n: &NetSpec) -> usize {
    let per = (n.scratch_len() + n.inputs() * n.volume()) * std::mem::size_of::<T>()
        + 8 * n.angle_scratch_len();
    ((256usize << 20) / per.max(1)).clamp(1, 65_535)
}

/// `can_generate` on `dev`: as [`generate`], with host buffers in and out.
pub fn generate_cuda<T: Real>(
    dev: &CudaDevice,
    wpack: &[T],
    n: &NetSpec,
    key: DrawKey,
    u: &mut [T],
    logq: &mut [f64],
) -> Result<()> {
    let batch = logq.len();
    check(n, wpack.len(), batch, u.len(), logq.len())?;
    sample_range(key, batch)?;
    let (v, stream) = (n.volume(), dev.stream());
    let f = dev.function(&CAN, &format!("can_generate_{}", T::NAME))?;
    let w = stream.clone_htod(wpack)?;
    let per_launch = launch_batch::<T>(n).min(batch.max(1));
    let mut act = stream.alloc_zeros::<T>(per_launch * n.scratch_len())?;
    let [k0, k1] = philox::key_from_seed(key.seed);
    let mut start = 0;
    while start < batch {
        let b = per_launch.min(batch - start);
        let mut xin = stream.alloc_zeros::<T>(b * n.inputs() * v)?;
        let mut phi = stream.alloc_zeros::<f64>(b * n.angle_scratch_len())?;
        let mut du = stream.alloc_zeros::<T>(b * v)?;
        let mut dq = stream.alloc_zeros::<f64>(b)?;
        let (bn, s0) = (b as u32, key.sample0 + start as u32);
        let mut l = stream.launch_builder(&f);
        l.arg(&w).arg(&mut act).arg(&mut xin).arg(&mut phi);
        l.arg(&mut du).arg(&mut dq);
        l.arg(n).arg(&bn).arg(&s0).arg(&key.step).arg(&key.stream);
        l.arg(&k0).arg(&k1);
        let mut cfg = one_block_each(b)?;
        cfg.block_dim = (64, 1, 1);
        // SAFETY: matches can_generate_T; the scratch holds `per_launch` samples, the other
        // buffers `b`; sizes checked above.
        unsafe { l.launch(cfg) }?;
        stream.memcpy_dtoh(&du, &mut u[start * v..(start + b) * v])?;
        stream.memcpy_dtoh(&dq, &mut logq[start..start + b])?;
        start += b;
    }
    Ok(())
}
