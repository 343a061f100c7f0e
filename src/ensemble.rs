//! Ensembles over several processes: the chains of one run spread over the ranks of a team
//! (MPI ranks with the `mpi` feature), each rank running a contiguous share of them with the
//! random numbers keyed by the global chain index ([`crate::sampler::Sampler::set_first_chain`]),
//! so that the ensemble — every file of the run — is identical to one process running all of
//! it with the same seed. Rank 0 writes the files; the others send it their measurements.
//!
//! The production run ([`crate::run::run_team`]) talks to the other ranks only through
//! [`Team`]: [`Solo`] is the single process, [`mpi::MpiTeam`] the MPI world.

use std::ops::Range;

use crate::error::{Error, Result};

/// The ranks running one ensemble, and the two collective operations the production run needs.
/// Every rank calls the same operations in the same order.
pub trait Team {
    /// This process's rank, 0 ≤ rank < size; rank 0 writes the files.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Rank 0 receives the concatenation, in rank order, of every rank's `local` (of any length);
    /// the other ranks receive `None`.
    fn gather(&self, local: &[f64]) -> Option<Vec<f64>>;
    /// Whether `ok` holds on every rank (a barrier).
    fn all_ok(&self, ok: bool) -> bool;
}

/// The single process: every operation is local.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl Team for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn gather(&self, local: &[f64]) -> Option<Vec<f64>> {
        Some(local.to_vec())
    }
    fn all_ok(&self, ok: bool) -> bool {
        ok
    }
}

/// The chains of `total` that rank `rank` of `size` runs: contiguous blocks in rank order, the
/// first `total % size` ranks taking one chain more. A rank may get none only if there are fewer
/// chains than ranks, which [`check_team`] refuses.
pub fn share(total: usize, rank: usize, size: usize) -> Range<usize> {
    let (per, extra) = (total / size, total % size);
    let first = rank * per + rank.min(extra);
    first..first + per + usize::from(rank < extra)
}

/// Refuses a team with more ranks than chains (a rank would have nothing to run).
pub fn check_team(team: &dyn Team, chains: usize) -> Result<()> {
    if team.size() > chains {
        return Err(Error::InvalidInput(format!(
            "{} ranks for {chains} chains: every rank needs at least one chain; give --chains {} \
             or more, or start fewer ranks",
            team.size(),
            team.size()
        )));
    }
    Ok(())
}

/// Makes every rank agree on `result`: if it failed on any rank, every rank returns an error (its
/// own, or one saying that another rank failed), so that no rank waits for the others forever.
pub fn agree<T>(team: &dyn Team, result: Result<T>) -> Result<T> {
    let all = team.all_ok(result.is_ok());
    match result {
        Ok(_) if !all => Err(Error::InvalidInput(format!(
            "rank {} stops: another rank of the ensemble failed (its error is printed above)",
            team.rank()
        ))),
        other => other,
    }
}

/// The MPI world as a [`Team`] (the `mpi` feature): run under `mpirun -np N`.
#[cfg(feature = "mpi")]
pub mod mpi {
    use mpi::datatype::PartitionMut;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;
    use mpi::Count;

    /// The ranks of `MPI_COMM_WORLD`. Keep the [`mpi::environment::Universe`] alive while it is
    /// used (MPI is finalised when the universe drops).
    pub struct MpiTeam {
        world: SimpleCommunicator,
    }

    impl MpiTeam {
        /// The team of the world communicator of `universe`.
        pub fn new(universe: &mpi::environment::Universe) -> Self {
            MpiTeam {
                world: universe.world(),
            }
        }

        /// Initialises MPI (once per process) and returns the universe, to be kept alive, with
        /// the world's team.
        pub fn init() -> crate::Result<(mpi::environment::Universe, MpiTeam)> {
            let universe = mpi::initialize().ok_or_else(|| {
                crate::Error::InvalidInput("MPI is already initialised in this process".into())
            })?;
            let team = MpiTeam::new(&universe);
            Ok((universe, team))
        }

        /// This rank's index among the ranks on its node, and their number (to share the node's
        /// cores or GPUs: [`crate::Device::for_local_rank`]).
        pub fn node_local(&self) -> (usize, usize) {
            let node = self.world.split_shared(self.world.rank());
            (node.rank() as usize, node.size() as usize)
        }
    }

    impl super::Team for MpiTeam {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }

        fn size(&self) -> usize {
            self.world.size() as usize
        }

        fn gather(&self, local: &[f64]) -> Option<Vec<f64>> {
            let root = self.world.process_at_rank(0);
            let n = local.len() as Count;
            if self.world.rank() != 0 {
                root.gather_into(&n);
                root.gather_varcount_into(local);
                return None;
            }
            let mut counts = vec![0 as Count; self.world.size() as usize];
            root.gather_into_root(&n, &mut counts[..]);
            let displs: Vec<Count> = counts
                .iter()
                .scan(0, |at, &c| {
                    let d = *at;
                    *at += c;
                    Some(d)
                })
                .collect();
            let mut all = vec![0.0; counts.iter().map(|&c| c as usize).sum()];
            let mut partition = PartitionMut::new(&mut all[..], counts, &displs[..]);
            root.gather_varcount_into_root(local, &mut partition);
            Some(all)
        }

        fn all_ok(&self, ok: bool) -> bool {
            let mut all = 0u8;
            self.world.all_reduce_into(
                &u8::from(ok),
                &mut all,
                mpi::collective::SystemOperation::min(),
            );
            all == 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_tile_the_chains_in_rank_order() {
        for total in 1..20 {
            for size in 1..=total {
                let mut next = 0;
                for rank in 0..size {
                    let r = share(total, rank, size);
                    assert_eq!(r.start, next);
                    assert!(!r.is_empty() && r.len() <= total.div_ceil(size));
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
        assert_eq!(share(10, 1, 3), 4..7);
    }
}
