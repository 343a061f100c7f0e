//! The score network s_θ(x, t): a small U-Net on the lattice with periodic padding (the
//! lattice's translations commute with it, up to the even shifts the 2× pooling allows) or, as in
//! the paper, zero padding (an open boundary the lattice does not have) — two levels, skip connection, group normalisation, SiLU, and Gaussian Fourier features of t
//! added per channel in every block. The output is divided by σ_t, the usual parameterisation of
//! the VE score (Song et al., ICLR 2021).

use super::sde::VeSde;
use crate::error::{Error, Result};
use crate::nn::{ConvMode, Ctx, ParamStore, Real, Tape, Tensor, Var};
use crate::philox;

/// The architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreConfig {
    /// Channels of the full-resolution and the half-resolution level.
    pub channels: [usize; 2],
    /// Groups of the group normalisation (dividing both channel counts).
    pub groups: usize,
    /// Fourier frequencies of the time embedding.
    pub frequencies: usize,
    /// Standard deviation of the frequencies.
    pub frequency_scale: f64,
    /// The convolutions' boundary: [`ConvMode::Periodic`] or [`ConvMode::Zero`].
    pub padding: ConvMode,
    /// Seed of the initial weights and the frequencies.
    pub seed: u64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            channels: [16, 32],
            groups: 4,
            frequencies: 16,
            frequency_scale: 16.0,
            padding: ConvMode::Periodic,
            seed: 1,
        }
    }
}

/// The blocks: (name, input channels, output channels).
fn blocks(c: [usize; 2]) -> [(&'static str, usize, usize); 4] {
    [
        ("down0", 1, c[0]),
        ("down1", c[0], c[1]),
        ("up1", c[1], c[0]),
        ("up0", 2 * c[0], c[0]),
    ]
}

/// The network on `[H, W]` lattices (H, W even).
#[derive(Clone, Debug)]
pub struct ScoreNet {
    config: ScoreConfig,
    dims: [usize; 2],
    frequencies: Vec<f64>,
}

impl ScoreNet {
    /// The network for `[h, w]` lattices, registering its parameters in `store`.
    pub fn new<T: Real>(
        config: &ScoreConfig,
        dims: [usize; 2],
        store: &mut ParamStore<T>,
    ) -> Result<Self> {
        let [c0, c1] = config.channels;
        let ok = dims.iter().all(|&d| d >= 6 && d % 2 == 0)
            && c0 > 0
            && c1 > 0
            && config.groups > 0
            && c0 % config.groups == 0
            && c1 % config.groups == 0
            && config.frequencies > 0
            && config.frequency_scale.is_finite()
            && matches!(config.padding, ConvMode::Periodic | ConvMode::Zero);
        if !ok {
            return Err(Error::InvalidInput(format!(
                "a score network of {config:?} on {dims:?}: extents even and at least 6, channel \
                 counts divisible by the groups"
            )));
        }
        let e = 2 * config.frequencies;
        let s = config.seed;
        store.init_layer("score.embed", &[c0, e], e, c0, s)?;
        for (k, (name, cin, cout)) in blocks(config.channels).into_iter().enumerate() {
            let seed = s.wrapping_add(10 * (k as u64 + 1));
            store.init_layer(
                &format!("score.{name}.conv"),
                &[cout, cin, 3, 3],
                9 * cin,
                cout,
                seed,
            )?;
            store.init_layer(
                &format!("score.{name}.time"),
                &[cout, c0],
                c0,
                cout,
                seed + 1,
            )?;
            let ones = store.ctx().from_f64(&[cout], &vec![1.0; cout])?;
            store.insert(&format!("score.{name}.gamma"), ones);
            store.insert(&format!("score.{name}.beta"), store.ctx().zeros(&[cout])?);
        }
        store.init_layer("score.out", &[1, c0, 3, 3], 9 * c0, 1, s.wrapping_add(99))?;
        let mut frequencies = vec![0.0; config.frequencies];
        philox::fill_normals(&mut frequencies, s, 0, 0, STREAM_FREQUENCIES);
        frequencies
            .iter_mut()
            .for_each(|f| *f *= config.frequency_scale);
        Ok(ScoreNet {
            config: config.clone(),
            dims,
            frequencies,
        })
    }

    /// The lattice extents.
    pub fn dims(&self) -> [usize; 2] {
        self.dims
    }

    /// One block: SiLU(γ · GroupNorm(conv(h) + b + W_t emb) + β).
    fn block<T: Real>(
        &self,
        tape: &Tape<T>,
        store: &ParamStore<T>,
        name: &str,
        h: &Var<T>,
        emb: &Var<T>,
    ) -> Result<Var<T>> {
        let p = |part: &str| tape.param(store, &format!("score.{name}.{part}"));
        let y = tape.conv2d(h, &p("conv.w")?, Some(&p("conv.b")?), self.config.padding)?;
        let time = tape.linear(emb, &p("time.w")?, &p("time.b")?)?;
        let affine = [&time, &p("gamma")?, &p("beta")?];
        tape.group_norm_silu(&y, affine, self.config.groups)
    }

    /// s_θ(x, t) `[B, 1, H, W]` for x `[B, 1, H, W]` (as a tape value) at times t `[B]`.
    pub fn score<T: Real>(
        &self,
        tape: &Tape<T>,
        store: &ParamStore<T>,
        sde: &VeSde,
        x: &Var<T>,
        t: &[f64],
    ) -> Result<Var<T>> {
        let ctx: &Ctx<T> = tape.ctx();
        let b = t.len();
        if x.shape() != [b, 1, self.dims[0], self.dims[1]] {
            return Err(Error::InvalidInput(format!(
                "the score network takes x [{b}, 1, {}, {}]; got {:?}",
                self.dims[0],
                self.dims[1],
                x.shape()
            )));
        }
        let tv = tape.constant(ctx.from_f64(&[b], t)?);
        let fr = tape.constant(ctx.from_f64(&[self.frequencies.len()], &self.frequencies)?);
        let feats = tape.fourier_features(&tv, &fr)?;
        let emb = tape.linear(
            &feats,
            &tape.param(store, "score.embed.w")?,
            &tape.param(store, "score.embed.b")?,
        )?;
        let emb = tape.silu(&emb)?;
        let h0 = self.block(tape, store, "down0", x, &emb)?;
        let h1 = self.block(tape, store, "down1", &tape.avg_pool2(&h0)?, &emb)?;
        let u1 = self.block(tape, store, "up1", &tape.upsample2(&h1)?, &emb)?;
        let u0 = self.block(tape, store, "up0", &tape.concat(&[u1, h0], 1)?, &emb)?;
        let out = tape.conv2d(
            &u0,
            &tape.param(store, "score.out.w")?,
            Some(&tape.param(store, "score.out.b")?),
            self.config.padding,
        )?;
        let inv: Vec<f64> = t
            .iter()
            .map(|&ti| 1.0 / sde.marginal_std(ti).max(1e-12))
            .collect();
        let inv = tape.constant(ctx.from_f64(&[b, 1, 1, 1], &inv)?);
        tape.mul(&out, &inv)
    }

    /// The denoising score-matching loss (λ(t) = σ_t²): the batch mean of
    /// ‖σ_t s_θ(x₀ + σ_t z, t) + z‖² / V, for data x₀ `[B, V]`, times t `[B]`, noise z `[B, V]`.
    pub fn dsm_loss<T: Real>(
        &self,
        tape: &Tape<T>,
        store: &ParamStore<T>,
        sde: &VeSde,
        (x0, t, z): (&[f64], &[f64], &[f64]),
    ) -> Result<Var<T>> {
        let (b, v) = (t.len(), self.dims[0] * self.dims[1]);
        if x0.len() != b * v || z.len() != b * v {
            return Err(Error::InvalidInput(format!(
                "{} data and {} noise values for {b} samples of {v} sites",
                x0.len(),
                z.len()
            )));
        }
        let ctx = tape.ctx();
        let shape = [b, 1, self.dims[0], self.dims[1]];
        let noisy: Vec<f64> = (0..b * v)
            .map(|i| x0[i] + sde.marginal_std(t[i / v]) * z[i])
            .collect();
        let x = tape.constant(ctx.from_f64(&shape, &noisy)?);
        let s = self.score(tape, store, sde, &x, t)?;
        let sig: Vec<f64> = t.iter().map(|&ti| sde.marginal_std(ti)).collect();
        let sig = tape.constant(ctx.from_f64(&[b, 1, 1, 1], &sig)?);
        let zt = tape.constant(ctx.from_f64(&shape, z)?);
        let r = tape.add(&tape.mul(&s, &sig)?, &zt)?;
        tape.mean_all(&tape.square(&r)?)
    }

    /// s_θ(x, t) of configurations x `[B, V]` at per-sample times t `[B]`, without recording.
    pub fn evaluate<T: Real>(
        &self,
        store: &ParamStore<T>,
        sde: &VeSde,
        x: &[f64],
        t: &[f64],
    ) -> Result<Vec<f64>> {
        let tape = Tape::new(store.ctx());
        tape.set_grad_enabled(false);
        let xv = tape.constant(store.ctx().from_f64(&self.batch_shape(x, t)?, x)?);
        let s: Tensor<T> = self.score(&tape, store, sde, &xv, t)?.value().copy()?;
        s.to_f64()
    }

    /// `[B, 1, H, W]` of x `[B, V]` with B = t.len().
    fn batch_shape(&self, x: &[f64], t: &[f64]) -> Result<[usize; 4]> {
        let [h, w] = self.dims;
        if x.len() != t.len() * h * w {
            return Err(Error::InvalidInput(format!(
                "{} values for {} configurations of {h}x{w}",
                x.len(),
                t.len()
            )));
        }
        Ok([t.len(), 1, h, w])
    }

    /// s_θ(x, t) `[B, V]` and its exact divergence Σ_i ∂s_i/∂x_i per sample `[B]`, by V
    /// vector–Jacobian products on one recorded forward pass (seed: site i of every sample;
    /// the samples are independent, so one product gives ∂s_i/∂x_i of all of them).
    pub fn score_and_divergence<T: Real>(
        &self,
        store: &ParamStore<T>,
        sde: &VeSde,
        x: &[f64],
        t: &[f64],
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let jac = InputJacobian::record(self, store, sde, x, t)?;
        let (b, v) = (t.len(), self.dims[0] * self.dims[1]);
        let mut div = vec![0.0; b];
        let mut seed = vec![0.0; b * v];
        for i in 0..v {
            (0..b).for_each(|k| seed[k * v + i] = 1.0);
            let dx = jac.vjp(&seed, i + 1 < v)?;
            for (k, d) in div.iter_mut().enumerate() {
                *d += dx[k * v + i];
                seed[k * v + i] = 0.0;
            }
        }
        Ok((jac.values, div))
    }

    /// s_θ(x, t) `[B, V]` and Hutchinson's unbiased estimate of its divergence per sample,
    /// (1/P) Σ_p ε_pᵀ (∂s/∂x) ε_p over the P probe vectors `probes` (each `[B][V]`, entries ±1:
    /// Hutchinson, Commun. Stat. Simul. Comput. 18, 1059 (1989)) — P products instead of V.
    pub fn score_and_divergence_estimate<T: Real>(
        &self,
        store: &ParamStore<T>,
        sde: &VeSde,
        (x, t): (&[f64], &[f64]),
        probes: &[Vec<f64>],
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let jac = InputJacobian::record(self, store, sde, x, t)?;
        let v = self.dims[0] * self.dims[1];
        let mut div = vec![0.0; t.len()];
        for (p, eps) in probes.iter().enumerate() {
            let dx = jac.vjp(eps, p + 1 < probes.len())?;
            for ((d, e), g) in div.iter_mut().zip(eps.chunks(v)).zip(dx.chunks(v)) {
                *d += e.iter().zip(g).map(|(a, b)| a * b).sum::<f64>() / probes.len() as f64;
            }
        }
        Ok((jac.values, div))
    }
}

/// One recorded forward pass of the score with the weights frozen, for products with its
/// Jacobian with respect to the input.
struct InputJacobian<T: Real> {
    tape: Tape<T>,
    out: Var<T>,
    shape: [usize; 4],
    values: Vec<f64>,
}

impl<T: Real> InputJacobian<T> {
    fn record(
        net: &ScoreNet,
        store: &ParamStore<T>,
        sde: &VeSde,
        x: &[f64],
        t: &[f64],
    ) -> Result<Self> {
        let shape = net.batch_shape(x, t)?;
        let tape = Tape::new(store.ctx());
        tape.set_params_frozen(true);
        let xv = tape.watch("x", store.ctx().from_f64(&shape, x)?);
        let out = net.score(&tape, store, sde, &xv, t)?;
        let values = out.value().to_f64()?;
        Ok(InputJacobian {
            tape,
            out,
            shape,
            values,
        })
    }

    /// seedᵀ ∂s/∂x `[B][V]`; with `retain` the recording stays for further products.
    fn vjp(&self, seed: &[f64], retain: bool) -> Result<Vec<f64>> {
        let seed = self.tape.ctx().from_f64(&self.shape, seed)?;
        let g = self.tape.backward_seeded(&self.out, seed, retain)?;
        g.get("x")
            .ok_or_else(|| Error::InvalidInput("the score does not depend on x".into()))?
            .to_f64()
    }
}

/// Philox stream of the time embedding's frequencies.
const STREAM_FREQUENCIES: u32 = 11;
