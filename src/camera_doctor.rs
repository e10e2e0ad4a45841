//! `doctor`'s camera section: every `[[cameras]]` entry is opened as `run` would open it, its
//! mode is printed, and it is run for a moment on its capture thread to measure the frame rate
//! it really delivers.

use std::time::{Duration, Instant};

use intervened_camera::config::{CameraConfig, CameraDevice};
use intervened_camera::sim::world::scene_from_world;
use intervened_camera::v4l2::list_video_devices;
use intervened_camera::{scene_channel, Camera, CaptureThread, SimCamera};
use intervened_robot::RobotConfig;
use intervened_world::World;

/// A camera delivering less than this share of its configured rate fails the doctor: a policy
/// trained at 30 fps sees other motion blur and staleness at 20.
const MIN_RATE_SHARE: f64 = 0.8;

/// Prints one line per configured camera (and the V4L2 devices present); returns whether any
/// check failed.
pub fn check_cameras(cfg: &RobotConfig, measure: Duration) -> bool {
    let devices = list_video_devices();
    if cfg.cameras.is_empty() {
        println!(
            "cameras  ok   none configured (add [[cameras]] tables to record images){}",
            present(&devices)
        );
        return false;
    }
    let mut failed = false;
    for cam in &cfg.cameras {
        let (level, line) = match check_one(cfg, cam, measure) {
            Ok(line) => ("ok  ", line),
            Err(why) => {
                failed = true;
                ("FAIL", why)
            }
        };
        println!("camera {:<10} {level} {line}", cam.name);
    }
    if cfg.cameras.iter().any(|c| c.device != "sim") {
        println!(
            "cameras  info {}",
            present(&devices).trim_start_matches("; ")
        );
    }
    failed
}

fn present(devices: &[String]) -> String {
    if devices.is_empty() {
        "; no V4L2 devices (/dev/video*) present".into()
    } else {
        format!("; V4L2 devices present: {}", devices.join(", "))
    }
}

fn check_one(cfg: &RobotConfig, cam: &CameraConfig, measure: Duration) -> Result<String, String> {
    match cam.device() {
        CameraDevice::Sim => {
            // The scene the simulator would publish at the start of an episode.
            let mut world =
                World::new(cfg).map_err(|e| format!("cannot build the simulated world: {e}"))?;
            world.reset(0);
            let q = vec![0.0; world.arm().joint_count()];
            let scene = scene_from_world(&world, &q).map_err(|e| e.to_string())?;
            let (_publisher, scenes) = scene_channel(&scene);
            let camera = SimCamera::from_config(cam, scenes).map_err(|e| e.to_string())?;
            let mode = format!(
                "sim: {}x{} RGB rendered at {} fps",
                cam.width, cam.height, cam.fps
            );
            measure_rate(camera, cam, mode, measure)
        }
        CameraDevice::V4l2(path) => open_v4l2(cam, &path.display().to_string(), measure),
    }
}

#[cfg(target_os = "linux")]
fn open_v4l2(cam: &CameraConfig, device: &str, measure: Duration) -> Result<String, String> {
    let camera = intervened_camera::V4l2Camera::open(cam).map_err(|e| e.to_string())?;
    let m = camera.mode();
    let mode = format!(
        "{device}: {} {}x{} at {:.2} fps",
        m.format.name(),
        m.width,
        m.height,
        f64::from(m.interval[1]) / f64::from(m.interval[0].max(1))
    );
    measure_rate(camera, cam, mode, measure)
}

#[cfg(not(target_os = "linux"))]
fn open_v4l2(_cam: &CameraConfig, device: &str, _measure: Duration) -> Result<String, String> {
    Err(format!(
        "{device}: this build has no V4L2 support\n  fix: V4L2 cameras need Linux"
    ))
}

/// Runs `camera` on its capture thread for `measure` and reports the delivered frame rate.
fn measure_rate<C: Camera + 'static>(
    camera: C,
    cam: &CameraConfig,
    mode: String,
    measure: Duration,
) -> Result<String, String> {
    let (thread, _reader) =
        CaptureThread::spawn(camera, cam.max_age()).map_err(|e| format!("{mode}: {e}"))?;
    // The first frame can take a while (USB cameras start streaming slowly); count from it.
    let deadline = Instant::now() + Duration::from_secs(3);
    while thread.frames() == 0 && thread.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (n0, t0) = (thread.frames(), Instant::now());
    while thread.is_running() && t0.elapsed() < measure {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (frames, secs) = (thread.frames() - n0, t0.elapsed().as_secs_f64());
    if let Some(e) = thread.stop() {
        return Err(format!("{mode}: {e}"));
    }
    if n0 == 0 {
        return Err(format!(
            "{mode}: no frame within 3 s\n  fix: check the cable, and that no other program streams from the device"
        ));
    }
    let fps = frames as f64 / secs;
    let line = format!("{mode}; measured {fps:.1} fps over {secs:.1} s");
    if fps < MIN_RATE_SHARE * f64::from(cam.fps) {
        return Err(format!(
            "{line}, under {:.0}% of the configured {}\n  fix: lower fps or the size, or for a USB camera use MJPG and its own USB port",
            MIN_RATE_SHARE * 100.0,
            cam.fps
        ));
    }
    Ok(line)
}
