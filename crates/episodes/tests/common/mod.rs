//! Shared test fixtures: a small arm and deterministic frames.
#![allow(dead_code)]

use intervened_episodes::{ControlSource, EpisodeMeta, Frame};

pub const JOINTS: [&str; 3] = ["shoulder_pan", "elbow_flex", "gripper"];

pub fn meta(session: &str, idx: u32) -> EpisodeMeta {
    EpisodeMeta {
        session_id: session.to_string(),
        episode_index: idx,
        robot_name: "test-arm".into(),
        robot_type: "koch_v1.1".into(),
        joint_names: JOINTS.iter().map(|s| s.to_string()).collect(),
        task_feature_names: vec!["block.x".into(), "block.y".into()],
        fps: 50.0,
        policy_version: Some("v3".into()),
        task: "pick up the block".into(),
        demo: false,
        started_at: 1_700_000_000_000_000_000,
    }
}

/// A frame whose every value is derived from `i`, so a read-back can be checked exactly.
pub fn frame(i: u64, source: ControlSource) -> Frame {
    let x = i as f64;
    Frame {
        tick: 1000 + i,
        t: x / 50.0,
        q: vec![x * 0.01, -x * 0.02, 0.5],
        qd: vec![0.1, 0.2, 0.3],
        current: vec![10.0 + x, 20.0, 30.0],
        goal: vec![x * 0.01 + 0.001, -x * 0.02, 0.4],
        source,
        proposal: if i % 4 == 3 {
            None
        } else {
            Some(vec![x, x + 1.0, x + 2.0])
        },
        doubt: if i.is_multiple_of(2) {
            Some(x / 100.0)
        } else {
            None
        },
        pad_axes: vec![0.0, (x / 100.0).min(1.0)],
        pad_buttons: (i % 8) as u32,
        task: vec![0.2 + x * 1e-3, -0.1],
    }
}

/// The control-source pattern used across tests: robot, takeover, robot, takeover, robot.
pub fn source_at(i: u64) -> ControlSource {
    match i {
        20..=29 => ControlSource::Intervention,
        45..=49 => ControlSource::Intervention,
        _ => ControlSource::Robot,
    }
}

pub fn frames(n: u64) -> Vec<Frame> {
    (0..n).map(|i| frame(i, source_at(i))).collect()
}

/// A temp dir on tmpfs when there is one: the recorder fsyncs a lot, and on a busy shared
/// disk each fsync costs milliseconds that say nothing about the code under test.
pub fn tmp() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}
