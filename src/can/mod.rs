//! Continuous-mixture autoregressive networks (CAN) for the 2D XY model (Wang, Jiang, He, Zhou,
//! Chin. Phys. Lett. 39, 120502 (2022)): a PixelCNN whose per-site conditionals are mixtures of
//! Beta distributions over θ/2π, trained by minimising the variational free energy with
//! REINFORCE and β-annealing, made exact by independence Metropolis or reweighting.
//!
//! - [`mixture`]: the Beta-mixture conditional (fused tape op, site draws; CUDA + CPU twins).
//! - [`model`]: the network, exact log q in one forward pass.
//! - [`generate`]: cached generation, one forward pass per configuration (CUDA + CPU twin).
//! - [`train`]: the variational free energy and its REINFORCE gradient.

pub mod generate;
pub mod mixture;
pub mod model;

pub use generate::DrawKey;
pub use model::{Can, CanConfig};
