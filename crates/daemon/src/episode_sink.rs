//! The loop's recorder: MCAP episodes through `intervened-episodes`' recorder thread.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use intervened_camera::FrameTap;
use intervened_episodes::{
    new_session_id, CameraGapReason, CameraInfo, EpisodeMeta, Event, Frame, Outcome, Recorder,
    RecorderHandle, RecorderOptions, StaticEvent, FRAME_POOL,
};
use intervened_robot::RobotConfig;
use tracing::{error, info};

use crate::cameras::lockstep_time_ns;
use crate::fault::RecorderFault;
use crate::recording::{EpisodeOutcome, FailureMode, FrameRecord, FrameSink, LoopEvent};

pub struct EpisodeSink {
    recorder: Option<Recorder>,
    handle: RecorderHandle,
    cfg: RobotConfig,
    root: PathBuf,
    session_id: String,
    feature_names: Vec<String>,
    episode_start_tick: u64,
    period: f64,
    episodes: u64,
    lockstep: bool,
    /// The open episode's `monotonic_start_ns` (images up to it came before the episode).
    camera_origin_ns: u64,
}

impl EpisodeSink {
    /// Recovers episodes cut short by an earlier crash, then starts the recorder thread.
    /// `session_id` overrides the generated one; `lockstep` stamps episodes with simulated time
    /// (ticks x period since the daemon started) instead of the wall clock, so the same seed
    /// gives byte-identical files.
    pub fn start(
        cfg: &RobotConfig,
        root: &Path,
        feature_names: Vec<String>,
        session_id: Option<String>,
        lockstep: bool,
    ) -> Result<Self, RecorderFault> {
        let mut opts = RecorderOptions::from_config(&cfg.recording);
        opts.root = root.to_path_buf();
        if lockstep {
            // A lockstep episode takes a fraction of a second of wall time and is reproduced
            // exactly from its seed, so wall-clock flushes buy no safety; they would only make
            // chunk boundaries (and so the file bytes) depend on scheduling. Each episode's file
            // is completed at its end.
            opts.flush_ms = 3_600_000;
        }
        let recorder = Recorder::spawn(opts).map_err(|e| RecorderFault::Start {
            root: root.display().to_string(),
            cause: std::sync::Arc::new(e),
        })?;
        let rec = recorder.recovery();
        let repaired = rec.repaired().count();
        if !rec.recovered.is_empty() || repaired > 0 {
            info!(
                "recovered {} episode(s) cut short by an earlier stop; {repaired} file(s) rewritten as complete MCAP files",
                rec.recovered.len()
            );
        }
        let handle = recorder.handle();
        // Frames shaped for this robot, so the loop's recording allocates nothing.
        let n = cfg.joints.len();
        let template = Frame {
            q: vec![0.0; n],
            qd: vec![0.0; n],
            current: vec![0.0; n],
            goal: vec![0.0; n],
            proposal: Some(vec![0.0; n]),
            pad_axes: vec![0.0; intervened_teleop::names::ALL_AXES.len()],
            task: vec![0.0; feature_names.len()],
            ..Frame::default()
        };
        // In lockstep the loop runs many times faster than real time and the recorder can fall
        // behind by the whole queue before frames drop: pool that many, so a loaded machine
        // still records without allocating on the control thread (about 1 KB a frame).
        let pool = if lockstep {
            cfg.recording.queue_frames.max(FRAME_POOL)
        } else {
            FRAME_POOL
        };
        handle.prefill_frames(pool, &template);
        // Image buffers for the camera taps: after these, recording an image allocates nothing.
        for cam in &cfg.cameras {
            handle.prefill_images(IMAGES_PER_CAMERA, cam.width, cam.height);
        }
        // Session ids are UTC seconds; runs started within one second get a suffix.
        let base = session_id.unwrap_or_else(new_session_id);
        let mut session_id = base.clone();
        let mut n = 2;
        while intervened_episodes::session_dir(root, &session_id).exists() {
            session_id = format!("{base}-{n}");
            n += 1;
        }
        info!(session = %session_id, root = %root.display(), "recording");
        Ok(Self {
            recorder: Some(recorder),
            handle,
            cfg: cfg.clone(),
            root: root.to_path_buf(),
            session_id,
            feature_names,
            episode_start_tick: 0,
            period: cfg.period_s(),
            episodes: 0,
            lockstep,
            camera_origin_ns: 0,
        })
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// What camera `camera` (config index) calls with each frame it captures: the recorder
    /// copies it into a pooled buffer and encodes it on its own thread. On a robot it never
    /// blocks: a full queue drops the image and counts it. In lockstep it waits for room first
    /// (up to [`LOCKSTEP_IMAGE_WAIT`]): simulated time stands still meanwhile, and a lockstep
    /// run outpaces the JPEG encoder whenever the machine is busy.
    pub fn image_tap(&self, camera: usize) -> FrameTap {
        let handle = self.handle.clone();
        let lockstep = self.lockstep;
        Box::new(move |f| {
            if lockstep {
                handle.wait_for_image_room(LOCKSTEP_IMAGE_WAIT);
            }
            // No episode open discards it.
            let _ = handle.record_image(camera, f.timestamp_ns, &f.image);
        })
    }
}

/// The longest a lockstep camera waits for room in the recorder's image queue before it drops
/// the image as a robot's would (the recorder is then stuck, not slow).
const LOCKSTEP_IMAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Pooled image buffers per camera (the recorder's image queue holds 32 in all).
const IMAGES_PER_CAMERA: usize = 8;

/// Fills a pooled frame in place: `clear` + `extend` keep each buffer's allocation.
fn fill_frame(out: &mut Frame, f: &FrameRecord<'_>) {
    fn set(v: &mut Vec<f64>, from: &[f64]) {
        v.clear();
        v.extend_from_slice(from);
    }
    out.tick = f.tick;
    out.t = f.t;
    set(&mut out.q, &f.state.q);
    set(&mut out.qd, &f.state.qd);
    set(&mut out.current, &f.state.current);
    set(&mut out.goal, f.goal);
    out.source = f.source;
    match f.proposal {
        Some(p) => set(out.proposal.get_or_insert_with(Vec::new), p),
        None => out.proposal = None,
    }
    out.doubt = f.doubt;
    set(&mut out.pad_axes, f.pad_axes);
    out.pad_buttons = f.pad_buttons;
    set(&mut out.task, f.task);
}

impl FrameSink for EpisodeSink {
    fn episode_image(&mut self, camera: usize, frame: &intervened_camera::Frame) {
        // Later images came through the camera's tap already.
        if frame.timestamp_ns <= self.camera_origin_ns {
            let _ = self
                .handle
                .record_image(camera, frame.timestamp_ns, &frame.image);
        }
    }

    fn begin_episode(
        &mut self,
        tick: u64,
        index: u64,
        demo: bool,
        policy_version: Option<String>,
        task: &str,
    ) -> Result<(), RecorderFault> {
        self.episode_start_tick = tick;
        let mut meta =
            EpisodeMeta::for_robot(&self.cfg, self.session_id.clone(), index as u32, task);
        meta.task_feature_names = self.feature_names.clone();
        meta.demo = demo;
        meta.policy_version = policy_version;
        if self.lockstep {
            meta.started_at = (tick as f64 * self.period * 1e9).round() as u64;
        }
        if !self.cfg.cameras.is_empty() {
            meta.cameras = self
                .cfg
                .cameras
                .iter()
                .map(|c| CameraInfo::new(&c.name, c.width, c.height, f64::from(c.fps)))
                .collect();
            // Images are logged at started_at + (capture time - this): the frames' timeline.
            self.camera_origin_ns = if self.lockstep {
                lockstep_time_ns(tick, (self.period * 1e9).round() as u64)
            } else {
                intervened_camera::monotonic_now_ns()
            };
            meta.monotonic_start_ns = Some(self.camera_origin_ns);
        }
        self.handle
            .begin_episode(meta)
            .map_err(RecorderFault::refused)
    }

    fn frame(&mut self, f: FrameRecord<'_>) {
        // A full queue drops the frame; the recorder counts it (see `dropped`).
        if f.image_capture_ns.is_empty() {
            let _ = self.handle.record_frame_with(|out| fill_frame(out, &f));
        } else {
            let _ = self
                .handle
                .record_frame_with_images(f.image_capture_ns, |out| fill_frame(out, &f));
        }
    }

    fn event(&mut self, tick: u64, e: LoopEvent) {
        let t = tick.saturating_sub(self.episode_start_tick) as f64 * self.period;
        let ev = match e {
            // The common events go as static parts and are formatted on the recorder thread.
            LoopEvent::Mode(tr) => match tr.reason {
                Cow::Borrowed(reason) => {
                    let event = StaticEvent::ModeChange {
                        from: tr.from.name(),
                        to: tr.to.name(),
                        reason,
                    };
                    let _ = self.handle.static_event(tick, t, event);
                    return;
                }
                Cow::Owned(reason) => Event::ModeChange {
                    from: tr.from.name().into(),
                    to: tr.to.name().into(),
                    reason,
                },
            },
            LoopEvent::Clamp { limit, step } => {
                let event = StaticEvent::SafetyClamp { limit, step };
                let _ = self.handle.static_event(tick, t, event);
                return;
            }
            LoopEvent::Fault(m) => Event::Fault {
                component: "loop".into(),
                message: m.to_string(),
                fatal: false,
            },
            LoopEvent::PolicyLoaded(v) => Event::PolicyLoaded { version: v },
            LoopEvent::CameraGap { camera, stopped } => {
                let reason = if stopped {
                    CameraGapReason::Stopped
                } else {
                    CameraGapReason::Stale
                };
                let _ = self.handle.camera_gap(tick, t, camera, reason);
                return;
            }
            LoopEvent::Note(m) => Event::Note { message: m },
        };
        let _ = self.handle.event(tick, t, ev);
    }

    fn end_episode(&mut self, _tick: u64, outcome: EpisodeOutcome, failure: Option<FailureMode>) {
        let o = match outcome {
            EpisodeOutcome::Success => Outcome::Success,
            EpisodeOutcome::Failure => Outcome::Failure,
            EpisodeOutcome::Discarded => Outcome::Discarded,
            EpisodeOutcome::Aborted => Outcome::Aborted,
        };
        if self.handle.end_episode_with(o, failure).is_err() {
            error!("recorder queue full: the episode end was not queued (recovery will close it)");
        }
        self.episodes += 1;
    }

    /// Frames and camera images the full queue dropped.
    fn dropped(&self) -> u64 {
        let images: u64 = (0..self.cfg.cameras.len())
            .map(|c| self.handle.dropped_images(c))
            .sum();
        self.handle.dropped_frames() + images
    }

    fn lost(&self) -> (u64, u64) {
        (self.handle.lost_frames(), self.handle.failed_episodes())
    }

    fn fault(&self) -> Option<RecorderFault> {
        if self.handle.disk_ok() {
            None
        } else {
            Some(RecorderFault::Disk(
                self.handle
                    .status()
                    .last_error
                    .unwrap_or_else(|| "disk error".into()),
            ))
        }
    }

    fn close(&mut self) {
        if let Some(r) = self.recorder.take() {
            let st = r.shutdown();
            if st.frames_dropped + st.frames_lost + st.frames_rejected + st.episodes_failed > 0 {
                error!(
                    frames = st.frames_written,
                    dropped = st.frames_dropped,
                    lost = st.frames_lost + st.frames_rejected,
                    failed_episodes = st.episodes_failed,
                    "recorder closed with data missing"
                );
            } else {
                info!(frames = st.frames_written, "recorder closed");
            }
        }
        if self.episodes > 0 {
            // The retrain .path unit watches this marker.
            let marker = self.root.join("session-closed");
            if let Err(e) = std::fs::write(&marker, format!("{}\n", self.session_id)) {
                error!("cannot write {}: {e}", marker.display());
            }
        }
    }
}
