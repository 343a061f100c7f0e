//! The CUDA XY sweeper: launches `kernels/xy.cu` once per colour. CPU twin: [`super::cpu`].

use cudarc::driver::{CudaFunction, CudaSlice, PushKernelArg};

use super::cpu::{check_angles, schedule, Setup};
use crate::device::cuda::XY;
use crate::device::{geometry, CudaDevice, Device};
use crate::error::{Error, Result};
use crate::hmc::cuda::GpuGeom;
use crate::philox::{self, key_from_seed};
use crate::theory::Sweeper;

/// The XY sweeper on one GPU.
pub struct XyCuda {
    dev: CudaDevice,
    setup: Setup,
    geom: GpuGeom,
    metropolis: CudaFunction,
    overrelax: CudaFunction,
    theta: CudaSlice<f64>,
    accepted: CudaSlice<u64>,
}

impl XyCuda {
    /// Allocates the batch (all angles 0); an impossible size is an error naming the fix.
    pub fn new(dev: CudaDevice, setup: Setup) -> Result<Self> {
        let n = setup.chains * setup.lattice.volume();
        geometry::check_elements(n, "XY sites")?;
        crate::device::memory::check(
            &Device::Cuda(dev.clone()),
            8 * n as u128,
            "the XY angles",
            "use fewer --chains or a smaller lattice",
        )?;
        let d = setup.lattice.dim();
        let s = dev.stream().clone();
        Ok(XyCuda {
            metropolis: dev.function(&XY, &format!("xy_metropolis_d{d}"))?,
            overrelax: dev.function(&XY, &format!("xy_overrelax_d{d}"))?,
            geom: GpuGeom::new(&setup.lattice, setup.chains),
            theta: s.alloc_zeros(n)?,
            accepted: s.alloc_zeros(setup.chains)?,
            dev,
            setup,
        })
    }
}

impl Sweeper for XyCuda {
    fn sweep(&mut self, sweep: u64) -> Result<Vec<f64>> {
        let (reflect, hits) = schedule(self.setup.algorithm);
        let s = self.dev.stream().clone();
        let cfg = geometry::elementwise(self.geom.sites())?;
        s.memset_zeros(&mut self.accepted)?;
        if reflect {
            for colour in 0u32..2 {
                let mut b = s.launch_builder(&self.overrelax);
                b.arg(&mut self.theta).arg(&self.geom).arg(&colour);
                // SAFETY: arguments match xy_overrelax_dD; theta holds geom.sites() angles.
                unsafe { b.launch(cfg) }?;
            }
        }
        let step0 = sweep
            .checked_mul(hits as u64)
            .ok_or_else(|| Error::InvalidInput("sweep count overflows".into()))?;
        let [k0, k1] = key_from_seed(self.setup.seed);
        for colour in 0u32..2 {
            philox::counter_words(step0 + hits as u64 - 1, philox::STREAM_LOCAL + colour)?;
            let mut b = s.launch_builder(&self.metropolis);
            b.arg(&mut self.theta)
                .arg(&self.geom)
                .arg(&self.setup.beta)
                .arg(&colour)
                .arg(&step0)
                .arg(&hits)
                .arg(&k0)
                .arg(&k1)
                .arg(&mut self.accepted);
            // SAFETY: arguments match xy_metropolis_dD; theta holds geom.sites() angles and
            // accepted one counter per chain.
            unsafe { b.launch(cfg) }?;
        }
        let accepted = s.clone_dtoh(&self.accepted)?;
        let proposals = (self.setup.lattice.volume() as u64 * hits as u64) as f64;
        Ok(accepted.iter().map(|&a| a as f64 / proposals).collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.dev.stream().clone_dtoh(&self.theta)?)
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        check_angles(field, self.theta.len())?;
        Ok(self.dev.stream().memcpy_htod(field, &mut self.theta)?)
    }

    fn site_updates(&self) -> u64 {
        let (reflect, hits) = schedule(self.setup.algorithm);
        (self.geom.sites() as u64) * (hits as u64 + reflect as u64)
    }

    fn chains(&self) -> usize {
        self.setup.chains
    }
}
