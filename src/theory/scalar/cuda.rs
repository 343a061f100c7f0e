//! The scalar colour passes on a GPU: `scalar_metropolis_dD` of `kernels/scalar_local.cu`, one
//! launch per colour, and Swendsen–Wang clusters of the signs (`kernels/cluster.cu`). CPU twins:
//! [`super::cpu`], [`super::cluster`].

use cudarc::driver::{CudaFunction, CudaSlice, PushKernelArg};

use crate::action::ScalarCouplings;
use crate::device::cuda::{CLUSTER, SCALAR_LOCAL};
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
    dim: i32,
    /// Swendsen–Wang's kernels and buffers, made on first use.
    clusters: Option<GpuClusters>,
}

/// The Swendsen–Wang kernels and their per-site bonds and labels.
struct GpuClusters {
    bonds_fn: CudaFunction,
    init: CudaFunction,
    step: CudaFunction,
    flip: CudaFunction,
    bonds: CudaSlice<u8>,
    labels: CudaSlice<u32>,
    changed: CudaSlice<u32>,
}

impl GpuClusters {
    fn new(dev: &CudaDevice, n: usize) -> Result<Self> {
        crate::device::memory::check(
            &Device::Cuda(dev.clone()),
            5 * n as u128,
            "the cluster bonds and labels",
            "use fewer --chains or a smaller lattice",
        )?;
        let s = dev.stream().clone();
        let f = |name| dev.function(&CLUSTER, name);
        Ok(GpuClusters {
            bonds_fn: f("sw_bonds")?,
            init: f("sw_label_init")?,
            step: f("sw_label_step")?,
            flip: f("sw_flip")?,
            bonds: s.alloc_zeros(n)?,
            labels: s.alloc_zeros(n)?,
            changed: s.alloc_zeros(1)?,
        })
    }
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
            dim: lattice.dim() as i32,
            clusters: None,
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

    /// Bonds, labels by propagation until no label falls (at most one pass per site), flips.
    fn swendsen_wang(&mut self, hop: f64, seed: u64, t: u32) -> Result<bool> {
        let n = self.geom.sites();
        if self.clusters.is_none() {
            self.clusters = Some(GpuClusters::new(&self.dev, n)?);
        }
        let Some(c) = self.clusters.as_mut() else {
            return Ok(false);
        };
        let s = self.dev.stream().clone();
        let [k0, k1] = key_from_seed(seed);
        let cfg = geometry::elementwise(n)?;
        let (geom, d) = (self.geom, self.dim);
        let mut b = s.launch_builder(&c.bonds_fn);
        b.arg(&self.phi)
            .arg(&mut c.bonds)
            .arg(&geom)
            .arg(&d)
            .arg(&hop);
        b.arg(&t).arg(&k0).arg(&k1);
        // SAFETY: matches sw_bonds; phi and bonds hold geom.sites() values.
        unsafe { b.launch(cfg) }?;
        let (volume, sites) = (self.geom.volume(), n as u32);
        let mut b = s.launch_builder(&c.init);
        b.arg(&mut c.labels).arg(&volume).arg(&sites);
        // SAFETY: matches sw_label_init; labels holds n values.
        unsafe { b.launch(cfg) }?;
        let mut settled = false;
        for _ in 0..=n {
            s.memset_zeros(&mut c.changed)?;
            let mut b = s.launch_builder(&c.step);
            b.arg(&mut c.labels)
                .arg(&c.bonds)
                .arg(&geom)
                .arg(&d)
                .arg(&mut c.changed);
            // SAFETY: matches sw_label_step; labels and bonds hold n values, changed one.
            unsafe { b.launch(cfg) }?;
            if s.clone_dtoh(&c.changed)?[0] == 0 {
                settled = true;
                break;
            }
        }
        if !settled {
            return Err(Error::InvalidInput(
                "Swendsen–Wang labels did not settle (a bug: please report)".into(),
            ));
        }
        let mut b = s.launch_builder(&c.flip);
        b.arg(&mut self.phi)
            .arg(&c.labels)
            .arg(&geom)
            .arg(&t)
            .arg(&k0)
            .arg(&k1);
        // SAFETY: matches sw_flip; phi and labels hold n values.
        unsafe { b.launch(cfg) }?;
        Ok(true)
    }
}
