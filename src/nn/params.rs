//! Named, trainable parameters with deterministic initialisation from a seed.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::tensor::{Ctx, Real, Tensor};
use crate::error::{Error, Result};
use crate::philox;

/// Philox stream word of parameter initialisation.
pub const STREAM_PARAM_INIT: u32 = 3;

/// A name-ordered store of parameters. The tape reads them by name; the optimiser updates them
/// in place (which needs the forward pass's [`super::tape::Var`]s to be dropped first).
pub struct ParamStore<T: Real> {
    ctx: Ctx<T>,
    params: BTreeMap<String, Arc<Tensor<T>>>,
}

/// 32-bit FNV-1a of a name: the Philox counter word that keeps each parameter's stream distinct.
fn name_word(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

impl<T: Real> ParamStore<T> {
    /// An empty store on `ctx`.
    pub fn new(ctx: &Ctx<T>) -> Self {
        ParamStore {
            ctx: ctx.clone(),
            params: BTreeMap::new(),
        }
    }

    /// The context.
    pub fn ctx(&self) -> &Ctx<T> {
        &self.ctx
    }

    /// Adds (or replaces) a parameter.
    pub fn insert(&mut self, name: &str, t: Tensor<T>) {
        self.params.insert(name.to_string(), Arc::new(t));
    }

    /// Adds a parameter of `shape` drawn uniformly from (−bound, bound) with counter
    /// (index, hash(name), 0, init stream) and key `seed`: the same on every backend and run.
    pub fn init_uniform(
        &mut self,
        name: &str,
        shape: &[usize],
        bound: f64,
        seed: u64,
    ) -> Result<()> {
        let n: usize = shape.iter().product();
        let key = philox::key_from_seed(seed);
        let word = name_word(name);
        let data: Vec<f64> = (0..n)
            .map(|i| {
                let b = philox::philox4x32_10([i as u32, word, 0, STREAM_PARAM_INIT], key);
                (2.0 * philox::uniform_from_words(b[0], b[1]) - 1.0) * bound
            })
            .collect();
        let t = self.ctx.from_f64(shape, &data)?;
        self.insert(name, t);
        Ok(())
    }

    /// A weight with fan-in `fan_in`, uniform in ±1/√fan_in (the default of common frameworks for
    /// `Linear` and convolutions), and its bias `name.b` likewise when `bias_len` > 0.
    pub fn init_layer(
        &mut self,
        name: &str,
        shape: &[usize],
        fan_in: usize,
        bias_len: usize,
        seed: u64,
    ) -> Result<()> {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        self.init_uniform(&format!("{name}.w"), shape, bound, seed)?;
        if bias_len > 0 {
            self.init_uniform(&format!("{name}.b"), &[bias_len], bound, seed)?;
        }
        Ok(())
    }

    /// The parameter `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor<T>> {
        self.params
            .get(name)
            .map(|r| r.as_ref())
            .ok_or_else(|| missing(name))
    }

    /// A shared handle (for the tape).
    pub fn shared(&self, name: &str) -> Result<Arc<Tensor<T>>> {
        self.params.get(name).cloned().ok_or_else(|| missing(name))
    }

    /// The parameter `name`, mutably; fails while a tape value still holds it.
    pub fn get_mut(&mut self, name: &str) -> Result<&mut Tensor<T>> {
        let rc = self.params.get_mut(name).ok_or_else(|| missing(name))?;
        Arc::get_mut(rc).ok_or_else(|| {
            Error::InvalidInput(format!(
                "parameter '{name}' is still held by a tape value; drop the forward pass first"
            ))
        })
    }

    /// Names in order.
    pub fn names(&self) -> Vec<String> {
        self.params.keys().cloned().collect()
    }

    /// (name, tensor) pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor<T>)> {
        self.params.iter().map(|(k, v)| (k, v.as_ref()))
    }

    /// Total number of scalar parameters.
    pub fn count(&self) -> usize {
        self.params.values().map(|t| t.len()).sum()
    }
}

fn missing(name: &str) -> Error {
    Error::InvalidInput(format!("no parameter named '{name}'"))
}
