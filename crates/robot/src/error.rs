use std::path::PathBuf;

use thiserror::Error;

/// A config file that cannot be used. Every variant names the file; validation errors also
/// name the key, the line where it can be found, and the fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The OS error is part of the message and deliberately not a `source`: printed as a
    /// chain (`{:#}`) it would otherwise appear twice.
    #[error("{}: cannot read the config: {error}\n  fix: {fix}", file.display())]
    Io {
        file: PathBuf,
        error: std::io::Error,
        fix: String,
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
    /// The calibration file cannot be read (missing, unreadable). The OS error is part of the
    /// message and deliberately not a `source`, so a `{:#}` chain shows it once.
    #[error("{}: cannot read the calibration file: {error}\n  fix: {fix}", file.display())]
    Io {
        file: PathBuf,
        error: std::io::Error,
        fix: String,
    },
    /// The calibration file cannot be written.
    #[error("{}: cannot write the calibration file: {error}\n  fix: check that its directory exists and is writable by this user", file.display())]
    Write {
        file: PathBuf,
        error: std::io::Error,
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
