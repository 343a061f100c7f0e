//! Neural-network representations of ρ(ω) trained through the autodiff tape on
//! χ² = ‖A_w ρ − g_w‖² plus an L2 weight penalty annealed to zero (after Shi, Wang, Zhou,
//! Comput. Phys. Commun. 282 (2023) 108547, and the NN-spectrum letter). Random restarts give the spread.

use super::classical::DISCREPANCY_TAU;
use super::kernel::OmegaGrid;
use super::linalg::{self, Matrix};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::optim::{Adam, DecayOn, Schedule};
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

/// The point-to-point network ρ(ω) = MLP(ω − ω_min).
struct Model {
    positive: bool,
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
        let positive = opts.kind != (NnKind::PointToPoint { positive: false });
        // Input ω − ω_min on its own scale: unit initial weights then vary on the scale of
        // typical peak widths; squeezing ω into [0, 1] leaves Adam unable to form a peak.
        let lo = grid.omega[0];
        store.init_layer("l1", &[h, 1], 1, h, seed)?;
        store.init_layer("l2", &[h, h], h, h, seed + 1)?;
        store.init_layer("l3", &[1, h], h, 1, seed + 2)?;
        if positive {
            store.insert("l3.b", ctx.from_f64(&[1], &[softplus_inverse(level)])?);
        }
        let x = ctx.from_f64(
            &[grid.len(), 1],
            &grid.omega.iter().map(|w| w - lo).collect::<Vec<_>>(),
        )?;
        Ok(Model {
            positive,
            x: Arc::new(x),
        })
    }

    /// ρ as `[Nω, 1]`.
    fn rho(&self, t: &Tape<f64>, s: &ParamStore<f64>) -> Result<Var<f64>> {
        let p = |n: &str| t.param(s, n);
        let x = t.constant_shared(&self.x);
        let h = t.tanh(&t.linear(&x, &p("l1.w")?, &p("l1.b")?)?)?;
        let h = t.tanh(&t.linear(&h, &p("l2.w")?, &p("l2.b")?)?)?;
        let out = t.linear(&h, &p("l3.w")?, &p("l3.b")?)?;
        if self.positive {
            t.softplus(&out)
        } else {
            Ok(out)
        }
    }
}

/// y with softplus(y) = level.
fn softplus_inverse(level: f64) -> f64 {
    level.exp_m1().ln()
}

/// Trains `opts.restarts` networks on the whitened problem and returns their spectra. The list
/// representation runs through [`train_list_batched`] with one correlator, so a reconstruction is
/// the same alone and inside a batch of bootstrap samples.
pub fn train(
    device: &Device,
    aw: &Matrix,
    gw: &[f64],
    grid: &OmegaGrid,
    opts: &NnOptions,
) -> Result<NnResult> {
    opts.validate()?;
    if opts.kind == NnKind::List {
        let mut rhos = train_list_batched(device, aw, &[gw.to_vec()], opts, &mut |_, _| {})?;
        return Ok(NnResult {
            rhos: rhos.pop().unwrap_or_default(),
        });
    }
    let ctx = Ctx::<f64>::new(device.clone());
    let (pa, pg) = preconditioned(aw, gw);
    let um = informative(aw);
    let reduced = Fit::new(&ctx, &um.matmul(aw), &[um.mul_vec(gw)])?;
    let full = Fit::new(&ctx, aw, &[gw.to_vec()])?;
    let (pa, pg) = (
        Arc::new(ctx.from_vec(&[pa.rows, pa.cols], &pa.data)?),
        Arc::new(ctx.from_vec(&[pg.len(), 1], &pg)?),
    );
    let n = gw.len() as f64;
    let level = super::flat_default(aw, gw);
    let mut rhos = Vec::with_capacity(opts.restarts);
    for r in 0..opts.restarts {
        let mut store = ParamStore::new(&ctx);
        let model = Model::new(&ctx, &mut store, grid, opts, restart_seed(opts, r), level)?;
        // The point-to-point net is smooth in ω and gains from the balanced residual.
        let mut quiet = |_: u64, _: u64| {};
        let mut silent = Progress::new(&mut quiet);
        fit_adam(&mut store, opts, n, &mut silent, &|t, s| {
            let pred = t.matmul(&t.constant_shared(&pa), &model.rho(t, s)?)?;
            t.sub(&pred, &t.constant_shared(&pg))
        })?;
        let spectra =
            |t: &Tape<f64>, s: &ParamStore<f64>| t.reshape(&model.rho(t, s)?, &[1, grid.len()]);
        polish_in_groups(
            &mut store,
            &spectra,
            (&full, &reduced),
            (opts.polish_iters, JACOBIAN_BYTES),
            &mut silent,
        )?;
        let t = Tape::new(&ctx);
        t.set_grad_enabled(false);
        rhos.push(model.rho(&t, &store)?.value().to_f64()?);
    }
    Ok(NnResult { rhos })
}

/// The initialisation seed of restart `r`.
fn restart_seed(opts: &NnOptions, r: usize) -> u64 {
    opts.seed.wrapping_mul(1000).wrapping_add(10 * r as u64)
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

/// The data-determined part of the problem: Uₘᵀ (rows of the whitened data space) for the m
/// singular components of A_w with s_k > 10⁻³ (whitened units). The others cannot be moved by any
/// reasonable change of ρ, so they add nothing to a Gauss–Newton step but cost a reverse pass each.
fn informative(aw: &Matrix) -> Matrix {
    let d = linalg::svd(aw);
    let m = d.s.iter().filter(|&&s| s > 1e-3).count().max(1);
    let ut = d.u.t();
    Matrix {
        rows: m,
        cols: ut.cols,
        data: ut.data[..m * ut.cols].to_vec(),
    }
}

/// The residual A_w ρ − g_w of the model's parameters, recorded on a tape.
type Residual<'a> = dyn Fn(&Tape<f64>, &ParamStore<f64>) -> Result<Var<f64>> + 'a;

/// Adam on χ²/N (summed over every residual, `n` points per correlator) plus the L2 weight
/// penalty λ Σ w², whose strength falls linearly from `opts.reg` to zero over the first 70% of
/// the steps; the learning rate decays by a cosine to 1% of `opts.lr`. The penalty enters as its
/// gradient 2λw, Adam's coupled weight decay on the weights (`*.w`): the same bits as the
/// penalty on the tape, without its four passes over the weights.
fn fit_adam(
    store: &mut ParamStore<f64>,
    opts: &NnOptions,
    n: f64,
    progress: &mut Progress<'_>,
    residual: &Residual<'_>,
) -> Result<()> {
    let ctx = store.ctx().clone();
    let mut adam = Adam::new(opts.lr);
    adam.schedule = Schedule::Cosine {
        total: opts.steps,
        min_lr: opts.lr * 0.01,
    };
    adam.decay_on = DecayOn::Weights;
    let anneal = (0.7 * opts.steps as f64).max(1.0);
    for step in 0..opts.steps {
        let t = Tape::new(&ctx);
        let res = residual(&t, store)?;
        let chi2 = t.scale(&t.reshape(&t.sum_all(&t.square(&res)?)?, &[1])?, 1.0 / n)?;
        adam.weight_decay = 2.0 * opts.reg * (1.0 - step as f64 / anneal).max(0.0);
        let grads = t.backward(&chi2)?;
        drop((res, chi2));
        adam.step(store, &grads)?;
        progress.advance(1);
    }
    Ok(())
}

/// Reports a batched training's progress as (done, total) in units of Adam steps and LM
/// iterations; the total grows once the LM polish knows its number of groups, and a group that
/// stops early jumps to its end.
struct Progress<'a> {
    done: u64,
    total: u64,
    report: &'a mut dyn FnMut(u64, u64),
}

impl<'a> Progress<'a> {
    fn new(report: &'a mut dyn FnMut(u64, u64)) -> Self {
        Progress {
            done: 0,
            total: 0,
            report,
        }
    }

    fn advance(&mut self, units: u64) {
        self.done += units;
        (self.report)(self.done, self.total.max(self.done));
    }

    fn set_total(&mut self, total: u64) {
        self.total = total;
        (self.report)(self.done, self.total.max(self.done));
    }
}

/// The list representation for many correlators at once (e.g. bootstrap samples): `opts.restarts`
/// networks per correlator, ρ_b = softplus(Σ_h tanh(w1_b + b1_b)_h W2_b,h + b2_b), trained together
/// by Adam on χ² and polished together by Levenberg–Marquardt ([`polish`]). The networks share
/// nothing, and restart r starts from the same seed for every correlator, so each correlator's
/// spectra are bit-for-bit those of training it alone. Returns, per correlator, ρ of each restart.
pub fn train_list_batched(
    device: &Device,
    aw: &Matrix,
    gws: &[Vec<f64>],
    opts: &NnOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Vec<Vec<f64>>>> {
    opts.validate()?;
    let mut progress = Progress::new(progress);
    progress.set_total((opts.steps + opts.polish_iters) as u64);
    let (rows, nw, k) = (aw.rows, aw.cols, opts.restarts);
    if gws.is_empty() || gws.iter().any(|g| g.len() != rows) {
        return Err(Error::InvalidInput(format!(
            "every correlator needs {rows} values"
        )));
    }
    let ctx = Ctx::<f64>::new(device.clone());
    // Network c·k + r fits correlator c from restart r's seed.
    let targets: Vec<Vec<f64>> = gws
        .iter()
        .flat_map(|g| std::iter::repeat_n(g.clone(), k))
        .collect();
    let seeds: Vec<u64> = (0..targets.len())
        .map(|n| restart_seed(opts, n % k))
        .collect();
    let levels: Vec<f64> = targets.iter().map(|g| super::flat_default(aw, g)).collect();
    let mut store = ParamStore::new(&ctx);
    init_list_networks(&mut store, &seeds, &levels, opts.hidden, nw)?;
    let full = Fit::new(&ctx, aw, &targets)?;
    // The list representation's free components would be left unconstrained by the balanced
    // residual the point-to-point net uses (see `preconditioned`), so Adam sees χ² itself.
    fit_adam(&mut store, opts, rows as f64, &mut progress, &|t, s| {
        full.residual(t, &list_spectra(t, s)?)
    })?;
    let um = informative(aw);
    let reduced = Fit::new(
        &ctx,
        &um.matmul(aw),
        &targets.iter().map(|g| um.mul_vec(g)).collect::<Vec<_>>(),
    )?;
    polish_in_groups(
        &mut store,
        &list_spectra,
        (&full, &reduced),
        (opts.polish_iters, JACOBIAN_BYTES),
        &mut progress,
    )?;
    let t = Tape::new(&ctx);
    t.set_grad_enabled(false);
    let flat = list_spectra(&t, &store)?.value().to_f64()?;
    let rhos: Vec<Vec<f64>> = flat.chunks(nw).map(|c| c.to_vec()).collect();
    Ok(rhos.chunks(k).map(|c| c.to_vec()).collect())
}

/// Parameters of the list networks, network first in every tensor: `l1.w`, `l1.b` `[B, H, 1]`
/// drawn as a single network's first layer from its seed; `l2.w` `[B, H, Nω]` zero (random rows
/// would leave independent spikes in every direction the data do not constrain, while gradient and
/// minimum-norm LM steps stay in the span of the kernel's smooth vectors); `l2.b` `[B, 1, Nω]` at
/// softplus⁻¹ of the flat level that best fits each network's data.
fn init_list_networks(
    store: &mut ParamStore<f64>,
    seeds: &[u64],
    levels: &[f64],
    h: usize,
    nw: usize,
) -> Result<()> {
    let ctx = store.ctx().clone();
    let b = seeds.len();
    let (mut w1, mut b1) = (Vec::with_capacity(b * h), Vec::with_capacity(b * h));
    for &seed in seeds {
        let mut one = ParamStore::new(&ctx);
        one.init_layer("l1", &[h, 1], 1, h, seed)?;
        w1.extend(one.get("l1.w")?.to_f64()?);
        b1.extend(one.get("l1.b")?.to_f64()?);
    }
    let b2: Vec<f64> = levels
        .iter()
        .flat_map(|&l| std::iter::repeat_n(softplus_inverse(l), nw))
        .collect();
    store.insert("l1.w", ctx.from_f64(&[b, h, 1], &w1)?);
    store.insert("l1.b", ctx.from_f64(&[b, h, 1], &b1)?);
    store.insert("l2.w", ctx.zeros(&[b, h, nw])?);
    store.insert("l2.b", ctx.from_f64(&[b, 1, nw], &b2)?);
    Ok(())
}

/// ρ of every list network as `[B, Nω]` (B and Nω from the parameters).
fn list_spectra(t: &Tape<f64>, s: &ParamStore<f64>) -> Result<Var<f64>> {
    let hid = t.tanh(&t.add(&t.param(s, "l1.w")?, &t.param(s, "l1.b")?)?)?; // [B,H,1]
    let out = t.batched_linear(&hid, &t.param(s, "l2.w")?, &t.param(s, "l2.b")?)?; // [B,Nω]
    t.softplus(&out)
}

/// ρ of B independent networks as `[B, Nω]`, every parameter tensor carrying the network as its
/// leading dimension (or B = 1 and any shapes).
type Spectra<'a> = dyn Fn(&Tape<f64>, &ParamStore<f64>) -> Result<Var<f64>> + 'a;

/// A least-squares target: the residuals r_b = A ρ_b − g_b of B networks, `A` `[N, Nω]`, `g` `[B, N]`.
struct Fit {
    a: Arc<Tensor<f64>>,
    g: Arc<Tensor<f64>>,
    targets: Vec<Vec<f64>>,
}

impl Fit {
    fn new(ctx: &Ctx<f64>, a: &Matrix, targets: &[Vec<f64>]) -> Result<Self> {
        Ok(Fit {
            a: Arc::new(ctx.from_vec(&[a.rows, a.cols], &a.data)?),
            g: Arc::new(ctx.from_vec(&[targets.len(), a.rows], &targets.concat())?),
            targets: targets.to_vec(),
        })
    }

    /// The rows of `A` (residuals per network).
    fn rows(&self) -> usize {
        self.a.shape()[0]
    }

    /// The same fit for the networks `idx` only.
    fn select(&self, idx: &[usize]) -> Result<Self> {
        let targets: Vec<Vec<f64>> = idx.iter().map(|&b| self.targets[b].clone()).collect();
        let ctx = self.a.ctx();
        Ok(Fit {
            a: self.a.clone(),
            g: Arc::new(ctx.from_vec(&[targets.len(), self.rows()], &targets.concat())?),
            targets,
        })
    }

    /// r = ρ Aᵀ − g, `[B, N]`, for spectra `rho` `[B, Nω]`.
    fn residual(&self, t: &Tape<f64>, rho: &Var<f64>) -> Result<Var<f64>> {
        let pred = t.matmul_t(rho, &t.constant_shared(&self.a), false, true)?;
        t.sub(&pred, &t.constant_shared(&self.g))
    }

    /// The residuals of the current parameters, network by network (no tape).
    fn residuals(&self, s: &ParamStore<f64>, spectra: &Spectra<'_>) -> Result<Vec<Vec<f64>>> {
        let t = Tape::new(s.ctx());
        t.set_grad_enabled(false);
        let r = self.residual(&t, &spectra(&t, s)?)?.value().to_f64()?;
        Ok(r.chunks(self.rows()).map(|c| c.to_vec()).collect())
    }

    /// χ² of every network.
    fn chi2(&self, s: &ParamStore<f64>, spectra: &Spectra<'_>) -> Result<Vec<f64>> {
        Ok(self
            .residuals(s, spectra)?
            .iter()
            .map(|r| linalg::dot(r, r))
            .collect())
    }

    /// ∂r/∂θ of every network (rows: residuals; columns: its parameters flattened in name order):
    /// one reverse pass per residual row serves all networks at once, seeded with that row of
    /// every network (their parameters are disjoint).
    fn jacobians(&self, s: &ParamStore<f64>, spectra: &Spectra<'_>) -> Result<Vec<Matrix>> {
        let (nets, rows) = (self.targets.len(), self.rows());
        let names = s.names();
        let sizes: Vec<usize> = names
            .iter()
            .map(|k| s.get(k).map(|t| t.len() / nets))
            .collect::<Result<_>>()?;
        let p: usize = sizes.iter().sum();
        let t = Tape::new(s.ctx());
        let r = self.residual(&t, &spectra(&t, s)?)?;
        let mut jac = vec![Matrix::zeros(rows, p); nets];
        for i in 0..rows {
            let mut e = vec![0.0; nets * rows];
            (0..nets).for_each(|b| e[b * rows + i] = 1.0);
            let seed = s.ctx().from_vec(&[nets, rows], &e)?;
            let grads = t.backward_seeded(&r, seed, i + 1 < rows)?;
            let mut at = i * p;
            for (name, &len) in names.iter().zip(&sizes) {
                if let Some(gr) = grads.get(name) {
                    let gr = gr.to_f64()?;
                    for (b, j) in jac.iter_mut().enumerate() {
                        j.data[at..at + len].copy_from_slice(&gr[b * len..(b + 1) * len]);
                    }
                }
                at += len;
            }
        }
        Ok(jac)
    }
}

/// Every network's parameters flattened in name order.
fn flat_params(s: &ParamStore<f64>, nets: usize) -> Result<Vec<Vec<f64>>> {
    let mut out = vec![Vec::new(); nets];
    for name in s.names() {
        let v = s.get(&name)?.to_f64()?;
        for (o, chunk) in out.iter_mut().zip(v.chunks(v.len() / nets)) {
            o.extend_from_slice(chunk);
        }
    }
    Ok(out)
}

/// A store with `template`'s parameter names and per-network shapes (`template` holds `nets`
/// networks) holding the networks `flat`.
fn store_of(template: &ParamStore<f64>, nets: usize, flat: &[Vec<f64>]) -> Result<ParamStore<f64>> {
    let ctx = template.ctx();
    let mut out = ParamStore::new(ctx);
    let mut at = 0;
    for name in template.names() {
        let mut shape = template.get(&name)?.shape().to_vec();
        let per = shape.iter().product::<usize>() / nets;
        shape[0] = shape[0] / nets * flat.len();
        let v: Vec<f64> = flat
            .iter()
            .flat_map(|f| f[at..at + per].iter().copied())
            .collect();
        at += per;
        out.insert(&name, ctx.from_vec(&shape, &v)?);
    }
    Ok(out)
}

/// Host memory for one group's Jacobians in [`polish_in_groups`].
const JACOBIAN_BYTES: usize = 256 << 20;

/// [`polish`] over groups of networks whose Jacobians fit in `budget` bytes (the networks are
/// independent, so the grouping changes nothing but the memory).
fn polish_in_groups(
    store: &mut ParamStore<f64>,
    spectra: &Spectra<'_>,
    (full, reduced): (&Fit, &Fit),
    (iters, budget): (usize, usize),
    progress: &mut Progress<'_>,
) -> Result<()> {
    let nets = full.targets.len();
    let mut flat = flat_params(store, nets)?;
    let per_net = 8 * reduced.rows() * flat.first().map_or(1, |f| f.len());
    let group = (budget / per_net.max(1)).clamp(1, nets);
    let start = progress.done;
    progress.set_total(start + (nets.div_ceil(group) * iters) as u64);
    for (k, lo) in (0..nets).step_by(group).enumerate() {
        let idx: Vec<usize> = (lo..(lo + group).min(nets)).collect();
        let fits = (&full.select(&idx)?, &reduced.select(&idx)?);
        polish(
            store,
            nets,
            &mut flat[idx[0]..=idx[idx.len() - 1]],
            spectra,
            fits,
            iters,
            progress,
        )?;
        let end = start + ((k + 1) * iters) as u64;
        progress.advance(end.saturating_sub(progress.done));
    }
    *store = store_of(store, nets, &flat)?;
    Ok(())
}

/// Levenberg–Marquardt on χ² in the parameters `theta` of independent networks (flattened as
/// [`flat_params`] gives them; `template` holds `nets` networks of the same shapes), after Adam.
/// Every iteration works on the networks still active only: the Jacobian of their informative
/// residual components (`reduced`, see [`informative`]) comes from one reverse pass per component
/// for all of them, and each network's minimum-norm damped step δ = −Jᵀ(JJᵀ + μI)⁻¹r needs only a
/// small solve (on the host's threads); steps are accepted on the full χ² (`full`), network by
/// network, each with its own damping μ. A network stops once its χ² ≤ τN, τ =
/// [`DISCREPANCY_TAU`] (the discrepancy principle, as for TSVD: fitting further only fits the noise
/// and sharpens peaks), or when no damping improves it.
fn polish(
    template: &ParamStore<f64>,
    nets: usize,
    theta: &mut [Vec<f64>],
    spectra: &Spectra<'_>,
    (full, reduced): (&Fit, &Fit),
    iters: usize,
    progress: &mut Progress<'_>,
) -> Result<()> {
    let target = DISCREPANCY_TAU * full.rows() as f64;
    let host = crate::device::CpuDevice::new();
    let mut chi2 = full.chi2(&store_of(template, nets, theta)?, spectra)?;
    let mut mu = vec![0.0; theta.len()];
    let mut active: Vec<usize> = (0..theta.len()).filter(|&b| chi2[b] > target).collect();
    for _ in 0..iters {
        if active.is_empty() {
            break;
        }
        let (full_a, reduced_a) = (full.select(&active)?, reduced.select(&active)?);
        let mut current: Vec<Vec<f64>> = active.iter().map(|&b| theta[b].clone()).collect();
        let store = store_of(template, nets, &current)?;
        let r = reduced_a.residuals(&store, spectra)?;
        let jac = reduced_a.jacobians(&store, spectra)?;
        let mut normal: Vec<(Matrix, f64)> = vec![(Matrix::zeros(0, 0), 0.0); active.len()];
        host.map_indexed(&mut normal, |i| {
            let jjt = jac[i].gram();
            let m = jjt.rows;
            let scale = (0..m).map(|k| jjt.at(k, k)).sum::<f64>() / m as f64;
            (jjt, scale)
        });
        for (&b, (_, scale)) in active.iter().zip(&normal) {
            if mu[b] == 0.0 {
                mu[b] = 1e-3 * scale;
            }
        }
        let mut trying = vec![true; active.len()];
        let mut improved = vec![false; active.len()];
        while trying.contains(&true) {
            let mut steps: Vec<Option<Result<Vec<f64>>>> =
                (0..active.len()).map(|_| None).collect();
            host.map_indexed(&mut steps, |i| {
                trying[i].then(|| {
                    let mut lhs = normal[i].0.clone();
                    (0..lhs.rows).for_each(|k| lhs.data[k * lhs.rows + k] += mu[active[i]]);
                    linalg::solve(&lhs, &r[i]).map(|y| jac[i].tmul_vec(&y))
                })
            });
            let mut trial = current.clone();
            for (t, step) in trial.iter_mut().zip(steps) {
                if let Some(step) = step {
                    t.iter_mut().zip(step?).for_each(|(x, d)| *x -= d);
                }
            }
            let c = full_a.chi2(&store_of(template, nets, &trial)?, spectra)?;
            for (i, &b) in active.iter().enumerate() {
                if !trying[i] {
                    continue;
                }
                if c[i].is_finite() && c[i] < chi2[b] {
                    improved[i] = (chi2[b] - c[i]) / chi2[b] > 1e-10;
                    chi2[b] = c[i];
                    current[i] = std::mem::take(&mut trial[i]);
                    mu[b] /= 3.0;
                    trying[i] = false;
                } else {
                    mu[b] *= 5.0;
                    trying[i] = mu[b] < 1e12 * normal[i].1.max(1e-300);
                }
            }
        }
        let mut still = Vec::with_capacity(active.len());
        for (i, &b) in active.iter().enumerate() {
            theta[b] = std::mem::take(&mut current[i]);
            if improved[i] && chi2[b] > target {
                still.push(b);
            }
        }
        if still.len() != active.len() {
            // The next iteration's tensors have new sizes: drop this size's pooled buffers.
            template.ctx().release_pooled();
        }
        active = still;
        progress.advance(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polishing the networks in groups of one gives the same bits as polishing them together.
    #[test]
    fn grouped_polish_equals_the_joint_polish() {
        let ctx = Ctx::<f64>::new(Device::Cpu(crate::device::CpuDevice::with_threads(2)));
        let (rows, nw, nets) = (6, 12, 3);
        let mut a = Matrix::zeros(rows, nw);
        for i in 0..rows {
            for j in 0..nw {
                a.data[i * nw + j] = 40.0 / (1.0 + (i + j) as f64);
            }
        }
        let truth: Vec<f64> = (0..nw).map(|j| 1.0 + (j as f64 * 0.7).sin()).collect();
        let targets: Vec<Vec<f64>> = (0..nets)
            .map(|b| {
                a.mul_vec(&truth)
                    .iter()
                    .map(|g| g + b as f64 * 0.3)
                    .collect()
            })
            .collect();
        let full = Fit::new(&ctx, &a, &targets).unwrap();
        let run = |budget: usize, iters: usize| {
            let mut store = ParamStore::new(&ctx);
            init_list_networks(&mut store, &[1, 2, 3], &[0.5, 1.0, 1.5], 4, nw).unwrap();
            let mut quiet = |_: u64, _: u64| {};
            let mut progress = Progress::new(&mut quiet);
            let fits = (&full, &full);
            polish_in_groups(
                &mut store,
                &list_spectra,
                fits,
                (iters, budget),
                &mut progress,
            )
            .unwrap();
            (
                full.chi2(&store, &list_spectra).unwrap(),
                flat_params(&store, nets).unwrap(),
            )
        };
        let (joint_chi2, joint) = run(usize::MAX, 20);
        let (_, grouped) = run(1, 20);
        assert_eq!(joint, grouped);
        let (start, _) = run(usize::MAX, 0);
        for (j, s) in joint_chi2.iter().zip(&start) {
            assert!(*j < 1e-2 * s, "chi2 {s} -> {j}");
        }
    }
}
