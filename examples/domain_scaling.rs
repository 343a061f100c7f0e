//! Strong and weak scaling of the domain-decomposed HMC update ([`latticeml::hmc::domain`])
//! under MPI: the time of one fused MD update (halo exchange + force + drift) per rank, and the
//! share of it spent exchanging the halo.
//!
//! ```text
//! cargo build --release --features mpi --example domain_scaling
//! LATTICEML_THREADS=1 mpirun -np 2 target/release/examples/domain_scaling 1024x1024 2x1 200
//! mpirun -np 8 target/release/examples/domain_scaling 128x128x128x128 2x2x2x1 100 cuda
//! ```
//! Arguments: global extents, ranks per axis, updates timed (default 100), device (`cpu`, the
//! default, or `cuda`: one GPU per rank, faces through the host or, built with `--features
//! mpi,nccl`, over NCCL). Rank 0 prints one
//! line: ranks, grid, box, MD site-updates/s per rank and in all, halo share and time, bytes sent
//! to other ranks per update.

use std::sync::Arc;
use std::time::Instant;

use latticeml::action::{Action, Phi4};
use latticeml::domain::Decomposition;
use latticeml::ensemble::{mpi::MpiTeam, Team};
use latticeml::hmc::domain::DomainHmc;
use latticeml::hmc::{HmcBackend, Start};
use latticeml::{Device, Lattice};

fn main() -> latticeml::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        latticeml::Error::InvalidInput(
            "usage: domain_scaling EXTENTS GRID [UPDATES [cpu|cuda]], e.g. 1024x1024 2x1 100"
                .into(),
        )
    };
    let dims = Decomposition::parse_grid(args.get(1).ok_or_else(usage)?)?;
    let grid = Decomposition::parse_grid(args.get(2).ok_or_else(usage)?)?;
    let updates: usize = args
        .get(3)
        .map_or(Ok(100), |s| s.parse().map_err(|_| usage()))?;
    let (_universe, team) = MpiTeam::init()?;
    let (local, locals) = team.node_local();
    // Threads per rank on the CPU: LATTICEML_THREADS, else the node's cores shared out.
    let name = args.get(4).map_or("cpu", String::as_str);
    let (dev, _) = Device::for_local_rank(name, local, locals)?;
    let team: Arc<dyn Team + Send + Sync> = Arc::new(team);
    let action: Arc<dyn Action> = Arc::new(Phi4::new(Lattice::new(&dims)?, 0.27, 0.022)?);
    let mut hmc = DomainHmc::new(action.as_ref(), 1, team.clone(), &grid, &dev)?;
    hmc.set_fields(&Start::Hot.fields(action.as_ref(), 0..1, 1))?;
    hmc.refresh_momenta(1, 0, 0, 0)?;
    let timed = |hmc: &mut DomainHmc, f: &dyn Fn(&mut DomainHmc) -> latticeml::Result<()>| {
        team.all_ok(true);
        let t = Instant::now();
        for _ in 0..updates {
            f(hmc)?;
        }
        hmc.synchronize()?;
        team.all_ok(true);
        Ok::<f64, latticeml::Error>(t.elapsed().as_secs_f64())
    };
    timed(&mut hmc, &|h| h.kick_drift(1e-3, 1e-3))?; // warm-up
    let update = timed(&mut hmc, &|h| h.kick_drift(1e-3, 1e-3))?;
    let halo = timed(&mut hmc, &|h| h.refresh_halo())?;
    let dec = Decomposition::new(action.lattice(), &grid, team.rank(), team.size())?;
    let per_rank = (dec.local_volume() * updates) as f64 / update;
    if team.rank() == 0 {
        println!(
            "ranks {} grid {} box {} site-updates/s per rank {:.3e} all {:.3e} halo share {:.1}% \
             halo {:.1} us/update, {} bytes sent/update, {}",
            team.size(),
            latticeml::domain::grid_name(&grid),
            latticeml::domain::grid_name(dec.local_extents()),
            per_rank,
            per_rank * team.size() as f64,
            100.0 * halo / update,
            1e6 * halo / updates as f64,
            hmc.halo_bytes(),
            dev.describe()
        );
    }
    Ok(())
}
