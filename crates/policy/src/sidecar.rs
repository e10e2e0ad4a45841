//! `policy.json`, the sidecar that says how to feed a `policy.pt` and read its output, and the
//! file helpers the train crate shares (`write_sidecar`, `sha256_file`).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::PolicyError;

/// The sidecar format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// File names inside a policy directory.
pub const MODEL_FILE: &str = "policy.pt";
pub const SIDECAR_FILE: &str = "policy.json";

/// How the model's actions relate to the robot's joint goals.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Actions are joint goals.
    Absolute,
    /// Actions are offsets from the joint positions measured when the observation was taken.
    Delta,
}

/// One camera an image policy reads. The model's `forward` takes, after the state, one uint8
/// tensor `[B, height, width, 3]` (RGB, row-major, as the camera delivers it) per camera, in the
/// sidecar's `cameras` order. Scaling and normalising the pixels is the graph's job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    /// The robot config's camera name (`observation.images.<name>` in the data).
    pub name: String,
    pub width: u32,
    pub height: u32,
}

/// Largest image side a policy may take: a bigger one would not run at the control rate.
pub const MAX_IMAGE_SIDE: u32 = 1024;

/// The contents of `policy.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicySidecar {
    pub format_version: u32,
    /// The policy's version, e.g. `v7` (the registry directory name).
    pub version: String,
    /// The robot type it was trained for (`[robot] type` in the robot config).
    pub robot_type: String,
    /// Model input layout: one name per input column, in order.
    pub observation_names: Vec<String>,
    /// Model output layout: one joint goal per output column, in order.
    pub action_names: Vec<String>,
    /// Control rate the policy was trained at; one chunk step is one tick at this rate.
    pub fps: f64,
    /// Steps per predicted chunk (k >= 1).
    pub chunk_size: usize,
    pub action_kind: ActionKind,
    /// Ensemble members K (1 = no ensemble): the model's second output dimension.
    pub ensemble_size: usize,
    /// Hex sha256 of `policy.pt`.
    pub sha256: String,
    /// Cameras an image policy reads (absent or empty: a state-only policy, `forward(state)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cameras: Vec<ImageInput>,
    /// Free-form training provenance: data hash, episode counts, weighting, metrics.
    #[serde(default)]
    pub provenance: serde_json::Value,
}

impl PolicySidecar {
    /// Checks the sidecar on its own (not against a robot). `path` is only used in errors.
    pub fn validate(&self, path: &Path) -> Result<(), PolicyError> {
        if self.format_version != FORMAT_VERSION {
            return Err(PolicyError::field(
                path,
                "format_version",
                format!(
                    "is {}, this build reads {FORMAT_VERSION}",
                    self.format_version
                ),
                "re-export the policy with a matching intervened, or upgrade intervened",
            ));
        }
        if self.chunk_size == 0 {
            return Err(PolicyError::field(
                path,
                "chunk_size",
                "is 0",
                "set it to the number of steps the model predicts per call (1 without chunking)",
            ));
        }
        if self.ensemble_size == 0 {
            return Err(PolicyError::field(
                path,
                "ensemble_size",
                "is 0",
                "set it to the number of ensemble members the model outputs (1 without ensemble)",
            ));
        }
        if !(self.fps.is_finite() && self.fps > 0.0) {
            return Err(PolicyError::field(
                path,
                "fps",
                format!("is {}", self.fps),
                "set it to the control rate (Hz) of the data the policy was trained on",
            ));
        }
        check_names(path, "observation_names", &self.observation_names)?;
        check_names(path, "action_names", &self.action_names)?;
        for (i, c) in self.cameras.iter().enumerate() {
            if c.name.is_empty() || self.cameras[..i].iter().any(|o| o.name == c.name) {
                return Err(PolicyError::field(
                    path,
                    "cameras",
                    format!("entry {i} has an empty or repeated name `{}`", c.name),
                    "name each camera as the robot config's [[cameras]] does, once",
                ));
            }
            let side = 1..=MAX_IMAGE_SIDE;
            if !side.contains(&c.width) || !side.contains(&c.height) {
                return Err(PolicyError::field(
                    path,
                    "cameras",
                    format!("camera `{}` is {}x{}", c.name, c.width, c.height),
                    format!(
                        "give the size the model was trained at, each side 1..={MAX_IMAGE_SIDE}"
                    ),
                ));
            }
        }
        let hex_ok = self.sha256.len() == 64 && self.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok {
            return Err(PolicyError::field(
                path,
                "sha256",
                format!("`{}` is not 64 hex digits", self.sha256),
                format!("set it to the sha256 of {MODEL_FILE} (`sha256sum {MODEL_FILE}`)"),
            ));
        }
        Ok(())
    }

    /// Reads and validates a sidecar file.
    pub fn read(path: &Path) -> Result<Self, PolicyError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PolicyError::MissingFile {
                    path: path.to_path_buf(),
                    what: "policy sidecar",
                    fix: format!(
                        "every {MODEL_FILE} needs a {SIDECAR_FILE} beside it; export the policy again (see crates/policy/CONTRACT.md)"
                    ),
                })
            }
            Err(source) => {
                return Err(PolicyError::Io {
                    path: path.to_path_buf(),
                    action: "reading",
                    source,
                })
            }
        };
        let sidecar: PolicySidecar =
            serde_json::from_str(&text).map_err(|source| PolicyError::SidecarJson {
                path: path.to_path_buf(),
                source,
            })?;
        sidecar.validate(path)?;
        Ok(sidecar)
    }
}

fn check_names(path: &Path, field: &'static str, names: &[String]) -> Result<(), PolicyError> {
    if names.is_empty() {
        return Err(PolicyError::field(
            path,
            field,
            "is empty",
            "list the model's columns in order",
        ));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(PolicyError::field(
                path,
                field,
                format!("entry {i} is an empty name"),
                "name every column",
            ));
        }
        if names.get(..i).is_some_and(|before| before.contains(n)) {
            return Err(PolicyError::field(
                path,
                field,
                format!("`{n}` appears twice"),
                "each column needs a distinct name",
            ));
        }
    }
    Ok(())
}

/// Writes `<dir>/policy.json` atomically (temp file, then rename), so a reader never sees half
/// a sidecar. Returns the path written.
pub fn write_sidecar(dir: &Path, sidecar: &PolicySidecar) -> Result<PathBuf, PolicyError> {
    let path = dir.join(SIDECAR_FILE);
    sidecar.validate(&path)?;
    let text =
        serde_json::to_string_pretty(sidecar).map_err(|source| PolicyError::SidecarJson {
            path: path.clone(),
            source,
        })?;
    let tmp = dir.join(format!(".{SIDECAR_FILE}.tmp"));
    let io = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| PolicyError::Io {
            path: p,
            action,
            source,
        }
    };
    std::fs::write(&tmp, text.as_bytes()).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming into place", &path))?;
    Ok(path)
}

/// Hex sha256 of a file, streamed (policies can be large).
pub fn sha256_file(path: &Path) -> Result<String, PolicyError> {
    let mut f = std::fs::File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            PolicyError::MissingFile {
                path: path.to_path_buf(),
                what: "TorchScript model",
                fix: "export the model (torch.jit.save or tch CModule::save) before hashing it"
                    .into(),
            }
        } else {
            PolicyError::Io {
                path: path.to_path_buf(),
                action: "opening",
                source,
            }
        }
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|source| PolicyError::Io {
            path: path.to_path_buf(),
            action: "reading",
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The (model, sidecar) paths for a policy directory or a `.pt` path (`x.pt` -> `x.json`).
pub fn policy_paths(dir_or_pt: &Path) -> (PathBuf, PathBuf) {
    if dir_or_pt.is_dir() {
        (dir_or_pt.join(MODEL_FILE), dir_or_pt.join(SIDECAR_FILE))
    } else {
        (dir_or_pt.to_path_buf(), dir_or_pt.with_extension("json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PolicySidecar {
        PolicySidecar {
            format_version: FORMAT_VERSION,
            version: "v1".into(),
            robot_type: "koch_v1.1".into(),
            observation_names: vec!["a.pos".into(), "block.x".into()],
            action_names: vec!["a.pos".into()],
            fps: 30.0,
            chunk_size: 4,
            action_kind: ActionKind::Delta,
            ensemble_size: 3,
            sha256: "0".repeat(64),
            cameras: Vec::new(),
            provenance: serde_json::json!({"episodes": 12}),
        }
    }

    #[test]
    fn sidecar_round_trips_and_uses_snake_case() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample();
        let p = write_sidecar(dir.path(), &s).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"action_kind\": \"delta\""), "{text}");
        // A state-only sidecar is written exactly as before cameras existed.
        assert!(!text.contains("cameras"), "{text}");
        assert_eq!(PolicySidecar::read(&p).unwrap(), s);
        let mut s = sample();
        s.cameras = vec![ImageInput {
            name: "front".into(),
            width: 96,
            height: 96,
        }];
        let p = write_sidecar(dir.path(), &s).unwrap();
        assert_eq!(PolicySidecar::read(&p).unwrap(), s);
        s.cameras.push(s.cameras[0].clone());
        let e = write_sidecar(dir.path(), &s).unwrap_err().to_string();
        assert!(e.contains("`cameras`") && e.contains("repeated"), "{e}");
    }

    #[test]
    fn invalid_sidecars_are_refused_with_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample();
        s.chunk_size = 0;
        let e = write_sidecar(dir.path(), &s).unwrap_err().to_string();
        assert!(e.contains("`chunk_size`") && e.contains("fix:"), "{e}");
        let mut s = sample();
        s.action_names = vec!["x".into(), "x".into()];
        let e = write_sidecar(dir.path(), &s).unwrap_err().to_string();
        assert!(e.contains("`action_names`") && e.contains("twice"), "{e}");
        let mut s = sample();
        s.sha256 = "abc".into();
        let e = write_sidecar(dir.path(), &s).unwrap_err().to_string();
        assert!(e.contains("`sha256`"), "{e}");
    }

    #[test]
    fn sha256_matches_a_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = sha256_file(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(e, PolicyError::MissingFile { .. }));
    }

    #[test]
    fn paths_for_dir_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let (pt, js) = policy_paths(dir.path());
        assert_eq!(pt, dir.path().join("policy.pt"));
        assert_eq!(js, dir.path().join("policy.json"));
        let (pt, js) = policy_paths(&dir.path().join("m.pt"));
        assert_eq!(pt, dir.path().join("m.pt"));
        assert_eq!(js, dir.path().join("m.json"));
    }
}
