//! Output directories have an owner. A command *claims* its `--out` directory before computing
//! anything: it takes an exclusive lock (`.latticeml.lock`, held until the command ends, naming the
//! holder for anyone else who tries), removes temporary files a killed run left behind, and checks
//! the manifest (`manifest.json`: command, version, parameters, the files it writes):
//!
//! - a fresh run needs an empty (or new) directory;
//! - `--resume` needs a manifest of the same command and parameters;
//! - `--force` first deletes the files the old manifest lists, then starts afresh.
//!
//! So a second command never overwrites a first one's results silently, and two processes never
//! write into one directory at once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::json::Json;
use super::{io_err, write_atomic};
use crate::error::{Error, Result};

/// The lock file in every claimed directory.
pub const LOCK: &str = ".latticeml.lock";
/// The manifest in every claimed directory.
pub const MANIFEST: &str = "manifest.json";

/// How a command means to use a directory that may hold results already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A new run: the directory must be empty.
    Fresh,
    /// Continue the run whose results are there (same command and parameters).
    Resume,
    /// Replace whatever run is there.
    Force,
}

/// What a command writes and with which parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The command, e.g. `hmc` or `spectral`.
    pub command: String,
    /// `key=value` lines fixing the run (for `--resume`, everything that must not change).
    pub parameters: String,
    /// Files (and, ending in `/`, directories) the command writes, relative to the directory.
    pub files: Vec<String>,
}

impl Manifest {
    fn to_json(&self) -> Json {
        Json::obj([
            ("command", Json::Str(self.command.clone())),
            ("version", Json::Str(env!("CARGO_PKG_VERSION").into())),
            ("parameters", Json::Str(self.parameters.clone())),
            (
                "files",
                Json::Arr(self.files.iter().map(|f| Json::Str(f.clone())).collect()),
            ),
        ])
    }

    fn parse(text: &str, path: &Path) -> Result<Manifest> {
        let bad = |reason: &str| Error::BadFile {
            path: path.display().to_string(),
            reason: reason.into(),
        };
        let j = Json::parse(text).map_err(|e| bad(&e.to_string()))?;
        let s = |k: &str| match j.get(k) {
            Some(Json::Str(v)) => Ok(v.clone()),
            _ => Err(bad(&format!("no '{k}'"))),
        };
        let files = match j.get("files") {
            Some(Json::Arr(v)) => v
                .iter()
                .map(|f| match f {
                    Json::Str(f) => Ok(f.clone()),
                    _ => Err(bad("'files' holds a non-string")),
                })
                .collect::<Result<_>>()?,
            _ => return Err(bad("no 'files'")),
        };
        Ok(Manifest {
            command: s("command")?,
            parameters: s("parameters")?,
            files,
        })
    }
}

/// A claimed output directory; the lock is released when this is dropped.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
    _lock: File,
}

impl OutputDir {
    /// Claims `path` for `manifest.command` (see the module documentation).
    pub fn claim(path: &Path, manifest: &Manifest, claim: Claim) -> Result<OutputDir> {
        if path.exists() && !path.is_dir() {
            return Err(Error::InvalidInput(format!(
                "--out {} is a file; give a directory",
                path.display()
            )));
        }
        std::fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
        let lock = take_lock(path, &manifest.command)?;
        remove_temporaries(path)?;
        let old = read_manifest(path)?;
        match claim {
            Claim::Fresh => refuse_if_occupied(path, old.as_ref())?,
            Claim::Resume => check_resumable(path, old.as_ref(), manifest)?,
            Claim::Force => {
                if let Some(old) = &old {
                    remove_listed(path, old)?;
                }
                refuse_if_occupied(path, None)?;
            }
        }
        if claim != Claim::Resume {
            write_atomic(&path.join(MANIFEST), manifest.to_json().pretty().as_bytes())?;
        }
        Ok(OutputDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the exclusive lock and records the holder in the lock file.
fn take_lock(dir: &Path, command: &str) -> Result<File> {
    let path = dir.join(LOCK);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            Error::InvalidInput(format!(
                "cannot write into {} ({e}): choose a writable --out",
                dir.display()
            ))
        })?;
    if let Err(e) = f.try_lock() {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        return Err(Error::InvalidInput(match e {
            std::fs::TryLockError::WouldBlock => format!(
                "{} is in use by {}; wait for it to finish or choose another --out",
                dir.display(),
                if holder.trim().is_empty() {
                    "another process"
                } else {
                    holder.trim()
                }
            ),
            std::fs::TryLockError::Error(e) => {
                format!("cannot lock {}: {e}", path.display())
            }
        }));
    }
    let who = format!("latticeml {command} (pid {})\n", std::process::id());
    f.set_len(0)
        .and_then(|_| f.seek(SeekFrom::Start(0)))
        .and_then(|_| f.write_all(who.as_bytes()))
        .map_err(|e| io_err(&path, e))?;
    Ok(f)
}

/// Removes `.NAME.PID.tmp` files that an interrupted atomic write left behind.
fn remove_temporaries(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            std::fs::remove_file(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
        }
    }
    Ok(())
}

fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
    Manifest::parse(&text, &path).map(Some)
}

fn refuse_if_occupied(dir: &Path, old: Option<&Manifest>) -> Result<()> {
    let others: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != LOCK)
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    let what = match old {
        Some(m) => format!("results of `latticeml {}`", m.command),
        None => format!("other files ({})", others.join(", ")),
    };
    Err(Error::InvalidInput(format!(
        "{} holds {what}: replace it with --force or choose another --out (commands that take \
         --resume continue such a run with it)",
        dir.display()
    )))
}

fn check_resumable(dir: &Path, old: Option<&Manifest>, new: &Manifest) -> Result<()> {
    let Some(old) = old else {
        return Err(Error::InvalidInput(format!(
            "nothing to resume in {}: it has no {MANIFEST}; run without --resume",
            dir.display()
        )));
    };
    if old.command != new.command {
        return Err(Error::InvalidInput(format!(
            "{} holds results of `latticeml {}`, not of `latticeml {}`; choose another --out",
            dir.display(),
            old.command,
            new.command
        )));
    }
    if old.parameters != new.parameters {
        return Err(Error::InvalidInput(format!(
            "{} holds a different run ({}); resume with the same parameters, or use --force or another --out",
            dir.display(),
            parameter_diff(&new.parameters, &old.parameters)
        )));
    }
    Ok(())
}

/// Names every parameter that differs between two `key=value` descriptions of a run, by key (a
/// parameter present in one only is named too), e.g. `kappa: the run has 0.21, the command 0.2`.
pub fn parameter_diff(command: &str, run: &str) -> String {
    let pairs = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (cmd, old) = (pairs(command), pairs(run));
    let get = |list: &[(String, String)], k: &str| {
        list.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let mut keys: Vec<&String> = cmd.iter().map(|(k, _)| k).collect();
    keys.extend(
        old.iter()
            .map(|(k, _)| k)
            .filter(|k| get(&cmd, k).is_none()),
    );
    let diffs: Vec<String> = keys
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (get(&cmd, k), get(&old, k));
            (a != b).then(|| {
                let show = |v: Option<String>| v.unwrap_or_else(|| "none".into());
                format!("{k}: the run has {}, the command {}", show(b), show(a))
            })
        })
        .collect();
    if diffs.is_empty() {
        "different parameters".into()
    } else {
        diffs.join("; ")
    }
}

/// Deletes what the manifest says its command wrote (and the manifest), nothing else.
fn remove_listed(dir: &Path, m: &Manifest) -> Result<()> {
    for f in &m.files {
        let name = f.trim_end_matches('/');
        // Only plain names inside the directory: a hostile manifest cannot reach outside.
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." || name == "." {
            continue;
        }
        let p = dir.join(name);
        let r = if f.ends_with('/') {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p, e)),
            _ => {}
        }
    }
    let p = dir.join(MANIFEST);
    std::fs::remove_file(&p).map_err(|e| io_err(&p, e))
}
