//! The CUDA Ising sweeper: launches `ising_update` of `kernels/ising.cu` once per colour and hit.
//! CPU twin: [`super::cpu`].

use cudarc::driver::{CudaFunction, CudaSlice, DeviceRepr, PushKernelArg};

use super::{draw_counter, Packing, Rule};
use crate::device::cuda::ISING;
use crate::device::{geometry, CudaDevice, Device};
use crate::error::Result;
use crate::philox::key_from_seed;
use crate::theory::{first_local_step, Sweeper};

/// `struct IsingPack` of the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GpuPack {
    rows: u32,
    bits: u32,
    words: u32,
    chains: u32,
    chain0: u32,
}

// SAFETY: plain `repr(C)` data laid out as `struct IsingPack`.
unsafe impl DeviceRepr for GpuPack {}

impl From<&Packing> for GpuPack {
    fn from(p: &Packing) -> Self {
        // Ising::new bounds rows·words below 2^27 and the lattice below 2^31 sites.
        GpuPack {
            rows: p.rows as u32,
            bits: p.bits as u32,
            words: p.words as u32,
            chains: p.chains as u32,
            chain0: p.first_chain,
        }
    }
}

/// `struct IsingRule` of the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GpuRule {
    thresholds: [u64; 5],
    always: u32,
    metropolis: u32,
}

// SAFETY: plain `repr(C)` data laid out as `struct IsingRule`.
unsafe impl DeviceRepr for GpuRule {}

impl From<&Rule> for GpuRule {
    fn from(r: &Rule) -> Self {
        GpuRule {
            thresholds: r.thresholds,
            always: r.always,
            metropolis: r.metropolis as u32,
        }
    }
}

/// Checkerboard Metropolis or heat-bath on one GPU.
pub struct IsingCuda {
    dev: CudaDevice,
    update: CudaFunction,
    pk: Packing,
    rule: Rule,
    hits: u32,
    seed: u64,
    spins: CudaSlice<u64>,
    changed: CudaSlice<u64>,
}

impl IsingCuda {
    /// Allocates the packed batch (all spins up); an impossible size is an error naming the fix.
    pub fn new(dev: CudaDevice, pk: Packing, rule: Rule, hits: u32, seed: u64) -> Result<Self> {
        let words = 2 * pk.colour_words();
        geometry::check_elements(words, "Ising spin words")?;
        crate::device::memory::check(
            &Device::Cuda(dev.clone()),
            8 * words as u128,
            "the packed spins",
            "use fewer --chains or a smaller lattice",
        )?;
        let s = dev.stream().clone();
        Ok(IsingCuda {
            update: dev.function(&ISING, "ising_update")?,
            spins: s.alloc_zeros(words)?,
            changed: s.alloc_zeros(pk.chains)?,
            dev,
            pk,
            rule,
            hits,
            seed,
        })
    }

    /// Launches `ising_update` for `colour` at local step `step`.
    fn launch(&mut self, colour: u32, step: u64) -> Result<()> {
        let (c2, c3) = draw_counter(step, colour as usize)?;
        let [k0, k1] = key_from_seed(self.seed);
        let (pack, rule) = (GpuPack::from(&self.pk), GpuRule::from(&self.rule));
        let cfg = geometry::elementwise(self.pk.colour_words())?;
        let mut b = self.dev.stream().launch_builder(&self.update);
        b.arg(&mut self.spins)
            .arg(&pack)
            .arg(&rule)
            .arg(&colour)
            .arg(&k0)
            .arg(&k1)
            .arg(&c2)
            .arg(&c3)
            .arg(&mut self.changed);
        // SAFETY: arguments match ising_update; `spins` holds both colours of `pk`, `changed`
        // one counter per chain.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

impl Sweeper for IsingCuda {
    fn sweep(&mut self, sweep: u64) -> Result<Vec<f64>> {
        let s = self.dev.stream().clone();
        s.memset_zeros(&mut self.changed)?;
        for colour in 0..2 {
            for hit in 0..self.hits as u64 {
                let step = first_local_step(sweep, self.hits)? + hit;
                self.launch(colour, step)?;
            }
        }
        let changed = s.clone_dtoh(&self.changed)?;
        let proposals = (self.site_updates() / self.pk.chains as u64) as f64;
        Ok(changed.iter().map(|&c| c as f64 / proposals).collect())
    }

    fn fields(&self) -> Result<Vec<f64>> {
        Ok(self.pk.unpack(&self.dev.stream().clone_dtoh(&self.spins)?))
    }

    fn set_fields(&mut self, field: &[f64]) -> Result<()> {
        let packed = self.pk.pack(field)?;
        Ok(self.dev.stream().memcpy_htod(&packed, &mut self.spins)?)
    }

    fn site_updates(&self) -> u64 {
        (2 * self.pk.rows * self.pk.bits * self.pk.chains) as u64 * self.hits as u64
    }

    fn chains(&self) -> usize {
        self.pk.chains
    }

    fn set_first_chain(&mut self, chain0: u32) {
        self.pk.first_chain = chain0;
    }
}
