//! The camera port and the capture thread.
//!
//! A [`Camera`] blocks in [`Camera::capture`] until the next image; it is only ever called on
//! the camera's own OS thread ([`CaptureThread`]). That thread writes each image in place into
//! one of three preallocated frame slots of a triple buffer (`triple_buffer` crate) and
//! publishes it. The control loop holds the [`FrameReader`] and calls [`FrameReader::latest`]
//! each tick: a few atomic operations, no lock, no allocation, no system call but one
//! `clock_gettime` (or none with [`FrameReader::latest_at`]), and it never waits for the camera.
//!
//! # Faults
//! - The camera returns an error (device unplugged, timeout, repeated decode failures) or
//!   panics: the thread ends, and from then on the reader sees [`Latest::Stopped`] (with the
//!   last frame, if any, for logging). [`FrameReader::stop_reason`] gives the error.
//! - The camera keeps running but frames stop coming or come late (a stalled USB camera, a
//!   slow renderer): the reader sees [`Latest::Stale`] once the latest frame is older than the
//!   configured `max_age`, and [`Latest::Fresh`] again when new frames arrive.
//! - No frame yet: [`Latest::Waiting`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, warn};

use crate::error::CameraError;
use crate::image::{monotonic_now_ns, Frame, Image};

/// A source of images: a V4L2 device, the simulated camera, a test double.
pub trait Camera: Send {
    /// The configured camera name (`observation.images.<name>`).
    fn name(&self) -> &str;
    /// `(width, height)` of every image [`capture`](Camera::capture) writes.
    fn size(&self) -> (u32, u32);
    /// Nominal frames per second.
    fn fps(&self) -> u32;
    /// Blocks until the next image, writes it into `image` (which the caller has sized to
    /// [`size`](Camera::size); implementations write in place and should not reallocate) and
    /// returns its capture time in `CLOCK_MONOTONIC` nanoseconds. Only the capture thread calls
    /// this. An error ends the capture thread.
    fn capture(&mut self, image: &mut Image) -> Result<u64, CameraError>;
}

impl<C: Camera + ?Sized> Camera for Box<C> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn size(&self) -> (u32, u32) {
        (**self).size()
    }
    fn fps(&self) -> u32 {
        (**self).fps()
    }
    fn capture(&mut self, image: &mut Image) -> Result<u64, CameraError> {
        (**self).capture(image)
    }
}

const RUNNING: u8 = 0;
const STOPPED: u8 = 1;

struct Shared {
    state: AtomicU8,
    stop: AtomicBool,
    published: AtomicU64,
    /// Written once by the capture thread, before `state` becomes `STOPPED`.
    reason: Mutex<Option<CameraError>>,
}

impl Shared {
    fn running() -> Arc<Self> {
        Arc::new(Shared {
            state: AtomicU8::new(RUNNING),
            stop: AtomicBool::new(false),
            published: AtomicU64::new(0),
            reason: Mutex::new(None),
        })
    }
}

/// What [`FrameReader::latest`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latest<'a> {
    /// The newest frame, at most `max_age` old.
    Fresh { frame: &'a Frame, age_ns: u64 },
    /// The newest frame is older than `max_age`: the camera runs but frames are late.
    Stale { frame: &'a Frame, age_ns: u64 },
    /// The camera runs but has not delivered a frame yet.
    Waiting,
    /// The capture thread has ended (an error, a panic, or a requested stop); `last` is the
    /// last frame it published, if any. See [`FrameReader::stop_reason`].
    Stopped { last: Option<&'a Frame> },
}

impl<'a> Latest<'a> {
    /// The frame, if it is fresh.
    pub fn fresh(&self) -> Option<&'a Frame> {
        match *self {
            Latest::Fresh { frame, .. } => Some(frame),
            _ => None,
        }
    }

    /// The newest frame whatever its age or the camera's state.
    pub fn frame(&self) -> Option<&'a Frame> {
        match *self {
            Latest::Fresh { frame, .. } | Latest::Stale { frame, .. } => Some(frame),
            Latest::Stopped { last } => last,
            Latest::Waiting => None,
        }
    }

    /// Age of the newest frame while the camera runs.
    pub fn age_ns(&self) -> Option<u64> {
        match *self {
            Latest::Fresh { age_ns, .. } | Latest::Stale { age_ns, .. } => Some(age_ns),
            _ => None,
        }
    }
}

/// The reading end, for the control loop. `Send`, not `Clone`: one reader per camera.
pub struct FrameReader {
    name: String,
    output: triple_buffer::Output<Frame>,
    shared: Arc<Shared>,
    max_age_ns: u64,
    have_frame: bool,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("name", &self.name)
            .field("max_age_ns", &self.max_age_ns)
            .field("have_frame", &self.have_frame)
            .finish()
    }
}

impl FrameReader {
    fn new(
        name: &str,
        output: triple_buffer::Output<Frame>,
        shared: Arc<Shared>,
        max_age: Duration,
    ) -> Self {
        FrameReader {
            name: name.to_string(),
            output,
            shared,
            max_age_ns: max_age.as_nanos().min(u64::MAX as u128) as u64,
            have_frame: false,
        }
    }

    /// The newest frame and its age now. Never blocks, never allocates.
    pub fn latest(&mut self) -> Latest<'_> {
        self.latest_at(monotonic_now_ns())
    }

    /// The newest frame and its age at `now_ns` (`CLOCK_MONOTONIC` nanoseconds; the loop may
    /// pass the time it read once for the whole tick). Never blocks, never allocates.
    pub fn latest_at(&mut self, now_ns: u64) -> Latest<'_> {
        // Read the state before taking the newest frame, so that a frame published just before
        // the thread stopped is still seen as that last frame.
        let stopped = self.shared.state.load(Ordering::Acquire) == STOPPED;
        if self.output.update() {
            self.have_frame = true;
        }
        let frame = self.output.output_buffer();
        if stopped {
            return Latest::Stopped {
                last: self.have_frame.then_some(frame),
            };
        }
        if !self.have_frame {
            return Latest::Waiting;
        }
        let age_ns = now_ns.saturating_sub(frame.timestamp_ns);
        if age_ns > self.max_age_ns {
            Latest::Stale { frame, age_ns }
        } else {
            Latest::Fresh { frame, age_ns }
        }
    }

    /// The frame the last [`latest_at`](Self::latest_at) saw, without looking for a newer one
    /// (so a tick's policy input and its record name the same image). None before any frame.
    pub fn current(&self) -> Option<&Frame> {
        self.have_frame.then(|| self.output.output_buffer())
    }

    /// Whether the capture thread has ended.
    pub fn is_stopped(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) == STOPPED
    }

    /// Why the capture thread ended: `None` while it runs or when it was asked to stop.
    /// For the fault path (it clones the error); it never blocks (`try_lock`).
    pub fn stop_reason(&self) -> Option<CameraError> {
        if !self.is_stopped() {
            return None;
        }
        self.shared.reason.try_lock().ok().and_then(|r| r.clone())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn max_age(&self) -> Duration {
        Duration::from_nanos(self.max_age_ns)
    }
}

/// A camera running on its own OS thread. Dropping it stops the thread (after the capture in
/// progress returns: at most a frame period, or the camera's timeout).
pub struct CaptureThread {
    name: String,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CaptureThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureThread")
            .field("name", &self.name)
            .field("running", &self.is_running())
            .finish()
    }
}

/// Marks the thread stopped however it ends, a panic included.
struct StopGuard {
    shared: Arc<Shared>,
    device: String,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(mut r) = self.shared.reason.lock() {
                r.get_or_insert(CameraError::Panicked {
                    device: self.device.clone(),
                    message: "see the panic message above".into(),
                });
            }
        }
        self.shared.state.store(STOPPED, Ordering::Release);
    }
}

/// Called on the capture thread with every frame just before it is published (the recorder's
/// copy: it must not block, since the loop waits for the frame meanwhile).
pub type FrameTap = Box<dyn FnMut(&Frame) + Send>;

impl CaptureThread {
    /// Starts `camera` on a new thread named `camera-<name>`. Frames older than `max_age` read
    /// as [`Latest::Stale`]. The three frame slots are allocated here, once.
    pub fn spawn<C: Camera + 'static>(
        camera: C,
        max_age: Duration,
    ) -> Result<(CaptureThread, FrameReader), CameraError> {
        Self::spawn_tapped(camera, max_age, None)
    }

    /// Like [`spawn`](Self::spawn), handing every frame to `tap` as well.
    pub fn spawn_tapped<C: Camera + 'static>(
        mut camera: C,
        max_age: Duration,
        mut tap: Option<FrameTap>,
    ) -> Result<(CaptureThread, FrameReader), CameraError> {
        let name = camera.name().to_string();
        let (w, h) = camera.size();
        let initial = Frame {
            image: Image::new(w, h),
            timestamp_ns: 0,
            sequence: 0,
        };
        let (mut input, output) = triple_buffer::triple_buffer(&initial);
        let shared = Shared::running();
        let guard = StopGuard {
            shared: shared.clone(),
            device: name.clone(),
        };
        let thread_shared = shared.clone();
        let thread_name = name.clone();
        let handle = std::thread::Builder::new()
            .name(format!("camera-{name}"))
            .spawn(move || {
                let _guard = guard;
                let shared = thread_shared;
                let mut sequence = 0u64;
                let reason = loop {
                    if shared.stop.load(Ordering::Acquire) {
                        break None;
                    }
                    let slot = input.input_buffer_mut();
                    match camera.capture(&mut slot.image) {
                        Ok(t) => {
                            if (slot.image.width, slot.image.height) != (w, h) {
                                break Some(CameraError::BadSize {
                                    device: thread_name.clone(),
                                    what: "captured image",
                                    width: slot.image.width,
                                    height: slot.image.height,
                                    problem: format!("the camera announced {w}x{h}"),
                                });
                            }
                            slot.timestamp_ns = t;
                            slot.sequence = sequence;
                            sequence += 1;
                            if let Some(tap) = tap.as_mut() {
                                tap(slot);
                            }
                            input.publish();
                            shared.published.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            warn!(camera = %thread_name, error = %e, "camera stopped");
                            break Some(e);
                        }
                    }
                };
                if reason.is_none() {
                    debug!(camera = %thread_name, frames = sequence, "camera stopped on request");
                }
                if let Ok(mut r) = shared.reason.lock() {
                    *r = reason;
                };
            })
            .map_err(|e| CameraError::Spawn {
                device: name.clone(),
                message: e.to_string(),
            })?;
        let reader = FrameReader::new(&name, output, shared.clone(), max_age);
        Ok((
            CaptureThread {
                name,
                shared,
                handle: Some(handle),
            },
            reader,
        ))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the thread still runs.
    pub fn is_running(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) == RUNNING
    }

    /// Frames published so far.
    pub fn frames(&self) -> u64 {
        self.shared.published.load(Ordering::Relaxed)
    }

    /// Asks the thread to stop after the capture in progress; does not wait.
    pub fn request_stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
    }

    /// Stops the thread and waits for it. Returns the error that had already ended it, if any.
    pub fn stop(mut self) -> Option<CameraError> {
        self.request_stop();
        self.join();
        self.shared.reason.lock().ok().and_then(|r| r.clone())
    }

    fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                debug!(camera = %self.name, "capture thread had panicked");
            }
        }
    }
}

impl Drop for CaptureThread {
    fn drop(&mut self) {
        self.request_stop();
        self.join();
    }
}

/// The writing end of a frame channel that is not a thread: whoever produces frames on its own
/// schedule publishes them. The lockstep simulator renders each frame on the control thread
/// between ticks, with simulated timestamps, so that a run repeats exactly.
pub struct FramePublisher {
    input: triple_buffer::Input<Frame>,
    shared: Arc<Shared>,
    sequence: u64,
    tap: Option<FrameTap>,
}

impl std::fmt::Debug for FramePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePublisher")
            .field("sequence", &self.sequence)
            .finish()
    }
}

/// A frame channel for images of `width` x `height`: the three slots are allocated here, once.
/// The reader sees [`Latest::Stopped`] once the publisher is dropped. `tap` sees every frame
/// before it is published, as with [`CaptureThread::spawn_tapped`].
pub fn frame_channel(
    name: &str,
    width: u32,
    height: u32,
    max_age: Duration,
    tap: Option<FrameTap>,
) -> (FramePublisher, FrameReader) {
    let initial = Frame {
        image: Image::new(width, height),
        timestamp_ns: 0,
        sequence: 0,
    };
    let (input, output) = triple_buffer::triple_buffer(&initial);
    let shared = Shared::running();
    let reader = FrameReader::new(name, output, shared.clone(), max_age);
    (
        FramePublisher {
            input,
            shared,
            sequence: 0,
            tap,
        },
        reader,
    )
}

impl FramePublisher {
    /// Fills a free slot in place (its image already has the channel's size) and publishes it
    /// with `timestamp_ns`. Allocation-free when `fill` is.
    pub fn publish_with<E>(
        &mut self,
        timestamp_ns: u64,
        fill: impl FnOnce(&mut Image) -> Result<(), E>,
    ) -> Result<(), E> {
        let slot = self.input.input_buffer_mut();
        fill(&mut slot.image)?;
        slot.timestamp_ns = timestamp_ns;
        slot.sequence = self.sequence;
        self.sequence += 1;
        if let Some(tap) = self.tap.as_mut() {
            tap(slot);
        }
        self.input.publish();
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Frames published so far.
    pub fn frames(&self) -> u64 {
        self.sequence
    }
}

impl Drop for FramePublisher {
    fn drop(&mut self) {
        self.shared.state.store(STOPPED, Ordering::Release);
    }
}
