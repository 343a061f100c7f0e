//! The C interface's contract, exercised from Rust: bad input gives a code and a message (never a
//! crash), lengths are checked, checkpoints restore bit-identically and refuse foreign files.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

use latticeml_c::result::*;
use latticeml_c::sampler::*;
use latticeml_c::status::*;
use latticeml_c::theory::*;
use latticeml_c::*;

fn last_error() -> String {
    // SAFETY: a NUL-terminated string owned by the library, valid until the next failing call.
    unsafe { CStr::from_ptr(latticeml_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Asserts `status` is `code` with a message containing `needle`.
fn expect(status: i32, code: i32, needle: &str) {
    assert_eq!(status, code, "status {status}, message {:?}", last_error());
    let message = last_error();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

struct Fixture {
    device: *mut latticeml_device,
    theory: *mut latticeml_theory,
}

impl Fixture {
    fn phi4(kappa: f64) -> Self {
        let mut device = null_mut();
        let mut theory = null_mut();
        unsafe {
            assert_eq!(latticeml_device_new(cstr("cpu").as_ptr(), &mut device), 0);
            let ext = [4usize, 4];
            assert_eq!(
                latticeml_theory_phi4(2, ext.as_ptr(), kappa, 0.022, &mut theory),
                0
            );
        }
        Fixture { device, theory }
    }

    fn hmc(&self, seed: u64) -> *mut latticeml_sampler {
        let mut s = null_mut();
        let omelyan = cstr("omelyan");
        let status = unsafe {
            latticeml_hmc_new(
                self.theory,
                self.device,
                3,
                1.0,
                6,
                omelyan.as_ptr(),
                seed,
                &mut s,
            )
        };
        assert_eq!(status, 0, "{}", last_error());
        s
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        unsafe {
            latticeml_theory_free(self.theory);
            latticeml_device_free(self.device);
        }
    }
}

fn fields(s: *const latticeml_sampler, n: usize) -> Vec<f64> {
    let mut buf = vec![0.0; n];
    assert_eq!(
        unsafe { latticeml_sampler_get_fields(s, buf.as_mut_ptr(), n) },
        0
    );
    buf
}

#[test]
fn bad_arguments_are_codes_with_messages() {
    let f = Fixture::phi4(0.25);
    let mut s = null_mut();
    let mut theory = null_mut();
    let ext = [4usize, 4];
    unsafe {
        expect(
            latticeml_device_new(null(), &mut f.device.clone()),
            1,
            "name is a null pointer",
        );
        expect(
            latticeml_device_new(cstr("tpu").as_ptr(), &mut null_mut()),
            1,
            "unknown device",
        );
        let bad_utf8 = [0xffu8 as c_char, 0];
        expect(
            latticeml_device_new(bad_utf8.as_ptr(), &mut null_mut()),
            1,
            "not valid UTF-8",
        );
        expect(
            latticeml_theory_phi4(2, null(), 0.25, 0.022, &mut theory),
            1,
            "extents is a null",
        );
        expect(
            latticeml_theory_phi4(2, ext.as_ptr(), f64::NAN, 0.022, &mut theory),
            1,
            "kappa",
        );
        expect(
            latticeml_theory_phi4(2, ext.as_ptr(), 0.25, 0.022, null_mut()),
            1,
            "out is a null",
        );
        expect(
            latticeml_theory_phi4(0, ext.as_ptr(), 0.25, 0.022, &mut theory),
            1,
            "",
        );
        assert!(theory.is_null(), "no handle on failure");
        let omelyan = cstr("omelyan");
        expect(
            latticeml_hmc_new(f.theory, f.device, 0, 1.0, 6, omelyan.as_ptr(), 1, &mut s),
            1,
            "chains = 0",
        );
        expect(
            latticeml_hmc_new(
                f.theory,
                f.device,
                2,
                1.0,
                6,
                cstr("euler").as_ptr(),
                1,
                &mut s,
            ),
            1,
            "unknown integrator",
        );
        expect(
            latticeml_hmc_new(f.theory, f.device, 2, -1.0, 6, omelyan.as_ptr(), 1, &mut s),
            1,
            "tau",
        );
        expect(
            latticeml_hmc_new(null(), f.device, 2, 1.0, 6, omelyan.as_ptr(), 1, &mut s),
            1,
            "theory is a null handle",
        );
        expect(
            latticeml_local_new(
                f.theory,
                f.device,
                2,
                cstr("overrelax").as_ptr(),
                3,
                0,
                1,
                &mut s,
            ),
            1,
            "no --hits",
        );
        assert!(s.is_null());
        expect(
            latticeml_sampler_thermalize(null_mut(), 1),
            1,
            "sampler is a null handle",
        );
    }
    // The message is per thread: another thread sees none.
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "");
}

#[test]
fn lengths_and_values_are_checked_at_the_boundary() {
    let f = Fixture::phi4(0.25);
    let s = f.hmc(1);
    let n = 3 * 16;
    let mut buf = vec![0.0; n + 1];
    let mut result = null_mut();
    unsafe {
        expect(
            latticeml_sampler_get_fields(s, buf.as_mut_ptr(), n + 1),
            1,
            "48 are needed",
        );
        expect(
            latticeml_sampler_get_fields(s, null_mut(), n),
            1,
            "null pointer",
        );
        expect(
            latticeml_sampler_set_fields(s, buf.as_ptr(), n - 1),
            1,
            "48 needed",
        );
        buf[7] = f64::NAN;
        expect(
            latticeml_sampler_set_fields(s, buf.as_ptr(), n),
            2,
            "value 7 is NaN",
        );
        // Device buffers need a sampler on a GPU: a CPU sampler refuses, whatever the pointer.
        expect(
            latticeml_sampler_get_fields_device(s, 0x1000, n, null_mut()),
            1,
            "host memory",
        );
        expect(
            latticeml_sampler_set_fields_device(s, 0x1000, n, null_mut()),
            1,
            "host memory",
        );
        expect(
            latticeml_sampler_get_fields_device(null_mut(), 0x1000, n, null_mut()),
            1,
            "null",
        );
        assert_eq!(latticeml_sampler_run(s, 5, &mut result), 0);
        let (mut updates, mut chains) = (0usize, 0usize);
        assert_eq!(latticeml_result_shape(result, &mut updates, &mut chains), 0);
        assert_eq!((updates, chains), (5, 3));
        let mut dh = vec![0.0; 15];
        assert_eq!(latticeml_result_delta_h(result, dh.as_mut_ptr(), 15), 0);
        assert!(dh.iter().all(|d| d.is_finite()));
        expect(
            latticeml_result_delta_h(result, dh.as_mut_ptr(), 14),
            1,
            "15 are needed",
        );
        let m2 = cstr("M2");
        assert_eq!(
            latticeml_result_series(result, m2.as_ptr(), dh.as_mut_ptr(), 15),
            0
        );
        assert!(dh.iter().all(|&x| x >= 0.0));
        expect(
            latticeml_result_series(result, cstr("chi2").as_ptr(), dh.as_mut_ptr(), 15),
            1,
            "no primary observable 'chi2'",
        );
        let mut value = 0.0;
        let chi2 = cstr("chi2");
        assert_eq!(
            latticeml_result_observable(result, chi2.as_ptr(), &mut value, null_mut(), null_mut()),
            0
        );
        assert!(value > 0.0);
        expect(
            latticeml_result_observable(
                result,
                cstr("E0").as_ptr(),
                &mut value,
                null_mut(),
                null_mut(),
            ),
            1,
            "this theory has M, absM, chi2",
        );
        let mut name = [0 as c_char; 4];
        assert_eq!(
            latticeml_result_observable_name(result, 2, name.as_mut_ptr(), 4),
            0
        );
        assert_eq!(CStr::from_ptr(name.as_ptr()).to_str().unwrap(), "chi"); // truncated
        expect(
            latticeml_result_observable_name(result, 99, name.as_mut_ptr(), 4),
            1,
            "out of range",
        );
        expect(latticeml_sampler_run(s, 0, &mut result), 1, "updates = 0");
        latticeml_result_free(result);
        latticeml_sampler_free(s);
        latticeml_result_free(null_mut());
        latticeml_sampler_free(null_mut());
    }
}

#[test]
fn checkpoints_restore_bit_identically_and_refuse_foreign_files() {
    let dir = std::env::temp_dir().join(format!("latticeml-capi-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = cstr(dir.join("chain.ckpt").to_str().unwrap());
    let f = Fixture::phi4(0.26);
    let n = 3 * 16;
    let (straight, resumed) = (f.hmc(9), f.hmc(9));
    unsafe {
        assert_eq!(latticeml_sampler_thermalize(straight, 10), 0);
        assert_eq!(latticeml_sampler_checkpoint(straight, path.as_ptr()), 0);
        // Rewriting this chain's own checkpoint is allowed.
        assert_eq!(latticeml_sampler_checkpoint(straight, path.as_ptr()), 0);
        assert_eq!(latticeml_sampler_restore(resumed, path.as_ptr()), 0);
        let mut done = 0u64;
        assert_eq!(latticeml_sampler_updates_done(resumed, &mut done), 0);
        assert_eq!(done, 10);
        let (mut r1, mut r2) = (null_mut(), null_mut());
        assert_eq!(latticeml_sampler_run(straight, 7, &mut r1), 0);
        assert_eq!(latticeml_sampler_run(resumed, 7, &mut r2), 0);
        let bits = |v: Vec<f64>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(fields(straight, n)), bits(fields(resumed, n)));
        let (mut d1, mut d2) = (vec![0.0; 21], vec![0.0; 21]);
        latticeml_result_delta_h(r1, d1.as_mut_ptr(), 21);
        latticeml_result_delta_h(r2, d2.as_mut_ptr(), 21);
        assert_eq!(bits(d1), bits(d2));

        // Another chain (another seed) is neither restored from nor written over it.
        let other = f.hmc(10);
        expect(latticeml_sampler_restore(other, path.as_ptr()), 4, "seed");
        expect(
            latticeml_sampler_checkpoint(other, path.as_ptr()),
            4,
            "another chain",
        );
        // A file that is not a checkpoint is never overwritten.
        let notes = dir.join("notes.txt");
        std::fs::write(&notes, "my data").unwrap();
        let notes_c = cstr(notes.to_str().unwrap());
        expect(
            latticeml_sampler_checkpoint(straight, notes_c.as_ptr()),
            4,
            "refusing to overwrite",
        );
        assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my data");
        expect(
            latticeml_sampler_restore(other, notes_c.as_ptr()),
            4,
            "not a latticeml checkpoint",
        );
        let missing = cstr(dir.join("missing").to_str().unwrap());
        expect(
            latticeml_sampler_restore(other, missing.as_ptr()),
            3,
            "missing",
        );
        for p in [straight, resumed, other] {
            latticeml_sampler_free(p);
        }
        latticeml_result_free(r1);
        latticeml_result_free(r2);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn local_samplers_run_every_theory() {
    let mut device = null_mut();
    let ext = [4usize, 4];
    unsafe {
        assert_eq!(latticeml_device_new(cstr("cpu").as_ptr(), &mut device), 0);
        let mut theories = [null_mut(); 4];
        assert_eq!(
            latticeml_theory_ising(2, ext.as_ptr(), 0.3, &mut theories[0]),
            0
        );
        assert_eq!(
            latticeml_theory_xy(2, ext.as_ptr(), 0.8, &mut theories[1]),
            0
        );
        assert_eq!(
            latticeml_theory_oscillator(0.5, 1.0, 1.4, 20.0, 100, &mut theories[2]),
            0
        );
        assert_eq!(
            latticeml_theory_phi4_standard(2, ext.as_ptr(), -4.0, 8.0, &mut theories[3]),
            0
        );
        let algorithms = ["heatbath", "overrelax", "wolff", "cluster"];
        for (t, a) in theories.iter().zip(algorithms) {
            let mut s = null_mut();
            let name = cstr(a);
            let status = latticeml_local_new(*t, device, 2, name.as_ptr(), 0, 0, 3, &mut s);
            assert_eq!(status, 0, "{a}: {}", last_error());
            let mut r = null_mut();
            assert_eq!(
                latticeml_sampler_run(s, 4, &mut r),
                0,
                "{a}: {}",
                last_error()
            );
            let mut acc = -1.0;
            assert_eq!(latticeml_result_acceptance(r, &mut acc), 0);
            assert!((0.0..=1.0).contains(&acc), "{a}: {acc}");
            expect(
                latticeml_result_exp_minus_delta_h(r, null_mut(), null_mut()),
                1,
                "no global",
            );
            latticeml_result_free(r);
            latticeml_sampler_free(s);
        }
        // MALA and unadjusted Langevin on the oscillator; Langevin needs a force too.
        for adjusted in [1, 0] {
            let mut s = null_mut();
            let status = latticeml_langevin_new(theories[2], device, 2, 0.01, adjusted, 4, &mut s);
            assert_eq!(status, 0, "{}", last_error());
            let mut r = null_mut();
            assert_eq!(latticeml_sampler_run(s, 5, &mut r), 0);
            let mut acc = -1.0;
            assert_eq!(latticeml_result_acceptance(r, &mut acc), 0);
            assert!(
                if adjusted == 1 { acc > 0.5 } else { acc == 1.0 },
                "{adjusted}: {acc}"
            );
            latticeml_result_free(r);
            latticeml_sampler_free(s);
        }
        let mut s = null_mut();
        expect(
            latticeml_langevin_new(theories[0], device, 2, 0.01, 1, 4, &mut s),
            1,
            "ising",
        );
        expect(
            latticeml_langevin_new(theories[3], device, 2, -1.0, 1, 4, &mut s),
            1,
            "--epsilon",
        );
        // HMC needs a force: the Ising model has none.
        let mut s = null_mut();
        let omelyan = cstr("omelyan");
        expect(
            latticeml_hmc_new(theories[0], device, 2, 1.0, 5, omelyan.as_ptr(), 1, &mut s),
            1,
            "not available for --theory ising",
        );
        // Fourier-accelerated HMC on φ⁴ (standard form), freed theory kept alive by the sampler.
        let status = latticeml_fa_hmc_new(
            theories[3],
            device,
            2,
            1.0,
            5,
            omelyan.as_ptr(),
            1,
            0.5,
            &mut s,
        );
        assert_eq!(status, 0, "{}", last_error());
        for t in theories {
            latticeml_theory_free(t);
        }
        latticeml_device_free(device);
        let mut r = null_mut();
        assert_eq!(latticeml_sampler_run(s, 3, &mut r), 0);
        let (mut w, mut e) = (0.0, 0.0);
        assert_eq!(latticeml_result_exp_minus_delta_h(r, &mut w, &mut e), 0);
        assert!(w.is_finite());
        latticeml_result_free(r);
        latticeml_sampler_free(s);
    }
}

#[test]
fn a_share_of_an_ensemble_is_those_chains_of_the_whole() {
    let f = Fixture::phi4(0.26);
    let v = 16;
    let mut whole = null_mut();
    let omelyan = cstr("omelyan");
    unsafe {
        let status = latticeml_hmc_new(
            f.theory,
            f.device,
            5,
            1.0,
            6,
            omelyan.as_ptr(),
            4,
            &mut whole,
        );
        assert_eq!(status, 0);
        let share = f.hmc(4); // 3 chains
        assert_eq!(
            latticeml_sampler_set_first_chain(share, 2),
            0,
            "{}",
            last_error()
        );
        for s in [whole, share] {
            assert_eq!(latticeml_sampler_thermalize(s, 5), 0);
        }
        let all = fields(whole, 5 * v);
        assert_eq!(fields(share, 3 * v), all[2 * v..]);
        expect(
            latticeml_sampler_set_first_chain(share, 0),
            1,
            "before the first update",
        );
        let (mut local_whole, mut local_share) = (null_mut(), null_mut());
        let name = cstr("wolff");
        let status = latticeml_local_new(
            f.theory,
            f.device,
            4,
            name.as_ptr(),
            0,
            0,
            1,
            &mut local_whole,
        );
        assert_eq!(status, 0);
        let status = latticeml_local_new(
            f.theory,
            f.device,
            1,
            name.as_ptr(),
            0,
            0,
            1,
            &mut local_share,
        );
        assert_eq!(status, 0);
        assert_eq!(latticeml_sampler_set_first_chain(local_share, 3), 0);
        for s in [local_whole, local_share] {
            assert_eq!(latticeml_sampler_thermalize(s, 4), 0);
        }
        assert_eq!(fields(local_share, v), fields(local_whole, 4 * v)[3 * v..]);
        for s in [whole, share, local_whole, local_share] {
            latticeml_sampler_free(s);
        }
    }
}

#[test]
fn last_error_copy_sizes_and_truncates() {
    unsafe {
        expect(
            latticeml_device_new(cstr("tpu").as_ptr(), &mut null_mut()),
            1,
            "tpu",
        );
        let full = latticeml_last_error_copy(null_mut(), 0);
        assert_eq!(full, last_error().len());
        let mut buf = [1 as c_char; 8];
        assert_eq!(latticeml_last_error_copy(buf.as_mut_ptr(), 8), full);
        assert_eq!(
            CStr::from_ptr(buf.as_ptr()).to_bytes(),
            &last_error().as_bytes()[..7]
        );
        let version = CStr::from_ptr(latticeml_version()).to_str().unwrap();
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
    }
}

/// Handles moved to another thread (the C contract: a sampler is used by one thread at a time).
struct Shared<T>(T);
// SAFETY: each sampler is used by exactly one thread; the device and theory are shared read-only,
// as the header allows.
unsafe impl<T> Send for Shared<T> {}

#[test]
fn samplers_on_one_device_run_concurrently_as_they_run_alone() {
    let f = Fixture::phi4(0.26);
    let run = |seed: u64| {
        let s = f.hmc(seed);
        unsafe { assert_eq!(latticeml_sampler_thermalize(s, 20), 0) };
        let out = fields(s, 3 * 16);
        unsafe { latticeml_sampler_free(s) };
        out
    };
    let alone: Vec<Vec<f64>> = (0..4).map(run).collect();
    let samplers: Vec<Shared<*mut latticeml_sampler>> = (0..4).map(|s| Shared(f.hmc(s))).collect();
    let threads: Vec<_> = samplers
        .into_iter()
        .map(|s| {
            std::thread::spawn(move || {
                let s = s;
                unsafe { assert_eq!(latticeml_sampler_thermalize(s.0, 20), 0) };
                let out = fields(s.0, 3 * 16);
                unsafe { latticeml_sampler_free(s.0) };
                out
            })
        })
        .collect();
    let together: Vec<Vec<f64>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(together, alone);
}
