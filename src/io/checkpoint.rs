//! A checksummed binary container for checkpoints: a text header (the run's configuration, one
//! `key=value` per line) and named f64 arrays, stored bit-exactly.
//!
//! Layout: `LMLCKPT1`, u64 header length, header, u64 array count, then per array u64 name
//! length, name, u64 element count, elements (f64 LE); finally the FNV-1a 64 checksum of all
//! preceding bytes.

use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"LMLCKPT1";

/// A checkpoint's content.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// `key=value` lines describing the run.
    pub header: String,
    /// Named arrays.
    pub arrays: Vec<(String, Vec<f64>)>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Checkpoint {
    /// Serialises the checkpoint.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.header.len() as u64).to_le_bytes());
        out.extend_from_slice(self.header.as_bytes());
        out.extend_from_slice(&(self.arrays.len() as u64).to_le_bytes());
        for (name, data) in &self.arrays {
            out.extend_from_slice(&(name.len() as u64).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(data.len() as u64).to_le_bytes());
            out.extend_from_slice(bytemuck::cast_slice::<f64, u8>(data));
        }
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses a checkpoint, checking magic, lengths and checksum; `path` is only for messages.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |reason: &str| Error::BadFile {
            path: path.display().to_string(),
            reason: reason.into(),
        };
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a latticeml checkpoint"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if fnv1a(body) != u64::from_le_bytes(sum.try_into().map_err(|_| bad("truncated"))?) {
            return Err(bad("checksum mismatch: the file is truncated or corrupt"));
        }
        let mut r = Reader { b: body, at: 8 };
        let hlen = r.len(usize::MAX).ok_or_else(|| bad("truncated header"))?;
        let header = String::from_utf8(
            r.take(hlen)
                .ok_or_else(|| bad("truncated header"))?
                .to_vec(),
        )
        .map_err(|_| bad("header is not text"))?;
        let n = r.len(1 << 20).ok_or_else(|| bad("bad array count"))?;
        let mut arrays = Vec::with_capacity(n);
        for _ in 0..n {
            let nl = r.len(1 << 10).ok_or_else(|| bad("bad array name"))?;
            let name = String::from_utf8(r.take(nl).ok_or_else(|| bad("truncated"))?.to_vec())
                .map_err(|_| bad("bad name"))?;
            let count = r
                .len(usize::MAX / 8)
                .ok_or_else(|| bad("bad array length"))?;
            let raw = r.take(count * 8).ok_or_else(|| bad("truncated array"))?;
            arrays.push((
                name,
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ));
        }
        Ok(Checkpoint { header, arrays })
    }

    /// The array called `name`.
    pub fn array(&self, name: &str) -> Option<&[f64]> {
        self.arrays
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn len(&mut self, max: usize) -> Option<usize> {
        let v = u64::from_le_bytes(self.take(8)?.try_into().ok()?);
        usize::try_from(v).ok().filter(|&v| v <= max)
    }
}
