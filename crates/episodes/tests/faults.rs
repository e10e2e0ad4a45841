// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{frame, frames, meta};
use intervened_episodes::{
    episode_path, read_episode, ControlSource, EpisodeWriter, Outcome, Recorder, RecorderOptions,
    SendRejected, WriterOptions,
};

#[test]
fn a_full_queue_drops_and_counts_frames_without_blocking() {
    let dir = common::tmp();
    let mut opts = RecorderOptions::new(dir.path());
    opts.queue_frames = 4;
    let rec = Recorder::spawn(opts).unwrap();
    let h = rec.handle();
    h.begin_episode(meta("q", 0)).unwrap();
    let sent = 20_000u64;
    let mut refused = 0u64;
    let mut worst = Duration::ZERO;
    let start = Instant::now();
    for i in 0..sent {
        let f = frame(i, ControlSource::Robot);
        let t0 = Instant::now();
        match h.record_frame(f) {
            Ok(()) => {}
            Err(SendRejected::Full) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        worst = worst.max(t0.elapsed());
    }
    let elapsed = start.elapsed();
    // The loop side never waits for the recorder: the producer outruns it and is refused.
    assert!(refused > 0, "a 4-frame queue should overflow");
    assert_eq!(h.dropped_frames(), refused);
    // Generous bound for a shared 2-core VM: a blocking send would wait for JSON + disk
    // work on every frame.
    assert!(
        worst < Duration::from_millis(50),
        "worst try_send took {worst:?}"
    );
    // End and begin still get through: they may use the reserve that frames cannot.
    h.end_episode(Outcome::Success).unwrap();
    let status = rec.shutdown();
    assert_eq!(status.frames_dropped, refused);
    assert_eq!(status.frames_written + refused, sent);

    let ep = read_episode(&episode_path(dir.path(), "q", 0)).unwrap();
    assert_eq!(ep.frames.len() as u64, sent - refused);
    assert_eq!(ep.manifest.dropped_frames, refused);
    assert_eq!(ep.manifest.outcome, Outcome::Success);
    // Drops show as tick gaps: the ticks that are there are increasing and account for all.
    let gaps: u64 = ep
        .frames
        .windows(2)
        .map(|w| w[1].tick - w[0].tick - 1)
        .sum();
    let lead = ep.frames[0].tick - 1000;
    let tail = 1000 + sent - 1 - ep.frames.last().unwrap().tick;
    assert_eq!(gaps + lead + tail, refused);
    eprintln!("sent {sent} in {elapsed:?}, dropped {refused}, worst try_send {worst:?}");
}

#[test]
fn an_unwritable_data_root_is_reported_and_the_loop_is_unaffected() {
    let dir = common::tmp();
    // A file where the data root's parent directory should be: nothing can be created.
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"x").unwrap();
    let root = blocker.join("data");
    let mut opts = RecorderOptions::new(&root);
    opts.flush_ms = 5;
    let rec = Recorder::spawn(opts).unwrap();
    let h = rec.handle();
    let mut worst = Duration::ZERO;
    h.begin_episode(meta("u", 0)).unwrap();
    for f in frames(100) {
        let t0 = Instant::now();
        h.record_frame(f).unwrap();
        worst = worst.max(t0.elapsed());
    }
    h.end_episode(Outcome::Success).unwrap();
    let report = rec.reports().recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(report.manifest.is_none());
    assert!(report.error.is_some());
    let s = rec.status();
    assert!(!s.disk_ok);
    assert!(s.write_errors >= 2, "{s:?}"); // recovery at start, then the episode
    assert_eq!(s.frames_lost, 100);
    assert_eq!(s.frames_written, 0);
    assert!(s.last_error.unwrap_or_default().contains("not-a-dir"));
    assert!(
        worst < Duration::from_millis(50),
        "worst try_send took {worst:?}"
    );
    // The recorder is still alive and draining.
    assert!(s.running);
    h.record_frame(frame(0, ControlSource::Robot)).unwrap();
    let s = rec.shutdown();
    assert_eq!(s.frames_outside_episode, 1);
}

#[test]
fn a_full_disk_keeps_everything_flushed_before_it() {
    let dir = common::tmp();
    let opts = WriterOptions {
        disk_budget: Some(12_000),
        ..WriterOptions::default()
    };
    let mut w = EpisodeWriter::create_with(dir.path(), &meta("full", 0), opts).unwrap();
    let path = w.path().to_path_buf();
    let all = frames(200);
    let mut snapshot = Vec::new();
    let mut flushed = 0;
    let mut failed_at = None;
    for (i, f) in all.iter().enumerate() {
        let r = w
            .write_frame(f)
            .and_then(|()| if i % 5 == 4 { w.flush() } else { Ok(()) });
        match r {
            Ok(()) if i % 5 == 4 => {
                flushed = w.frames_flushed();
                snapshot = fs::read(&path).unwrap();
            }
            Ok(()) => {}
            Err(e) => {
                assert!(e.is_disk_full(), "{e}");
                failed_at = Some(i);
                break;
            }
        }
    }
    let failed_at = failed_at.expect("the budget must run out");
    assert!(
        flushed >= 10,
        "several chunks fit before the disk fills ({flushed})"
    );
    assert!(w.failure().is_some());
    // Once failed, the writer refuses everything instead of writing past the damage.
    assert!(w.write_frame(&all[failed_at + 1]).is_err());
    assert!(w.flush().is_err());
    let m = w.abandon(Outcome::Success, 0, 3).unwrap();
    assert!(m.truncated && m.recovered);
    assert_eq!(m.outcome, Outcome::Success);
    assert_eq!(m.frames, flushed);
    assert_eq!(m.lost_frames, 3);
    assert!(m.note.unwrap().contains("writing failed"));
    // The file was rewritten complete (a footer every MCAP reader finds), keeping every frame
    // that was flushed; the repair's temp file is gone.
    assert!(!snapshot.ends_with(b"\x89MCAP0\r\n"));
    let after = fs::read(&path).unwrap();
    assert!(after.ends_with(b"\x89MCAP0\r\n"));
    assert!(!intervened_episodes::repair_temp_path(&path).exists());
    let ep = read_episode(&path).unwrap();
    assert_eq!(ep.frames[..], all[..flushed as usize]);
    assert!(ep.truncated);
}

#[test]
fn the_recorder_reports_a_disk_that_fills_mid_episode() {
    let dir = common::tmp();
    let mut opts = RecorderOptions::new(dir.path());
    opts.flush_ms = 1;
    opts.writer.disk_budget = Some(15_000);
    let rec = Recorder::spawn(opts).unwrap();
    let h = rec.handle();
    h.begin_episode(meta("df", 0)).unwrap();
    for f in frames(300) {
        h.record_frame(f).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    h.end_episode(Outcome::Failure).unwrap();
    let report = rec.reports().recv_timeout(Duration::from_secs(10)).unwrap();
    let m = report
        .manifest
        .expect("a manifest for what reached the disk");
    assert!(m.truncated);
    assert_eq!(m.outcome, Outcome::Failure);
    let s = rec.shutdown();
    assert!(!s.disk_ok);
    assert!(s.write_errors >= 1);
    assert!(s.frames_lost > 0);
    assert_eq!(s.frames_written + s.frames_lost, 300, "{s:?}");
    assert!(m.frames > 0 && m.frames <= s.frames_written);
    assert_eq!(m.lost_frames, s.frames_lost);
    let ep = read_episode(&episode_path(dir.path(), "df", 0)).unwrap();
    assert_eq!(ep.frames.len() as u64, m.frames);
    assert_eq!(ep.frames[..], frames(m.frames)[..]);
}
