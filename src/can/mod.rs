//! Continuous-mixture autoregressive networks (CAN) for the 2D XY model (Wang, Jiang, He, Zhou,
//! Chin. Phys. Lett. 39, 120502 (2022)): a PixelCNN whose per-site conditionals are mixtures of
//! Beta distributions over θ/2π, trained by minimising the variational free energy with
//! REINFORCE and β-annealing, made exact by independence Metropolis or reweighting.
//!
//! - [`mixture`]: the Beta-mixture conditional (fused tape op, site draws; CUDA + CPU twins).
//! - [`model`]: the network, exact log q in one forward pass.
//! - [`generate`]: cached generation, one forward pass per configuration (CUDA + CPU twin).
//! - [`train`]: the variational free energy and its REINFORCE gradient.
//! - [`data`]: the forward KL on an ensemble of a standard sampler, added to the training loss.
//! - [`files`]: the model directory; [`job`]: `can train` with checkpoints and resume.
//! - [`sampler`]: the network as a [`crate::sampler::Sampler`] (independence Metropolis).
//! - [`symmetry`]: proposals averaged over the lattice's and the angles' symmetries.
//! - [`scan`]: training and sampling across β, the helicity modulus and T_KT, vortex maps.

pub mod bench;
pub mod data;
pub mod files;
pub mod generate;
pub mod job;
pub mod mixture;
pub mod model;
pub mod sampler;
pub mod scan;
pub mod symmetry;
pub mod train;

pub use generate::DrawKey;
pub use model::{Can, CanConfig};
