//! Model files in the safetensors format (an 8-byte little-endian header length, a JSON header
//! `{name: {"dtype", "shape", "data_offsets": [begin, end]}}`, then the raw little-endian data),
//! so weights open directly in Python (`safetensors.numpy.load_file`).

use std::path::Path;

use super::params::ParamStore;
use super::tensor::{Ctx, Real};
use crate::error::{Error, Result};
use crate::io::json::Json;
use crate::io::{read, write_atomic};

/// Writes every parameter of `store` to `path` (atomically), in name order.
pub fn save<T: Real>(store: &ParamStore<T>, path: &Path) -> Result<()> {
    let mut header = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in store.iter() {
        let bytes = bytemuck::cast_slice::<T, u8>(&t.to_vec()?).to_vec();
        let shape = Json::Arr(t.shape().iter().map(|&d| Json::Num(d as f64)).collect());
        let offsets = Json::Arr(vec![
            Json::Num(data.len() as f64),
            Json::Num((data.len() + bytes.len()) as f64),
        ]);
        header.push((
            name.clone(),
            Json::obj([
                ("dtype", Json::Str(T::SAFETENSORS.into())),
                ("shape", shape),
                ("data_offsets", offsets),
            ]),
        ));
        data.extend_from_slice(&bytes);
    }
    header.push((
        "__metadata__".into(),
        Json::obj([("format", Json::Str("latticeml".into()))]),
    ));
    let mut text = Json::Obj(header).pretty().replace('\n', "");
    // Pad the header with spaces to a multiple of 8 bytes, as the reference writer does.
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&data);
    write_atomic(path, &out)
}

/// Reads a safetensors file into a new store on `ctx`; every tensor must have dtype `T`.
pub fn load<T: Real>(ctx: &Ctx<T>, path: &Path) -> Result<ParamStore<T>> {
    let bytes = read(path)?;
    let bad = |reason: String| Error::BadFile {
        path: path.display().to_string(),
        reason,
    };
    let hlen = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .ok_or_else(|| bad("shorter than 8 bytes".into()))?;
    let hlen = usize::try_from(hlen)
        .ok()
        .filter(|&h| h <= bytes.len() - 8)
        .ok_or_else(|| bad("header length exceeds the file: truncated?".into()))?;
    let text =
        std::str::from_utf8(&bytes[8..8 + hlen]).map_err(|_| bad("header is not UTF-8".into()))?;
    let header = Json::parse(text).map_err(|e| bad(e.to_string()))?;
    let data = &bytes[8 + hlen..];
    let Json::Obj(items) = header else {
        return Err(bad("header is not an object".into()));
    };
    let mut store = ParamStore::new(ctx);
    for (name, entry) in items.iter().filter(|(k, _)| k != "__metadata__") {
        let dtype = match entry.get("dtype") {
            Some(Json::Str(s)) => s.as_str(),
            _ => return Err(bad(format!("'{name}' has no dtype"))),
        };
        if dtype != T::SAFETENSORS {
            return Err(bad(format!(
                "'{name}' is {dtype}, expected {}",
                T::SAFETENSORS
            )));
        }
        let nums = |key: &str| -> Result<Vec<usize>> {
            match entry.get(key) {
                Some(Json::Arr(v)) => v
                    .iter()
                    .map(|x| match x {
                        Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 => Ok(*n as usize),
                        _ => Err(bad(format!("'{name}': bad {key}"))),
                    })
                    .collect(),
                _ => Err(bad(format!("'{name}': missing {key}"))),
            }
        };
        let (shape, off) = (nums("shape")?, nums("data_offsets")?);
        let elem = std::mem::size_of::<T>();
        let n = crate::io::element_count(&shape).and_then(|n| n.checked_mul(elem));
        if off.len() != 2 || off[1] < off[0] || off[1] > data.len() || Some(off[1] - off[0]) != n {
            return Err(bad(format!("'{name}': data offsets {off:?} do not fit shape {shape:?} and the file (truncated?)")));
        }
        let values: Vec<T> = data[off[0]..off[1]]
            .chunks_exact(elem)
            .map(bytemuck::pod_read_unaligned)
            .collect();
        store.insert(name, ctx.from_vec(&shape, &values)?);
    }
    Ok(store)
}
