//! Exact results that samplers are tested against and that users compare with: closed forms and
//! finite-lattice partition functions.

pub mod ising;
pub mod oscillator;
pub mod xy;
