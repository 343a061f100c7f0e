//! The CUDA HMC backend: launches `kernels/scalar_hmc.cu` (one fused kernel per MD update,
//! ping-pong field buffers) and `kernels/philox.cu` (momenta). CPU twins: [`super::cpu`].

use cudarc::driver::{CudaFunction, CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

use crate::action::{Action, ScalarCouplings};
use crate::device::cuda::{PHILOX, SCALAR_HMC};
use crate::device::CudaDevice;
use crate::error::{Error, Result};
use crate::hmc::cpu::check_len;
use crate::hmc::{HmcBackend, SliceMoments};
use crate::lattice::Lattice;
use crate::philox;

/// Threads per block of every elementwise launch; the reductions require exactly 256.
pub const BLOCK: u32 = 256;

/// Lattice geometry as the kernels receive it (`struct Geom` in `scalar_hmc.cu`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GpuGeom {
    volume: u32,
    chains: u32,
    ext: [i32; 4],
    stride: [i32; 4],
}

// SAFETY: plain `repr(C)` data laid out as `struct Geom` in the kernel source.
unsafe impl DeviceRepr for GpuGeom {}

impl GpuGeom {
    /// Geometry of a batch of `chains` chains on `lat` (volume < 2^31 is checked by [`Lattice::new`]).
    pub fn new(lat: &Lattice, chains: usize) -> Self {
        let mut g = GpuGeom {
            volume: lat.volume() as u32,
            chains: chains as u32,
            ext: [1; 4],
            stride: [1; 4],
        };
        for (mu, (&l, s)) in lat.extents().iter().zip(lat.strides()).enumerate() {
            g.ext[mu] = l as i32;
            g.stride[mu] = s as i32;
        }
        g
    }

    fn sites(&self) -> u64 {
        self.volume as u64 * self.chains as u64
    }
}

/// Couplings as the kernels receive them (`struct Couplings`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct GpuCouplings {
    hop: f64,
    u0: f64,
    u2: f64,
    u4: f64,
}

// SAFETY: plain `repr(C)` doubles, as `struct Couplings` in the kernel source.
unsafe impl DeviceRepr for GpuCouplings {}

impl From<ScalarCouplings> for GpuCouplings {
    fn from(c: ScalarCouplings) -> Self {
        GpuCouplings {
            hop: c.hop,
            u0: c.u0,
            u2: c.u2,
            u4: c.u4,
        }
    }
}

fn grid(n: u64) -> Result<LaunchConfig> {
    let blocks = n.div_ceil(BLOCK as u64);
    if blocks > i32::MAX as u64 {
        return Err(Error::InvalidInput(format!("{n} sites exceed one launch")));
    }
    Ok(LaunchConfig {
        grid_dim: (blocks.max(1) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

fn blocks(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The loaded scalar-HMC kernels for one dimension; each method is one launch, twin of the
/// function of the same name in [`super::cpu`].
pub struct ScalarKernels {
    dev: CudaDevice,
    geom: GpuGeom,
    couplings: GpuCouplings,
    slice_volume: u32,
    kick_drift: CudaFunction,
    kick: CudaFunction,
    energy: CudaFunction,
    moments: CudaFunction,
    normals: CudaFunction,
}

impl ScalarKernels {
    /// Loads (compiling on first use) the kernels for `lat`'s dimension.
    pub fn new(
        dev: &CudaDevice,
        lat: &Lattice,
        couplings: ScalarCouplings,
        chains: usize,
    ) -> Result<Self> {
        let d = lat.dim();
        Ok(ScalarKernels {
            dev: dev.clone(),
            geom: GpuGeom::new(lat, chains),
            couplings: couplings.into(),
            slice_volume: lat.slice_volume() as u32,
            kick_drift: dev.function(&SCALAR_HMC, &format!("kick_drift_d{d}"))?,
            kick: dev.function(&SCALAR_HMC, &format!("kick_d{d}"))?,
            energy: dev.function(&SCALAR_HMC, &format!("energy_segments_d{d}"))?,
            moments: dev.function(&SCALAR_HMC, "moment_segments")?,
            normals: dev.function(&PHILOX, "philox_normals")?,
        })
    }

    /// p += kick·F(φ); `phi_new = φ + drift·p` when given (else φ is not touched).
    pub fn kick_drift(
        &self,
        phi: &CudaSlice<f64>,
        p: &mut CudaSlice<f64>,
        phi_new: Option<&mut CudaSlice<f64>>,
        kick: f64,
        drift: f64,
    ) -> Result<()> {
        let cfg = grid(self.geom.sites())?;
        let s = self.dev.stream();
        match phi_new {
            Some(new) => {
                let mut b = s.launch_builder(&self.kick_drift);
                b.arg(phi)
                    .arg(p)
                    .arg(new)
                    .arg(&self.geom)
                    .arg(&self.couplings)
                    .arg(&kick)
                    .arg(&drift);
                // SAFETY: argument list matches kick_drift_dD; every buffer holds geom.sites() values.
                unsafe { b.launch(cfg) }?;
            }
            None => {
                let mut b = s.launch_builder(&self.kick);
                b.arg(phi)
                    .arg(p)
                    .arg(&self.geom)
                    .arg(&self.couplings)
                    .arg(&kick);
                // SAFETY: argument list matches kick_dD.
                unsafe { b.launch(cfg) }?;
            }
        }
        Ok(())
    }

    /// Per time slice: (Σ½p², Σ action density), flattened `[2*segment + {0,1}]`.
    pub fn energy_segments(
        &self,
        phi: &CudaSlice<f64>,
        p: &CudaSlice<f64>,
        out: &mut CudaSlice<f64>,
    ) -> Result<Vec<f64>> {
        let segs = (self.geom.sites() / self.slice_volume as u64) as usize;
        let mut b = self.dev.stream().launch_builder(&self.energy);
        b.arg(phi)
            .arg(p)
            .arg(&mut *out)
            .arg(&self.geom)
            .arg(&self.couplings)
            .arg(&self.slice_volume);
        // SAFETY: argument list matches energy_segments_dD; `out` holds 2 values per segment.
        unsafe { b.launch(blocks(segs)) }?;
        Ok(self.dev.stream().clone_dtoh(&out.slice(..2 * segs))?)
    }

    /// Per time slice: (Σφ, Σφ², Σφ⁴).
    pub fn moment_segments(
        &self,
        phi: &CudaSlice<f64>,
        out: &mut CudaSlice<f64>,
    ) -> Result<SliceMoments> {
        let segs = (self.geom.sites() / self.slice_volume as u64) as usize;
        let mut b = self.dev.stream().launch_builder(&self.moments);
        b.arg(phi).arg(&mut *out).arg(&self.slice_volume);
        // SAFETY: argument list matches moment_segments; `out` holds 3 values per segment.
        unsafe { b.launch(blocks(segs)) }?;
        let flat = self.dev.stream().clone_dtoh(&out.slice(..3 * segs))?;
        Ok(flat.chunks(3).map(|m| [m[0], m[1], m[2]]).collect())
    }

    /// Standard normals into `out` for every chain: the twin of [`philox::fill_normals`].
    pub fn normals(
        &self,
        out: &mut CudaSlice<f64>,
        seed: u64,
        step: u32,
        stream: u32,
    ) -> Result<()> {
        let pairs = (self.geom.volume as u64).div_ceil(2) * self.geom.chains as u64;
        let [k0, k1] = philox::key_from_seed(seed);
        let mut b = self.dev.stream().launch_builder(&self.normals);
        b.arg(out)
            .arg(&self.geom.volume)
            .arg(&self.geom.chains)
            .arg(&step)
            .arg(&stream)
            .arg(&k0)
            .arg(&k1);
        // SAFETY: argument list matches philox_normals; `out` holds volume·chains values.
        unsafe { b.launch(grid(pairs)?) }?;
        Ok(())
    }
}

/// The CUDA HMC backend: all state stays on the device; only per-chain sums come back.
pub struct CudaHmc {
    k: ScalarKernels,
    chains: usize,
    time_extent: usize,
    volume: usize,
    phi: CudaSlice<f64>,
    phi_next: CudaSlice<f64>,
    phi_saved: CudaSlice<f64>,
    p: CudaSlice<f64>,
    seg_out: CudaSlice<f64>,
}

impl CudaHmc {
    /// Allocates the batch on the device (an out-of-memory error says how to shrink the run).
    pub fn new(dev: CudaDevice, action: &dyn Action, chains: usize) -> Result<Self> {
        let lat = action.lattice();
        let n = chains * lat.volume();
        let s = dev.stream().clone();
        let k = ScalarKernels::new(&dev, lat, action.couplings(), chains)?;
        Ok(CudaHmc {
            k,
            chains,
            time_extent: lat.time_extent(),
            volume: lat.volume(),
            phi: s.alloc_zeros(n)?,
            phi_next: s.alloc_zeros(n)?,
            phi_saved: s.alloc_zeros(n)?,
            p: s.alloc_zeros(n)?,
            seg_out: s.alloc_zeros(3 * chains * lat.time_extent())?,
        })
    }
}

impl HmcBackend for CudaHmc {
    fn refresh_momenta(&mut self, seed: u64, step: u32) -> Result<()> {
        self.k
            .normals(&mut self.p, seed, step, philox::STREAM_MOMENTUM)
    }

    fn kick_drift(&mut self, kick: f64, drift: f64) -> Result<()> {
        if drift == 0.0 {
            self.k.kick_drift(&self.phi, &mut self.p, None, kick, 0.0)
        } else {
            self.k.kick_drift(
                &self.phi,
                &mut self.p,
                Some(&mut self.phi_next),
                kick,
                drift,
            )?;
            std::mem::swap(&mut self.phi, &mut self.phi_next);
            Ok(())
        }
    }

    fn energies(&mut self) -> Result<(Vec<f64>, Vec<f64>)> {
        let seg = self
            .k
            .energy_segments(&self.phi, &self.p, &mut self.seg_out)?;
        let t = self.time_extent;
        let sum = |c: usize, w: usize| (0..t).map(|i| seg[2 * (c * t + i) + w]).sum::<f64>();
        Ok((
            (0..self.chains).map(|c| sum(c, 0)).collect(),
            (0..self.chains).map(|c| sum(c, 1)).collect(),
        ))
    }

    fn save_fields(&mut self) -> Result<()> {
        self.k
            .dev
            .stream()
            .memcpy_dtod(&self.phi, &mut self.phi_saved)?;
        Ok(())
    }

    fn restore_fields(&mut self, which: &[bool]) -> Result<()> {
        let v = self.volume;
        let s = self.k.dev.stream().clone();
        for (c, _) in which.iter().enumerate().filter(|(_, &w)| w) {
            let src = self.phi_saved.slice(c * v..(c + 1) * v);
            s.memcpy_dtod(&src, &mut self.phi.slice_mut(c * v..(c + 1) * v))?;
        }
        Ok(())
    }

    fn slice_moments(&mut self) -> Result<SliceMoments> {
        self.k.moment_segments(&self.phi, &mut self.seg_out)
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.k.dev.stream().clone_dtoh(&self.phi)?)
    }

    fn set_fields(&mut self, phi: &[f64]) -> Result<()> {
        check_len(phi.len(), self.phi.len())?;
        Ok(self.k.dev.stream().memcpy_htod(phi, &mut self.phi)?)
    }

    fn momenta(&self) -> Result<Vec<f64>> {
        Ok(self.k.dev.stream().clone_dtoh(&self.p)?)
    }

    fn set_momenta(&mut self, p: &[f64]) -> Result<()> {
        check_len(p.len(), self.p.len())?;
        Ok(self.k.dev.stream().memcpy_htod(p, &mut self.p)?)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.k.dev.stream().synchronize()?)
    }
}
