//! The small JSON manifest written beside each episode file when the episode ends (or when a
//! cut-short episode is recovered). Listing sessions and reading episodes check a manifest's
//! counts against its MCAP file and prefer the file ([`Manifest::verify_against_file`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EpisodeError, Result};
use crate::layout;
use crate::types::{ControlSource, EpisodeMeta, FailureMode, Outcome};

/// Bumped when the manifest's meaning changes.
pub const MANIFEST_FORMAT: u32 = 1;

/// Per-episode summary: outcome, counts, and where the human stepped in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub session_id: String,
    pub episode_index: u32,
    /// The MCAP file name, relative to the manifest's directory.
    pub file: String,
    pub robot_name: String,
    pub robot_type: String,
    pub task: String,
    pub demo: bool,
    pub policy_version: Option<String>,
    pub fps: f64,
    /// Unix time in nanoseconds.
    pub started_at: u64,
    pub outcome: Outcome,
    /// Why a failed episode failed, when the judge could tell (the simulator always can).
    #[serde(default)]
    pub failure: Option<FailureMode>,
    /// Frames recorded (readable) in the file.
    pub frames: u64,
    /// Episode time of the last frame minus the first (s).
    pub duration_s: f64,
    pub demo_steps: u64,
    pub robot_steps: u64,
    /// Frames under human control during a policy episode.
    pub intervention_steps: u64,
    /// Takeovers: maximal runs of intervention frames.
    pub intervention_count: u64,
    /// Intervention runs as frame-index ranges `[start, end)` (frame index = position in file).
    pub intervention_segments: Vec<[u64; 2]>,
    /// Lengths of the maximal runs of policy-driven frames, in order.
    pub autonomous_runs: Vec<u64>,
    /// The file was cut short (crash, kill, power cut or disk fault): it holds what was
    /// flushed before that, up to its last complete chunk.
    pub truncated: bool,
    /// Written by recovery rather than by the recorder at the episode's end.
    pub recovered: bool,
    /// Frames the control loop could not queue during this episode (recorder queue full).
    pub dropped_frames: u64,
    /// Frames that reached the recorder but could not be written (disk fault).
    pub lost_frames: u64,
    pub first_tick: Option<u64>,
    pub last_tick: Option<u64>,
    /// Why the manifest looks the way it does, when that is not obvious.
    pub note: Option<String>,
}

impl Manifest {
    /// Intervention steps / all steps (0 for an empty episode).
    pub fn intervention_rate(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            self.intervention_steps as f64 / self.frames as f64
        }
    }

    /// Checks this manifest's frame counts against `from_file`, the manifest implied by the
    /// frames actually in the episode file, and where they disagree takes the file's counts
    /// (the file is what training and export read). Returns a note saying the manifest was
    /// stale, which is also prepended to [`Manifest::note`]; `None` when they agree.
    pub fn verify_against_file(&mut self, from_file: &Manifest) -> Option<String> {
        let counts = |m: &Manifest| {
            (
                m.frames,
                m.demo_steps,
                m.robot_steps,
                m.intervention_steps,
                m.intervention_count,
            )
        };
        if counts(self) == counts(from_file) {
            return None;
        }
        let note = format!(
            "stale manifest: it says {} frames ({} intervention steps), the episode file holds {} ({}); counts are from the file",
            self.frames, self.intervention_steps, from_file.frames, from_file.intervention_steps
        );
        self.frames = from_file.frames;
        self.duration_s = from_file.duration_s;
        self.demo_steps = from_file.demo_steps;
        self.robot_steps = from_file.robot_steps;
        self.intervention_steps = from_file.intervention_steps;
        self.intervention_count = from_file.intervention_count;
        self.intervention_segments = from_file.intervention_segments.clone();
        self.autonomous_runs = from_file.autonomous_runs.clone();
        self.first_tick = from_file.first_tick;
        self.last_tick = from_file.last_tick;
        self.note = Some(match self.note.take() {
            Some(old) => format!("{note}; {old}"),
            None => note.clone(),
        });
        Some(note)
    }

    /// Read a manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| EpisodeError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| EpisodeError::json(path, e))
    }

    /// Write atomically (temp file, fsync, rename, fsync dir).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| EpisodeError::json(path, e))?;
        bytes.push(b'\n');
        layout::write_atomic(path, &bytes)
    }

    /// The manifest of a file so damaged that not even its header could be read: it is still
    /// listed, never silently dropped.
    pub fn unreadable(session_id: &str, episode_index: u32, file: &str, note: String) -> Self {
        Self {
            format: MANIFEST_FORMAT,
            session_id: session_id.to_string(),
            episode_index,
            file: file.to_string(),
            robot_name: String::new(),
            robot_type: String::new(),
            task: String::new(),
            demo: false,
            policy_version: None,
            fps: 0.0,
            started_at: 0,
            outcome: Outcome::Truncated,
            failure: None,
            frames: 0,
            duration_s: 0.0,
            demo_steps: 0,
            robot_steps: 0,
            intervention_steps: 0,
            intervention_count: 0,
            intervention_segments: Vec::new(),
            autonomous_runs: Vec::new(),
            truncated: true,
            recovered: true,
            dropped_frames: 0,
            lost_frames: 0,
            first_tick: None,
            last_tick: None,
            note: Some(note),
        }
    }
}

/// Builds a manifest one frame at a time: the recorder feeds it as it writes, recovery feeds
/// it what it reads back, so both produce the same numbers from the same frames.
#[derive(Debug, Clone, Default)]
pub struct ManifestBuilder {
    frames: u64,
    demo_steps: u64,
    robot_steps: u64,
    intervention_steps: u64,
    segments: Vec<[u64; 2]>,
    open_segment: Option<u64>,
    runs: Vec<u64>,
    open_run: u64,
    first_t: Option<f64>,
    last_t: Option<f64>,
    first_tick: Option<u64>,
    last_tick: Option<u64>,
}

impl ManifestBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Account for the next frame.
    pub fn push(&mut self, tick: u64, t: f64, source: ControlSource) {
        let idx = self.frames;
        self.frames += 1;
        self.first_tick.get_or_insert(tick);
        self.last_tick = Some(tick);
        if t.is_finite() {
            self.first_t.get_or_insert(t);
            self.last_t = Some(t);
        }
        match source {
            ControlSource::Intervention => {
                self.intervention_steps += 1;
                self.close_run();
                self.open_segment.get_or_insert(idx);
            }
            ControlSource::Robot => {
                self.robot_steps += 1;
                self.close_segment(idx);
                self.open_run += 1;
            }
            ControlSource::Demo => {
                self.demo_steps += 1;
                self.close_segment(idx);
                self.close_run();
            }
        }
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    fn close_segment(&mut self, end: u64) {
        if let Some(start) = self.open_segment.take() {
            self.segments.push([start, end]);
        }
    }

    fn close_run(&mut self) {
        if self.open_run > 0 {
            self.runs.push(self.open_run);
            self.open_run = 0;
        }
    }

    /// The manifest for `meta`'s episode with everything pushed so far.
    pub fn build(&self, meta: &EpisodeMeta, outcome: Outcome, truncated: bool) -> Manifest {
        let mut b = self.clone();
        b.close_segment(b.frames);
        b.close_run();
        Manifest {
            format: MANIFEST_FORMAT,
            session_id: meta.session_id.clone(),
            episode_index: meta.episode_index,
            file: layout::episode_file_name(meta.episode_index),
            robot_name: meta.robot_name.clone(),
            robot_type: meta.robot_type.clone(),
            task: meta.task.clone(),
            demo: meta.demo,
            policy_version: meta.policy_version.clone(),
            fps: meta.fps,
            started_at: meta.started_at,
            outcome,
            failure: None,
            frames: b.frames,
            duration_s: match (b.first_t, b.last_t) {
                (Some(a), Some(z)) => (z - a).max(0.0),
                _ => 0.0,
            },
            demo_steps: b.demo_steps,
            robot_steps: b.robot_steps,
            intervention_steps: b.intervention_steps,
            intervention_count: b.segments.len() as u64,
            intervention_segments: b.segments,
            autonomous_runs: b.runs,
            truncated,
            recovered: false,
            dropped_frames: 0,
            lost_frames: 0,
            first_tick: b.first_tick,
            last_tick: b.last_tick,
            note: None,
        }
    }
}
