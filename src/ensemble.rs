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

/// The ranks running one ensemble or one decomposed lattice ([`crate::domain`]), and the
/// operations between them. Every rank calls the same collective operations in the same order.
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
    /// Every rank receives the concatenation, in rank order, of every rank's `local`.
    fn all_gather(&self, local: &[f64]) -> Vec<f64>;
    /// Sends `send` to rank `to` while receiving `recv.len()` values from rank `from` (the halo
    /// exchange's shift; `to` and `from` may be this rank); a message of another length is an
    /// error.
    fn exchange(&self, send: &[f64], to: usize, recv: &mut [f64], from: usize) -> Result<()>;
    /// The personalised all-to-all: `send` holds `counts_out[r]` values for each rank r, in rank
    /// order; returns the `counts_in[r]` values each rank r sent here, in rank order.
    fn all_to_all(&self, send: &[f64], counts_out: &[usize], counts_in: &[usize]) -> Vec<f64>;
}

/// The element-wise sums of every rank's `local` (all of one length), added in rank order: every
/// rank calls it and receives the same sums.
pub fn all_sum(team: &dyn Team, local: &[f64]) -> Result<Vec<f64>> {
    let all = team.all_gather(local);
    if all.len() != local.len() * team.size() {
        return Err(crate::error::Error::InvalidInput(format!(
            "summing {} values per rank over {} ranks, {} arrived",
            local.len(),
            team.size(),
            all.len()
        )));
    }
    let mut sums = vec![0.0; local.len()];
    for part in all.chunks(local.len().max(1)) {
        sums.iter_mut().zip(part).for_each(|(s, v)| *s += v);
    }
    Ok(sums)
}

/// Rank 0's `bytes` on every rank (collective: the other ranks pass `None`), or `None` on every
/// rank when rank 0 has none to give. Carried by [`Team::all_gather`] as one exact small integer
/// per value (an NCCL communicator's id, say).
pub fn broadcast_bytes(team: &dyn Team, bytes: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
    let mine: Vec<f64> = match (team.rank(), bytes) {
        (0, Some(b)) => std::iter::once(1.0)
            .chain(b.iter().map(|&x| f64::from(x)))
            .collect(),
        (0, None) => vec![0.0],
        _ => Vec::new(),
    };
    let all = team.all_gather(&mine);
    match all.split_first() {
        Some((&1.0, rest)) => {
            let ok = |v: f64| v.fract() == 0.0 && (0.0..=255.0).contains(&v);
            match rest.iter().all(|&v| ok(v)) {
                true => Ok(Some(rest.iter().map(|&v| v as u8).collect())),
                false => Err(crate::error::Error::InvalidInput(
                    "a broadcast arrived with values that are not bytes".into(),
                )),
            }
        }
        Some((&0.0, _)) => Ok(None),
        _ => Err(crate::error::Error::InvalidInput(format!(
            "a broadcast from rank 0 arrived as {} values without its flag",
            all.len()
        ))),
    }
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
    fn all_gather(&self, local: &[f64]) -> Vec<f64> {
        local.to_vec()
    }
    fn exchange(&self, send: &[f64], _to: usize, recv: &mut [f64], _from: usize) -> Result<()> {
        check_message(send.len(), recv.len())?;
        recv.copy_from_slice(send);
        Ok(())
    }
    fn all_to_all(&self, send: &[f64], _counts_out: &[usize], _counts_in: &[usize]) -> Vec<f64> {
        send.to_vec()
    }
}

/// Refuses a received message of `got` values where `want` were expected.
pub fn check_message(got: usize, want: usize) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "a rank sent {got} values where {want} were expected: the ranks disagree about the run"
    )))
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
    use mpi::datatype::{Partition, PartitionMut};
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;
    use mpi::Count;

    /// The ranks of `MPI_COMM_WORLD`. Keep the [`mpi::environment::Universe`] alive while it is
    /// used (MPI is finalised when the universe drops). It holds no handle, so it can move into
    /// a sampler's backend (the domain decomposition's halo exchange).
    pub struct MpiTeam {
        _private: (),
    }

    /// MPI counts and displacements of consecutive blocks of `counts` values.
    fn layout(counts: &[usize]) -> (Vec<Count>, Vec<Count>) {
        let counts: Vec<Count> = counts.iter().map(|&c| c as Count).collect();
        let displs = counts
            .iter()
            .scan(0, |at, &c| {
                let d = *at;
                *at += c;
                Some(d)
            })
            .collect();
        (counts, displs)
    }

    impl MpiTeam {
        /// The team of the world communicator of `universe`.
        pub fn new(_universe: &mpi::environment::Universe) -> Self {
            MpiTeam { _private: () }
        }

        fn world(&self) -> SimpleCommunicator {
            SimpleCommunicator::world()
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
            let world = self.world();
            let node = world.split_shared(world.rank());
            (node.rank() as usize, node.size() as usize)
        }
    }

    impl super::Team for MpiTeam {
        fn rank(&self) -> usize {
            self.world().rank() as usize
        }

        fn size(&self) -> usize {
            self.world().size() as usize
        }

        fn gather(&self, local: &[f64]) -> Option<Vec<f64>> {
            let world = self.world();
            let root = world.process_at_rank(0);
            let n = local.len() as Count;
            if world.rank() != 0 {
                root.gather_into(&n);
                root.gather_varcount_into(local);
                return None;
            }
            let mut counts = vec![0 as Count; world.size() as usize];
            root.gather_into_root(&n, &mut counts[..]);
            let sizes: Vec<usize> = counts.iter().map(|&c| c as usize).collect();
            let (counts, displs) = layout(&sizes);
            let mut all = vec![0.0; sizes.iter().sum()];
            let mut partition = PartitionMut::new(&mut all[..], counts, &displs[..]);
            root.gather_varcount_into_root(local, &mut partition);
            Some(all)
        }

        fn all_ok(&self, ok: bool) -> bool {
            let mut all = 0u8;
            self.world().all_reduce_into(
                &u8::from(ok),
                &mut all,
                mpi::collective::SystemOperation::min(),
            );
            all == 1
        }

        fn all_gather(&self, local: &[f64]) -> Vec<f64> {
            let world = self.world();
            let mut counts = vec![0 as Count; world.size() as usize];
            world.all_gather_into(&(local.len() as Count), &mut counts[..]);
            let sizes: Vec<usize> = counts.iter().map(|&c| c as usize).collect();
            let (counts, displs) = layout(&sizes);
            let mut all = vec![0.0; sizes.iter().sum()];
            let mut partition = PartitionMut::new(&mut all[..], counts, &displs[..]);
            world.all_gather_varcount_into(local, &mut partition);
            all
        }

        fn exchange(
            &self,
            send: &[f64],
            to: usize,
            recv: &mut [f64],
            from: usize,
        ) -> crate::Result<()> {
            let world = self.world();
            let (dest, source) = (
                world.process_at_rank(to as i32),
                world.process_at_rank(from as i32),
            );
            let status = mpi::point_to_point::send_receive_into(send, &dest, recv, &source);
            super::check_message(
                status.count(f64::equivalent_datatype()) as usize,
                recv.len(),
            )
        }

        fn all_to_all(&self, send: &[f64], counts_out: &[usize], counts_in: &[usize]) -> Vec<f64> {
            let (oc, od) = layout(counts_out);
            let (ic, id) = layout(counts_in);
            let mut all = vec![0.0; counts_in.iter().sum()];
            let outgoing = Partition::new(send, oc, &od[..]);
            let mut incoming = PartitionMut::new(&mut all[..], ic, &id[..]);
            self.world()
                .all_to_all_varcount_into(&outgoing, &mut incoming);
            all
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_of_the_wrong_length_is_an_error() {
        let mut recv = [0.0; 3];
        assert!(Solo.exchange(&[1.0, 2.0], 0, &mut recv, 0).is_err());
        Solo.exchange(&[1.0, 2.0, 3.0], 0, &mut recv, 0).unwrap();
        assert_eq!(recv, [1.0, 2.0, 3.0]);
    }

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
