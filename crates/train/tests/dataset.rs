mod common;

use intervened_train::{bootstrap_episodes, split_by_episode, Dataset, EpisodeData, Label};

#[test]
fn split_is_by_whole_episode_and_seeded() {
    let (train, val) = split_by_episode(10, 0.2, 5);
    assert_eq!(val.len(), 2);
    assert_eq!(train.len(), 8);
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(split_by_episode(10, 0.2, 5), (train.clone(), val.clone()));
    // Different seeds pick different validation episodes (for at least one of a few seeds).
    assert!((6..12).any(|s| split_by_episode(10, 0.2, s).1 != val));
    // Edge cases: one episode trains, never validates; two keep one on each side.
    assert_eq!(split_by_episode(1, 0.5, 0), (vec![0], vec![]));
    let (t, v) = split_by_episode(2, 0.01, 0);
    assert_eq!((t.len(), v.len()), (1, 1));
}

#[test]
fn samples_of_a_split_never_share_an_episode() {
    let set = common::small_set();
    let data: Vec<EpisodeData> = set.episodes.iter().map(|e| e.data.clone()).collect();
    let ds = Dataset::from_episodes(&data, 1).unwrap();
    let (train, val) = split_by_episode(ds.episodes.len(), 0.25, 3);
    let t = ds.subset(&train);
    let v = ds.subset(&val);
    assert_eq!(t.len() + v.len(), ds.samples.len());
    assert!(t.iter().all(|s| train.contains(&s.episode)));
    assert!(v.iter().all(|s| val.contains(&s.episode)));
}

#[test]
fn delta_targets_are_future_goals_minus_the_measured_joints() {
    // Two joints measured at q = (t, 2t), then one task feature.
    let ep = EpisodeData {
        id: "e".into(),
        round: "r".into(),
        obs: (0..3)
            .map(|t| vec![t as f32, 2.0 * t as f32, 7.0])
            .collect(),
        goals: (0..3)
            .map(|t| vec![t as f32 + 0.5, 2.0 * t as f32 - 0.25])
            .collect(),
        labels: vec![Label::Demo; 3],
        cameras: Vec::new(),
    };
    let ds = Dataset::from_episodes(&[ep], 2)
        .unwrap()
        .into_delta()
        .unwrap();
    // Frame 0: goals 0 and 1, both relative to q(0) = (0, 0).
    assert_eq!(ds.samples[0].action_chunk, vec![0.5, -0.25, 1.5, 1.75]);
    // Frame 1: relative to q(1) = (1, 2).
    assert_eq!(ds.samples[1].action_chunk, vec![0.5, -0.25, 1.5, 1.75]);
    // Frame 2: padded with the last goal, relative to q(2).
    assert_eq!(ds.samples[2].action_chunk, vec![0.5, -0.25, 0.5, -0.25]);
}

#[test]
fn chunk_targets_are_future_goals_padded_with_the_last() {
    let ep = EpisodeData {
        id: "e".into(),
        round: "r".into(),
        obs: (0..4).map(|t| vec![t as f32]).collect(),
        goals: (0..4).map(|t| vec![10.0 + t as f32, -(t as f32)]).collect(),
        labels: vec![Label::Demo; 4],
        cameras: Vec::new(),
    };
    let ds = Dataset::from_episodes(&[ep], 3).unwrap();
    assert_eq!((ds.obs_dim, ds.act_dim, ds.chunk), (1, 2, 3));
    assert_eq!(
        ds.samples[0].action_chunk,
        vec![10.0, 0.0, 11.0, -1.0, 12.0, -2.0]
    );
    assert_eq!(
        ds.samples[2].action_chunk,
        vec![12.0, -2.0, 13.0, -3.0, 13.0, -3.0]
    );
    assert_eq!(
        ds.samples[3].action_chunk,
        vec![13.0, -3.0, 13.0, -3.0, 13.0, -3.0]
    );
}

#[test]
fn bootstrap_resamples_with_replacement_and_subset_repeats() {
    let eps: Vec<usize> = (0..20).collect();
    let b = bootstrap_episodes(&eps, 9);
    assert_eq!(b.len(), 20);
    assert!(b.iter().all(|e| eps.contains(e)));
    let distinct: std::collections::BTreeSet<_> = b.iter().collect();
    assert!(
        distinct.len() < 20,
        "a bootstrap of 20 almost surely repeats one"
    );
    assert_eq!(b, bootstrap_episodes(&eps, 9));

    let set = common::small_set();
    let data: Vec<EpisodeData> = set.episodes.iter().map(|e| e.data.clone()).collect();
    let ds = Dataset::from_episodes(&data, 1).unwrap();
    assert_eq!(ds.subset(&[0, 0]).len(), 2 * ds.subset(&[0]).len());
}

#[test]
fn chunk_targets_stop_where_the_source_changes() {
    // The policy drives, the human takes over for two frames, the policy drives again.
    let labels = vec![
        Label::Robot,
        Label::Intervention,
        Label::Intervention,
        Label::Robot,
    ];
    let ep = EpisodeData {
        id: "e".into(),
        round: "r".into(),
        obs: (0..4).map(|t| vec![t as f32]).collect(),
        goals: (0..4).map(|t| vec![t as f32]).collect(),
        labels,
        cameras: Vec::new(),
    };
    let ds = Dataset::from_episodes(&[ep], 3).unwrap();
    let masks: Vec<&[f32]> = ds.samples.iter().map(|s| s.step_mask.as_slice()).collect();
    // An intervention frame learns the human's goals only, never the policy's after hand-back.
    assert_eq!(masks[1], [1.0, 1.0, 0.0]);
    assert_eq!(masks[2], [1.0, 0.0, 0.0]);
    // Once masked, always masked: the robot frame before the takeover learns only itself.
    assert_eq!(masks[0], [1.0, 0.0, 0.0]);
    // Padding past the end holds the last goal, from the same source.
    assert_eq!(masks[3], [1.0, 1.0, 1.0]);
}
