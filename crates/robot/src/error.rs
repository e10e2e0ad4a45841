use std::path::PathBuf;

use thiserror::Error;

/// A config file that cannot be used. Every variant names the file; validation errors also
/// name the key, the line where it can be found, and the fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("{}{}: `{key}` {problem}\n  fix: {fix}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        file: PathBuf,
        key: String,
        line: Option<usize>,
        problem: String,
        fix: String,
    },
}

/// A calibration file that cannot be used.
#[derive(Debug, Error)]
pub enum CalibrationError {
    #[error("cannot read calibration {}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a calibration file: {message}\n  fix: the format is LeRobot's, {{\"<joint>\": {{\"id\": 1, \"drive_mode\": 0, \"homing_offset\": 0, \"range_min\": 0, \"range_max\": 4095}}, ...}}", file.display())]
    Parse { file: PathBuf, message: String },
    #[error("{}: `{key}` {problem}\n  fix: {fix}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        problem: String,
        fix: String,
    },
}
