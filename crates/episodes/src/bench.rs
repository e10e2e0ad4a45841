//! Recording benchmark: synthetic frames of the daemon's shape (6 joints, 4 task features, a
//! policy proposal every tick, 8 gamepad axes) pushed through the real [`Recorder`] at a fixed
//! rate, the way the control loop does it: a producer thread paced on absolute deadlines that
//! only ever calls the handle's non-blocking `try_send` methods.
//!
//! It reports what the loop would see (frames sent and dropped, the worst `try_send` latency)
//! and what recording costs (the recorder thread's CPU, the file size). The CPU time of the
//! thread named `recorder` is read from `/proc/self/task/<tid>/stat` (utime + stime, in USER_HZ
//! ticks of 10 ms: a 1 s run resolves only 1% of a core) and, where the kernel keeps scheduler
//! statistics, from `/proc/self/task/<tid>/schedstat` (nanoseconds on the CPU), which is the
//! figure reported when available. Linux only.
//!
//! With cameras ([`BenchRecordOptions::cameras`]), one thread per camera plays a capture
//! thread: paced at the camera's rate, it hands a textured synthetic RGB image to
//! [`RecorderHandle::record_image`] (which copies it into a pooled buffer and never blocks),
//! and each frame carries the newest capture time of every camera. The recorder thread then
//! also JPEG-encodes every image, which is what its CPU figure shows.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use intervened_camera::{monotonic_now_ns, Image};

use crate::error::{EpisodeError, Result};
use crate::layout;
use crate::recorder::{Recorder, RecorderHandle, RecorderOptions};
use crate::types::{unix_now_ns, CameraInfo, ControlSource, EpisodeMeta, Frame, Outcome};

/// The kernel's USER_HZ: the unit of utime/stime in `/proc/<pid>/task/<tid>/stat` (100 on every
/// mainstream Linux architecture).
const USER_HZ: f64 = 100.0;
const JOINTS: usize = 6;
const TASK_FEATURES: usize = 4;
const PAD_AXES: usize = 8;

/// What [`bench_record`] runs.
#[derive(Debug, Clone)]
pub struct BenchRecordOptions {
    /// Data root; the episode goes to `<root>/sessions/bench-<time>/episode-000000.mcap`.
    pub root: PathBuf,
    /// Frames per second (default 500).
    pub rate_hz: f64,
    /// How long frames are sent for (default 10 s).
    pub duration: Duration,
    /// The recorder's chunk flush interval (default: the config default, 100 ms).
    pub flush_ms: u64,
    /// The recorder's frame queue (default: the config default).
    pub queue_frames: usize,
    /// Cameras fed with synthetic images (default: none; [`BenchRecordOptions::default_cameras`]
    /// is the load, two at 640x480 and 30 fps).
    pub cameras: Vec<CameraInfo>,
}

impl BenchRecordOptions {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let rec = RecorderOptions::new(root);
        Self {
            root: rec.root,
            rate_hz: 500.0,
            duration: Duration::from_secs(10),
            flush_ms: rec.flush_ms,
            queue_frames: rec.queue_frames,
            cameras: Vec::new(),
        }
    }

    /// `n` cameras named `cam0`, `cam1`, ... of `width` x `height` at `fps`.
    pub fn cameras(n: usize, width: u32, height: u32, fps: f64) -> Vec<CameraInfo> {
        (0..n)
            .map(|i| CameraInfo::new(format!("cam{i}"), width, height, fps))
            .collect()
    }

    /// Two cameras at 640x480 and 30 fps.
    pub fn default_cameras() -> Vec<CameraInfo> {
        Self::cameras(2, 640, 480, 30.0)
    }
}

/// What [`bench_record`] measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchRecordReport {
    /// The episode file written.
    pub path: PathBuf,
    pub rate_hz: f64,
    /// From the first frame's deadline to the last frame sent (s).
    pub duration_s: f64,
    /// `try_send` calls made for frames.
    pub frames_sent: u64,
    /// Frames `try_send` refused (queue full or recorder gone); the target is zero.
    pub frames_dropped: u64,
    /// Frames the recorder wrote to the file.
    pub frames_written: u64,
    /// Worst time one `try_send` of a frame took (us).
    pub max_try_send_us: f64,
    /// 99th percentile of the frame `try_send` time (us).
    pub p99_try_send_us: f64,
    /// Worst lateness of the producer's wake-up against its absolute deadline (us): the OS
    /// scheduler's share, not the recorder's.
    pub max_wake_late_us: f64,
    /// The recorder thread's CPU time over the run, as % of one core: from `schedstat` (ns)
    /// where available, else from `stat`; `None` where `/proc/self/task` is unavailable or the
    /// thread could not be told apart.
    pub recorder_cpu_pct: Option<f64>,
    /// The same from `stat`'s utime + stime (10 ms resolution).
    pub recorder_cpu_stat_pct: Option<f64>,
    /// Wall time the CPU figure covers, from the recorder's start to its episode's manifest (s).
    pub cpu_window_s: f64,
    /// Chunk flushes (each closes a chunk and fdatasyncs).
    pub flushes: u64,
    /// Size of the finished episode file.
    pub file_bytes: u64,
    /// `file_bytes` per second of recording.
    pub bytes_per_s: f64,
    /// What the cameras did; `None` without cameras.
    pub cameras: Option<BenchCameraReport>,
}

/// The camera part of a [`BenchRecordReport`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchCameraReport {
    pub cameras: usize,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// `record_image` calls, all cameras.
    pub images_sent: u64,
    /// Images the queue could not take (the target is zero), all cameras.
    pub images_dropped: u64,
    /// Per camera, images dropped.
    pub dropped_per_camera: Vec<u64>,
    /// Images the recorder wrote.
    pub images_written: u64,
    /// Images lost after the queue (encoding or write errors).
    pub images_lost: u64,
    /// Worst time one `record_image` call took, copy included (us).
    pub max_record_image_us: f64,
    /// Mean JPEG size (bytes) in the file.
    pub mean_jpeg_bytes: f64,
}

/// A frame shaped like the daemon's, with values that vary like real ones (full-precision
/// floats, so the JSON is as long as the daemon's).
fn synthetic_frame(tick: u64, period: f64) -> Frame {
    let t = tick as f64 * period;
    let wave = |k: usize, amp: f64| -> f64 { amp * (t * (0.7 + 0.13 * k as f64) + k as f64).sin() };
    let q: Vec<f64> = (0..JOINTS).map(|k| wave(k, 1.2)).collect();
    let goal: Vec<f64> = q.iter().map(|x| x + 0.003 * (t * 5.0).cos()).collect();
    Frame {
        tick,
        t,
        qd: (0..JOINTS).map(|k| wave(k + 3, 2.5)).collect(),
        current: (0..JOINTS).map(|k| 40.0 * wave(k + 5, 3.0)).collect(),
        proposal: Some(goal.iter().map(|x| x - 0.0017 * (t * 3.0).sin()).collect()),
        goal,
        q,
        source: ControlSource::Demo,
        doubt: Some(0.05 + 0.01 * wave(1, 1.0).abs()),
        pad_axes: (0..PAD_AXES).map(|k| wave(k + 7, 1.0)).collect(),
        pad_buttons: (tick / 97 % 4) as u32,
        task: (0..TASK_FEATURES).map(|k| wave(k + 11, 0.2)).collect(),
    }
}

/// A textured synthetic image (a gradient with fixed noise, so JPEG has real work) with a
/// square that moves with `k`: drawn into `out` from `base` without allocating.
fn synthetic_camera_image(base: &Image, k: u64, out: &mut Image) {
    out.width = base.width;
    out.height = base.height;
    out.data.clear();
    out.data.extend_from_slice(&base.data);
    let side = base.width.min(base.height) / 5;
    let x0 = (k as u32 * 9) % (base.width - side);
    let y0 = (k as u32 * 5) % (base.height - side);
    for y in y0..y0 + side {
        let row = ((y * base.width + x0) * 3) as usize;
        for b in &mut out.data[row..row + side as usize * 3] {
            *b = 255 - *b / 4;
        }
    }
}

fn camera_base(width: u32, height: u32, seed: u64) -> Image {
    let mut img = Image::new(width.max(8), height.max(8));
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let (w, h) = (img.width, img.height);
    for (i, px) in img.data.chunks_exact_mut(3).enumerate() {
        let (col, row) = (i as u32 % w, i as u32 / w);
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((x >> 61) as i32) - 4; // -4..3: a webcam's sensor noise in daylight
        let v = |base: u32| (base as i32 + noise).clamp(0, 255) as u8;
        px[0] = v(col * 255 / w);
        px[1] = v(row * 255 / h);
        px[2] = v(128);
    }
    img
}

/// What one camera thread saw.
struct CameraProduced {
    sent: u64,
    dropped: u64,
    max_call: Duration,
}

/// A capture thread's stand-in: images at `cam.fps` for `duration`, only `record_image`.
fn produce_camera(
    handle: &RecorderHandle,
    index: usize,
    cam: &CameraInfo,
    duration: Duration,
    latest: &AtomicU64,
    start: &Barrier,
) -> CameraProduced {
    let base = camera_base(cam.width, cam.height, index as u64 + 1);
    let mut img = Image::new(base.width, base.height);
    let period = Duration::from_secs_f64(1.0 / cam.fps.max(0.1));
    let mut out = CameraProduced {
        sent: 0,
        dropped: 0,
        max_call: Duration::ZERO,
    };
    start.wait();
    let t0 = Instant::now();
    let mut k = 0u64;
    while t0.elapsed() < duration {
        let deadline = t0 + period.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
        let now = Instant::now();
        if deadline > now {
            thread::sleep(deadline - now);
        }
        // Drawn outside the timed call, as a camera's frame is ready when it is handed over.
        synthetic_camera_image(&base, k, &mut img);
        let ns = monotonic_now_ns();
        let c0 = Instant::now();
        let res = handle.record_image(index, ns, &img);
        out.max_call = out.max_call.max(c0.elapsed());
        match res {
            Ok(true) => {
                out.sent += 1;
                latest.store(ns, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(_) => {
                out.sent += 1;
                out.dropped += 1;
            }
        }
        k += 1;
    }
    out
}

fn bench_meta(session_id: &str, fps: f64) -> EpisodeMeta {
    EpisodeMeta {
        session_id: session_id.to_string(),
        episode_index: 0,
        robot_name: "bench".into(),
        robot_type: "synthetic".into(),
        joint_names: [
            "shoulder_pan",
            "shoulder_lift",
            "elbow_flex",
            "wrist_flex",
            "wrist_roll",
            "gripper",
        ]
        .map(String::from)
        .to_vec(),
        task_feature_names: ["block_x", "block_y", "block_z", "grasped"]
            .map(String::from)
            .to_vec(),
        fps,
        policy_version: Some("bench".into()),
        task: "recording benchmark".into(),
        demo: true,
        started_at: unix_now_ns(),
        cameras: Vec::new(),
        monotonic_start_ns: None,
    }
}

/// Tids of this process's threads named `name`.
fn threads_named(name: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim_end() == name).then_some(tid)
        })
        .collect()
}

/// utime + stime of one of this process's threads, in seconds.
fn thread_cpu_s(tid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Field 3 (state) is the first after ')'; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// On-CPU time of one of this process's threads from `schedstat`, in seconds (ns resolution;
/// absent on kernels built without scheduler statistics).
fn thread_sched_cpu_s(tid: u32) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// CPU time of a thread by both counters: (schedstat, stat).
fn cpu_sample(tid: Option<u32>) -> (Option<f64>, Option<f64>) {
    match tid {
        Some(t) => (thread_sched_cpu_s(t), thread_cpu_s(t)),
        None => (None, None),
    }
}

/// What the producer thread saw.
struct Produced {
    sent: u64,
    refused: u64,
    latencies_ns: Vec<u64>,
    max_late: Duration,
    elapsed: Duration,
    control_refused: u64,
}

/// The control loop's stand-in: begin, frames on absolute deadlines, end, only `try_send`.
fn produce(
    handle: &RecorderHandle,
    meta: EpisodeMeta,
    rate_hz: f64,
    duration: Duration,
    cameras: &[AtomicU64],
    start: &Barrier,
) -> Produced {
    let period = Duration::from_secs_f64(1.0 / rate_hz);
    let n = (duration.as_secs_f64() * rate_hz).round().max(1.0) as u64;
    let mut out = Produced {
        sent: 0,
        refused: 0,
        latencies_ns: Vec::with_capacity(usize::try_from(n).unwrap_or(0)),
        max_late: Duration::ZERO,
        elapsed: Duration::ZERO,
        control_refused: 0,
    };
    if handle.begin_episode(meta).is_err() {
        out.control_refused += 1;
    }
    // The cameras start once the episode is open.
    start.wait();
    let mut stamps = vec![0u64; cameras.len()];
    let start = Instant::now();
    for tick in 0..n {
        let deadline = start + period.saturating_mul(u32::try_from(tick).unwrap_or(u32::MAX));
        let now = Instant::now();
        if deadline > now {
            thread::sleep(deadline - now);
        }
        out.max_late = out
            .max_late
            .max(Instant::now().saturating_duration_since(deadline));
        // Built outside the timed section: the loop has its frame ready when it sends.
        let frame = synthetic_frame(tick, period.as_secs_f64());
        for (s, c) in stamps.iter_mut().zip(cameras) {
            *s = c.load(Ordering::Relaxed);
        }
        let t0 = Instant::now();
        let res = if cameras.is_empty() {
            handle.record_frame(frame)
        } else {
            handle.record_frame_with_images(&stamps, |f| *f = frame)
        };
        let dt = t0.elapsed();
        out.latencies_ns
            .push(u64::try_from(dt.as_nanos()).unwrap_or(u64::MAX));
        out.sent += 1;
        if res.is_err() {
            out.refused += 1;
        }
    }
    out.elapsed = start.elapsed();
    if handle.end_episode(Outcome::Success).is_err() {
        out.control_refused += 1;
    }
    out
}

/// Record `opts.duration` of synthetic frames at `opts.rate_hz` through a real [`Recorder`]
/// under `opts.root`, and measure it (see [`BenchRecordReport`]). Blocks for the duration plus
/// the time to close the episode.
pub fn bench_record(opts: &BenchRecordOptions) -> Result<BenchRecordReport> {
    if !(opts.rate_hz.is_finite() && opts.rate_hz > 0.0) {
        return Err(EpisodeError::Thread(format!(
            "bench rate must be positive, got {} Hz",
            opts.rate_hz
        )));
    }
    // A fresh session directory, never an existing one.
    let base = format!("bench-{}", layout::new_session_id());
    let mut session_id = base.clone();
    let mut k = 2;
    while layout::session_dir(&opts.root, &session_id).exists() {
        session_id = format!("{base}-{k}");
        k += 1;
    }
    let path = layout::episode_path(&opts.root, &session_id, 0);

    let mut rec_opts = RecorderOptions::new(&opts.root);
    rec_opts.flush_ms = opts.flush_ms;
    rec_opts.queue_frames = opts.queue_frames;
    rec_opts.recover_on_start = false;

    // The recorder thread is the one named "recorder" that was not there before the spawn.
    let before = threads_named("recorder");
    let recorder = Recorder::spawn(rec_opts)?;
    let cpu_start_wall = Instant::now();
    // A thread names itself once it runs, so the name may take a moment to appear. Another
    // recorder started meanwhile (e.g. by a parallel test) makes the thread ambiguous: no CPU.
    let mut tid = None;
    while cpu_start_wall.elapsed() < Duration::from_secs(1) {
        let mut new_tids: Vec<u32> = threads_named("recorder")
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        if !new_tids.is_empty() {
            tid = new_tids.pop().filter(|_| new_tids.is_empty());
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let cpu_start = cpu_sample(tid);

    let handle = recorder.handle();
    let mut meta = bench_meta(&session_id, opts.rate_hz);
    meta.cameras = opts.cameras.clone();
    meta.monotonic_start_ns = Some(monotonic_now_ns());
    for cam in &opts.cameras {
        // The queue's worth of buffers for each camera, so the run allocates nothing.
        handle.prefill_images(
            RecorderOptions::new(&opts.root).queue_images / opts.cameras.len().max(1) + 2,
            cam.width,
            cam.height,
        );
    }
    let (rate, duration) = (opts.rate_hz, opts.duration);
    let latest: Arc<Vec<AtomicU64>> =
        Arc::new(opts.cameras.iter().map(|_| AtomicU64::new(0)).collect());
    let start = Arc::new(Barrier::new(1 + opts.cameras.len()));
    let mut camera_threads = Vec::new();
    for (i, cam) in opts.cameras.iter().cloned().enumerate() {
        let (h, latest, start) = (handle.clone(), latest.clone(), start.clone());
        let t = thread::Builder::new()
            .name(format!("bench-cam{i}"))
            .spawn(move || produce_camera(&h, i, &cam, duration, &latest[i], &start))
            .map_err(|e| EpisodeError::Thread(format!("bench camera: {e}")))?;
        camera_threads.push(t);
    }
    let producer = {
        let (latest, start) = (latest.clone(), start.clone());
        thread::Builder::new()
            .name("bench-producer".into())
            .spawn(move || produce(&handle, meta, rate, duration, &latest, &start))
            .map_err(|e| EpisodeError::Thread(format!("bench producer: {e}")))?
    };
    let produced = producer
        .join()
        .map_err(|_| EpisodeError::Thread("bench producer panicked".into()))?;
    let mut cams_produced = Vec::new();
    for t in camera_threads {
        cams_produced.push(
            t.join()
                .map_err(|_| EpisodeError::Thread("bench camera panicked".into()))?,
        );
    }

    // Wait for the episode's manifest: everything queued is then written, flushed and closed.
    let report = recorder
        .reports()
        .recv_timeout(Duration::from_secs(60) + opts.duration)
        .map_err(|e| EpisodeError::Thread(format!("bench episode never closed: {e}")))?;
    let cpu_end = cpu_sample(tid);
    let cpu_window_s = cpu_start_wall.elapsed().as_secs_f64();
    let status = recorder.shutdown();
    if let Some(err) = report.error {
        return Err(EpisodeError::Thread(format!("bench episode: {err}")));
    }
    if produced.control_refused > 0 {
        return Err(EpisodeError::Thread(
            "the recorder refused the episode's begin or end".into(),
        ));
    }

    let file_bytes = fs::metadata(&path)
        .map_err(|e| EpisodeError::io(&path, e))?
        .len();
    let mut lat = produced.latencies_ns;
    lat.sort_unstable();
    let us = |ns: u64| ns as f64 / 1e3;
    let p99 = lat
        .get((lat.len() * 99 / 100).min(lat.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0);
    let duration_s = produced.elapsed.as_secs_f64();
    let pct = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if cpu_window_s > 0.0 => Some(100.0 * (b - a) / cpu_window_s),
        _ => None,
    };
    let sched_pct = pct(cpu_start.0, cpu_end.0);
    let stat_pct = pct(cpu_start.1, cpu_end.1);
    let cameras = match opts.cameras.first() {
        None => None,
        Some(first) => {
            let ep = crate::reader::read_episode(&path)?;
            let (n, bytes) = ep
                .images
                .iter()
                .flat_map(|c| &c.images)
                .fold((0u64, 0u64), |(n, b), i| (n + 1, b + i.jpeg.len() as u64));
            Some(BenchCameraReport {
                cameras: opts.cameras.len(),
                width: first.width,
                height: first.height,
                fps: first.fps,
                images_sent: cams_produced.iter().map(|c| c.sent).sum(),
                images_dropped: cams_produced.iter().map(|c| c.dropped).sum(),
                dropped_per_camera: cams_produced.iter().map(|c| c.dropped).collect(),
                images_written: status.images_written,
                images_lost: status.images_lost,
                max_record_image_us: cams_produced
                    .iter()
                    .map(|c| c.max_call.as_secs_f64() * 1e6)
                    .fold(0.0, f64::max),
                mean_jpeg_bytes: if n > 0 { bytes as f64 / n as f64 } else { 0.0 },
            })
        }
    };
    Ok(BenchRecordReport {
        path,
        rate_hz: opts.rate_hz,
        duration_s,
        frames_sent: produced.sent,
        frames_dropped: produced.refused,
        frames_written: status.frames_written,
        max_try_send_us: lat.last().copied().map_or(0.0, us),
        p99_try_send_us: us(p99),
        max_wake_late_us: produced.max_late.as_secs_f64() * 1e6,
        recorder_cpu_pct: sched_pct.or(stat_pct),
        recorder_cpu_stat_pct: stat_pct,
        cpu_window_s,
        flushes: status.flushes,
        file_bytes,
        bytes_per_s: if duration_s > 0.0 {
            file_bytes as f64 / duration_s
        } else {
            0.0
        },
        cameras,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::read_episode;

    #[test]
    fn proc_stat_cpu_time_advances_with_work() {
        let tid: u32 = fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse().ok())
            .expect("Linux /proc/thread-self");
        let c0 = thread_cpu_s(tid).expect("stat parses");
        assert!((0.0..600.0).contains(&c0), "{c0}");
        // Busy work must show up as this thread's CPU time (however loaded the machine is).
        let t0 = Instant::now();
        let mut x = 0u64;
        let mut c1 = c0;
        while c1 < c0 + 0.05 && t0.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            c1 = thread_cpu_s(tid).expect("stat parses");
        }
        std::hint::black_box(x);
        assert!(
            c1 >= c0 + 0.05,
            "busy {:?}, CPU {c0} -> {c1} s",
            t0.elapsed()
        );
        // CPU time cannot exceed the wall time it was spent in (plus one tick of rounding).
        assert!(c1 - c0 <= t0.elapsed().as_secs_f64() + 0.02);
    }

    #[test]
    fn one_second_at_500_hz_drops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = BenchRecordOptions::new(dir.path());
        opts.duration = Duration::from_secs(1);
        let r = bench_record(&opts).unwrap();
        eprintln!("{r:#?}");
        assert_eq!(r.rate_hz, 500.0);
        assert_eq!(r.frames_sent, 500);
        assert_eq!(r.frames_dropped, 0, "{r:#?}");
        assert_eq!(r.frames_written, 500, "{r:#?}");
        // Paced on absolute deadlines: 500 frames take about one second, not more.
        assert!(r.duration_s > 0.99 && r.duration_s < 1.5, "{r:#?}");
        // ~10 flushes for 1 s at 100 ms, plus the header's (not counted) and the close.
        assert!(r.flushes >= 5 && r.flushes <= 20, "{r:#?}");
        let cpu = r.recorder_cpu_pct.expect("recorder thread CPU readable");
        // Writing 500 frames/s of JSON costs something, and far less than a whole core.
        assert!(cpu > 0.0 && cpu < 100.0, "implausible CPU {cpu}%: {r:#?}");
        // Both counters measure the same thread. stat's utime+stime are sampled on
        // 10 ms ticks and rescaled by the kernel, so a 1 s delta can lag the exact
        // schedstat figure by a few ticks (CI once saw 16 ms); allow three.
        let stat = r.recorder_cpu_stat_pct.expect("stat readable");
        let tick_pct = 100.0 * 0.031 / r.cpu_window_s;
        assert!(
            (cpu - stat).abs() <= tick_pct,
            "schedstat {cpu}% vs stat {stat}%"
        );
        assert!(r.max_try_send_us >= r.p99_try_send_us && r.p99_try_send_us > 0.0);

        // The file holds every frame, in order, with the daemon's shape.
        let ep = read_episode(&r.path).unwrap();
        assert!(!ep.truncated);
        assert_eq!(ep.frames.len(), 500);
        assert_eq!(r.file_bytes, fs::metadata(&r.path).unwrap().len());
        assert!(
            r.file_bytes > 500 * 200,
            "{} bytes for 500 frames",
            r.file_bytes
        );
        let f = &ep.frames[499];
        assert_eq!(f.tick, 499);
        assert_eq!((f.q.len(), f.task.len(), f.pad_axes.len()), (6, 4, 8));
        assert_eq!(f.proposal.as_ref().map(Vec::len), Some(6));
        assert_eq!(*f, synthetic_frame(499, 1.0 / 500.0));
        assert!(r.cameras.is_none());
    }

    #[test]
    fn two_small_cameras_for_a_second_drop_nothing_and_are_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = BenchRecordOptions::new(dir.path());
        opts.duration = Duration::from_secs(1);
        opts.rate_hz = 200.0;
        opts.cameras = BenchRecordOptions::cameras(2, 160, 120, 30.0);
        let r = bench_record(&opts).unwrap();
        eprintln!("{r:#?}");
        assert_eq!(r.frames_dropped, 0, "{r:#?}");
        let c = r.cameras.clone().unwrap();
        assert!(c.images_sent >= 50, "{c:#?}");
        assert_eq!(c.images_dropped, 0, "{c:#?}");
        assert_eq!(c.images_written, c.images_sent, "{c:#?}");
        assert!(c.mean_jpeg_bytes > 1000.0, "{c:#?}");
        let ep = read_episode(&r.path).unwrap();
        assert_eq!(ep.images.len(), 2);
        assert_eq!(
            ep.images.iter().map(|c| c.images.len() as u64).sum::<u64>(),
            c.images_written
        );
        // Frames carry the newest capture time of each camera, which is an image in the file.
        let last = ep.image_capture_ns.last().unwrap();
        assert!(ep.images[0].images.iter().any(|i| i.capture_ns == last[0]));
    }
}
