//! The target density e^{−S} of a flow: a theory's action as a tape op, so the reverse-KL loss
//! differentiates through it. Any theory with a real-field action (φ⁴ in any form, the
//! oscillator) is a target; nothing here knows a theory by name.

use std::sync::Arc;

use crate::action::Action;
use crate::error::{Error, Result};
use crate::nn::{Backward, Op, Real, Tensor};

/// A theory's action seen from the flow: the flow's variable y and the theory's field φ = c·y.
/// With c = 1/√κ for φ⁴ the flow works in the standard-form field of the flow literature
/// (φ_std = √κ φ_hop, `../shared/conventions.md`) and its N(0, 1) prior has the papers' scale.
#[derive(Clone, Debug)]
pub struct Target {
    action: Arc<dyn Action>,
    scale: f64,
}

impl Target {
    /// The action of `action` in the flow variable y = φ / `scale`.
    pub fn new(action: Arc<dyn Action>, scale: f64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidInput(format!(
                "the field scale of a flow target must be positive, got {scale}"
            )));
        }
        Ok(Target { action, scale })
    }

    /// The theory's action.
    pub fn action(&self) -> &Arc<dyn Action> {
        &self.action
    }

    /// c in φ = c·y.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Sites per configuration.
    pub fn volume(&self) -> usize {
        self.action.lattice().volume()
    }

    /// S(c·y) of one configuration.
    pub fn action_of(&self, y: &[f64]) -> f64 {
        let phi: Vec<f64> = y.iter().map(|v| v * self.scale).collect();
        self.action.action(&phi)
    }

    /// ∂S(c·y)/∂y = −c·F(c·y) of one configuration.
    fn gradient_of(&self, y: &[f64], out: &mut [f64]) {
        let phi: Vec<f64> = y.iter().map(|v| v * self.scale).collect();
        self.action.force(&phi, out);
        out.iter_mut().for_each(|g| *g *= -self.scale);
    }

    /// The flow's field y from the theory's φ.
    pub fn to_flow(&self, phi: &[f64]) -> Vec<f64> {
        phi.iter().map(|p| p / self.scale).collect()
    }

    /// The theory's field φ from the flow's y.
    pub fn to_theory(&self, y: &[f64]) -> Vec<f64> {
        y.iter().map(|v| v * self.scale).collect()
    }
}

/// S per sample as a tape op: input y `[B, …]` with V values per sample, output `[B]`. Evaluated
/// in f64 on the host by the theory's reference action and force (a device tensor travels there
/// and back: for the lattices flows train on this is small beside the network).
pub struct ActionOp(pub Target);

impl ActionOp {
    fn split<T: Real>(&self, y: &Tensor<T>) -> Result<(usize, Vec<f64>)> {
        let v = self.0.volume();
        if y.shape().is_empty() || y.len() != y.shape()[0] * v {
            return Err(Error::InvalidInput(format!(
                "the action takes [batch, …] with {v} sites per sample; got {:?}",
                y.shape()
            )));
        }
        Ok((y.shape()[0], y.to_f64()?))
    }
}

impl<T: Real> Op<T> for ActionOp {
    fn name(&self) -> &str {
        "action"
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<Vec<Tensor<T>>> {
        let (b, y) = self.split(x[0])?;
        let v = self.0.volume();
        let s: Vec<f64> = y.chunks(v).map(|c| self.0.action_of(c)).collect();
        Ok(vec![x[0].ctx().from_f64(&[b], &s)?])
    }

    fn backward(&self, bw: &Backward<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let (_, y) = self.split(bw.input(0))?;
        let g = bw.grad(0)?.to_f64()?;
        let v = self.0.volume();
        let mut dy = vec![0.0; y.len()];
        for ((yc, dc), gb) in y.chunks(v).zip(dy.chunks_mut(v)).zip(&g) {
            self.0.gradient_of(yc, dc);
            dc.iter_mut().for_each(|d| *d *= gb);
        }
        Ok(vec![Some(
            bw.input(0).ctx().from_f64(bw.input(0).shape(), &dy)?,
        )])
    }
}
