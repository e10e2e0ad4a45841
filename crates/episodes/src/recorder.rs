//! The recorder thread. The control loop only ever calls `try_send` on a bounded channel:
//! it never blocks on the recorder, the disk or a lock. A full queue drops the frame and
//! counts it.
//!
//! The queue holds `queue_frames` frames plus a small reserve that only control messages
//! (begin/end, events, diagnostics) may use, so an episode's end is not lost to a burst of
//! frames, and order is kept (one channel).
//!
//! Camera images travel on the same channel, so they stay in order with the episode's begin
//! and end, but they have their own budget (`queue_images`): a burst of images never takes a
//! joint frame's slot, and images that do not fit are dropped and counted per camera. The
//! caller's image is copied into a pooled buffer (no allocation once the pool is warm); JPEG
//! encoding happens on the recorder thread.
//!
//! Disk faults (full disk, unwritable directory) are reported through [`RecorderStatus`]
//! (`disk_ok`, `write_errors`, `last_error`) and a tracing error; the recorder keeps draining
//! the queue so the loop is unaffected, and never touches what was already flushed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use intervened_camera::{encode_jpeg_into, Image};
use intervened_robot::RecordingConfig;
use tracing::{debug, error, info, warn};

use crate::error::{EpisodeError, Result};
use crate::layout;
use crate::manifest::Manifest;
use crate::recovery::{recover_all, RecoveryReport};
use crate::types::{
    DiagnosticsRecord, EpisodeMeta, Event, EventRecord, FailureMode, Frame, Outcome,
};
use crate::writer::{EpisodeWriter, WriterOptions};

/// Messages from the control loop to the recorder.
#[derive(Debug, Clone)]
pub enum RecorderMsg {
    /// Open a new episode file. An episode still open is ended as `Aborted` first.
    BeginEpisode(Box<EpisodeMeta>),
    Frame(Box<Frame>),
    /// A frame with, per camera, the capture time of the image the loop used at its tick.
    FrameWithImages(Box<Frame>, ImageStamps),
    /// A camera image, JPEG-encoded and written by the recorder thread.
    Image(Box<ImageMsg>),
    Event(EventRecord),
    /// An event made of static parts, turned into an [`Event`] on the recorder thread (so
    /// the control thread formats nothing).
    StaticEvent {
        tick: u64,
        t: f64,
        event: StaticEvent,
    },
    Diagnostics(DiagnosticsRecord),
    /// Close the open episode with this outcome (and, for a failure, why when known) and
    /// write its manifest.
    EndEpisode(Outcome, Option<FailureMode>),
    /// Stop the thread (sent by [`Recorder::shutdown`]); an open episode ends as `Aborted`.
    Shutdown,
}

/// Events the control loop sends without allocating; the recorder thread writes them as the
/// [`Event`] named in each variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StaticEvent {
    /// [`Event::ModeChange`].
    ModeChange {
        from: &'static str,
        to: &'static str,
        reason: &'static str,
    },
    /// [`Event::SafetyClamp`]: how many joints were clamped to a limit and to the step limit.
    SafetyClamp { limit: u32, step: u32 },
    /// [`Event::CameraGap`] for camera `camera` (its index in [`EpisodeMeta::cameras`]; the
    /// recorder writes its name).
    CameraGap {
        camera: u16,
        reason: CameraGapReason,
    },
}

/// Why a camera's images stop ([`Event::CameraGap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraGapReason {
    /// Its newest image is older than the configured limit.
    Stale,
    /// Its capture thread ended.
    Stopped,
}

impl CameraGapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Stopped => "stopped",
        }
    }
}

/// The most cameras one episode may have (frames carry their image stamps inline).
pub const MAX_CAMERAS: usize = 8;

/// Per camera, the capture time (`CLOCK_MONOTONIC` ns, 0 = none) of the image the loop used at
/// one tick. Inline, so that sending a frame with it allocates nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageStamps {
    ns: [u64; MAX_CAMERAS],
    len: u8,
}

impl ImageStamps {
    /// The first [`MAX_CAMERAS`] values of `ns`.
    pub fn new(ns: &[u64]) -> Self {
        let mut s = Self::default();
        let n = ns.len().min(MAX_CAMERAS);
        s.ns[..n].copy_from_slice(&ns[..n]);
        s.len = n as u8;
        s
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.ns[..usize::from(self.len)]
    }
}

/// One camera image on its way to the recorder thread (a pooled buffer).
#[derive(Debug, Clone, Default)]
pub struct ImageMsg {
    /// Index in [`EpisodeMeta::cameras`].
    pub camera: usize,
    /// Capture time, `CLOCK_MONOTONIC` ns.
    pub capture_ns: u64,
    /// Episode time to log it at; `None`: from `capture_ns` (see
    /// [`EpisodeMeta::monotonic_start_ns`]).
    pub t: Option<f64>,
    pub image: Image,
}

impl StaticEvent {
    pub fn to_event(self) -> Event {
        match self {
            StaticEvent::ModeChange { from, to, reason } => Event::ModeChange {
                from: from.into(),
                to: to.into(),
                reason: reason.into(),
            },
            StaticEvent::SafetyClamp { limit, step } => Event::SafetyClamp {
                joint: String::new(),
                reason: format!("{limit} joint(s) at a limit, {step} at the step limit"),
            },
            StaticEvent::CameraGap { camera, reason } => Event::CameraGap {
                camera: format!("#{camera}"),
                reason: reason.as_str().into(),
            },
        }
    }
}

/// Frames kept ready for the control loop by [`RecorderHandle::prefill_frames`]: at 1 kHz a
/// quarter second of recorder lag before a frame must be allocated.
pub const FRAME_POOL: usize = 256;

/// Recorder settings; [`RecorderOptions::from_config`] maps the robot config's section.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    pub root: PathBuf,
    /// Close and fsync a chunk at least this often (bounds loss on a crash or power cut).
    pub flush_ms: u64,
    /// Frames the queue holds before frames are dropped.
    pub queue_frames: usize,
    /// Extra queue slots only non-frame messages may use.
    pub control_reserve: usize,
    /// Camera images (all cameras together) the queue holds before images are dropped.
    pub queue_images: usize,
    /// JPEG quality (1..=100) of recorded images. Default 85: below 90 the encoder subsamples
    /// chroma (4:2:0), which halves its work against 4:4:4 for little visible loss.
    pub jpeg_quality: u8,
    /// Run [`recover_all`] in [`Recorder::spawn`], before any new episode is opened.
    pub recover_on_start: bool,
    pub writer: WriterOptions,
}

impl RecorderOptions {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let d = RecordingConfig::default();
        Self {
            root: root.into(),
            flush_ms: d.flush_ms,
            queue_frames: d.queue_frames,
            control_reserve: 64,
            queue_images: d.queue_images,
            jpeg_quality: 85,
            recover_on_start: true,
            writer: WriterOptions::default(),
        }
    }

    pub fn from_config(cfg: &RecordingConfig) -> Self {
        Self {
            flush_ms: cfg.flush_ms,
            queue_frames: cfg.queue_frames,
            queue_images: cfg.queue_images,
            ..Self::new(cfg.root.clone())
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    frames_written: AtomicU64,
    frames_dropped: AtomicU64,
    messages_dropped: AtomicU64,
    frames_lost: AtomicU64,
    frames_rejected: AtomicU64,
    frames_outside_episode: AtomicU64,
    write_errors: AtomicU64,
    episodes_finished: AtomicU64,
    episodes_failed: AtomicU64,
    flushes: AtomicU64,
    disk_error: AtomicBool,
    recording: AtomicBool,
    running: AtomicBool,
    /// Cameras of the episode the loop last began (0 once it ends): images for a camera below
    /// it are queued, others discarded without counting as lost.
    cameras_open: AtomicUsize,
    /// Images sent and not yet taken off the queue by the recorder thread.
    images_in_flight: AtomicUsize,
    images_dropped: [AtomicU64; MAX_CAMERAS],
    images_written: AtomicU64,
    images_lost: AtomicU64,
    // Only the recorder thread and status readers touch this, never the control loop.
    last_error: Mutex<Option<String>>,
}

/// A snapshot of the recorder's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderStatus {
    /// False after a write error, until an episode is written cleanly again.
    pub disk_ok: bool,
    /// An episode file is open.
    pub recording: bool,
    /// The recorder thread is alive.
    pub running: bool,
    pub frames_written: u64,
    /// Frames the loop could not queue (queue full).
    pub frames_dropped: u64,
    /// Non-frame messages the loop could not queue.
    pub messages_dropped: u64,
    /// Frames that reached the recorder but not the disk (write error).
    pub frames_lost: u64,
    /// Frames refused for their shape (wrong number of joints or features).
    pub frames_rejected: u64,
    /// Frames sent while no episode was open (ignored).
    pub frames_outside_episode: u64,
    pub write_errors: u64,
    pub episodes_finished: u64,
    /// Episodes with no readable file at all (it could not be created, or nothing on disk
    /// survived): their frames are counted in `frames_lost`.
    pub episodes_failed: u64,
    pub flushes: u64,
    pub last_error: Option<String>,
    /// Camera images written.
    pub images_written: u64,
    /// Camera images the queue could not take (all cameras; per camera:
    /// [`RecorderHandle::dropped_images`]).
    pub images_dropped: u64,
    /// Camera images that reached the recorder but not the disk (write or encoding error,
    /// unknown camera).
    pub images_lost: u64,
}

impl Shared {
    fn status(&self) -> RecorderStatus {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RecorderStatus {
            disk_ok: !self.disk_error.load(Ordering::Relaxed),
            recording: self.recording.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            frames_written: r(&self.frames_written),
            frames_dropped: r(&self.frames_dropped),
            messages_dropped: r(&self.messages_dropped),
            frames_lost: r(&self.frames_lost),
            frames_rejected: r(&self.frames_rejected),
            frames_outside_episode: r(&self.frames_outside_episode),
            write_errors: r(&self.write_errors),
            episodes_finished: r(&self.episodes_finished),
            episodes_failed: r(&self.episodes_failed),
            flushes: r(&self.flushes),
            last_error: self.last_error.lock().ok().and_then(|g| g.clone()),
            images_written: r(&self.images_written),
            images_dropped: self.images_dropped.iter().map(r).sum(),
            images_lost: r(&self.images_lost),
        }
    }

    fn report_error(&self, context: &str, e: &EpisodeError) {
        let n = self.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
        self.disk_error.store(true, Ordering::Relaxed);
        let msg = format!("{context}: {e}");
        // Loud on the first errors, then every power of two: a dead disk must not flood logs.
        if n <= 3 || n.is_power_of_two() {
            error!(
                errors = n,
                disk_full = e.is_disk_full(),
                "RECORDING FAILED: {msg}"
            );
        }
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(msg);
        }
    }
}

/// The control loop's side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct RecorderHandle {
    tx: Sender<Envelope>,
    shared: Arc<Shared>,
    frame_capacity: usize,
    /// Written frames come back here to be filled again, so recording does not allocate.
    pool: Receiver<Box<Frame>>,
    pool_tx: Sender<Box<Frame>>,
    image_capacity: usize,
    /// Written images' buffers come back here, like frames.
    image_pool: Receiver<Box<ImageMsg>>,
    image_pool_tx: Sender<Box<ImageMsg>>,
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendRejected {
    #[error("recorder queue full; message dropped")]
    Full,
    #[error("recorder stopped; message dropped")]
    Stopped,
}

impl RecorderHandle {
    /// Queue a message without blocking. Frames are dropped once `queue_frames` are waiting;
    /// other messages may also use the reserve. Every drop is counted.
    pub fn try_send(&self, msg: RecorderMsg) -> Result<(), SendRejected> {
        let is_frame = matches!(
            msg,
            RecorderMsg::Frame(_) | RecorderMsg::FrameWithImages(..)
        );
        if let RecorderMsg::Image(img) = msg {
            return self.send_image(img);
        }
        if is_frame && self.frames_queued() >= self.frame_capacity {
            self.count_drop(true, SendRejected::Full);
            return Err(SendRejected::Full);
        }
        // Stamp each message with the drop count at send time, so the recorder can tell which
        // drops fall inside an episode even though dropped frames never reach it.
        let dropped_before = self.shared.frames_dropped.load(Ordering::Relaxed);
        match self.tx.try_send(Envelope {
            msg,
            dropped_before,
        }) {
            Ok(()) => Ok(()),
            Err(e) => {
                let why = match e {
                    TrySendError::Full(_) => SendRejected::Full,
                    TrySendError::Disconnected(_) => SendRejected::Stopped,
                };
                self.count_drop(is_frame, why);
                Err(why)
            }
        }
    }

    /// Frames (and control messages) waiting: the queue less the images in it.
    fn frames_queued(&self) -> usize {
        self.tx
            .len()
            .saturating_sub(self.shared.images_in_flight.load(Ordering::Relaxed))
    }

    fn send_image(&self, img: Box<ImageMsg>) -> Result<(), SendRejected> {
        let camera = img.camera;
        let in_flight = self.shared.images_in_flight.fetch_add(1, Ordering::Relaxed);
        let res = if in_flight >= self.image_capacity {
            Err(SendRejected::Full)
        } else {
            let dropped_before = self.shared.frames_dropped.load(Ordering::Relaxed);
            self.tx
                .try_send(Envelope {
                    msg: RecorderMsg::Image(img),
                    dropped_before,
                })
                .map_err(|e| {
                    let (env, why) = match e {
                        TrySendError::Full(env) => (env, SendRejected::Full),
                        TrySendError::Disconnected(env) => (env, SendRejected::Stopped),
                    };
                    // Back to the pool: a full queue must not cost a buffer.
                    if let RecorderMsg::Image(b) = env.msg {
                        let _ = self.image_pool_tx.try_send(b);
                    }
                    why
                })
        };
        if let Err(why) = res {
            self.shared.images_in_flight.fetch_sub(1, Ordering::Relaxed);
            let slot = self.shared.images_dropped.get(camera.min(MAX_CAMERAS - 1));
            let n = slot.map_or(0, |c| c.fetch_add(1, Ordering::Relaxed) + 1);
            if n.is_power_of_two() {
                error!(
                    camera,
                    dropped = n,
                    "RECORDER {why}: camera images are being dropped"
                );
            }
            return Err(why);
        }
        Ok(())
    }

    /// Queues one camera image for the open episode, for a capture thread to call on every
    /// frame it captures: `image` is copied into a pooled buffer (no allocation once the pool
    /// is warm, see [`RecorderHandle::prefill_images`]), then queued without blocking; the
    /// recorder thread JPEG-encodes and writes it on `/camera/<name>` with `capture_ns`
    /// (`CLOCK_MONOTONIC`) as its timestamp, logged at `started_at + (capture_ns -
    /// monotonic_start_ns)`. `camera` is the index in the episode's [`EpisodeMeta::cameras`].
    ///
    /// `Ok(true)`: queued. `Ok(false)`: no episode with that camera is open, discarded (not a
    /// loss). `Err`: the queue had no room; dropped and counted for that camera.
    pub fn record_image(
        &self,
        camera: usize,
        capture_ns: u64,
        image: &Image,
    ) -> Result<bool, SendRejected> {
        self.queue_image(camera, capture_ns, None, image)
    }

    /// [`RecorderHandle::record_image`], logged at episode time `t` (seconds, the frames'
    /// base): for callers whose capture clock is not `CLOCK_MONOTONIC` (lockstep simulation).
    pub fn record_image_at(
        &self,
        camera: usize,
        capture_ns: u64,
        t: f64,
        image: &Image,
    ) -> Result<bool, SendRejected> {
        self.queue_image(camera, capture_ns, Some(t), image)
    }

    /// Waits until the image queue has room, up to `timeout`; true if it has. Only for a
    /// lockstep simulation, whose simulated time stands still while it waits: there, a loaded
    /// machine must slow the run rather than lose images. A robot's capture never waits (a
    /// full queue drops the image and the recording counts it).
    pub fn wait_for_image_room(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.images_in_flight.load(Ordering::Relaxed) < self.image_capacity {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn queue_image(
        &self,
        camera: usize,
        capture_ns: u64,
        t: Option<f64>,
        image: &Image,
    ) -> Result<bool, SendRejected> {
        if camera >= self.shared.cameras_open.load(Ordering::Relaxed) {
            return Ok(false);
        }
        // Checked before a buffer is taken and filled: a full queue costs no copy.
        if self.shared.images_in_flight.load(Ordering::Relaxed) >= self.image_capacity {
            let n = self.shared.images_dropped[camera.min(MAX_CAMERAS - 1)]
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            if n.is_power_of_two() {
                error!(
                    camera,
                    dropped = n,
                    "RECORDER queue full: camera images are being dropped"
                );
            }
            return Err(SendRejected::Full);
        }
        let mut msg = self.image_pool.try_recv().unwrap_or_default();
        msg.camera = camera;
        msg.capture_ns = capture_ns;
        msg.t = t;
        msg.image.width = image.width;
        msg.image.height = image.height;
        msg.image.data.clear();
        msg.image.data.extend_from_slice(&image.data);
        self.send_image(msg).map(|()| true)
    }

    /// Puts `n` image buffers of `width` x `height` into the pool (call before capture runs;
    /// `n` up to `queue_images` and a few more are useful).
    pub fn prefill_images(&self, n: usize, width: u32, height: u32) {
        for _ in 0..n {
            let msg = Box::new(ImageMsg {
                image: Image::new(width, height),
                ..ImageMsg::default()
            });
            if self.image_pool_tx.try_send(msg).is_err() {
                break;
            }
        }
    }

    /// Images of camera `camera` the queue could not take, since the recorder started.
    pub fn dropped_images(&self, camera: usize) -> u64 {
        self.shared
            .images_dropped
            .get(camera)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Queues `fill`'s frame with, per camera of the episode, the capture time of the image
    /// the loop used at this tick (0 = none): like [`RecorderHandle::record_frame_with`],
    /// allocation-free once the pool is filled.
    pub fn record_frame_with_images(
        &self,
        image_capture_ns: &[u64],
        fill: impl FnOnce(&mut Frame),
    ) -> Result<(), SendRejected> {
        if self.frames_queued() >= self.frame_capacity {
            self.count_drop(true, SendRejected::Full);
            return Err(SendRejected::Full);
        }
        let mut frame = self.pool.try_recv().unwrap_or_default();
        fill(&mut frame);
        self.try_send(RecorderMsg::FrameWithImages(
            frame,
            ImageStamps::new(image_capture_ns),
        ))
    }

    /// Marks that camera `camera` stopped delivering at this tick ([`Event::CameraGap`]).
    pub fn camera_gap(
        &self,
        tick: u64,
        t: f64,
        camera: usize,
        reason: CameraGapReason,
    ) -> Result<(), SendRejected> {
        let camera = u16::try_from(camera).unwrap_or(u16::MAX);
        self.static_event(tick, t, StaticEvent::CameraGap { camera, reason })
    }

    fn count_drop(&self, is_frame: bool, why: SendRejected) {
        let counter = if is_frame {
            &self.shared.frames_dropped
        } else {
            &self.shared.messages_dropped
        };
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        // Rate-limited so a stalled disk cannot turn logging into the loop's bottleneck.
        if n.is_power_of_two() {
            error!(
                dropped = n,
                frames = is_frame,
                "RECORDER {why}: the control loop is dropping data (total {n})"
            );
        }
    }

    /// Opens an episode; its cameras are `meta.cameras` (set `meta.monotonic_start_ns` too,
    /// so images land on the frames' timeline).
    pub fn begin_episode(&self, meta: EpisodeMeta) -> Result<(), SendRejected> {
        let cameras = meta.cameras.len().min(MAX_CAMERAS);
        // Closed while the begin is queued, so no image of the old episode follows it.
        self.shared.cameras_open.store(0, Ordering::Relaxed);
        let res = self.try_send(RecorderMsg::BeginEpisode(Box::new(meta)));
        if res.is_ok() {
            self.shared.cameras_open.store(cameras, Ordering::Relaxed);
        }
        res
    }

    pub fn record_frame(&self, frame: Frame) -> Result<(), SendRejected> {
        self.try_send(RecorderMsg::Frame(Box::new(frame)))
    }

    /// Queues a frame filled in place by `fill`, in a buffer the recorder thread handed back
    /// after writing an earlier frame: once the pool is filled (see
    /// [`RecorderHandle::prefill_frames`]) this allocates nothing. `fill` must set every field.
    pub fn record_frame_with(&self, fill: impl FnOnce(&mut Frame)) -> Result<(), SendRejected> {
        // `try_send` checks this too; checking before a frame is taken from the pool keeps a
        // full queue from throwing pooled frames away.
        if self.frames_queued() >= self.frame_capacity {
            self.count_drop(true, SendRejected::Full);
            return Err(SendRejected::Full);
        }
        // An empty pool means the recorder is behind by more than the pool: allocate rather
        // than drop the frame.
        let mut frame = self.pool.try_recv().unwrap_or_default();
        fill(&mut frame);
        self.try_send(RecorderMsg::Frame(frame))
    }

    /// Puts `n` frames shaped like `template` into the pool (call before the loop runs).
    pub fn prefill_frames(&self, n: usize, template: &Frame) {
        for _ in 0..n {
            if self.pool_tx.try_send(Box::new(template.clone())).is_err() {
                break;
            }
        }
    }

    /// An event made of static parts (see [`StaticEvent`]); never allocates.
    pub fn static_event(&self, tick: u64, t: f64, event: StaticEvent) -> Result<(), SendRejected> {
        self.try_send(RecorderMsg::StaticEvent { tick, t, event })
    }

    pub fn event(&self, tick: u64, t: f64, event: Event) -> Result<(), SendRejected> {
        self.try_send(RecorderMsg::Event(EventRecord { tick, t, event }))
    }

    pub fn diagnostics(&self, record: DiagnosticsRecord) -> Result<(), SendRejected> {
        self.try_send(RecorderMsg::Diagnostics(record))
    }

    pub fn end_episode(&self, outcome: Outcome) -> Result<(), SendRejected> {
        self.end_episode_with(outcome, None)
    }

    /// Like [`RecorderHandle::end_episode`], recording why a failed episode failed.
    pub fn end_episode_with(
        &self,
        outcome: Outcome,
        failure: Option<FailureMode>,
    ) -> Result<(), SendRejected> {
        // Images sent from now on belong to no episode.
        self.shared.cameras_open.store(0, Ordering::Relaxed);
        self.try_send(RecorderMsg::EndEpisode(outcome, failure))
    }

    /// Frames dropped because the queue was full, since the recorder started.
    pub fn dropped_frames(&self) -> u64 {
        self.shared.frames_dropped.load(Ordering::Relaxed)
    }

    /// Frames that reached the recorder but not the disk (write errors, a file that could not
    /// be created) or were refused for their shape, since the recorder started.
    pub fn lost_frames(&self) -> u64 {
        self.shared.frames_lost.load(Ordering::Relaxed)
            + self.shared.frames_rejected.load(Ordering::Relaxed)
    }

    /// Episodes of which nothing readable reached the disk, since the recorder started.
    pub fn failed_episodes(&self) -> u64 {
        self.shared.episodes_failed.load(Ordering::Relaxed)
    }

    /// False once the recorder has hit a write error (reset by the next clean episode).
    pub fn disk_ok(&self) -> bool {
        !self.shared.disk_error.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> RecorderStatus {
        self.shared.status()
    }
}

/// What the recorder reports when an episode is closed.
#[derive(Debug, Clone)]
pub struct EpisodeReport {
    pub path: PathBuf,
    /// The manifest written for it; `None` if even that failed (recovery will redo it).
    pub manifest: Option<Manifest>,
    pub error: Option<String>,
}

/// Owns the recorder thread.
pub struct Recorder {
    handle: RecorderHandle,
    thread: Option<JoinHandle<()>>,
    reports: Receiver<EpisodeReport>,
    recovery: RecoveryReport,
}

impl Recorder {
    /// Run crash recovery (if enabled), then start the recorder thread.
    pub fn spawn(opts: RecorderOptions) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let recovery = if opts.recover_on_start {
            // A broken data root must not stop the daemon: it is reported, and every episode
            // will report it again.
            recover_all(&opts.root).unwrap_or_else(|e| {
                shared.report_error("crash recovery", &e);
                RecoveryReport::default()
            })
        } else {
            RecoveryReport::default()
        };
        let frame_capacity = opts.queue_frames.max(1);
        let image_capacity = opts.queue_images.max(1);
        let (tx, rx) = bounded(frame_capacity + opts.control_reserve.max(2) + image_capacity);
        let (report_tx, reports) = unbounded();
        let (pool_tx, pool) = bounded(frame_capacity);
        // Room for every image in flight plus the ones being filled by capture threads.
        let (image_pool_tx, image_pool) = bounded(image_capacity + MAX_CAMERAS);
        shared.running.store(true, Ordering::Relaxed);
        let worker = Worker {
            opts,
            rx,
            shared: shared.clone(),
            reports: report_tx,
            open: None,
            pool: pool_tx.clone(),
            image_pool: image_pool_tx.clone(),
            jpeg: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || worker.run())
            .map_err(|e| EpisodeError::Thread(e.to_string()))?;
        Ok(Self {
            handle: RecorderHandle {
                tx,
                shared,
                frame_capacity,
                pool,
                pool_tx,
                image_capacity,
                image_pool,
                image_pool_tx,
            },
            thread: Some(thread),
            reports,
            recovery,
        })
    }

    pub fn handle(&self) -> RecorderHandle {
        self.handle.clone()
    }

    pub fn status(&self) -> RecorderStatus {
        self.handle.status()
    }

    /// Reports of closed episodes, in order (unbounded; poll it from the service shell).
    pub fn reports(&self) -> &Receiver<EpisodeReport> {
        &self.reports
    }

    /// What start-up recovery found.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Drain the queue, end an open episode as `Aborted`, and join the thread. This call
    /// blocks (for the queue to drain); it is for the service shell, not the loop.
    pub fn shutdown(mut self) -> RecorderStatus {
        self.stop();
        self.handle.status()
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A blocking send is fine here: we want everything queued before it written.
            let shutdown = Envelope {
                msg: RecorderMsg::Shutdown,
                dropped_before: self.handle.dropped_frames(),
            };
            if self.handle.tx.send(shutdown).is_err() {
                warn!("recorder thread already gone");
            }
            if thread.join().is_err() {
                error!("recorder thread panicked");
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop();
    }
}

struct OpenEpisode {
    /// `None` when the file could not be created: frames are drained and counted as lost.
    writer: Option<EpisodeWriter>,
    /// Camera names, for gap events.
    cameras: Vec<String>,
    path: PathBuf,
    dropped_at_start: u64,
    lost: u64,
    healthy: bool,
}

/// A message and the loop's dropped-frame count when it was sent.
#[derive(Debug)]
struct Envelope {
    msg: RecorderMsg,
    dropped_before: u64,
}

struct Worker {
    opts: RecorderOptions,
    rx: Receiver<Envelope>,
    shared: Arc<Shared>,
    reports: Sender<EpisodeReport>,
    open: Option<OpenEpisode>,
    pool: Sender<Box<Frame>>,
    image_pool: Sender<Box<ImageMsg>>,
    /// JPEG output, reused for every image.
    jpeg: Vec<u8>,
}

impl Worker {
    fn run(mut self) {
        let period = Duration::from_millis(self.opts.flush_ms.max(1));
        let mut next_flush = Instant::now() + period;
        let mut reported_drops = 0u64;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Envelope {
                    msg: RecorderMsg::Shutdown,
                    dropped_before,
                }) => {
                    self.end_episode(Outcome::Aborted, None, dropped_before);
                    break;
                }
                Ok(env) => self.handle(env.msg, env.dropped_before),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Checked after every message too, so a busy queue cannot postpone the flush.
            if Instant::now() >= next_flush {
                self.flush();
                next_flush = Instant::now() + period;
                let dropped = self.shared.frames_dropped.load(Ordering::Relaxed);
                if dropped > reported_drops {
                    error!(
                        new = dropped - reported_drops,
                        total = dropped,
                        "recorder queue overflowed: frames were dropped"
                    );
                    reported_drops = dropped;
                }
            }
        }
        // Channel gone without a shutdown message: count drops up to now.
        let dropped = self.shared.frames_dropped.load(Ordering::Relaxed);
        self.end_episode(Outcome::Aborted, None, dropped);
        self.shared.running.store(false, Ordering::Relaxed);
        debug!("recorder thread stopped");
    }

    fn handle(&mut self, msg: RecorderMsg, dropped_before: u64) {
        match msg {
            RecorderMsg::BeginEpisode(meta) => {
                if self.open.is_some() {
                    warn!("new episode while one is open: ending the open one as aborted");
                    self.end_episode(Outcome::Aborted, None, dropped_before);
                }
                self.begin_episode(&meta, dropped_before);
            }
            RecorderMsg::Frame(frame) => self.frame_msg(frame, &[]),
            RecorderMsg::FrameWithImages(frame, stamps) => self.frame_msg(frame, stamps.as_slice()),
            RecorderMsg::Image(img) => {
                self.shared.images_in_flight.fetch_sub(1, Ordering::Relaxed);
                self.image(&img);
                let _ = self.image_pool.try_send(img);
            }
            RecorderMsg::StaticEvent {
                tick,
                t,
                event: StaticEvent::CameraGap { camera, reason },
            } => {
                let name = self
                    .open
                    .as_ref()
                    .and_then(|o| o.cameras.get(usize::from(camera)))
                    .cloned()
                    .unwrap_or_else(|| format!("#{camera}"));
                let e = EventRecord {
                    tick,
                    t,
                    event: Event::CameraGap {
                        camera: name,
                        reason: reason.as_str().into(),
                    },
                };
                self.with_writer("event", |w| w.write_event(&e))
            }
            RecorderMsg::Event(e) => self.with_writer("event", |w| w.write_event(&e)),

            RecorderMsg::StaticEvent { tick, t, event } => {
                let e = EventRecord {
                    tick,
                    t,
                    event: event.to_event(),
                };
                self.with_writer("event", |w| w.write_event(&e))
            }
            RecorderMsg::Diagnostics(d) => {
                self.with_writer("diagnostics", |w| w.write_diagnostics(&d))
            }
            RecorderMsg::EndEpisode(outcome, failure) => {
                self.end_episode(outcome, failure, dropped_before)
            }
            RecorderMsg::Shutdown => {}
        }
    }

    fn frame_msg(&mut self, mut frame: Box<Frame>, image_capture_ns: &[u64]) {
        self.frame(&frame, image_capture_ns);
        // Back to the loop's pool. A proposal buffer is put back too, so a frame without one
        // followed by one with one does not allocate on the loop.
        if frame.proposal.is_none() {
            frame.proposal = Some(Vec::with_capacity(frame.goal.len()));
        }
        let _ = self.pool.try_send(frame);
    }

    fn image(&mut self, img: &ImageMsg) {
        let Some(open) = self.open.as_mut() else {
            // Sent just before an end was queued: not part of any episode.
            return;
        };
        let lost = |shared: &Shared| shared.images_lost.fetch_add(1, Ordering::Relaxed);
        let Some(w) = open.writer.as_mut().filter(|_| open.healthy) else {
            lost(&self.shared);
            return;
        };
        if let Err(e) = encode_jpeg_into(&img.image, self.opts.jpeg_quality, &mut self.jpeg) {
            let n = lost(&self.shared) + 1;
            if n.is_power_of_two() {
                error!(camera = img.camera, lost = n, "image not recorded: {e}");
            }
            return;
        }
        match w.write_jpeg(img.camera, img.capture_ns, img.t, &self.jpeg) {
            Ok(()) => {
                self.shared.images_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e @ EpisodeError::UnknownCamera { .. }) => {
                let n = lost(&self.shared) + 1;
                if n.is_power_of_two() {
                    error!(lost = n, "image refused: {e}");
                }
            }
            Err(e) => {
                open.healthy = false;
                lost(&self.shared);
                self.shared.recording.store(false, Ordering::Relaxed);
                self.shared.report_error("writing image", &e);
            }
        }
    }

    fn begin_episode(&mut self, meta: &EpisodeMeta, dropped_at_start: u64) {
        let path = layout::episode_path(&self.opts.root, &meta.session_id, meta.episode_index);
        let writer =
            match EpisodeWriter::create_with(&self.opts.root, meta, self.opts.writer.clone()) {
                Ok(w) => {
                    info!(path = %path.display(), "recording episode");
                    Some(w)
                }
                Err(e) => {
                    self.shared.report_error("cannot create episode file", &e);
                    None
                }
            };
        let healthy = writer.is_some();
        self.shared.recording.store(healthy, Ordering::Relaxed);
        self.open = Some(OpenEpisode {
            writer,
            cameras: meta.cameras.iter().map(|c| c.name.clone()).collect(),
            path,
            dropped_at_start,
            lost: 0,
            healthy,
        });
    }

    fn frame(&mut self, frame: &Frame, image_capture_ns: &[u64]) {
        let Some(open) = self.open.as_mut() else {
            self.shared
                .frames_outside_episode
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(w) = open.writer.as_mut().filter(|_| open.healthy) else {
            open.lost += 1;
            self.shared.frames_lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match w.write_frame_with_images(frame, image_capture_ns) {
            Ok(()) => {
                self.shared.frames_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e @ EpisodeError::FrameShape { .. }) => {
                let n = self.shared.frames_rejected.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    error!(rejected = n, "frame refused: {e}");
                }
            }
            Err(e) => {
                open.healthy = false;
                open.lost += 1;
                self.shared.frames_lost.fetch_add(1, Ordering::Relaxed);
                self.shared.recording.store(false, Ordering::Relaxed);
                self.shared.report_error("writing frame", &e);
            }
        }
    }

    fn with_writer(&mut self, what: &str, f: impl FnOnce(&mut EpisodeWriter) -> Result<()>) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let Some(w) = open.writer.as_mut().filter(|_| open.healthy) else {
            return;
        };
        if let Err(e) = f(w) {
            open.healthy = false;
            self.shared.recording.store(false, Ordering::Relaxed);
            self.shared.report_error(&format!("writing {what}"), &e);
        }
    }

    fn flush(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let Some(w) = open.writer.as_mut().filter(|_| open.healthy) else {
            return;
        };
        match w.flush() {
            Ok(()) => {
                self.shared.flushes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                open.healthy = false;
                self.shared.recording.store(false, Ordering::Relaxed);
                self.shared.report_error("flushing episode", &e);
            }
        }
    }

    fn end_episode(&mut self, outcome: Outcome, failure: Option<FailureMode>, dropped_before: u64) {
        let Some(open) = self.open.take() else {
            return;
        };
        self.shared.recording.store(false, Ordering::Relaxed);
        let dropped = dropped_before.saturating_sub(open.dropped_at_start);
        let result = match (open.writer, open.healthy) {
            (Some(w), true) => match w.finish_with(outcome, failure, dropped, open.lost) {
                Ok(m) => Ok(m),
                Err(e) => {
                    self.shared.report_error("finishing episode", &e);
                    // Whatever reached the disk is still recoverable.
                    crate::recovery::recover_episode_with(
                        &open.path,
                        Some(outcome),
                        dropped,
                        open.lost,
                        Some(format!("finishing failed: {e}")),
                    )
                }
            },
            (Some(w), false) => w.abandon(outcome, dropped, open.lost),
            (None, _) => Err(EpisodeError::Io {
                path: open.path.clone(),
                source: std::io::Error::other("the episode file was never created"),
            }),
        };
        let report = match result {
            Ok(m) => {
                if !m.truncated {
                    // A clean episode proves the disk works again.
                    self.shared.disk_error.store(false, Ordering::Relaxed);
                }
                self.shared
                    .episodes_finished
                    .fetch_add(1, Ordering::Relaxed);
                info!(
                    path = %open.path.display(),
                    outcome = %m.outcome,
                    frames = m.frames,
                    interventions = m.intervention_count,
                    truncated = m.truncated,
                    "episode closed"
                );
                EpisodeReport {
                    path: open.path,
                    manifest: Some(m),
                    error: None,
                }
            }
            Err(e) => {
                self.shared.episodes_failed.fetch_add(1, Ordering::Relaxed);
                self.shared.report_error("closing episode", &e);
                EpisodeReport {
                    path: open.path,
                    manifest: None,
                    error: Some(e.to_string()),
                }
            }
        };
        // Nobody listening is fine.
        let _ = self.reports.send(report);
    }
}
