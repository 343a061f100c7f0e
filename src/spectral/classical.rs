//! Classical reconstructions on the whitened problem χ² = ‖A_w ρ − g_w‖²: Tikhonov, TSVD and the
//! maximum entropy method (Bryan's algorithm).

// Dense matrix code reads best with explicit (i, j) indices.
#![allow(clippy::needless_range_loop)]

use super::linalg::{dot, solve, svd, Matrix, Svd};
use crate::error::{Error, Result};

/// How Tikhonov's α is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlphaRule {
    /// Generalised cross-validation (Golub, Heath, Wahba 1979).
    Gcv,
    /// Corner of the L-curve, by maximum curvature (Hansen 1992).
    LCurve,
}

/// How MEM's α is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemAlpha {
    /// The classic criterion −2αS = Σₖ λₖ/(α + λₖ) (Gull 1989).
    Classic,
    /// Bryan's average of ρ_α over the posterior P(α|G) (Bryan, Eur. Biophys. J. 18 (1990) 165).
    Bryan,
}

/// A linear-method solution: ρ, its standard deviation under the data's Gaussian noise, the
/// regularisation parameter chosen, and its name.
pub struct Solution {
    /// ρ on the grid.
    pub rho: Vec<f64>,
    /// One standard deviation of ρ (for the band), when the method provides one.
    pub sigma: Option<Vec<f64>>,
    /// (name, value) of the chosen regularisation.
    pub choice: (&'static str, f64),
}

/// Squared residual of the component of g outside the range of A.
fn outside(g: &[f64], c: &[f64]) -> f64 {
    (dot(g, g) - dot(c, c)).max(0.0)
}

/// Filtered SVD solution ρ = Σₖ fₖ cₖ/sₖ vₖ and σ_j = √(Σₖ fₖ² v_jk²/sₖ²).
fn filtered(svd: &Svd, c: &[f64], f: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let coef: Vec<f64> = (0..f.len())
        .map(|k| {
            if svd.s[k] > 0.0 {
                f[k] * c[k] / svd.s[k]
            } else {
                0.0
            }
        })
        .collect();
    let rho = svd.v_combine(&coef);
    let sigma = (0..svd.v.rows)
        .map(|j| {
            (0..f.len())
                .filter(|&k| svd.s[k] > 0.0)
                .map(|k| (f[k] * svd.v.at(j, k) / svd.s[k]).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    (rho, sigma)
}

/// Tikhonov: argmin ‖A_w ρ − g_w‖² + α‖ρ‖², with α by `rule`.
pub fn tikhonov(aw: &Matrix, gw: &[f64], rule: AlphaRule) -> Result<Solution> {
    tikhonov_svd(&svd(aw), gw, rule)
}

/// [`tikhonov`] with the SVD of A_w given (shared by many data vectors).
pub fn tikhonov_svd(d: &Svd, gw: &[f64], rule: AlphaRule) -> Result<Solution> {
    let c = d.ut(gw);
    let out = outside(gw, &c);
    let smax = d.s[0];
    if smax <= 0.0 {
        return Err(Error::InvalidInput("the kernel matrix is zero".into()));
    }
    let n = gw.len() as f64;
    let alphas: Vec<f64> = (0..400)
        .map(|i| smax * smax * 10f64.powf(-20.0 + 20.0 * i as f64 / 399.0))
        .collect();
    let stats: Vec<(f64, f64, f64)> = alphas
        .iter()
        .map(|&al| {
            let f: Vec<f64> = d.s.iter().map(|s| s * s / (s * s + al)).collect();
            let res: f64 = c
                .iter()
                .zip(&f)
                .map(|(ck, fk)| ((1.0 - fk) * ck).powi(2))
                .sum::<f64>()
                + out;
            let norm: f64 = c
                .iter()
                .zip(&f)
                .zip(&d.s)
                .filter(|(_, s)| **s > 0.0)
                .map(|((ck, fk), s)| (fk * ck / s).powi(2))
                .sum();
            (res, norm, f.iter().sum::<f64>())
        })
        .collect();
    let best = match rule {
        AlphaRule::Gcv => (0..alphas.len())
            .min_by(|&i, &j| {
                let g = |k: usize| stats[k].0 / (n - stats[k].2).max(1e-300).powi(2);
                g(i).total_cmp(&g(j))
            })
            .unwrap_or(0),
        AlphaRule::LCurve => l_curve_corner(&stats),
    };
    let f: Vec<f64> = d.s.iter().map(|s| s * s / (s * s + alphas[best])).collect();
    let (rho, sigma) = filtered(d, &c, &f);
    Ok(Solution {
        rho,
        sigma: Some(sigma),
        choice: ("alpha", alphas[best]),
    })
}

/// Index of maximum curvature of (log‖r‖, log‖ρ‖) along the α grid.
fn l_curve_corner(stats: &[(f64, f64, f64)]) -> usize {
    let pts: Vec<(f64, f64)> = stats
        .iter()
        .map(|s| (0.5 * s.0.max(1e-300).ln(), 0.5 * s.1.max(1e-300).ln()))
        .collect();
    (1..pts.len() - 1)
        .max_by(|&i, &j| {
            let curv = |k: usize| {
                let (x0, y0) = pts[k - 1];
                let (x1, y1) = pts[k];
                let (x2, y2) = pts[k + 1];
                let (dx, dy) = ((x2 - x0) / 2.0, (y2 - y0) / 2.0);
                let (ddx, ddy) = (x2 - 2.0 * x1 + x0, y2 - 2.0 * y1 + y0);
                (dx * ddy - dy * ddx) / (dx * dx + dy * dy).powf(1.5).max(1e-300)
            };
            curv(i).total_cmp(&curv(j))
        })
        .unwrap_or(0)
}

/// Safety factor τ of the discrepancy principle χ² ≤ τN (Morozov's τ > 1): beyond the cut the
/// residual is a sum of ~N unit-variance noise components, so τ = 1 stops late half the time.
pub const DISCREPANCY_TAU: f64 = 1.2;

/// Truncated SVD with the cut from the discrepancy principle: the fewest singular values with
/// χ² ≤ τN, τ = [`DISCREPANCY_TAU`].
pub fn tsvd(aw: &Matrix, gw: &[f64]) -> Result<Solution> {
    tsvd_svd(&svd(aw), gw)
}

/// [`tsvd`] with the SVD of A_w given (shared by many data vectors).
pub fn tsvd_svd(d: &Svd, gw: &[f64]) -> Result<Solution> {
    let c = d.ut(gw);
    let out = outside(gw, &c);
    let n = DISCREPANCY_TAU * gw.len() as f64;
    let rank = d.s.iter().filter(|&&s| s > d.s[0] * 1e-14).count();
    let mut res = c.iter().map(|x| x * x).sum::<f64>() + out;
    let mut cut = rank;
    for (k, ck) in c.iter().enumerate().take(rank) {
        if res <= n {
            cut = k;
            break;
        }
        res -= ck * ck;
    }
    let f: Vec<f64> = (0..d.s.len()).map(|k| (k < cut) as u8 as f64).collect();
    let (rho, sigma) = filtered(d, &c, &f);
    Ok(Solution {
        rho,
        sigma: Some(sigma),
        choice: ("cut", cut as f64),
    })
}

/// MEM options.
#[derive(Clone, Debug)]
pub struct MemOptions {
    /// The default model m(ω) on the grid (positive).
    pub default_model: Vec<f64>,
    /// α selection.
    pub alpha: MemAlpha,
}

/// One MEM solution at fixed α: ρ = m·exp(V u) in Bryan's singular subspace.
struct MemState {
    u: Vec<f64>,
    rho: Vec<f64>,
    entropy: f64,
    chi2: f64,
    lambdas: Vec<f64>,
}

/// Maximum entropy by Bryan's algorithm. `b` is the whitened kernel without quadrature weights
/// (A_w = B·diag(w)); entropy S = Σⱼ wⱼ (ρⱼ − mⱼ − ρⱼ ln(ρⱼ/mⱼ)).
pub fn mem(b: &Matrix, w: &[f64], gw: &[f64], opts: &MemOptions) -> Result<Solution> {
    let m = &opts.default_model;
    if m.len() != b.cols || m.iter().any(|&x| !(x > 0.0 && x.is_finite())) {
        return Err(Error::InvalidInput(
            "MEM needs a positive, finite default model on the grid".into(),
        ));
    }
    let full = svd(b);
    let s_keep = full
        .s
        .iter()
        .filter(|&&s| s > full.s[0] * 1e-12)
        .count()
        .clamp(1, 60);
    let sig: Vec<f64> = full.s[..s_keep].to_vec();
    let v = Matrix {
        rows: b.cols,
        cols: s_keep,
        data: (0..b.cols)
            .flat_map(|j| (0..s_keep).map(move |k| (j, k)))
            .map(|(j, k)| full.v.at(j, k))
            .collect(),
    };
    let u_mat = Matrix {
        rows: b.rows,
        cols: s_keep,
        data: (0..b.rows)
            .flat_map(|i| (0..s_keep).map(move |k| (i, k)))
            .map(|(i, k)| full.u.at(i, k))
            .collect(),
    };
    let ctx = MemCtx {
        b,
        w,
        gw,
        m,
        v: &v,
        u: &u_mat,
        s: &sig,
    };
    // α from large (ρ ≈ m) down, each solve warm-started from the previous.
    let lam0 = sig[0] * sig[0] * m.iter().zip(w).map(|(a, b)| a * b).fold(0.0, f64::max);
    let alphas: Vec<f64> = (0..60)
        .map(|i| lam0 * 10f64.powf(2.0 - 14.0 * i as f64 / 59.0))
        .collect();
    let mut u = vec![0.0; s_keep];
    let mut states = Vec::with_capacity(alphas.len());
    for &al in &alphas {
        let st = ctx.solve(al, &u)?;
        u = st.u.clone();
        states.push(st);
    }
    let pick = |i: usize| Solution {
        rho: states[i].rho.clone(),
        sigma: None,
        choice: ("alpha", alphas[i]),
    };
    match opts.alpha {
        MemAlpha::Classic => {
            // −2αS − Σ λ/(α+λ) changes sign once along the grid; take the crossing.
            let h = |i: usize| {
                -2.0 * alphas[i] * states[i].entropy
                    - states[i]
                        .lambdas
                        .iter()
                        .map(|l| l / (alphas[i] + l))
                        .sum::<f64>()
            };
            let i = (1..alphas.len())
                .find(|&i| h(i - 1).signum() != h(i).signum())
                .unwrap_or(alphas.len() - 1);
            Ok(pick(i))
        }
        MemAlpha::Bryan => {
            // log P(α|G) = ½Σ ln(α/(α+λ)) + αS − χ²/2 − ln α, integrated in ln α (weight α·P(α)).
            let logp: Vec<f64> = (0..alphas.len())
                .map(|i| {
                    let st = &states[i];
                    0.5 * st
                        .lambdas
                        .iter()
                        .map(|l| (alphas[i] / (alphas[i] + l)).ln())
                        .sum::<f64>()
                        + alphas[i] * st.entropy
                        - 0.5 * st.chi2
                })
                .collect();
            // States whose solve overflowed (far from the posterior's mass) carry no weight.
            let usable =
                |i: usize| logp[i].is_finite() && states[i].rho.iter().all(|r| r.is_finite());
            let top = (0..alphas.len())
                .filter(|&i| usable(i))
                .map(|i| logp[i])
                .fold(f64::NEG_INFINITY, f64::max);
            if !top.is_finite() {
                return Err(Error::NonFinite(
                    "MEM: no value of alpha gave a finite solution".into(),
                ));
            }
            let wts: Vec<f64> = (0..alphas.len())
                .map(|i| {
                    if usable(i) {
                        (logp[i] - top).exp()
                    } else {
                        0.0
                    }
                })
                .collect();
            let z: f64 = wts.iter().sum();
            let nw = b.cols;
            let mean: Vec<f64> = (0..nw)
                .map(|j| {
                    (0..alphas.len())
                        .map(|i| wts[i] * states[i].rho[j])
                        .sum::<f64>()
                        / z
                })
                .collect();
            let sd: Vec<f64> = (0..nw)
                .map(|j| {
                    ((0..alphas.len())
                        .map(|i| wts[i] * (states[i].rho[j] - mean[j]).powi(2))
                        .sum::<f64>()
                        / z)
                        .sqrt()
                })
                .collect();
            let mean_alpha = (0..alphas.len())
                .map(|i| wts[i] * alphas[i].ln())
                .sum::<f64>()
                / z;
            Ok(Solution {
                rho: mean,
                sigma: Some(sd),
                choice: ("alpha", mean_alpha.exp()),
            })
        }
    }
}

struct MemCtx<'a> {
    b: &'a Matrix,
    w: &'a [f64],
    gw: &'a [f64],
    m: &'a [f64],
    v: &'a Matrix,
    u: &'a Matrix,
    s: &'a [f64],
}

impl MemCtx<'_> {
    fn rho(&self, u: &[f64]) -> Vec<f64> {
        self.m
            .iter()
            .zip(self.v.mul_vec(u))
            .map(|(m, e)| m * e.min(700.0).exp())
            .collect()
    }

    /// F(u) = αu + Σ Uᵀ r and χ², with r = B diag(w) ρ − g.
    fn residual(&self, alpha: f64, u: &[f64], rho: &[f64]) -> (Vec<f64>, f64) {
        let wr: Vec<f64> = rho.iter().zip(self.w).map(|(r, w)| r * w).collect();
        let r: Vec<f64> = self
            .b
            .mul_vec(&wr)
            .iter()
            .zip(self.gw)
            .map(|(a, g)| a - g)
            .collect();
        let ur = self.u.tmul_vec(&r);
        (
            (0..u.len())
                .map(|k| alpha * u[k] + self.s[k] * ur[k])
                .collect(),
            dot(&r, &r),
        )
    }

    /// T = Vᵀ diag(wρ) V.
    fn t_matrix(&self, rho: &[f64]) -> Matrix {
        let s = self.v.cols;
        let mut t = Matrix::zeros(s, s);
        for j in 0..self.v.rows {
            let wr = self.w[j] * rho[j];
            let row = self.v.row(j);
            for a in 0..s {
                let x = wr * row[a];
                for bb in a..s {
                    t.data[a * s + bb] += x * row[bb];
                }
            }
        }
        for a in 0..s {
            for bb in 0..a {
                t.data[a * s + bb] = t.data[bb * s + a];
            }
        }
        t
    }

    /// Q = αS − χ²/2 at ρ.
    fn q(&self, alpha: f64, rho: &[f64], chi2: f64) -> f64 {
        alpha * self.entropy(rho) - 0.5 * chi2
    }

    fn entropy(&self, rho: &[f64]) -> f64 {
        (0..rho.len())
            .map(|j| self.w[j] * (rho[j] - self.m[j] - rho[j] * (rho[j] / self.m[j]).ln()))
            .sum()
    }

    /// Bryan's Newton iteration for F(u) = 0: ((α + μ)I + Σ²T)δu = −F, with μ raised until the
    /// step stays inside the trust region δuᵀTδu ≤ 0.2·Σⱼ wⱼmⱼ and Q = αS − χ²/2 increases.
    fn solve(&self, alpha: f64, u0: &[f64]) -> Result<MemState> {
        let s = u0.len();
        let mut u = u0.to_vec();
        let mut rho = self.rho(&u);
        let (mut f, mut chi2) = self.residual(alpha, &u, &rho);
        let radius = 0.2 * self.m.iter().zip(self.w).map(|(m, w)| m * w).sum::<f64>();
        for _ in 0..400 {
            let fnorm = dot(&f, &f).sqrt();
            if fnorm <= 1e-10 * (alpha * dot(&u, &u).sqrt() + 1.0) {
                break;
            }
            let t = self.t_matrix(&rho);
            let q0 = self.q(alpha, &rho, chi2);
            let mut mu = 0.0;
            let mut accepted = false;
            for _ in 0..60 {
                let mut j = Matrix::zeros(s, s);
                for a in 0..s {
                    for bb in 0..s {
                        j.data[a * s + bb] = self.s[a] * self.s[a] * t.at(a, bb);
                    }
                    j.data[a * s + a] += alpha + mu;
                }
                let neg: Vec<f64> = f.iter().map(|x| -x).collect();
                let du = solve(&j, &neg)?;
                let len = dot(&du, &t.mul_vec(&du));
                if len > radius {
                    mu = if mu == 0.0 {
                        alpha.max(self.s[0] * self.s[0] * 1e-12)
                    } else {
                        mu * 4.0
                    };
                    continue;
                }
                let trial: Vec<f64> = u.iter().zip(&du).map(|(a, b)| a + b).collect();
                let rho_t = self.rho(&trial);
                let (f_t, chi2_t) = self.residual(alpha, &trial, &rho_t);
                if self.q(alpha, &rho_t, chi2_t) >= q0 || dot(&f_t, &f_t).sqrt() < fnorm {
                    (u, rho, f, chi2) = (trial, rho_t, f_t, chi2_t);
                    accepted = true;
                    break;
                }
                mu = if mu == 0.0 {
                    alpha.max(self.s[0] * self.s[0] * 1e-12)
                } else {
                    mu * 4.0
                };
            }
            if !accepted {
                break;
            }
        }
        let entropy: f64 = (0..rho.len())
            .map(|j| self.w[j] * (rho[j] - self.m[j] - rho[j] * (rho[j] / self.m[j]).ln()))
            .sum();
        // λ: eigenvalues of Σ T Σ (symmetric positive semi-definite: its singular values).
        let t = self.t_matrix(&rho);
        let mut sts = Matrix::zeros(s, s);
        for a in 0..s {
            for bb in 0..s {
                sts.data[a * s + bb] = self.s[a] * t.at(a, bb) * self.s[bb];
            }
        }
        let lambdas = svd(&sts).s;
        Ok(MemState {
            u,
            rho,
            entropy,
            chi2,
            lambdas,
        })
    }
}
