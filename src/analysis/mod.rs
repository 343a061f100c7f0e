//! Statistical analysis of Monte Carlo time series: the Γ-method, the jackknife, and the
//! consistency of independent chains, and the stationarity of each.

pub mod drift;
pub mod gamma;
pub mod jackknife;
pub mod replicas;
pub mod scaling;

pub use drift::{drift_checks, worst_drift, DriftCheck};
pub use gamma::{gamma_derived, gamma_primary, Estimate};
pub use jackknife::jackknife;
pub use replicas::{replica_consistency, ReplicaCheck};
pub use scaling::{fit_power_law, PowerLaw};
