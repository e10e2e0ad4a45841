//! Cameras for intervened, from capture to a frame the control loop can read.
//!
//! - [`capture`]: the [`Camera`] port and the [`CaptureThread`], which runs a camera on its own
//!   OS thread and publishes into a triple buffer; the loop's [`FrameReader`] gets the latest
//!   frame and its age without blocking or allocating, and tells fresh, stale and stopped apart.
//! - [`config`]: [`CameraConfig`] (a `[[cameras]]` table) and its validation.
//! - [`sim`]: a deterministic software renderer, the [`SimCamera`], and (feature `sim`) the
//!   scene of the simulated arm-and-block world.
//! - [`v4l2`]: USB cameras through V4L2 (feature `v4l2`, Linux): mode negotiation, YUYV and
//!   MJPEG decoding, kernel timestamps.
//! - [`jpeg`]: JPEG encoding for the recorder, and decoding.
//!
//! The core reads cameras through [`FrameReader`]s (`intervened_core::cameras`); the recorder
//! gets every frame through a [`FrameTap`]. See README.md for faults and timings.

pub mod capture;
/// The `[[cameras]]` config, which lives in the robot config crate.
pub mod config {
    pub use intervened_robot::camera::*;
}
pub mod error;
pub mod image;
pub mod jpeg;
pub mod sim;
pub mod v4l2;

pub use capture::{
    frame_channel, Camera, CaptureThread, FramePublisher, FrameReader, FrameTap, Latest,
};
pub use config::{validate_cameras, CameraConfig, CameraDevice, SimCameraPose};
pub use error::CameraError;
pub use image::{monotonic_now_ns, Frame, Image};
pub use intervened_robot::camera::CameraConfigError as ConfigError;
pub use jpeg::{decode_jpeg, decode_mjpeg, encode_jpeg, encode_jpeg_into, psnr};
pub use sim::{scene_channel, Renderer, Scene, ScenePublisher, SceneSubscriber, SimCamera};
#[cfg(all(target_os = "linux", feature = "v4l2"))]
pub use v4l2::V4l2Camera;
pub use v4l2::{negotiate, yuyv_to_rgb, FormatOffer, Negotiated, PixelFormat};

/// Opens the camera a validated config describes: a [`SimCamera`] rendering `scenes` for
/// `device = "sim"`, otherwise a V4L2 camera. Start it with [`CaptureThread::spawn`].
pub fn open_camera(
    cfg: &CameraConfig,
    scenes: Option<SceneSubscriber>,
) -> Result<Box<dyn Camera>, CameraError> {
    match cfg.device() {
        CameraDevice::Sim => {
            let Some(scenes) = scenes else {
                return Err(CameraError::Open {
                    device: format!("{} (sim)", cfg.name),
                    message: "a simulated camera needs the simulator's scene channel".into(),
                    fix: "run with the simulated robot, or give a V4L2 device".into(),
                });
            };
            Ok(Box::new(SimCamera::from_config(cfg, scenes)?))
        }
        #[cfg(all(target_os = "linux", feature = "v4l2"))]
        CameraDevice::V4l2(_) => Ok(Box::new(V4l2Camera::open(cfg)?)),
        #[cfg(not(all(target_os = "linux", feature = "v4l2")))]
        CameraDevice::V4l2(path) => Err(CameraError::Open {
            device: format!("{} ({})", cfg.name, path.display()),
            message: "this build has no V4L2 support".into(),
            fix: "build intervened-camera with its `v4l2` feature, on Linux".into(),
        }),
    }
}
