//! The HMC backend of a lattice decomposed over the ranks of a [`Team`] ([`crate::domain`]):
//! each rank holds its box with a one-site halo on every side, exchanges the halo faces with
//! its neighbours before each force (and action) evaluation, draws its momenta from Philox keyed
//! by the global site, and reduces energies and moments in the single-process order
//! ([`OrderedReduction`]). The trajectory — ΔH, every accept/reject decision, the fields — is
//! therefore bit-identical to [`super::cpu::CpuHmc`] running the whole lattice in one process;
//! every rank computes the same totals and takes the same decisions.
//!
//! The arithmetic per site is that of [`super::cpu::kick_drift`] and
//! [`super::cpu::energy_chunks`], in the same order of operations (`tests/domain.rs` checks the
//! bits). An undecomposed axis exchanges with its own rank, which is the periodic wrap.
//!
//! Communication per fused update: two faces per decomposed axis of every chain, 8 bytes per
//! face site; per trajectory two ordered reductions (one all-to-all of the box's values and an
//! all-gather of chunk sums each).

use std::sync::Arc;

use super::cpu::{action_chunk, check_len, kinetic_chunk, moment_chunk};
use super::{fourier::FourierMass, moments_from_flat, split_energies, HmcBackend, SliceMoments};
use crate::action::{Action, ForceLaw, ScalarCouplings};
use crate::device::geometry::sum_chunks;
use crate::device::CpuDevice;
use crate::domain::{Decomposition, OrderedReduction};
use crate::ensemble::Team;
use crate::error::{Error, Result};
use crate::philox;

/// Padded indices of one axis's faces and halos in one chain's padded box.
/// Runs of consecutive padded indices (start, length): a face of an axis other than the last is
/// whole rows, copied as slices.
struct Faces {
    /// Interior sites at the top (x = n − 1), sent up, and at the bottom (x = 0), sent down.
    top: Vec<(usize, usize)>,
    bottom: Vec<(usize, usize)>,
    /// How far the halo below (x = −1) lies under the top face, and the halo above (x = n) over
    /// the bottom face: the runs that fill the halo are the faces' runs shifted by this.
    shift: usize,
    /// Sites per face.
    sites: usize,
}

/// One direction of a halo exchange: the face's runs, where each run lands in the halo, the
/// rank sent to and the rank received from.
type Way<'a> = (
    &'a [(usize, usize)],
    &'a dyn Fn(usize) -> usize,
    usize,
    usize,
);

/// One rank's share of a decomposed HMC batch.
pub struct DomainHmc {
    team: Arc<dyn Team + Send + Sync>,
    dec: Decomposition,
    couplings: ScalarCouplings,
    chains: usize,
    /// Padded strides (extents + 2 per axis) and volume.
    strides: Vec<usize>,
    padded: usize,
    /// Padded index of the first site of every interior row (along the last axis).
    rows: Vec<usize>,
    /// The box cut for threads: `slabs` slabs of `slab` padded values from padded index
    /// `first_slab` on (axis-0 planes; the whole row in 1D), each with its rows at
    /// `slab_rows` (offsets from the slab's start).
    slab: usize,
    slabs: usize,
    first_slab: usize,
    slab_rows: Vec<usize>,
    dev: CpuDevice,
    /// Per site of the box, whether it lies on the global first or last plane of the last axis
    /// (where the single-process forward sum adds 0.0; see `row_neighbour_sums`).
    row_end: Vec<bool>,
    /// Global index of every site of the box.
    sites: Vec<usize>,
    faces: Vec<Faces>,
    phi: Vec<f64>,
    phi_next: Vec<f64>,
    phi_saved: Vec<f64>,
    /// Momenta, padded like φ (the halo unused), so that a slab of p and of φ_next line up.
    p: Vec<f64>,
    /// Whether the halo holds the neighbours' current faces.
    halo_fresh: bool,
    /// Send and receive buffers of the halo exchange (the largest face of every chain).
    out: Vec<f64>,
    got: Vec<f64>,
    energy_plan: OrderedReduction,
    slice_plan: OrderedReduction,
}

impl DomainHmc {
    /// This rank's share of `chains` chains of `action` cut by `grid` over `team`.
    pub fn new(
        action: &dyn Action,
        chains: usize,
        team: Arc<dyn Team + Send + Sync>,
        grid: &[usize],
        dev: CpuDevice,
    ) -> Result<Self> {
        let couplings = action.couplings();
        if couplings.law != ForceLaw::Polynomial {
            return Err(Error::InvalidInput(
                "--decompose runs the polynomial (φ⁴, oscillator) actions; run the XY model on \
                 one process"
                    .into(),
            ));
        }
        let global = action.lattice();
        let dec = Decomposition::new(global, grid, team.rank(), team.size())?;
        let ext: Vec<usize> = dec.local_extents().iter().map(|&n| n + 2).collect();
        let padded: usize = ext.iter().product();
        let n = chains.saturating_mul(padded);
        crate::device::memory::check_host(
            5 * 8 * n as u128,
            "this rank's box of the decomposed lattice",
            "use fewer chains or more ranks",
        )?;
        let mut strides = vec![1; ext.len()];
        for mu in (0..ext.len().saturating_sub(1)).rev() {
            strides[mu] = strides[mu + 1] * ext[mu + 1];
        }
        let interior = interior_sites(dec.local_extents(), &strides);
        let l = *dec.local_extents().last().unwrap_or(&1);
        let last = *global.extents().last().unwrap_or(&1);
        let sites = dec.global_sites(dec.rank());
        let row_end = sites
            .iter()
            .map(|&g| g % last == 0 || g % last == last - 1)
            .collect();
        let faces: Vec<Faces> = (0..ext.len())
            .map(|mu| faces(dec.local_extents(), &strides, &interior, mu))
            .collect();
        let largest = faces.iter().map(|f: &Faces| f.sites).max().unwrap_or(0);
        let (slab, slabs, first_slab) = match ext.len() {
            1 => (l, 1, 1),
            _ => (strides[0], dec.local_extents()[0], strides[0]),
        };
        let slab_rows = interior
            .iter()
            .step_by(l)
            .copied()
            .filter(|&b| b < first_slab + slab)
            .map(|b| b - first_slab)
            .collect();
        let energy_plan = OrderedReduction::new(&dec, chains, global.volume())?;
        let slice_plan = OrderedReduction::new(&dec, chains, global.slice_volume())?;
        Ok(DomainHmc {
            team,
            couplings,
            chains,
            rows: interior.iter().step_by(l).copied().collect(),
            slab,
            slabs,
            first_slab,
            slab_rows,
            dev,
            row_end,
            sites,
            faces,
            strides,
            padded,
            phi: vec![0.0; n],
            phi_next: vec![0.0; n],
            phi_saved: vec![0.0; n],
            p: vec![0.0; n],
            halo_fresh: false,
            out: vec![0.0; chains * largest],
            got: vec![0.0; chains * largest],
            energy_plan,
            slice_plan,
            dec,
        })
    }

    /// Fills every halo from the neighbours (a no-op while it is current).
    fn exchange_halo(&mut self) -> Result<()> {
        if self.halo_fresh {
            return Ok(());
        }
        let pv = self.padded;
        for (mu, f) in self.faces.iter().enumerate() {
            if mu + 1 == self.faces.len() && self.wrap_last() {
                continue;
            }
            let (up, down) = (self.dec.neighbour(mu, true), self.dec.neighbour(mu, false));
            // (face runs, where its halo lies relative to them, to, from): the top face fills the
            // upper neighbour's lower halo, the bottom face the lower neighbour's upper halo.
            let below = |i: usize| i - f.shift;
            let above = |i: usize| i + f.shift;
            let ways: [Way; 2] = [(&f.top, &below, up, down), (&f.bottom, &above, down, up)];
            for (runs, target, to, from) in ways {
                if to == self.dec.rank() {
                    // An undecomposed axis: the periodic wrap within the box.
                    for c in 0..self.chains {
                        let chain = &mut self.phi[c * pv..(c + 1) * pv];
                        for &(s, len) in runs {
                            chain.copy_within(s..s + len, target(s));
                        }
                    }
                    continue;
                }
                let n = f.sites;
                for c in 0..self.chains {
                    let chain = &self.phi[c * pv..(c + 1) * pv];
                    let mut at = c * n;
                    for &(s, len) in runs {
                        self.out[at..at + len].copy_from_slice(&chain[s..s + len]);
                        at += len;
                    }
                }
                let total = self.chains * n;
                self.team
                    .exchange(&self.out[..total], to, &mut self.got[..total], from)?;
                for c in 0..self.chains {
                    let chain = &mut self.phi[c * pv..(c + 1) * pv];
                    let mut at = c * n;
                    for &(s, len) in runs {
                        let t = target(s);
                        chain[t..t + len].copy_from_slice(&self.got[at..at + len]);
                        at += len;
                    }
                }
            }
        }
        self.halo_fresh = true;
        Ok(())
    }

    /// Whether the last (contiguous) axis is not cut: its rows then wrap within the box in the
    /// update itself, and its halo is never filled.
    fn wrap_last(&self) -> bool {
        self.dec.grid().last() == Some(&1)
    }

    /// Exchanges the halo now, current or not (to time the communication alone).
    pub fn refresh_halo(&mut self) -> Result<()> {
        self.halo_fresh = false;
        self.exchange_halo()
    }

    /// Bytes this rank sends to other ranks per halo exchange (faces along decomposed axes;
    /// an undecomposed axis wraps within the rank).
    pub fn halo_bytes(&self) -> usize {
        let faces: usize = (0..self.faces.len())
            .filter(|&mu| self.dec.grid()[mu] > 1)
            .map(|mu| 2 * self.faces[mu].sites)
            .sum();
        8 * self.chains * faces
    }

    /// The box's values of a padded array `x` without halo, `[chain][box site]`.
    fn interior(&self, x: &[f64]) -> Vec<f64> {
        let l = *self.dec.local_extents().last().unwrap_or(&1);
        (0..self.chains)
            .flat_map(|c| {
                self.rows
                    .iter()
                    .flat_map(move |&b| &x[c * self.padded + b..c * self.padded + b + l])
            })
            .copied()
            .collect()
    }

    /// Writes `[chain][box site]` values into the interior of the padded array `x`.
    fn set_interior(&self, x: &mut [f64], values: &[f64]) {
        let l = *self.dec.local_extents().last().unwrap_or(&1);
        for (c, chain) in values.chunks(self.sites.len().max(1)).enumerate() {
            for (&b, row) in self.rows.iter().zip(chain.chunks(l)) {
                let at = c * self.padded + b;
                x[at..at + l].copy_from_slice(row);
            }
        }
    }

    /// The whole batch `[chain][site]` of the padded array `x` of every rank (collective).
    fn gathered(&self, x: &[f64]) -> Result<Vec<f64>> {
        let all = self.team.all_gather(&self.interior(x));
        self.dec.assemble(&all, self.chains)
    }

    /// Writes this rank's part of the whole batch `global` into the padded array `x`.
    fn scatter_into(&self, x: &mut [f64], global: &[f64]) -> Result<()> {
        check_len(global.len(), self.chains * self.dec.global().volume())?;
        let mine = self.dec.scatter(global)?;
        self.set_interior(x, &mine);
        Ok(())
    }

    /// Per box site of every chain, the single-process action density (forward neighbours).
    fn densities(&mut self) -> Result<Vec<f64>> {
        self.exchange_halo()?;
        let (l, d) = (
            *self.dec.local_extents().last().unwrap_or(&1),
            self.strides.len(),
        );
        let (first, slab, pv, slabs) = (self.first_slab, self.slab, self.padded, self.slabs);
        let wrap_last = self.wrap_last();
        let (rows, strides, c) = (&self.slab_rows, &self.strides[..d - 1], &self.couplings);
        let row_end = &self.row_end;
        let per_slab = rows.len() * l;
        for chain in 0..self.chains {
            let phi = &self.phi[chain * pv..(chain + 1) * pv];
            let start = chain * pv + first;
            let out = &mut self.phi_next[start..start + slabs * slab];
            self.dev.for_chunks(slab, out, None, |s0, part, _| {
                for (k, slab_out) in part.chunks_mut(slab).enumerate() {
                    let base = first + (s0 + k) * slab;
                    for (r, &off) in rows.iter().enumerate() {
                        for j in 0..l {
                            let i = base + off + j;
                            // The single-process forward sum adds 0.0 at the ends of a row.
                            // The forward neighbour, wrapping within the row when the last
                            // axis is not cut.
                            let up = match wrap_last && j + 1 == l {
                                true => phi[base + off],
                                false => phi[i + 1],
                            };
                            let mut f = match row_end[(s0 + k) * per_slab + r * l + j] {
                                true => up + 0.0,
                                false => up,
                            };
                            for &st in strides {
                                f += phi[i + st];
                            }
                            slab_out[off + j] = c.site_action(phi[i], f);
                        }
                    }
                }
            })?;
        }
        // φ_next is free between updates: it held the densities.
        Ok(self.interior(&self.phi_next))
    }
}

/// Padded indices of the interior sites, in the box's row-major order.
fn interior_sites(local: &[usize], strides: &[usize]) -> Vec<usize> {
    let n: usize = local.iter().product();
    (0..n)
        .map(|s| {
            let mut rest = s;
            let mut at = 0;
            for mu in (0..local.len()).rev() {
                at += (rest % local[mu] + 1) * strides[mu];
                rest /= local[mu];
            }
            at
        })
        .collect()
}

/// The faces and halos of axis `mu`.
fn faces(local: &[usize], strides: &[usize], interior: &[usize], mu: usize) -> Faces {
    let (n, st) = (local[mu], strides[mu]);
    let at = |i: usize| (i / st) % (n + 2);
    let top: Vec<usize> = interior.iter().copied().filter(|&i| at(i) == n).collect();
    let bottom: Vec<usize> = interior.iter().copied().filter(|&i| at(i) == 1).collect();
    Faces {
        sites: top.len(),
        top: runs(&top),
        bottom: runs(&bottom),
        shift: n * st,
    }
}

/// Increasing indices as runs of consecutive ones (start, length).
fn runs(idx: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &i in idx {
        match out.last_mut() {
            Some((s, len)) if *s + *len == i => *len += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

impl HmcBackend for DomainHmc {
    fn refresh_momenta(&mut self, seed: u64, chain0: u32, step: u32, stream: u32) -> Result<()> {
        let key = philox::key_from_seed(seed);
        let mut fresh = vec![0.0; self.chains * self.sites.len()];
        for (c, chain) in fresh.chunks_mut(self.sites.len().max(1)).enumerate() {
            let word = chain0 + c as u32;
            // Sites 2k and 2k+1 share one Philox block (as in `philox::fill_normals`).
            let mut cached: Option<(usize, (f64, f64))> = None;
            for (x, &g) in chain.iter_mut().zip(&self.sites) {
                let pair = match cached {
                    Some((k, z)) if k == g / 2 => z,
                    _ => {
                        let block = [(g / 2) as u32, word, step, stream];
                        let z = philox::normal_pair(philox::philox4x32_10(block, key));
                        cached = Some((g / 2, z));
                        z
                    }
                };
                *x = if g % 2 == 0 { pair.0 } else { pair.1 };
            }
        }
        let mut p = std::mem::take(&mut self.p);
        self.set_interior(&mut p, &fresh);
        self.p = p;
        Ok(())
    }

    fn kick_drift(&mut self, kick: f64, drift: f64) -> Result<()> {
        self.exchange_halo()?;
        let (l, d) = (
            *self.dec.local_extents().last().unwrap_or(&1),
            self.strides.len(),
        );
        let (first, slab, pv, slabs) = (self.first_slab, self.slab, self.padded, self.slabs);
        let wrap_last = self.wrap_last();
        let (rows, strides, c) = (&self.slab_rows, &self.strides[..d - 1], &self.couplings);
        for chain in 0..self.chains {
            let phi = &self.phi[chain * pv..(chain + 1) * pv];
            let start = chain * pv + first;
            let p = &mut self.p[start..start + slabs * slab];
            let next = &mut self.phi_next[start..start + slabs * slab];
            // Slabs (axis-0 planes) over the threads, row by row within a slab so that the
            // loops vectorise; per site the neighbour sum in `row_neighbour_sums`'s order: last
            // axis up + down, then each other axis up, down.
            self.dev.for_chunks(slab, p, Some(next), |s0, p, next| {
                let Some(next) = next else { return };
                let mut nb = vec![0.0; l];
                for (k, (ps, ns)) in p.chunks_mut(slab).zip(next.chunks_mut(slab)).enumerate() {
                    let base = first + (s0 + k) * slab;
                    for &off in rows {
                        let b = base + off;
                        for ((a, &up), &dn) in nb.iter_mut().zip(&phi[b + 1..]).zip(&phi[b - 1..]) {
                            *a = up + dn;
                        }
                        if wrap_last {
                            // The row wraps within the box (no last-axis halo is kept):
                            // `row_neighbour_sums`' ends.
                            let row = &phi[b..b + l];
                            nb[0] = row[1 % l] + row[l - 1];
                            nb[l - 1] = row[0] + row[l.saturating_sub(2)];
                        }
                        for &st in strides {
                            let (ups, dns) = (&phi[b + st..], &phi[b - st..]);
                            for ((a, &up), &dn) in nb.iter_mut().zip(ups).zip(dns) {
                                *a += up;
                                *a += dn;
                            }
                        }
                        let x = &phi[b..b + l];
                        let pr = &mut ps[off..off + l];
                        for ((pi, &xi), &n) in pr.iter_mut().zip(x).zip(&nb) {
                            *pi += kick * c.site_force(xi, n);
                        }
                        if drift != 0.0 {
                            let nr = &mut ns[off..off + l];
                            for ((ni, &xi), &pi) in nr.iter_mut().zip(x).zip(pr.iter()) {
                                *ni = xi + drift * pi;
                            }
                        }
                    }
                }
            })?;
        }
        if drift != 0.0 {
            std::mem::swap(&mut self.phi, &mut self.phi_next);
            self.halo_fresh = false;
        }
        Ok(())
    }

    fn energies(&mut self) -> Result<(Vec<f64>, Vec<f64>)> {
        let dens = self.densities()?;
        let p = self.interior(&self.p);
        let flat = self
            .energy_plan
            .chunk_results(self.team.as_ref(), &[&p, &dens], 2, |x| {
                vec![kinetic_chunk(x[0]), action_chunk(x[1])]
            });
        let per = self.energy_plan.chunks_per_segment();
        Ok(split_energies(&sum_chunks(&flat, 2, per)))
    }

    fn save_fields(&mut self) -> Result<()> {
        self.phi_saved.copy_from_slice(&self.phi);
        Ok(())
    }

    fn restore_fields(&mut self, which: &[bool]) -> Result<()> {
        check_len(which.len(), self.chains)?;
        let pv = self.padded;
        for (c, _) in which.iter().enumerate().filter(|(_, &w)| w) {
            self.phi[c * pv..(c + 1) * pv].copy_from_slice(&self.phi_saved[c * pv..(c + 1) * pv]);
        }
        self.halo_fresh = false;
        Ok(())
    }

    fn slice_moments(&mut self) -> Result<SliceMoments> {
        let phi = self.interior(&self.phi);
        let flat = self
            .slice_plan
            .chunk_results(self.team.as_ref(), &[&phi], 3, |x| {
                (0..3).map(|k| moment_chunk(x[0], k)).collect()
            });
        let per = self.slice_plan.chunks_per_segment();
        Ok(moments_from_flat(&sum_chunks(&flat, 3, per)))
    }

    /// Collective: every rank must call it.
    fn fields(&self) -> Result<Vec<f64>> {
        self.gathered(&self.phi)
    }

    fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        let mut x = std::mem::take(&mut self.phi);
        let set = self.scatter_into(&mut x, phi);
        self.phi = x;
        self.halo_fresh = false;
        set
    }

    /// Collective: every rank must call it.
    fn momenta(&self) -> Result<Vec<f64>> {
        self.gathered(&self.p)
    }

    fn set_momenta(&mut self, p: &[f64]) -> Result<()> {
        let mut x = std::mem::take(&mut self.p);
        let set = self.scatter_into(&mut x, p);
        self.p = x;
        set
    }

    fn set_fourier_mass(&mut self, _mass: FourierMass) -> Result<()> {
        Err(Error::InvalidInput(
            "Fourier acceleration needs the whole lattice's FFT: run fa-hmc without --decompose"
                .into(),
        ))
    }
}
