//! Kernel sources are embedded with `include_str!`; this only tells cargo to rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=kernels");
    if let Ok(entries) = std::fs::read_dir("kernels") {
        for entry in entries.flatten() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
}
