//! Shared test fixtures: policies exported by Python (tests/fixtures/make_policies.py).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use intervened_policy::PolicyExpectations;

pub const OBS: [&str; 10] = [
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
    "block.x",
    "block.y",
    "block.z",
    "block.grasped",
];

pub fn koch(fps: f64) -> PolicyExpectations {
    PolicyExpectations {
        robot_type: "koch_v1.1".into(),
        observation_names: OBS.iter().map(|s| s.to_string()).collect(),
        action_names: OBS[..6].iter().map(|s| s.to_string()).collect(),
        fps,
        cameras: Vec::new(),
    }
}

pub struct Fixtures {
    pub dir: PathBuf,
    /// Python's outputs: {name: {"obs": [..], "out": [K][chunk][act]}}.
    pub report: serde_json::Value,
}

impl Fixtures {
    pub fn policy(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn probe(&self, name: &str) -> (Vec<f32>, Vec<Vec<Vec<f32>>>) {
        let e = &self.report[name];
        let obs = serde_json::from_value(e["obs"].clone()).unwrap();
        let out = serde_json::from_value(e["out"].clone()).unwrap();
        (obs, out)
    }

    /// A private copy of a fixture policy directory, to break in a test.
    pub fn copy(&self, name: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for f in ["policy.pt", "policy.json"] {
            std::fs::copy(self.policy(name).join(f), t.path().join(f)).unwrap();
        }
        t
    }
}

pub fn python() -> PathBuf {
    // Resolve the repository root first: Python finds its venv from the lexical path, so
    // `crates/policy/../../.venv` reached through a symlinked checkout would miss it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let py = root.join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh --test (it installs torch 2.13 into the venv the policy tests export models with)",
        py.display()
    );
    py
}

/// Exports the fixture policies once per test binary.
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("policy-fixtures-{stem}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_policies.py");
        let out = Command::new(python())
            .arg(&script)
            .arg(&dir)
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make_policies.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = serde_json::from_slice(&out.stdout).unwrap();
        Fixtures { dir, report }
    })
}

/// Rewrites one field of a policy directory's sidecar.
pub fn edit_sidecar(dir: &Path, field: &str, value: serde_json::Value) {
    let p = dir.join("policy.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v[field] = value;
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}
