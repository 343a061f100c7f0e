//! Dense f64 linear algebra for inverse problems: one-sided Jacobi SVD (Hestenes; accurate for
//! the severely ill-conditioned kernels of spectral reconstruction), LU with partial pivoting,
//! and Cholesky.

// Dense matrix code reads best with explicit (i, j) indices.
#![allow(clippy::needless_range_loop)]

use crate::error::{Error, Result};

/// A row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Entries, row-major.
    pub data: Vec<f64>,
}

impl Matrix {
    /// A zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Entry (i, j).
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// Row i.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The transpose.
    pub fn t(&self) -> Matrix {
        let mut m = Matrix::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                m.data[j * self.rows + i] = self.at(i, j);
            }
        }
        m
    }

    /// self · x.
    pub fn mul_vec(&self, x: &[f64]) -> Vec<f64> {
        (0..self.rows).map(|i| dot(self.row(i), x)).collect()
    }

    /// selfᵀ · y.
    pub fn tmul_vec(&self, y: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.cols];
        for (i, &yi) in y.iter().enumerate() {
            for (o, &a) in out.iter_mut().zip(self.row(i)) {
                *o += a * yi;
            }
        }
        out
    }

    /// self · selfᵀ, by dot products of rows (both triangles from one). Row i meets four rows
    /// k at a time: four independent sums that keep the adder busy, each still the ascending sum
    /// [`dot`] forms, so the entries are its bits.
    pub fn gram(&self) -> Matrix {
        let n = self.rows;
        let mut g = Matrix::zeros(n, n);
        let mut set = |i: usize, k: usize, v: f64| {
            g.data[i * n + k] = v;
            g.data[k * n + i] = v;
        };
        for i in 0..n {
            let ri = self.row(i);
            let mut k = 0;
            while k + 4 <= i + 1 {
                let [r0, r1, r2, r3] = [k, k + 1, k + 2, k + 3].map(|r| self.row(r));
                // −0.0, the start of f64's `Sum`, as in `dot`.
                let mut s = [-0.0f64; 4];
                for ((((&x, &a), &b), &c), &d) in ri.iter().zip(r0).zip(r1).zip(r2).zip(r3) {
                    s[0] += x * a;
                    s[1] += x * b;
                    s[2] += x * c;
                    s[3] += x * d;
                }
                (0..4).for_each(|q| set(i, k + q, s[q]));
                k += 4;
            }
            for k in k..=i {
                set(i, k, dot(ri, self.row(k)));
            }
        }
        g
    }

    /// self · other.
    pub fn matmul(&self, other: &Matrix) -> Matrix {
        let mut m = Matrix::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.at(i, k);
                for (o, &b) in m.data[i * other.cols..(i + 1) * other.cols]
                    .iter_mut()
                    .zip(other.row(k))
                {
                    *o += a * b;
                }
            }
        }
        m
    }
}

/// Σ aᵢbᵢ.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Thin SVD A = U·diag(s)·Vᵀ with s descending; U is rows×r, V is cols×r, r = min(rows, cols).
#[derive(Clone, Debug)]
pub struct Svd {
    /// Left singular vectors as columns (rows × r).
    pub u: Matrix,
    /// Singular values, descending.
    pub s: Vec<f64>,
    /// Right singular vectors as columns (cols × r).
    pub v: Matrix,
}

/// One-sided Jacobi SVD.
pub fn svd(a: &Matrix) -> Svd {
    if a.rows < a.cols {
        let t = svd(&a.t());
        return Svd {
            u: t.v,
            s: t.s,
            v: t.u,
        };
    }
    // Work on the columns of A (m ≥ n), stored as rows of `b` for contiguous access.
    let (m, n) = (a.rows, a.cols);
    let mut b: Vec<Vec<f64>> = (0..n)
        .map(|j| (0..m).map(|i| a.at(i, j)).collect())
        .collect();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|j| (0..n).map(|i| (i == j) as u8 as f64).collect())
        .collect();
    for _sweep in 0..60 {
        let mut rotated = false;
        for i in 0..n {
            for j in i + 1..n {
                let (alpha, beta, gamma) =
                    (dot(&b[i], &b[i]), dot(&b[j], &b[j]), dot(&b[i], &b[j]));
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                rotate(&mut b, i, j, c, s);
                rotate(&mut v, i, j, c, s);
            }
        }
        if !rotated {
            break;
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    let norms: Vec<f64> = b.iter().map(|c| dot(c, c).sqrt()).collect();
    order.sort_by(|&x, &y| norms[y].total_cmp(&norms[x]));
    let mut u = Matrix::zeros(m, n);
    let mut vm = Matrix::zeros(n, n);
    let mut s = Vec::with_capacity(n);
    for (k, &j) in order.iter().enumerate() {
        s.push(norms[j]);
        for i in 0..m {
            u.data[i * n + k] = if norms[j] > 0.0 {
                b[j][i] / norms[j]
            } else {
                0.0
            };
        }
        for i in 0..n {
            vm.data[i * n + k] = v[j][i];
        }
    }
    Svd { u, s, v: vm }
}

fn rotate(cols: &mut [Vec<f64>], i: usize, j: usize, c: f64, s: f64) {
    let (lo, hi) = cols.split_at_mut(j);
    for (x, y) in lo[i].iter_mut().zip(hi[0].iter_mut()) {
        let (xi, yj) = (*x, *y);
        *x = c * xi - s * yj;
        *y = s * xi + c * yj;
    }
}

impl Svd {
    /// Uᵀ·y (coefficients of y in the left singular basis).
    pub fn ut(&self, y: &[f64]) -> Vec<f64> {
        self.u.tmul_vec(y)
    }

    /// Σ_k c_k v_k for coefficients c (length ≤ r).
    pub fn v_combine(&self, c: &[f64]) -> Vec<f64> {
        (0..self.v.rows)
            .map(|i| {
                c.iter()
                    .enumerate()
                    .map(|(k, ck)| ck * self.v.at(i, k))
                    .sum()
            })
            .collect()
    }
}

/// Solves A x = b by LU with partial pivoting (A square).
pub fn solve(a: &Matrix, b: &[f64]) -> Result<Vec<f64>> {
    let n = a.rows;
    let mut m = a.data.clone();
    let mut x = b.to_vec();
    for k in 0..n {
        let p = (k..n)
            .max_by(|&i, &j| m[i * n + k].abs().total_cmp(&m[j * n + k].abs()))
            .unwrap_or(k);
        if m[p * n + k] == 0.0 {
            return Err(Error::InvalidInput("singular matrix".into()));
        }
        if p != k {
            for j in 0..n {
                m.swap(k * n + j, p * n + j);
            }
            x.swap(k, p);
        }
        for i in k + 1..n {
            let f = m[i * n + k] / m[k * n + k];
            if f != 0.0 {
                for j in k..n {
                    m[i * n + j] -= f * m[k * n + j];
                }
                x[i] -= f * x[k];
            }
        }
    }
    for k in (0..n).rev() {
        let s: f64 = (k + 1..n).map(|j| m[k * n + j] * x[j]).sum();
        x[k] = (x[k] - s) / m[k * n + k];
    }
    Ok(x)
}

/// Cholesky factor L (lower) of a symmetric positive-definite matrix.
pub fn cholesky(a: &Matrix) -> Result<Matrix> {
    let n = a.rows;
    let mut l = Matrix::zeros(n, n);
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l.at(i, k) * l.at(j, k)).sum();
            if i == j {
                let d = a.at(i, i) - s;
                if d <= 0.0 || !d.is_finite() {
                    return Err(Error::InvalidInput(format!(
                        "covariance is not positive definite (pivot {i})"
                    )));
                }
                l.data[i * n + i] = d.sqrt();
            } else {
                l.data[i * n + j] = (a.at(i, j) - s) / l.at(j, j);
            }
        }
    }
    Ok(l)
}

/// Solves L x = b for lower-triangular L.
pub fn solve_lower(l: &Matrix, b: &[f64]) -> Vec<f64> {
    let mut x = b.to_vec();
    for i in 0..l.rows {
        let s: f64 = (0..i).map(|k| l.at(i, k) * x[k]).sum();
        x[i] = (x[i] - s) / l.at(i, i);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Gram matrix by row dots equals the product with the transpose.
    #[test]
    fn gram_is_the_product_with_the_transpose() {
        let a = Matrix {
            rows: 3,
            cols: 5,
            data: (0..15).map(|i| ((i * 7) % 11) as f64 - 4.5).collect(),
        };
        let g = a.gram();
        let p = a.matmul(&a.t());
        for (x, y) in g.data.iter().zip(&p.data) {
            assert!((x - y).abs() < 1e-12 * y.abs().max(1.0), "{x} vs {y}");
        }
    }

    /// The blocked Gram matrix is, bit for bit, the matrix of plain row dots, for row counts that
    /// leave every remainder of the blocks of four.
    #[test]
    fn blocked_gram_is_the_row_dots() {
        for rows in [1, 4, 7, 10] {
            let cols = 37;
            let a = Matrix {
                rows,
                cols,
                data: (0..rows * cols)
                    .map(|i| ((i * 7919) % 101) as f64 / 7.0 - 6.3)
                    .collect(),
            };
            let g = a.gram();
            for i in 0..rows {
                for k in 0..rows {
                    let want = dot(a.row(i), a.row(k));
                    assert_eq!(g.at(i, k).to_bits(), want.to_bits(), "({i}, {k}) of {rows}");
                }
            }
        }
    }
}
