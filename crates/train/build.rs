//! Embeds libtorch's directory as an rpath so that binaries and tests linking this crate run
//! without LD_LIBRARY_PATH. torch-sys (`links = "tch"`) publishes the directory as metadata.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // Canonicalise: `.libtorch` is a relative symlink, meaningless once the binary moves.
        let dir = std::fs::canonicalize(&dir).unwrap_or_else(|_| PathBuf::from(&dir));
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
