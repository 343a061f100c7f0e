//! `latticeml vae`: a library of impurity spectra, a VAE trained on it whose held-out
//! reconstructions beat the mean spectrum by far and whose first latent tracks the particle–hole
//! asymmetry, and the encode/decode round trip through files.

mod common;

use common::{fresh_dir, latticeml, refused};

fn ok(args: &[&str]) -> String {
    let o = latticeml(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_vae_learns_the_impurity_library() {
    let (lib, model, enc, dec) = (
        fresh_dir("vae-lib"),
        fresh_dir("vae-model"),
        fresh_dir("vae-enc"),
        fresh_dir("vae-dec"),
    );
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    ok(&[
        "vae",
        "library",
        "--u",
        "1:6:1",
        "--eps-ratio",
        "-1:0:0.125",
        "--points",
        "64",
        "--out",
        &s(&lib),
    ]);
    let out = ok(&[
        "vae",
        "train",
        "--data",
        &s(&lib),
        "--steps",
        "1500",
        "--hidden",
        "32",
        "--holdout",
        "0.15",
        "--out",
        &s(&model),
    ]);
    let sum = json(&model.join("summary.json"));
    let (kl, base) = (
        sum["recon_kl"].as_f64().unwrap(),
        sum["baseline_kl"].as_f64().unwrap(),
    );
    assert!(
        kl < 0.2 * base,
        "held-out KL {kl} against the mean spectrum's {base}\n{out}"
    );
    // Some latent tracks ⟨ω⟩ (the particle–hole asymmetry) almost monotonically.
    let best = ["z1", "z2"]
        .iter()
        .map(|z| {
            sum["latents"][z]["mean_omega"]["spearman"]
                .as_f64()
                .unwrap()
                .abs()
        })
        .fold(0.0, f64::max);
    assert!(best > 0.9, "no latent tracks the asymmetry: {best}\n{out}");
    // Round trip: encode the library, decode the latents; the decoded spectra are normalised.
    ok(&[
        "vae",
        "encode",
        "--model",
        &s(&model),
        "--input",
        &s(&lib.join("spectra.npy")),
        "--out",
        &s(&enc),
    ]);
    let read =
        |p: std::path::PathBuf| latticeml::io::npy::decode(&std::fs::read(p).unwrap()).unwrap();
    let (shape, latent) = read(enc.join("latent.npy"));
    let (_, stored) = read(model.join("latent.npy"));
    assert_eq!(shape[1], 2);
    assert!(latent
        .iter()
        .zip(&stored)
        .all(|(a, b)| (a - b).abs() < 1e-9));
    ok(&[
        "vae",
        "decode",
        "--model",
        &s(&model),
        "--input",
        &s(&enc.join("latent.npy")),
        "--out",
        &s(&dec),
    ]);
    let (shape, spectra) = read(dec.join("spectra.npy"));
    let dw = 20.0 / 63.0;
    for s in spectra.chunks(shape[1]) {
        assert!((s.iter().sum::<f64>() * dw - 1.0).abs() < 1e-9);
    }
    // The decoder as a prior: MEM with the decoded default beats MEM with a flat one on the
    // held-out spectra's mock data.
    let prior = fresh_dir("vae-prior");
    ok(&[
        "vae",
        "prior",
        "--model",
        &s(&model),
        "--data",
        &s(&lib),
        "--taus",
        "21",
        "--out",
        &s(&prior),
    ]);
    let p = json(&prior.join("summary.json"));
    let l1 = |m: &str| p["methods"][m]["l1"].as_f64().unwrap();
    assert!(l1("mem-vae") < l1("mem"), "{p}");
    assert!(
        p["methods"]["mem"]["chi2_per_point"].as_f64().unwrap() < 2.0,
        "{p}"
    );
    let _ = std::fs::remove_dir_all(&prior);
    // The wrong file for the model, an occupied directory, a bad bath: exit status 2.
    refused(
        &[
            "vae",
            "decode",
            "--model",
            &s(&model),
            "--input",
            &s(&lib.join("spectra.npy")),
            "--out",
            &s(&fresh_dir("vae-bad")),
        ],
        "expected for this model",
    );
    refused(
        &[
            "vae",
            "library",
            "--u",
            "1",
            "--eps-ratio",
            "-0.5",
            "--out",
            &s(&lib),
        ],
        "--force",
    );
    refused(
        &[
            "vae",
            "library",
            "--bath",
            "lorentzian:-2",
            "--out",
            &s(&fresh_dir("vae-bath")),
        ],
        "positive half-width",
    );
    for d in [lib, model, enc, dec] {
        let _ = std::fs::remove_dir_all(d);
    }
}
