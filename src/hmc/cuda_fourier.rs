//! Fourier acceleration on the GPU: the filters M^{1/2} and M⁻¹ of [`super::fourier`] through
//! the transforms of [`super::fft`] (`kernels/fourier.cu`), and the kinetic energy ½ pᵀM⁻¹p.
//! Twins: [`super::fft::filter_twin`] for the filters, [`super::fourier::FourierMass`] for the
//! CPU backend's.

use cudarc::driver::{CudaFunction, CudaSlice, PushKernelArg};

use super::fft::AxisPlan;
use super::fourier::{FourierMass, Power};
use crate::device::cuda::FOURIER;
use crate::device::geometry::{self, chunks_per_segment, sum_chunks, REDUCE_CHUNK};
use crate::device::{CudaDevice, Device};
use crate::error::Result;

/// The device side of a [`FourierMass`] for a batch of `n` sites.
pub struct GpuFourier {
    dev: CudaDevice,
    plans: Vec<(AxisPlan, CudaSlice<f64>)>,
    half: CudaSlice<f64>,
    inv: CudaSlice<f64>,
    /// The complex batch being transformed and its ping-pong partner (2n values each).
    z: CudaSlice<f64>,
    spare: CudaSlice<f64>,
    /// M⁻¹p (n values) and the per-chunk dot products.
    q: CudaSlice<f64>,
    chunks: CudaSlice<f64>,
    volume: usize,
    n: usize,
    load: CudaFunction,
    stage: CudaFunction,
    dft: CudaFunction,
    scale: CudaFunction,
    store: CudaFunction,
    axpy: CudaFunction,
    dot: CudaFunction,
}

impl GpuFourier {
    /// Uploads the twiddles and filters of `mass` and allocates the buffers for `n` sites
    /// (5n doubles; checked against the free device memory first).
    pub fn new(dev: &CudaDevice, mass: &FourierMass, n: usize) -> Result<Self> {
        geometry::check_elements(2 * n, "Fourier-accelerated batch (complex)")?;
        crate::device::memory::check(
            &Device::Cuda(dev.clone()),
            5 * 8 * n as u128,
            "Fourier acceleration's buffers",
            "use fewer chains or a smaller lattice",
        )?;
        let s = dev.stream().clone();
        let lat = mass.lattice();
        let plans = AxisPlan::for_lattice(lat)
            .into_iter()
            .map(|p| {
                let tw = s.clone_htod(&p.twiddles)?;
                Ok((p, tw))
            })
            .collect::<Result<Vec<_>>>()?;
        let volume = lat.volume();
        let f = |name| dev.function(&FOURIER, name);
        Ok(GpuFourier {
            plans,
            half: s.clone_htod(mass.filter(Power::Half))?,
            inv: s.clone_htod(mass.filter(Power::Inverse))?,
            z: s.alloc_zeros(2 * n)?,
            spare: s.alloc_zeros(2 * n)?,
            q: s.alloc_zeros(n)?,
            chunks: s.alloc_zeros(chunks_per_segment(volume) * (n / volume).max(1))?,
            volume,
            n,
            load: f("fourier_load")?,
            stage: f("fft_stage")?,
            dft: f("dft_axis")?,
            scale: f("fourier_scale")?,
            store: f("fourier_store")?,
            axpy: f("axpy")?,
            dot: f("dot_chunks")?,
            dev: dev.clone(),
        })
    }

    /// z ← M^power x (complex), every chain at once.
    fn filter_to_z(&mut self, x: &CudaSlice<f64>, power: Power) -> Result<()> {
        super::cpu::check_len(x.len(), self.n)?;
        let s = self.dev.stream().clone();
        let n = self.n as u32;
        let cfg = geometry::elementwise(self.n)?;
        let mut b = s.launch_builder(&self.load);
        b.arg(x).arg(&mut self.z).arg(&n);
        // SAFETY: matches fourier_load; x holds n values, z 2n.
        unsafe { b.launch(cfg) }?;
        self.transform(false)?;
        let (filter, v) = match power {
            Power::Half => (&self.half, self.volume as u32),
            Power::Inverse => (&self.inv, self.volume as u32),
        };
        let mut b = s.launch_builder(&self.scale);
        b.arg(&mut self.z).arg(filter).arg(&v).arg(&n);
        // SAFETY: matches fourier_scale; z holds 2n values, the filter one per site.
        unsafe { b.launch(cfg) }?;
        self.transform(true)
    }

    /// The d-dimensional transform of z, axis by axis (the order of [`super::fft::transform`]).
    fn transform(&mut self, inverse: bool) -> Result<()> {
        let s = self.dev.stream().clone();
        let inverse = inverse as u32;
        for (plan, tw) in &self.plans {
            let (l, st) = (plan.extent as u32, plan.stride as u32);
            let lines = plan.lines(self.n) as u32;
            for ns in plan.stages() {
                let ns = ns as u32;
                let mut b = s.launch_builder(&self.stage);
                b.arg(&self.z)
                    .arg(&mut self.spare)
                    .arg(&lines)
                    .arg(&l)
                    .arg(&st)
                    .arg(&ns)
                    .arg(tw)
                    .arg(&inverse);
                let cfg = geometry::elementwise(plan.lines(self.n) * plan.extent / 2)?;
                // SAFETY: matches fft_stage; z and spare hold 2n values, tw L/2 twiddles.
                unsafe { b.launch(cfg) }?;
                std::mem::swap(&mut self.z, &mut self.spare);
            }
            if !plan.radix2 {
                let mut b = s.launch_builder(&self.dft);
                b.arg(&self.z)
                    .arg(&mut self.spare)
                    .arg(&lines)
                    .arg(&l)
                    .arg(&st)
                    .arg(tw)
                    .arg(&inverse);
                // SAFETY: matches dft_axis; z and spare hold 2n values, tw L twiddles.
                unsafe { b.launch(geometry::elementwise(self.n)?) }?;
                std::mem::swap(&mut self.z, &mut self.spare);
            }
        }
        Ok(())
    }

    /// Re z into `out` (of n values), with `store` the loaded `fourier_store`.
    fn store_z(
        dev: &CudaDevice,
        store: &CudaFunction,
        z: &CudaSlice<f64>,
        out: &mut CudaSlice<f64>,
    ) -> Result<()> {
        super::cpu::check_len(2 * out.len(), z.len())?;
        let n = out.len() as u32;
        let cfg = geometry::elementwise(out.len())?;
        let mut b = dev.stream().launch_builder(store);
        b.arg(z).arg(out).arg(&n);
        // SAFETY: matches fourier_store; z holds 2n values, out n (checked).
        unsafe { b.launch(cfg) }?;
        Ok(())
    }

    /// q ← M⁻¹p.
    fn inverse_into_q(&mut self, p: &CudaSlice<f64>) -> Result<()> {
        self.filter_to_z(p, Power::Inverse)?;
        Self::store_z(&self.dev, &self.store, &self.z, &mut self.q)
    }

    /// x ← M^power x.
    pub fn apply(&mut self, x: &mut CudaSlice<f64>, power: Power) -> Result<()> {
        self.filter_to_z(x, power)?;
        Self::store_z(&self.dev, &self.store, &self.z, x)
    }

    /// φ_next = φ + drift·M⁻¹p.
    pub fn drift(
        &mut self,
        phi: &CudaSlice<f64>,
        p: &CudaSlice<f64>,
        phi_next: &mut CudaSlice<f64>,
        drift: f64,
    ) -> Result<()> {
        self.inverse_into_q(p)?;
        super::cpu::check_len(phi.len().min(phi_next.len()), self.n)?;
        let n = self.n as u32;
        let mut b = self.dev.stream().launch_builder(&self.axpy);
        b.arg(phi_next).arg(phi).arg(&drift).arg(&self.q).arg(&n);
        // SAFETY: matches axpy; every buffer holds n values (checked).
        unsafe { b.launch(geometry::elementwise(self.n)?) }?;
        Ok(())
    }

    /// Per chain ½ pᵀM⁻¹p, summed per chunk on the device and over chunks on the host in order.
    pub fn kinetic(&mut self, p: &CudaSlice<f64>) -> Result<Vec<f64>> {
        self.inverse_into_q(p)?;
        let chains = self.n / self.volume;
        let cfg = geometry::chunked(chains, self.volume)?;
        let (seg, chunk) = (self.volume as u32, REDUCE_CHUNK as u32);
        let mut b = self.dev.stream().launch_builder(&self.dot);
        b.arg(p)
            .arg(&self.q)
            .arg(&mut self.chunks)
            .arg(&seg)
            .arg(&chunk);
        // SAFETY: matches dot_chunks; p and q hold n values, chunks one per block.
        unsafe { b.launch(cfg) }?;
        let flat = self.dev.stream().clone_dtoh(&self.chunks)?;
        let per = chunks_per_segment(self.volume);
        Ok(sum_chunks(&flat, 1, per).iter().map(|d| 0.5 * d).collect())
    }
}
