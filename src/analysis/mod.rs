//! Statistical analysis of Monte Carlo time series: the Γ-method, the jackknife, and the
//! consistency of independent chains.

pub mod gamma;
pub mod jackknife;
pub mod replicas;
pub mod scaling;

pub use gamma::{gamma_derived, gamma_primary, Estimate};
pub use jackknife::jackknife;
pub use replicas::{replica_consistency, ReplicaCheck};
pub use scaling::{fit_power_law, PowerLaw};
