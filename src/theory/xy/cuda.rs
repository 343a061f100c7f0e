//! The XY colour passes on a GPU: `kernels/xy.cu`, one launch per colour. CPU twin: [`super::cpu`].

use cudarc::driver::{CudaFunction, CudaSlice, PushKernelArg};

use crate::device::cuda::XY;
use crate::device::{geometry, CudaDevice, Device};
use crate::error::Result;
use crate::hmc::cuda::GpuGeom;
use crate::lattice::Lattice;
use crate::philox::key_from_seed;
use crate::theory::checkerboard::{check_steps, take_device_counters, ColourPass};

/// The XY colour passes on one GPU.
pub struct XyCuda {
    dev: CudaDevice,
    geom: GpuGeom,
    beta: f64,
    key: [u32; 2],
    metropolis: CudaFunction,
    overrelax: CudaFunction,
    units: CudaFunction,
    theta: CudaSlice<f64>,
    /// (cos θ, sin θ) per site, interleaved, kept equal to those of θ.
    unit: CudaSlice<f64>,
    accepted: CudaSlice<u64>,
}

impl XyCuda {
    /// Allocates `chains` chains of `lattice` (all angles 0); an impossible size is an error
    /// naming the fix.
    pub fn new(
        dev: CudaDevice,
        lattice: &Lattice,
        chains: usize,
        beta: f64,
        seed: u64,
    ) -> Result<Self> {
        let n = chains * lattice.volume();
        geometry::check_elements(n, "XY sites")?;
        crate::device::memory::check(
            &Device::Cuda(dev.clone()),
            24 * n as u128,
            "the XY angles and unit vectors",
            "use fewer --chains or a smaller lattice",
        )?;
        let d = lattice.dim();
        let s = dev.stream().clone();
        Ok(XyCuda {
            metropolis: dev.function(&XY, &format!("xy_metropolis_d{d}"))?,
            overrelax: dev.function(&XY, &format!("xy_overrelax_d{d}"))?,
            units: dev.function(&XY, "xy_units")?,
            geom: GpuGeom::new(lattice, chains),
            theta: s.alloc_zeros(n)?,
            unit: s.clone_htod(&super::cpu::unit_vectors(&vec![0.0; n]))?,
            accepted: s.alloc_zeros(chains)?,
            key: key_from_seed(seed),
            beta,
            dev,
        })
    }
}

impl ColourPass for XyCuda {
    fn metropolis(&mut self, colour: u32, step0: u64, hits: u32) -> Result<()> {
        check_steps(step0, hits, colour)?;
        let s = self.dev.stream().clone();
        let [k0, k1] = self.key;
        let mut b = s.launch_builder(&self.metropolis);
        b.arg(&mut self.theta)
            .arg(&mut self.unit)
            .arg(&self.geom)
            .arg(&self.beta)
            .arg(&colour)
            .arg(&step0)
            .arg(&hits)
            .arg(&k0)
            .arg(&k1)
            .arg(&mut self.accepted);
        // SAFETY: arguments match xy_metropolis_dD; theta holds geom.sites() angles, unit twice
        // that, accepted one counter per chain.
        unsafe { b.launch(geometry::elementwise(self.geom.sites())?) }?;
        Ok(())
    }

    fn take_accepted(&mut self) -> Result<Vec<u64>> {
        take_device_counters(&self.dev, &mut self.accepted)
    }

    fn overrelax(&mut self, colour: u32) -> Result<()> {
        let s = self.dev.stream().clone();
        let mut b = s.launch_builder(&self.overrelax);
        b.arg(&mut self.theta)
            .arg(&mut self.unit)
            .arg(&self.geom)
            .arg(&colour);
        // SAFETY: arguments match xy_overrelax_dD; theta holds geom.sites() angles, unit twice that.
        unsafe { b.launch(geometry::elementwise(self.geom.sites())?) }?;
        Ok(())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.dev.stream().clone_dtoh(&self.theta)?)
    }

    /// Uploads the angles and computes their unit vectors on the device (`xy_units`), so that
    /// they are the device's own sincos, as after any update.
    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        let s = self.dev.stream().clone();
        s.memcpy_htod(field, &mut self.theta)?;
        let n = self.geom.sites() as u32;
        let mut b = s.launch_builder(&self.units);
        b.arg(&self.theta).arg(&mut self.unit).arg(&n);
        // SAFETY: arguments match xy_units; theta holds n angles and unit 2n values.
        unsafe { b.launch(geometry::elementwise(n as usize)?) }?;
        Ok(())
    }

    fn set_first_chain(&mut self, chain0: u32) {
        self.geom = self.geom.with_first_chain(chain0);
    }
}
