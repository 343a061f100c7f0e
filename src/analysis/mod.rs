//! Statistical analysis of Monte Carlo time series: the Γ-method and the jackknife.

pub mod gamma;
pub mod jackknife;

pub use gamma::{gamma_derived, gamma_primary, Estimate};
pub use jackknife::jackknife;
