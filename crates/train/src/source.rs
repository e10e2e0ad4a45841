//! The adapter from recorded episodes (`intervened-episodes`) to the job's plain types.
//!
//! Observation = measured joint positions (rad, recording order) then task features; action
//! target = the goal actually written at that tick; label = Sirius label derived at read time.

use std::path::Path;

use intervened_episodes::{layout, read_episode, types::Outcome, Episode};
use tracing::{debug, warn};

use intervened_camera::{decode_jpeg, Image};

use crate::dataset::{CameraFrames, EpisodeData};
use crate::error::TrainError;
use crate::types::{EpisodeSet, Exclusion, LoadedEpisode};

/// Reads every episode of every session under `root` (DAgger: all rounds). Files that cannot
/// be read are listed in `unreadable`, not fatal: one damaged file must not block a retrain.
/// The images of `cameras` are decoded (for an image policy); other cameras' are left alone.
pub fn load_episodes(
    root: &Path,
    pre_window: usize,
    cameras: &[String],
) -> Result<EpisodeSet, TrainError> {
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
                    match convert(ep, id.clone(), pre_window, content_sha256, cameras) {
                        Ok(loaded) => set.episodes.push(loaded),
                        Err(why) => {
                            warn!(episode = %id, error = %why, "episode with unusable images skipped");
                            set.unreadable.push(Exclusion {
                                episode: id,
                                reason: why,
                            });
                        }
                    }
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

/// Converts one read episode, decoding the images of `cameras` that it has (a camera it lacks
/// is left out here; the dataset names the episode when it needs it).
pub fn convert(
    ep: Episode,
    id: String,
    pre_window: usize,
    content_sha256: String,
    cameras: &[String],
) -> Result<LoadedEpisode, String> {
    let frames = cameras
        .iter()
        .filter_map(|name| ep.meta.cameras.iter().position(|c| &c.name == name))
        .map(|c| camera_frames(&ep, c))
        .collect::<Result<Vec<_>, String>>()?;
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
    Ok(LoadedEpisode {
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
            cameras: frames,
        },
    })
}

/// Camera `c`'s image for every frame: the one whose capture time the frame carries (the image
/// its policy step saw); for a frame that saw none (a camera gap), the newest earlier image.
fn camera_frames(ep: &Episode, c: usize) -> Result<CameraFrames, String> {
    let info = &ep.meta.cameras[c];
    let recorded = ep
        .images
        .get(c)
        .map(|ci| ci.images.as_slice())
        .unwrap_or_default();
    let mut decoded: Vec<Option<Vec<u8>>> = vec![None; recorded.len()];
    let mut img = Image::new(info.width, info.height);
    let mut frames = Vec::with_capacity(ep.frames.len());
    let mut last: Option<usize> = None;
    for (i, f) in ep.frames.iter().enumerate() {
        let stamp = ep
            .image_capture_ns
            .get(i)
            .and_then(|s| s.get(c))
            .copied()
            .unwrap_or(0);
        let found = (stamp != 0)
            .then(|| recorded.iter().position(|r| r.capture_ns == stamp))
            .flatten();
        // Without a stamp: the newest image logged at or before the frame.
        let k = found.or(last).or_else(|| {
            let t = ep.meta.started_at + (f.t * 1e9) as u64;
            recorded.iter().rposition(|r| r.log_time <= t)
        });
        let Some(k) = k else {
            return Err(format!(
                "camera {}: frame {i} has no image at or before it ({} recorded)",
                info.name,
                recorded.len()
            ));
        };
        last = Some(k);
        if decoded[k].is_none() {
            decode_jpeg(&recorded[k].jpeg, &mut img)
                .map_err(|e| format!("camera {}: image {k} does not decode: {e}", info.name))?;
            if (img.width, img.height) != (info.width, info.height) {
                return Err(format!(
                    "camera {}: image {k} is {}x{}, the episode says {}x{}",
                    info.name, img.width, img.height, info.width, info.height
                ));
            }
            decoded[k] = Some(img.data.clone());
        }
        frames.push(decoded[k].clone().unwrap_or_default());
    }
    Ok(CameraFrames {
        name: info.name.clone(),
        width: info.width,
        height: info.height,
        frames,
    })
}
