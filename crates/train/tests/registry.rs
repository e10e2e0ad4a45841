// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;

use intervened_train::{
    current_version, list_policies, registry, retrain_from_episodes, rollback, EpisodeSet, Label,
    TrainError, Weighting,
};

#[test]
fn retrain_publishes_versions_and_rollback_switches_current() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("policies");
    let opts = common::fast_options(reg.clone());

    let r1 = retrain_from_episodes(&opts, common::small_set()).unwrap();
    assert_eq!(r1.version, "v0001");
    for f in ["policy.pt", "policy.json", "loss.svg"] {
        assert!(reg.join("v0001").join(f).is_file(), "{f}");
    }
    let svg = fs::read_to_string(reg.join("v0001/loss.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    assert!(svg.contains("training loss") && svg.contains("member 0 validation"));
    assert!(svg.contains("intervention rate"));

    // The sidecar is the daemon's contract plus provenance, and loads through the policy crate.
    let sidecar = intervened_policy::PolicySidecar::read(&reg.join("v0001/policy.json")).unwrap();
    assert_eq!(sidecar.version, "v0001");
    assert_eq!(sidecar.robot_type, "test_arm");
    assert_eq!(
        sidecar.observation_names,
        ["a.pos", "b.pos", "c.pos", "block.x", "block.y"]
    );
    assert_eq!(sidecar.action_names, ["a.pos", "b.pos", "c.pos"]);
    assert_eq!(
        (sidecar.chunk_size, sidecar.ensemble_size),
        (intervened_train::DEFAULT_CHUNK, 1)
    );
    assert_eq!(sidecar.action_kind, intervened_policy::ActionKind::Absolute);
    assert_eq!(
        sidecar.sha256,
        intervened_policy::sha256_file(&reg.join("v0001/policy.pt")).unwrap()
    );
    let p = &sidecar.provenance;
    assert_eq!(p["data"]["sha256"], r1.data_sha256);
    assert_eq!(p["data"]["frames"]["demo"], 120);
    assert_eq!(p["data"]["frames"]["intervention"], 50);
    assert_eq!(p["data"]["frames"]["pre_intervention"], 30);
    assert_eq!(p["weighting"]["scheme"], "hg-dagger");
    assert!(p["metrics"]["members"][0]["initial_loss"].is_number());
    assert_eq!(r1.rounds.len(), 2);
    assert_eq!(r1.rounds[1].takeovers, 2);
    assert_eq!(r1.rounds[0].intervention_rate, None);
    assert!((r1.rounds[1].intervention_rate.unwrap() - 50.0 / 120.0).abs() < 1e-12);

    let mut opts2 = opts.clone();
    opts2.weighting = Weighting::Sirius;
    opts2.chunk = 4;
    opts2.ensemble = 2;
    let r2 = retrain_from_episodes(&opts2, common::small_set()).unwrap();
    assert_eq!(r2.version, "v0002");
    assert_eq!(current_version(&reg).unwrap().as_deref(), Some("v0002"));
    assert_eq!(
        fs::read_link(reg.join("current")).unwrap().to_str(),
        Some("v0002")
    );

    let list = list_policies(&reg).unwrap();
    let names: Vec<_> = list
        .iter()
        .map(|e| (e.version.as_str(), e.current))
        .collect();
    assert_eq!(names, [("v0001", false), ("v0002", true)]);
    assert_eq!(list[1].sidecar.as_ref().unwrap()["ensemble_size"], 2);
    // Nothing but versions and `current` is left behind (no staging dirs, no temp links).
    let mut entries: Vec<String> = fs::read_dir(&reg)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["current", "v0001", "v0002"]);

    assert_eq!(rollback(&reg, None).unwrap(), "v0001");
    assert_eq!(current_version(&reg).unwrap().as_deref(), Some("v0001"));
    let e = rollback(&reg, None).unwrap_err().to_string();
    assert!(e.contains("no version before v0001"), "{e}");
    assert_eq!(rollback(&reg, Some("v0002")).unwrap(), "v0002");
    let e = rollback(&reg, Some("v0009")).unwrap_err().to_string();
    assert!(
        e.contains("no version v0009") && e.contains("v0001, v0002"),
        "{e}"
    );
    assert_eq!(current_version(&reg).unwrap().as_deref(), Some("v0002"));

    // After a rollback, the next publish still takes a fresh number: history is never reused.
    rollback(&reg, Some("v0001")).unwrap();
    assert_eq!(registry::next_version(&reg).unwrap(), "v0003");
}

/// Registry listing and current, before and after a failure.
fn snapshot(reg: &std::path::Path) -> (Vec<String>, Option<String>) {
    let mut v: Vec<String> = fs::read_dir(reg)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    (v, current_version(reg).unwrap())
}

#[test]
fn failed_retrains_leave_current_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("policies");
    let opts = common::fast_options(reg.clone());
    retrain_from_episodes(&opts, common::small_set()).unwrap();
    let before = snapshot(&reg);
    assert_eq!(before.1.as_deref(), Some("v0001"));

    // Empty data: the error names the data dir and what to do.
    let e = retrain_from_episodes(&opts, EpisodeSet::default()).unwrap_err();
    assert!(matches!(e, TrainError::NoEpisodes { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("/data") && msg.contains("record sessions first"),
        "{msg}"
    );
    assert_eq!(snapshot(&reg), before);

    // Only robot frames: nothing for hg-dagger to learn from.
    let set = EpisodeSet {
        episodes: vec![common::episode("s1", 0, vec![Label::Robot; 30], 1)],
        unreadable: vec![],
    };
    let e = retrain_from_episodes(&opts, set).unwrap_err().to_string();
    assert!(
        e.contains("no trainable frames under /data") && e.contains("30 robot"),
        "{e}"
    );
    assert!(e.contains("--weighting iwr"), "{e}");
    assert_eq!(snapshot(&reg), before);

    // Several robot types without --robot: abort, naming them.
    let mut set = common::small_set();
    set.episodes[3].robot_type = "other_arm".into();
    let e = retrain_from_episodes(&opts, set).unwrap_err().to_string();
    assert!(
        e.contains("other_arm") && e.contains("test_arm") && e.contains("--robot"),
        "{e}"
    );
    assert_eq!(snapshot(&reg), before);

    // Training that diverges (a huge learning rate) publishes nothing.
    let mut bad = opts.clone();
    bad.lr = 1e30;
    bad.max_steps = Some(200);
    match retrain_from_episodes(&bad, common::small_set()) {
        Err(TrainError::Diverged { .. }) | Err(TrainError::Verification { .. }) => {}
        other => panic!("expected a divergence, got {:?}", other.map(|r| r.version)),
    }
    assert_eq!(snapshot(&reg), before);
}

#[test]
fn bad_episodes_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let opts = common::fast_options(dir.path().join("policies"));
    let mut set = common::small_set();
    set.episodes[1].truncated = true;
    // A frame with the wrong number of values.
    set.episodes[2].data.obs[5].pop();
    set.episodes.push({
        let mut e = common::episode("s3", 0, vec![Label::Demo; 10], 9);
        e.discarded = true;
        e
    });
    set.unreadable.push(intervened_train::Exclusion {
        episode: "s3/episode-000001.mcap".into(),
        reason: "unreadable: no episode header".into(),
    });
    let r = retrain_from_episodes(&opts, set).unwrap();
    assert_eq!(r.episodes_used, 3);
    assert_eq!(r.truncated, ["s1/episode-000001.mcap"]);
    let reasons: Vec<&str> = r.excluded.iter().map(|x| x.reason.as_str()).collect();
    assert_eq!(r.excluded.len(), 3, "{reasons:?}");
    assert!(reasons
        .iter()
        .any(|r| r.contains("frame 5 has 4 observation")));
    assert!(reasons.iter().any(|r| r.contains("discarded")));
    assert!(reasons.iter().any(|r| r.contains("unreadable")));
    let text = r.to_string();
    assert!(
        text.contains("published v0001") && text.contains("3 skipped"),
        "{text}"
    );
    assert!(
        text.contains("skipped s3/episode-000000.mcap: discarded"),
        "{text}"
    );
}

#[test]
fn publish_failure_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("policies");
    let e = registry::publish(&reg, |stage, _| {
        fs::write(stage.join("policy.pt"), b"half").unwrap();
        Err(TrainError::Verification {
            message: "injected".into(),
        })
    })
    .unwrap_err();
    assert!(e.to_string().contains("injected"));
    assert_eq!(snapshot(&reg), (vec![], None));
    let e = rollback(&reg, None).unwrap_err().to_string();
    assert!(e.contains("no current policy"), "{e}");
}

#[test]
fn no_episodes_hint_shows_the_real_layout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let opts = intervened_train::RetrainOptions::new(&data, dir.path().join("policies"));
    let e = intervened_train::retrain(&opts).unwrap_err();
    assert!(matches!(e, TrainError::NoEpisodes { .. }), "{e}");
    let msg = e.to_string();
    // Episodes live in <data>/sessions/<session>/ (crates/episodes/src/layout.rs).
    assert!(
        msg.contains("<data>/sessions/<session>/episode-"),
        "wrong layout in: {msg}"
    );
    assert!(!msg.contains("<data>/<session>/"), "{msg}");
    assert!(
        msg.contains(&format!("{}/sessions/", data.display())),
        "{msg}"
    );
    let fix = msg.split_once("\n  fix: ").map(|(_, f)| f).unwrap_or("");
    assert!(
        fix.contains("record sessions first") && fix.contains("--data"),
        "{msg}"
    );
    assert!(!dir.path().join("policies/current").exists());
}
