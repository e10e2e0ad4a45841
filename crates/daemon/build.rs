//! Embeds libtorch's directory as an rpath so that `intervened` and its tests run without
//! LD_LIBRARY_PATH. intervened-policy passes the directory on as link metadata.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_INTERVENED_POLICY_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_INTERVENED_POLICY_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
