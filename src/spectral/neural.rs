//! Neural-network representations of ρ(ω) trained through the autodiff tape on
//! χ² = ‖A_w ρ − g_w‖² plus an L2 weight penalty annealed to zero (after Shi, Wang, Zhou,
//! Comput. Phys. Commun. 282 (2023) 108547, and the NN-spectrum letter). Random restarts give the spread.

use super::classical::DISCREPANCY_TAU;
use super::kernel::OmegaGrid;
use super::linalg::{self, Matrix};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::optim::{Adam, Schedule};
use crate::nn::tape::{Tape, Var};
use std::sync::Arc;

use crate::nn::{Ctx, ParamStore, Tensor};

/// Which representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NnKind {
    /// ρ(ω) = output of an MLP taking ω (point to point); softplus output when `positive`.
    PointToPoint {
        /// Softplus output (ρ ≥ 0); false for the sign-free mode.
        positive: bool,
    },
    /// A network with constant input whose output layer is the whole vector ρ(ωⱼ).
    List,
}

/// Training settings.
#[derive(Clone, Debug)]
pub struct NnOptions {
    /// Representation.
    pub kind: NnKind,
    /// Hidden width.
    pub hidden: usize,
    /// Adam steps per restart.
    pub steps: usize,
    /// Independent restarts (their spread is the band).
    pub restarts: usize,
    /// Initial learning rate (cosine-decayed to 1% of it).
    pub lr: f64,
    /// Initial strength of the L2 weight penalty, annealed linearly to zero over the first 70% of steps.
    pub reg: f64,
    /// Seed of the initialisations.
    pub seed: u64,
    /// Levenberg–Marquardt iterations after Adam (0: none), stopping once χ² ≤ 1.2·N.
    pub polish_iters: usize,
}

impl NnOptions {
    /// Defaults that converge in seconds on two CPU cores at the paper's problem size.
    pub fn new(kind: NnKind) -> Self {
        NnOptions {
            kind,
            hidden: 32,
            steps: 2000,
            restarts: 3,
            lr: 0.01,
            reg: 1e-3,
            seed: 1,
            polish_iters: 600,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.hidden == 0
            || self.steps == 0
            || self.restarts == 0
            || !(self.lr.is_finite() && self.lr > 0.0)
            || !(self.reg.is_finite() && self.reg >= 0.0)
        {
            return Err(Error::InvalidInput(
                "NN training needs hidden, steps, restarts >= 1, lr > 0 and reg >= 0".into(),
            ));
        }
        Ok(())
    }
}

/// The trained spectra of every restart.
pub struct NnResult {
    /// ρ of each restart.
    pub rhos: Vec<Vec<f64>>,
}

struct Model {
    opts: NnOptions,
    x: Arc<Tensor<f64>>,
}

impl Model {
    /// `level`: the constant ρ the untrained network starts from (its output bias is set to
    /// softplus⁻¹(level)); a start far above the data drives softplus into its flat, gradient-free
    /// region, where Adam stalls.
    fn new(
        ctx: &Ctx<f64>,
        store: &mut ParamStore<f64>,
        grid: &OmegaGrid,
        opts: &NnOptions,
        seed: u64,
        level: f64,
    ) -> Result<Self> {
        let h = opts.hidden;
        let nw = grid.len();
        let bias = (level.exp_m1()).ln();
        let x = match opts.kind {
            NnKind::PointToPoint { .. } => {
                // Input ω − ω_min on its own scale: unit initial weights then vary on the scale of
                // typical peak widths; squeezing ω into [0, 1] leaves Adam unable to form a peak.
                let lo = grid.omega[0];
                store.init_layer("l1", &[h, 1], 1, h, seed)?;
                store.init_layer("l2", &[h, h], h, h, seed + 1)?;
                store.init_layer("l3", &[1, h], h, 1, seed + 2)?;
                if opts.kind == (NnKind::PointToPoint { positive: true }) {
                    store.insert("l3.b", ctx.from_f64(&[1], &[bias])?);
                }
                ctx.from_f64(
                    &[nw, 1],
                    &grid.omega.iter().map(|w| w - lo).collect::<Vec<_>>(),
                )?
            }
            NnKind::List => {
                store.init_layer("l1", &[h, 1], 1, h, seed)?;
                store.init_layer("l2", &[nw, h], h, nw, seed + 1)?;
                // Output weights start at zero: the ωⱼ are independent outputs, so random rows would
                // leave independent spikes in every direction the data do not constrain, while
                // gradient and minimum-norm LM steps stay in the span of the kernel's smooth vectors.
                store.insert("l2.w", ctx.zeros(&[nw, h])?);
                store.insert("l2.b", ctx.from_f64(&[nw], &vec![bias; nw])?);
                ctx.from_f64(&[1, 1], &[1.0])?
            }
        };
        Ok(Model {
            opts: opts.clone(),
            x: Arc::new(x),
        })
    }

    /// ρ as `[Nω, 1]`.
    fn rho(&self, t: &Tape<f64>, s: &ParamStore<f64>) -> Result<Var<f64>> {
        let p = |n: &str| t.param(s, n);
        let x = t.constant_shared(&self.x);
        match self.opts.kind {
            NnKind::PointToPoint { positive } => {
                let h = t.tanh(&t.linear(&x, &p("l1.w")?, &p("l1.b")?)?)?;
                let h = t.tanh(&t.linear(&h, &p("l2.w")?, &p("l2.b")?)?)?;
                let out = t.linear(&h, &p("l3.w")?, &p("l3.b")?)?;
                if positive {
                    t.softplus(&out)
                } else {
                    Ok(out)
                }
            }
            NnKind::List => {
                let h = t.tanh(&t.linear(&x, &p("l1.w")?, &p("l1.b")?)?)?;
                let out = t.softplus(&t.linear(&h, &p("l2.w")?, &p("l2.b")?)?)?;
                let n = out.shape()[1];
                t.reshape(&out, &[n, 1])
            }
        }
    }
}

/// Σ of the squared weights (biases are not penalised).
fn weight_penalty(t: &Tape<f64>, s: &ParamStore<f64>) -> Result<Var<f64>> {
    let mut total: Option<Var<f64>> = None;
    for name in s.names().into_iter().filter(|n| n.ends_with(".w")) {
        let sq = t.sum_all(&t.square(&t.param(s, &name)?)?)?;
        let sq = t.reshape(&sq, &[1])?;
        total = Some(match total {
            None => sq,
            Some(prev) => t.add(&prev, &sq)?,
        });
    }
    total.ok_or_else(|| Error::InvalidInput("model without weights".into()))
}

/// Trains `opts.restarts` networks on the whitened problem and returns their spectra.
pub fn train(
    device: &Device,
    aw: &Matrix,
    gw: &[f64],
    grid: &OmegaGrid,
    opts: &NnOptions,
) -> Result<NnResult> {
    opts.validate()?;
    let ctx = Ctx::<f64>::new(device.clone());
    let a = Arc::new(ctx.from_vec(&[aw.rows, aw.cols], &aw.data)?);
    let g = Arc::new(ctx.from_vec(&[gw.len(), 1], gw)?);
    let (pa, pg) = preconditioned(aw, gw);
    let (ra, rg) = informative(aw, gw);
    let (ra, rg) = (
        Arc::new(ctx.from_vec(&[ra.rows, ra.cols], &ra.data)?),
        Arc::new(ctx.from_vec(&[rg.len(), 1], &rg)?),
    );
    let (pa, pg) = (
        Arc::new(ctx.from_vec(&[pa.rows, pa.cols], &pa.data)?),
        Arc::new(ctx.from_vec(&[pg.len(), 1], &pg)?),
    );
    let n = gw.len() as f64;
    let level = super::flat_default(aw, gw);
    let mut rhos = Vec::with_capacity(opts.restarts);
    for r in 0..opts.restarts {
        let mut store = ParamStore::new(&ctx);
        let model = Model::new(
            &ctx,
            &mut store,
            grid,
            opts,
            opts.seed.wrapping_mul(1000).wrapping_add(10 * r as u64),
            level,
        )?;
        // The point-to-point net is smooth in ω and gains from the balanced residual; the list
        // representation's free components would be left unconstrained by it, so it sees χ².
        let (ta, tg) = if opts.kind == NnKind::List {
            (&a, &g)
        } else {
            (&pa, &pg)
        };
        fit_adam(&mut store, opts, n, &|t, s| {
            let pred = t.matmul(&t.constant_shared(ta), &model.rho(t, s)?)?;
            t.sub(&pred, &t.constant_shared(tg))
        })?;
        polish(
            &ctx,
            &mut store,
            &model,
            (&a, &g),
            (&ra, &rg),
            opts.polish_iters,
        )?;
        let t = Tape::new(&ctx);
        t.set_grad_enabled(false);
        rhos.push(model.rho(&t, &store)?.value().to_f64()?);
    }
    Ok(NnResult { rhos })
}

/// The residual Adam descends, P(A_wρ − g_w) with P = diag(1/√(s_k² + 1))·Uᵀ (A_w = USVᵀ): every
/// component the data determine (s_k ≳ 1, in units of the noise) weighs the same, where χ² itself is
/// dominated by the largest s_k by factors up to ~10⁷ and Adam stalls. An exact fit minimises both;
/// the Levenberg–Marquardt polish then works on χ² itself.
fn preconditioned(aw: &Matrix, gw: &[f64]) -> (Matrix, Vec<f64>) {
    let d = linalg::svd(aw);
    let w: Vec<f64> = d.s.iter().map(|s| 1.0 / (s * s + 1.0).sqrt()).collect();
    let ut = d.u.t();
    let mut p = ut.clone();
    for (row, wk) in p.data.chunks_mut(ut.cols).zip(&w) {
        row.iter_mut().for_each(|x| *x *= wk);
    }
    (p.matmul(aw), p.mul_vec(gw))
}

/// r = A_w ρ − g_w of the current parameters (no tape).
fn residual(
    ctx: &Ctx<f64>,
    store: &ParamStore<f64>,
    model: &Model,
    a: &Arc<Tensor<f64>>,
    g: &Arc<Tensor<f64>>,
) -> Result<Vec<f64>> {
    let t = Tape::new(ctx);
    t.set_grad_enabled(false);
    let rho = model.rho(&t, store)?;
    let r = t.sub(
        &t.matmul(&t.constant_shared(a), &rho)?,
        &t.constant_shared(g),
    )?;
    r.value().to_f64()
}

/// Adds `delta` (flattened in name order) to the parameters.
fn shift_params(ctx: &Ctx<f64>, store: &mut ParamStore<f64>, delta: &[f64]) -> Result<()> {
    let mut at = 0;
    for name in store.names() {
        let t = store.get(&name)?;
        let (shape, mut v) = (t.shape().to_vec(), t.to_f64()?);
        let len = v.len();
        v.iter_mut()
            .zip(&delta[at..at + len])
            .for_each(|(x, d)| *x += d);
        at += len;
        store.insert(&name, ctx.from_vec(&shape, &v)?);
    }
    Ok(())
}

/// The data-determined part of the problem: Uₘᵀ A_w and Uₘᵀ g_w for the m singular components with
/// s_k > 10⁻³ (whitened units). The others cannot be moved by any reasonable change of ρ, so they add
/// nothing to a Gauss–Newton step but cost a reverse pass each.
fn informative(aw: &Matrix, gw: &[f64]) -> (Matrix, Vec<f64>) {
    let d = linalg::svd(aw);
    let m = d.s.iter().filter(|&&s| s > 1e-3).count().max(1);
    let ut = d.u.t();
    let um = Matrix {
        rows: m,
        cols: ut.cols,
        data: ut.data[..m * ut.cols].to_vec(),
    };
    (um.matmul(aw), um.mul_vec(gw))
}

/// Levenberg–Marquardt on χ² in the network's parameters, after Adam: the Jacobian of the
/// informative residual components (`reduced`, see [`informative`]) comes from one seeded reverse
/// pass each, and the minimum-norm damped step δ = −Jᵀ(JJᵀ + μI)⁻¹r needs only a small solve; steps
/// are accepted on the full χ² (`full`). Stops once χ² ≤ τN, τ = [`DISCREPANCY_TAU`] (the
/// discrepancy principle, as for TSVD: fitting further only fits the noise and sharpens peaks).
fn polish(
    ctx: &Ctx<f64>,
    store: &mut ParamStore<f64>,
    model: &Model,
    full: (&Arc<Tensor<f64>>, &Arc<Tensor<f64>>),
    reduced: (&Arc<Tensor<f64>>, &Arc<Tensor<f64>>),
    iters: usize,
) -> Result<()> {
    let n = full.1.len();
    let chi2_of = |store: &ParamStore<f64>| -> Result<f64> {
        let r = residual(ctx, store, model, full.0, full.1)?;
        Ok(linalg::dot(&r, &r))
    };
    let mut chi2 = chi2_of(store)?;
    let mut mu = 0.0;
    for _ in 0..iters {
        if chi2 <= DISCREPANCY_TAU * n as f64 {
            break;
        }
        let r = residual(ctx, store, model, reduced.0, reduced.1)?;
        let m = r.len();
        let jac = jacobian(ctx, store, model, reduced.0, reduced.1)?;
        let jjt = jac.matmul(&jac.t());
        let scale = (0..m).map(|i| jjt.at(i, i)).sum::<f64>() / m as f64;
        if mu == 0.0 {
            mu = 1e-3 * scale;
        }
        let mut improved = false;
        while mu < 1e12 * scale.max(1e-300) {
            let mut lhs = jjt.clone();
            (0..m).for_each(|i| lhs.data[i * m + i] += mu);
            let y = linalg::solve(&lhs, &r)?;
            let delta: Vec<f64> = jac.tmul_vec(&y).iter().map(|v| -v).collect();
            shift_params(ctx, store, &delta)?;
            let chi2_t = chi2_of(store)?;
            if chi2_t.is_finite() && chi2_t < chi2 {
                improved = (chi2 - chi2_t) / chi2 > 1e-10;
                chi2 = chi2_t;
                mu /= 3.0;
                break;
            }
            shift_params(ctx, store, &delta.iter().map(|v| -v).collect::<Vec<_>>())?;
            mu *= 5.0;
        }
        if !improved {
            break;
        }
    }
    Ok(())
}

/// ∂r/∂θ, one row per residual, parameters flattened in name order.
fn jacobian(
    ctx: &Ctx<f64>,
    store: &ParamStore<f64>,
    model: &Model,
    a: &Arc<Tensor<f64>>,
    g: &Arc<Tensor<f64>>,
) -> Result<Matrix> {
    let n = g.len();
    let names = store.names();
    let sizes: Vec<usize> = names
        .iter()
        .map(|k| store.get(k).map(|t| t.len()))
        .collect::<Result<_>>()?;
    let p: usize = sizes.iter().sum();
    let t = Tape::new(ctx);
    let rho = model.rho(&t, store)?;
    let r = t.sub(
        &t.matmul(&t.constant_shared(a), &rho)?,
        &t.constant_shared(g),
    )?;
    let mut jac = Matrix::zeros(n, p);
    for i in 0..n {
        let mut e = vec![0.0; n];
        e[i] = 1.0;
        let grads = t.backward_seeded(&r, ctx.from_vec(&[n, 1], &e)?, i + 1 < n)?;
        let mut at = i * p;
        for (name, &len) in names.iter().zip(&sizes) {
            if let Some(gr) = grads.get(name) {
                jac.data[at..at + len].copy_from_slice(&gr.to_f64()?);
            }
            at += len;
        }
    }
    Ok(jac)
}

/// The residual A_w ρ − g_w of the model's parameters, recorded on a tape.
type Residual<'a> = dyn Fn(&Tape<f64>, &ParamStore<f64>) -> Result<Var<f64>> + 'a;

/// Adam on χ²/N (summed over every residual, `n` points per correlator) plus the L2 weight
/// penalty, whose strength falls linearly from `opts.reg` to zero over the first 70% of the steps;
/// the learning rate decays by a cosine to 1% of `opts.lr`.
fn fit_adam(
    store: &mut ParamStore<f64>,
    opts: &NnOptions,
    n: f64,
    residual: &Residual<'_>,
) -> Result<()> {
    let ctx = store.ctx().clone();
    let mut adam = Adam::new(opts.lr);
    adam.schedule = Schedule::Cosine {
        total: opts.steps,
        min_lr: opts.lr * 0.01,
    };
    let anneal = (0.7 * opts.steps as f64).max(1.0);
    for step in 0..opts.steps {
        let t = Tape::new(&ctx);
        let res = residual(&t, store)?;
        let chi2 = t.scale(&t.reshape(&t.sum_all(&t.square(&res)?)?, &[1])?, 1.0 / n)?;
        let lam = opts.reg * (1.0 - step as f64 / anneal).max(0.0);
        let loss = if lam > 0.0 {
            t.add(&chi2, &t.scale(&weight_penalty(&t, store)?, lam)?)?
        } else {
            chi2
        };
        let grads = t.backward(&loss)?;
        drop((res, loss));
        adam.step(store, &grads)?;
    }
    Ok(())
}

/// The list representation for many correlators at once (e.g. bootstrap samples), one network
/// each, trained together: ρ_b = softplus(Σ_h tanh(w1_b + b1_b)_h W2_b,h + b2_b). The networks share
/// nothing, so this equals training them one by one, in one set of launches. Returns ρ per correlator.
pub fn train_list_batched(
    device: &Device,
    aw: &Matrix,
    gws: &[Vec<f64>],
    opts: &NnOptions,
) -> Result<Vec<Vec<f64>>> {
    opts.validate()?;
    let (bn, nw, h, n) = (gws.len(), aw.cols, opts.hidden, aw.rows);
    if bn == 0 || gws.iter().any(|g| g.len() != n) {
        return Err(Error::InvalidInput(format!(
            "every correlator needs {n} values"
        )));
    }
    let ctx = Ctx::<f64>::new(device.clone());
    let a = Arc::new(ctx.from_vec(&[n, nw], &aw.data)?);
    let g = Arc::new(ctx.from_vec(&[bn, n], &gws.concat())?);
    let mut store = ParamStore::new(&ctx);
    store.init_uniform("l1.w", &[bn, h, 1], 1.0, opts.seed)?;
    store.init_uniform("l1.b", &[bn, h, 1], 1.0, opts.seed + 1)?;
    // Output weights start at zero, as in the single list network (see `Model::new`).
    store.insert("l2.w", ctx.zeros(&[bn, h, nw])?);
    // Each network starts at the flat level that best fits its own data (see `Model::new`).
    let levels: Vec<f64> = gws
        .iter()
        .map(|g| super::flat_default(aw, g).exp_m1().ln())
        .collect();
    store.insert(
        "l2.b",
        ctx.from_f64(
            &[bn, 1, nw],
            &levels
                .iter()
                .flat_map(|&l| std::iter::repeat_n(l, nw))
                .collect::<Vec<_>>(),
        )?,
    );
    let forward = |t: &Tape<f64>, s: &ParamStore<f64>| -> Result<Var<f64>> {
        let hid = t.tanh(&t.add(&t.param(s, "l1.w")?, &t.param(s, "l1.b")?)?)?; // [B,H,1]
        let prod = t.mul(&hid, &t.param(s, "l2.w")?)?; // [B,H,Nω]
        let out = t.add(&t.sum(&prod, &[1])?, &t.param(s, "l2.b")?)?; // [B,1,Nω]
        t.reshape(&t.softplus(&out)?, &[bn, nw])
    };
    fit_adam(&mut store, opts, n as f64, &|t, s| {
        let pred = t.matmul_t(&forward(t, s)?, &t.constant_shared(&a), false, true)?; // [B, N]
        t.sub(&pred, &t.constant_shared(&g))
    })?;
    let t = Tape::new(&ctx);
    t.set_grad_enabled(false);
    let flat = forward(&t, &store)?.value().to_f64()?;
    Ok(flat.chunks(nw).map(|c| c.to_vec()).collect())
}
