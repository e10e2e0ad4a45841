//! What the daemon's integration tests share.

use std::path::Path;

/// Writes a TorchScript policy the way a Python user would (`fixtures/python_policy.py`): it
/// moves shoulder_pan by `step` rad a tick, repeats the goal `chunk` times, and does `iters`
/// 400x400 matmuls per forward pass to stand in for a slow model.
#[allow(dead_code)] // each test binary uses some of these
pub fn python_policy_with(out: &Path, version: &str, step: f64, chunk: usize, iters: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh --test",
        py.display()
    );
    let st = std::process::Command::new(py)
        .arg(root.join("crates/daemon/tests/fixtures/python_policy.py"))
        .arg(out)
        .arg(version)
        .arg(step.to_string())
        .arg(chunk.to_string())
        .arg(iters.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// Writes a Python-scripted image policy (`fixtures/python_image_policy.py`) that reads camera
/// `camera` at `width` x `height` and nudges shoulder_pan by 0.01 rad times the image's mean
/// brightness.
#[allow(dead_code)]
pub fn python_image_policy(out: &Path, version: &str, camera: &str, width: u32, height: u32) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("crates/daemon/tests/fixtures/python_image_policy.py"))
        .arg(out)
        .arg(version)
        .arg(camera)
        .arg(width.to_string())
        .arg(height.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}
