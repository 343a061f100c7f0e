//! CPU twins of `kernels/scalar_hmc.cu` and the CPU HMC backend.
//!
//! The fused update works row by row (a row is a line along the last, contiguous axis), so every
//! inner loop runs over slices and vectorises; rows are split across threads.
//! Reductions are per time slice, each summed sequentially in site order: the result does not
//! depend on the number of threads.

use crate::action::{Action, ForceLaw, ScalarCouplings};
use crate::device::geometry::{chunks_per_segment, sum_chunks, REDUCE_CHUNK};
use crate::device::CpuDevice;
use crate::error::{Error, Result};
use crate::hmc::fourier::{FourierMass, Power};
use crate::hmc::{HmcBackend, SliceMoments};
use crate::lattice::Lattice;
use crate::philox;
use crate::theory::checkerboard::Steps;

/// Adds, for each site of the row starting at local index `base` of one chain, the sum of φ over
/// its `both`-directional (2d) or forward (d) neighbours into `acc`.
fn row_neighbour_sums(
    lat: &Lattice,
    strides: &[usize],
    phi: &[f64],
    base: usize,
    both: bool,
    acc: &mut [f64],
) {
    let d = lat.dim();
    let l = acc.len();
    let row = &phi[base..base + l];
    // Last axis: shifts within the row, wrapping at the ends.
    acc[0] = row[1 % l] + if both { row[l - 1] } else { 0.0 };
    acc[l - 1] = row[0] + if both { row[l.saturating_sub(2)] } else { 0.0 };
    if l > 2 {
        let inner = &mut acc[1..l - 1];
        if both {
            for ((a, &up), &dn) in inner.iter_mut().zip(&row[2..]).zip(&row[..l - 2]) {
                *a = up + dn;
            }
        } else {
            inner.copy_from_slice(&row[2..]);
        }
    }
    // Other axes: whole neighbouring rows.
    for (&st, &lm) in strides.iter().zip(lat.extents()).take(d - 1) {
        let x = (base / st) % lm;
        let up = if x == lm - 1 {
            base - (lm - 1) * st
        } else {
            base + st
        };
        for (a, &u) in acc.iter_mut().zip(&phi[up..up + l]) {
            *a += u;
        }
        if both {
            let dn = if x == 0 {
                base + (lm - 1) * st
            } else {
                base - st
            };
            for (a, &v) in acc.iter_mut().zip(&phi[dn..dn + l]) {
                *a += v;
            }
        }
    }
}

/// CPU twin of `kick_drift_dD` / `kick_dD` (and their `cos_` forms for the cosine law): p += kick·F(φ); then `phi_new = φ + drift·p` when given.
/// `phi`, `p`, `phi_new` hold a batch `[chain][site]` of equal lengths, whole chains of `lat`.
#[allow(clippy::too_many_arguments)]
pub fn kick_drift(
    dev: &CpuDevice,
    lat: &Lattice,
    c: &ScalarCouplings,
    phi: &[f64],
    p: &mut [f64],
    phi_new: Option<&mut [f64]>,
    kick: f64,
    drift: f64,
) -> Result<()> {
    let (v, l) = (lat.volume(), lat.extents()[lat.dim() - 1]);
    check_batch(lat, phi.len())?;
    check_len(p.len(), phi.len())?;
    let strides = lat.strides();
    let steps = Steps::new(lat);
    let (two_u2, four_u4) = (2.0 * c.u2, 4.0 * c.u4);
    dev.for_chunks(l, p, phi_new, |first_row, p, mut new| {
        let mut acc = vec![0.0; l];
        for (r, pr) in p.chunks_mut(l).enumerate() {
            let start = (first_row + r) * l;
            let (chain, base) = (start / v, start % v);
            let phic = &phi[chain * v..(chain + 1) * v];
            let x = &phic[base..base + l];
            match c.law {
                ForceLaw::Polynomial => {
                    row_neighbour_sums(lat, &strides, phic, base, true, &mut acc);
                    for ((pi, &xi), &nb) in pr.iter_mut().zip(x).zip(&acc) {
                        *pi += kick * (c.hop * nb - xi * (two_u2 + four_u4 * xi * xi));
                    }
                }
                ForceLaw::Cosine => {
                    for (k, pi) in pr.iter_mut().enumerate() {
                        *pi += kick * cos_terms(&steps, phic, base + k, c.hop, true);
                    }
                }
            }
            if let Some(new) = new.as_deref_mut() {
                for ((ni, &xi), &pi) in new[r * l..(r + 1) * l].iter_mut().zip(x).zip(pr.iter()) {
                    *ni = xi + drift * pi;
                }
            }
        }
    })
}

/// The cosine law at site s (`cos_force` / `cos_action` in `kernels/scalar.cuh`, the same
/// order): the force −hop Σ_{±μ} sin(θ − θ_n) when `force`, else the action density
/// −hop Σ_μ cos(θ − θ_{s+μ̂}).
#[inline(always)]
fn cos_terms(steps: &Steps, th: &[f64], s: usize, hop: f64, force: bool) -> f64 {
    let (x, mut acc) = (th[s], 0.0);
    for mu in 0..steps.dim() {
        let xc = steps.coord(s, mu);
        if force {
            acc += (x - th[steps.step(s, xc, mu, true)]).sin();
            acc += (x - th[steps.step(s, xc, mu, false)]).sin();
        } else {
            acc += (x - th[steps.step(s, xc, mu, true)]).cos();
        }
    }
    -hop * acc
}

/// Refuses a batch that is not a whole number of `lat`'s chains.
fn check_batch(lat: &Lattice, n: usize) -> Result<()> {
    if !n.is_multiple_of(lat.volume()) {
        return Err(Error::InvalidInput(format!(
            "a batch of {n} values is not a whole number of {}-site chains",
            lat.volume()
        )));
    }
    Ok(())
}

/// CPU twin of `energy_chunks_dD` (and `energy_chunks_cos_dD`): per chunk of [`REDUCE_CHUNK`] sites of each chain,
/// (Σ½p², Σ site action density), returned as `[2*chunk + {0,1}]`. `scratch` must hold a batch.
pub fn energy_chunks(
    dev: &CpuDevice,
    lat: &Lattice,
    c: &ScalarCouplings,
    phi: &[f64],
    p: &[f64],
    scratch: &mut [f64],
) -> Result<Vec<f64>> {
    let (v, l) = (lat.volume(), lat.extents()[lat.dim() - 1]);
    check_batch(lat, phi.len())?;
    check_len(p.len(), phi.len())?;
    check_len(scratch.len(), phi.len())?;
    let strides = lat.strides();
    let steps = Steps::new(lat);
    dev.for_chunks(l, scratch, None, |first_row, dens, _| {
        let mut fwd = vec![0.0; l];
        for (r, dr) in dens.chunks_mut(l).enumerate() {
            let start = (first_row + r) * l;
            let (chain, base) = (start / v, start % v);
            let phic = &phi[chain * v..(chain + 1) * v];
            match c.law {
                ForceLaw::Polynomial => {
                    row_neighbour_sums(lat, &strides, phic, base, false, &mut fwd);
                    for ((di, &xi), &f) in dr.iter_mut().zip(&phic[base..base + l]).zip(&fwd) {
                        *di = c.site_action(xi, f);
                    }
                }
                ForceLaw::Cosine => {
                    for (k, di) in dr.iter_mut().enumerate() {
                        *di = cos_terms(&steps, phic, base + k, c.hop, false);
                    }
                }
            }
        }
    })?;
    let per = chunks_per_segment(v);
    let mut out = vec![0.0; 2 * per * (phi.len() / v)];
    let dens: &[f64] = scratch;
    dev.map_indexed(&mut out, |i| {
        let range = chunk_range(i / 2, v, per);
        if i % 2 == 0 {
            kinetic_chunk(&p[range])
        } else {
            action_chunk(&dens[range])
        }
    });
    Ok(out)
}

/// Σ½p² over one reduction chunk, in site order (shared with [`crate::hmc::domain`], whose
/// decomposed sums must be these, bit for bit).
pub(crate) fn kinetic_chunk(p: &[f64]) -> f64 {
    p.iter().fold(0.0, |s, &x| s + 0.5 * x * x)
}

/// Σ of the action densities of one reduction chunk, in site order.
pub(crate) fn action_chunk(dens: &[f64]) -> f64 {
    // An explicit fold from +0.0 (what `Sum` starts from has changed between Rust versions):
    // the GPU's ordered chunk sums (`kernels/domain.cu`) start there too.
    dens.iter().fold(0.0, |s, &x| s + x)
}

/// Σφ (`k` = 0), Σφ² (1) or Σφ⁴ (2) over one reduction chunk, in site order.
pub(crate) fn moment_chunk(s: &[f64], k: usize) -> f64 {
    match k {
        0 => s.iter().fold(0.0, |a, &x| a + x),
        1 => s.iter().fold(0.0, |a, &x| a + x * x),
        _ => s.iter().fold(0.0, |a, &x| a + x * x * x * x),
    }
}

/// The sites of chunk `block` of a segmented reduction (`chunk_range` in `kernels/common.cuh`).
fn chunk_range(block: usize, seg_len: usize, per: usize) -> std::ops::Range<usize> {
    let (seg, c) = (block / per, block % per);
    let start = seg * seg_len + c * REDUCE_CHUNK;
    start..seg * seg_len + ((c + 1) * REDUCE_CHUNK).min(seg_len)
}

/// CPU twin of `moment_chunks`: per chunk of each contiguous segment of `seg_len` values,
/// (Σφ, Σφ², Σφ⁴), returned as `[3*chunk + k]`.
pub fn moment_chunks(dev: &CpuDevice, phi: &[f64], seg_len: usize) -> Result<Vec<f64>> {
    if seg_len == 0 || !phi.len().is_multiple_of(seg_len) {
        return Err(Error::InvalidInput(format!(
            "{} values do not split into segments of {seg_len}",
            phi.len()
        )));
    }
    let per = chunks_per_segment(seg_len);
    let mut flat = vec![0.0; 3 * per * (phi.len() / seg_len)];
    dev.map_indexed(&mut flat, |i| {
        moment_chunk(&phi[chunk_range(i / 3, seg_len, per)], i % 3)
    });
    Ok(flat)
}

/// CPU twin of `restore_chains`: φ = saved on every chain (of `volume` sites) whose flag is non-zero.
pub fn restore_chains(phi: &mut [f64], saved: &[f64], flags: &[u8], volume: usize) -> Result<()> {
    check_len(saved.len(), phi.len())?;
    check_len(flags.len().saturating_mul(volume), phi.len())?;
    for ((dst, src), &f) in phi.chunks_mut(volume).zip(saved.chunks(volume)).zip(flags) {
        if f != 0 {
            dst.copy_from_slice(src);
        }
    }
    Ok(())
}

/// The CPU HMC backend: field, ping-pong buffer, momenta and a saved copy for rejections.
pub struct CpuHmc {
    dev: CpuDevice,
    lattice: Lattice,
    couplings: ScalarCouplings,
    phi: Vec<f64>,
    phi_next: Vec<f64>,
    phi_saved: Vec<f64>,
    p: Vec<f64>,
    scratch: Vec<f64>,
    /// Fourier acceleration, with its buffer for the filtered force and momentum.
    mass: Option<(FourierMass, Vec<f64>)>,
}

impl CpuHmc {
    /// Allocates a zero batch for `chains` chains of `action`.
    pub fn new(dev: CpuDevice, action: &dyn Action, chains: usize) -> Self {
        let n = chains * action.lattice().volume();
        CpuHmc {
            dev,
            lattice: action.lattice().clone(),
            couplings: action.couplings(),
            phi: vec![0.0; n],
            phi_next: vec![0.0; n],
            phi_saved: vec![0.0; n],
            p: vec![0.0; n],
            scratch: vec![0.0; n],
            mass: None,
        }
    }

    /// The Fourier-accelerated update: p += kick·F(φ); φ_next = φ + drift·M⁻¹p.
    fn filtered_kick_drift(&mut self, kick: f64, drift: f64) -> Result<()> {
        let (dev, lat) = (&self.dev, &self.lattice);
        kick_drift(
            dev,
            lat,
            &self.couplings,
            &self.phi,
            &mut self.p,
            None,
            kick,
            0.0,
        )?;
        if drift == 0.0 {
            return Ok(());
        }
        let Some((mass, buf)) = self.mass.as_mut() else {
            return Err(Error::InvalidInput("no Fourier mass installed".into()));
        };
        buf.copy_from_slice(&self.p);
        mass.apply(dev, buf, Power::Inverse)?;
        super::fft::axpy(&mut self.phi_next, &self.phi, drift, buf);
        std::mem::swap(&mut self.phi, &mut self.phi_next);
        Ok(())
    }

    /// Per chain ½ pᵀM⁻¹p (Fourier acceleration), each summed in site order.
    fn filtered_kinetic(&mut self) -> Result<Vec<f64>> {
        let Some((mass, buf)) = self.mass.as_mut() else {
            return Err(Error::InvalidInput("no Fourier mass installed".into()));
        };
        buf.copy_from_slice(&self.p);
        mass.apply(&self.dev, buf, Power::Inverse)?;
        let v = self.lattice.volume();
        Ok(self
            .p
            .chunks(v)
            .zip(buf.chunks(v))
            .map(|(p, q)| 0.5 * p.iter().zip(q).map(|(a, b)| a * b).sum::<f64>())
            .collect())
    }
}

impl HmcBackend for CpuHmc {
    fn refresh_momenta(&mut self, seed: u64, chain0: u32, step: u32, stream: u32) -> Result<()> {
        let v = self.lattice.volume();
        // Whole chains per task: each chain's stream depends only on (seed, chain, step, stream).
        self.dev
            .for_chunks(v, &mut self.p, None, |first_chain, part, _| {
                for (k, chain) in part.chunks_mut(v).enumerate() {
                    let global = chain0 + (first_chain + k) as u32;
                    philox::fill_normals(chain, seed, global, step, stream);
                }
            })?;
        // Fourier acceleration draws p = M^{1/2}η.
        if let Some((mass, _)) = &self.mass {
            mass.apply(&self.dev, &mut self.p, Power::Half)?;
        }
        Ok(())
    }

    fn kick_drift(&mut self, kick: f64, drift: f64) -> Result<()> {
        if self.mass.is_some() {
            return self.filtered_kick_drift(kick, drift);
        }
        if drift == 0.0 {
            kick_drift(
                &self.dev,
                &self.lattice,
                &self.couplings,
                &self.phi,
                &mut self.p,
                None,
                kick,
                0.0,
            )?;
        } else {
            kick_drift(
                &self.dev,
                &self.lattice,
                &self.couplings,
                &self.phi,
                &mut self.p,
                Some(&mut self.phi_next),
                kick,
                drift,
            )?;
            std::mem::swap(&mut self.phi, &mut self.phi_next);
        }
        Ok(())
    }

    fn energies(&mut self) -> Result<(Vec<f64>, Vec<f64>)> {
        let flat = energy_chunks(
            &self.dev,
            &self.lattice,
            &self.couplings,
            &self.phi,
            &self.p,
            &mut self.scratch,
        )?;
        let per = chunks_per_segment(self.lattice.volume());
        let (kinetic, action) = super::split_energies(&sum_chunks(&flat, 2, per));
        if self.mass.is_some() {
            return Ok((self.filtered_kinetic()?, action));
        }
        Ok((kinetic, action))
    }

    fn save_fields(&mut self) -> Result<()> {
        self.phi_saved.copy_from_slice(&self.phi);
        Ok(())
    }

    fn restore_fields(&mut self, which: &[bool]) -> Result<()> {
        let flags: Vec<u8> = which.iter().map(|&w| w as u8).collect();
        restore_chains(
            &mut self.phi,
            &self.phi_saved,
            &flags,
            self.lattice.volume(),
        )
    }

    fn slice_moments(&mut self) -> Result<SliceMoments> {
        let seg = self.lattice.slice_volume();
        let flat = moment_chunks(&self.dev, &self.phi, seg)?;
        Ok(super::moments_from_flat(&sum_chunks(
            &flat,
            3,
            chunks_per_segment(seg),
        )))
    }

    fn set_fourier_mass(&mut self, mass: FourierMass) -> Result<()> {
        crate::device::memory::check_host(
            8 * self.phi.len() as u128,
            "the Fourier-acceleration buffer",
            "use fewer chains or a smaller lattice",
        )?;
        self.mass = Some((mass, vec![0.0; self.phi.len()]));
        Ok(())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.phi.clone())
    }

    fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        check_len(phi.len(), self.phi.len())?;
        self.phi.copy_from_slice(phi);
        Ok(())
    }

    fn momenta(&self) -> Result<Vec<f64>> {
        Ok(self.p.clone())
    }

    fn set_momenta(&mut self, p: &[f64]) -> Result<()> {
        check_len(p.len(), self.p.len())?;
        self.p.copy_from_slice(p);
        Ok(())
    }
}

pub(crate) fn check_len(got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "expected {want} values, got {got}"
        )))
    }
}
