//! Score-based diffusion models of lattice fields (Wang, Aarts, Zhou, arXiv:2309.17082): the
//! variance-exploding SDE and the h-interpolated reverse process ([`sde`]), and the score network
//! with its denoising score-matching loss ([`unet`]); training on a run's configurations ([`job`])
//! and the raw draws as a [`crate::sampler::Sampler`] ([`sampler`]).

pub mod bench;
pub mod job;
pub mod report;
pub mod sampler;
pub mod sde;
pub mod unet;

pub use sde::{Integrator, VeSde};
pub use unet::{ScoreConfig, ScoreNet};
