//! NumPy `.npy` (format version 1.0) for little-endian f64 arrays in C order.

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Encodes `data` with `shape` as a `.npy` file.
pub fn encode(shape: &[usize], data: &[f64]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {tuple}, }}");
    // Pad so that magic + version + length + header is a multiple of 64, ending in '\n'.
    let total = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + 8 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Decodes a `.npy` file of little-endian f64 in C order: (shape, data).
pub fn decode(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f64>)> {
    let (shape, start, n) = header(bytes)?;
    if bytes.len() - start != n {
        return Err(bad("data length does not match the shape"));
    }
    Ok((shape, values(&bytes[start..])))
}

/// As [`decode`], reading the rows the header declares and ignoring bytes after them (as
/// `numpy.load` does): the state of an append-only file at its last checkpoint.
pub fn decode_prefix(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f64>)> {
    let (shape, start, n) = header(bytes)?;
    if bytes.len() - start < n {
        return Err(bad("data shorter than the shape"));
    }
    Ok((shape, values(&bytes[start..start + n])))
}

fn bad(r: &str) -> Error {
    Error::BadFile {
        path: "<npy>".into(),
        reason: r.into(),
    }
}

fn values(body: &[u8]) -> Vec<f64> {
    body.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// (shape, offset of the data, data bytes) of a little-endian f64 C-order array.
fn header(bytes: &[u8]) -> Result<(Vec<usize>, usize, usize)> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy file"));
    }
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(
        bytes
            .get(10..10 + hlen)
            .ok_or_else(|| bad("truncated header"))?,
    )
    .map_err(|_| bad("header is not text"))?;
    if !header.contains("'descr': '<f8'") || !header.contains("'fortran_order': False") {
        return Err(bad(
            "only little-endian f64 arrays in C order are supported",
        ));
    }
    let open = header.find("'shape': (").ok_or_else(|| bad("no shape"))? + 10;
    let close = open + header[open..].find(')').ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = header[open..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let n = super::element_count(&shape)
        .and_then(|n| n.checked_mul(8))
        .ok_or_else(|| bad("shape too large"))?;
    Ok((shape, 10 + hlen, n))
}
