//! Correlator data with errors (diagonal or a full covariance), validation and whitening.

use std::path::Path;

use super::linalg::{cholesky, solve_lower, Matrix};
use crate::error::{Error, Result};

/// Which variable a data file's first column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Momenta p (`p,value,error`): the Källén–Lehmann kernel.
    Momentum,
    /// Euclidean times τ (`tau,value,error`): the exponential and finite-temperature kernels.
    Time,
    /// Neither (not accepted by the reader).
    Unknown,
}

/// Measured data G(x_i) ± σ_i at points x_i (momenta p or times τ).
#[derive(Clone, Debug)]
pub struct Correlator {
    /// Data points p_i or τ_i.
    pub x: Vec<f64>,
    /// Values G_i.
    pub value: Vec<f64>,
    /// Errors σ_i (the square roots of the covariance's diagonal when one is given).
    pub error: Vec<f64>,
    /// Full covariance, when known.
    pub cov: Option<Matrix>,
}

impl Correlator {
    /// Checks lengths, finiteness, positive errors and, if given, the covariance.
    pub fn validate(&self) -> Result<()> {
        let n = self.x.len();
        if n == 0 || self.value.len() != n || self.error.len() != n {
            return Err(Error::InvalidInput(format!(
                "data columns have different lengths ({} points, {} values, {} errors)",
                n,
                self.value.len(),
                self.error.len()
            )));
        }
        for (i, ((&x, &v), &e)) in self.x.iter().zip(&self.value).zip(&self.error).enumerate() {
            if !(x.is_finite() && v.is_finite() && e.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "row {} holds a non-finite number",
                    i + 1
                )));
            }
            if e <= 0.0 {
                return Err(Error::InvalidInput(format!(
                    "row {}: error {e} must be positive",
                    i + 1
                )));
            }
        }
        if let Some(c) = &self.cov {
            if c.rows != n || c.cols != n {
                return Err(Error::InvalidInput(format!(
                    "covariance is {}x{} for {n} data points",
                    c.rows, c.cols
                )));
            }
            cholesky(c)?;
        }
        Ok(())
    }

    /// Whitened kernel and data: L⁻¹A and L⁻¹G with C = LLᵀ (or rows divided by σ), so that
    /// χ² = ‖A_w ρ − g_w‖².
    pub fn whiten(&self, a: &Matrix) -> Result<(Matrix, Vec<f64>)> {
        let mut aw = Matrix::zeros(a.rows, a.cols);
        for j in 0..a.cols {
            let col: Vec<f64> = (0..a.rows).map(|i| a.at(i, j)).collect();
            for (i, v) in self.whiten_values(&col)?.into_iter().enumerate() {
                aw.data[i * a.cols + j] = v;
            }
        }
        Ok((aw, self.whiten_values(&self.value)?))
    }

    /// L⁻¹v with C = LLᵀ (or v/σ): a data vector in units of this correlator's errors, e.g. one
    /// bootstrap sample measured with the same covariance.
    pub fn whiten_values(&self, v: &[f64]) -> Result<Vec<f64>> {
        if v.len() != self.x.len() {
            return Err(Error::InvalidInput(format!(
                "{} values for {} data points",
                v.len(),
                self.x.len()
            )));
        }
        match &self.cov {
            None => Ok(v.iter().zip(&self.error).map(|(x, s)| x / s).collect()),
            Some(c) => Ok(solve_lower(&cholesky(c)?, v)),
        }
    }

    /// Reads a CSV of numbers without header, one data vector per row (e.g. bootstrap samples),
    /// each with as many values as this correlator has points.
    pub fn read_samples(&self, path: &Path) -> Result<Vec<Vec<f64>>> {
        let bad = |r: String| Error::BadFile {
            path: path.display().to_string(),
            reason: r,
        };
        let text =
            String::from_utf8(crate::io::read(path)?).map_err(|_| bad("not UTF-8 text".into()))?;
        let rows: Vec<Vec<f64>> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                let row: Vec<f64> = l
                    .split(',')
                    .map(|f| {
                        f.trim().parse::<f64>().map_err(|_| {
                            bad(format!("line {}: '{}' is not a number", i + 1, f.trim()))
                        })
                    })
                    .collect::<Result<_>>()?;
                if row.len() != self.x.len() {
                    return Err(bad(format!(
                        "line {}: {} values for {} data points",
                        i + 1,
                        row.len(),
                        self.x.len()
                    )));
                }
                if let Some(k) = row.iter().position(|v| !v.is_finite()) {
                    return Err(bad(format!(
                        "line {}: value {} is {}: samples must be finite numbers",
                        i + 1,
                        k + 1,
                        row[k]
                    )));
                }
                Ok(row)
            })
            .collect::<Result<_>>()?;
        if rows.is_empty() {
            return Err(bad("no samples".into()));
        }
        Ok(rows)
    }

    /// Reads a CSV with header `p,value,error` or `tau,value,error`.
    pub fn read_csv(path: &Path) -> Result<Self> {
        Self::read_csv_axis(path).map(|(c, _)| c)
    }

    /// As [`Correlator::read_csv`], also saying which axis the header names, so that the caller
    /// can choose (or check) the kernel family: momenta for Källén–Lehmann, times for the others.
    pub fn read_csv_axis(path: &Path) -> Result<(Self, Axis)> {
        let text = String::from_utf8(crate::io::read(path)?).map_err(|_| Error::BadFile {
            path: path.display().to_string(),
            reason: "not UTF-8 text".into(),
        })?;
        let bad = |r: String| Error::BadFile {
            path: path.display().to_string(),
            reason: r,
        };
        // Spreadsheets write a byte-order mark; line numbers count every line, blank ones too.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| bad("empty file".into()))?
            .1
            .split(',')
            .map(|h| h.trim().to_lowercase())
            .collect();
        let axis = match header.first().map(String::as_str) {
            Some("p") => Axis::Momentum,
            Some("tau") => Axis::Time,
            _ => Axis::Unknown,
        };
        if header.len() != 3
            || axis == Axis::Unknown
            || header[1] != "value"
            || header[2] != "error"
        {
            return Err(bad(format!(
                "header must be p,value,error or tau,value,error; found {}",
                header.join(",")
            )));
        }
        let (mut x, mut value, mut error) = (Vec::new(), Vec::new(), Vec::new());
        for (n, line) in lines {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 3 {
                return Err(bad(format!(
                    "line {n}: expected 3 columns, found {}",
                    f.len()
                )));
            }
            let num = |s: &str| {
                s.parse::<f64>()
                    .map_err(|_| bad(format!("line {n}: '{s}' is not a number")))
            };
            x.push(num(f[0])?);
            value.push(num(f[1])?);
            error.push(num(f[2])?);
        }
        if x.is_empty() {
            return Err(bad(format!(
                "no data below the header {}: give one line per point",
                header.join(",")
            )));
        }
        let c = Correlator {
            x,
            value,
            error,
            cov: None,
        };
        c.validate()?;
        Ok((c, axis))
    }

    /// Reads an n×n covariance from a CSV of numbers (no header) and attaches it.
    pub fn with_cov_csv(mut self, path: &Path) -> Result<Self> {
        let text = String::from_utf8(crate::io::read(path)?).map_err(|_| Error::BadFile {
            path: path.display().to_string(),
            reason: "not UTF-8 text".into(),
        })?;
        let rows: Vec<Vec<f64>> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split(',')
                    .map(|s| s.trim().parse::<f64>())
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::BadFile {
                path: path.display().to_string(),
                reason: "covariance must be a CSV of numbers".into(),
            })?;
        let n = rows.len();
        let bad = |reason: String| Error::BadFile {
            path: path.display().to_string(),
            reason,
        };
        if let Some(r) = rows.iter().position(|r| r.len() != n) {
            return Err(bad(format!(
                "covariance must be square: {n} rows, but row {} has {} entries",
                r + 1,
                rows[r].len()
            )));
        }
        if n != self.x.len() {
            return Err(bad(format!(
                "a {n}×{n} covariance for {} data points",
                self.x.len()
            )));
        }
        for (i, row) in rows.iter().enumerate() {
            for (j, &a) in row.iter().enumerate().take(i) {
                let b = rows[j][i];
                if (a - b).abs() > 1e-10 * a.abs().max(b.abs()) || !a.is_finite() {
                    return Err(bad(format!(
                        "covariance is not symmetric: entry ({}, {}) is {a} but ({}, {}) is {b}",
                        i + 1,
                        j + 1,
                        j + 1,
                        i + 1
                    )));
                }
            }
        }
        let cov = Matrix {
            rows: n,
            cols: n,
            data: rows.concat(),
        };
        self.error = (0..n).map(|i| cov.at(i, i).max(0.0).sqrt()).collect();
        self.cov = Some(cov);
        self.validate()?;
        Ok(self)
    }
}
