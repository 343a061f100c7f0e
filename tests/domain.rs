//! Domain decomposition: HMC on one lattice cut over a team of ranks (threads here, MPI ranks in
//! `tests/mpi.rs`) is bit-identical to one process running the whole lattice — every ΔH, every
//! accept/reject decision, the fields and the per-slice moments — for every decomposition.

mod common;

use std::sync::Arc;

use common::team::thread_team;
use latticeml::action::{Action, Oscillator, Phi4};
use latticeml::device::CpuDevice;
use latticeml::ensemble::Team;
use latticeml::hmc::{Hmc, HmcParams, Integrator};
use latticeml::{Device, Lattice};

fn phi4(dims: &[usize]) -> Arc<dyn Action> {
    // Near the 2D transition, so that some trajectories are rejected.
    Arc::new(Phi4::new(Lattice::new(dims).unwrap(), 0.27, 0.022).unwrap())
}

fn params(integrator: Integrator) -> HmcParams {
    HmcParams {
        tau: 1.0,
        steps: 6,
        integrator,
        seed: 5,
    }
}

/// ΔH bits and decisions of every trajectory, then the fields' and slice moments' bits.
type Record = (Vec<u64>, Vec<bool>, Vec<u64>, Vec<u64>);

fn record(hmc: &mut Hmc, trajectories: usize) -> Record {
    let (mut dh, mut acc) = (Vec::new(), Vec::new());
    for _ in 0..trajectories {
        let s = hmc.trajectory().unwrap();
        dh.extend(s.delta_h.iter().map(|x| x.to_bits()));
        acc.extend(s.accepted);
    }
    let fields = hmc.fields().unwrap().iter().map(|x| x.to_bits()).collect();
    let moments = hmc
        .slice_moments()
        .unwrap()
        .iter()
        .flatten()
        .map(|x| x.to_bits())
        .collect();
    (dh, acc, fields, moments)
}

fn solo(action: &Arc<dyn Action>, chains: usize, p: HmcParams, n: usize) -> Record {
    let device = Device::Cpu(common::cpu());
    let mut hmc = Hmc::new(action.clone(), chains, p, &device).unwrap();
    record(&mut hmc, n)
}

/// Every rank's record of the same run on `grid`, rank r's box on `device(r)`.
fn decomposed(
    action: &Arc<dyn Action>,
    chains: usize,
    p: HmcParams,
    n: usize,
    grid: &[usize],
    device: &(dyn Fn(usize) -> Device + Sync),
) -> Vec<Record> {
    let size = grid.iter().product();
    std::thread::scope(|s| {
        let handles: Vec<_> = thread_team(size)
            .into_iter()
            .map(|team| {
                let (action, grid, dev) = (action.clone(), grid.to_vec(), device(team.rank()));
                s.spawn(move || {
                    let team: Arc<dyn Team + Send + Sync> = Arc::new(team);
                    let mut hmc = Hmc::decomposed(action, chains, p, team, &grid, &dev).unwrap();
                    record(&mut hmc, n)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A 4D φ⁴ run with the Omelyan integrator.
fn four_dimensional() -> (Arc<dyn Action>, HmcParams) {
    let action: Arc<dyn Action> =
        Arc::new(Phi4::new(Lattice::new(&[6, 4, 4, 4]).unwrap(), 0.12, 0.05).unwrap());
    let p = HmcParams {
        tau: 1.0,
        steps: 2,
        ..params(Integrator::Omelyan)
    };
    (action, p)
}

/// Different thread counts per rank: the update must not depend on them.
fn threads_by_rank(rank: usize) -> Device {
    Device::Cpu(CpuDevice::with_threads(1 + rank % 2))
}

fn check(action: Arc<dyn Action>, chains: usize, p: HmcParams, n: usize, grids: &[&[usize]]) {
    check_on(action, chains, p, n, grids, &threads_by_rank);
}

fn check_on(
    action: Arc<dyn Action>,
    chains: usize,
    p: HmcParams,
    n: usize,
    grids: &[&[usize]],
    device: &(dyn Fn(usize) -> Device + Sync),
) {
    let want = solo(&action, chains, p, n);
    assert!(want.1.iter().any(|&a| a), "nothing accepted");
    assert!(
        want.1.iter().any(|&a| !a),
        "nothing rejected: the test cannot see decisions"
    );
    for grid in grids {
        for (rank, got) in decomposed(&action, chains, p, n, grid, device)
            .iter()
            .enumerate()
        {
            assert!(
                got == &want,
                "grid {grid:?}, rank {rank} ({}) differs from one process",
                device(rank).describe()
            );
        }
    }
}

/// Boxes on the GPU (`kernels/domain.cu`, without FMA contraction) follow the CPU's single
/// process bit for bit, alone and beside boxes on the CPU; the faces travel through the host.
#[test]
fn cuda_boxes_are_those_of_one_process() {
    let Some(gpu) = common::gpu("cuda_boxes_are_those_of_one_process") else {
        return;
    };
    let on_gpu = |_: usize| Device::Cuda(gpu.clone());
    let mixed = |rank: usize| match rank % 2 {
        0 => Device::Cuda(gpu.clone()),
        _ => threads_by_rank(rank),
    };
    let p = HmcParams {
        tau: 1.0,
        steps: 4,
        ..params(Integrator::Leapfrog)
    };
    let grids: &[&[usize]] = &[&[1, 1], &[2, 1], &[1, 2], &[2, 2], &[3, 2]];
    check_on(phi4(&[96, 80]), 2, p, 6, grids, &on_gpu);
    check_on(phi4(&[96, 80]), 2, p, 6, &[&[2, 2], &[1, 4]], &mixed);
    let (action, p) = four_dimensional();
    check_on(action, 3, p, 8, &[&[2, 1, 1, 2], &[1, 1, 1, 1]], &on_gpu);
    let osc: Arc<dyn Action> = Arc::new(Oscillator::new(0.5, 1.0, 1.4, 10.0, 40).unwrap());
    let p = HmcParams {
        tau: 2.0,
        steps: 12,
        ..params(Integrator::Leapfrog)
    };
    check_on(osc, 2, p, 10, &[&[1], &[4]], &on_gpu);
}

#[test]
fn two_dimensional_trajectories_are_those_of_one_process() {
    // 96 × 80 sites: two reduction chunks per chain, the second split over ranks.
    let p = HmcParams {
        tau: 1.0,
        steps: 4,
        ..params(Integrator::Leapfrog)
    };
    check(
        phi4(&[96, 80]),
        2,
        p,
        6,
        &[&[1, 1], &[2, 1], &[1, 2], &[2, 2], &[3, 2], &[1, 4]],
    );
}

/// Boxes large enough that their slabs are shared out over threads.
#[test]
fn threaded_boxes_are_those_of_one_process() {
    let p = HmcParams {
        tau: 1.55,
        steps: 2,
        ..params(Integrator::Leapfrog)
    };
    check(phi4(&[256, 160]), 2, p, 8, &[&[2, 1], &[1, 2]]);
}

#[test]
fn four_dimensional_trajectories_are_those_of_one_process() {
    let (action, p) = four_dimensional();
    check(
        action,
        3,
        p,
        8,
        &[&[2, 1, 1, 2], &[1, 2, 2, 1], &[3, 1, 2, 1]],
    );
}

#[test]
fn the_oscillator_path_decomposes_too() {
    let action: Arc<dyn Action> = Arc::new(Oscillator::new(0.5, 1.0, 1.4, 10.0, 40).unwrap());
    let p = HmcParams {
        tau: 2.0,
        steps: 12,
        ..params(Integrator::Leapfrog)
    };
    check(action, 2, p, 10, &[&[2], &[4], &[5]]);
}

#[test]
fn impossible_decompositions_are_refused_with_the_fix() {
    let action = phi4(&[6, 6]);
    let refuse = |grid: &[usize], size: usize, want: &str| {
        let team: Arc<dyn Team + Send + Sync> = Arc::new(thread_team(size).remove(0));
        let dev = CpuDevice::with_threads(1);
        let e = Hmc::decomposed(
            action.clone(),
            1,
            params(Integrator::Leapfrog),
            team,
            grid,
            &Device::Cpu(dev),
        )
        .err()
        .expect("refused")
        .to_string();
        assert!(e.contains(want), "{grid:?} on {size}: {e}");
    };
    refuse(&[4, 1], 4, "not a multiple");
    refuse(&[2, 2], 2, "mpirun -np 4");
    refuse(&[2, 2, 1], 4, "axes");
}
