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

/// Moves an 8 × 8 block of f32: `dst[b·dst_stride + a] = src[a·src_stride + b]` for a, b < 8,
/// with AVX shuffles where `level` has them (eight loads, 24 shuffles and eight stores instead
/// of 64 single moves). Returns false, touching nothing, where the level has no AVX or a
/// slice is too short for the block; the caller then moves the values one by one.
pub(crate) fn transpose8_f32(
    level: Level,
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
) -> bool {
    let fits = |stride: usize| stride.checked_mul(7).and_then(|v| v.checked_add(8));
    let (Some(need_src), Some(need_dst)) = (fits(src_stride), fits(dst_stride)) else {
        return false;
    };
    if level == Level::Baseline || src.len() < need_src || dst.len() < need_dst {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if level.supported() {
            // SAFETY: AVX is part of every level above the baseline, which this CPU supports;
            // rows a·stride .. a·stride + 8 for a < 8 lie inside both slices (checked above).
            unsafe { transpose8_avx(src.as_ptr(), src_stride, dst.as_mut_ptr(), dst_stride) };
            return true;
        }
    }
    false
}

/// The AVX body of [`transpose8_f32`] (the classic unpack / shuffle / lane-permute sequence).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose8_avx(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|a| _mm256_loadu_ps(src.add(a * ss)));
    let t = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    let u = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    for b in 0..4 {
        _mm256_storeu_ps(
            dst.add(b * ds),
            _mm256_permute2f128_ps::<0x20>(u[b], u[b + 4]),
        );
        _mm256_storeu_ps(
            dst.add((b + 4) * ds),
            _mm256_permute2f128_ps::<0x31>(u[b], u[b + 4]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shuffled block is the transpose, at every level (strides wider than the block).
    #[test]
    fn transpose8_moves_every_value() {
        let src: Vec<f32> = (0..8 * 11).map(|v| v as f32).collect();
        for level in Level::available() {
            let mut dst = vec![-1.0f32; 8 * 13];
            let done = transpose8_f32(level, &src, 11, &mut dst, 13);
            assert_eq!(done, level != Level::Baseline);
            if !done {
                continue;
            }
            for a in 0..8 {
                for b in 0..8 {
                    assert_eq!(dst[b * 13 + a], src[a * 11 + b], "{level:?} ({a}, {b})");
                }
            }
            assert!(dst.iter().filter(|&&v| v == -1.0).count() == 8 * 13 - 64);
        }
        // Too short a slice: refused, nothing written.
        let mut short = vec![0.0f32; 8 * 13 - 6];
        assert!(!transpose8_f32(Level::Avx2, &src, 11, &mut short, 13));
    }
}
