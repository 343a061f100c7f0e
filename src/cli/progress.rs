//! Progress of long runs: indicatif's bar where stderr is a terminal; elsewhere (a log file, a
//! batch job, `nohup`) a plain line every tenth of the way or every minute, whichever comes
//! first, after the first five seconds, so a run in the background still says how far it is and
//! how long it will take.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use latticeml::error::{Error, Result};

/// How long a run goes before its first plain progress line.
const QUIET: Duration = Duration::from_secs(5);

/// Seconds between plain progress lines at most.
const PLAIN_EVERY: Duration = Duration::from_secs(60);

/// What the plain lines remember.
struct Plain {
    start: Instant,
    last: Instant,
    tenths: u64,
}

/// A progress display of `total` units.
pub struct Progress {
    bar: ProgressBar,
    unit: String,
    plain: Option<Mutex<Plain>>,
}

impl Progress {
    /// A display of `total` `unit`s (the total may be set later by [`Progress::set_length`]).
    pub fn new(total: u64, unit: &str) -> Result<Self> {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}"
            ))
            .map_err(|e| Error::InvalidInput(e.to_string()))?,
        );
        let plain = (!std::io::stderr().is_terminal()).then(|| {
            let now = Instant::now();
            Mutex::new(Plain {
                start: now,
                last: now,
                tenths: 0,
            })
        });
        Ok(Progress {
            bar,
            unit: unit.to_string(),
            plain,
        })
    }

    /// Shows nothing (a rank other than the first of an MPI job).
    #[cfg(feature = "mpi")]
    pub fn hide(&mut self) {
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::hidden());
        self.plain = None;
    }

    /// Sets the total.
    pub fn set_length(&self, total: u64) {
        self.bar.set_length(total);
    }

    /// Sets how many units are done.
    pub fn set_position(&self, done: u64) {
        self.bar.set_position(done);
        let Some(plain) = &self.plain else {
            return;
        };
        let Ok(mut p) = plain.lock() else {
            return;
        };
        let total = self.bar.length().unwrap_or(0);
        let tenths = (done * 10).checked_div(total).unwrap_or(0);
        let now = Instant::now();
        // Quick runs say nothing: the first line waits for QUIET.
        if done == 0 || now - p.start < QUIET || (tenths <= p.tenths && now - p.last < PLAIN_EVERY)
        {
            return;
        }
        p.tenths = tenths;
        p.last = now;
        eprintln!("{}", plain_line(done, total, &self.unit, now - p.start));
    }

    /// Removes the bar (the plain lines stay in the log).
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// "done/total unit (p %), s elapsed, eta s".
fn plain_line(done: u64, total: u64, unit: &str, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if total == 0 || done > total {
        return format!("latticeml: {done} {unit}, {secs:.0} s");
    }
    let eta = secs * (total - done) as f64 / done.max(1) as f64;
    format!(
        "latticeml: {done}/{total} {unit} ({:.0} %), {secs:.0} s, eta {eta:.0} s",
        100.0 * done as f64 / total as f64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_how_far_and_how_long() {
        let s = plain_line(250, 1000, "trajectories", Duration::from_secs(10));
        assert_eq!(s, "latticeml: 250/1000 trajectories (25 %), 10 s, eta 30 s");
        assert_eq!(
            plain_line(5, 0, "samples", Duration::from_secs(2)),
            "latticeml: 5 samples, 2 s"
        );
    }
}
