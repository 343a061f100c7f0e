//! The CUDA backend: one context and stream per device, kernels compiled at run time by NVRTC from
//! the sources embedded in the binary, with an explicit `arch` from the device's compute capability.
//! PTX is cached per process (by family and arch) and loaded modules per device. `libcuda` and
//! `libnvrtc` are probed before use, so a machine without them gets an error value, never a panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::error::{Error, Result};

/// One `.cu` file of `kernels/`, with the headers it needs prepended (NVRTC gets no include path).
/// Compiled PTX and loaded modules are cached by name *and* a hash of the text, so a family of
/// the same name with other source never receives another family's module.
#[derive(Clone, Copy, Debug)]
pub struct KernelFamily {
    name: &'static str,
    headers: &'static [&'static str],
    source: &'static str,
    /// NVRTC options beyond the architecture and language standard.
    options: &'static [&'static str],
    hash: u64,
}

/// FNV-1a over `s`, continuing from `h`: a const fn, so each family's key is computed at compile time.
const fn fnv1a(mut h: u64, s: &str) -> u64 {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

impl KernelFamily {
    /// A family named `name` (the file stem) whose translation unit is `headers` then `source`.
    pub const fn new(
        name: &'static str,
        headers: &'static [&'static str],
        source: &'static str,
    ) -> Self {
        let mut h = fnv1a(0xcbf2_9ce4_8422_2325, name);
        let mut i = 0;
        while i < headers.len() {
            h = fnv1a(h, headers[i]);
            i += 1;
        }
        KernelFamily {
            name,
            headers,
            source,
            options: &[],
            hash: fnv1a(h, source),
        }
    }

    /// The same family compiled with the NVRTC `options` as well (part of the cache key).
    pub const fn with_options(self, options: &'static [&'static str]) -> Self {
        let mut h = self.hash;
        let mut i = 0;
        while i < options.len() {
            h = fnv1a(h, options[i]);
            i += 1;
        }
        KernelFamily {
            options,
            hash: h,
            ..self
        }
    }

    /// The NVRTC options this family adds.
    pub fn options(&self) -> &'static [&'static str] {
        self.options
    }

    /// Family name (the file stem).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The cache key: the name and a hash of the headers and source.
    pub fn key(&self) -> (&'static str, u64) {
        (self.name, self.hash)
    }

    /// The full translation unit handed to NVRTC.
    pub fn translation_unit(&self) -> String {
        let mut s = String::new();
        for h in self.headers {
            s.push_str(h);
            s.push('\n');
        }
        s.push_str(self.source);
        s
    }
}

const COMMON_H: &str = include_str!("../../kernels/common.cuh");
const PHILOX_H: &str = include_str!("../../kernels/philox.cuh");
const LATTICE_H: &str = include_str!("../../kernels/lattice.cuh");
const SCALAR_H: &str = include_str!("../../kernels/scalar.cuh");

/// Philox raw blocks and normal fields (`kernels/philox.cu`).
pub const PHILOX: KernelFamily = KernelFamily::new(
    "philox",
    &[COMMON_H, PHILOX_H],
    include_str!("../../kernels/philox.cu"),
);
/// Fused HMC steps, Hamiltonians, moments and restores for nearest-neighbour scalar theories
/// (`kernels/scalar_hmc.cu`).
pub const SCALAR_HMC: KernelFamily = KernelFamily::new(
    "scalar_hmc",
    &[COMMON_H, PHILOX_H, LATTICE_H, SCALAR_H],
    include_str!("../../kernels/scalar_hmc.cu"),
);

/// The transforms and filters of Fourier-accelerated HMC (`kernels/fourier.cu`).
pub const FOURIER: KernelFamily = KernelFamily::new(
    "fourier",
    &[COMMON_H],
    include_str!("../../kernels/fourier.cu"),
);

/// Checkerboard Metropolis of the scalar theories (`kernels/scalar_local.cu`).
pub const SCALAR_LOCAL: KernelFamily = KernelFamily::new(
    "scalar_local",
    &[COMMON_H, PHILOX_H, LATTICE_H, SCALAR_H],
    include_str!("../../kernels/scalar_local.cu"),
);

/// Swendsen–Wang clusters of the embedded Ising signs of a real field (`kernels/cluster.cu`).
pub const CLUSTER: KernelFamily = KernelFamily::new(
    "cluster",
    &[COMMON_H, PHILOX_H, LATTICE_H],
    include_str!("../../kernels/cluster.cu"),
);

/// Checkerboard Metropolis and heat-bath of the 2D Ising model, multi-spin coded
/// (`kernels/ising.cu`).
pub const ISING: KernelFamily = KernelFamily::new(
    "ising",
    &[COMMON_H, PHILOX_H],
    include_str!("../../kernels/ising.cu"),
);

/// Checkerboard Metropolis and overrelaxation of the XY model (`kernels/xy.cu`).
pub const XY: KernelFamily = KernelFamily::new(
    "xy",
    &[COMMON_H, PHILOX_H, LATTICE_H],
    include_str!("../../kernels/xy.cu"),
);

/// Tensor operations of the autodiff tape (`kernels/nn.cu`).
pub const NN: KernelFamily =
    KernelFamily::new("nn", &[COMMON_H], include_str!("../../kernels/nn.cu"));
/// The normalizing flows' fused coupling (`kernels/flow.cu`).
pub const FLOW: KernelFamily =
    KernelFamily::new("flow", &[COMMON_H], include_str!("../../kernels/flow.cu"));
/// The autoregressive networks' Beta mixtures and cached generation (`kernels/can.cu`).
pub const CAN: KernelFamily = KernelFamily::new(
    "can",
    &[COMMON_H, PHILOX_H],
    include_str!("../../kernels/can.cu"),
);
/// The score network's group norm, 2× resampling and time features (`kernels/unet.cu`).
pub const UNET: KernelFamily =
    KernelFamily::new("unet", &[COMMON_H], include_str!("../../kernels/unet.cu"));

/// The padded boxes of a lattice decomposed over ranks (`kernels/domain.cu`). Without FMA
/// contraction, so that a GPU's box computes the CPU's bits.
pub const DOMAIN: KernelFamily = KernelFamily::new(
    "domain",
    &[COMMON_H, LATTICE_H, SCALAR_H],
    include_str!("../../kernels/domain.cu"),
)
.with_options(&["--fmad=false"]);

/// Every kernel family, for the NVRTC compile test and the CPU kernel harness.
pub const FAMILIES: &[KernelFamily] = &[
    PHILOX,
    SCALAR_HMC,
    DOMAIN,
    FOURIER,
    SCALAR_LOCAL,
    CLUSTER,
    NN,
    ISING,
    XY,
    FLOW,
    CAN,
    UNET,
];

/// True when the NVRTC library can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// True when the CUDA driver library can be loaded (a GPU may still be absent).
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

type FamilyKey = (&'static str, u64);

fn ptx_cache() -> &'static Mutex<HashMap<(FamilyKey, String), Ptx>> {
    static CACHE: OnceLock<Mutex<HashMap<(FamilyKey, String), Ptx>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Compiles a kernel family to PTX for `arch` (e.g. `sm_80`), once per process.
pub fn compile(family: &KernelFamily, arch: &str) -> Result<Ptx> {
    if !nvrtc_available() {
        return Err(Error::Nvrtc(
            "libnvrtc not found: install the CUDA toolkit or `pip install nvidia-cuda-nvrtc-cu12` and add its \
             nvidia/cuda_nvrtc/lib to LD_LIBRARY_PATH"
                .into(),
        ));
    }
    let key = (family.key(), arch.to_string());
    let mut cache = ptx_cache()
        .lock()
        .map_err(|_| Error::Nvrtc("PTX cache poisoned".into()))?;
    if let Some(p) = cache.get(&key) {
        return Ok(p.clone());
    }
    let mut options = vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()];
    options.extend(family.options.iter().map(|o| o.to_string()));
    let opts = CompileOptions {
        options,
        name: Some(format!("{}.cu", family.name)),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(family.translation_unit(), opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => Error::Nvrtc(format!(
            "{}.cu failed to compile for {arch}:\n{}",
            family.name,
            log.to_string_lossy()
        )),
        other => Error::Nvrtc(format!("{}.cu: {other}", family.name)),
    })?;
    cache.insert(key, ptx.clone());
    Ok(ptx)
}

/// A caller's CUDA buffer of `f64`: a device pointer (`CUdeviceptr`) in the sampler's device's
/// primary context — the one the CUDA runtime uses — its length in values, and the stream
/// (`CUstream`, 0 for the legacy default stream) that orders the caller's work on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExternalBuffer {
    /// The device pointer.
    pub ptr: u64,
    /// Values (`f64`) it holds.
    pub len: usize,
    /// The caller's stream, as an integer.
    pub stream: usize,
}

struct Inner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    ordinal: usize,
    name: String,
    arch: String,
    modules: Mutex<HashMap<FamilyKey, Arc<CudaModule>>>,
}

/// One CUDA GPU with its default stream. Cheap to clone.
#[derive(Clone)]
pub struct CudaDevice {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({})", self.describe())
    }
}

impl CudaDevice {
    /// The number of CUDA devices (0 without a driver).
    pub fn count() -> usize {
        if !driver_available() {
            return 0;
        }
        CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
    }

    /// Opens GPU `ordinal`, after checking that `libcuda`, a device and NVRTC are all present.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_available() {
            return Err(Error::Cuda(
                "libcuda not found (no NVIDIA driver on this machine)".into(),
            ));
        }
        let count = CudaContext::device_count()?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Cuda(format!(
                "no CUDA device {ordinal} ({count} found)"
            )));
        }
        if !nvrtc_available() {
            return Err(Error::Nvrtc("a GPU is present but libnvrtc was not found; add the CUDA toolkit's lib directory to LD_LIBRARY_PATH".into()));
        }
        let ctx = CudaContext::new(ordinal)?;
        let (major, minor) = ctx.compute_capability()?;
        let name = ctx.name()?;
        let stream = ctx.default_stream();
        let arch = format!("sm_{major}{minor}");
        Ok(CudaDevice {
            inner: Arc::new(Inner {
                ctx,
                stream,
                ordinal,
                name,
                arch,
                modules: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Description, e.g. `cuda:0 NVIDIA H100 80GB HBM3 (sm_90)`.
    pub fn describe(&self) -> String {
        format!(
            "cuda:{} {} ({})",
            self.inner.ordinal, self.inner.name, self.inner.arch
        )
    }

    /// The NVRTC architecture string of this device.
    pub fn arch(&self) -> &str {
        &self.inner.arch
    }

    /// The stream all of latticeml's work is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// The CUDA context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.inner.ctx
    }

    /// Copies `ours` into the caller's device buffer `ext` (`to_external`) or `ext` into `ours`,
    /// device to device, ordered after the work already queued on both the caller's stream and
    /// ours, and before any work queued on either afterwards; the host does not wait. The
    /// pointer is checked (non-null, aligned, an allocation of this device holding `ext.len`
    /// values) before anything is queued. latticeml keeps nothing of `ext` after the call.
    ///
    /// # Safety
    /// `ext.stream` must be 0 (the legacy default stream) or a live stream of this device's
    /// primary context, and `ext.ptr` must stay allocated until the copy has run on that stream
    /// (i.e. until work the caller queues on it afterwards runs). The checks catch a wrong
    /// device, length or a pointer that is not device memory, not a freed-and-reused range.
    pub unsafe fn exchange_external(
        &self,
        ours: &mut CudaSlice<f64>,
        ext: ExternalBuffer,
        to_external: bool,
    ) -> Result<()> {
        self.check_external(ext, ours.len())?;
        let ctx = self.context();
        // SAFETY: the caller's contract on the stream and the allocation (checked above to be
        // device memory of this device large enough for `ext.len` doubles).
        let theirs_stream = unsafe { ctx.wrap_borrowed_stream(ext.stream as sys::CUstream) };
        let mut theirs: CudaSlice<f64> =
            unsafe { theirs_stream.upgrade_device_ptr(ext.ptr, ext.len) };
        let ours_stream = self.stream();
        let (copying, other) = match to_external {
            true => (&theirs_stream, ours_stream),
            false => (ours_stream, &theirs_stream),
        };
        let copied = copying
            .join(other)
            .and_then(|()| match to_external {
                true => copying.memcpy_dtod(ours, &mut theirs),
                false => copying.memcpy_dtod(&theirs, ours),
            })
            .and_then(|()| other.join(copying));
        // The caller owns the allocation: never free it.
        theirs.leak();
        Ok(copied?)
    }

    /// Refuses a null, misaligned or too short external buffer, or one on another device.
    fn check_external(&self, ext: ExternalBuffer, want: usize) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidInput(format!("device buffer: {why}")));
        if ext.len != want {
            return bad(format!("{} values given, {want} needed", ext.len));
        }
        if ext.ptr == 0 || !ext.ptr.is_multiple_of(8) {
            return bad(format!(
                "pointer {:#x} is null or not 8-byte aligned",
                ext.ptr
            ));
        }
        self.context().bind_to_thread()?;
        let (mut base, mut size) = (0 as sys::CUdeviceptr, 0usize);
        // SAFETY: plain queries writing into the two locals; any pointer value is allowed.
        let found = unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, ext.ptr) };
        if found != sys::CUresult::CUDA_SUCCESS {
            return bad(format!(
                "{:#x} is not device memory of this context ({found:?})",
                ext.ptr
            ));
        }
        let end = ext.ptr.saturating_add(8 * ext.len as u64);
        if end > base.saturating_add(size as u64) {
            return bad(format!(
                "the allocation at {:#x} holds {} bytes past the pointer, {} needed",
                ext.ptr,
                base + size as u64 - ext.ptr,
                8 * ext.len
            ));
        }
        let mut ordinal: i32 = -1;
        // SAFETY: the attribute is an int written into `ordinal`.
        let asked = unsafe {
            sys::cuPointerGetAttribute(
                (&mut ordinal as *mut i32).cast(),
                sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                ext.ptr,
            )
        };
        if asked != sys::CUresult::CUDA_SUCCESS || ordinal as usize != self.inner.ordinal {
            return bad(format!(
                "the pointer belongs to device {ordinal}, the sampler runs on cuda:{}",
                self.inner.ordinal
            ));
        }
        Ok(())
    }

    /// Measured device-to-device copy bandwidth in GB/s (bytes read + bytes written per second),
    /// from `reps` copies of a buffer of `bytes` bytes.
    pub fn copy_bandwidth(&self, bytes: usize, reps: usize) -> Result<f64> {
        let s = self.stream();
        let n = bytes / 8;
        let src = s.alloc_zeros::<f64>(n)?;
        let mut dst = s.alloc_zeros::<f64>(n)?;
        s.memcpy_dtod(&src, &mut dst)?;
        s.synchronize()?;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            s.memcpy_dtod(&src, &mut dst)?;
        }
        s.synchronize()?;
        Ok(2.0 * (n * 8 * reps) as f64 / t.elapsed().as_secs_f64() / 1e9)
    }

    /// Loads `function` from `family`, compiling and loading the module on first use.
    pub fn function(&self, family: &KernelFamily, function: &str) -> Result<CudaFunction> {
        let module = {
            let mut mods = self
                .inner
                .modules
                .lock()
                .map_err(|_| Error::Cuda("module cache poisoned".into()))?;
            match mods.get(&family.key()) {
                Some(m) => m.clone(),
                None => {
                    let ptx = compile(family, &self.inner.arch)?;
                    let m = self.inner.ctx.load_module(ptx)?;
                    mods.insert(family.key(), m.clone());
                    m
                }
            }
        };
        Ok(module.load_function(function)?)
    }
}
