//! Embeds libtorch's directory as an rpath so that binaries and tests linking this crate run
//! without LD_LIBRARY_PATH. torch-sys (`links = "tch"`) publishes the directory as metadata.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // Canonicalise: `.libtorch` is a relative symlink that means nothing once the binary
        // is run from elsewhere.
        let dir = std::fs::canonicalize(&dir).unwrap_or_else(|_| PathBuf::from(&dir));
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        // rustc-link-arg only reaches this package's own tests and binaries; dependents that
        // link libtorch read this (DEP_INTERVENED_POLICY_LIBTORCH_LIB) and emit their own.
        println!("cargo:libtorch_lib={}", dir.display());
    }
}
