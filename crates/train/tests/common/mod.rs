//! Synthetic episodes for the tests: a 3-joint arm with 2 task features, whose executed goal
//! is a fixed linear function of the observation, so a model can learn it.
#![allow(dead_code)]

use std::path::PathBuf;

use intervened_train::{
    DeviceChoice, EpisodeData, EpisodeSet, Label, LoadedEpisode, RetrainOptions, Weighting,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const JOINTS: [&str; 3] = ["a", "b", "c"];
pub const TASK: [&str; 2] = ["block.x", "block.y"];

/// The mapping the data follows: goal_j = obs_j + 0.3 * block.x - 0.2 * block.y * (j + 1).
pub fn target(obs: &[f32]) -> Vec<f32> {
    (0..JOINTS.len())
        .map(|j| obs[j] + 0.3 * obs[3] - 0.2 * obs[4] * (j as f32 + 1.0))
        .collect()
}

/// An episode of `labels.len()` frames with the given labels.
pub fn episode(session: &str, index: usize, labels: Vec<Label>, seed: u64) -> LoadedEpisode {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = labels.len();
    let mut obs = Vec::with_capacity(n);
    let mut goals = Vec::with_capacity(n);
    for _ in 0..n {
        let o: Vec<f32> = (0..5).map(|_| rng.gen_range(-1.0..1.0)).collect();
        goals.push(target(&o));
        obs.push(o);
    }
    let id = format!("{session}/episode-{index:06}.mcap");
    LoadedEpisode {
        path: PathBuf::from(format!("/data/sessions/{id}")),
        session: session.to_string(),
        robot_type: "test_arm".into(),
        joint_names: JOINTS.iter().map(|s| s.to_string()).collect(),
        task_feature_names: TASK.iter().map(|s| s.to_string()).collect(),
        fps: 50.0,
        policy_version: None,
        truncated: false,
        discarded: false,
        content_sha256: format!("{seed:064x}"),
        data: EpisodeData {
            id,
            round: session.to_string(),
            obs,
            goals,
            labels,
            cameras: Vec::new(),
        },
    }
}

/// A small DAgger history: two demo episodes, then two policy episodes with a takeover each.
pub fn small_set() -> EpisodeSet {
    let mut eps = Vec::new();
    for i in 0..2 {
        eps.push(episode("s1", i, vec![Label::Demo; 60], 100 + i as u64));
    }
    for i in 0..2 {
        let mut labels = vec![Label::Robot; 20];
        labels.extend(vec![Label::PreIntervention; 15]);
        labels.extend(vec![Label::Intervention; 25]);
        eps.push(episode("s2", i, labels, 200 + i as u64));
    }
    EpisodeSet {
        episodes: eps,
        unreadable: Vec::new(),
    }
}

/// Fast options: CPU, a few hundred steps, no progress bar.
pub fn fast_options(registry: PathBuf) -> RetrainOptions {
    let mut o = RetrainOptions::new("/data", registry);
    o.weighting = Weighting::HgDagger;
    o.epochs = 1000;
    o.max_steps = Some(60);
    o.batch = 32;
    o.patience = 0;
    o.quiet = true;
    o.device = DeviceChoice::Cpu;
    o
}
