mod common;

use std::fs;
use std::path::Path;

use common::{frames, meta};
use intervened_episodes::{
    episode_path, list_sessions, read_episode, recover_all, recover_episode, EpisodeError,
    EpisodeWriter, Outcome, Recorder, RecorderOptions,
};

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
    // The MCAP files themselves are untouched.
    assert_eq!(fs::read(&p0).unwrap(), bytes[..mid as usize]);

    // Idempotent: a second pass finds nothing to do.
    assert!(recover_all(root).unwrap().recovered.is_empty());

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
