//! exp and tanh of f32 values in a form the compiler vectorises: evaluated in f64 (e^y by range
//! reduction and a polynomial; tanh near zero by its series) and rounded once. libm's `expf` and
//! `tanhf` are a call per value (`tanhf` was 15 % of a flow's training step); these are within an
//! ulp of the correctly rounded value (practically always equal to it), and every SIMD level
//! computes the same bits.

/// |x| beyond which tanh x rounds to ±1 in f32 (1 − 2e⁻²⁰ is within half an ulp of 1).
const SATURATES: f64 = 10.0;
/// |x| below which the odd series is used (its first omitted term is 1e-11 relative there).
const SERIES_BELOW: f64 = 0.125;
/// x beyond which eˣ overflows f32 (e^89 > 3.4e38): clamped there, it still rounds to +∞.
const EXP_ABOVE: f64 = 89.0;
/// x below which eˣ rounds to zero in f32 (e^−104 is below half the least subnormal, 7e-46):
/// clamped there, it still rounds to 0.
const EXP_BELOW: f64 = -104.0;
/// 1.5 · 2⁵²: adding it rounds a small f64 to an integer held in the low mantissa bits.
const ROUNDER: f64 = 6_755_399_441_055_744.0;
/// ln 2 split into a part whose low mantissa bits are zero (k · LN2_HI is exact for |k| < 2¹¹)
/// and the rest.
const LN2_HI: f64 = 0.693_147_180_369_123_8;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// e^y for |y| ≤ 700: y = k ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor polynomial to r¹¹
/// (truncation 6e-15 relative), 2^k assembled in the exponent bits.
#[inline(always)]
fn exp_reduced(y: f64) -> f64 {
    let kr = y * std::f64::consts::LOG2_E + ROUNDER;
    let k = kr - ROUNDER;
    let r = (y - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 39_916_800.0;
    for c in [
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // The low bits of `kr` hold 2⁵¹ + k; with 1023 added, its low 12 bits are the biased
    // exponent k + 1023 (in 1..2046 for |k| ≤ 1010), shifted into the exponent field.
    let two_k = f64::from_bits((kr.to_bits().wrapping_add(1023)) << 52);
    p * two_k
}

/// eˣ for f32 x (NaN stays NaN, −∞ maps to 0, +∞ and overflow to +∞, underflow to subnormals
/// and 0 as rounding gives them).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let y = x as f64;
    let y = if y > EXP_ABOVE { EXP_ABOVE } else { y };
    let y = if y < EXP_BELOW { EXP_BELOW } else { y };
    exp_reduced(y) as f32
}

/// tanh x for f32 x (NaN stays NaN, ±0 and ±∞ map to ±0 and ±1).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = (x as f64).abs();
    let a = if a > SATURATES { SATURATES } else { a };
    let e = exp_reduced(2.0 * a);
    let far = 1.0 - 2.0 / (e + 1.0);
    // tanh a = a − a³/3 + 2a⁵/15 − 17a⁷/315 + 62a⁹/2835 − …
    let a2 = a * a;
    let near = a
        * (1.0
            + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0)))));
    let t = if a < SERIES_BELOW { near } else { far };
    (t as f32).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in ulps between two finite f32 of one sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Against f64's exp rounded to f32, over the whole range (overflow, subnormals, zero) and
    /// the special values.
    #[test]
    fn exp_f32_is_within_an_ulp_of_the_rounded_value() {
        let mut exact = 0usize;
        let xs: Vec<f32> = (-1_200_000..1_000_000).map(|i| i as f32 * 9e-5).collect();
        for &x in &xs {
            let want = (x as f64).exp() as f32;
            let got = exp_f32(x);
            let d = if want.is_infinite() || want == 0.0 {
                u32::from(got != want)
            } else {
                ulps(got, want)
            };
            exact += usize::from(d == 0);
            assert!(d <= 1, "exp({x}) = {got:e}, want {want:e}");
        }
        assert!(exact as f64 > 0.999 * xs.len() as f64, "{exact} exact");
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(88.8), f32::INFINITY);
        assert_eq!(exp_f32(-104.0), 0.0);
        assert_eq!(exp_f32(-103.0), (-103.0f64).exp() as f32);
        assert!(exp_f32(-103.0) > 0.0, "a subnormal, not zero");
    }

    /// Against f64's tanh rounded to f32, over a grid dense near zero, the series boundary and
    /// the saturation, and the special values.
    #[test]
    fn tanh_f32_is_within_an_ulp_of_the_rounded_value() {
        let mut worst = 0;
        let mut exact = 0usize;
        let mut xs: Vec<f32> = (0..200_000).map(|i| i as f32 * 6e-5).collect();
        xs.extend((0..2000).map(|i| 0.125 + (i as f32 - 1000.0) * 1e-7));
        xs.extend((1..300).map(|i| (i as f32 * -0.1).exp2()));
        xs.extend([
            9.0,
            9.01,
            9.5,
            10.0,
            10.5,
            30.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
        ]);
        for &x in &xs {
            for x in [x, -x] {
                let want = (x as f64).tanh() as f32;
                let got = tanh_f32(x);
                assert_eq!(
                    got.is_sign_negative(),
                    want.is_sign_negative(),
                    "sign at {x}"
                );
                let d = ulps(got, want);
                worst = worst.max(d);
                exact += usize::from(d == 0);
                assert!(d <= 1, "tanh({x}) = {got}, want {want}");
            }
        }
        assert!(
            exact as f64 > 0.999 * 2.0 * xs.len() as f64,
            "{exact} exact"
        );
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(-0.0) == 0.0 && tanh_f32(-0.0).is_sign_negative());
        eprintln!("worst {worst} ulp, {exact} of {} exact", 2 * xs.len());
    }
}
