//! Every kernel family compiles under NVRTC for the architectures we ship for. Without NVRTC the
//! test skips with a printed line, unless `LATTICEML_REQUIRE_NVRTC=1` (as in CI), where it fails.

use std::io::Write;

use latticeml::device::cuda::{compile, nvrtc_available, KernelFamily, FAMILIES};

#[test]
fn every_kernel_family_compiles() {
    if !nvrtc_available() {
        if std::env::var("LATTICEML_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!(
                "LATTICEML_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded; check LD_LIBRARY_PATH"
            );
        }
        let _ = writeln!(
            std::io::stderr(),
            "every_kernel_family_compiles: skipped: NVRTC not found"
        );
        return;
    }
    for arch in ["sm_80", "sm_90"] {
        for family in FAMILIES {
            let ptx = compile(family, arch).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            assert!(
                text.contains(&format!(".target {arch}")),
                "{} for {arch}: wrong target",
                family.name()
            );
        }
    }
}

#[test]
fn compile_errors_carry_the_nvrtc_log() {
    if !nvrtc_available() {
        return;
    }
    let broken = KernelFamily::new("broken", &[], "__global__ void f() { int x = ; }");
    let err = compile(&broken, "sm_80").unwrap_err().to_string();
    assert!(err.contains("broken.cu") && err.contains("error"), "{err}");
}

#[test]
fn a_family_with_the_name_of_another_gets_its_own_module() {
    let a = KernelFamily::new(
        "nn",
        &[],
        "extern \"C\" __global__ void first(float* x) { x[0] = 1.0f; }",
    );
    let b = KernelFamily::new(
        "nn",
        &[],
        "extern \"C\" __global__ void second(float* x) { x[0] = 2.0f; }",
    );
    assert_eq!(a.key().0, b.key().0);
    assert_ne!(a.key(), b.key(), "cache keys must depend on the source");
    if !nvrtc_available() {
        return;
    }
    // Compile the built-in family first: the caches must not hand it to the look-alikes.
    compile(&latticeml::device::cuda::NN, "sm_80").unwrap();
    let (pa, pb) = (
        compile(&a, "sm_80").unwrap().to_src(),
        compile(&b, "sm_80").unwrap().to_src(),
    );
    assert!(pa.contains(".entry first") && !pa.contains(".entry second"));
    assert!(pb.contains(".entry second") && !pb.contains(".entry first"));
}
