//! Typed errors: faults travel as values from the camera to whoever reads frames.

use thiserror::Error;

/// A camera fault. Every variant names the camera's device so that a log line alone says which
/// camera failed. `Clone` so that the capture thread can hand its stop reason to the reader.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CameraError {
    /// The device could not be opened (absent, unplugged, no permission, not a capture device).
    #[error("camera {device}: cannot open: {message}\n  fix: {fix}")]
    Open {
        device: String,
        message: String,
        fix: String,
    },
    /// The device offers no mode this crate can use at the configured size and rate.
    #[error("camera {device}: no usable mode for {wanted}; it offers: {offered}\n  fix: set width, height and fps in the camera's config to one of the offered MJPG or YUYV modes")]
    Unsupported {
        device: String,
        /// What was asked for, e.g. `640x480 @ 30 fps (MJPG or YUYV)`.
        wanted: String,
        /// Every mode the device listed, or `nothing` when it listed none.
        offered: String,
    },
    /// A system call on the device failed while configuring or streaming.
    #[error("camera {device}: {op} failed: {message}")]
    Io {
        device: String,
        op: &'static str,
        message: String,
    },
    /// No frame arrived within the capture timeout.
    #[error("camera {device}: no frame for {waited_ms} ms\n  fix: check the cable and the USB bandwidth (several cameras on one USB 2 hub cannot all stream YUYV)")]
    Timeout { device: String, waited_ms: u64 },
    /// A frame could not be decoded (several in a row: single corrupt frames are skipped).
    #[error("camera {device}: cannot decode a {format} frame: {message}")]
    Decode {
        device: String,
        format: &'static str,
        message: String,
    },
    /// A size the renderer or a buffer cannot take.
    #[error("camera {device}: {what} {width}x{height} is not supported: {problem}")]
    BadSize {
        device: String,
        what: &'static str,
        width: u32,
        height: u32,
        problem: String,
    },
    /// A scene or pose that cannot be rendered (non-finite values, degenerate pose).
    #[error("camera {device}: {problem}")]
    BadScene { device: String, problem: String },
    /// JPEG encoding failed.
    #[error("JPEG encoding failed: {message}")]
    Encode { message: String },
    /// The capture thread could not be started.
    #[error("camera {device}: cannot start the capture thread: {message}")]
    Spawn { device: String, message: String },
    /// The capture thread panicked.
    #[error("camera {device}: the capture thread panicked: {message}")]
    Panicked { device: String, message: String },
}
