//! The continuous-mixture autoregressive network: a PixelCNN on the torus whose per-site output
//! is a K-component Beta mixture over u = θ/2π (Wang, Jiang, He, Zhou, CPL 39, 120502 (2022)).
//!
//! The variables are u_0 = θ_0/2π (uniform: the model is exactly invariant under global
//! rotations) and, for every later site, its angle relative to an earlier neighbour, shifted so
//! that the cut of [0, 1) sits at anti-alignment ([`generate::reference`]). Input features per
//! site are (cos, sin) of the angle relative to site 0, so the network sees angles, not a cut.
//! Layers: a masked convolution of type A (a site sees only sites strictly before it in raster
//! order), `residual` blocks h ← h + act(conv_B(h)) (type B: also the site itself), and a 1×1
//! head to 3K outputs. **Periodic boundary and the autoregressive order**: kernels wrap around
//! the torus, and a wrapped source is used only if it precedes the site in raster order (the
//! same rule as unwrapped ones) — so the last row sees row 0 through the seam, the first row
//! does not see the last, and the order stays a strict total order of the sites. log q(θ) of a
//! configuration is exact in one forward pass: Σ_s ln q(θ_s | θ_<s).

use std::sync::Arc;

use super::generate::{self, pack_layer, reference, relative_angle, DrawKey, NetSpec, RunningSums};
use super::mixture::{self, sample_site, BetaMixture, SiteDraws};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::lattice::Lattice;
use crate::nn::layers::Activation;
use crate::nn::{ConvMode, Ctx, ParamStore, Real, Tape, Tensor, Var};

/// The architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct CanConfig {
    /// Hidden channels.
    pub channels: usize,
    /// Residual mask-B layers after the first (mask-A) layer.
    pub residual: usize,
    /// Kernel size: odd sizes are centred; an even size k spans offsets −k/2..k/2 − 1.
    pub kernel: usize,
    /// Beta-mixture components per site.
    pub components: usize,
    /// The activation.
    pub activation: Activation,
    /// Whether every site also sees the running means of the earlier sites' (cos φ, sin φ)
    /// ([`generate::RunningSums`]).
    pub running_means: bool,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl Default for CanConfig {
    fn default() -> Self {
        CanConfig {
            channels: 16,
            residual: 2,
            kernel: 5,
            components: 4,
            activation: Activation::Silu,
            running_means: false,
            seed: 1,
        }
    }
}

impl CanConfig {
    /// Input features per site.
    pub fn inputs(&self) -> usize {
        if self.running_means {
            generate::INPUTS_WITH_MEANS
        } else {
            generate::INPUTS
        }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.channels == 0 || self.channels > 1024 {
            return Err(Error::InvalidInput(format!(
                "--channels {}: use 1 to 1024",
                self.channels
            )));
        }
        if !(1..=15).contains(&self.kernel) {
            return Err(Error::InvalidInput(format!(
                "--kernel {}: use 1 to 15 (odd sizes are centred on the site, even ones reach \
                 one site further back than forward)",
                self.kernel
            )));
        }
        if self.residual > 64 {
            return Err(Error::InvalidInput(format!(
                "--residual {}: use at most 64 layers",
                self.residual
            )));
        }
        if !(1..=mixture::MAX_COMPONENTS).contains(&self.components) {
            return Err(Error::InvalidInput(format!(
                "--components {}: use 1 to {}",
                self.components,
                mixture::MAX_COMPONENTS
            )));
        }
        Ok(())
    }
}

/// A network on one 2D lattice.
#[derive(Clone, Debug)]
pub struct Can {
    config: CanConfig,
    spec: NetSpec,
}

const IN: &str = "can.in";
const HEAD: &str = "can.head";

fn res_name(l: usize) -> String {
    format!("can.res.{l}")
}

impl Can {
    /// The network for `lattice` (2D), registering its parameters in `store`.
    pub fn new<T: Real>(
        config: &CanConfig,
        lattice: &Lattice,
        store: &mut ParamStore<T>,
    ) -> Result<Self> {
        let can = Self::shape_only(config, lattice)?;
        let (c, k, kk) = (config.channels, config.kernel, 3 * config.components);
        let (s, cin) = (config.seed, config.inputs());
        store.init_layer(IN, &[c, cin, k, k], cin * k * k, c, s)?;
        for l in 0..config.residual {
            let seed = s.wrapping_add(1 + l as u64);
            store.init_layer(&res_name(l), &[c, c, k, k], c * k * k, c, seed)?;
        }
        store.init_layer(HEAD, &[kk, c, 1, 1], c, kk, s.wrapping_add(1000))?;
        Ok(can)
    }

    /// The network without parameters (to check a loaded store against).
    pub fn shape_only(config: &CanConfig, lattice: &Lattice) -> Result<Self> {
        config.validate()?;
        let d = lattice.extents();
        if d.len() != 2 {
            return Err(Error::InvalidInput(format!(
                "the autoregressive network works on 2D lattices; got {}",
                lattice.label()
            )));
        }
        if d.iter().any(|&e| e < config.kernel) {
            return Err(Error::InvalidInput(format!(
                "a kernel of {k}×{k} does not fit the lattice {}: on the torus it would see a \
                 site twice; use --kernel {} or less",
                lattice.label(),
                d.iter().min().copied().unwrap_or(1),
                k = config.kernel
            )));
        }
        let (act, slope) = NetSpec::activation_code(config.activation);
        let spec = NetSpec {
            h: d[0] as i32,
            w: d[1] as i32,
            kh: config.kernel as i32,
            kw: config.kernel as i32,
            c: config.channels as i32,
            cin: config.inputs() as i32,
            res: config.residual as i32,
            k: config.components as i32,
            act,
            slope,
        };
        spec.validate()?;
        Ok(Can {
            config: config.clone(),
            spec,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &CanConfig {
        &self.config
    }

    /// The geometry of the kernels.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// Sites.
    pub fn volume(&self) -> usize {
        self.spec.volume()
    }

    /// Every parameter's name and shape.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (c, k, kk) = (
            self.config.channels,
            self.config.kernel,
            3 * self.config.components,
        );
        let mut v = vec![
            (format!("{IN}.w"), vec![c, self.config.inputs(), k, k]),
            (format!("{IN}.b"), vec![c]),
        ];
        for l in 0..self.config.residual {
            v.push((format!("{}.w", res_name(l)), vec![c, c, k, k]));
            v.push((format!("{}.b", res_name(l)), vec![c]));
        }
        v.push((format!("{HEAD}.w"), vec![kk, c, 1, 1]));
        v.push((format!("{HEAD}.b"), vec![kk]));
        v
    }

    /// Checks that `store` holds every parameter with its shape.
    pub fn check_store<T: Real>(&self, store: &ParamStore<T>) -> Result<()> {
        for (name, shape) in self.parameter_shapes() {
            match store.get(&name) {
                Ok(t) if t.shape() == shape.as_slice() => {}
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "parameter {name} missing or not of shape {shape:?}: the weights do \
                         not belong to this network"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The angles relative to site 0, φ_s = θ_s − θ_0 (mod 2π), of one configuration's
    /// variables u `[V]` (see [`generate::reference`]).
    fn relative_angles<T: Real>(&self, u: &[T]) -> Vec<f64> {
        let w = self.spec.w as usize;
        let mut phi = vec![0.0; u.len()];
        for s in 1..u.len() {
            phi[s] = relative_angle(phi[reference(s, w)], u[s].to_f64());
        }
        phi
    }

    /// The angles θ `[B, V]` in [0, 2π) of the variables u `[B, V]`: θ_0 = 2πu_0, every later
    /// site relative to its reference.
    pub fn angles<T: Real>(&self, u: &[T]) -> Vec<f64> {
        let v = self.volume().max(1);
        u.chunks(v)
            .flat_map(|c| {
                let t0 = std::f64::consts::TAU * c[0].to_f64();
                self.relative_angles(c)
                    .into_iter()
                    .map(move |p| crate::theory::xy::wrap(t0 + p))
            })
            .collect()
    }

    /// The variables u `[B, V]` of angles θ `[B, V]` (the inverse of [`Can::angles`], up to the
    /// rounding to `T`).
    pub fn variables<T: Real>(&self, theta: &[f64]) -> Vec<T> {
        let (v, w) = (self.volume().max(1), self.spec.w as usize);
        let wrap = crate::theory::xy::wrap;
        let tau = std::f64::consts::TAU;
        theta
            .chunks(v)
            .flat_map(|th| {
                (0..th.len()).map(move |s| {
                    let u = if s == 0 {
                        wrap(th[0]) / tau
                    } else {
                        wrap(th[s] - th[reference(s, w)] + std::f64::consts::PI) / tau
                    };
                    T::from_f64(mixture::clamp_u(u))
                })
            })
            .collect()
    }

    /// The network's input `[B, cin, H, W]` for the variables u `[B, V]`: (cos φ, sin φ) of the
    /// angles relative to site 0 and, with running means, their means over earlier sites
    /// ([`generate::RunningSums`]). Relative inputs and the uniform first site make q exactly
    /// invariant under global rotations.
    pub fn features<T: Real>(&self, ctx: &Ctx<T>, u: &[T]) -> Result<Tensor<T>> {
        let v = self.volume().max(1);
        let (b, cin) = (u.len() / v, self.config.inputs());
        let mut x = vec![T::zero(); cin * u.len()];
        for (c, xs) in u.chunks(v).zip(x.chunks_mut(cin * v)) {
            let mut sums = RunningSums::new(v, self.spec.w as usize);
            for (site, p) in self.relative_angles(c).into_iter().enumerate() {
                for (ch, f) in sums.features(site, p).into_iter().take(cin).enumerate() {
                    xs[ch * v + site] = T::from_f64(f);
                }
            }
        }
        ctx.from_vec(&[b, cin, self.spec.h as usize, self.spec.w as usize], &x)
    }

    /// The raw outputs `[B, 3K, H, W]` for input features `x` `[B, cin, H, W]`.
    pub fn outputs<T: Real>(
        &self,
        tape: &Tape<T>,
        store: &ParamStore<T>,
        x: &Var<T>,
    ) -> Result<Var<T>> {
        let act = self.config.activation.unary();
        let p = |name: String| tape.param(store, &name);
        let h = tape.conv2d(
            x,
            &p(format!("{IN}.w"))?,
            Some(&p(format!("{IN}.b"))?),
            ConvMode::CausalExclusive,
        )?;
        let mut h = tape.unary(act, &h)?;
        for l in 0..self.config.residual {
            let (w, b) = (
                p(format!("{}.w", res_name(l)))?,
                p(format!("{}.b", res_name(l)))?,
            );
            let y = tape.conv2d(&h, &w, Some(&b), ConvMode::CausalInclusive)?;
            let y = tape.unary(act, &y)?;
            h = tape.add(&h, &y)?;
        }
        let (w, b) = (p(format!("{HEAD}.w"))?, p(format!("{HEAD}.b"))?);
        tape.conv2d(&h, &w, Some(&b), ConvMode::Periodic)
    }

    /// ln q(θ_s | θ_<s) of every site's mixture, `[B, H, W]`, for the variables u `[B, V]`
    /// (site 0's entry is not used: its angle is uniform).
    pub fn site_log_densities<T: Real>(
        &self,
        tape: &Tape<T>,
        store: &ParamStore<T>,
        u: &[T],
    ) -> Result<Var<T>> {
        let v = self.volume();
        if v == 0 || u.is_empty() || !u.len().is_multiple_of(v) {
            return Err(Error::InvalidInput(format!(
                "{} values are not whole configurations of {v} sites",
                u.len()
            )));
        }
        let ctx = tape.ctx();
        let x = tape.constant(self.features(ctx, u)?);
        let out = self.outputs(tape, store, &x)?;
        let shape = [u.len() / v, self.spec.h as usize, self.spec.w as usize];
        let uu = tape.constant(ctx.from_vec(&shape, u)?);
        tape.apply(BetaMixture, &[&out, &uu])
    }

    /// ln q(θ) per sample, `[B]`, for the variables u `[B, V]`: one forward pass. Site 0 is
    /// uniform (−ln 2π), every later site its mixture.
    pub fn log_q<T: Real>(&self, tape: &Tape<T>, store: &ParamStore<T>, u: &[T]) -> Result<Var<T>> {
        let lp = self.site_log_densities(tape, store, u)?;
        let (b, h, w) = (lp.shape()[0], lp.shape()[1], lp.shape()[2]);
        let mut later = vec![T::from_f64(1.0); h * w];
        later[0] = T::zero();
        let mask = tape.constant(tape.ctx().from_vec(&[h, w], &later)?);
        let s = tape.sum(&tape.mul(&lp, &mask)?, &[1, 2])?;
        let s = tape.shift(&s, -mixture::LN_2PI)?;
        tape.reshape(&s, &[b])
    }

    /// The weights packed for generation ([`generate::pack_layer`] layout).
    pub fn pack<T: Real>(&self, store: &ParamStore<T>) -> Result<Vec<T>> {
        self.check_store(store)?;
        let (c, taps) = (
            self.config.channels,
            self.config.kernel * self.config.kernel,
        );
        let get = |n: String| store.get(&n).and_then(Tensor::to_vec);
        let mut out = Vec::with_capacity(self.spec.packed_len());
        let cin = self.config.inputs();
        pack_layer(&get(format!("{IN}.w"))?, c, cin, taps, &mut out);
        out.extend(get(format!("{IN}.b"))?);
        for l in 0..self.config.residual {
            pack_layer(&get(format!("{}.w", res_name(l)))?, c, c, taps, &mut out);
            out.extend(get(format!("{}.b", res_name(l)))?);
        }
        out.extend(get(format!("{HEAD}.w"))?);
        out.extend(get(format!("{HEAD}.b"))?);
        Ok(out)
    }

    /// Draws `batch` configurations (samples `key.sample0..`) by cached generation on the
    /// store's device: u = θ/2π `[B, V]` and the exact ln q(θ) of each.
    pub fn generate<T: Real>(
        &self,
        store: &ParamStore<T>,
        key: DrawKey,
        batch: usize,
    ) -> Result<(Vec<T>, Vec<f64>)> {
        self.generate_packed(&self.pack(store)?, store.ctx().device(), key, batch)
    }

    /// [`Can::generate`] with weights packed once by [`Can::pack`] (a sampler's fixed network),
    /// on `device`.
    pub fn generate_packed<T: Real>(
        &self,
        w: &[T],
        device: &Device,
        key: DrawKey,
        batch: usize,
    ) -> Result<(Vec<T>, Vec<f64>)> {
        let mut u = vec![T::zero(); batch * self.volume()];
        let mut lq = vec![0.0; batch];
        match device {
            Device::Cpu(d) => generate::generate(d, w, &self.spec, key, &mut u, &mut lq)?,
            Device::Cuda(d) => generate::generate_cuda(d, w, &self.spec, key, &mut u, &mut lq)?,
        }
        Ok((u, lq))
    }

    /// Naive generation, the reference for [`Can::generate`]: a whole forward pass per site (V
    /// passes), drawing the same numbers. Returns u and ln q as the cached generation does.
    pub fn generate_naive<T: Real>(
        &self,
        store: &ParamStore<T>,
        key: DrawKey,
        batch: usize,
    ) -> Result<(Vec<T>, Vec<f64>)> {
        let (v, kk) = (self.volume(), 3 * self.config.components);
        let tape = Tape::new(store.ctx());
        tape.set_grad_enabled(false);
        let mut u = vec![T::zero(); batch * v];
        let mut lq = vec![0.0; batch];
        let mut head = vec![0.0; kk];
        for s in 0..v {
            let x = tape.constant(self.features(store.ctx(), &u)?);
            let out = Arc::new(self.outputs(&tape, store, &x)?.value().to_f64()?);
            for b in 0..batch {
                for (j, h) in head.iter_mut().enumerate() {
                    *h = out[(b * kk + j) * v + s];
                }
                let sample = key.sample0 + b as u32;
                let mut d = SiteDraws::new(key.seed, s as u32, sample, key.step, key.stream);
                u[b * v + s] = if s == 0 {
                    lq[b] -= mixture::LN_2PI;
                    T::from_f64(mixture::clamp_u(d.uniform()))
                } else {
                    let us = T::from_f64(sample_site(&head, &mut d));
                    lq[b] += mixture::site_log_density(&head, us.to_f64());
                    us
                };
            }
        }
        Ok((u, lq))
    }
}
