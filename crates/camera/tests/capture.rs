//! The capture thread and the reader: fresh, stale, waiting, stopped, panics, stop on request.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intervened_camera::{Camera, CameraError, CaptureThread, FrameReader, Image, Latest};

/// A test double: frame `k` is filled with the byte `k` and stamped `base + k * step`.
struct Scripted {
    frames: u64,
    base_ns: u64,
    step_ns: u64,
    /// After `frames` frames: fail with this, panic, or idle until released.
    then: Then,
    sent: u64,
    release: Arc<AtomicBool>,
}

enum Then {
    Fail,
    Panic,
    Idle,
}

impl Scripted {
    fn new(frames: u64, then: Then) -> (Self, Arc<AtomicBool>) {
        let release = Arc::new(AtomicBool::new(false));
        (
            Self {
                frames,
                base_ns: 1_000_000_000,
                step_ns: 33_000_000,
                then,
                sent: 0,
                release: release.clone(),
            },
            release,
        )
    }
}

impl Camera for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn size(&self) -> (u32, u32) {
        (4, 2)
    }
    fn fps(&self) -> u32 {
        30
    }
    fn capture(&mut self, image: &mut Image) -> Result<u64, CameraError> {
        if self.sent < self.frames {
            image.data.fill(self.sent as u8);
            let t = self.base_ns + self.sent * self.step_ns;
            self.sent += 1;
            return Ok(t);
        }
        match self.then {
            Then::Fail => Err(CameraError::Timeout {
                device: "scripted".into(),
                waited_ms: 2000,
            }),
            Then::Panic => panic!("scripted camera panics"),
            Then::Idle => {
                while !self.release.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(CameraError::Timeout {
                    device: "scripted".into(),
                    waited_ms: 0,
                })
            }
        }
    }
}

/// Polls until `f` holds (the capture thread runs concurrently), at most 5 s.
fn wait_until(reader: &mut FrameReader, mut f: impl FnMut(&mut FrameReader) -> bool) {
    let t0 = Instant::now();
    while !f(reader) {
        assert!(t0.elapsed() < Duration::from_secs(5), "timed out waiting");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn fresh_then_stale_by_age() {
    let (cam, release) = Scripted::new(3, Then::Idle);
    let max_age = Duration::from_millis(100);
    let (thread, mut reader) = CaptureThread::spawn(cam, max_age).unwrap();
    wait_until(&mut reader, |r| {
        r.latest_at(0).frame().map(|f| f.sequence) == Some(2)
    });
    let t2 = 1_000_000_000 + 2 * 33_000_000;
    match reader.latest_at(t2 + 100_000_000) {
        Latest::Fresh { frame, age_ns } => {
            assert_eq!(age_ns, 100_000_000);
            assert_eq!(frame.sequence, 2);
            assert_eq!(frame.timestamp_ns, t2);
            assert_eq!((frame.image.width, frame.image.height), (4, 2));
            assert!(frame.image.data.iter().all(|&b| b == 2));
        }
        other => panic!("expected fresh, got {other:?}"),
    }
    match reader.latest_at(t2 + 100_000_001) {
        Latest::Stale { frame, age_ns } => {
            assert_eq!(age_ns, 100_000_001);
            assert_eq!(frame.sequence, 2);
        }
        other => panic!("expected stale, got {other:?}"),
    }
    assert!(thread.is_running());
    assert_eq!(thread.frames(), 3);
    release.store(true, Ordering::Release);
    // The camera then fails: stopped, with the reason, the last frame still readable.
    wait_until(&mut reader, |r| r.is_stopped());
    match reader.latest() {
        Latest::Stopped { last: Some(f) } => assert_eq!(f.sequence, 2),
        other => panic!("expected stopped, got {other:?}"),
    }
    assert!(matches!(
        reader.stop_reason(),
        Some(CameraError::Timeout { .. })
    ));
}

#[test]
fn waiting_before_the_first_frame() {
    let (cam, release) = Scripted::new(0, Then::Idle);
    let (thread, mut reader) = CaptureThread::spawn(cam, Duration::from_millis(100)).unwrap();
    assert_eq!(reader.latest(), Latest::Waiting);
    assert_eq!(reader.stop_reason(), None);
    release.store(true, Ordering::Release);
    wait_until(&mut reader, |r| r.is_stopped());
    let reason = thread.stop();
    assert!(matches!(reason, Some(CameraError::Timeout { .. })));
    assert_eq!(reader.latest(), Latest::Stopped { last: None });
}

#[test]
fn a_failing_camera_reads_as_stopped_with_its_error() {
    let (cam, _) = Scripted::new(5, Then::Fail);
    let (thread, mut reader) = CaptureThread::spawn(cam, Duration::from_millis(100)).unwrap();
    wait_until(&mut reader, |r| r.is_stopped());
    match reader.latest() {
        Latest::Stopped { last: Some(f) } => {
            assert_eq!(f.sequence, 4);
            assert!(f.image.data.iter().all(|&b| b == 4));
        }
        other => panic!("expected stopped, got {other:?}"),
    }
    let reason = reader.stop_reason().expect("a reason");
    assert!(reason.to_string().contains("scripted"), "{reason}");
    assert!(!thread.is_running());
    assert_eq!(thread.frames(), 5);
    assert_eq!(thread.stop(), Some(reason));
}

#[test]
fn a_panicking_camera_reads_as_stopped() {
    let (cam, _) = Scripted::new(1, Then::Panic);
    let (_thread, mut reader) = CaptureThread::spawn(cam, Duration::from_millis(100)).unwrap();
    wait_until(&mut reader, |r| r.is_stopped());
    assert!(matches!(reader.latest(), Latest::Stopped { last: Some(_) }));
    assert!(matches!(
        reader.stop_reason(),
        Some(CameraError::Panicked { .. })
    ));
}

/// A camera that runs until told to stop: frames at ~1 kHz, stamped now.
struct Endless;

impl Camera for Endless {
    fn name(&self) -> &str {
        "endless"
    }
    fn size(&self) -> (u32, u32) {
        (8, 8)
    }
    fn fps(&self) -> u32 {
        1000
    }
    fn capture(&mut self, image: &mut Image) -> Result<u64, CameraError> {
        std::thread::sleep(Duration::from_millis(1));
        image.data[0] = image.data[0].wrapping_add(1);
        Ok(intervened_camera::monotonic_now_ns())
    }
}

#[test]
fn stop_on_request_ends_the_thread_without_a_reason() {
    let (thread, mut reader) = CaptureThread::spawn(Endless, Duration::from_millis(500)).unwrap();
    wait_until(&mut reader, |r| matches!(r.latest(), Latest::Fresh { .. }));
    // Sequence numbers increase one by one as seen by one thread.
    let mut last = 0;
    for _ in 0..20 {
        if let Some(f) = reader.latest().frame() {
            assert!(f.sequence >= last);
            last = f.sequence;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(thread.stop(), None);
    assert!(reader.is_stopped());
    assert_eq!(reader.stop_reason(), None);
    assert!(matches!(reader.latest(), Latest::Stopped { last: Some(_) }));
}

#[test]
fn dropping_the_thread_stops_it() {
    let (thread, mut reader) = CaptureThread::spawn(Endless, Duration::from_millis(500)).unwrap();
    wait_until(&mut reader, |r| r.latest().frame().is_some());
    drop(thread);
    assert!(reader.is_stopped());
}

#[test]
fn open_camera_builds_a_sim_camera_and_refuses_one_without_scenes() {
    use intervened_camera::{open_camera, scene_channel, CameraConfig, Scene};
    let cfg = CameraConfig {
        name: "overhead".into(),
        device: "sim".into(),
        width: 96,
        height: 128,
        fps: 30,
        max_age_ms: None,
        pose: None,
    };
    let (_p, sub) = scene_channel(&Scene::default());
    let cam = open_camera(&cfg, Some(sub)).unwrap();
    assert_eq!(
        (cam.name(), cam.size(), cam.fps()),
        ("overhead", (96, 128), 30)
    );
    let msg = match open_camera(&cfg, None) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a sim camera without scenes opened"),
    };
    assert!(
        msg.contains("overhead (sim)") && msg.contains("scene channel"),
        "{msg}"
    );
    let (thread, mut reader) = CaptureThread::spawn(cam, cfg.max_age()).unwrap();
    wait_until(&mut reader, |r| r.latest().fresh().is_some());
    assert_eq!(thread.stop(), None);
}

#[test]
fn the_tap_sees_every_frame_before_the_reader_does() {
    let (cam, release) = Scripted::new(5, Then::Idle);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let tap: intervened_camera::FrameTap = Box::new(move |f| {
        s.lock()
            .unwrap()
            .push((f.sequence, f.timestamp_ns, f.image.data[0]));
    });
    let (thread, mut reader) =
        CaptureThread::spawn_tapped(cam, Duration::from_secs(3600), Some(tap)).unwrap();
    let t0 = Instant::now();
    while thread.frames() < 5 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let last = reader
        .latest_at(1_000_000_000 + 4 * 33_000_000)
        .frame()
        .unwrap()
        .sequence;
    assert_eq!(last, 4);
    let seen = seen.lock().unwrap().clone();
    let want: Vec<(u64, u64, u8)> = (0..5)
        .map(|k| (k, 1_000_000_000 + k * 33_000_000, k as u8))
        .collect();
    assert_eq!(seen, want);
    release.store(true, Ordering::Release);
    drop(thread);
}

#[test]
fn a_frame_channel_publishes_in_place_with_given_times_and_stops_when_dropped() {
    let taps = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = taps.clone();
    let (mut publisher, mut reader) = intervened_camera::frame_channel(
        "lockstep",
        4,
        2,
        Duration::from_millis(100),
        Some(Box::new(move |_| {
            t.fetch_add(1, Ordering::Relaxed);
        })),
    );
    assert!(matches!(reader.latest_at(0), Latest::Waiting));
    publisher
        .publish_with(20_000_000, |img| {
            img.data.fill(7);
            Ok::<(), ()>(())
        })
        .unwrap();
    match reader.latest_at(50_000_000) {
        Latest::Fresh { frame, age_ns } => {
            assert_eq!(
                (frame.image.data[0], frame.sequence, age_ns),
                (7, 0, 30_000_000)
            );
            assert_eq!((frame.image.width, frame.image.height), (4, 2));
        }
        other => panic!("{other:?}"),
    }
    // Simulated time moves on without a new frame: stale past max_age.
    assert!(matches!(
        reader.latest_at(200_000_000),
        Latest::Stale { .. }
    ));
    // A failed fill publishes nothing.
    assert!(publisher
        .publish_with(210_000_000, |_| Err("no scene"))
        .is_err());
    assert_eq!(reader.latest_at(210_000_000).frame().unwrap().sequence, 0);
    assert_eq!((publisher.frames(), taps.load(Ordering::Relaxed)), (1, 1));
    drop(publisher);
    assert!(matches!(
        reader.latest_at(0),
        Latest::Stopped { last: Some(_) }
    ));
}
