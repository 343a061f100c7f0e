//! Normalizing flows for lattice fields: affine-coupling flows trained by the reverse KL
//! divergence on the autodiff tape, and made exact by an independence Metropolis chain over
//! their proposals (NMCMC) or by reweighting.
//!
//! - [`coupling`]: the fused coupling op (CUDA kernel and CPU twin, forward and backward).
//! - [`model`]: the flow (masks, convolution networks, exact log q).
//! - [`fourier`]: the Fourier flow's transform and mode layers (1D paths).
//! - [`target`]: a theory's action as a tape op.
//! - [`train`]: reverse-KL training, ESS and acceptance estimates.
//! - [`nmcmc`]: the flow as a [`crate::sampler::Sampler`], and the model files.
//! - [`reweight`]: reweighted estimates and the ESS from independent proposals.

pub mod bench;
pub mod coupling;
pub mod fourier;
pub mod job;
pub mod model;
pub mod nmcmc;
pub mod reweight;
pub mod target;
pub mod train;

pub use model::{Flow, FlowBasis, FlowConfig, MaskKind};
pub use target::Target;
pub use train::{StepStats, TrainConfig, Trainer};
