//! The CUDA HMC backend: launches `kernels/scalar_hmc.cu` (one fused kernel per MD update,
//! ping-pong field buffers) and `kernels/philox.cu` (momenta). CPU twins: [`super::cpu`].

use cudarc::driver::{CudaFunction, CudaSlice, DeviceRepr, PushKernelArg};

use crate::action::{Action, ForceLaw, ScalarCouplings};
use crate::device::cuda::{PHILOX, SCALAR_HMC};
use crate::device::geometry::{self, chunks_per_segment, sum_chunks};
use crate::device::CudaDevice;
use crate::error::Result;
use crate::hmc::cpu::check_len;
use crate::hmc::cuda_fourier::GpuFourier;
use crate::hmc::fourier::{FourierMass, Power};
use crate::hmc::{HmcBackend, SliceMoments};
use crate::lattice::Lattice;
use crate::philox;

/// Lattice geometry as the kernels receive it (`struct Geom` in `scalar_hmc.cu`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GpuGeom {
    volume: u32,
    chains: u32,
    chain0: u32,
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
            chain0: 0,
            ext: [1; 4],
            stride: [1; 4],
        };
        for (mu, (&l, s)) in lat.extents().iter().zip(lat.strides()).enumerate() {
            g.ext[mu] = l as i32;
            g.stride[mu] = s as i32;
        }
        g
    }

    /// The same batch as the chains `chain0..` of a larger ensemble (random numbers keyed by the
    /// global chain index).
    pub fn with_first_chain(self, chain0: u32) -> Self {
        GpuGeom { chain0, ..self }
    }

    /// Sites per chain.
    pub fn volume(&self) -> u32 {
        self.volume
    }

    /// Sites of the whole batch.
    pub fn sites(&self) -> usize {
        self.volume as usize * self.chains as usize
    }
}

/// Couplings as the kernels receive them (`struct Couplings`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GpuCouplings {
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
    restore: CudaFunction,
    normals: CudaFunction,
}

impl ScalarKernels {
    /// Loads (compiling on first use) the kernels for `lat`'s dimension and the couplings' law.
    pub fn new(
        dev: &CudaDevice,
        lat: &Lattice,
        couplings: ScalarCouplings,
        chains: usize,
    ) -> Result<Self> {
        let d = lat.dim();
        let law = match couplings.law {
            ForceLaw::Polynomial => "",
            ForceLaw::Cosine => "cos_",
        };
        Ok(ScalarKernels {
            dev: dev.clone(),
            geom: GpuGeom::new(lat, chains),
            couplings: couplings.into(),
            slice_volume: lat.slice_volume() as u32,
            kick_drift: dev.function(&SCALAR_HMC, &format!("kick_drift_{law}d{d}"))?,
            kick: dev.function(&SCALAR_HMC, &format!("kick_{law}d{d}"))?,
            energy: dev.function(&SCALAR_HMC, &format!("energy_chunks_{law}d{d}"))?,
            moments: dev.function(&SCALAR_HMC, "moment_chunks")?,
            restore: dev.function(&SCALAR_HMC, "restore_chains")?,
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
        let n = self.geom.sites();
        check_len(phi.len().min(p.len()), n)?;
        if let Some(new) = phi_new.as_ref() {
            check_len(new.len(), n)?;
        }
        let cfg = geometry::elementwise(n)?;
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
                // SAFETY: argument list matches kick_drift_dD; every buffer holds geom.sites() values (checked).
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

    /// Per chunk of [`geometry::REDUCE_CHUNK`] sites of each chain: (Σ½p², Σ action density),
    /// flattened `[2*chunk + {0,1}]`; `out` holds at least that many values.
    pub fn energy_chunks(
        &self,
        phi: &CudaSlice<f64>,
        p: &CudaSlice<f64>,
        out: &mut CudaSlice<f64>,
    ) -> Result<Vec<f64>> {
        let cfg = geometry::chunked(self.geom.chains as usize, self.geom.volume as usize)?;
        let values = 2 * cfg.grid_dim.0 as usize;
        check_len(phi.len().min(p.len()), self.geom.sites())?;
        check_len(out.len().min(values), values)?;
        let chunk = geometry::REDUCE_CHUNK as u32;
        let mut b = self.dev.stream().launch_builder(&self.energy);
        b.arg(phi)
            .arg(p)
            .arg(&mut *out)
            .arg(&self.geom)
            .arg(&self.couplings)
            .arg(&chunk);
        // SAFETY: argument list matches energy_chunks_dD; the lengths were checked above.
        unsafe { b.launch(cfg) }?;
        Ok(self.dev.stream().clone_dtoh(&out.slice(..values))?)
    }

    /// Per chunk of each time slice: (Σφ, Σφ², Σφ⁴), flattened `[3*chunk + k]`.
    pub fn moment_chunks(
        &self,
        phi: &CudaSlice<f64>,
        out: &mut CudaSlice<f64>,
    ) -> Result<Vec<f64>> {
        let seg = self.slice_volume as usize;
        let cfg = geometry::chunked(self.geom.sites() / seg, seg)?;
        let values = 3 * cfg.grid_dim.0 as usize;
        check_len(phi.len(), self.geom.sites())?;
        check_len(out.len().min(values), values)?;
        let chunk = geometry::REDUCE_CHUNK as u32;
        let mut b = self.dev.stream().launch_builder(&self.moments);
        b.arg(phi)
            .arg(&mut *out)
            .arg(&self.slice_volume)
            .arg(&chunk);
        // SAFETY: argument list matches moment_chunks; the lengths were checked above.
        unsafe { b.launch(cfg) }?;
        Ok(self.dev.stream().clone_dtoh(&out.slice(..values))?)
    }

    /// φ = saved on every chain whose flag is non-zero: the twin of [`super::cpu::restore_chains`].
    pub fn restore_chains(
        &self,
        phi: &mut CudaSlice<f64>,
        saved: &CudaSlice<f64>,
        flags: &CudaSlice<u8>,
    ) -> Result<()> {
        check_len(phi.len().min(saved.len()), self.geom.sites())?;
        check_len(flags.len(), self.geom.chains as usize)?;
        let mut b = self.dev.stream().launch_builder(&self.restore);
        b.arg(phi).arg(saved).arg(flags).arg(&self.geom);
        // SAFETY: argument list matches restore_chains; the lengths were checked above.
        unsafe { b.launch(geometry::elementwise(self.geom.sites())?) }?;
        Ok(())
    }

    /// Standard normals into `out` for every chain, the batch holding the ensemble's chains
    /// `chain0..`: the twin of [`philox::fill_normals`].
    pub fn normals(
        &self,
        out: &mut CudaSlice<f64>,
        seed: u64,
        chain0: u32,
        step: u32,
        stream: u32,
    ) -> Result<()> {
        let pairs = (self.geom.volume as usize).div_ceil(2) * self.geom.chains as usize;
        check_len(out.len(), self.geom.sites())?;
        let [k0, k1] = philox::key_from_seed(seed);
        let mut b = self.dev.stream().launch_builder(&self.normals);
        b.arg(out)
            .arg(&self.geom.volume)
            .arg(&self.geom.chains)
            .arg(&chain0)
            .arg(&step)
            .arg(&stream)
            .arg(&k0)
            .arg(&k1);
        // SAFETY: argument list matches philox_normals; `out` holds volume·chains values (checked).
        unsafe { b.launch(geometry::elementwise(pairs)?) }?;
        Ok(())
    }
}

/// The CUDA HMC backend: all state stays on the device; only per-chain sums come back.
pub struct CudaHmc {
    k: ScalarKernels,
    chains: usize,
    volume: usize,
    slice_volume: usize,
    phi: CudaSlice<f64>,
    phi_next: CudaSlice<f64>,
    phi_saved: CudaSlice<f64>,
    p: CudaSlice<f64>,
    chunk_out: CudaSlice<f64>,
    restore_flags: CudaSlice<u8>,
    /// Fourier acceleration, when installed.
    fourier: Option<GpuFourier>,
}

impl CudaHmc {
    /// Allocates the batch on the device (an out-of-memory error says how to shrink the run).
    pub fn new(dev: CudaDevice, action: &dyn Action, chains: usize) -> Result<Self> {
        let lat = action.lattice();
        let n = chains * lat.volume();
        let s = dev.stream().clone();
        let k = ScalarKernels::new(&dev, lat, action.couplings(), chains)?;
        let slices = chains * lat.time_extent();
        let chunks = (chains * chunks_per_segment(lat.volume()))
            .max(slices * chunks_per_segment(lat.slice_volume()));
        Ok(CudaHmc {
            k,
            chains,
            volume: lat.volume(),
            slice_volume: lat.slice_volume(),
            phi: s.alloc_zeros(n)?,
            phi_next: s.alloc_zeros(n)?,
            phi_saved: s.alloc_zeros(n)?,
            p: s.alloc_zeros(n)?,
            chunk_out: s.alloc_zeros(3 * chunks)?,
            restore_flags: s.alloc_zeros(chains)?,
            fourier: None,
        })
    }
}

impl HmcBackend for CudaHmc {
    fn refresh_momenta(&mut self, seed: u64, chain0: u32, step: u32, stream: u32) -> Result<()> {
        self.k.normals(&mut self.p, seed, chain0, step, stream)?;
        // Fourier acceleration draws p = M^{1/2}η.
        match &mut self.fourier {
            Some(f) => f.apply(&mut self.p, Power::Half),
            None => Ok(()),
        }
    }

    fn kick_drift(&mut self, kick: f64, drift: f64) -> Result<()> {
        if let Some(f) = &mut self.fourier {
            // p += kick·F(φ); φ_next = φ + drift·M⁻¹p.
            self.k.kick_drift(&self.phi, &mut self.p, None, kick, 0.0)?;
            if drift != 0.0 {
                f.drift(&self.phi, &self.p, &mut self.phi_next, drift)?;
                std::mem::swap(&mut self.phi, &mut self.phi_next);
            }
            return Ok(());
        }
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
        let flat = self
            .k
            .energy_chunks(&self.phi, &self.p, &mut self.chunk_out)?;
        let (kinetic, action) =
            super::split_energies(&sum_chunks(&flat, 2, chunks_per_segment(self.volume)));
        match &mut self.fourier {
            Some(f) => Ok((f.kinetic(&self.p)?, action)),
            None => Ok((kinetic, action)),
        }
    }

    fn set_fourier_mass(&mut self, mass: FourierMass) -> Result<()> {
        self.fourier = Some(GpuFourier::new(&self.k.dev, &mass, self.p.len())?);
        Ok(())
    }

    fn save_fields(&mut self) -> Result<()> {
        self.k
            .dev
            .stream()
            .memcpy_dtod(&self.phi, &mut self.phi_saved)?;
        Ok(())
    }

    fn restore_fields(&mut self, which: &[bool]) -> Result<()> {
        check_len(which.len(), self.chains)?;
        let flags: Vec<u8> = which.iter().map(|&w| w as u8).collect();
        self.k
            .dev
            .stream()
            .memcpy_htod(&flags, &mut self.restore_flags)?;
        self.k
            .restore_chains(&mut self.phi, &self.phi_saved, &self.restore_flags)
    }

    fn slice_moments(&mut self) -> Result<SliceMoments> {
        let flat = self.k.moment_chunks(&self.phi, &mut self.chunk_out)?;
        let per = chunks_per_segment(self.slice_volume);
        Ok(super::moments_from_flat(&sum_chunks(&flat, 3, per)))
    }

    unsafe fn exchange_fields_external(
        &mut self,
        ext: crate::device::cuda::ExternalBuffer,
        to_external: bool,
    ) -> Result<()> {
        // SAFETY: the caller's contract.
        unsafe {
            self.k
                .dev
                .exchange_external(&mut self.phi, ext, to_external)
        }
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
