//! Errors of the policy runtime. Every error that comes from a file names the file, what in it is
//! wrong, and how to fix it: the daemon shows these to an operator who must act on them.

use std::path::{Path, PathBuf};

use tracing::debug;

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
    /// `message` is the gist of libtorch's error; its full text (C++ stack trace included) is
    /// logged at debug level only, never shown to the operator.
    #[error("{path}: cannot load as TorchScript: {message}\n  fix: re-export the model with torch.jit.script or torch.jit.trace and torch.jit.save (a truncated copy also gives this), then rewrite the sidecar's sha256; libtorch's full message is logged with --log intervened_policy=debug")]
    Load { path: PathBuf, message: String },

    /// The forward pass raised (wrong input width inside the graph, a bug in the model, ...).
    /// As for [`PolicyError::Load`], `message` is the gist and the full text goes to the log.
    #[error("{path}: forward pass failed: {message}\n  fix: check that forward() takes one [B, len(observation_names)] float32 tensor and returns [B, ensemble_size, chunk_size, len(action_names)] (crates/policy/CONTRACT.md); libtorch's full message is logged with --log intervened_policy=debug")]
    Forward { path: PathBuf, message: String },

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
    /// A load failure: the gist of libtorch's message for the operator, the full text (with
    /// its C++ stack trace) to the debug log.
    pub(crate) fn load(path: &Path, err: &tch::TchError) -> Self {
        let full = err.to_string();
        debug!(path = %path.display(), error = %full, "libtorch could not load the model");
        PolicyError::Load {
            path: path.to_path_buf(),
            message: torch_gist(&full),
        }
    }

    /// A forward-pass failure, reported like [`PolicyError::load`].
    pub(crate) fn forward(path: &Path, err: &tch::TchError) -> Self {
        let full = err.to_string();
        debug!(path = %path.display(), error = %full, "libtorch forward pass failed");
        PolicyError::Forward {
            path: path.to_path_buf(),
            message: torch_gist(&full),
        }
    }

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

/// The line of a libtorch error message an operator can act on. libtorch appends a C++ stack
/// trace ("Exception raised from ... (most recent call first):" and "frame #N: ..." lines);
/// TorchScript runtime errors start with a generic header and a TorchScript traceback and end
/// with the actual error (e.g. "RuntimeError: mat1 and mat2 shapes cannot be multiplied").
pub(crate) fn torch_gist(full: &str) -> String {
    let is_trace = |l: &str| {
        l.starts_with("Exception raised from")
            || l.starts_with("frame #")
            || l.starts_with("Traceback of TorchScript")
            || l.starts_with("File \"")
            || l.starts_with('~')
            || l.starts_with('^')
    };
    let lines: Vec<&str> = full
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_trace(l))
        .collect();
    let interpreter =
        full.contains("The following operation failed in the TorchScript interpreter");
    let line = if interpreter {
        // The error itself is the last "SomethingError: ..." line of the traceback.
        lines
            .iter()
            .rev()
            .find(|l| {
                l.split_once(": ")
                    .is_some_and(|(head, _)| head.ends_with("Error") && !head.contains(' '))
            })
            .or(lines.first())
    } else {
        lines.first()
    };
    let line = line.copied().unwrap_or("libtorch gave no message");
    let line = line.strip_prefix("Internal torch error: ").unwrap_or(line);
    // A message truncated mid-trace can still carry the trace on its first line.
    match line.find(" Exception raised from") {
        Some(i) => line[..i].trim_end().to_string(),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::torch_gist;

    #[test]
    fn gist_drops_the_cpp_stack_trace() {
        let full = "Internal torch error: PytorchStreamReader failed reading zip archive: failed finding central directory\n\
                    Exception raised from valid at /pytorch/caffe2/serialize/inline_container.cc:234 (most recent call first):\n\
                    frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x98 (0x7f in libc10.so)\n\
                    frame #1: caffe2::serialize::PyTorchStreamReader::valid(char const*, char const*) + 0x3a0 (0x7f in libtorch_cpu.so)\n";
        assert_eq!(
            torch_gist(full),
            "PytorchStreamReader failed reading zip archive: failed finding central directory"
        );
    }

    #[test]
    fn gist_of_a_torchscript_runtime_error_is_the_error_line() {
        let full = "Internal torch error: The following operation failed in the TorchScript interpreter.\n\
                    Traceback of TorchScript, serialized code (most recent call last):\n\
                    File \"code/__torch__.py\", line 8, in forward\n\
                    input = torch.linear(x, weight, bias)\n\
                    ~~~~~~~~~~~~ <--- HERE\n\
                    RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x9 and 10x64)\n";
        assert_eq!(
            torch_gist(full),
            "RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x9 and 10x64)"
        );
    }
}
