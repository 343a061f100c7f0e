//! The HMC backend of a lattice decomposed over the ranks of a [`Team`] ([`crate::domain`]):
//! each rank holds its box with a one-site halo on every side, exchanges the halo faces with
//! its neighbours before each force (and action) evaluation, draws its momenta from Philox keyed
//! by the global site, and reduces energies and moments in the single-process order
//! ([`OrderedReduction`]). The trajectory — ΔH, every accept/reject decision, the fields — is
//! therefore bit-identical to [`super::cpu::CpuHmc`] running the whole lattice in one process;
//! every rank computes the same totals and takes the same decisions.
//!
//! Where the box lives is the rank's device: host memory and threads ([`cpu`]) or one GPU
//! ([`cuda`], `kernels/domain.cu`, one GPU per rank). Both compute every site in the order of
//! operations of [`super::cpu::kick_drift`] and [`super::cpu::energy_chunks`] (the GPU's kernels
//! without FMA contraction), so a GPU rank's trajectory is the CPU's too (`tests/domain.rs`
//! checks the bits on the CPU, the kernel harness checks the kernels against their twins). An
//! undecomposed axis exchanges with its own rank, which is the periodic wrap.
//!
//! Halo faces travel through host memory over the team (MPI), or between GPUs directly where
//! the rank has an NCCL link ([`cuda::NcclLink`], feature `nccl`). So do the reductions' values:
//! with a link, the plan of [`OrderedReduction`] runs on the GPUs (an NCCL all-to-all of the
//! box's values, each chunk summed in site order by one GPU thread, an NCCL all-gather of the
//! chunk sums), never a collective's own sum, whose order is not fixed: one process's order of
//! summation is what makes every decomposition give the same bits.
//!
//! Communication per fused update: two faces per decomposed axis of every chain, 8 bytes per
//! face site; per trajectory two ordered reductions (one all-to-all of the box's values and an
//! all-gather of chunk sums each).

pub mod cpu;
pub mod cuda;

use std::sync::Arc;

use super::cpu::{action_chunk, check_len, kinetic_chunk, moment_chunk};
use super::{fourier::FourierMass, moments_from_flat, split_energies, HmcBackend, SliceMoments};
use crate::action::{Action, ForceLaw};
use crate::device::geometry::sum_chunks;
use crate::device::Device;
use crate::domain::{Decomposition, OrderedReduction};
use crate::ensemble::Team;
use crate::error::{Error, Result};
use crate::philox;

/// The padded box of one rank: `chains` chains of the box's interior sites, each with a one-site
/// halo on both sides of every axis, stored `[chain][padded site]` row-major (last axis fastest).
#[derive(Clone, Debug)]
pub struct BoxGeometry {
    /// Interior extents.
    local: Vec<usize>,
    /// Padded strides (extents + 2 per axis) and padded sites per chain.
    strides: Vec<usize>,
    padded: usize,
    chains: usize,
    /// Whether the last axis is not cut: its rows wrap within the box and its halo is unused.
    wrap_last: bool,
    /// Global coordinate of the box's first plane along the last axis, and that axis's extent.
    last_offset: usize,
    last_global: usize,
    /// Padded index of every interior site, in the box's row-major order.
    interior: Vec<usize>,
}

impl BoxGeometry {
    /// The box of `local` extents whose first plane along the last axis is the global plane
    /// `last_offset` of `last_global`; `wrap_last` when the last axis is not cut.
    pub fn new(
        local: &[usize],
        last_offset: usize,
        last_global: usize,
        chains: usize,
        wrap_last: bool,
    ) -> Result<Self> {
        let l = *local.last().unwrap_or(&0);
        if local.is_empty() || local.len() > 4 || local.contains(&0) || chains == 0 {
            return Err(Error::InvalidInput(format!(
                "a box needs 1 to 4 non-zero extents and chains >= 1, got {local:?} and {chains}"
            )));
        }
        if last_offset + l > last_global || (wrap_last && l != last_global) {
            return Err(Error::InvalidInput(format!(
                "a box of {l} planes from plane {last_offset} does not fit a last axis of \
                 {last_global} (wrapping: {wrap_last})"
            )));
        }
        let ext: Vec<usize> = local.iter().map(|&n| n + 2).collect();
        let padded = ext
            .iter()
            .try_fold(chains, |a, &n| a.checked_mul(n))
            .filter(|&n| n < 1 << 31)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{chains} chains of a {local:?} box exceed 2^31 padded sites: use more ranks \
                     or fewer chains"
                ))
            })?
            / chains;
        let mut strides = vec![1; ext.len()];
        for mu in (0..ext.len() - 1).rev() {
            strides[mu] = strides[mu + 1] * ext[mu + 1];
        }
        let interior = interior_sites(local, &strides);
        Ok(BoxGeometry {
            local: local.to_vec(),
            strides,
            padded,
            chains,
            wrap_last,
            last_offset,
            last_global,
            interior,
        })
    }

    /// Interior sites per chain.
    pub fn sites(&self) -> usize {
        self.interior.len()
    }

    /// Padded sites per chain.
    pub fn padded(&self) -> usize {
        self.padded
    }

    /// Chains.
    pub fn chains(&self) -> usize {
        self.chains
    }

    /// Interior extents.
    pub fn local(&self) -> &[usize] {
        &self.local
    }

    /// Padded strides.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Whether the last axis wraps within the box.
    pub fn wraps_last(&self) -> bool {
        self.wrap_last
    }

    /// Global coordinate of the box's first plane along the last axis, and that axis's extent.
    pub fn last_axis(&self) -> (usize, usize) {
        (self.last_offset, self.last_global)
    }

    /// Padded index of every interior site, in the box's row-major order.
    pub fn interior_indices(&self) -> &[usize] {
        &self.interior
    }

    /// Whether the site at position `j` along the last axis lies on the global first or last
    /// plane of that axis (where the single-process forward sum adds 0.0; see
    /// `row_neighbour_sums`).
    fn row_end(&self, j: usize) -> bool {
        let x = self.last_offset + j;
        x == 0 || x + 1 == self.last_global
    }

    /// The interior values of the padded batch `x`, `[chain][box site]`.
    pub fn interior(&self, x: &[f64]) -> Result<Vec<f64>> {
        check_len(x.len(), self.chains * self.padded)?;
        let l = *self.local.last().unwrap_or(&1);
        let rows: Vec<usize> = self.interior.iter().step_by(l).copied().collect();
        Ok(x.chunks(self.padded)
            .flat_map(|chain| rows.iter().flat_map(move |&b| &chain[b..b + l]))
            .copied()
            .collect())
    }

    /// Writes `[chain][box site]` values into the interior of the padded batch `x`.
    pub fn set_interior(&self, x: &mut [f64], values: &[f64]) -> Result<()> {
        check_len(x.len(), self.chains * self.padded)?;
        check_len(values.len(), self.chains * self.sites())?;
        let l = *self.local.last().unwrap_or(&1);
        for (chain, vals) in x.chunks_mut(self.padded).zip(values.chunks(self.sites())) {
            for (&b, row) in self.interior.iter().step_by(l).zip(vals.chunks(l)) {
                chain[b..b + l].copy_from_slice(row);
            }
        }
        Ok(())
    }

    /// The faces and halos of every axis, in axis order.
    pub fn faces(&self) -> Vec<Faces> {
        (0..self.local.len())
            .map(|mu| self.axis_faces(mu))
            .collect()
    }

    /// The faces and halos of axis `mu` (< the dimension).
    fn axis_faces(&self, mu: usize) -> Faces {
        let (n, st) = (self.local[mu], self.strides[mu]);
        let at = |i: usize| (i / st) % (n + 2);
        let pick = |x: usize| -> Vec<usize> {
            self.interior
                .iter()
                .copied()
                .filter(|&i| at(i) == x)
                .collect()
        };
        let (top, bottom) = (pick(n), pick(1));
        Faces {
            sites: top.len(),
            top: runs(&top),
            bottom: runs(&bottom),
            shift: n * st,
        }
    }
}

/// Padded indices of one axis's faces as runs of consecutive indices (start, length): a face of
/// an axis other than the last is whole rows, copied as slices.
#[derive(Clone, Debug)]
pub struct Faces {
    /// Interior sites at the top (x = n − 1), sent up, and at the bottom (x = 0), sent down.
    pub top: Vec<(usize, usize)>,
    /// See `top`.
    pub bottom: Vec<(usize, usize)>,
    /// How far the halo below (x = −1) lies under the top face, and the halo above (x = n) over
    /// the bottom face: the runs that fill a halo are the other face's runs shifted by this.
    pub shift: usize,
    /// Sites per face.
    pub sites: usize,
}

impl Faces {
    /// The runs of the top (`top`) or bottom face, and the signed distance from that face to the
    /// halo it fills on the receiving rank (below the box for the top face).
    pub fn side(&self, top: bool) -> (&[(usize, usize)], isize) {
        match top {
            true => (&self.top, -(self.shift as isize)),
            false => (&self.bottom, self.shift as isize),
        }
    }
}

/// What a decomposed reduction sums per chunk of [`crate::device::geometry::REDUCE_CHUNK`]
/// global values: the single process's per-chunk functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkSums {
    /// (Σ½p², Σ action density), from the momenta and the densities.
    Energies,
    /// (Σφ, Σφ², Σφ⁴) per time slice, from the fields.
    Moments,
}

impl ChunkSums {
    /// Inputs per value.
    pub fn inputs(self) -> usize {
        match self {
            ChunkSums::Energies => 2,
            ChunkSums::Moments => 1,
        }
    }

    /// Results per chunk.
    pub fn width(self) -> usize {
        match self {
            ChunkSums::Energies => 2,
            ChunkSums::Moments => 3,
        }
    }

    /// One chunk's results from its values of every input (`inputs()` slices), in site order:
    /// the CPU twin of `chunk_sums` in `kernels/domain.cu`.
    pub fn chunk(self, x: &[&[f64]]) -> Result<Vec<f64>> {
        match (self, x) {
            (ChunkSums::Energies, [p, dens]) => Ok(vec![kinetic_chunk(p), action_chunk(dens)]),
            (ChunkSums::Moments, [phi]) => Ok((0..3).map(|k| moment_chunk(phi, k)).collect()),
            _ => Err(Error::InvalidInput(format!(
                "{self:?} sums {} inputs per chunk, {} given",
                self.inputs(),
                x.len()
            ))),
        }
    }
}

/// Which padded batch of a box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The fields φ.
    Phi,
    /// The momenta.
    Momenta,
}

/// Where one rank's padded box lives and how its per-site work runs: host memory and threads
/// ([`cpu::CpuBox`]) or one GPU ([`cuda::CudaBox`]). Faces are named by axis and side (`top`:
/// the x = n − 1 face, which fills the halo below the box of the rank above).
pub trait BoxStore: Send {
    /// The geometry.
    fn geometry(&self) -> &BoxGeometry;
    /// p += kick·F(φ) on every interior site, then with a non-zero `drift` φ ← φ + drift·p (the
    /// halo of the new φ is stale).
    fn kick_drift(
        &mut self,
        couplings: &crate::action::ScalarCouplings,
        kick: f64,
        drift: f64,
    ) -> Result<()>;
    /// The single-process action density of every interior site, `[chain][box site]`.
    fn densities(&mut self, couplings: &crate::action::ScalarCouplings) -> Result<Vec<f64>>;
    /// The interior of `field`, `[chain][box site]`.
    fn interior(&self, field: Field) -> Result<Vec<f64>>;
    /// Writes `[chain][box site]` values into the interior of `field`.
    fn set_interior(&mut self, field: Field, values: &[f64]) -> Result<()>;
    /// φ's face (`mu`, `top`) of every chain into `out`, `[chain][face site]`.
    fn pack(&mut self, mu: usize, top: bool, out: &mut [f64]) -> Result<()>;
    /// `got` (the neighbour's face (`mu`, `top`)) into the halo of φ that face fills.
    fn unpack(&mut self, mu: usize, top: bool, got: &[f64]) -> Result<()>;
    /// The periodic wrap of an axis that is not cut: φ's face (`mu`, `top`) into its own halo.
    fn wrap(&mut self, mu: usize, top: bool) -> Result<()>;
    /// Sends φ's face (`mu`, `top`) to rank `to` and fills the halo from rank `from` without the
    /// host, where the store has a direct link (NCCL); `false` when it has none.
    fn exchange_direct(
        &mut self,
        _mu: usize,
        _top: bool,
        _to: usize,
        _from: usize,
    ) -> Result<bool> {
        Ok(false)
    }
    /// Every rank's chunk results of `sums` by `plan`, in chunk order, with the values moved and
    /// summed where the boxes live (collective); `None` when the store has no direct link (the
    /// host then reduces over the team).
    fn reduce_direct(
        &mut self,
        _sums: ChunkSums,
        _plan: &OrderedReduction,
        _couplings: &crate::action::ScalarCouplings,
    ) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }
    /// φ_saved ← φ.
    fn save(&mut self) -> Result<()>;
    /// φ ← φ_saved on every chain whose flag is set.
    fn restore(&mut self, which: &[bool]) -> Result<()>;
    /// Waits for the queued work.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

/// One rank's share of a decomposed HMC batch.
pub struct DomainHmc {
    team: Arc<dyn Team + Send + Sync>,
    dec: Decomposition,
    couplings: crate::action::ScalarCouplings,
    chains: usize,
    store: Box<dyn BoxStore>,
    /// Sites per face of every axis.
    face_sites: Vec<usize>,
    /// Global index of every site of the box.
    sites: Vec<usize>,
    /// Whether the halo holds the neighbours' current faces.
    halo_fresh: bool,
    /// Send and receive buffers of a host-staged halo exchange (the largest face of every chain).
    out: Vec<f64>,
    got: Vec<f64>,
    energy_plan: OrderedReduction,
    slice_plan: OrderedReduction,
}

impl DomainHmc {
    /// This rank's share of `chains` chains of `action` cut by `grid` over `team`, its box in the
    /// memory of `device` (the host's threads, or one GPU).
    pub fn new(
        action: &dyn Action,
        chains: usize,
        team: Arc<dyn Team + Send + Sync>,
        grid: &[usize],
        device: &Device,
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
        let sites = dec.global_sites(dec.rank());
        let last = *global.extents().last().unwrap_or(&1);
        let geom = BoxGeometry::new(
            dec.local_extents(),
            sites.first().map_or(0, |&g| g % last),
            last,
            chains,
            dec.grid().last() == Some(&1),
        )?;
        let face_sites: Vec<usize> = geom.faces().iter().map(|f| f.sites).collect();
        let largest = chains * face_sites.iter().copied().max().unwrap_or(0);
        // Collective: GPUs link directly only when every rank's box is on a GPU.
        let all_gpus = team.all_ok(matches!(device, Device::Cuda(_)));
        let store: Box<dyn BoxStore> = match device {
            Device::Cpu(d) => Box::new(cpu::CpuBox::new(d.clone(), geom)?),
            Device::Cuda(d) => Box::new(cuda::CudaBox::new(
                d.clone(),
                geom,
                all_gpus.then_some(team.as_ref()),
            )?),
        };
        let energy_plan = OrderedReduction::new(&dec, chains, global.volume())?;
        let slice_plan = OrderedReduction::new(&dec, chains, global.slice_volume())?;
        Ok(DomainHmc {
            team,
            couplings,
            chains,
            store,
            face_sites,
            sites,
            halo_fresh: false,
            out: vec![0.0; largest],
            got: vec![0.0; largest],
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
        for mu in 0..self.face_sites.len() {
            if mu + 1 == self.face_sites.len() && self.store.geometry().wrap_last {
                // The rows wrap within the box in the update itself.
                continue;
            }
            let (up, down) = (self.dec.neighbour(mu, true), self.dec.neighbour(mu, false));
            // The top face fills the upper neighbour's lower halo, the bottom face the lower
            // neighbour's upper halo.
            for (top, to, from) in [(true, up, down), (false, down, up)] {
                if to == self.dec.rank() {
                    self.store.wrap(mu, top)?;
                } else if !self.store.exchange_direct(mu, top, to, from)? {
                    let n = self.chains * self.face_sites[mu];
                    self.store.pack(mu, top, &mut self.out[..n])?;
                    self.team
                        .exchange(&self.out[..n], to, &mut self.got[..n], from)?;
                    self.store.unpack(mu, top, &self.got[..n])?;
                }
            }
        }
        self.halo_fresh = true;
        Ok(())
    }

    /// Exchanges the halo now, current or not (to time the communication alone).
    pub fn refresh_halo(&mut self) -> Result<()> {
        self.halo_fresh = false;
        self.exchange_halo()?;
        self.store.synchronize()
    }

    /// Bytes this rank sends to other ranks per halo exchange (faces along decomposed axes;
    /// an undecomposed axis wraps within the rank).
    pub fn halo_bytes(&self) -> usize {
        let faces: usize = (0..self.face_sites.len())
            .filter(|&mu| self.dec.grid()[mu] > 1)
            .map(|mu| 2 * self.face_sites[mu])
            .sum();
        8 * self.chains * faces
    }

    /// Every chunk's results of `sums` in the single process's order (collective): where the
    /// boxes live when they are linked directly, else through the host over the team.
    fn reduce(&mut self, sums: ChunkSums) -> Result<Vec<f64>> {
        let plan = match sums {
            ChunkSums::Energies => &self.energy_plan,
            ChunkSums::Moments => &self.slice_plan,
        };
        if let Some(flat) = self.store.reduce_direct(sums, plan, &self.couplings)? {
            return Ok(flat);
        }
        let inputs = match sums {
            ChunkSums::Energies => vec![
                self.store.interior(Field::Momenta)?,
                self.store.densities(&self.couplings)?,
            ],
            ChunkSums::Moments => vec![self.store.interior(Field::Phi)?],
        };
        let local: Vec<&[f64]> = inputs.iter().map(Vec::as_slice).collect();
        // The plan hands every chunk `inputs()` slices, so `chunk` cannot refuse them.
        let nan = vec![f64::NAN; sums.width()];
        Ok(
            plan.chunk_results(self.team.as_ref(), &local, sums.width(), |x| {
                sums.chunk(x).unwrap_or_else(|_| nan.clone())
            }),
        )
    }

    /// The whole batch `[chain][site]` of `field` of every rank (collective).
    fn gathered(&self, field: Field) -> Result<Vec<f64>> {
        let all = self.team.all_gather(&self.store.interior(field)?);
        self.dec.assemble(&all, self.chains)
    }

    /// Writes this rank's part of the whole batch `global` into `field`.
    fn scatter_into(&mut self, field: Field, global: &[f64]) -> Result<()> {
        check_len(global.len(), self.chains * self.dec.global().volume())?;
        let mine = self.dec.scatter(global)?;
        self.store.set_interior(field, &mine)
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
        // Drawn on the host for GPU boxes too: the Box–Muller transform's log and sin/cos on a
        // GPU need not give the host's bits, and the momenta must be one process's. It costs one
        // copy of the box per trajectory (not per MD step).
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
        self.store.set_interior(Field::Momenta, &fresh)
    }

    fn kick_drift(&mut self, kick: f64, drift: f64) -> Result<()> {
        self.exchange_halo()?;
        self.store.kick_drift(&self.couplings, kick, drift)?;
        if drift != 0.0 {
            self.halo_fresh = false;
        }
        Ok(())
    }

    fn energies(&mut self) -> Result<(Vec<f64>, Vec<f64>)> {
        self.exchange_halo()?;
        let flat = self.reduce(ChunkSums::Energies)?;
        let per = self.energy_plan.chunks_per_segment();
        Ok(split_energies(&sum_chunks(&flat, 2, per)))
    }

    fn save_fields(&mut self) -> Result<()> {
        self.store.save()
    }

    fn restore_fields(&mut self, which: &[bool]) -> Result<()> {
        check_len(which.len(), self.chains)?;
        self.store.restore(which)?;
        self.halo_fresh = false;
        Ok(())
    }

    fn slice_moments(&mut self) -> Result<SliceMoments> {
        let flat = self.reduce(ChunkSums::Moments)?;
        let per = self.slice_plan.chunks_per_segment();
        Ok(moments_from_flat(&sum_chunks(&flat, 3, per)))
    }

    /// Collective: every rank must call it.
    fn fields(&self) -> Result<Vec<f64>> {
        self.gathered(Field::Phi)
    }

    fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        self.halo_fresh = false;
        self.scatter_into(Field::Phi, phi)
    }

    /// Collective: every rank must call it.
    fn momenta(&self) -> Result<Vec<f64>> {
        self.gathered(Field::Momenta)
    }

    fn set_momenta(&mut self, p: &[f64]) -> Result<()> {
        self.scatter_into(Field::Momenta, p)
    }

    fn set_fourier_mass(&mut self, _mass: FourierMass) -> Result<()> {
        Err(Error::InvalidInput(
            "Fourier acceleration needs the whole lattice's FFT: run fa-hmc without --decompose"
                .into(),
        ))
    }

    fn synchronize(&self) -> Result<()> {
        self.store.synchronize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sums_need_their_inputs_and_give_the_sums() {
        let x = [1.0, -2.0, 3.0];
        assert_eq!(ChunkSums::Moments.chunk(&[&x]).unwrap(), [2.0, 14.0, 98.0]);
        assert_eq!(ChunkSums::Energies.chunk(&[&x, &x]).unwrap(), [7.0, 2.0]);
        assert!(ChunkSums::Energies.chunk(&[&x]).is_err());
        assert!(ChunkSums::Moments.chunk(&[]).is_err());
    }

    #[test]
    fn impossible_boxes_are_refused() {
        assert!(BoxGeometry::new(&[], 0, 4, 1, true).is_err());
        assert!(BoxGeometry::new(&[2, 0], 0, 4, 1, false).is_err());
        assert!(BoxGeometry::new(&[2, 2], 0, 2, 0, true).is_err());
        assert!(BoxGeometry::new(&[2, 3], 2, 4, 1, false).is_err());
        assert!(BoxGeometry::new(&[2, 3], 0, 6, 1, true).is_err());
        assert!(BoxGeometry::new(&[1, 1, 1, 1, 1], 0, 1, 1, true).is_err());
        assert!(BoxGeometry::new(&[1 << 16, 1 << 16], 0, 1 << 16, 1, true).is_err());
        let g = BoxGeometry::new(&[2, 3], 3, 6, 2, false).unwrap();
        assert_eq!((g.sites(), g.padded(), g.faces().len()), (6, 20, 2));
        // A face of axis 0 is a row of 3; of axis 1 a column of 2.
        assert_eq!(
            g.faces().iter().map(|f| f.sites).collect::<Vec<_>>(),
            [3, 2]
        );
    }
}
