//! The reference benchmark of lattice conv stacks: batch 256, channels 1→16→16→2, 3×3 periodic
//! kernels, leaky ReLU between layers and tanh at the end, f32; forward + backward of a mean-square
//! loss, in lattice samples per second.

use std::sync::Arc;

use super::layers::{Activation, ConvStack};
use super::params::ParamStore;
use super::tape::Tape;
use super::tensor::{Ctx, Tensor};
use crate::device::{memory, Device};
use crate::error::Result;
use crate::philox;
use crate::timing::units_per_second;

/// Batch size of the reference stack.
pub const BATCH: usize = 256;

/// A ready-to-run reference conv stack on one lattice size.
pub struct ConvStackBench {
    ctx: Ctx<f32>,
    store: ParamStore<f32>,
    net: ConvStack,
    x: Arc<Tensor<f32>>,
}

impl ConvStackBench {
    /// Builds the network and a random input batch on `device` for an L×L lattice.
    pub fn new(device: &Device, l: usize) -> Result<Self> {
        // The f64 input batch on the host, then 1 + 16 + 16 + 2 channels of f32 activations with
        // their gradients and the im2col buffers (about three copies) on the device.
        let sites = (BATCH as u128) * (l as u128) * (l as u128);
        let what = format!("the conv stack at L = {l}");
        memory::check_host(8 * sites, &what, "use smaller --sizes")?;
        memory::check(device, 4 * 35 * 3 * sites, &what, "use smaller --sizes")?;
        let ctx = Ctx::<f32>::new(device.clone());
        let mut store = ParamStore::new(&ctx);
        let net = ConvStack::new(
            &mut store,
            "stack",
            &[1, 16, 16, 2],
            3,
            Activation::LeakyRelu(0.01),
            1,
        )?;
        let mut data = vec![0.0; BATCH * l * l];
        philox::fill_normals(&mut data, 1, 0, 0, 7);
        let x = ctx.from_f64(&[BATCH, 1, l, l], &data)?;
        Ok(ConvStackBench {
            ctx,
            store,
            net,
            x: Arc::new(x),
        })
    }

    /// One forward + backward pass; returns the loss.
    pub fn step(&self) -> Result<f64> {
        let tape = Tape::new(&self.ctx);
        let x = tape.constant_shared(&self.x);
        let y = self.net.forward(&tape, &self.store, &x)?;
        let loss = tape.mean_all(&tape.square(&y)?)?;
        let value = loss.value().to_f64()?[0];
        let grads = tape.backward(&loss)?;
        // Reading a gradient back waits for the device.
        grads.get("stack.0.w").map(|g| g.to_vec()).transpose()?;
        Ok(value)
    }

    /// Samples per second over at least `min_seconds` (after one warm-up step).
    pub fn samples_per_second(&self, min_seconds: f64) -> Result<f64> {
        self.step()?;
        units_per_second(min_seconds, || self.step().map(|_| BATCH))
    }

    /// Multiply–adds of one forward pass per sample.
    pub fn forward_macs_per_sample(&self) -> usize {
        let s = self.x.shape();
        self.net.macs_per_site() * s[2] * s[3]
    }
}
