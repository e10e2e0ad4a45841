//! Errors of the policy runtime. Every error that comes from a file names the file, what in it is
//! wrong, and how to fix it: the daemon shows these to an operator who must act on them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy file is missing.
    #[error("{path}: missing ({what}); fix: {fix}")]
    MissingFile {
        path: PathBuf,
        what: &'static str,
        fix: String,
    },

    /// A policy file exists but cannot be read or written.
    #[error("{path}: {action} failed: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The sidecar is not valid JSON, or lacks a field, or a field has the wrong type.
    #[error("{path}: not a valid policy sidecar: {source}; fix: regenerate it (intervened-policy `write_sidecar`, or the Python example in crates/policy/CONTRACT.md)")]
    SidecarJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// One field of the sidecar (or of the model, read through a warm-up pass) is wrong or does
    /// not match what this robot expects.
    #[error("{path}: `{field}`: {problem}; fix: {fix}")]
    Field {
        path: PathBuf,
        field: &'static str,
        problem: String,
        fix: String,
    },

    /// libtorch could not load the TorchScript file (truncated, corrupt, or not TorchScript).
    #[error("{path}: cannot load as TorchScript: {source}; fix: re-export the model with torch.jit.script or torch.jit.trace and torch.jit.save (a truncated copy also gives this), then rewrite the sidecar's sha256")]
    Load {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },

    /// The forward pass raised (wrong input width inside the graph, a bug in the model, ...).
    #[error("{path}: forward pass failed: {source}")]
    Forward {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },

    /// The model produced NaN or infinity.
    #[error("{path}: model output is not finite ({value}) at member {member}, step {step}, action `{action}`; the observation was probably out of the training range or the weights are broken")]
    NonFinite {
        path: PathBuf,
        value: f32,
        member: usize,
        step: usize,
        action: String,
    },

    /// The caller passed a vector of the wrong width.
    #[error("{path}: {what} has {got} values, the policy expects {expected}")]
    InputWidth {
        path: PathBuf,
        what: &'static str,
        got: usize,
        expected: usize,
    },
}

impl PolicyError {
    pub(crate) fn field(
        path: impl Into<PathBuf>,
        field: &'static str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        PolicyError::Field {
            path: path.into(),
            field,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}
