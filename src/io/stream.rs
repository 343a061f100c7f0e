//! Append-only result files for long runs: memory and I/O per measurement stay constant however
//! long the run. Rows are appended as they are produced; [`Appender::sync`] (at each checkpoint)
//! flushes, updates the `.npy` header's row count in place and returns the file's length, which
//! the checkpoint stores. A resumed run truncates each file to that length, so it continues
//! bit-identically whatever was appended after the checkpoint; `numpy.load` reads the rows
//! declared at the last checkpoint (it ignores bytes beyond them).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::io_err;
use crate::error::{Error, Result};

/// Bytes reserved for a `.npy` header (magic, version, length, dict, padding): room for any row
/// count, so the header can be rewritten in place.
const NPY_HEADER: usize = 128;

/// The kind of file an [`Appender`] writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Text lines under a header line.
    Csv {
        /// The header line (without newline).
        header: String,
    },
    /// A little-endian f64 `.npy` array `[rows, inner…]`.
    Npy {
        /// The shape of one row.
        inner: Vec<usize>,
    },
}

/// One append-only file.
pub struct Appender {
    path: PathBuf,
    format: Format,
    out: BufWriter<File>,
    rows: u64,
}

fn npy_header(rows: u64, inner: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = std::iter::once(rows.to_string())
        .chain(inner.iter().map(|d| d.to_string()))
        .collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {tuple}, }}");
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    let len = NPY_HEADER - 10;
    h.extend_from_slice(&(len as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(NPY_HEADER - 1, b' ');
    h.push(b'\n');
    h
}

/// The header of a file of `format` holding `rows` rows.
fn header_bytes(format: &Format, rows: u64) -> Vec<u8> {
    match format {
        Format::Csv { header } => format!("{header}\n").into_bytes(),
        Format::Npy { inner } => npy_header(rows, inner),
    }
}

impl Appender {
    /// Creates (or empties) `path` and writes its header.
    pub fn create(path: &Path, format: Format) -> Result<Appender> {
        let f = File::create(path).map_err(|e| io_err(path, e))?;
        let mut a = Appender {
            path: path.to_path_buf(),
            format,
            out: BufWriter::new(f),
            rows: 0,
        };
        let head = header_bytes(&a.format, 0);
        a.out.write_all(&head).map_err(|e| io_err(path, e))?;
        Ok(a)
    }

    /// Reopens `path` at a checkpoint: `rows` rows in `len` bytes. Anything after `len` (written
    /// after the checkpoint) is cut off; a shorter file, or one whose header is not this
    /// format's, is an error: the run's history is lost.
    pub fn resume(path: &Path, format: Format, rows: u64, len: u64) -> Result<Appender> {
        let lost = |why: &str| Error::BadFile {
            path: path.display().to_string(),
            reason: format!(
                "{why}: the run's history since its start is lost; start again with --force"
            ),
        };
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|_| lost("missing"))?;
        let have = f.metadata().map_err(|e| io_err(path, e))?.len();
        if have < len {
            return Err(lost(&format!(
                "{have} bytes where the checkpoint recorded {len}"
            )));
        }
        let head = header_bytes(&format, rows);
        let mut found = vec![0u8; head.len().min(len as usize)];
        std::io::Read::read_exact(&mut f, &mut found).map_err(|e| io_err(path, e))?;
        let same_kind = match &format {
            Format::Csv { .. } => found == head,
            Format::Npy { .. } => found.len() == NPY_HEADER && found.starts_with(b"\x93NUMPY"),
        };
        if !same_kind {
            return Err(lost("its header is not the one this run writes"));
        }
        f.set_len(len).map_err(|e| io_err(path, e))?;
        f.seek(SeekFrom::End(0)).map_err(|e| io_err(path, e))?;
        let mut a = Appender {
            path: path.to_path_buf(),
            format,
            out: BufWriter::new(f),
            rows,
        };
        a.sync()?;
        Ok(a)
    }

    /// Appends one CSV line (without newline).
    pub fn line(&mut self, text: &str) -> Result<()> {
        self.out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(|e| io_err(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    /// Appends rows of a `.npy` file (`values` holds whole rows).
    pub fn values(&mut self, values: &[f64]) -> Result<()> {
        let Format::Npy { inner } = &self.format else {
            return Err(Error::InvalidInput("values appended to a CSV".into()));
        };
        let per: usize = inner.iter().product::<usize>().max(1);
        if !values.len().is_multiple_of(per) {
            return Err(Error::InvalidInput(format!(
                "{} values are not whole rows of {per}",
                values.len()
            )));
        }
        for v in values {
            self.out
                .write_all(&v.to_le_bytes())
                .map_err(|e| io_err(&self.path, e))?;
        }
        self.rows += (values.len() / per) as u64;
        Ok(())
    }

    /// Rows written (header excluded).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes, records the row count in a `.npy` header, syncs to disk, and returns the length.
    pub fn sync(&mut self) -> Result<u64> {
        let path = self.path.clone();
        let err = |e| io_err(&path, e);
        self.out.flush().map_err(err)?;
        if let Format::Npy { inner } = &self.format {
            let head = npy_header(self.rows, inner);
            let f = self.out.get_mut();
            let end = f.stream_position().map_err(err)?;
            f.seek(SeekFrom::Start(0)).map_err(err)?;
            f.write_all(&head).map_err(err)?;
            f.seek(SeekFrom::Start(end)).map_err(err)?;
        }
        let f = self.out.get_mut();
        f.sync_data().map_err(err)?;
        f.stream_position().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_stays_readable_and_resumes_at_the_checkpoint() {
        let dir = std::env::temp_dir().join(format!("lml-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let fmt = Format::Npy { inner: vec![2, 3] };
        let mut a = Appender::create(&p, fmt.clone()).unwrap();
        a.values(&[1.0; 6]).unwrap();
        let len = a.sync().unwrap();
        a.values(&[2.0; 12]).unwrap();
        a.sync().unwrap();
        let (shape, data) = crate::io::npy::decode(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!((shape, data.len()), (vec![3, 2, 3], 18));
        // Resume at the first checkpoint: the later rows are cut off.
        let mut b = Appender::resume(&p, fmt.clone(), 1, len).unwrap();
        b.values(&[3.0; 6]).unwrap();
        b.sync().unwrap();
        let (shape, data) = crate::io::npy::decode(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(shape, vec![2, 2, 3]);
        assert_eq!(&data[6..], &[3.0; 6]);
        assert!(Appender::resume(&p, fmt, 9, 1 << 20).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
