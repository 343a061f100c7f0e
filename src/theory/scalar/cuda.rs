//! The scalar colour passes on a GPU: `scalar_metropolis_dD` of `kernels/scalar_local.cu`, one
//! launch per colour. CPU twin: [`super::cpu`].

use cudarc::driver::{CudaFunction, CudaSlice, PushKernelArg};

use crate::action::ScalarCouplings;
use crate::device::cuda::SCALAR_LOCAL;
use crate::device::{geometry, CudaDevice, Device};
use crate::error::{Error, Result};
use crate::hmc::cuda::{GpuCouplings, GpuGeom};
use crate::lattice::Lattice;
use crate::philox::key_from_seed;
use crate::theory::checkerboard::{check_steps, take_device_counters, ColourPass};

/// The scalar colour passes on one GPU.
pub struct ScalarCuda {
    dev: CudaDevice,
    geom: GpuGeom,
    couplings: GpuCouplings,
    delta: f64,
    key: [u32; 2],
    metropolis: CudaFunction,
    phi: CudaSlice<f64>,
    accepted: CudaSlice<u64>,
}

impl ScalarCuda {
    /// Allocates `chains` chains of `lattice` (φ = 0); an impossible size is an error naming the fix.
    pub fn new(
        dev: CudaDevice,
        lattice: &Lattice,
        chains: usize,
        c: ScalarCouplings,
        delta: f64,
        seed: u64,
    ) -> Result<Self> {
        let n = chains * lattice.volume();
        geometry::check_elements(n, "field sites")?;
        crate::device::memory::check(
            &Device::Cuda(dev.clone()),
            8 * n as u128,
            "the fields",
            "use fewer --chains or a smaller lattice",
        )?;
        let s = dev.stream().clone();
        Ok(ScalarCuda {
            metropolis: dev.function(
                &SCALAR_LOCAL,
                &format!("scalar_metropolis_d{}", lattice.dim()),
            )?,
            geom: GpuGeom::new(lattice, chains),
            couplings: c.into(),
            phi: s.alloc_zeros(n)?,
            accepted: s.alloc_zeros(chains)?,
            key: key_from_seed(seed),
            delta,
            dev,
        })
    }
}

impl ColourPass for ScalarCuda {
    fn metropolis(&mut self, colour: u32, step0: u64, hits: u32) -> Result<()> {
        check_steps(step0, hits, colour)?;
        let s = self.dev.stream().clone();
        let [k0, k1] = self.key;
        let mut b = s.launch_builder(&self.metropolis);
        b.arg(&mut self.phi)
            .arg(&self.geom)
            .arg(&self.couplings)
            .arg(&self.delta)
            .arg(&colour)
            .arg(&step0)
            .arg(&hits)
            .arg(&k0)
            .arg(&k1)
            .arg(&mut self.accepted);
        // SAFETY: arguments match scalar_metropolis_dD; phi holds geom.sites() values and
        // accepted one counter per chain.
        unsafe { b.launch(geometry::elementwise(self.geom.sites())?) }?;
        Ok(())
    }

    fn take_accepted(&mut self) -> Result<Vec<u64>> {
        take_device_counters(&self.dev, &mut self.accepted)
    }

    fn overrelax(&mut self, _colour: u32) -> Result<()> {
        Err(Error::InvalidInput(
            "the scalar theories have no overrelaxation".into(),
        ))
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.dev.stream().clone_dtoh(&self.phi)?)
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        Ok(self.dev.stream().memcpy_htod(field, &mut self.phi)?)
    }

    fn set_first_chain(&mut self, chain0: u32) {
        self.geom = self.geom.with_first_chain(chain0);
    }
}
