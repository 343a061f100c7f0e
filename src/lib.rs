//! latticeml: hand-written CUDA kernels, each with a multi-threaded CPU twin, for sampling and
//! machine learning in lattice field theory.
//!
//! ```no_run
//! use std::sync::Arc;
//! use latticeml::{action::Phi4, hmc::{Hmc, HmcParams, Integrator}, Device, Lattice};
//! let lattice = Lattice::new(&[32, 32])?;
//! let action = Arc::new(Phi4::new(lattice, 0.21, 0.022)?);
//! let params = HmcParams { tau: 1.0, steps: 10, integrator: Integrator::Omelyan, seed: 1 };
//! let (device, _why) = Device::auto();
//! let mut hmc = Hmc::new(action, 4, params, &device)?;
//! let stats = hmc.trajectory()?;
//! # Ok::<(), latticeml::Error>(())
//! ```

#![warn(missing_docs)]

pub mod action;
pub mod analysis;
pub mod can;
pub mod csd;
pub mod device;
pub mod diffusion;
pub mod domain;
pub mod ensemble;
pub mod error;
pub mod exact;
pub mod flow;
pub mod hmc;
pub mod independence;
pub mod io;
pub mod lattice;
pub mod local;
pub mod nn;
pub mod observables;
pub mod philox;
pub mod run;
pub mod sampler;
pub mod spectral;
pub mod theory;
pub mod timing;
pub mod training;

pub use device::Device;
pub use error::{Error, Result};
pub use lattice::Lattice;
