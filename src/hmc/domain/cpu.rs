//! A rank's box in host memory, updated by the threads of a [`CpuDevice`]; the functions
//! [`box_kick_drift`] and [`box_densities`] are the CPU twins of `kernels/domain.cu`.

use super::{BoxGeometry, BoxStore, Field};
use crate::action::ScalarCouplings;
use crate::device::CpuDevice;
use crate::error::Result;
use crate::hmc::cpu::check_len;

/// How the threads cut a padded batch: per chain, `count` slabs of `len` padded values from
/// padded index `first` on (axis-0 planes; the whole row in 1D), each with its interior rows at
/// `rows` (offsets from the slab's start).
struct Slabs {
    len: usize,
    count: usize,
    first: usize,
    rows: Vec<usize>,
}

impl Slabs {
    fn of(g: &BoxGeometry) -> Self {
        let l = *g.local.last().unwrap_or(&1);
        let (len, count, first) = match g.local.len() {
            1 => (l, 1, 1),
            _ => (g.strides[0], g.local[0], g.strides[0]),
        };
        let rows = g
            .interior
            .iter()
            .step_by(l)
            .copied()
            .filter(|&b| b < first + len)
            .map(|b| b - first)
            .collect();
        Slabs {
            len,
            count,
            first,
            rows,
        }
    }
}

/// p += kick·F(φ) on every interior site of the padded batches, and with a non-zero `drift`
/// next = φ + drift·p (else `next` is not touched). Per site the neighbour sum of
/// [`crate::hmc::cpu::kick_drift`]: last axis up + down, then each other axis up, down. The
/// halo of φ must hold the neighbours' faces (except along a wrapping last axis).
#[allow(clippy::too_many_arguments)]
pub fn box_kick_drift(
    dev: &CpuDevice,
    g: &BoxGeometry,
    c: &ScalarCouplings,
    phi: &[f64],
    p: &mut [f64],
    next: &mut [f64],
    kick: f64,
    drift: f64,
) -> Result<()> {
    let n = g.chains * g.padded;
    check_len(phi.len().min(p.len()).min(next.len()), n)?;
    let sl = Slabs::of(g);
    let (l, d) = (*g.local.last().unwrap_or(&1), g.strides.len());
    let (rows, strides, wrap_last) = (&sl.rows, &g.strides[..d - 1], g.wrap_last);
    for chain in 0..g.chains {
        let phi = &phi[chain * g.padded..(chain + 1) * g.padded];
        let start = chain * g.padded + sl.first;
        let p = &mut p[start..start + sl.count * sl.len];
        let next = &mut next[start..start + sl.count * sl.len];
        // Slabs over the threads, row by row within a slab so that the loops vectorise.
        dev.for_chunks(sl.len, p, Some(next), |s0, p, next| {
            let Some(next) = next else { return };
            let mut nb = vec![0.0; l];
            for (k, (ps, ns)) in p
                .chunks_mut(sl.len)
                .zip(next.chunks_mut(sl.len))
                .enumerate()
            {
                let base = sl.first + (s0 + k) * sl.len;
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
    Ok(())
}

/// The single-process action density (forward neighbours) of every interior site of the padded
/// φ, written at the site's padded index in `out` (the halo of `out` is not touched).
pub fn box_densities(
    dev: &CpuDevice,
    g: &BoxGeometry,
    c: &ScalarCouplings,
    phi: &[f64],
    out: &mut [f64],
) -> Result<()> {
    check_len(phi.len().min(out.len()), g.chains * g.padded)?;
    let sl = Slabs::of(g);
    let (l, d) = (*g.local.last().unwrap_or(&1), g.strides.len());
    let (rows, strides, wrap_last) = (&sl.rows, &g.strides[..d - 1], g.wrap_last);
    let row_end: Vec<bool> = (0..l).map(|j| g.row_end(j)).collect();
    for chain in 0..g.chains {
        let phi = &phi[chain * g.padded..(chain + 1) * g.padded];
        let start = chain * g.padded + sl.first;
        let out = &mut out[start..start + sl.count * sl.len];
        dev.for_chunks(sl.len, out, None, |s0, part, _| {
            for (k, slab_out) in part.chunks_mut(sl.len).enumerate() {
                let base = sl.first + (s0 + k) * sl.len;
                for &off in rows {
                    for j in 0..l {
                        let i = base + off + j;
                        // The forward neighbour, wrapping within the row when the last axis is
                        // not cut; the single-process forward sum adds 0.0 at the ends of a row.
                        let up = match wrap_last && j + 1 == l {
                            true => phi[base + off],
                            false => phi[i + 1],
                        };
                        let mut f = match row_end[j] {
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
    Ok(())
}

/// A rank's box in host memory.
pub struct CpuBox {
    dev: CpuDevice,
    geom: BoxGeometry,
    faces: Vec<super::Faces>,
    phi: Vec<f64>,
    phi_next: Vec<f64>,
    phi_saved: Vec<f64>,
    /// Momenta, padded like φ (the halo unused), so that a slab of p and of φ_next line up.
    p: Vec<f64>,
}

impl CpuBox {
    /// Allocates the box (a box larger than the host's memory is refused with the fix).
    pub fn new(dev: CpuDevice, geom: BoxGeometry) -> Result<Self> {
        let n = geom.chains * geom.padded;
        crate::device::memory::check_host(
            5 * 8 * n as u128,
            "this rank's box of the decomposed lattice",
            "use fewer chains or more ranks",
        )?;
        Ok(CpuBox {
            dev,
            faces: geom.faces(),
            geom,
            phi: vec![0.0; n],
            phi_next: vec![0.0; n],
            phi_saved: vec![0.0; n],
            p: vec![0.0; n],
        })
    }

    fn field(&self, field: Field) -> &[f64] {
        match field {
            Field::Phi => &self.phi,
            Field::Momenta => &self.p,
        }
    }
}

impl BoxStore for CpuBox {
    fn geometry(&self) -> &BoxGeometry {
        &self.geom
    }

    fn kick_drift(&mut self, c: &ScalarCouplings, kick: f64, drift: f64) -> Result<()> {
        let g = &self.geom;
        box_kick_drift(
            &self.dev,
            g,
            c,
            &self.phi,
            &mut self.p,
            &mut self.phi_next,
            kick,
            drift,
        )?;
        if drift != 0.0 {
            std::mem::swap(&mut self.phi, &mut self.phi_next);
        }
        Ok(())
    }

    fn densities(&mut self, c: &ScalarCouplings) -> Result<Vec<f64>> {
        // φ_next is free between updates: it holds the densities.
        box_densities(&self.dev, &self.geom, c, &self.phi, &mut self.phi_next)?;
        self.geom.interior(&self.phi_next)
    }

    fn interior(&self, field: Field) -> Result<Vec<f64>> {
        self.geom.interior(self.field(field))
    }

    fn set_interior(&mut self, field: Field, values: &[f64]) -> Result<()> {
        let x = match field {
            Field::Phi => &mut self.phi,
            Field::Momenta => &mut self.p,
        };
        self.geom.set_interior(x, values)
    }

    fn pack(&mut self, mu: usize, top: bool, out: &mut [f64]) -> Result<()> {
        let (runs, _) = self.faces[mu].side(top);
        let n = self.faces[mu].sites;
        check_len(out.len(), self.geom.chains * n)?;
        for (chain, out) in self.phi.chunks(self.geom.padded).zip(out.chunks_mut(n)) {
            let mut at = 0;
            for &(s, len) in runs {
                out[at..at + len].copy_from_slice(&chain[s..s + len]);
                at += len;
            }
        }
        Ok(())
    }

    fn unpack(&mut self, mu: usize, top: bool, got: &[f64]) -> Result<()> {
        let (runs, shift) = self.faces[mu].side(top);
        let n = self.faces[mu].sites;
        check_len(got.len(), self.geom.chains * n)?;
        for (chain, got) in self.phi.chunks_mut(self.geom.padded).zip(got.chunks(n)) {
            let mut at = 0;
            for &(s, len) in runs {
                let t = s.wrapping_add_signed(shift);
                chain[t..t + len].copy_from_slice(&got[at..at + len]);
                at += len;
            }
        }
        Ok(())
    }

    fn wrap(&mut self, mu: usize, top: bool) -> Result<()> {
        let (runs, shift) = self.faces[mu].side(top);
        for chain in self.phi.chunks_mut(self.geom.padded) {
            for &(s, len) in runs {
                chain.copy_within(s..s + len, s.wrapping_add_signed(shift));
            }
        }
        Ok(())
    }

    fn save(&mut self) -> Result<()> {
        self.phi_saved.copy_from_slice(&self.phi);
        Ok(())
    }

    fn restore(&mut self, which: &[bool]) -> Result<()> {
        check_len(which.len(), self.geom.chains)?;
        let pv = self.geom.padded;
        for (c, _) in which.iter().enumerate().filter(|(_, &w)| w) {
            self.phi[c * pv..(c + 1) * pv].copy_from_slice(&self.phi_saved[c * pv..(c + 1) * pv]);
        }
        Ok(())
    }
}
