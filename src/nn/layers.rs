//! Layers built from tape operations.

use super::kernels::{ConvMode, Unary};
use super::params::ParamStore;
use super::tape::{Tape, Var};
use super::tensor::Real;
use crate::error::{Error, Result};

/// The activation between a stack's convolutions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// x for x > 0, slope·x otherwise.
    LeakyRelu(f64),
    /// tanh x.
    Tanh,
    /// x·sigmoid(x).
    Silu,
}

impl Activation {
    /// The elementwise function.
    pub fn unary(self) -> Unary {
        match self {
            Activation::LeakyRelu(a) => Unary::LeakyRelu(a),
            Activation::Tanh => Unary::Tanh,
            Activation::Silu => Unary::Silu,
        }
    }

    /// The name on the command line and in model records.
    pub fn name(self) -> &'static str {
        match self {
            Activation::LeakyRelu(_) => "leaky-relu",
            Activation::Tanh => "tanh",
            Activation::Silu => "silu",
        }
    }

    /// The activation of a name (`slope` is the leaky ReLU's negative slope, finite and ≥ 0).
    pub fn parse(name: &str, slope: f64) -> Result<Self> {
        match name {
            "leaky-relu" if slope.is_finite() && slope >= 0.0 => Ok(Activation::LeakyRelu(slope)),
            "leaky-relu" => Err(Error::InvalidInput(format!(
                "the leaky-ReLU slope {slope} must be finite and >= 0"
            ))),
            "tanh" => Ok(Activation::Tanh),
            "silu" => Ok(Activation::Silu),
            _ => Err(Error::InvalidInput(format!(
                "--activation {name}: choose leaky-relu, tanh or silu"
            ))),
        }
    }
}

/// A stack of periodic convolutions on lattice-shaped inputs `[B, C, Lx, Ly]`: an activation
/// between layers and tanh after the last (the network inside affine-coupling layers).
#[derive(Clone, Debug)]
pub struct ConvStack {
    name: String,
    channels: Vec<usize>,
    kernel: [usize; 2],
    activation: Activation,
}

impl ConvStack {
    /// Registers the layers' parameters in `store` (names `{name}.{i}.w`, `{name}.{i}.b`),
    /// initialised from `seed`; `channels` lists every layer's width, input first.
    pub fn new(
        store: &mut ParamStore<impl Real>,
        name: &str,
        channels: &[usize],
        kernel: usize,
        activation: Activation,
        seed: u64,
    ) -> Result<Self> {
        Self::with_kernel(store, name, channels, [kernel, kernel], activation, seed)
    }

    /// As [`ConvStack::new`] with a kernel of `[height, width]` (e.g. `[1, k]` on a 1D lattice
    /// stored as `[B, C, 1, N]`).
    pub fn with_kernel(
        store: &mut ParamStore<impl Real>,
        name: &str,
        channels: &[usize],
        kernel: [usize; 2],
        activation: Activation,
        seed: u64,
    ) -> Result<Self> {
        if channels.len() < 2 || channels.contains(&0) || kernel.contains(&0) {
            return Err(Error::InvalidInput(format!(
                "a convolution stack needs at least two positive channel counts and a positive \
                 kernel; got channels {channels:?}, kernel {kernel:?}"
            )));
        }
        let taps = kernel[0] * kernel[1];
        for (i, pair) in channels.windows(2).enumerate() {
            let (cin, cout) = (pair[0], pair[1]);
            store.init_layer(
                &format!("{name}.{i}"),
                &[cout, cin, kernel[0], kernel[1]],
                cin * taps,
                cout,
                seed.wrapping_add(i as u64),
            )?;
        }
        Ok(ConvStack {
            name: name.to_string(),
            channels: channels.to_vec(),
            kernel,
            activation,
        })
    }

    /// Multiply–adds per lattice site of one forward pass.
    pub fn macs_per_site(&self) -> usize {
        self.channels
            .windows(2)
            .map(|p| p[0] * p[1] * self.kernel[0] * self.kernel[1])
            .sum()
    }

    /// The parameter names of the last layer (weight, bias).
    pub fn output_layer(&self) -> [String; 2] {
        let i = self.channels.len() - 2;
        [
            format!("{}.{i}.w", self.name),
            format!("{}.{i}.b", self.name),
        ]
    }

    /// The forward pass: one [`Tape::conv_stack`] (periodic convolutions, the activation
    /// between layers, tanh after the last).
    pub fn forward<T: Real>(
        &self,
        tape: &Tape<T>,
        store: &ParamStore<T>,
        x: &Var<T>,
    ) -> Result<Var<T>> {
        let n = self.channels.len() - 1;
        let mut layers = Vec::with_capacity(n);
        for i in 0..n {
            layers.push((
                tape.param(store, &format!("{}.{i}.w", self.name))?,
                tape.param(store, &format!("{}.{i}.b", self.name))?,
            ));
        }
        let mut acts = vec![self.activation.unary(); n];
        acts[n - 1] = Unary::Tanh;
        tape.conv_stack(x, &layers, &acts, ConvMode::Periodic)
    }
}
