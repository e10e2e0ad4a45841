//! The job's plain types, shared by the loader (`source`), the job (`retrain`) and the plot:
//! a leaf, so none of those depend on each other for them.

use std::path::PathBuf;

use serde::Serialize;

use crate::dataset::{EpisodeData, LabelCounts};

/// One episode as loaded from disk (or built by a caller), with what the job checks.
#[derive(Debug, Clone)]
pub struct LoadedEpisode {
    pub path: PathBuf,
    pub session: String,
    pub robot_type: String,
    pub joint_names: Vec<String>,
    pub task_feature_names: Vec<String>,
    pub fps: f64,
    pub policy_version: Option<String>,
    pub truncated: bool,
    /// The recorder marked it discarded (operator pressed discard).
    pub discarded: bool,
    /// Hex sha256 of the episode file: the data hash is built from these.
    pub content_sha256: String,
    pub data: EpisodeData,
}

impl LoadedEpisode {
    /// Model input names: `<joint>.pos` in order, then the task features (the policy
    /// crate's convention, see `PolicyExpectations::for_robot`).
    pub fn observation_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .joint_names
            .iter()
            .map(|j| format!("{j}.pos"))
            .collect();
        v.extend(self.task_feature_names.iter().cloned());
        v
    }
}

/// Everything found under a data root: readable episodes, and files that could not be read.
#[derive(Debug, Clone, Default)]
pub struct EpisodeSet {
    pub episodes: Vec<LoadedEpisode>,
    pub unreadable: Vec<Exclusion>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exclusion {
    pub episode: String,
    pub reason: String,
}

/// Metrics of one DAgger round (a session), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundMetrics {
    pub round: String,
    pub policy_versions: Vec<String>,
    pub episodes: usize,
    pub frames: LabelCounts,
    pub takeovers: usize,
    /// Intervention frames / (robot + pre-intervention + intervention frames); None for a
    /// round without policy-driven episodes.
    pub intervention_rate: Option<f64>,
}
