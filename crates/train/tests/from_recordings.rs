//! End to end from MCAP recordings: the episodes crate writes sessions, `retrain` reads them,
//! and the published policy loads in the policy crate as the daemon loads it.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use intervened_episodes::{ControlSource, EpisodeMeta, EpisodeWriter, Frame, Outcome};
use intervened_policy::{Policy, PolicyExpectations};
use intervened_robot::RobotConfig;
use intervened_train::{retrain, DeviceChoice, RetrainOptions, TrainError, Weighting};

const TASK: [&str; 4] = ["block.x", "block.y", "block.z", "block.grasped"];

fn config() -> RobotConfig {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/sim-koch.toml");
    RobotConfig::load(&p).unwrap()
}

fn write_episode(
    root: &Path,
    cfg: &RobotConfig,
    session: &str,
    index: u32,
    sources: &[ControlSource],
    robot_type: Option<&str>,
) -> PathBuf {
    let mut meta = EpisodeMeta::for_robot(cfg, session, index, "pick the block");
    meta.task_feature_names = TASK.iter().map(|s| s.to_string()).collect();
    meta.demo = sources.iter().all(|s| *s == ControlSource::Demo);
    meta.policy_version = (!meta.demo).then(|| "v0001".to_string());
    if let Some(t) = robot_type {
        meta.robot_type = t.to_string();
    }
    let n_j = cfg.joints.len();
    let mut w = EpisodeWriter::create(root, &meta).unwrap();
    for (i, &source) in sources.iter().enumerate() {
        let t = i as f64 / cfg.control.rate_hz;
        let q: Vec<f64> = (0..n_j)
            .map(|j| (t * (j + 1) as f64 + index as f64).sin() * 0.5)
            .collect();
        let task = vec![0.1 * t.cos(), 0.05, 0.02, (i > 20) as u8 as f64];
        let goal: Vec<f64> = q.iter().map(|x| x + 0.1 * task[0]).collect();
        w.write_frame(&Frame {
            tick: i as u64,
            t,
            q,
            qd: vec![0.0; n_j],
            current: vec![0.0; n_j],
            goal,
            source,
            proposal: None,
            doubt: None,
            pad_axes: vec![],
            pad_buttons: 0,
            task,
        })
        .unwrap();
        if i % 20 == 19 {
            w.flush().unwrap();
        }
    }
    let path = w.path().to_path_buf();
    w.finish(Outcome::Success, 0, 0).unwrap();
    path
}

#[test]
fn retrain_from_recorded_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let reg = dir.path().join("policies");
    let cfg = config();

    let mut opts = RetrainOptions::new(&data, &reg);
    opts.robot = Some(cfg.clone());
    opts.max_steps = Some(30);
    opts.batch = 16;
    opts.quiet = true;
    opts.device = DeviceChoice::Cpu;
    opts.weighting = Weighting::Iwr;
    opts.chunk = 5;

    // No sessions yet: a clear error naming the directory.
    let e = retrain(&opts).unwrap_err();
    assert!(matches!(e, TrainError::NoEpisodes { .. }), "{e}");
    assert!(e.to_string().contains(&data.display().to_string()));

    write_episode(
        &data,
        &cfg,
        "20250101-000000",
        0,
        &[ControlSource::Demo; 60],
        None,
    );
    let mut policy_run = vec![ControlSource::Robot; 40];
    policy_run.extend([ControlSource::Intervention; 20]);
    write_episode(&data, &cfg, "20250102-000000", 0, &policy_run, None);
    let cut = write_episode(&data, &cfg, "20250102-000000", 1, &policy_run, None);
    write_episode(
        &data,
        &cfg,
        "20250102-000000",
        2,
        &policy_run,
        Some("other_arm"),
    );
    // Cut the last file short, as a crash would: its summary and footer are lost.
    let len = std::fs::metadata(&cut).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    f.set_len(len * 2 / 3).unwrap();

    let r = retrain(&opts).unwrap();
    assert_eq!(r.version, "v0001");
    assert_eq!(r.episodes_used, 3, "{:?}", r.excluded);
    assert_eq!(r.truncated, ["20250102-000000/episode-000001.mcap"]);
    assert_eq!(r.excluded.len(), 1);
    assert!(
        r.excluded[0].reason.contains("other_arm"),
        "{:?}",
        r.excluded
    );
    // Sirius labels from the reader: 15 robot frames before each takeover are pre-intervention.
    assert_eq!(r.counts.demo, 60);
    assert!(
        r.counts.pre_intervention >= 15 && r.counts.intervention >= 20,
        "{:?}",
        r.counts
    );
    assert_eq!(r.rounds.len(), 2);

    // The daemon's view: the policy loads against the robot config and its sensor features.
    let task: Vec<String> = TASK.iter().map(|s| s.to_string()).collect();
    let expect = PolicyExpectations::for_robot(&cfg, &task);
    let mut p = Policy::load(reg.join("current"), &expect).unwrap();
    assert_eq!((p.chunk_size(), p.ensemble_size()), (5, 1));
    let pred = p.infer(&vec![0.0; cfg.joints.len() + TASK.len()]).unwrap();
    assert_eq!(pred.chunk.len(), 5);
    assert!(pred.chunk.iter().flatten().all(|v| v.is_finite()));

    // The data hash changes with the data.
    write_episode(
        &data,
        &cfg,
        "20250103-000000",
        0,
        &[ControlSource::Demo; 30],
        None,
    );
    let r2 = retrain(&opts).unwrap();
    assert_eq!(r2.version, "v0002");
    assert_ne!(r2.data_sha256, r.data_sha256);
}
