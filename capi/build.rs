//! Generates the C header from this crate's `extern "C"` items with cbindgen and checks it
//! against the committed `include/latticeml.h`: a difference fails the build, so the header can
//! never drift from the code. `LATTICEML_WRITE_HEADER=1 cargo build -p latticeml-capi` rewrites it.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let header = dir.join("../include/latticeml.h");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-env-changed=LATTICEML_WRITE_HEADER");

    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("capi/cbindgen.toml: {e}"));
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        // The crate root; cbindgen follows its `mod` declarations.
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("generating the C header: {e}"))
        .write(&mut generated);

    let committed = std::fs::read(&header).unwrap_or_default();
    if generated == committed {
        return;
    }
    if std::env::var_os("LATTICEML_WRITE_HEADER").is_some_and(|v| v == "1") {
        std::fs::write(&header, &generated)
            .unwrap_or_else(|e| panic!("writing {}: {e}", header.display()));
    } else {
        panic!(
            "include/latticeml.h differs from the header generated from capi/src: run \
             `LATTICEML_WRITE_HEADER=1 cargo build -p latticeml-capi` and commit the new header"
        );
    }
}
