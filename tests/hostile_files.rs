//! Parsers of untrusted files survive hostile input: a bounded fuzz run (seeded mutations of valid
//! files: flipped and overwritten bytes, huge length fields, truncations, insertions) must give
//! values or errors, never a panic; plus the specific attacks: lengths near 2^64, element counts
//! that overflow, nesting that would overflow the stack, arrays that do not fit the run behind a
//! valid checksum, and allocations that cannot succeed.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use latticeml::device::memory;
use latticeml::hmc::{HmcParams, Integrator, Start};
use latticeml::io::checkpoint::Checkpoint;
use latticeml::io::json::Json;
use latticeml::io::npy;
use latticeml::io::outdir::Claim;
use latticeml::nn::{safetensors, Ctx, ParamStore};
use latticeml::run::{run, RunConfig};
use latticeml::sampler::SamplerConfig;
use latticeml::spectral::data::Correlator;
use latticeml::theory::TheoryConfig;
use latticeml::{Device, Error, Lattice};

/// xorshift64*: a small seeded generator for mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four random edits of `valid`.
fn mutate(valid: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = valid.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len());
        match rng.below(6) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 if !b.is_empty() => b[at] = [0x00, 0xff, b'9', b'[', b'"', b','][rng.below(6)],
            2 => b.truncate(at),
            3 => {
                let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                b.splice(at..at, junk);
            }
            4 if b.len() >= 8 => {
                // A length field read as u64 becomes enormous.
                let at = at.min(b.len() - 8);
                let v = [u64::MAX, u64::MAX / 8 + 1, 1 << 40, 0][rng.below(4)];
                b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                let end = (at + rng.below(32)).min(b.len());
                let seg = b[at..end].to_vec();
                b.splice(at..at, seg);
            }
        }
    }
    b
}

/// Runs `parse` on `cases` mutations of `valid`; fails on the first panic.
fn fuzz(name: &str, valid: &[u8], cases: usize, parse: impl Fn(&[u8])) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    parse(valid);
    for i in 0..cases {
        let input = mutate(valid, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| parse(&input))).is_err() {
            panic!(
                "{name}: case {i} panicked on {} bytes: {:?}",
                input.len(),
                &input[..input.len().min(200)]
            );
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-files");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn parsers_survive_mutated_files() {
    let npy_file = npy::encode(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    fuzz("npy", &npy_file, 3000, |b| {
        let _ = npy::decode(b);
    });

    let ck = Checkpoint {
        header: "theory=phi4\nlattice=4x4\ntrajectories_done=3".into(),
        arrays: vec![
            ("fields".into(), vec![0.5; 16]),
            ("rows".into(), vec![1.0; 9]),
        ],
    }
    .encode();
    let path = Path::new("fuzz.ckpt");
    fuzz("checkpoint", &ck, 3000, |b| {
        let _ = Checkpoint::decode(b, path);
    });

    let json = br#"{"a": [1, 2.5e-3, {"b": "x\u00e9\n"}, true, null], "c": {"d": [[]]}}"#;
    fuzz("json", json, 3000, |b| {
        if let Ok(t) = std::str::from_utf8(b) {
            let _ = Json::parse(t);
        }
    });

    let ctx = Ctx::<f32>::new(Device::Cpu(common::cpu()));
    let mut store = ParamStore::new(&ctx);
    store.insert("w", ctx.from_f64(&[2, 3], &[1.0; 6]).unwrap());
    store.insert("b", ctx.from_f64(&[3], &[0.5; 3]).unwrap());
    let st = scratch("fuzz.safetensors");
    safetensors::save(&store, &st).unwrap();
    let valid = std::fs::read(&st).unwrap();
    fuzz("safetensors", &valid, 1500, |b| {
        std::fs::write(&st, b).unwrap();
        let _ = safetensors::load(&ctx, &st);
    });

    let csv_path = scratch("fuzz.csv");
    let csv = b"p,value,error\n0.5,1.25,0.01\n1.0,0.75,0.01\n1.5,0.5,0.01\n";
    fuzz("csv", csv, 1500, |b| {
        std::fs::write(&csv_path, b).unwrap();
        let _ = Correlator::read_csv(&csv_path);
    });
}

#[test]
fn specific_attacks_are_errors() {
    // Element counts that overflow usize (the old product wrapped and could pass the length check).
    let mut f = npy::encode(&[1], &[0.0]);
    let text = String::from_utf8_lossy(&f).replace("(1,)", "(4294967296, 4294967296)");
    f = text.into_bytes();
    assert!(npy::decode(&f).is_err());

    // A safetensors header length of nearly 2^64 (the old bound check overflowed).
    let st = scratch("huge-header.safetensors");
    let mut bytes = (u64::MAX - 3).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&st, &bytes).unwrap();
    let ctx = Ctx::<f64>::new(Device::Cpu(common::cpu()));
    assert!(safetensors::load(&ctx, &st).is_err());

    // A shape whose element count overflows, with matching-looking offsets.
    let hdr = br#"{"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#;
    let mut bytes = (hdr.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(hdr);
    std::fs::write(&st, &bytes).unwrap();
    assert!(safetensors::load(&ctx, &st).is_err());

    // Nesting deep enough to overflow the stack of a naive recursive parser.
    let deep = "[".repeat(1_000_000);
    assert!(Json::parse(&deep).is_err());
    let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(Json::parse(&ok).is_ok());
}

#[test]
fn allocations_that_cannot_succeed_are_errors_not_aborts() {
    let dev = Device::Cpu(common::cpu());
    match memory::check(&dev, 1 << 70, "a test", "ask for less") {
        Err(Error::OutOfMemory(m)) => assert!(m.contains("GiB") && m.contains("a test"), "{m}"),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    let ctx = Ctx::<f32>::new(dev);
    assert!(matches!(
        ctx.from_f64(&[1 << 40], &[]),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(ctx.empty(&[1 << 40]), Err(Error::OutOfMemory(_))));
    assert!(ctx.empty(&[1 << 32, 1 << 32]).is_err());
}

fn tiny_run() -> RunConfig {
    RunConfig {
        theory: TheoryConfig::Phi4 {
            lattice: Lattice::new(&[4, 4]).unwrap(),
            kappa: 0.2,
            lambda: 0.1,
        },
        chains: 2,
        trajectories: 6,
        therm: 2,
        sampler: SamplerConfig::Hmc(HmcParams {
            tau: 0.5,
            steps: 5,
            integrator: Integrator::Leapfrog,
            seed: 11,
        }),
        start: Start::Hot,
        save_every: 2,
        checkpoint_every: 3,
    }
}

#[test]
fn a_checkpoint_with_a_valid_checksum_but_foreign_arrays_is_refused() {
    let dir = scratch("foreign-arrays");
    let _ = std::fs::remove_dir_all(&dir);
    let dev = Device::Cpu(common::cpu());
    let mut cfg = tiny_run();
    cfg.trajectories = 3;
    run(&cfg, &dev, &dir, Claim::Fresh, &mut |_, _| {}).unwrap();
    let ck_path = dir.join("checkpoint");
    let good = std::fs::read(&ck_path).unwrap();
    let ck = Checkpoint::decode(&good, &ck_path).unwrap();
    cfg.trajectories = 6;
    let tamper = |name: &str, f: &dyn Fn(&mut Vec<f64>)| {
        let mut bad = ck.clone();
        let (_, arr) = bad.arrays.iter_mut().find(|(n, _)| n == name).unwrap();
        f(arr);
        std::fs::write(&ck_path, bad.encode()).unwrap();
        match run(&cfg, &dev, &dir, Claim::Resume, &mut |_, _| {}) {
            Err(Error::BadFile { .. }) | Err(Error::InvalidInput(_)) => {}
            other => panic!(
                "{name}: expected a refusal, got {:?}",
                other.map(|o| o.trajectories)
            ),
        }
    };
    tamper("files", &|f| f[0] += 1.0); // more CSV rows than trajectories
    tamper("files", &|f| f[3] = 1e12); // beyond the end of slices.npy
    tamper("files", &|f| f[4] = 0.5);
    tamper("files", &|f| f.truncate(5));
    tamper("accepted", &|a| a[0] = 1e300);
    tamper("fields", &|f| f.truncate(3));
    // The streamed history itself, edited in place (same length, so the offsets still fit): a
    // row that claims another chain.
    std::fs::write(&ck_path, &good).unwrap();
    let csv_path = dir.join("observables.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    std::fs::write(&csv_path, csv.replacen("\n0,1,", "\n0,7,", 1)).unwrap();
    match run(&cfg, &dev, &dir, Claim::Resume, &mut |_, _| {}) {
        Err(Error::BadFile { reason, .. }) => assert!(reason.contains("chain"), "{reason}"),
        other => panic!(
            "edited history: expected BadFile, got {:?}",
            other.map(|o| o.trajectories)
        ),
    }
    std::fs::write(&csv_path, &csv).unwrap();
    // The untouched checkpoint still resumes.
    std::fs::write(&ck_path, &good).unwrap();
    let o = run(&cfg, &dev, &dir, Claim::Resume, &mut |_, _| {}).unwrap();
    assert_eq!(o.trajectories, 6);
}
