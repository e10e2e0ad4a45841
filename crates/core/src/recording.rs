//! What the loop hands the recorder. The loop only ever calls non-blocking methods here; the
//! recorder thread does the disk work.

use serde::{Deserialize, Serialize};

use crate::arbiter::Transition;
use crate::fault::{Fault, RecorderFault};
use crate::hardware::ArmState;

/// Why a failed episode failed; the recorded vocabulary, shared with the episodes crate.
pub use intervened_episodes::FailureMode;

/// Who produced the goal of a frame: the recorded vocabulary, shared with the episodes crate.
pub use intervened_episodes::ControlSource;

/// How the loop ended an episode. Narrower than the recorded `Outcome`, which adds
/// `Truncated` (a file cut by a crash): the loop can never end an episode that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeOutcome {
    Success,
    Failure,
    Discarded,
    Aborted,
}

/// One frame, borrowed from the loop's buffers.
pub struct FrameRecord<'a> {
    pub tick: u64,
    pub t: f64,
    pub state: &'a ArmState,
    pub goal: &'a [f64],
    pub source: ControlSource,
    pub proposal: Option<&'a [f64]>,
    pub doubt: Option<f64>,
    pub pad_axes: &'a [f64],
    pub pad_buttons: u32,
    pub task: &'a [f64],
    /// Capture time (ns) of the fresh image each camera showed this tick, config order; 0 for
    /// none. Training and export align images to ticks by it.
    pub image_capture_ns: &'a [u64],
}

#[derive(Debug, Clone)]
pub enum LoopEvent {
    Mode(Transition),
    Fault(Fault),
    Clamp {
        limit: u32,
        step: u32,
    },
    PolicyLoaded(String),
    Note(String),
    /// A camera (config index) stopped delivering fresh frames: stale, or its capture ended.
    CameraGap {
        camera: usize,
        stopped: bool,
    },
}

/// The recorder as the loop sees it. Every method returns at once.
pub trait FrameSink: Send {
    /// A camera's image from before the episode began that the episode's first frame uses
    /// (the cameras' own taps only record images while an episode is open).
    fn episode_image(&mut self, _camera: usize, _frame: &intervened_camera::Frame) {}
    /// Opens episode `index`, starting at `tick` (event times are measured from it).
    fn begin_episode(
        &mut self,
        tick: u64,
        index: u64,
        demo: bool,
        policy_version: Option<String>,
        task: &str,
    ) -> Result<(), RecorderFault>;
    fn frame(&mut self, f: FrameRecord<'_>);
    fn event(&mut self, tick: u64, e: LoopEvent);
    fn end_episode(&mut self, tick: u64, outcome: EpisodeOutcome, failure: Option<FailureMode>);
    /// Frames dropped because the recorder fell behind (queue full).
    fn dropped(&self) -> u64;
    /// Frames that reached the recorder but not the disk, and episodes of which nothing
    /// readable reached it: `(frames, episodes)`.
    fn lost(&self) -> (u64, u64) {
        (0, 0)
    }
    /// A recording fault to show in status, if any.
    fn fault(&self) -> Option<RecorderFault>;
    /// Flushes and closes; called once at shutdown (may wait for the recorder thread).
    fn close(&mut self);
}

/// A sink that records nothing (benchmarks of the bare loop, `--no-record`).
pub struct NullSink;

impl FrameSink for NullSink {
    fn begin_episode(
        &mut self,
        _: u64,
        _: u64,
        _: bool,
        _: Option<String>,
        _: &str,
    ) -> Result<(), RecorderFault> {
        Ok(())
    }
    fn frame(&mut self, _: FrameRecord<'_>) {}
    fn event(&mut self, _: u64, _: LoopEvent) {}
    fn end_episode(&mut self, _: u64, _: EpisodeOutcome, _: Option<FailureMode>) {}
    fn dropped(&self) -> u64 {
        0
    }
    fn fault(&self) -> Option<RecorderFault> {
        None
    }
    fn close(&mut self) {}
}
