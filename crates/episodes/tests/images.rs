//! Camera images in episode files: written as `foxglove.CompressedImage`, read back with their
//! capture and log times, queued by the recorder without blocking, and recovered from a cut
//! file.
// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{cameras, frames, image_ns, meta, synthetic_image, write_with_images, MONO0};
use intervened_camera::{decode_jpeg, psnr, Image};
use intervened_episodes::{
    episode_path, read_episode, recover_all, CameraGapReason, Event, Outcome, Recorder,
    RecorderOptions, SendRejected,
};

#[test]
fn images_round_trip_with_capture_and_log_times() {
    let dir = common::tmp();
    let m = write_with_images(dir.path(), "img", 0, 60, 10);
    let ep = read_episode(&episode_path(dir.path(), "img", 0)).unwrap();
    assert!(!ep.truncated);
    assert_eq!(ep.meta.cameras, cameras());
    assert_eq!(ep.meta.monotonic_start_ns, Some(MONO0));
    assert_eq!(ep.frames.len(), 60);
    assert_eq!(ep.image_capture_ns.len(), 60);
    assert_eq!(ep.image_capture_ns[0], vec![image_ns(0), 0]);
    assert_eq!(ep.image_capture_ns[59], vec![image_ns(29), image_ns(29)]);
    assert_eq!(ep.images.len(), 2);
    for (c, cam) in ep.images.iter().enumerate() {
        assert_eq!(cam.camera.name, m.cameras[c].name);
        assert_eq!(cam.images.len(), 30);
        for (k, img) in cam.images.iter().enumerate() {
            let k = k as u64;
            assert_eq!(img.capture_ns, image_ns(k));
            // On the frames' timeline: image k was captured at t = 0.04 k, like frame 2k.
            assert_eq!(img.log_time, m.started_at + k * 40_000_000);
            let mut back = Image::default();
            decode_jpeg(&img.jpeg, &mut back).unwrap();
            let want = synthetic_image(k + c as u64 * 100, cam.camera.width, cam.camera.height);
            let p = psnr(&want, &back);
            assert!(p > 30.0, "camera {c} image {k}: PSNR {p:.1} dB");
        }
    }
    // The joint frames are what they were without cameras.
    assert_eq!(ep.frames, frames(60));
}

#[test]
fn episodes_without_cameras_carry_no_image_fields() {
    let dir = common::tmp();
    let mut w = intervened_episodes::EpisodeWriter::create(dir.path(), &meta("plain", 0)).unwrap();
    for f in &frames(5) {
        w.write_frame(f).unwrap();
    }
    w.finish(Outcome::Success, 0, 0).unwrap();
    let path = episode_path(dir.path(), "plain", 0);
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    for absent in [
        "image_capture_ns\":",
        "cameras",
        "monotonic_start_ns",
        "CompressedImage",
    ] {
        assert!(!text.contains(absent), "{absent} in a file without cameras");
    }
    let ep = read_episode(&path).unwrap();
    assert!(ep.images.is_empty());
    assert!(ep.image_capture_ns.iter().all(Vec::is_empty));
    // A wrong number of stamps is refused like a wrong number of joints.
    let mut m = meta("plain", 1);
    m.cameras = cameras();
    let mut w = intervened_episodes::EpisodeWriter::create(dir.path(), &m).unwrap();
    assert!(w.write_frame_with_images(&frames(1)[0], &[1]).is_err());
    assert!(w.write_jpeg(2, 1, None, &[0xFF, 0xD8]).is_err());
    w.write_frame_with_images(&frames(1)[0], &[1, 2]).unwrap();
    w.finish(Outcome::Success, 0, 0).unwrap();
}

#[test]
fn recorder_queues_images_without_blocking_and_counts_drops_per_camera() {
    let dir = common::tmp();
    let mut opts = RecorderOptions::new(dir.path());
    opts.recover_on_start = false;
    opts.queue_images = 4;
    let rec = Recorder::spawn(opts).unwrap();
    let h = rec.handle();
    h.prefill_images(8, 64, 48);
    let front = synthetic_image(1, 64, 48);
    let wrist = synthetic_image(2, 32, 32);
    // No episode open: discarded, not a loss.
    assert_eq!(h.record_image(0, 1, &front), Ok(false));

    let mut m = meta("rec", 0);
    m.cameras = cameras();
    m.monotonic_start_ns = Some(MONO0);
    h.begin_episode(m.clone()).unwrap();
    // A camera the episode does not have: discarded.
    assert_eq!(h.record_image(2, 1, &front), Ok(false));
    let fs = frames(40);
    let mut sent = [0u64; 2];
    let mut refused = [0u64; 2];
    for (i, f) in fs.iter().enumerate() {
        let k = i as u64;
        // Paced like a real camera, so the small image queue keeps up.
        for (c, img) in [&front, &wrist].into_iter().enumerate() {
            match h.record_image(c, image_ns(k), img) {
                Ok(true) => sent[c] += 1,
                Err(SendRejected::Full) => refused[c] += 1,
                other => panic!("{other:?}"),
            }
        }
        h.record_frame_with_images(&[image_ns(k), image_ns(k)], |out| *out = f.clone())
            .unwrap();
        if i == 20 {
            h.camera_gap(f.tick, f.t, 1, CameraGapReason::Stale)
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    // A burst far beyond the image queue: some are dropped, every drop is counted, and no
    // call blocks.
    let t0 = std::time::Instant::now();
    for k in 0..200u64 {
        for (c, img) in [&front, &wrist].into_iter().enumerate() {
            match h.record_image(c, image_ns(100 + k), img) {
                Ok(true) => sent[c] += 1,
                Err(SendRejected::Full) => refused[c] += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(refused[0] > 0 && refused[1] > 0, "{refused:?}");
    assert_eq!(h.dropped_images(0), refused[0]);
    assert_eq!(h.dropped_images(1), refused[1]);
    h.end_episode(Outcome::Success).unwrap();
    // After the end: discarded again, and not counted.
    assert_eq!(h.record_image(0, 1, &front), Ok(false));
    let report = rec.reports().recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(report.error.is_none(), "{report:?}");
    let status = rec.shutdown();
    assert_eq!(status.images_dropped, refused[0] + refused[1]);
    assert_eq!(status.images_lost, 0);
    assert_eq!(status.images_written, sent[0] + sent[1]);
    assert_eq!(status.frames_dropped, 0);

    let ep = read_episode(&report.path).unwrap();
    assert_eq!(ep.frames.len(), 40);
    assert_eq!(ep.images[0].images.len() as u64, sent[0]);
    assert_eq!(ep.images[1].images.len() as u64, sent[1]);
    assert_eq!(ep.image_capture_ns[7], vec![image_ns(7), image_ns(7)]);
    let mut back = Image::default();
    decode_jpeg(&ep.images[1].images[0].jpeg, &mut back).unwrap();
    assert!(psnr(&wrist, &back) > 30.0);
    let gap = ep
        .events
        .iter()
        .find_map(|e| match &e.event {
            Event::CameraGap { camera, reason } => Some((e.tick, camera.clone(), reason.clone())),
            _ => None,
        })
        .expect("a camera_gap event");
    assert_eq!(gap, (1020, "wrist".to_string(), "stale".to_string()));
}

#[test]
fn a_cut_file_with_images_recovers_to_its_last_complete_chunk() {
    let dir = common::tmp();
    let root = dir.path();
    write_with_images(root, "src", 0, 60, 10);
    let bytes = std::fs::read(episode_path(root, "src", 0)).unwrap();
    let len = bytes.len();
    let offsets: Vec<usize> = (1..12).map(|k| len * k / 12).chain([len - 1]).collect();
    for (k, &off) in offsets.iter().enumerate() {
        let p = episode_path(root, "cut", k as u32);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &bytes[..off]).unwrap();
    }
    let report = recover_all(root).unwrap();
    assert!(report.failed.is_empty(), "{report:#?}");
    let mut last = (0, 0);
    for k in 0..offsets.len() {
        let p = episode_path(root, "cut", k as u32);
        let ep = match read_episode(&p) {
            Ok(ep) => ep,
            Err(intervened_episodes::EpisodeError::NoEpisodeHeader { .. }) => continue,
            Err(e) => panic!("{}: {e}", p.display()),
        };
        assert!(ep.truncated);
        let n = ep.frames.len();
        let imgs = ep.images[0].images.len();
        // Frames and images are cut at the same chunk: frame i's images are written before it.
        assert_eq!(imgs, n.div_ceil(2), "cut {k}: {n} frames, {imgs} images");
        assert_eq!(ep.images[1].images.len(), imgs);
        for img in &ep.images[0].images {
            decode_jpeg(&img.jpeg, &mut Image::default()).unwrap();
        }
        assert!((n, imgs) >= last, "later cuts keep more");
        last = (n, imgs);
    }
    assert!(last.0 >= 50, "{last:?}");
}
