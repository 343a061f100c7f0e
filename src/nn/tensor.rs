//! Tensors for the autodiff tape: a shape and a buffer on one device, f32 or f64.
//!
//! Buffers come from a per-context pool and go back to it when the tensor is dropped, so after the
//! first training step a step allocates nothing new on the device.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};

use crate::device::{CpuDevice, CudaDevice, Device};
use crate::error::{Error, Result};

/// Element types of tensors: f32 for training, f64 for gradient checks and spectral work.
pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + std::fmt::Debug
    + std::fmt::Display
    + bytemuck::Pod
    + DeviceRepr
    + ValidAsZeroBits
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + 'static
{
    /// Suffix of the CUDA kernels for this type (`f32`, `f64`).
    const NAME: &'static str;
    /// The safetensors dtype (`F32`, `F64`).
    const SAFETENSORS: &'static str;
    /// Conversion from f64 (rounding for f32).
    fn from_f64(x: f64) -> Self;
    /// Conversion to f64.
    fn to_f64(self) -> f64;
    /// Zero.
    fn zero() -> Self {
        Self::default()
    }
    /// eˣ.
    fn exp(self) -> Self;
    /// ln x.
    fn ln(self) -> Self;
    /// ln(1 + x).
    fn ln_1p(self) -> Self;
    /// tanh x.
    fn tanh(self) -> Self;
    /// |x|.
    fn abs(self) -> Self;
    /// √x.
    fn sqrt(self) -> Self;
}

macro_rules! real_impl {
    ($t:ty, $name:literal, $st:literal, $exp:path, $tanh:path) => {
        impl Real for $t {
            const NAME: &'static str = $name;
            const SAFETENSORS: &'static str = $st;
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                $exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn tanh(self) -> Self {
                $tanh(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
        }
    };
}
// f32's exp and tanh are the CPU backend's vectorisable ones (libm's are a call per value).
real_impl!(f32, "f32", "F32", super::cpu::exp_f32, super::cpu::tanh_f32);
real_impl!(f64, "f64", "F64", f64::exp, f64::tanh);

/// Storage of one tensor.
pub enum Buffer<T: Real> {
    /// Host memory.
    Cpu(Vec<T>),
    /// Device memory.
    Cuda(CudaSlice<T>),
}

impl<T: Real> Buffer<T> {
    fn len(&self) -> usize {
        match self {
            Buffer::Cpu(v) => v.len(),
            Buffer::Cuda(s) => s.len(),
        }
    }
}

/// Free buffers by length, and how many were freshly allocated.
struct PoolState<T: Real> {
    free: HashMap<usize, Vec<Buffer<T>>>,
    fresh: usize,
}

/// A device plus the buffer pool of its tensors. Cheap to clone.
#[derive(Clone)]
pub struct Ctx<T: Real> {
    device: Device,
    pool: Arc<Mutex<PoolState<T>>>,
}

impl<T: Real> std::fmt::Debug for Ctx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ctx<{}>({})", T::NAME, self.device.describe())
    }
}

impl<T: Real> Ctx<T> {
    /// A context on `device` with an empty pool.
    pub fn new(device: Device) -> Self {
        Ctx {
            device,
            pool: Arc::new(Mutex::new(PoolState {
                free: HashMap::new(),
                fresh: 0,
            })),
        }
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The CPU device, when this context is on the CPU.
    pub fn cpu(&self) -> Option<&CpuDevice> {
        match &self.device {
            Device::Cpu(d) => Some(d),
            Device::Cuda(_) => None,
        }
    }

    /// The GPU, when this context is on CUDA.
    pub fn cuda(&self) -> Option<&CudaDevice> {
        match &self.device {
            Device::Cuda(d) => Some(d),
            Device::Cpu(_) => None,
        }
    }

    /// Buffers allocated from the device so far (not served from the pool).
    pub fn fresh_allocations(&self) -> usize {
        self.pool.lock().map(|p| p.fresh).unwrap_or(0)
    }

    /// Hands every pooled buffer back to the allocator (or the device). The pool keeps the free
    /// buffers of every size it has seen; a caller whose sizes keep changing (a shrinking set of
    /// active networks) calls this when they change, so that the pool does not grow with each.
    pub fn release_pooled(&self) {
        if let Ok(mut p) = self.pool.lock() {
            p.free.clear();
        }
    }

    /// A buffer of `len` elements with unspecified contents (from the pool when one is free).
    fn take(&self, len: usize) -> Result<Buffer<T>> {
        {
            let mut p = self
                .pool
                .lock()
                .map_err(|_| Error::InvalidInput("tensor pool poisoned".into()))?;
            if let Some(b) = p.free.get_mut(&len).and_then(|v| v.pop()) {
                return Ok(b);
            }
            p.fresh += 1;
        }
        crate::device::memory::check(
            &self.device,
            (len as u128) * std::mem::size_of::<T>() as u128,
            &format!("a tensor of {len} values"),
            "use smaller batches, lattices or layers",
        )?;
        Ok(match &self.device {
            Device::Cpu(_) => Buffer::Cpu(vec![T::zero(); len]),
            Device::Cuda(d) => Buffer::Cuda(d.stream().alloc_zeros::<T>(len.max(1))?),
        })
    }

    fn give(&self, b: Buffer<T>) {
        if let Ok(mut p) = self.pool.lock() {
            p.free.entry(b.len()).or_default().push(b);
        }
    }

    /// An uninitialised tensor (contents unspecified: every kernel writing it overwrites all of it).
    pub fn empty(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let n = crate::io::element_count(shape).ok_or_else(|| {
            Error::InvalidInput(format!("shape {shape:?}: the element count overflows"))
        })?;
        Ok(Tensor {
            shape: shape.to_vec(),
            buf: Some(self.take(n)?),
            ctx: self.clone(),
        })
    }

    /// A tensor of zeros.
    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let mut t = self.empty(shape)?;
        t.fill(T::zero())?;
        Ok(t)
    }

    /// A tensor holding `data` (its length must match the shape).
    pub fn from_vec(&self, shape: &[usize], data: &[T]) -> Result<Tensor<T>> {
        let n = crate::io::element_count(shape).unwrap_or(usize::MAX);
        if n != data.len() {
            return Err(Error::InvalidInput(format!(
                "shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        let mut t = self.empty(shape)?;
        match t.buf_mut() {
            Buffer::Cpu(v) => v.copy_from_slice(data),
            Buffer::Cuda(s) => {
                let d = self
                    .cuda()
                    .ok_or_else(|| Error::Cuda("CUDA buffer on a CPU context".into()))?;
                d.stream().memcpy_htod(data, s)?;
            }
        }
        Ok(t)
    }

    /// A tensor holding f64 values converted to `T`.
    pub fn from_f64(&self, shape: &[usize], data: &[f64]) -> Result<Tensor<T>> {
        self.from_vec(
            shape,
            &data.iter().map(|&x| T::from_f64(x)).collect::<Vec<_>>(),
        )
    }
}

/// A tensor: shape (row-major) and a pooled buffer on its context's device.
pub struct Tensor<T: Real> {
    shape: Vec<usize>,
    buf: Option<Buffer<T>>,
    ctx: Ctx<T>,
}

impl<T: Real> Drop for Tensor<T> {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.ctx.give(b);
        }
    }
}

impl<T: Real> std::fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor<{}>{:?}", T::NAME, self.shape)
    }
}

impl<T: Real> Tensor<T> {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The context (device and pool).
    pub fn ctx(&self) -> &Ctx<T> {
        &self.ctx
    }

    /// The buffer.
    pub fn buf(&self) -> &Buffer<T> {
        self.buf
            .as_ref()
            .unwrap_or_else(|| unreachable!("buffer present until drop"))
    }

    /// The buffer, mutably.
    pub fn buf_mut(&mut self) -> &mut Buffer<T> {
        self.buf
            .as_mut()
            .unwrap_or_else(|| unreachable!("buffer present until drop"))
    }

    /// The same data under another shape with the same number of elements (a copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor<T>> {
        if crate::io::element_count(shape) != Some(self.len()) {
            return Err(Error::InvalidInput(format!(
                "cannot reshape {:?} to {shape:?}",
                self.shape
            )));
        }
        let mut t = self.copy()?;
        t.shape = shape.to_vec();
        Ok(t)
    }

    /// Renames the shape in place (same number of elements).
    pub fn set_shape(&mut self, shape: &[usize]) -> Result<()> {
        if crate::io::element_count(shape) != Some(self.len()) {
            return Err(Error::InvalidInput(format!(
                "cannot reshape {:?} to {shape:?}",
                self.shape
            )));
        }
        self.shape = shape.to_vec();
        Ok(())
    }

    /// A copy in a fresh (pooled) buffer.
    pub fn copy(&self) -> Result<Tensor<T>> {
        let mut t = self.ctx.empty(&self.shape)?;
        match (self.buf(), t.buf_mut()) {
            (Buffer::Cpu(a), Buffer::Cpu(b)) => b.copy_from_slice(a),
            (Buffer::Cuda(a), Buffer::Cuda(b)) => self.stream()?.memcpy_dtod(a, b)?,
            _ => return Err(mixed()),
        }
        Ok(t)
    }

    /// Sets every element to `x`.
    pub fn fill(&mut self, x: T) -> Result<()> {
        let stream = match &self.ctx.device {
            Device::Cuda(d) => Some(d.stream().clone()),
            Device::Cpu(_) => None,
        };
        match (self.buf_mut(), stream) {
            (Buffer::Cpu(v), _) => v.iter_mut().for_each(|e| *e = x),
            (Buffer::Cuda(s), Some(st)) if x == T::zero() => st.memset_zeros(s)?,
            (Buffer::Cuda(s), Some(st)) => {
                let host = vec![x; s.len()];
                st.memcpy_htod(&host, s)?;
            }
            _ => return Err(mixed()),
        }
        Ok(())
    }

    /// The values, copied to the host.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        match self.buf() {
            Buffer::Cpu(v) => Ok(v.clone()),
            Buffer::Cuda(s) => Ok(self.stream()?.clone_dtoh(&s.slice(..self.len()))?),
        }
    }

    /// The values as f64 on the host.
    pub fn to_f64(&self) -> Result<Vec<f64>> {
        Ok(self.to_vec()?.into_iter().map(T::to_f64).collect())
    }

    fn stream(&self) -> Result<std::sync::Arc<cudarc::driver::CudaStream>> {
        self.ctx
            .cuda()
            .map(|d| d.stream().clone())
            .ok_or_else(mixed)
    }
}

pub(crate) fn mixed() -> Error {
    Error::InvalidInput("tensors on different devices".into())
}
