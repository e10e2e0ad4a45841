// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{frames, meta};
use intervened_episodes::{
    episode_path, list_sessions, read_episode, DiagnosticsRecord, EpisodeError, EpisodeWriter,
    Event, EventRecord, LoopDiagnostics, Manifest, Outcome, Recorder, RecorderOptions,
};

fn events() -> Vec<EventRecord> {
    vec![
        EventRecord {
            tick: 1020,
            t: 0.4,
            event: Event::ModeChange {
                from: "autonomous".into(),
                to: "intervening".into(),
                reason: "takeover button".into(),
            },
        },
        EventRecord {
            tick: 1030,
            t: 0.6,
            event: Event::Fault {
                component: "bus".into(),
                message: "timeout on id 3".into(),
                fatal: false,
            },
        },
    ]
}

#[test]
fn frames_round_trip_through_mcap_with_manifest() {
    let dir = common::tmp();
    let m = meta("s1", 0);
    let fs = frames(60);
    let mut w = EpisodeWriter::create(dir.path(), &m).unwrap();
    for (i, f) in fs.iter().enumerate() {
        w.write_frame(f).unwrap();
        if i == 25 {
            for e in events() {
                w.write_event(&e).unwrap();
            }
            w.write_diagnostics(&DiagnosticsRecord {
                tick: 1025,
                t: 0.5,
                diagnostics: LoopDiagnostics {
                    period_error_us: 12.5,
                    work_us: 300.0,
                    overruns: 1,
                    clamps: 2,
                    dropped_frames: 0,
                },
            })
            .unwrap();
        }
        if i % 10 == 9 {
            w.flush().unwrap();
        }
    }
    let manifest = w.finish(Outcome::Success, 0, 0).unwrap();

    let path = episode_path(dir.path(), "s1", 0);
    assert!(path.ends_with("sessions/s1/episode-000000.mcap"));
    let ep = read_episode(&path).unwrap();
    assert_eq!(ep.meta, m);
    assert_eq!(ep.frames, fs);
    assert_eq!(ep.events, events());
    assert_eq!(ep.diagnostics.len(), 1);
    assert_eq!(ep.diagnostics[0].diagnostics.clamps, 2);
    assert!(!ep.truncated);

    // Manifest contents: 60 frames, takeovers at 20..30 and 45..50.
    let on_disk = Manifest::load(&path.with_extension("json")).unwrap();
    assert_eq!(on_disk, manifest);
    assert_eq!(ep.manifest, manifest);
    assert_eq!(manifest.outcome, Outcome::Success);
    assert_eq!(manifest.frames, 60);
    assert_eq!(manifest.intervention_count, 2);
    assert_eq!(manifest.intervention_steps, 15);
    assert_eq!(manifest.robot_steps, 45);
    assert_eq!(manifest.intervention_segments, vec![[20, 30], [45, 50]]);
    assert_eq!(manifest.autonomous_runs, vec![20, 15, 10]);
    assert!(!manifest.truncated && !manifest.recovered);
    assert_eq!(manifest.policy_version.as_deref(), Some("v3"));
    assert_eq!(manifest.robot_name, "test-arm");
    assert_eq!(manifest.robot_type, "koch_v1.1");
    assert_eq!(manifest.first_tick, Some(1000));
    assert_eq!(manifest.last_tick, Some(1059));
    assert!((manifest.duration_s - 59.0 / 50.0).abs() < 1e-9);
    assert!((manifest.intervention_rate() - 0.25).abs() < 1e-12);
    // No temp file is left behind by the atomic write.
    assert!(!path.with_extension("json.tmp").exists());

    // Labels at read time: 15-frame window before each takeover, robot frames only.
    let labels = ep.labels(15);
    let pre: Vec<usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| l.as_str() == "pre-intervention")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(pre, (5..20).chain(30..45).collect::<Vec<_>>());
}

#[test]
fn non_finite_values_survive_and_wrong_shapes_are_refused() {
    let dir = common::tmp();
    let m = meta("s1", 3);
    let mut w = EpisodeWriter::create(dir.path(), &m).unwrap();
    let mut f = frames(1).remove(0);
    f.q[1] = f64::NAN;
    f.qd.clear(); // velocities not read this tick
    f.current.clear();
    w.write_frame(&f).unwrap();
    let mut bad = f.clone();
    bad.goal.pop();
    match w.write_frame(&bad) {
        Err(EpisodeError::FrameShape {
            field: "goal",
            got: 2,
            expected: 3,
            ..
        }) => {}
        other => panic!("expected a shape error, got {other:?}"),
    }
    let mut bad_task = f.clone();
    bad_task.task.push(1.0);
    assert!(w.write_frame(&bad_task).is_err());
    // The writer is still healthy after refusing frames.
    w.write_frame(&f).unwrap();
    w.finish(Outcome::Failure, 0, 0).unwrap();
    let ep = read_episode(&episode_path(dir.path(), "s1", 3)).unwrap();
    assert_eq!(ep.frames.len(), 2);
    assert!(ep.frames[0].q[1].is_nan());
    assert_eq!(ep.frames[0].q[0], f.q[0]);
    assert!(ep.frames[0].qd.is_empty());
    assert_eq!(ep.manifest.outcome, Outcome::Failure);
}

#[test]
fn an_existing_episode_is_never_overwritten() {
    let dir = common::tmp();
    let m = meta("s1", 0);
    let mut w = EpisodeWriter::create(dir.path(), &m).unwrap();
    for f in frames(5) {
        w.write_frame(&f).unwrap();
    }
    w.finish(Outcome::Success, 0, 0).unwrap();
    let path = episode_path(dir.path(), "s1", 0);
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        EpisodeWriter::create(dir.path(), &m),
        Err(EpisodeError::AlreadyExists { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn recorder_thread_records_episodes_end_to_end() {
    let dir = common::tmp();
    let mut opts = RecorderOptions::new(dir.path());
    opts.flush_ms = 5;
    let rec = Recorder::spawn(opts).unwrap();
    let h = rec.handle();
    let fs = frames(60);
    for (idx, outcome) in [(0u32, Outcome::Success), (1, Outcome::Discarded)] {
        h.begin_episode(meta("sess", idx)).unwrap();
        for f in &fs {
            h.record_frame(f.clone()).unwrap();
        }
        h.event(
            1001,
            0.02,
            Event::EpisodeMarker {
                marker: "start".into(),
            },
        )
        .unwrap();
        h.end_episode(outcome).unwrap();
    }
    // Frames sent outside an episode are ignored and counted.
    h.record_frame(fs[0].clone()).unwrap();
    let r0 = rec.reports().recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(r0.manifest.as_ref().unwrap().frames, 60);
    let status = rec.shutdown();
    assert_eq!(status.frames_written, 120);
    assert_eq!(status.frames_dropped, 0);
    assert_eq!(status.frames_outside_episode, 1);
    assert_eq!(status.episodes_finished, 2);
    assert!(status.disk_ok);
    assert!(!status.running);

    let ep = read_episode(&episode_path(dir.path(), "sess", 0)).unwrap();
    assert_eq!(ep.frames, fs);
    assert_eq!(ep.events.len(), 1);
    assert_eq!(ep.manifest.outcome, Outcome::Success);

    let summary = list_sessions(dir.path()).unwrap();
    assert_eq!(summary.sessions.len(), 1);
    let c = &summary.total;
    assert_eq!(
        (c.episodes, c.frames, c.success, c.discarded),
        (2, 120, 1, 1)
    );
    // The discarded episode does not count towards the rates.
    assert!((c.intervention_rate() - 15.0 / 60.0).abs() < 1e-12);
    assert_eq!(c.success_rate(), Some(1.0));
    let table = summary.to_string();
    assert!(
        table.contains("sess") && table.contains("TOTAL") && table.contains("25.0%"),
        "{table}"
    );
}

#[test]
fn shutdown_with_an_open_episode_ends_it_as_aborted() {
    let dir = common::tmp();
    let rec = Recorder::spawn(RecorderOptions::new(dir.path())).unwrap();
    let h = rec.handle();
    h.begin_episode(meta("s", 0)).unwrap();
    for f in frames(10) {
        h.record_frame(f).unwrap();
    }
    // A second begin aborts the first.
    h.begin_episode(meta("s", 1)).unwrap();
    h.record_frame(frames(1).remove(0)).unwrap();
    drop(rec); // Drop also shuts down cleanly.
    let a = read_episode(&episode_path(dir.path(), "s", 0)).unwrap();
    let b = read_episode(&episode_path(dir.path(), "s", 1)).unwrap();
    assert_eq!((a.frames.len(), a.manifest.outcome), (10, Outcome::Aborted));
    assert_eq!((b.frames.len(), b.manifest.outcome), (1, Outcome::Aborted));
    assert!(!a.truncated && !b.truncated);
}

#[test]
fn listing_counts_frames_from_the_file_when_the_manifest_is_stale() {
    let dir = common::tmp();
    let mut w = EpisodeWriter::create(dir.path(), &meta("stale", 0)).unwrap();
    for f in frames(60) {
        w.write_frame(&f).unwrap();
    }
    let written = w.finish(Outcome::Success, 0, 0).unwrap();
    assert_eq!((written.frames, written.intervention_steps), (60, 15));

    // A stale manifest: it claims more frames (and takeover steps) than the file holds.
    let path = episode_path(dir.path(), "stale", 0);
    let mpath = path.with_extension("json");
    let mut lie = Manifest::load(&mpath).unwrap();
    lie.frames = 80;
    lie.intervention_steps = 30;
    lie.save(&mpath).unwrap();

    let s = list_sessions(dir.path()).unwrap();
    assert_eq!(
        s.total.frames, 60,
        "counted from the manifest, not the file"
    );
    assert_eq!(s.total.intervention_steps, 15);
    assert_eq!(s.sessions[0].episodes[0].frames, 60);
    assert_eq!(s.sessions[0].stale_manifests.len(), 1);
    assert_eq!(s.sessions[0].stale_manifests[0].0, path);
    let text = s.to_string();
    assert!(
        text.contains("episode-000000.mcap: stale manifest: it says 80 frames")
            && text.contains("the episode file holds 60"),
        "{text}"
    );
    // Listing does not rewrite the manifest.
    assert_eq!(Manifest::load(&mpath).unwrap().frames, 80);

    // Reading the episode gives the file's counts too.
    let ep = read_episode(&path).unwrap();
    assert_eq!(ep.frames.len(), 60);
    assert_eq!(
        (ep.manifest.frames, ep.manifest.intervention_steps),
        (60, 15)
    );
    assert!(ep
        .manifest
        .note
        .as_deref()
        .is_some_and(|n| n.contains("stale manifest")));

    // A manifest that agrees is not flagged.
    written.save(&mpath).unwrap();
    let s = list_sessions(dir.path()).unwrap();
    assert!(s.sessions[0].stale_manifests.is_empty());
    assert!(!s.to_string().contains("stale manifest"));
}
