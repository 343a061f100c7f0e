//! The production run behind `latticeml sample` (alias `hmc`), for any [`Sampler`], as a library function: thermalisation,
//! measurement every trajectory, thinned configurations, periodic checkpoints, bit-identical
//! resume, and the output files (`observables.csv`, `configs.npy`, `correlator.csv`,
//! `summary.json`, `checkpoint`), all written atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::analysis::{
    gamma_primary, replica_consistency, worst_drift, DriftCheck, Estimate, ReplicaCheck,
};
use crate::device::Device;
use crate::ensemble::{agree, check_team, share, Solo, Team};
use crate::error::{Error, Result};
use crate::hmc::Start;
use crate::io::checkpoint::Checkpoint;
use crate::io::json::Json;
use crate::io::outdir::{Claim, Manifest, OutputDir};
use crate::io::stream::{Appender, Format};
use crate::io::{npy, read, write_atomic};
use crate::lattice::Lattice;
use crate::observables::{correlator, CorrelatorPoint};
use crate::sampler::{Sampler, SamplerConfig};
use crate::theory::{Theory, TheoryConfig};

/// Everything that defines a run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Theory and couplings.
    pub theory: TheoryConfig,
    /// Independent chains.
    pub chains: usize,
    /// Total trajectories per chain, thermalisation included.
    pub trajectories: u64,
    /// Thermalisation trajectories (written to the CSV, left out of the analysis).
    pub therm: u64,
    /// The sampler and its parameters.
    pub sampler: SamplerConfig,
    /// How the chains start.
    pub start: Start,
    /// Keep one configuration every this many trajectories (after thermalisation) in `configs.npy`.
    pub save_every: u64,
    /// Write the checkpoint and all files every this many trajectories (and at the end).
    pub checkpoint_every: u64,
}

impl RunConfig {
    /// Checks the numbers that are not checked by the action.
    pub fn validate(&self) -> Result<()> {
        self.sampler.validate()?;
        if self.chains == 0
            || self.trajectories == 0
            || self.save_every == 0
            || self.checkpoint_every == 0
        {
            return Err(Error::InvalidInput(
                "chains, trajectories, save-every and checkpoint-every must all be at least 1"
                    .into(),
            ));
        }
        if self.therm >= self.trajectories {
            return Err(Error::InvalidInput(format!(
                "therm = {} leaves no trajectories to measure out of {}; use --therm smaller than --trajectories",
                self.therm, self.trajectories
            )));
        }
        Ok(())
    }

    /// `key=value` lines fixing the Markov chain (everything but the number of trajectories):
    /// the theory, the run's own parameters and the sampler's.
    fn identity(&self, action: &dyn Theory, sampler: &dyn Sampler, ranks: usize) -> String {
        let mut s = crate::theory::identity_lines(action);
        s.push_str(&format!(
            "chains={}\ntherm={}\nsave_every={}\nstart={}\nwarmup={WARMUP_LEVELS}\n",
            self.chains,
            self.therm,
            self.save_every,
            self.start.name(),
        ));
        s.push_str(&sampler.parameters());
        // Each rank checkpoints its own share: a run resumes on as many ranks as it ran on.
        if ranks > 1 {
            s.push_str(&format!("ranks={ranks}\n"));
        }
        s
    }
}

/// Step-size warm-up: during the first half of thermalisation the sampler takes smaller steps
/// (for HMC, 2^k times the MD steps at the same trajectory length), k falling from this value to
/// 1; from the second half on, and for every measured update, the production step size. A start
/// far from equilibrium (ΔH ≫ 1 at the production step) thus still moves, and the schedule
/// depends only on the update index, so a resumed run repeats it exactly.
pub const WARMUP_LEVELS: u32 = 3;

/// Warm-up level of update `t` (see [`WARMUP_LEVELS`]); 0 is production.
pub fn warmup_level(t: u64, therm: u64) -> u32 {
    let half = therm / 2;
    if t >= half {
        return 0;
    }
    ((WARMUP_LEVELS as u64 * (half - t)).div_ceil(half) as u32).min(WARMUP_LEVELS)
}

/// Fewest trajectories in a window before zero acceptance there is taken as a stuck chain.
const STUCK_AFTER: usize = 20;

/// Refuses the run when, among the rows of trajectories `t >= from`, a chain accepted none of at
/// least [`STUCK_AFTER`] trajectories, or ΔH was not finite in most of them: those are failures,
/// not results. Only for samplers with whole-configuration proposals
/// ([`Sampler::global_proposals`]): a local sampler accepting nothing in a sweep may be a frozen
/// but correct chain (Ising deep in the ordered phase), and it has no ΔH.
fn check_chains(rows: &[f64], ncols: usize, chains: usize, from: u64, global: bool) -> Result<()> {
    let window: Vec<&[f64]> = rows.chunks(ncols).filter(|r| r[0] as u64 >= from).collect();
    if window.is_empty() || !global {
        return Ok(());
    }
    let non_finite = window.iter().filter(|r| !r[3].is_finite()).count();
    if 2 * non_finite > window.len() {
        return Err(Error::NonFinite(format!(
            "ΔH was not finite in {non_finite} of {} trajectories from trajectory {from} on: the \
             couplings are unstable or the step size far too large",
            window.len()
        )));
    }
    for c in 0..chains {
        let mine: Vec<&&[f64]> = window.iter().filter(|r| r[1] as usize == c).collect();
        if mine.len() >= STUCK_AFTER && mine.iter().all(|r| r[2] == 0.0) {
            let mean_dh = mine.iter().map(|r| r[3]).sum::<f64>() / mine.len() as f64;
            return Err(Error::InvalidInput(format!(
                "chain {c} accepted none of its {} trajectories from trajectory {from} on (mean ΔH \
                 = {mean_dh:.3e}): it is stuck, so its results would be its start. Raise --steps or \
                 lower --tau, thermalise longer (--therm), or try --start cold or ordered",
                mine.len()
            )));
        }
    }
    Ok(())
}

/// A failed run keeps its data files, but no `summary.json` may present it as a result.
fn no_summary(out: &Path, e: Error) -> Error {
    let _ = std::fs::remove_file(out.join("summary.json"));
    e
}

/// Per-chain acceptance and ⟨e^{−ΔH}⟩ after thermalisation.
#[derive(Clone, Debug)]
pub struct ChainStats {
    /// Fraction of accepted trajectories.
    pub acceptance: f64,
    /// ⟨e^{−ΔH}⟩ of this chain (should be 1).
    pub exp_minus_dh: Estimate,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// Named observables with errors.
    pub observables: Vec<(&'static str, Estimate)>,
    /// Acceptance rate after thermalisation.
    pub acceptance: f64,
    /// ⟨e^{−ΔH}⟩ after thermalisation (should be 1).
    pub exp_minus_dh: Estimate,
    /// ⟨ΔH⟩ after thermalisation (≈ ⟨ΔH²⟩/2 ≥ 0 for a reversible, area-preserving integrator).
    pub delta_h: Estimate,
    /// √⟨ΔH²⟩ after thermalisation.
    pub delta_h_rms: f64,
    /// Trajectories per chain done in total.
    pub trajectories: u64,
    /// Whether the sampler proposes whole configurations with a ΔH
    /// ([`Sampler::global_proposals`]); the ΔH statistics mean nothing otherwise.
    pub global_proposals: bool,
    /// What to change when the acceptance is low ([`Sampler::low_acceptance_advice`]).
    pub low_acceptance_advice: &'static str,
    /// Fused MD site-updates per second in this invocation.
    pub site_steps_per_second: f64,
    /// The device used.
    pub device: String,
    /// Where the files are.
    pub out: PathBuf,
    /// The time-slice correlator and effective mass.
    pub correlator: Vec<CorrelatorPoint>,
    /// Per chain, after thermalisation.
    pub chains: Vec<ChainStats>,
    /// Per primary observable, the χ² test that the chains agree (`None` for one chain or a
    /// constant series).
    pub replicas: Vec<(&'static str, Option<ReplicaCheck>)>,
    /// Per primary observable, the chain whose first tenth of measurements lies furthest from its
    /// second half, with the test (`None` when no chain is long enough): a start that had not
    /// thermalised.
    pub drift: Vec<(&'static str, Option<(usize, DriftCheck)>)>,
}

/// The per-trajectory history, read back from the streamed files for the analysis.
struct History {
    /// Rows `[trajectory, chain, accepted, ΔH, primaries…]`.
    rows: Vec<f64>,
    /// Per row: the T time-slice sums.
    slices: Vec<f64>,
}

const FIXED_COLS: usize = 4;

/// The files [`run`] writes into its directory.
pub const RUN_FILES: [&str; 6] = [
    "observables.csv",
    "configs.npy",
    "slices.npy",
    "correlator.csv",
    "summary.json",
    "checkpoint",
];

/// The streamed files, in the order of the checkpoint's `files` array.
struct Streams {
    csv: Appender,
    slices: Appender,
    configs: Appender,
}

impl Streams {
    fn formats(names: &[&str], lat: &Lattice, chains: usize) -> [(&'static str, Format); 3] {
        let mut header = String::from("trajectory,chain,thermalisation,accepted,delta_h");
        for n in names {
            header.push(',');
            header.push_str(n);
        }
        let mut config = vec![chains];
        config.extend_from_slice(lat.extents());
        [
            ("observables.csv", Format::Csv { header }),
            (
                "slices.npy",
                Format::Npy {
                    inner: vec![lat.time_extent()],
                },
            ),
            ("configs.npy", Format::Npy { inner: config }),
        ]
    }

    fn create(out: &Path, names: &[&str], lat: &Lattice, chains: usize) -> Result<Streams> {
        let [a, b, c] =
            Self::formats(names, lat, chains).map(|(name, f)| Appender::create(&out.join(name), f));
        Ok(Streams {
            csv: a?,
            slices: b?,
            configs: c?,
        })
    }

    /// Reopens the files at the checkpoint's `[rows, length]` per file.
    fn resume(
        out: &Path,
        names: &[&str],
        lat: &Lattice,
        chains: usize,
        at: &[f64],
    ) -> Result<Streams> {
        let [a, b, c] = Self::formats(names, lat, chains);
        let open = |(name, f): (&str, Format), k: usize| {
            Appender::resume(&out.join(name), f, at[2 * k] as u64, at[2 * k + 1] as u64)
        };
        Ok(Streams {
            csv: open(a, 0)?,
            slices: open(b, 1)?,
            configs: open(c, 2)?,
        })
    }

    /// Appends one update's rows (`[t, chain, accepted, ΔH, primaries…]` per chain), time-slice
    /// sums, and the configurations when they are saved.
    fn write(
        &mut self,
        cfg: &RunConfig,
        ncols: usize,
        rows: &[f64],
        slices: &[f64],
        configs: Option<Vec<f64>>,
    ) -> Result<()> {
        for row in rows.chunks(ncols) {
            self.csv.line(&csv_line(cfg.therm, row))?;
        }
        self.slices.values(slices)?;
        match configs {
            Some(c) => self.configs.values(&c),
            None => Ok(()),
        }
    }

    /// Syncs every file and returns `[rows, length]` per file for the checkpoint.
    fn sync(&mut self) -> Result<Vec<f64>> {
        let mut v = Vec::with_capacity(6);
        for a in [&mut self.csv, &mut self.slices, &mut self.configs] {
            let len = a.sync()?;
            v.extend([a.rows() as f64, len as f64]);
        }
        Ok(v)
    }
}

/// One `observables.csv` line: `trajectory, chain, thermalisation, accepted, delta_h, primaries…`
/// (floats in the shortest form that reads back to the same bits).
fn csv_line(therm: u64, row: &[f64]) -> String {
    let mut line = format!(
        "{},{},{},{},{:e}",
        row[0] as u64,
        row[1] as u64,
        ((row[0] as u64) < therm) as u8,
        row[2],
        row[3]
    );
    for x in &row[FIXED_COLS..] {
        line.push_str(&format!(",{x:e}"));
    }
    line
}

/// Reads the history back from `observables.csv` and `slices.npy` (after a sync).
fn load_history(out: &Path, ncols: usize, time_extent: usize) -> Result<History> {
    let path = out.join("observables.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| crate::io::io_err(&path, e))?;
    let bad = |reason: String| Error::BadFile {
        path: path.display().to_string(),
        reason,
    };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != ncols + 1 {
            return Err(bad(format!(
                "line {}: {} columns, expected {}",
                i + 1,
                f.len(),
                ncols + 1
            )));
        }
        // Columns: trajectory, chain, thermalisation (derived), accepted, delta_h, primaries.
        for (k, v) in f.iter().enumerate().filter(|(k, _)| *k != 2) {
            rows.push(
                v.parse::<f64>().map_err(|_| {
                    bad(format!("line {}: column {} is not a number", i + 1, k + 1))
                })?,
            );
        }
    }
    let (shape, slices) = npy::decode_prefix(&read(&out.join("slices.npy"))?)?;
    if shape.get(1) != Some(&time_extent) {
        return Err(Error::BadFile {
            path: out.join("slices.npy").display().to_string(),
            reason: format!("shape {shape:?}: not {time_extent} time slices per row"),
        });
    }
    Ok(History { rows, slices })
}

/// Runs a job of `cfg.sampler` on `cfg.theory` writing into `out`: a new run (`Claim::Fresh`,
/// the directory must hold no results), the continuation of the run there (`Claim::Resume`), or
/// a replacement of it (`Claim::Force`); see [`crate::io::outdir`]. `progress(done, total)` is
/// called after every update. Results are streamed to disk as they are produced: memory does not
/// grow with the number of updates, and a checkpoint costs the same at any point of the run.
pub fn run(
    cfg: &RunConfig,
    device: &Device,
    out: &Path,
    claim: Claim,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunOutcome> {
    run_team(cfg, device, out, claim, progress, &Solo)?
        .ok_or_else(|| Error::InvalidInput("a single process is rank 0 and has the outcome".into()))
}

/// [`run`] with the chains spread over the ranks of `team` ([`crate::ensemble`]): each rank
/// runs its share, rank 0 claims `out` and writes every file, identical to those of one process
/// running the whole ensemble; each rank checkpoints its own share (`checkpoint`,
/// `checkpoint.rank1`, …; `out` must be visible to every rank). Rank 0 returns the outcome, the
/// others `None`. A failure on any rank stops every rank with an error.
pub fn run_team(
    cfg: &RunConfig,
    device: &Device,
    out: &Path,
    claim: Claim,
    progress: &mut dyn FnMut(u64, u64),
    team: &dyn Team,
) -> Result<Option<RunOutcome>> {
    run_shared(cfg, device, out, claim, progress, team, None)
}

/// [`run`] with the lattice of every chain cut by `grid` over the ranks of `team`
/// ([`crate::domain`], HMC only): every rank runs every chain on its box, and the files — the
/// checkpoint included, written by rank 0 — are those of one process, so a decomposed run
/// resumes on any grid or on one process. Rank 0 returns the outcome, the others `None`.
#[allow(clippy::too_many_arguments)]
pub fn run_decomposed(
    cfg: &RunConfig,
    device: &Device,
    out: &Path,
    claim: Claim,
    progress: &mut dyn FnMut(u64, u64),
    team: Arc<dyn Team + Send + Sync>,
    grid: &[usize],
) -> Result<Option<RunOutcome>> {
    let view = team.clone();
    let domain = Some((team, grid));
    run_shared(cfg, device, out, claim, progress, view.as_ref(), domain)
}

/// The body of [`run_team`] (chains shared out, `domain` None) and [`run_decomposed`].
#[allow(clippy::too_many_arguments)]
fn run_shared(
    cfg: &RunConfig,
    device: &Device,
    out: &Path,
    claim: Claim,
    progress: &mut dyn FnMut(u64, u64),
    team: &dyn Team,
    domain: Option<(Arc<dyn Team + Send + Sync>, &[usize])>,
) -> Result<Option<RunOutcome>> {
    cfg.validate()?;
    let decomposed = domain.is_some();
    if !decomposed {
        check_team(team, cfg.chains)?;
    }
    let root = team.rank() == 0;
    // Ranks holding their own chains, each with its checkpoint; 1 when the lattice is cut.
    let shares = if decomposed { 1 } else { team.size() };
    let mine = match decomposed {
        true => 0..cfg.chains,
        false => share(cfg.chains, team.rank(), team.size()),
    };
    let action = cfg.theory.build()?;
    let lat = action.lattice().clone();
    let names = action.primary_names();
    let ncols = FIXED_COLS + names.len();
    let built = match domain {
        Some((all, grid)) => {
            cfg.sampler
                .build_decomposed(action.clone(), cfg.chains, all, grid, device)
        }
        None => cfg
            .sampler
            .build(action.clone(), mine.len(), device)
            .and_then(|mut s| s.set_first_chain(mine.start).map(|()| s)),
    };
    let mut sampler = agree(team, built)?;
    // Rank 0's copy of every rank's rows: gathered from the chains' ranks, or, with a cut
    // lattice, its own (every rank computed the same global values).
    let collect = |local: &[f64]| match decomposed {
        true => root.then(|| local.to_vec()),
        false => team.gather(local),
    };
    let identity = cfg.identity(action.as_ref(), sampler.as_ref(), shares);
    let global = sampler.global_proposals();
    let checked = sampler.stalls_are_failures();
    let mut files: Vec<String> = RUN_FILES.iter().map(|f| f.to_string()).collect();
    files.extend(sampler.extra_files().into_iter().map(String::from));
    files.extend((1..shares).map(rank_checkpoint));
    let manifest = Manifest {
        command: "sample".into(),
        parameters: identity.clone(),
        files,
    };
    // Rank 0 claims the directory before any rank writes there.
    let claimed = root
        .then(|| OutputDir::claim(out, &manifest, claim))
        .transpose();
    let _dir = agree(team, claimed)?;
    let ckpt_path = out.join(if root || decomposed {
        "checkpoint".to_string()
    } else {
        rank_checkpoint(team.rank())
    });

    let started = if claim == Claim::Resume {
        restore(&ckpt_path, &identity, cfg, sampler.as_mut(), root).and_then(|at| {
            root.then(|| Streams::resume(out, names, &lat, cfg.chains, &at))
                .transpose()
        })
    } else {
        let start = action.start_fields(cfg.start, mine.clone(), sampler.seed());
        sampler.set_fields(&start).and_then(|()| {
            root.then(|| Streams::create(out, names, &lat, cfg.chains))
                .transpose()
        })
    };
    let mut streams = agree(team, started)?;
    agree(team, same_progress(team, sampler.updates_done()))?;

    let mut seconds = 0.0;
    let mut site_updates = 0.0;
    while sampler.updates_done() < cfg.trajectories {
        let t = sampler.updates_done();
        let start = Instant::now();
        let measured = measured_update(sampler.as_mut(), cfg, t, mine.start);
        seconds += start.elapsed().as_secs_f64();
        site_updates += sampler.site_updates() as f64;
        let (rows, slices) = agree(team, measured)?;
        let (rows, slices) = (collect(&rows), collect(&slices));
        let save = t >= cfg.therm && (t + 1 - cfg.therm).is_multiple_of(cfg.save_every);
        let configs = match save {
            true => agree(team, sampler.fields())?,
            false => Vec::new(),
        };
        let configs = save.then(|| collect(&configs)).flatten();
        let written = match (&mut streams, rows, slices) {
            (Some(s), Some(rows), Some(slices)) => s.write(cfg, ncols, &rows, &slices, configs),
            _ => Ok(()),
        };
        agree(team, written)?;
        let done = t + 1;
        progress(done, cfg.trajectories);
        let end_of_therm = done == cfg.therm;
        if done.is_multiple_of(cfg.checkpoint_every) || done == cfg.trajectories || end_of_therm {
            let synced = streams.as_mut().map_or(Ok(Vec::new()), |s| s.sync());
            // With a cut lattice every rank builds the state (a collective) and rank 0 writes.
            let writes = root || !decomposed;
            let written = synced.and_then(|at| {
                write_checkpoint(&ckpt_path, &identity, sampler.as_ref(), &at, writes)
            });
            agree(team, written)?;
        }
        if end_of_therm {
            // The second half of thermalisation ran at the production step size.
            let checked = streams.as_ref().map_or(Ok(()), |_| {
                let hist = load_history(out, ncols, lat.time_extent())?;
                check_chains(&hist.rows, ncols, cfg.chains, cfg.therm / 2, checked)
                    .map_err(|e| no_summary(out, e))
            });
            agree(team, checked)?;
        }
    }
    // What the summary pools over the ranks' shares (independence samplers' reweighting).
    let pooled = sampler.pool_summary(team);
    agree(team, pooled)?;
    let finished = match streams {
        Some(streams) => {
            let site_rate = site_updates / seconds.max(1e-300);
            let sampler = sampler.as_ref();
            let end = End { global, checked };
            finish(
                cfg,
                action.as_ref(),
                sampler,
                streams,
                device,
                out,
                site_rate,
                end,
            )
            .map(Some)
        }
        None => Ok(None),
    };
    agree(team, finished)
}

/// The checkpoint file of rank `rank` > 0.
fn rank_checkpoint(rank: usize) -> String {
    format!("checkpoint.rank{rank}")
}

/// Checks that every rank resumed at the same update (each restored its own checkpoint).
fn same_progress(team: &dyn Team, done: u64) -> Result<()> {
    match team.gather(&[done as f64]) {
        Some(all) if all.iter().any(|&d| d != done as f64) => Err(Error::BadFile {
            path: "checkpoint.rank*".into(),
            reason: format!(
                "the ranks' checkpoints are at different updates ({all:?}): they were not written \
                 together; start the run again"
            ),
        }),
        _ => Ok(()),
    }
}

/// One update of every chain of the share starting at global chain `first`, at the warm-up level
/// of update `t`, and its measurement: the rows `[t, chain, accepted, ΔH, primaries…]` and the
/// time-slice sums of every chain, in chain order.
fn measured_update(
    sampler: &mut dyn Sampler,
    cfg: &RunConfig,
    t: u64,
    first: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    sampler.set_warmup(warmup_level(t, cfg.therm))?;
    let stats = sampler.update()?;
    let (mut rows, mut slices) = (Vec::new(), Vec::new());
    for (c, m) in sampler.measure()?.iter().enumerate() {
        let chain = first + c;
        if let Some(bad) = m.primaries.iter().find(|x| !x.is_finite()) {
            return Err(Error::NonFinite(format!(
                "observable {bad} on chain {chain} at trajectory {t}: the couplings or step size are unstable"
            )));
        }
        rows.extend([t as f64, chain as f64, stats.accepted[c], stats.delta_h[c]]);
        rows.extend_from_slice(&m.primaries);
        slices.extend_from_slice(&m.slices);
    }
    Ok((rows, slices))
}

/// What the end of a run needs to know of its sampler.
struct End {
    global: bool,
    checked: bool,
}

/// Rank 0 at the end of a run: checks the history, analyses it and writes `correlator.csv` and
/// `summary.json`.
#[allow(clippy::too_many_arguments)]
fn finish(
    cfg: &RunConfig,
    action: &dyn Theory,
    sampler: &dyn Sampler,
    mut streams: Streams,
    device: &Device,
    out: &Path,
    site_rate: f64,
    end: End,
) -> Result<RunOutcome> {
    streams.sync()?;
    drop(streams);
    let lat = action.lattice();
    let ncols = FIXED_COLS + action.primary_names().len();
    let shape = HistoryShape {
        chains: cfg.chains,
        ncols,
        time_extent: lat.time_extent(),
    };
    let done = sampler.updates_done();
    let hist = load_history(out, ncols, lat.time_extent())?;
    check_history(&shape, done, &hist.rows, &hist.slices).map_err(|reason| Error::BadFile {
        path: out.join("observables.csv").display().to_string(),
        reason,
    })?;
    check_chains(&hist.rows, ncols, cfg.chains, cfg.therm, end.checked)
        .map_err(|e| no_summary(out, e))?;
    let mut outcome = analyse(cfg, action, &hist, ncols, device, out, site_rate, done);
    outcome.global_proposals = end.global;
    outcome.low_acceptance_advice = sampler.low_acceptance_advice();
    outcome.correlator = write_correlator(out, cfg, lat, &hist, ncols)?;
    write_atomic(
        &out.join("summary.json"),
        summary_json(cfg, action, sampler, &outcome, end.global)
            .pretty()
            .as_bytes(),
    )?;
    Ok(outcome)
}

/// Restores the sampler from the checkpoint and returns the streamed files' `[rows, length]`.
fn restore(
    path: &Path,
    identity: &str,
    cfg: &RunConfig,
    sampler: &mut dyn Sampler,
    with_files: bool,
) -> Result<Vec<f64>> {
    if !path.exists() {
        return Err(Error::InvalidInput(format!(
            "nothing to resume: {} does not exist; run without --resume",
            path.display()
        )));
    }
    let ck = Checkpoint::decode(&read(path)?, path)?;
    let bad = |reason: String| Error::BadFile {
        path: path.display().to_string(),
        reason,
    };
    let (stored_id, done) = ck
        .header
        .rsplit_once("trajectories_done=")
        .ok_or_else(|| bad("no trajectory count".into()))?;
    if stored_id != identity {
        return Err(bad(format!(
            "it belongs to a different run ({}); resume with the same parameters, or choose another --out",
            crate::io::outdir::parameter_diff(identity, stored_id)
        )));
    }
    let done: u64 = done
        .trim()
        .parse()
        .map_err(|_| bad("bad trajectory count".into()))?;
    if done > cfg.trajectories {
        return Err(Error::InvalidInput(format!(
            "the run has done {done} trajectories, more than --trajectories {}: give at least {done} \
             (a resumed run can only grow)",
            cfg.trajectories
        )));
    }
    let files = ck
        .array("files")
        .ok_or_else(|| bad("missing array 'files'".into()))?;
    let saves = done.saturating_sub(cfg.therm) / cfg.save_every;
    let rows = done as f64 * cfg.chains as f64;
    let whole = |v: f64| v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53);
    if with_files
        && (files.len() != 6
            || !files.iter().all(|&v| whole(v))
            || files[0] != rows
            || files[2] != rows
            || files[4] != saves as f64)
    {
        return Err(bad(format!(
            "its record of the streamed files ({files:?}) does not fit {done} trajectories"
        )));
    }
    sampler
        .restore(done, &ck.arrays)
        .map_err(|e| bad(e.to_string()))?;
    Ok(files.to_vec())
}

/// What the history must look like for this run.
struct HistoryShape {
    chains: usize,
    ncols: usize,
    time_extent: usize,
}

/// Checks the history read back against the run: one row per (trajectory, chain) in order, with
/// in-range indices and flags; one set of slice sums per row.
fn check_history(
    shape: &HistoryShape,
    done: u64,
    rows: &[f64],
    slices: &[f64],
) -> std::result::Result<(), String> {
    let expected_rows = (done as u128) * shape.chains as u128;
    if rows.len() as u128 != expected_rows * shape.ncols as u128 {
        return Err(format!(
            "{} history values where {done} trajectories of {} chains need {}",
            rows.len(),
            shape.chains,
            expected_rows * shape.ncols as u128
        ));
    }
    for (i, row) in rows.chunks(shape.ncols).enumerate() {
        let (t, c) = ((i / shape.chains) as f64, (i % shape.chains) as f64);
        if row[0] != t || row[1] != c || !(0.0..=1.0).contains(&row[2]) {
            return Err(format!("history row {i} is not trajectory {t}, chain {c}"));
        }
    }
    if slices.len() as u128 != expected_rows * shape.time_extent as u128 {
        return Err("time-slice history does not match the trajectories".into());
    }
    Ok(())
}

fn write_checkpoint(
    path: &Path,
    identity: &str,
    sampler: &dyn Sampler,
    files: &[f64],
    write: bool,
) -> Result<()> {
    let mut arrays = sampler.state()?;
    if !write {
        return Ok(());
    }
    arrays.push(("files".into(), files.to_vec()));
    let ck = Checkpoint {
        header: format!("{identity}trajectories_done={}", sampler.updates_done()),
        arrays,
    };
    write_atomic(path, &ck.encode())
}

/// Per chain, per primary, the post-thermalisation series; also per chain the slice sums.
fn split_series(cfg: &RunConfig, hist: &History, ncols: usize, col: usize) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); cfg.chains];
    for row in hist.rows.chunks(ncols).filter(|r| r[0] as u64 >= cfg.therm) {
        out[row[1] as usize].push(row[col]);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    cfg: &RunConfig,
    theory: &dyn Theory,
    hist: &History,
    ncols: usize,
    device: &Device,
    out: &Path,
    rate: f64,
    done: u64,
) -> RunOutcome {
    let nprim = ncols - FIXED_COLS;
    let cols: Vec<Vec<Vec<f64>>> = (0..ncols)
        .map(|c| split_series(cfg, hist, ncols, c))
        .collect();
    let series: Vec<Vec<Vec<f64>>> = (0..cfg.chains)
        .map(|ch| {
            (0..nprim)
                .map(|p| cols[FIXED_COLS + p][ch].clone())
                .collect()
        })
        .collect();
    let acc: Vec<f64> = cols[2].iter().flatten().copied().collect();
    let acceptance = acc.iter().sum::<f64>() / acc.len().max(1) as f64;
    let boltz: Vec<Vec<f64>> = cols[3]
        .iter()
        .map(|c| c.iter().map(|dh| (-dh).exp()).collect())
        .collect();
    let boltz_refs: Vec<&[f64]> = boltz.iter().map(|v| v.as_slice()).collect();
    let dh_refs: Vec<&[f64]> = cols[3].iter().map(|v| v.as_slice()).collect();
    let all_dh: Vec<f64> = cols[3].iter().flatten().copied().collect();
    let delta_h_rms =
        (all_dh.iter().map(|d| d * d).sum::<f64>() / all_dh.len().max(1) as f64).sqrt();
    let chains = cols[2]
        .iter()
        .zip(&boltz)
        .map(|(acc, b)| ChainStats {
            acceptance: acc.iter().sum::<f64>() / acc.len().max(1) as f64,
            exp_minus_dh: gamma_primary(&[b.as_slice()]),
        })
        .collect();
    let replicas = theory
        .primary_names()
        .iter()
        .enumerate()
        .map(|(p, &name)| {
            let per_chain: Vec<Estimate> = series
                .iter()
                .map(|s| gamma_primary(&[s[p].as_slice()]))
                .collect();
            (name, replica_consistency(&per_chain))
        })
        .collect();
    let drift = theory
        .primary_names()
        .iter()
        .enumerate()
        .map(|(p, &name)| {
            let per_chain: Vec<&[f64]> = series.iter().map(|s| s[p].as_slice()).collect();
            (name, worst_drift(&per_chain))
        })
        .collect();
    RunOutcome {
        chains,
        replicas,
        drift,
        observables: theory.summarize(&series),
        acceptance,
        exp_minus_dh: gamma_primary(&boltz_refs),
        delta_h: gamma_primary(&dh_refs),
        delta_h_rms,
        trajectories: done,
        global_proposals: true,
        low_acceptance_advice: "",
        site_steps_per_second: rate,
        device: device.describe(),
        out: out.to_path_buf(),
        correlator: Vec::new(),
    }
}

/// Writes `correlator.csv` (t, C, its error and τ_int, effective mass and its error) from the history.
fn write_correlator(
    out: &Path,
    cfg: &RunConfig,
    lat: &Lattice,
    hist: &History,
    ncols: usize,
) -> Result<Vec<CorrelatorPoint>> {
    let t_ext = lat.time_extent();
    let mut per_chain: Vec<Vec<Vec<f64>>> = vec![Vec::new(); cfg.chains];
    for (row, s) in hist.rows.chunks(ncols).zip(hist.slices.chunks(t_ext)) {
        if row[0] as u64 >= cfg.therm {
            per_chain[row[1] as usize].push(s.to_vec());
        }
    }
    let points = correlator(&per_chain, lat.volume());
    let mut csv = String::from("t,C,C_error,C_tau_int,m_eff,m_eff_error\n");
    for p in &points {
        let (m, me) = p.m_eff.map_or((f64::NAN, f64::NAN), |e| (e.value, e.error));
        csv.push_str(&format!(
            "{},{:e},{:e},{:.3},{:e},{:e}\n",
            p.t, p.c.value, p.c.error, p.c.tau_int, m, me
        ));
    }
    write_atomic(&out.join("correlator.csv"), csv.as_bytes())?;
    Ok(points)
}

fn estimate_json(e: &Estimate) -> Json {
    let mut fields = vec![
        ("value", Json::Num(e.value)),
        ("error", Json::Num(e.error)),
        ("tau_int", Json::Num(e.tau_int)),
        ("tau_int_error", Json::Num(e.tau_int_error)),
    ];
    if let Some(note) = e.note {
        fields.push(("note", Json::Str(note.into())));
    }
    Json::obj(fields)
}

fn chains_json(o: &RunOutcome, global: bool) -> Json {
    Json::Arr(
        o.chains
            .iter()
            .map(|c| {
                let mut f = vec![("acceptance", Json::Num(c.acceptance))];
                if global {
                    f.push(("exp_minus_delta_h", estimate_json(&c.exp_minus_dh)));
                }
                Json::obj(f)
            })
            .collect(),
    )
}

fn replicas_json(o: &RunOutcome) -> Json {
    Json::obj(o.replicas.iter().map(|(name, r)| {
        let v = r.map_or(Json::Null, |r| {
            Json::obj([
                ("chi2", Json::Num(r.chi2)),
                ("dof", Json::Num(r.dof as f64)),
                ("q", Json::Num(r.q)),
            ])
        });
        (*name, v)
    }))
}

fn drift_json(o: &RunOutcome) -> Json {
    Json::obj(o.drift.iter().map(|(name, d)| {
        let v = d.map_or(Json::Null, |(chain, d)| {
            let mut f = vec![
                ("chain", Json::Num(chain as f64)),
                ("z", Json::Num(d.z)),
                ("head", Json::Num(d.head as f64)),
                ("tail", Json::Num(d.tail as f64)),
                ("settled_after", Json::Num(d.settled as f64)),
            ];
            if let Some(note) = d.note() {
                f.push(("note", Json::Str(note.into())));
            }
            Json::obj(f)
        });
        (*name, v)
    }))
}

fn summary_json(
    cfg: &RunConfig,
    action: &dyn Theory,
    sampler: &dyn Sampler,
    o: &RunOutcome,
    global: bool,
) -> Json {
    let params = Json::obj(
        action
            .parameters()
            .into_iter()
            .map(|(k, v)| (k, Json::Num(v))),
    );
    let lattice = Json::Arr(
        action
            .lattice()
            .extents()
            .iter()
            .map(|&l| Json::Num(l as f64))
            .collect(),
    );
    let mut fields = vec![
        ("theory", Json::Str(action.name().into())),
        ("parameters", params),
        ("lattice", lattice),
        ("chains", Json::Num(cfg.chains as f64)),
    ];
    fields.extend(sampler.summary());
    fields.extend([
        ("start", Json::Str(cfg.start.name().into())),
        ("trajectories", Json::Num(o.trajectories as f64)),
        ("therm", Json::Num(cfg.therm as f64)),
        ("device", Json::Str(o.device.clone())),
        ("acceptance", Json::Num(o.acceptance)),
        ("chain_stats", chains_json(o, global)),
        ("replica_consistency", replicas_json(o)),
        ("drift_check", drift_json(o)),
    ]);
    if global {
        fields.extend([
            ("exp_minus_delta_h", estimate_json(&o.exp_minus_dh)),
            ("delta_h", estimate_json(&o.delta_h)),
            ("delta_h_rms", Json::Num(o.delta_h_rms)),
        ]);
    }
    fields.extend([
        ("site_steps_per_second", Json::Num(o.site_steps_per_second)),
        (
            "observables",
            Json::obj(o.observables.iter().map(|(k, e)| (*k, estimate_json(e)))),
        ),
    ]);
    Json::obj(fields)
}
