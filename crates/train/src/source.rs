//! The adapter from recorded episodes (`intervened-episodes`) to the job's plain types.
//!
//! Observation = measured joint positions (rad, recording order) then task features; action
//! target = the goal actually written at that tick; label = Sirius label derived at read time.

use std::path::Path;

use intervened_episodes::{layout, read_episode, types::Outcome, Episode};
use tracing::{debug, warn};

use crate::dataset::EpisodeData;
use crate::error::TrainError;
use crate::types::{EpisodeSet, Exclusion, LoadedEpisode};

/// Reads every episode of every session under `root` (DAgger: all rounds). Files that cannot
/// be read are listed in `unreadable`, not fatal: one damaged file must not block a retrain.
pub fn load_episodes(root: &Path, pre_window: usize) -> Result<EpisodeSet, TrainError> {
    let err = |e: intervened_episodes::EpisodeError| TrainError::Episodes {
        dir: root.to_path_buf(),
        message: e.to_string(),
    };
    let mut set = EpisodeSet::default();
    for session in layout::session_ids(root).map_err(err)? {
        let dir = layout::session_dir(root, &session);
        for (_, path) in layout::episode_files(&dir).map_err(err)? {
            let id = episode_id(&session, &path);
            match read_episode(&path) {
                Ok(ep) => {
                    let content_sha256 = intervened_policy::sha256_file(&path).map_err(|e| {
                        TrainError::Episodes {
                            dir: root.to_path_buf(),
                            message: e.to_string(),
                        }
                    })?;
                    set.episodes
                        .push(convert(ep, id, pre_window, content_sha256));
                }
                Err(e) => {
                    warn!(episode = %id, error = %e, "unreadable episode skipped");
                    set.unreadable.push(Exclusion {
                        episode: id,
                        reason: format!("unreadable: {e}"),
                    });
                }
            }
        }
    }
    debug!(root = %root.display(), episodes = set.episodes.len(), "episodes loaded");
    Ok(set)
}

fn episode_id(session: &str, path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{session}/{file}")
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Converts one read episode.
pub fn convert(
    ep: Episode,
    id: String,
    pre_window: usize,
    content_sha256: String,
) -> LoadedEpisode {
    let labels = ep.labels(pre_window);
    let obs = ep
        .frames
        .iter()
        .map(|f| {
            let mut o = to_f32(&f.q);
            o.extend(f.task.iter().map(|&x| x as f32));
            o
        })
        .collect();
    let goals = ep.frames.iter().map(|f| to_f32(&f.goal)).collect();
    LoadedEpisode {
        path: ep.path.clone(),
        session: ep.meta.session_id.clone(),
        robot_type: ep.meta.robot_type.clone(),
        joint_names: ep.meta.joint_names.clone(),
        task_feature_names: ep.meta.task_feature_names.clone(),
        fps: ep.meta.fps,
        policy_version: ep.meta.policy_version.clone(),
        truncated: ep.truncated,
        discarded: ep.manifest.outcome == Outcome::Discarded,
        content_sha256,
        data: EpisodeData {
            id,
            round: ep.meta.session_id,
            obs,
            goals,
            labels,
            // The episodes reader does not expose recorded images yet: state-only data.
            cameras: Vec::new(),
        },
    }
}
