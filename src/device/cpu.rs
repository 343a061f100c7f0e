//! The CPU backend: a persistent pool of worker threads and helpers that split work into
//! contiguous, disjoint chunks. Work is partitioned by data (never by thread timing), so results
//! do not depend on the number of threads; batches too small to repay a wake-up run serially.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use crate::error::{Error, Result};

/// Elements below which a parallel loop runs on the calling thread alone.
const SERIAL_BELOW: usize = 1 << 14;

/// The host CPU with a fixed number of threads (the caller plus `threads - 1` workers).
#[derive(Clone)]
pub struct CpuDevice {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for CpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuDevice({} threads)", self.threads())
    }
}

impl Default for CpuDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuDevice {
    /// All available cores (or `LATTICEML_THREADS` when set).
    pub fn new() -> Self {
        let n = std::env::var("LATTICEML_THREADS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| {
                thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
        Self::with_threads(n)
    }

    /// A fixed number of threads (at least 1).
    pub fn with_threads(threads: usize) -> Self {
        CpuDevice {
            pool: Pool::new(threads.max(1)),
        }
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.pool.workers.len() + 1
    }

    /// Description for the user.
    pub fn describe(&self) -> String {
        format!("cpu ({} threads)", self.threads())
    }

    /// Splits `a` (and `b`, when given) into per-thread chunks of whole `unit`s and calls
    /// `f(first_unit, a_chunk, b_chunk)` on each, in parallel. Refuses a `b` whose length differs
    /// from `a`'s, a zero `unit`, and a length that is not a whole number of units.
    pub fn for_chunks<T, F>(
        &self,
        unit: usize,
        a: &mut [T],
        b: Option<&mut [T]>,
        f: F,
    ) -> Result<()>
    where
        T: Send,
        F: Fn(usize, &mut [T], Option<&mut [T]>) + Sync,
    {
        let serial = a.len() < SERIAL_BELOW;
        self.split(unit, a, b, serial, f)
    }

    /// As [`CpuDevice::for_chunks`], always spread over the threads: for few but expensive units.
    pub fn for_heavy_chunks<T, F>(&self, unit: usize, a: &mut [T], f: F) -> Result<()>
    where
        T: Send,
        F: Fn(usize, &mut [T], Option<&mut [T]>) + Sync,
    {
        self.split(unit, a, None, false, f)
    }

    fn split<T, F>(
        &self,
        unit: usize,
        a: &mut [T],
        b: Option<&mut [T]>,
        serial: bool,
        f: F,
    ) -> Result<()>
    where
        T: Send,
        F: Fn(usize, &mut [T], Option<&mut [T]>) + Sync,
    {
        check_split(unit, a.len(), b.as_ref().map(|b| b.len()))?;
        let units = a.len() / unit;
        let tasks = self.tasks_for(units, serial);
        if tasks == 1 {
            f(0, a, b);
            return Ok(());
        }
        let per = units.div_ceil(tasks);
        let (pa, len) = (SendPtr(a.as_mut_ptr()), a.len());
        let pb = b.map(|b| SendPtr(b.as_mut_ptr()));
        self.pool.run(tasks, &|i| {
            let lo = (i * per * unit).min(len);
            let hi = ((i + 1) * per * unit).min(len);
            // SAFETY: tasks cover disjoint ranges [lo, hi) of `a` and `b`, which outlive `run`.
            let ca = unsafe { std::slice::from_raw_parts_mut(pa.get().add(lo), hi - lo) };
            let cb =
                pb.map(|p| unsafe { std::slice::from_raw_parts_mut(p.get().add(lo), hi - lo) });
            f(i * per, ca, cb);
        });
        Ok(())
    }

    /// As [`CpuDevice::for_chunks`] over `K` buffers of equal length cut at the same points:
    /// `f(first, chunks)` with element `first` the chunks' start (e.g. a parameter, its two
    /// moments). Refuses buffers of different lengths.
    pub fn for_zipped_chunks<T, F, const K: usize>(&self, bufs: [&mut [T]; K], f: F) -> Result<()>
    where
        T: Send,
        F: Fn(usize, [&mut [T]; K]) + Sync,
    {
        let len = bufs.first().map_or(0, |b| b.len());
        if bufs.iter().any(|b| b.len() != len) {
            return Err(Error::InvalidInput(format!(
                "buffers of {:?} values cut together",
                bufs.iter().map(|b| b.len()).collect::<Vec<_>>()
            )));
        }
        let tasks = self.tasks_for(len, len < SERIAL_BELOW);
        if tasks == 1 {
            f(0, bufs);
            return Ok(());
        }
        let per = len.div_ceil(tasks);
        let ptrs = bufs.map(|b| SendPtr(b.as_mut_ptr()));
        self.pool.run(tasks, &|i| {
            let (lo, hi) = ((i * per).min(len), ((i + 1) * per).min(len));
            // SAFETY: tasks cover disjoint ranges [lo, hi) of every buffer, which outlive `run`.
            let chunks =
                ptrs.map(|p| unsafe { std::slice::from_raw_parts_mut(p.get().add(lo), hi - lo) });
            f(lo, chunks);
        });
        Ok(())
    }

    /// As [`CpuDevice::for_chunks`] over two buffers of different element types and unit sizes
    /// cut at the same units: `f(first_unit, a_chunk, b_chunk)` with `a` in units of `unit_a`
    /// and `b` in units of `unit_b` (e.g. a group's values and its per-channel sums). Refuses
    /// buffers that do not hold the same whole number of units.
    pub fn for_paired_chunks<A, B, F>(
        &self,
        (unit_a, a): (usize, &mut [A]),
        (unit_b, b): (usize, &mut [B]),
        f: F,
    ) -> Result<()>
    where
        A: Send,
        B: Send,
        F: Fn(usize, &mut [A], &mut [B]) + Sync,
    {
        check_split(unit_a, a.len(), None)?;
        check_split(unit_b, b.len(), None)?;
        let units = a.len() / unit_a;
        if b.len() / unit_b != units {
            return Err(Error::InvalidInput(format!(
                "{units} units of {unit_a} values paired with {} units of {unit_b}",
                b.len() / unit_b
            )));
        }
        let tasks = self.tasks_for(units, a.len() < SERIAL_BELOW);
        if tasks == 1 {
            f(0, a, b);
            return Ok(());
        }
        let per = units.div_ceil(tasks);
        let (pa, pb) = (SendPtr(a.as_mut_ptr()), SendPtr(b.as_mut_ptr()));
        self.pool.run(tasks, &|i| {
            let (lo, hi) = ((i * per).min(units), ((i + 1) * per).min(units));
            // SAFETY: tasks cover disjoint unit ranges [lo, hi) of `a` and `b`, which outlive
            // `run`.
            let ca = unsafe {
                std::slice::from_raw_parts_mut(pa.get().add(lo * unit_a), (hi - lo) * unit_a)
            };
            let cb = unsafe {
                std::slice::from_raw_parts_mut(pb.get().add(lo * unit_b), (hi - lo) * unit_b)
            };
            f(lo, ca, cb);
        });
        Ok(())
    }

    /// Tasks for `units` units of work: one when `serial` or inside a pool task (nested use
    /// runs on the calling thread: waiting for the pool from one of its own tasks could never
    /// finish), else one per thread up to one per unit.
    fn tasks_for(&self, units: usize, serial: bool) -> usize {
        if serial || in_pool_task() {
            1
        } else {
            self.threads().min(units).max(1)
        }
    }

    /// Runs `f(0), …, f(tasks − 1)` in parallel (tasks are claimed in order; each must be
    /// independent). Called from inside a pool task, the tasks run in order on the calling thread.
    pub fn parallel_for<F: Fn(usize) + Sync>(&self, tasks: usize, f: F) {
        match tasks {
            0 => {}
            1 => f(0),
            _ if in_pool_task() => (0..tasks).for_each(f),
            _ => self.pool.run(tasks, &f),
        }
    }

    /// Computes `out[i] = f(i)` for every i, in parallel over contiguous ranges.
    pub fn map_indexed<T, F>(&self, out: &mut [T], f: F)
    where
        T: Send,
        F: Fn(usize) -> T + Sync,
    {
        // Unit 1 and no second buffer: nothing for `for_chunks` to refuse.
        let _ = self.for_chunks(1, out, None, |first, chunk, _| {
            chunk
                .iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = f(first + i));
        });
    }
}

fn check_split(unit: usize, a: usize, b: Option<usize>) -> Result<()> {
    if unit == 0 || !a.is_multiple_of(unit) {
        return Err(Error::InvalidInput(format!(
            "{a} values do not split into units of {unit}"
        )));
    }
    match b {
        Some(b) if b != a => Err(Error::InvalidInput(format!(
            "buffers of {a} and {b} values where equal lengths are needed"
        ))),
        _ => Ok(()),
    }
}

thread_local! {
    /// Set while this thread runs a task of some pool.
    static IN_POOL_TASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn in_pool_task() -> bool {
    IN_POOL_TASK.with(|c| c.get())
}

struct SendPtr<T>(*mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: only used to hand disjoint sub-slices to pool tasks while the owner waits in `run`.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// A task body with its lifetime erased; valid only while `Pool::run` waits.
#[derive(Clone, Copy)]
struct JobPtr(*const (dyn Fn(usize) + Sync));
// SAFETY: the pointee is `Sync` and outlives every use (see `Pool::run`).
unsafe impl Send for JobPtr {}

struct State {
    generation: u64,
    job: Option<JobPtr>,
    tasks: usize,
    next: usize,
    remaining: usize,
    panicked: Option<Box<dyn std::any::Any + Send>>,
    shutdown: bool,
    /// Workers asleep on `work` (the caller wakes them only when there are some).
    sleepers: usize,
    /// Whether the caller sleeps on `done` (the last task wakes it only then).
    caller_sleeps: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Mirror of `State::generation`, polled by idle workers before they sleep.
    generation: AtomicU64,
    /// Mirror of `State::remaining`, polled by the caller before it sleeps.
    remaining: AtomicUsize,
    work: Condvar,
    done: Condvar,
}

struct Pool {
    shared: Arc<Shared>,
    workers: Vec<thread::JoinHandle<()>>,
    /// Serialises concurrent `run` calls from different threads on one device.
    gate: Mutex<()>,
}

impl Pool {
    fn new(threads: usize) -> Arc<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                job: None,
                tasks: 0,
                next: 0,
                remaining: 0,
                panicked: None,
                shutdown: false,
                sleepers: 0,
                caller_sleeps: false,
            }),
            generation: AtomicU64::new(0),
            remaining: AtomicUsize::new(0),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let workers = (1..threads)
            .map(|_| {
                let s = shared.clone();
                thread::spawn(move || worker(&s))
            })
            .collect();
        Arc::new(Pool {
            shared,
            workers,
            gate: Mutex::new(()),
        })
    }

    /// Runs `f(0..tasks)` on the pool and the calling thread; returns when all have finished.
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: erases the lifetime of `f`; every task finishes before this function returns,
        // and the job is cleared under the lock before returning.
        let job: JobPtr = JobPtr(unsafe {
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        });
        let sleepers = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.generation += 1;
            st.job = Some(job);
            st.tasks = tasks;
            st.next = 0;
            st.remaining = tasks;
            self.shared.remaining.store(tasks, Ordering::Release);
            self.shared
                .generation
                .store(st.generation, Ordering::Release);
            st.sleepers
        };
        // Spinning workers see the new generation by themselves; a futex wake-up is a syscall.
        if sleepers > 0 {
            self.shared.work.notify_all();
        }
        take_tasks(&self.shared);
        // The other tasks of a small job end within microseconds: poll before sleeping, since a
        // sleeping caller's wake-up can cost more than the task (tens of µs on a VM).
        for _ in 0..SPINS {
            if self.shared.remaining.load(Ordering::Acquire) == 0 {
                break;
            }
            std::hint::spin_loop();
        }
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.remaining > 0 {
            st.caller_sleeps = true;
            st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.caller_sleeps = false;
        st.job = None;
        if let Some(p) = st.panicked.take() {
            drop(st);
            resume_unwind(p);
        }
    }
}

/// Claims and runs tasks of the current job until none is left.
fn take_tasks(shared: &Shared) {
    loop {
        let (job, i) = {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            match st.job {
                Some(job) if st.next < st.tasks => {
                    st.next += 1;
                    (job, st.next - 1)
                }
                _ => return,
            }
        };
        IN_POOL_TASK.with(|c| c.set(true));
        // SAFETY: the job stays alive until `remaining` reaches zero (see `Pool::run`).
        let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*job.0)(i) }));
        IN_POOL_TASK.with(|c| c.set(false));
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(p) = result {
            st.panicked.get_or_insert(p);
        }
        st.remaining -= 1;
        shared.remaining.store(st.remaining, Ordering::Release);
        if st.remaining == 0 && st.caller_sleeps {
            shared.done.notify_all();
        }
    }
}

/// Spins of an idle worker before it sleeps: MD updates come back-to-back, and a futex wake-up
/// costs as much as a small lattice's whole update.
const SPINS: u32 = 20_000;

fn worker(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        for _ in 0..SPINS {
            if shared.generation.load(Ordering::Acquire) != seen {
                break;
            }
            std::hint::spin_loop();
        }
        {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.generation == seen && !st.shutdown {
                st.sleepers += 1;
                st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
                st.sleepers -= 1;
            }
            if st.shutdown {
                return;
            }
            seen = st.generation;
        }
        take_tasks(shared);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown = true;
        self.shared.work.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
