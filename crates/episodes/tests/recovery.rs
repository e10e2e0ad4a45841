// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use common::{frames, meta};
use intervened_episodes::{
    episode_path, list_sessions, read_episode, recover_all, recover_episode, repair_episode_file,
    repair_temp_path, EpisodeError, EpisodeWriter, Manifest, Outcome, Recorder, RecorderOptions,
    RecoveryAction, RecoveryReport, Repair, REPAIR_METADATA,
};

const MAGIC: &[u8] = b"\x89MCAP0\r\n";

fn m0_repair<'a>(report: &'a RecoveryReport, path: &Path) -> &'a Repair {
    report
        .files
        .iter()
        .find(|f| f.path == path)
        .and_then(|f| f.repair.as_ref())
        .unwrap_or_else(|| panic!("{} not repaired: {report:#?}", path.display()))
}

/// Every message of a file that has a summary, through the mcap crate's indexed reader:
/// (topic, sequence, log time, publish time, data).
fn indexed_messages(path: &Path) -> Vec<(String, u32, u64, u64, Vec<u8>)> {
    let buf = fs::read(path).unwrap();
    let summary = mcap::Summary::read(&buf)
        .unwrap()
        .unwrap_or_else(|| panic!("{}: no summary", path.display()));
    let mut out = Vec::new();
    for ci in &summary.chunk_indexes {
        for m in summary.stream_chunk(&buf, ci).unwrap() {
            let m = m.unwrap();
            out.push((
                m.channel.topic.clone(),
                m.sequence,
                m.log_time,
                m.publish_time,
                m.data.into_owned(),
            ));
        }
    }
    let stats = summary.stats.expect("summary statistics");
    assert_eq!(stats.message_count, out.len() as u64);
    out
}

/// How many messages of the complete file `full` lie in chunks wholly inside its first `len`
/// bytes: the intact messages of the file cut there.
fn messages_in_whole_chunks(full: &[u8], len: u64) -> usize {
    let summary = mcap::Summary::read(full).unwrap().unwrap();
    summary
        .chunk_indexes
        .iter()
        .filter(|ci| ci.chunk_start_offset + ci.chunk_length <= len)
        .map(|ci| summary.stream_chunk(full, ci).unwrap().count())
        .sum()
}

/// Record 60 frames, flushing every 10; return the file bytes and (file length, frames on
/// disk) after each flush, the header flush included.
fn recorded(root: &Path) -> (Vec<u8>, Vec<(u64, usize)>) {
    let mut w = EpisodeWriter::create(root, &meta("src", 0)).unwrap();
    let mut points = vec![(w.file_len().unwrap(), 0usize)];
    for (i, f) in frames(60).iter().enumerate() {
        w.write_frame(f).unwrap();
        if i % 10 == 9 {
            w.flush().unwrap();
            assert_eq!(w.frames_flushed(), i as u64 + 1);
            points.push((w.file_len().unwrap(), i + 1));
        }
    }
    w.finish(Outcome::Success, 0, 0).unwrap();
    let bytes = fs::read(episode_path(root, "src", 0)).unwrap();
    (bytes, points)
}

#[test]
fn truncation_at_many_offsets_recovers_to_the_last_complete_chunk() {
    let dir = common::tmp();
    let (bytes, points) = recorded(dir.path());
    let len = bytes.len() as u64;
    let header_len = points[0].0;
    let counts: Vec<usize> = points.iter().map(|p| p.1).collect();

    let mut offsets: Vec<u64> = (0..=len).step_by(37).collect();
    for &(p, _) in &points {
        offsets.extend(p.saturating_sub(12)..=(p + 12).min(len));
    }
    offsets.extend(len.saturating_sub(40)..=len);
    offsets.sort();
    offsets.dedup();

    let cut = episode_path(dir.path(), "cut", 7);
    fs::create_dir_all(cut.parent().unwrap()).unwrap();
    let full = frames(60);
    for (k, &off) in offsets.iter().enumerate() {
        fs::write(&cut, &bytes[..off as usize]).unwrap();
        let _ = fs::remove_file(cut.with_extension("json"));

        // Reading never fails once the header chunk is on disk, and writes nothing.
        let read = read_episode(&cut);
        assert!(!cut.with_extension("json").exists());
        let ep = match read {
            Ok(ep) => ep,
            Err(EpisodeError::NoEpisodeHeader { .. }) if off < header_len => {
                // Recovery still lists it, with zero frames.
                let m = recover_episode(&cut, None).unwrap();
                assert_eq!(
                    (m.frames, m.truncated, m.outcome),
                    (0, true, Outcome::Truncated)
                );
                continue;
            }
            Err(e) => panic!("offset {off}/{len}: {e}"),
        };
        let n = ep.frames.len();
        // Nothing flushed before the cut is lost; nothing after it is invented.
        // (A flush point's length includes the message indexes after its chunk, so a cut just
        // before it may still hold the whole chunk.)
        let lower = points
            .iter()
            .filter(|p| p.0 <= off)
            .map(|p| p.1)
            .max()
            .unwrap_or(0);
        let upper = points
            .iter()
            .filter(|p| p.0 >= off)
            .map(|p| p.1)
            .min()
            .unwrap_or(60);
        assert!(
            counts.contains(&n),
            "offset {off}: {n} frames is not a flush point"
        );
        assert!(
            lower <= n && n <= upper,
            "offset {off}: {n} frames, expected {lower}..={upper}"
        );
        assert_eq!(ep.frames[..], full[..n], "offset {off}");
        assert_eq!(ep.truncated, off < len, "offset {off}");
        if ep.manifest.outcome == Outcome::Success {
            assert_eq!(n, 60);
        } else {
            assert_eq!(ep.manifest.outcome, Outcome::Truncated);
        }

        // Recovery writes a manifest that agrees with the reader (on a sample of offsets:
        // each write is fsynced).
        if k % 4 != 0 {
            continue;
        }
        let m = recover_episode(&cut, None).unwrap();
        assert_eq!(m.frames as usize, n);
        assert_eq!(m.truncated, off < len);
        assert!(m.recovered);
        let again = read_episode(&cut).unwrap();
        assert_eq!(again.manifest, m);
    }
}

#[test]
fn recover_all_writes_manifests_for_cut_short_episodes_only() {
    let dir = common::tmp();
    let root = dir.path();
    let (bytes, points) = recorded(root);
    // src/0 is complete. s2/0: cut in the middle of the 4th data chunk. s2/1: 5 bytes.
    let mid = (points[3].0 + points[4].0) / 2;
    let p0 = episode_path(root, "s2", 0);
    fs::create_dir_all(p0.parent().unwrap()).unwrap();
    fs::write(&p0, &bytes[..mid as usize]).unwrap();
    let p1 = episode_path(root, "s2", 1);
    fs::write(&p1, &bytes[..5]).unwrap();
    let stale = p0.with_extension("json.tmp");
    fs::write(&stale, b"{half").unwrap();
    let complete = episode_path(root, "src", 0).with_extension("json");
    let complete_before = fs::read(&complete).unwrap();

    let report = recover_all(root).unwrap();
    assert_eq!(report.scanned, 3);
    assert_eq!(report.recovered.len(), 2);
    assert!(report.failed.is_empty());
    assert_eq!(report.removed_tmp, vec![stale.clone()]);
    assert!(!stale.exists());
    assert_eq!(fs::read(&complete).unwrap(), complete_before);

    let m0 = &report
        .recovered
        .iter()
        .find(|r| r.path == p0)
        .unwrap()
        .manifest;
    assert_eq!(
        (m0.frames, m0.truncated, m0.outcome),
        (30, true, Outcome::Truncated)
    );
    assert_eq!(m0.intervention_segments, vec![[20, 30]]);
    assert!(m0
        .note
        .as_deref()
        .unwrap_or("")
        .contains("last complete chunk"));
    let m1 = &report
        .recovered
        .iter()
        .find(|r| r.path == p1)
        .unwrap()
        .manifest;
    assert_eq!(
        (m1.frames, m1.episode_index, m1.session_id.as_str()),
        (0, 1, "s2")
    );
    // Both cut files were rewritten complete: every intact message kept, the torn tail
    // dropped, a footer added. The complete file was left alone.
    assert_eq!(report.repaired().count(), 2);
    let r0 = m0_repair(&report, &p0);
    assert_eq!(r0.bytes_before, mid);
    assert_eq!(r0.bytes_dropped, mid - points[3].0);
    assert_eq!(r0.frames, 30);
    assert_eq!(r0.kept_until_s, Some(29.0 / 50.0));
    assert!(fs::read(&p0).unwrap().ends_with(MAGIC));
    assert_eq!(read_episode(&p0).unwrap().frames[..], frames(30)[..]);
    assert_eq!(
        fs::read(episode_path(root, "src", 0)).unwrap(),
        bytes,
        "a complete file is never rewritten"
    );

    // Idempotent: a second pass finds nothing to do.
    let again = recover_all(root).unwrap();
    assert!(again.recovered.is_empty());
    assert!(again
        .files
        .iter()
        .all(|f| f.action == RecoveryAction::Intact));

    let s = list_sessions(root).unwrap();
    assert_eq!(s.total.episodes, 3);
    assert_eq!(s.total.frames, 90);
    assert_eq!(s.total.truncated_files, 2);
    assert_eq!(s.total.success, 1);
    assert!(s.sessions.iter().all(|x| x.unrecovered.is_empty()));
}

#[test]
fn listing_shows_unrecovered_files_and_spawn_recovers_them() {
    let dir = common::tmp();
    let root = dir.path();
    let (bytes, points) = recorded(root);
    let p = episode_path(root, "s3", 0);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, &bytes[..(points[2].0 + 7) as usize]).unwrap();

    let s = list_sessions(root).unwrap();
    let s3 = s.sessions.iter().find(|x| x.session_id == "s3").unwrap();
    assert_eq!(s3.unrecovered, vec![p.clone()]);
    assert_eq!(s3.counts.frames, 20);
    assert!(s.to_string().contains("without a manifest"));
    assert!(!p.with_extension("json").exists(), "listing must not write");

    let rec = Recorder::spawn(RecorderOptions::new(root)).unwrap();
    assert_eq!(rec.recovery().recovered.len(), 1);
    drop(rec);
    assert!(p.with_extension("json").exists());
}

/// A cut file is rewritten with exactly the messages it held intact (topics, sequence numbers,
/// log and publish times, bytes), readable through the mcap crate's summary and chunk indexes;
/// our reader reads the same frames from it as from the cut file.
#[test]
fn a_cut_file_is_repaired_with_every_intact_message() {
    let dir = common::tmp();
    let root = dir.path();
    let (bytes, points) = recorded(root);
    let len = bytes.len() as u64;
    let full = indexed_messages(&episode_path(root, "src", 0));
    let summary_full = mcap::Summary::read(&bytes).unwrap().unwrap();
    let cuts = [
        points[0].0,                     // header chunk only
        points[2].0 + 1,                 // a byte into the next chunk
        (points[4].0 + points[5].0) / 2, // mid-chunk
        points[6].0,                     // every frame, no end record, no footer
        len - 30,                        // inside the footer: everything but the summary
    ];
    for (k, &at) in cuts.iter().enumerate() {
        let p = episode_path(root, "cut", k as u32);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let cut = &bytes[..at as usize];
        fs::write(&p, cut).unwrap();
        let intact = messages_in_whole_chunks(&bytes, at);
        let frames_before = read_episode(&p).unwrap().frames;

        let m = recover_episode(&p, None).unwrap();
        let after = indexed_messages(&p);
        assert_eq!(after.len(), intact, "cut at {at}");
        assert!(after[..] == full[..intact], "cut at {at}");
        let repaired = fs::read(&p).unwrap();
        let summary = mcap::Summary::read(&repaired).unwrap().unwrap();
        assert_eq!(summary.channels, summary_full.channels, "cut at {at}");
        assert_eq!(summary.schemas, summary_full.schemas, "cut at {at}");
        assert_eq!(summary.metadata_indexes.len(), 1);
        assert_eq!(summary.metadata_indexes[0].name, REPAIR_METADATA);

        let ep = read_episode(&p).unwrap();
        assert_eq!(ep.frames, frames_before, "cut at {at}");
        assert!(ep.truncated && m.truncated && m.recovered, "cut at {at}");
        assert_eq!(m.frames, ep.frames.len() as u64);
        let whole = after.len() == full.len();
        assert_eq!(whole, at == len - 30);
        // A cut file has no end record: Truncated, unless the end record was intact.
        let outcome = if whole {
            Outcome::Success
        } else {
            Outcome::Truncated
        };
        assert_eq!(m.outcome, outcome, "cut at {at}");
        assert!(m.note.as_deref().unwrap_or("").contains("crash recovery"));
        assert!(!repair_temp_path(&p).exists());
    }
}

/// Recovery can be killed at any step; the next recovery ends where an uninterrupted one
/// would have: the same file, byte for byte, and the same manifest.
#[test]
fn a_recovery_interrupted_at_any_step_is_finished_by_the_next() {
    let dir = common::tmp();
    let root = dir.path();
    let (bytes, points) = recorded(root);
    let cut = &bytes[..(points[3].0 + 100) as usize];
    let reference = episode_path(root, "ref", 0);
    fs::create_dir_all(reference.parent().unwrap()).unwrap();
    fs::write(&reference, cut).unwrap();
    let expected = recover_episode(&reference, None).unwrap();
    let expected_bytes = fs::read(&reference).unwrap();
    assert_eq!(expected.frames, 30);

    // Killed while writing the repaired copy: a partial `.repair` beside the untouched original.
    let p = episode_path(root, "s", 0);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, cut).unwrap();
    fs::write(
        repair_temp_path(&p),
        &expected_bytes[..expected_bytes.len() / 2],
    )
    .unwrap();
    // Killed after the copy was fsynced, before its rename.
    let q = episode_path(root, "s", 1);
    fs::write(&q, cut).unwrap();
    fs::write(repair_temp_path(&q), &expected_bytes).unwrap();
    // Killed after the rename, before the manifest.
    let r = episode_path(root, "s", 2);
    fs::write(&r, cut).unwrap();
    assert!(repair_episode_file(&r).unwrap().is_some());
    assert!(!r.with_extension("json").exists());
    assert_eq!(fs::read(&r).unwrap(), expected_bytes);

    let report = recover_all(root).unwrap();
    assert!(report.failed.is_empty(), "{report:#?}");
    let mut removed = report.removed_tmp.clone();
    removed.sort();
    assert_eq!(removed, vec![repair_temp_path(&p), repair_temp_path(&q)]);
    for x in [&p, &q, &r] {
        assert_eq!(fs::read(x).unwrap(), expected_bytes, "{}", x.display());
        assert_eq!(
            Manifest::load(&x.with_extension("json")).unwrap(),
            expected,
            "{}",
            x.display()
        );
        assert!(!repair_temp_path(x).exists());
    }
    let action = |x: &Path| report.files.iter().find(|f| f.path == x).unwrap().action;
    assert_eq!(action(&p), RecoveryAction::Repaired);
    assert_eq!(action(&q), RecoveryAction::Repaired);
    assert_eq!(action(&r), RecoveryAction::ManifestWritten);
    assert_eq!(action(&reference), RecoveryAction::Intact);
}

/// A whole file is never rewritten, with or without its manifest.
#[test]
fn an_intact_file_is_left_byte_identical() {
    let dir = common::tmp();
    let root = dir.path();
    let (bytes, _) = recorded(root);
    let p = episode_path(root, "src", 0);
    let manifest = fs::read(p.with_extension("json")).unwrap();
    let report = recover_all(root).unwrap();
    assert_eq!(report.files[0].action, RecoveryAction::Intact);
    assert_eq!(fs::read(&p).unwrap(), bytes);
    assert_eq!(fs::read(p.with_extension("json")).unwrap(), manifest);

    // Killed after the footer, before the manifest: the manifest is written, the file kept.
    fs::remove_file(p.with_extension("json")).unwrap();
    let report = recover_all(root).unwrap();
    assert_eq!(report.files[0].action, RecoveryAction::ManifestWritten);
    assert!(report.files[0].repair.is_none());
    assert_eq!(fs::read(&p).unwrap(), bytes);
    let m = Manifest::load(&p.with_extension("json")).unwrap();
    assert!(!m.truncated && m.recovered);
    assert_eq!((m.frames, m.outcome), (60, Outcome::Success));
    assert_eq!(repair_episode_file(&p).unwrap(), None);
    assert_eq!(fs::read(&p).unwrap(), bytes);
}

/// A file another process is recording (it holds the file's lock) is left alone.
#[test]
fn a_file_being_recorded_is_left_alone() {
    let dir = common::tmp();
    let root = dir.path();
    let (bytes, points) = recorded(root);
    let p = episode_path(root, "busy", 0);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let cut = &bytes[..(points[2].0 + 10) as usize];
    fs::write(&p, cut).unwrap();
    let holder = fs::File::open(&p).unwrap();
    holder.lock().unwrap();
    let report = recover_all(root).unwrap();
    let line = report.files.iter().find(|f| f.path == p).unwrap();
    assert_eq!(line.action, RecoveryAction::Busy);
    assert!(matches!(
        recover_episode(&p, None),
        Err(EpisodeError::Busy { .. })
    ));
    assert_eq!(fs::read(&p).unwrap(), cut);
    assert!(!p.with_extension("json").exists());

    // A live writer holds its file's lock too.
    let mut w = EpisodeWriter::create(root, &common::meta("busy", 1)).unwrap();
    w.write_frame(&frames(1)[0]).unwrap();
    w.flush().unwrap();
    let err = recover_episode(w.path(), None).unwrap_err();
    assert!(err.to_string().contains("being recorded"), "{err}");

    drop(holder);
    let report = recover_all(root).unwrap();
    let line = report.files.iter().find(|f| f.path == p).unwrap();
    assert_eq!(line.action, RecoveryAction::Repaired);
    assert_eq!(read_episode(&p).unwrap().frames.len(), 20);
    w.finish(Outcome::Success, 0, 0).unwrap();
}

/// Files cut short and recovered before recovery rewrote files (a manifest beside a torn
/// file) are repaired, and their manifests kept as they are.
#[test]
fn old_recovered_files_are_repaired_and_keep_their_manifest() {
    let dir = common::tmp();
    let root = dir.path();
    let (bytes, points) = recorded(root);
    let p = episode_path(root, "old", 0);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let cut = &bytes[..(points[4].0 + 333) as usize];
    fs::write(&p, cut).unwrap();
    recover_episode(&p, Some(Outcome::Failure)).unwrap();
    fs::write(&p, cut).unwrap();
    let manifest = fs::read(p.with_extension("json")).unwrap();

    let report = recover_all(root).unwrap();
    let line = report.files.iter().find(|f| f.path == p).unwrap();
    assert_eq!(line.action, RecoveryAction::Repaired);
    assert!(report.recovered.is_empty());
    assert_eq!(line.repair.as_ref().unwrap().bytes_dropped, 333);
    assert_eq!(fs::read(p.with_extension("json")).unwrap(), manifest);
    let ep = read_episode(&p).unwrap();
    assert_eq!(ep.frames[..], frames(40)[..]);
    assert_eq!(ep.manifest.outcome, Outcome::Failure);
    assert!(!ep.manifest.note.unwrap_or_default().contains("stale"));
}

/// When the repaired copy cannot be written, the original is kept, the episode still gets its
/// manifest, and the next recovery finishes the rewrite.
#[test]
fn a_failed_rewrite_keeps_the_file_writes_the_manifest_and_is_retried() {
    let dir = common::tmp();
    let root = dir.path();
    let (bytes, points) = recorded(root);
    let p = episode_path(root, "blocked", 0);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let cut = &bytes[..(points[3].0 + 50) as usize];
    fs::write(&p, cut).unwrap();
    // A directory where the copy would go: nothing can be written there.
    fs::create_dir(repair_temp_path(&p)).unwrap();
    let report = recover_all(root).unwrap();
    let line = report.files.iter().find(|f| f.path == p).unwrap();
    assert_eq!(line.action, RecoveryAction::Failed);
    assert!(
        line.error.as_deref().unwrap_or("").contains(".repair"),
        "{line:?}"
    );
    assert_eq!(fs::read(&p).unwrap(), cut);
    let m = Manifest::load(&p.with_extension("json")).unwrap();
    assert!(m.truncated && m.recovered && m.frames == 30);
    assert!(m.note.unwrap_or_default().contains("not yet rewritten"));

    fs::remove_dir(repair_temp_path(&p)).unwrap();
    let report = recover_all(root).unwrap();
    let line = report.files.iter().find(|f| f.path == p).unwrap();
    assert_eq!(line.action, RecoveryAction::Repaired);
    assert!(fs::read(&p).unwrap().ends_with(MAGIC));
    assert_eq!(read_episode(&p).unwrap().frames[..], frames(30)[..]);
    let note = Manifest::load(&p.with_extension("json"))
        .unwrap()
        .note
        .unwrap_or_default();
    assert!(!note.contains("not yet rewritten"), "{note}");
    assert!(note.contains("last complete chunk"), "{note}");
}
