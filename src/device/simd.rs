//! Runtime CPU-feature dispatch. The crate is built for the baseline of its target (x86-64:
//! SSE2), so one binary runs everywhere; hot loops are compiled a second and third time with
//! AVX2+FMA and AVX-512 enabled and chosen at run time by [`level`]. The dispatched variants run
//! the same arithmetic in the same order (wider registers hold more independent sums, no sum is
//! reassociated and no multiply-add is fused — Rust never contracts `a * b + c`), so results are
//! bit-identical whichever variant runs: the CPU backend's answers do not depend on the machine.

use std::sync::OnceLock;

/// Instruction-set levels the hot loops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The target's baseline (SSE2 on x86-64; whatever the target has elsewhere).
    Baseline,
    /// AVX2 and FMA (x86-64).
    Avx2,
    /// AVX-512 F, VL (x86-64).
    Avx512,
}

impl Level {
    /// Name, as `LATTICEML_SIMD` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run code of this level.
    pub fn supported(self) -> bool {
        match self {
            Level::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every level this CPU supports, lowest first.
    pub fn available() -> Vec<Level> {
        [Level::Baseline, Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|l| l.supported())
            .collect()
    }
}

/// The level the CPU kernels use: the highest this CPU supports, capped by the environment
/// variable `LATTICEML_SIMD` (`baseline`, `avx2`, `avx512`) where it is set — for timing the
/// variants against each other. Detected once.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = *Level::available().last().unwrap_or(&Level::Baseline);
        let cap = match std::env::var("LATTICEML_SIMD").as_deref() {
            Ok("baseline") => Level::Baseline,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        best.min(cap)
    })
}

/// Defines `$name`, which runs the `#[inline(always)]` generic function `$body` compiled for
/// `level` (the caller checks that the CPU supports it, e.g. by passing [`level()`]).
macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident = $body:ident<$T:ident: $bound:path>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        $(#[$doc])*
        $vis fn $name<$T: $bound>(level: $crate::device::simd::Level, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<$T: $bound>($($arg: $ty),*) $(-> $ret)? { $body::<$T>($($arg),*) }
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512<$T: $bound>($($arg: $ty),*) $(-> $ret)? { $body::<$T>($($arg),*) }
                match level {
                    // SAFETY: the level is one the CPU supports (Level::supported), so the
                    // instructions the variant was compiled with exist.
                    $crate::device::simd::Level::Avx512
                        if $crate::device::simd::Level::Avx512.supported() =>
                    {
                        return unsafe { avx512::<$T>($($arg),*) };
                    }
                    $crate::device::simd::Level::Avx2 | $crate::device::simd::Level::Avx512
                        if $crate::device::simd::Level::Avx2.supported() =>
                    {
                        return unsafe { avx2::<$T>($($arg),*) };
                    }
                    _ => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            $body::<$T>($($arg),*)
        }
    };
}
pub(crate) use dispatch;
