//! The logged training loop every learned sampler shares: steps until a total, a row of
//! `train.csv` (the interval's mean statistics and the seconds of training so far) and a
//! checkpoint every so many steps, so that a resume continues bit-identically.

use std::time::Instant;

use crate::error::{Error, Result};

/// A model in training, as [`drive`] sees it.
pub trait Training {
    /// What one step measured.
    type Stats: Copy;
    /// Steps done.
    fn steps(&self) -> u64;
    /// One training step.
    fn step(&mut self) -> Result<Self::Stats>;
    /// The mean of an interval's statistics (its last step's step count).
    fn mean(interval: &[Self::Stats]) -> Self::Stats;
    /// The `train.csv` row of `stats`, without the seconds column.
    fn row(stats: &Self::Stats) -> String;
    /// Writes the model, the optimiser and `log` (train.csv) so that training can resume here.
    fn checkpoint(&self, log: &str) -> Result<()>;
}

/// What [`drive`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Driven<S> {
    /// The last logged interval's mean statistics.
    pub last: S,
    /// Steps per second of this invocation.
    pub steps_per_second: f64,
}

/// Trains `t` up to `total` steps, logging (and checkpointing) every `log_every` steps and at the
/// end into `log`, with the seconds column (continuing from `before` seconds) when `timed`;
/// `progress(done, total)` after every step. A model already at `total` is an error naming the
/// flag to raise.
pub fn drive<T: Training>(
    t: &mut T,
    (total, log_every): (u64, u64),
    log: &mut String,
    (before, timed): (f64, bool),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Driven<T::Stats>> {
    if total == 0 || log_every == 0 {
        return Err(Error::InvalidInput(
            "--steps and --log-every must be at least 1".into(),
        ));
    }
    let (first, start) = (t.steps(), Instant::now());
    let mut interval = Vec::new();
    let mut last = None;
    while t.steps() < total {
        interval.push(t.step()?);
        progress(t.steps(), total);
        if t.steps().is_multiple_of(log_every) || t.steps() == total {
            let mean = T::mean(&interval);
            log.push_str(&T::row(&mean));
            if timed {
                log.push_str(&format!(",{:.3}", before + start.elapsed().as_secs_f64()));
            }
            log.push('\n');
            interval.clear();
            t.checkpoint(log)?;
            last = Some(mean);
        }
    }
    let last = last.ok_or_else(|| {
        Error::InvalidInput(format!(
            "the model has {} steps already; raise --steps to train further",
            t.steps()
        ))
    })?;
    let rate = (t.steps() - first) as f64 / start.elapsed().as_secs_f64().max(1e-9);
    Ok(Driven {
        last,
        steps_per_second: rate,
    })
}
