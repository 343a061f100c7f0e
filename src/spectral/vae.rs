//! A variational autoencoder of spectral functions (Kingma and Welling, arXiv:1312.6114; β-VAE:
//! Higgins et al., ICLR 2017), trained on the tape, for the impurity spectra of [`super::aim`].
//!
//! Encoder: ρ on the grid (scaled so that its mean is 1) → two tanh layers → (μ, log σ²) of a
//! diagonal Gaussian q(z|ρ) in `latent` dimensions. Decoder: z → two tanh layers → logits, whose
//! softmax is the spectrum's weight per grid point p̂ⱼ = ρ̂ⱼΔω (positive, normalised). The
//! decoder's likelihood is multinomial with `precision` effective counts, so the loss per
//! spectrum is the negative β-ELBO
//!
//! L = −precision·Σⱼ pⱼ log p̂ⱼ + β·KL(q(z|ρ) ‖ N(0, 1)), KL = −½Σ(1 + log σ² − μ² − σ²),
//!
//! with z = μ + σ·ε (reparameterisation, ε from Philox keyed by step and sample).

use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::optim::Adam;
use crate::nn::{Ctx, ParamStore, Tape, Var};
use crate::philox;

/// Philox streams of the batches (which spectra) and of ε.
const STREAM_BATCH: u32 = 20;
const STREAM_EPS: u32 = 21;

/// Architecture and training settings.
#[derive(Clone, Debug, PartialEq)]
pub struct VaeConfig {
    /// Latent dimensions (2–6).
    pub latent: usize,
    /// Units of each hidden layer.
    pub hidden: usize,
    /// Weight β of the KL term.
    pub beta: f64,
    /// Effective counts of the multinomial likelihood.
    pub precision: f64,
    /// Adam's learning rate.
    pub lr: f64,
    /// Spectra per step.
    pub batch: usize,
    /// Training steps.
    pub steps: usize,
    /// Seed of the initialisation, the batches and ε.
    pub seed: u64,
}

impl Default for VaeConfig {
    fn default() -> Self {
        VaeConfig {
            latent: 2,
            hidden: 64,
            beta: 1.0,
            precision: 1000.0,
            lr: 2e-3,
            batch: 32,
            steps: 4000,
            seed: 1,
        }
    }
}

impl VaeConfig {
    /// Refuses sizes and rates that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if !(1..=16).contains(&self.latent) {
            return bad(format!(
                "--latent {}: use 1 to 16 (2–6 are typical)",
                self.latent
            ));
        }
        if self.hidden == 0 || self.batch == 0 || self.steps == 0 {
            return bad("--hidden, --batch and --steps must be positive".into());
        }
        for (name, x) in [
            ("beta", self.beta),
            ("precision", self.precision),
            ("lr", self.lr),
        ] {
            if !(x.is_finite() && x >= 0.0) || (name != "beta" && x == 0.0) {
                return bad(format!("--{name} {x} must be a positive number"));
            }
        }
        Ok(())
    }
}

/// The network and the grid it was trained on.
pub struct Vae {
    /// Its settings.
    pub config: VaeConfig,
    /// Grid points per spectrum.
    pub points: usize,
    /// Grid spacing Δω.
    pub dw: f64,
    /// The weights.
    pub store: ParamStore<f64>,
}

/// One logged training step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VaeStep {
    /// Step index.
    pub step: usize,
    /// The batch's mean loss.
    pub loss: f64,
    /// Its mean reconstruction KL(p ‖ p̂) (z = the sampled latent).
    pub recon: f64,
    /// Its mean latent KL.
    pub kl: f64,
}

impl Vae {
    /// A fresh network for spectra of `points` values with spacing `dw`.
    pub fn new(config: VaeConfig, points: usize, dw: f64, device: &Device) -> Result<Self> {
        config.validate()?;
        if points < 2 || !(dw.is_finite() && dw > 0.0) {
            return Err(Error::InvalidInput(format!(
                "spectra of {points} points with spacing {dw}: need ≥ 2 points, spacing > 0"
            )));
        }
        let ctx = Ctx::<f64>::new(device.clone());
        let mut store = ParamStore::new(&ctx);
        let (h, l, s) = (config.hidden, config.latent, config.seed);
        for (k, (name, out, inp)) in [
            ("enc1", h, points),
            ("enc2", h, h),
            ("enc3", 2 * l, h),
            ("dec1", h, l),
            ("dec2", h, h),
            ("dec3", points, h),
        ]
        .into_iter()
        .enumerate()
        {
            store.init_layer(
                name,
                &[out, inp],
                inp,
                out,
                s.wrapping_mul(31).wrapping_add(k as u64),
            )?;
        }
        Ok(Vae {
            config,
            points,
            dw,
            store,
        })
    }

    /// Checks a batch `[spectrum][point]` of finite values.
    fn check(&self, spectra: &[f64]) -> Result<usize> {
        if spectra.is_empty() || !spectra.len().is_multiple_of(self.points) {
            return Err(Error::InvalidInput(format!(
                "{} values are not whole spectra of {} points",
                spectra.len(),
                self.points
            )));
        }
        if let Some(i) = spectra.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite(format!(
                "spectrum value {i} is {}",
                spectra[i]
            )));
        }
        Ok(spectra.len() / self.points)
    }

    /// (μ, log σ²) of q(z|ρ) for a batch `[B, points]` of spectra.
    fn encoder(&self, t: &Tape<f64>, rho: &[f64], b: usize) -> Result<(Var<f64>, Var<f64>)> {
        let p = |n: &str| t.param(&self.store, n);
        // ρ·Δω·points: the weights per point with mean 1.
        let scale = self.dw * self.points as f64;
        let x = t.constant(self.store.ctx().from_f64(
            &[b, self.points],
            &rho.iter().map(|r| r * scale).collect::<Vec<_>>(),
        )?);
        let h = t.tanh(&t.linear(&x, &p("enc1.w")?, &p("enc1.b")?)?)?;
        let h = t.tanh(&t.linear(&h, &p("enc2.w")?, &p("enc2.b")?)?)?;
        let out = t.linear(&h, &p("enc3.w")?, &p("enc3.b")?)?;
        let l = self.config.latent;
        let parts = t.split(&out, 1, &[l, l])?;
        Ok((parts[0].clone(), parts[1].clone()))
    }

    /// log p̂ `[B, points]` (log-softmax of the decoder's logits) for latents `z` `[B, latent]`.
    fn decoder(&self, t: &Tape<f64>, z: &Var<f64>) -> Result<Var<f64>> {
        let p = |n: &str| t.param(&self.store, n);
        let h = t.tanh(&t.linear(z, &p("dec1.w")?, &p("dec1.b")?)?)?;
        let h = t.tanh(&t.linear(&h, &p("dec2.w")?, &p("dec2.b")?)?)?;
        let logits = t.linear(&h, &p("dec3.w")?, &p("dec3.b")?)?;
        // Stable log-softmax: the row maxima are constants (they cancel in the gradient).
        let v = logits.value().to_f64()?;
        let b = v.len() / self.points;
        let maxima: Vec<f64> = v
            .chunks(self.points)
            .map(|r| r.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
            .collect();
        let shifted = t.sub(
            &logits,
            &t.constant(self.store.ctx().from_f64(&[b, 1], &maxima)?),
        )?;
        let norm = t.log(&t.sum(&t.exp(&shifted)?, &[1])?)?;
        t.sub(&shifted, &norm)
    }

    /// The batch's mean negative β-ELBO and its parts, with ε `[B, latent]`.
    fn loss(&self, t: &Tape<f64>, rho: &[f64], eps: &[f64]) -> Result<(Var<f64>, f64, f64)> {
        let b = self.check(rho)?;
        let l = self.config.latent;
        let ctx = self.store.ctx();
        let (mu, logvar) = self.encoder(t, rho, b)?;
        let sigma = t.exp(&t.scale(&logvar, 0.5)?)?;
        let e = t.constant(ctx.from_f64(&[b, l], eps)?);
        let z = t.add(&mu, &t.mul(&sigma, &e)?)?;
        let logp = self.decoder(t, &z)?;
        let p: Vec<f64> = rho.iter().map(|r| r * self.dw).collect();
        let target = t.constant(ctx.from_f64(&[b, self.points], &p)?);
        let cross = t.scale(&t.sum_all(&t.mul(&target, &logp)?)?, -1.0 / b as f64)?;
        // KL = −½ Σ (1 + log σ² − μ² − σ²), batch mean.
        let inner = t.sub(
            &t.sub(&t.shift(&logvar, 1.0)?, &t.square(&mu)?)?,
            &t.exp(&logvar)?,
        )?;
        let kl = t.scale(&t.sum_all(&inner)?, -0.5 / b as f64)?;
        let loss = t.add(
            &t.scale(&cross, self.config.precision)?,
            &t.scale(&kl, self.config.beta)?,
        )?;
        let entropy = -p
            .iter()
            .filter(|&&x| x > 0.0)
            .map(|x| x * x.ln())
            .sum::<f64>()
            / b as f64;
        let recon = cross.value().to_f64()?[0] - entropy;
        let kl = kl.value().to_f64()?[0];
        Ok((t.reshape(&loss, &[1])?, recon, kl))
    }

    /// Trains on `spectra` (`[spectrum][point]`, each normalised to Σ ρ Δω = 1), calling
    /// `log` every `every` steps; returns the logged steps.
    pub fn train(
        &mut self,
        spectra: &[f64],
        every: usize,
        log: &mut dyn FnMut(&VaeStep),
    ) -> Result<Vec<VaeStep>> {
        let n = self.check(spectra)?;
        let (b, l, m) = (self.config.batch, self.config.latent, self.points);
        let mut adam = Adam::new(self.config.lr);
        let mut logged = Vec::new();
        let ctx = self.store.ctx().clone();
        for step in 0..self.config.steps {
            let (word, stream) = philox::counter_words(step as u64, STREAM_BATCH)?;
            let (_, noise) = philox::counter_words(step as u64, STREAM_EPS)?;
            let rows: Vec<f64> = (0..b)
                .flat_map(|k| {
                    let u = philox::uniform(self.config.seed, k as u32, word, stream);
                    let i = ((u * n as f64) as usize).min(n - 1);
                    spectra[i * m..(i + 1) * m].to_vec()
                })
                .collect();
            let mut eps = vec![0.0; b * l];
            philox::fill_normals(&mut eps, self.config.seed, 0, word, noise);
            let t = Tape::new(&ctx);
            let (loss, recon, kl) = self.loss(&t, &rows, &eps)?;
            let value = loss.value().to_f64()?[0];
            if !value.is_finite() {
                return Err(Error::NonFinite(format!(
                    "the VAE loss is {value} at step {step}: lower --lr"
                )));
            }
            let grads = t.backward(&loss)?;
            drop(loss);
            adam.step(&mut self.store, &grads)?;
            if step % every.max(1) == 0 || step + 1 == self.config.steps {
                let s = VaeStep {
                    step,
                    loss: value,
                    recon,
                    kl,
                };
                log(&s);
                logged.push(s);
            }
        }
        Ok(logged)
    }

    /// μ of q(z|ρ) for every spectrum, `[spectrum][latent]`.
    pub fn encode(&self, spectra: &[f64]) -> Result<Vec<f64>> {
        let b = self.check(spectra)?;
        let t = Tape::new(self.store.ctx());
        t.set_grad_enabled(false);
        let (mu, _) = self.encoder(&t, spectra, b)?;
        mu.value().to_f64()
    }

    /// The decoded spectra ρ̂ = p̂/Δω of latents `[B][latent]`.
    pub fn decode(&self, latent: &[f64]) -> Result<Vec<f64>> {
        let l = self.config.latent;
        if latent.is_empty() || !latent.len().is_multiple_of(l) {
            return Err(Error::InvalidInput(format!(
                "{} latent values are not whole vectors of {l}",
                latent.len()
            )));
        }
        if let Some(i) = latent.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite(format!(
                "latent value {i} is {}",
                latent[i]
            )));
        }
        let t = Tape::new(self.store.ctx());
        t.set_grad_enabled(false);
        let z = t.constant(self.store.ctx().from_f64(&[latent.len() / l, l], latent)?);
        let logp = self.decoder(&t, &z)?;
        Ok(logp
            .value()
            .to_f64()?
            .iter()
            .map(|lp| lp.exp() / self.dw)
            .collect())
    }
}

/// Per spectrum, KL(p ‖ p̂) and Σ|ρ − ρ̂|Δω between spectra and their reconstructions.
pub fn reconstruction_errors(
    rho: &[f64],
    rho_hat: &[f64],
    points: usize,
    dw: f64,
) -> Vec<(f64, f64)> {
    rho.chunks(points)
        .zip(rho_hat.chunks(points))
        .map(|(a, b)| {
            let kl = a
                .iter()
                .zip(b)
                .filter(|(&x, _)| x > 0.0)
                .map(|(&x, &y)| x * dw * ((x / y.max(1e-300)).ln()))
                .sum();
            let l1 = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() * dw;
            (kl, l1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Vae {
        let config = VaeConfig {
            latent: 2,
            hidden: 5,
            precision: 3.0,
            beta: 0.7,
            ..VaeConfig::default()
        };
        Vae::new(config, 7, 0.5, &Device::from_name("cpu").unwrap().0).unwrap()
    }

    fn spectra(b: usize, m: usize, dw: f64) -> Vec<f64> {
        (0..b)
            .flat_map(|k| {
                let v: Vec<f64> = (0..m)
                    .map(|j| (-((j as f64 - 1.0 - k as f64) / 1.5).powi(2)).exp() + 0.05)
                    .collect();
                let s: f64 = v.iter().sum::<f64>() * dw;
                v.into_iter().map(move |x| x / s)
            })
            .collect()
    }

    /// The tape's gradient of the β-ELBO against central finite differences in f64.
    #[test]
    fn the_elbo_gradient_matches_finite_differences() {
        let mut vae = small();
        let rho = spectra(3, 7, 0.5);
        let eps = [0.3, -1.1, 0.8, 0.2, -0.4, 1.5];
        let ctx = vae.store.ctx().clone();
        let t = Tape::new(&ctx);
        let (loss, _, _) = vae.loss(&t, &rho, &eps).unwrap();
        let grads = t.backward(&loss).unwrap();
        drop(loss);
        for name in ["enc1.w", "enc3.b", "dec1.w", "dec3.w", "dec3.b"] {
            let g = grads.get(name).unwrap().to_f64().unwrap();
            let base = vae.store.get(name).unwrap().to_f64().unwrap();
            let shape = vae.store.get(name).unwrap().shape().to_vec();
            for i in [0, base.len() / 2, base.len() - 1] {
                let at = |d: f64, vae: &mut Vae| {
                    let mut v = base.clone();
                    v[i] += d;
                    vae.store.insert(name, ctx.from_f64(&shape, &v).unwrap());
                    let t = Tape::new(&ctx);
                    let l = vae.loss(&t, &rho, &eps).unwrap().0;
                    l.value().to_f64().unwrap()[0]
                };
                let h = 1e-6;
                let fd = (at(h, &mut vae) - at(-h, &mut vae)) / (2.0 * h);
                vae.store.insert(name, ctx.from_f64(&shape, &base).unwrap());
                assert!(
                    (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{name}[{i}]: {} vs {fd}",
                    g[i]
                );
            }
        }
    }

    /// The parts of the loss against a direct evaluation: at ε = 0 the reconstruction KL is that
    /// of the decoded μ, and the latent KL is −½Σ(1 + log σ² − μ² − σ²).
    #[test]
    fn the_loss_parts_are_what_they_say() {
        let vae = small();
        let rho = spectra(2, 7, 0.5);
        let t = Tape::new(vae.store.ctx());
        let (loss, recon, kl) = vae.loss(&t, &rho, &[0.0; 4]).unwrap();
        let mu = vae.encode(&rho).unwrap();
        let hat = vae.decode(&mu).unwrap();
        let direct: f64 = reconstruction_errors(&rho, &hat, 7, 0.5)
            .iter()
            .map(|e| e.0)
            .sum::<f64>()
            / 2.0;
        assert!((recon - direct).abs() < 1e-12, "{recon} vs {direct}");
        assert!(kl >= 0.0);
        let entropy: f64 = -rho.iter().map(|r| r * 0.5 * (r * 0.5).ln()).sum::<f64>() / 2.0;
        let want = 3.0 * (recon + entropy) + 0.7 * kl;
        assert!((loss.value().to_f64().unwrap()[0] - want).abs() < 1e-9);
        // Decoded spectra are normalised and positive.
        for s in hat.chunks(7) {
            assert!(
                (s.iter().sum::<f64>() * 0.5 - 1.0).abs() < 1e-12 && s.iter().all(|&x| x > 0.0)
            );
        }
    }

    #[test]
    fn bad_input_is_refused() {
        let vae = small();
        assert!(vae.encode(&[1.0; 8]).is_err());
        assert!(vae.encode(&[f64::NAN; 7]).is_err());
        assert!(vae.decode(&[0.0; 3]).is_err());
        let cfg = VaeConfig {
            latent: 0,
            ..VaeConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
