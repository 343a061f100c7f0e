//! A rank's box on one GPU: the kernels of `kernels/domain.cu`, twins of [`super::cpu`]. The
//! halo faces are gathered into a staging buffer on the device and travel either through the
//! host over the team (MPI) or, with the `nccl` feature and NCCL present on every rank, from GPU
//! to GPU ([`NcclLink`]). The reductions follow the same link: over NCCL the values move and are
//! summed on the GPUs in the single process's order; without it the interior goes to the host.

use cudarc::driver::{CudaFunction, CudaSlice, DeviceRepr, PushKernelArg};

use super::{BoxGeometry, BoxStore, ChunkSums, Field};
use crate::action::ScalarCouplings;
use crate::device::cuda::DOMAIN;
use crate::device::{geometry, CudaDevice, Device};
use crate::domain::OrderedReduction;
use crate::ensemble::Team;
use crate::error::Result;
use crate::hmc::cpu::check_len;
use crate::hmc::cuda::GpuCouplings;

/// The box's geometry as the kernels receive it (`struct BoxGeom` in `kernels/domain.cu`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BoxGeom {
    ext: [i32; 4],
    stride: [i32; 4],
    padded: u32,
    sites: u32,
    chains: u32,
    wrap_last: i32,
    last_offset: i32,
    last_global: i32,
}

// SAFETY: plain `repr(C)` integers laid out as `struct BoxGeom` in the kernel source.
unsafe impl DeviceRepr for BoxGeom {}

impl From<&BoxGeometry> for BoxGeom {
    /// [`BoxGeometry::new`] keeps chains × padded sites below 2^31, so every value fits.
    fn from(g: &BoxGeometry) -> Self {
        let mut b = BoxGeom {
            ext: [1; 4],
            stride: [1; 4],
            padded: g.padded as u32,
            sites: g.sites() as u32,
            chains: g.chains as u32,
            wrap_last: g.wrap_last as i32,
            last_offset: g.last_offset as i32,
            last_global: g.last_global as i32,
        };
        for (mu, (&n, &st)) in g.local.iter().zip(&g.strides).enumerate() {
            b.ext[mu] = n as i32;
            b.stride[mu] = st as i32;
        }
        b
    }
}

/// Runs of padded indices as one index per site, for the gather and scatter kernels.
fn indices(runs: &[(usize, usize)]) -> Vec<u32> {
    runs.iter()
        .flat_map(|&(s, len)| (s..s + len).map(|i| i as u32))
        .collect()
}

/// One face of the box on the device: its sites' padded indices and the distance to the halo
/// it fills on the receiving rank.
struct DeviceFace {
    idx: CudaSlice<u32>,
    shift: i32,
}

/// The loaded box kernels and the geometry they receive; each method is one launch.
struct BoxKernels {
    dev: CudaDevice,
    gpu: BoxGeom,
    chains: usize,
    kick_drift: CudaFunction,
    kick: CudaFunction,
    densities: CudaFunction,
    gather: CudaFunction,
    scatter: CudaFunction,
    wrap: CudaFunction,
    restore: CudaFunction,
    reduce_pack: CudaFunction,
    reduce_place: CudaFunction,
    chunk_sums: CudaFunction,
}

impl BoxKernels {
    fn new(dev: &CudaDevice, geom: &BoxGeometry) -> Result<Self> {
        let d = geom.local.len();
        let f = |name: &str| dev.function(&DOMAIN, name);
        Ok(BoxKernels {
            dev: dev.clone(),
            gpu: BoxGeom::from(geom),
            chains: geom.chains,
            kick_drift: f(&format!("box_kick_drift_d{d}"))?,
            kick: f(&format!("box_kick_d{d}"))?,
            densities: f(&format!("box_densities_d{d}"))?,
            gather: f("box_gather")?,
            scatter: f("box_scatter")?,
            wrap: f("box_wrap")?,
            restore: f("box_restore")?,
            reduce_pack: f("reduce_pack")?,
            reduce_place: f("reduce_place")?,
            chunk_sums: f("chunk_sums")?,
        })
    }

    fn padded_len(&self) -> usize {
        self.chains * self.gpu.padded as usize
    }

    fn compact_len(&self) -> usize {
        self.chains * self.gpu.sites as usize
    }

    /// p += kick·F(φ), and with a non-zero `drift` φ_next = φ + drift·p.
    fn kick_drift(
        &self,
        c: &ScalarCouplings,
        phi: &CudaSlice<f64>,
        p: &mut CudaSlice<f64>,
        next: &mut CudaSlice<f64>,
        kick: f64,
        drift: f64,
    ) -> Result<()> {
        let n = self.padded_len();
        check_len(phi.len().min(p.len()).min(next.len()), n)?;
        let cfg = geometry::elementwise(self.compact_len())?;
        let couplings = GpuCouplings::from(*c);
        let s = self.dev.stream();
        if drift == 0.0 {
            let mut b = s.launch_builder(&self.kick);
            b.arg(phi).arg(p).arg(&self.gpu).arg(&couplings).arg(&kick);
            // SAFETY: matches box_kick_dD; φ and p hold chains·padded values (checked).
            unsafe { b.launch(cfg) }?;
        } else {
            let mut b = s.launch_builder(&self.kick_drift);
            b.arg(phi)
                .arg(p)
                .arg(next)
                .arg(&self.gpu)
                .arg(&couplings)
                .arg(&kick)
                .arg(&drift);
            // SAFETY: matches box_kick_drift_dD; every buffer holds chains·padded values.
            unsafe { b.launch(cfg) }?;
        }
        Ok(())
    }

    /// The action density of every interior site into `out`, `[chain][box site]`.
    fn densities(
        &self,
        c: &ScalarCouplings,
        phi: &CudaSlice<f64>,
        out: &mut CudaSlice<f64>,
    ) -> Result<()> {
        check_len(phi.len(), self.padded_len())?;
        check_len(out.len().min(self.compact_len()), self.compact_len())?;
        let couplings = GpuCouplings::from(*c);
        let mut b = self.dev.stream().launch_builder(&self.densities);
        b.arg(phi).arg(out).arg(&self.gpu).arg(&couplings);
        // SAFETY: matches box_densities_dD; the lengths were checked above.
        unsafe { b.launch(geometry::elementwise(self.compact_len())?) }?;
        Ok(())
    }

    /// out[c·n + k] = x[c·padded + idx[k]] for every chain (n = idx.len()).
    fn gather(
        &self,
        x: &CudaSlice<f64>,
        idx: &CudaSlice<u32>,
        out: &mut CudaSlice<f64>,
    ) -> Result<()> {
        let total = idx.len() * self.chains;
        check_len(x.len(), self.padded_len())?;
        check_len(out.len().min(total), total)?;
        let (n, padded, chains) = (idx.len() as u32, self.gpu.padded, self.gpu.chains);
        let mut b = self.dev.stream().launch_builder(&self.gather);
        b.arg(x).arg(out).arg(idx).arg(&n).arg(&padded).arg(&chains);
        // SAFETY: matches box_gather; the lengths were checked, and every index is a padded
        // site of one chain (BoxGeometry's interior and faces).
        unsafe { b.launch(geometry::elementwise(total)?) }?;
        Ok(())
    }

    /// x[c·padded + idx[k] + shift] = values[c·n + k] for every chain.
    fn scatter(
        &self,
        x: &mut CudaSlice<f64>,
        idx: &CudaSlice<u32>,
        shift: i32,
        values: &CudaSlice<f64>,
    ) -> Result<()> {
        let total = idx.len() * self.chains;
        check_len(x.len(), self.padded_len())?;
        check_len(values.len().min(total), total)?;
        let (n, padded, chains) = (idx.len() as u32, self.gpu.padded, self.gpu.chains);
        let mut b = self.dev.stream().launch_builder(&self.scatter);
        b.arg(x)
            .arg(values)
            .arg(idx)
            .arg(&n)
            .arg(&padded)
            .arg(&chains)
            .arg(&shift);
        // SAFETY: matches box_scatter; the lengths were checked, and idx + shift is an interior
        // or halo site of the same chain (shift 0, or a face's distance to its halo).
        unsafe { b.launch(geometry::elementwise(total)?) }?;
        Ok(())
    }

    /// x[c·padded + idx[k] + shift] = x[c·padded + idx[k]]: a face into its own halo.
    fn wrap(&self, x: &mut CudaSlice<f64>, face: &DeviceFace) -> Result<()> {
        check_len(x.len(), self.padded_len())?;
        let (n, padded, chains) = (face.idx.len() as u32, self.gpu.padded, self.gpu.chains);
        let mut b = self.dev.stream().launch_builder(&self.wrap);
        b.arg(x)
            .arg(&face.idx)
            .arg(&n)
            .arg(&padded)
            .arg(&chains)
            .arg(&face.shift);
        // SAFETY: matches box_wrap; the face's sites and their halo lie within each chain.
        unsafe { b.launch(geometry::elementwise(face.idx.len() * self.chains)?) }?;
        Ok(())
    }

    /// φ = saved on every chain whose flag is set.
    fn restore(
        &self,
        phi: &mut CudaSlice<f64>,
        saved: &CudaSlice<f64>,
        flags: &CudaSlice<u8>,
    ) -> Result<()> {
        check_len(phi.len().min(saved.len()), self.padded_len())?;
        check_len(flags.len(), self.chains)?;
        let (padded, chains) = (self.gpu.padded, self.gpu.chains);
        let mut b = self.dev.stream().launch_builder(&self.restore);
        b.arg(phi).arg(saved).arg(flags).arg(&padded).arg(&chains);
        // SAFETY: matches box_restore; the lengths were checked above.
        unsafe { b.launch(geometry::elementwise(self.padded_len())?) }?;
        Ok(())
    }
}

impl BoxKernels {
    /// The values `[chain][box site]` of the plan's inputs (`b` unused with one input) in the
    /// order they are sent, interleaved.
    fn reduce_pack(
        &self,
        a: &CudaSlice<f64>,
        b: &CudaSlice<f64>,
        plan: &mut DevicePlan,
    ) -> Result<()> {
        let (n, k) = (plan.order.len(), plan.inputs);
        check_len(a.len().min(b.len()), self.compact_len())?;
        check_len(plan.send.len(), n * k)?;
        let (n32, k32) = (n as u32, k as u32);
        let mut l = self.dev.stream().launch_builder(&self.reduce_pack);
        l.arg(a)
            .arg(b)
            .arg(&mut plan.send)
            .arg(&plan.order)
            .arg(&n32)
            .arg(&k32);
        // SAFETY: matches reduce_pack; the order indexes the box's values (the plan's
        // construction), and `send` holds n·k values (checked).
        unsafe { l.launch(geometry::elementwise(n)?) }?;
        Ok(())
    }

    /// The received values into the span in global order, then this rank's chunk sums into
    /// `plan.mine`.
    fn reduce_sum(&self, plan: &mut DevicePlan, sums: ChunkSums) -> Result<()> {
        let (n, k, span) = (plan.place.len(), plan.inputs, plan.span);
        check_len(plan.got.len(), n * k)?;
        check_len(plan.ordered.len(), span * k)?;
        let (n32, k32, span32) = (n as u32, k as u32, span as u32);
        let mut l = self.dev.stream().launch_builder(&self.reduce_place);
        l.arg(&plan.got)
            .arg(&mut plan.ordered)
            .arg(&plan.place)
            .arg(&n32)
            .arg(&k32)
            .arg(&span32);
        // SAFETY: matches reduce_place; every place is below the span (the plan's construction).
        unsafe { l.launch(geometry::elementwise(n)?) }?;
        let chunks = plan.bounds.len() / 2;
        let width = sums.width();
        check_len(plan.mine.len().min(chunks * width), chunks * width)?;
        let kind = u32::from(sums == ChunkSums::Moments);
        let chunks32 = chunks as u32;
        let mut l = self.dev.stream().launch_builder(&self.chunk_sums);
        l.arg(&plan.ordered)
            .arg(&mut plan.mine)
            .arg(&plan.bounds)
            .arg(&chunks32)
            .arg(&span32)
            .arg(&kind);
        // SAFETY: matches chunk_sums; the bounds lie within the span, `mine` holds a result per
        // chunk and width (checked).
        unsafe { l.launch(geometry::elementwise(chunks * width)?) }?;
        Ok(())
    }
}

/// An [`OrderedReduction`] on the device: its index lists and buffers, uploaded once.
struct DevicePlan {
    inputs: usize,
    order: CudaSlice<u32>,
    place: CudaSlice<u32>,
    /// This rank's chunks as (begin, end) pairs in its span.
    bounds: CudaSlice<u32>,
    /// Values (times `inputs`) sent to and received from each rank: read by the NCCL link only.
    #[cfg_attr(not(feature = "nccl"), allow(dead_code))]
    counts_out: Vec<usize>,
    #[cfg_attr(not(feature = "nccl"), allow(dead_code))]
    counts_in: Vec<usize>,
    owned: Vec<usize>,
    span: usize,
    send: CudaSlice<f64>,
    got: CudaSlice<f64>,
    ordered: CudaSlice<f64>,
    /// This rank's chunk results, padded with zeros to the most chunks any rank owns (an NCCL
    /// all-gather moves equal counts).
    mine: CudaSlice<f64>,
    all: CudaSlice<f64>,
}

impl DevicePlan {
    fn new(dev: &CudaDevice, plan: &OrderedReduction, sums: ChunkSums) -> Result<Self> {
        let s = dev.stream();
        let l = plan.layout();
        let u32s = |v: &mut dyn Iterator<Item = usize>| -> Result<CudaSlice<u32>> {
            let v: Vec<u32> = v.map(|i| i as u32).collect();
            Ok(s.clone_htod(&v)?)
        };
        let k = sums.inputs();
        let span = l.chunks.last().map_or(0, |c| c.end);
        let most = l.owned.iter().copied().max().unwrap_or(0);
        let width = sums.width();
        Ok(DevicePlan {
            inputs: k,
            order: u32s(&mut l.send_order.iter().copied())?,
            place: u32s(&mut l.place.iter().copied())?,
            bounds: u32s(&mut l.chunks.iter().flat_map(|c| [c.start, c.end]))?,
            counts_out: l.counts_out.to_vec(),
            counts_in: l.counts_in.to_vec(),
            owned: l.owned.to_vec(),
            span,
            send: s.alloc_zeros(k * l.send_order.len().max(1))?,
            got: s.alloc_zeros(k * l.place.len().max(1))?,
            ordered: s.alloc_zeros(k * span.max(1))?,
            mine: s.alloc_zeros(most * width)?,
            all: s.alloc_zeros(l.owned.len() * most * width)?,
        })
    }

    /// Every rank's results, unpadded, in chunk order.
    fn results(&self, dev: &CudaDevice, width: usize) -> Result<Vec<f64>> {
        let all = dev.stream().clone_dtoh(&self.all)?;
        let most = self.owned.iter().copied().max().unwrap_or(0) * width;
        Ok(all
            .chunks(most.max(1))
            .zip(&self.owned)
            .flat_map(|(part, &n)| part[..n * width].iter().copied())
            .collect())
    }
}

/// A rank's box on one GPU.
pub struct CudaBox {
    k: BoxKernels,
    geom: BoxGeometry,
    phi: CudaSlice<f64>,
    phi_next: CudaSlice<f64>,
    phi_saved: CudaSlice<f64>,
    p: CudaSlice<f64>,
    interior: CudaSlice<u32>,
    /// Per axis, the top and the bottom face.
    faces: Vec<[DeviceFace; 2]>,
    /// Compact `[chain][site]` buffers, as large as the interior (a face is smaller).
    stage_out: CudaSlice<f64>,
    stage_in: CudaSlice<f64>,
    flags: CudaSlice<u8>,
    link: Option<NcclLink>,
    /// The reduction plans on the device (energies, moments), made on first use.
    plans: [Option<DevicePlan>; 2],
}

impl CudaBox {
    /// Allocates the box on `dev` and, given the `team` of ranks whose boxes are all on GPUs,
    /// with the `nccl` feature and NCCL on every rank, opens the GPU-to-GPU link (collective over
    /// that team: every rank calls it).
    pub fn new(dev: CudaDevice, geom: BoxGeometry, team: Option<&dyn Team>) -> Result<Self> {
        let n = geom.chains * geom.padded;
        let compact = geom.chains * geom.sites();
        crate::device::memory::check(
            &Device::Cuda(dev.clone()),
            8 * (5 * n + 2 * compact) as u128,
            "this rank's box of the decomposed lattice",
            "use fewer chains or more ranks",
        )?;
        let s = dev.stream().clone();
        let mut faces = Vec::with_capacity(geom.local.len());
        for fc in geom.faces() {
            let side = |top: bool| -> Result<DeviceFace> {
                let (runs, shift) = fc.side(top);
                Ok(DeviceFace {
                    idx: s.clone_htod(&indices(runs))?,
                    shift: shift as i32,
                })
            };
            faces.push([side(true)?, side(false)?]);
        }
        let interior: Vec<u32> = geom.interior.iter().map(|&i| i as u32).collect();
        Ok(CudaBox {
            k: BoxKernels::new(&dev, &geom)?,
            phi: s.alloc_zeros(n)?,
            phi_next: s.alloc_zeros(n)?,
            phi_saved: s.alloc_zeros(n)?,
            p: s.alloc_zeros(n)?,
            interior: s.clone_htod(&interior)?,
            faces,
            stage_out: s.alloc_zeros(compact)?,
            stage_in: s.alloc_zeros(compact)?,
            flags: s.alloc_zeros(geom.chains)?,
            link: match team {
                Some(team) => NcclLink::open(&dev, team)?,
                None => None,
            },
            plans: [None, None],
            geom,
        })
    }
}

impl BoxStore for CudaBox {
    fn geometry(&self) -> &BoxGeometry {
        &self.geom
    }

    fn kick_drift(&mut self, c: &ScalarCouplings, kick: f64, drift: f64) -> Result<()> {
        self.k
            .kick_drift(c, &self.phi, &mut self.p, &mut self.phi_next, kick, drift)?;
        if drift != 0.0 {
            std::mem::swap(&mut self.phi, &mut self.phi_next);
        }
        Ok(())
    }

    fn densities(&mut self, c: &ScalarCouplings) -> Result<Vec<f64>> {
        self.k.densities(c, &self.phi, &mut self.stage_out)?;
        let n = self.k.compact_len();
        Ok(self.k.dev.stream().clone_dtoh(&self.stage_out.slice(..n))?)
    }

    fn interior(&self, field: Field) -> Result<Vec<f64>> {
        let s = self.k.dev.stream();
        let mut out = s.alloc_zeros(self.k.compact_len())?;
        let x = match field {
            Field::Phi => &self.phi,
            Field::Momenta => &self.p,
        };
        self.k.gather(x, &self.interior, &mut out)?;
        Ok(s.clone_dtoh(&out)?)
    }

    fn set_interior(&mut self, field: Field, values: &[f64]) -> Result<()> {
        check_len(values.len(), self.k.compact_len())?;
        let vals = self.k.dev.stream().clone_htod(values)?;
        let x = match field {
            Field::Phi => &mut self.phi,
            Field::Momenta => &mut self.p,
        };
        self.k.scatter(x, &self.interior, 0, &vals)
    }

    fn pack(&mut self, mu: usize, top: bool, out: &mut [f64]) -> Result<()> {
        let face = &self.faces[mu][usize::from(!top)];
        check_len(out.len(), face.idx.len() * self.geom.chains)?;
        self.k.gather(&self.phi, &face.idx, &mut self.stage_out)?;
        let s = self.k.dev.stream();
        s.memcpy_dtoh(&self.stage_out.slice(..out.len()), out)?;
        Ok(s.synchronize()?)
    }

    fn unpack(&mut self, mu: usize, top: bool, got: &[f64]) -> Result<()> {
        let face = &self.faces[mu][usize::from(!top)];
        check_len(got.len(), face.idx.len() * self.geom.chains)?;
        self.k
            .dev
            .stream()
            .memcpy_htod(got, &mut self.stage_in.slice_mut(..got.len()))?;
        self.k
            .scatter(&mut self.phi, &face.idx, face.shift, &self.stage_in)
    }

    fn wrap(&mut self, mu: usize, top: bool) -> Result<()> {
        let face = &self.faces[mu][usize::from(!top)];
        self.k.wrap(&mut self.phi, face)
    }

    fn exchange_direct(&mut self, mu: usize, top: bool, to: usize, from: usize) -> Result<bool> {
        let Some(link) = &self.link else {
            return Ok(false);
        };
        let face = &self.faces[mu][usize::from(!top)];
        let n = face.idx.len() * self.geom.chains;
        self.k.gather(&self.phi, &face.idx, &mut self.stage_out)?;
        link.exchange(&self.stage_out, to, &mut self.stage_in, from, n)?;
        self.k
            .scatter(&mut self.phi, &face.idx, face.shift, &self.stage_in)?;
        Ok(true)
    }

    fn reduce_direct(
        &mut self,
        sums: ChunkSums,
        plan: &OrderedReduction,
        c: &ScalarCouplings,
    ) -> Result<Option<Vec<f64>>> {
        let Some(link) = &self.link else {
            return Ok(None);
        };
        // The inputs, [chain][box site]: p and the densities, or φ.
        match sums {
            ChunkSums::Energies => {
                self.k.densities(c, &self.phi, &mut self.stage_out)?;
                self.k.gather(&self.p, &self.interior, &mut self.stage_in)?;
            }
            ChunkSums::Moments => self
                .k
                .gather(&self.phi, &self.interior, &mut self.stage_in)?,
        }
        let slot = &mut self.plans[usize::from(sums == ChunkSums::Moments)];
        let dp = match slot {
            Some(dp) => dp,
            None => slot.insert(DevicePlan::new(&self.k.dev, plan, sums)?),
        };
        self.k.reduce_pack(&self.stage_in, &self.stage_out, dp)?;
        link.all_to_all(dp)?;
        self.k.reduce_sum(dp, sums)?;
        link.all_gather(&dp.mine, &mut dp.all)?;
        Ok(Some(dp.results(&self.k.dev, sums.width())?))
    }

    fn save(&mut self) -> Result<()> {
        self.k
            .dev
            .stream()
            .memcpy_dtod(&self.phi, &mut self.phi_saved)?;
        Ok(())
    }

    fn restore(&mut self, which: &[bool]) -> Result<()> {
        check_len(which.len(), self.geom.chains)?;
        let flags: Vec<u8> = which.iter().map(|&w| u8::from(w)).collect();
        self.k.dev.stream().memcpy_htod(&flags, &mut self.flags)?;
        self.k.restore(&mut self.phi, &self.phi_saved, &self.flags)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.k.dev.stream().synchronize()?)
    }
}

/// The GPU-to-GPU link of the halo exchange: an NCCL communicator over the team's ranks, on the
/// box's stream. Opened only where every rank finds NCCL (and `LATTICEML_NCCL` is not `0`);
/// otherwise the faces travel through the host.
#[cfg(feature = "nccl")]
pub struct NcclLink {
    comm: cudarc::nccl::Comm,
}

// SAFETY: an NCCL communicator may be used from any thread, one call at a time; the link is
// owned by one box and used only through `&mut CudaBox`.
#[cfg(feature = "nccl")]
unsafe impl Send for NcclLink {}

#[cfg(feature = "nccl")]
impl NcclLink {
    /// Collective: rank 0 makes the communicator's id, every rank receives it over the team.
    fn open(dev: &CudaDevice, team: &dyn Team) -> Result<Option<Self>> {
        use cudarc::nccl::{Comm, Id};
        let wanted = std::env::var("LATTICEML_NCCL").as_deref() != Ok("0");
        // SAFETY: only tries to dlopen the library by its usual names.
        let present = wanted && unsafe { cudarc::nccl::sys::is_culib_present() };
        if team.size() < 2 || !team.all_ok(present) {
            return Ok(None);
        }
        // Rank 0 makes the id (a failure there leaves every rank on the host path).
        let id: Option<Vec<u8>> = match team.rank() {
            0 => Id::new()
                .ok()
                .map(|id| id.internal().iter().map(|&b| b as u8).collect()),
            _ => None,
        };
        let Some(bytes) = crate::ensemble::broadcast_bytes(team, id.as_deref())? else {
            return Ok(None);
        };
        let mut internal = [0 as std::ffi::c_char; 128];
        if bytes.len() != internal.len() {
            return Err(crate::error::Error::Cuda(format!(
                "an NCCL id of {} bytes arrived, 128 expected",
                bytes.len()
            )));
        }
        for (b, &v) in internal.iter_mut().zip(&bytes) {
            *b = v as std::ffi::c_char;
        }
        let comm = Comm::from_rank(
            dev.stream().clone(),
            team.rank(),
            team.size(),
            Id::uninit(internal),
        )
        .map_err(nccl_error)?;
        Ok(Some(NcclLink { comm }))
    }

    /// Sends `send[..n]` to rank `to` while receiving `recv[..n]` from rank `from`, queued on
    /// the box's stream.
    fn exchange(
        &self,
        send: &CudaSlice<f64>,
        to: usize,
        recv: &mut CudaSlice<f64>,
        from: usize,
        n: usize,
    ) -> Result<()> {
        use cudarc::nccl::{group_end, group_start};
        let rank = |r: usize| {
            i32::try_from(r)
                .map_err(|_| crate::error::Error::InvalidInput(format!("rank {r} exceeds NCCL's")))
        };
        let (to, from) = (rank(to)?, rank(from)?);
        group_start().map_err(nccl_error)?;
        let queued = self
            .comm
            .send(&send.slice(..n), to)
            .and_then(|()| self.comm.recv(&mut recv.slice_mut(..n), from).map(|_| ()));
        // The group must be closed whatever happened inside it.
        let closed = group_end();
        queued.map_err(nccl_error)?;
        closed.map_err(nccl_error)?;
        Ok(())
    }

    /// The reduction's personalised all-to-all, `plan.send` → `plan.got` (counts per rank times
    /// the inputs per value), as one group of sends and receives.
    fn all_to_all(&self, plan: &mut DevicePlan) -> Result<()> {
        use cudarc::nccl::{group_end, group_start};
        let k = plan.inputs;
        group_start().map_err(nccl_error)?;
        let mut queued = Ok(());
        let (mut at_out, mut at_in) = (0, 0);
        for (r, (&out, &inn)) in plan.counts_out.iter().zip(&plan.counts_in).enumerate() {
            let peer = r as i32;
            if out > 0 && queued.is_ok() {
                queued = self
                    .comm
                    .send(&plan.send.slice(at_out..at_out + k * out), peer);
            }
            if inn > 0 && queued.is_ok() {
                queued = self
                    .comm
                    .recv(&mut plan.got.slice_mut(at_in..at_in + k * inn), peer)
                    .map(|_| ());
            }
            at_out += k * out;
            at_in += k * inn;
        }
        let closed = group_end();
        queued.map_err(nccl_error)?;
        closed.map_err(nccl_error)?;
        Ok(())
    }

    /// Every rank's `mine` (of one length), in rank order, into `all`.
    fn all_gather(&self, mine: &CudaSlice<f64>, all: &mut CudaSlice<f64>) -> Result<()> {
        self.comm
            .all_gather(mine, all)
            .map(|_| ())
            .map_err(nccl_error)
    }
}

#[cfg(feature = "nccl")]
fn nccl_error(e: cudarc::nccl::result::NcclError) -> crate::error::Error {
    crate::error::Error::Cuda(format!("NCCL: {:?}", e.0))
}

/// Without the `nccl` feature there is no link: the faces travel through the host.
#[cfg(not(feature = "nccl"))]
pub struct NcclLink(std::convert::Infallible);

#[cfg(not(feature = "nccl"))]
impl NcclLink {
    fn open(_dev: &CudaDevice, _team: &dyn Team) -> Result<Option<Self>> {
        Ok(None)
    }

    fn exchange(
        &self,
        _send: &CudaSlice<f64>,
        _to: usize,
        _recv: &mut CudaSlice<f64>,
        _from: usize,
        _n: usize,
    ) -> Result<()> {
        match self.0 {}
    }

    fn all_to_all(&self, _plan: &mut DevicePlan) -> Result<()> {
        match self.0 {}
    }

    fn all_gather(&self, _mine: &CudaSlice<f64>, _all: &mut CudaSlice<f64>) -> Result<()> {
        match self.0 {}
    }
}
