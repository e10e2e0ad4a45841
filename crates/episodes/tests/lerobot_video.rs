//! The LeRobot export with cameras, checked by LeRobot 0.4.4's own loader (in the repository's
//! `.lerobot-venv`, made by scripts/setup.sh --test): it decodes `observation.images.<name>`
//! from our MP4s, the counts match, and every decoded frame is the image the frame recorded
//! (PSNR >= 30 dB against the synthetic source, and clearly worse against its neighbours).
// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{synthetic_image, write_with_images};
use intervened_camera::{psnr, Image};
use intervened_episodes::{export_lerobot, ExportOptions};
use serde_json::Value;

fn lerobot_python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.lerobot-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh --test",
        p.display()
    );
    p
}

#[test]
fn lerobot_decodes_the_exported_video_frames_we_recorded() {
    let dir = common::tmp();
    let data = dir.path().join("data");
    let lengths = [30u64, 21];
    for (i, &n) in lengths.iter().enumerate() {
        write_with_images(&data, "v", i as u32, n, 10);
    }
    let out = dir.path().join("dataset");
    let summary = export_lerobot(&data, &out, &ExportOptions::default()).unwrap();
    assert_eq!(
        summary.video_keys,
        ["observation.images.front", "observation.images.wrist"]
    );
    assert_eq!(summary.frames_without_image, 0);
    let total: u64 = lengths.iter().sum();
    let stats: Value =
        serde_json::from_slice(&std::fs::read(out.join("meta/stats.json")).unwrap()).unwrap();
    for key in &summary.video_keys {
        assert!(out
            .join(format!("videos/{key}/chunk-000/file-000.mp4"))
            .is_file());
        // LeRobot's image statistics: per channel, shaped [3, 1, 1], in [0, 1].
        let s = &stats[key];
        assert_eq!(s["count"], serde_json::json!([total]), "{key}: {s}");
        for k in ["min", "max", "mean", "std", "q01", "q50", "q99"] {
            let v: Vec<Vec<Vec<f64>>> = serde_json::from_value(s[k].clone()).unwrap();
            assert_eq!(v.len(), 3, "{key} {k}");
            assert!(
                v.iter().all(|c| (0.0..=1.0).contains(&c[0][0])),
                "{key} {k}: {v:?}"
            );
        }
        assert_eq!(s["max"][0][0][0], 1.0, "the white square");
    }

    // LeRobot's default decoder (torchcodec, falling back to PyAV where torchcodec cannot load
    // the system's FFmpeg), then PyAV explicitly: both must see the same frames.
    for backends in ["torchcodec,pyav", "pyav"] {
        check_with_lerobot(&out, &dir.path().join(backends), backends, &lengths);
    }
}

fn check_with_lerobot(out: &Path, dump: &Path, backends: &str, lengths: &[u64]) {
    let total: u64 = lengths.iter().sum();
    std::fs::create_dir_all(dump).unwrap();
    let o = Command::new(lerobot_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lerobot_video_check.py"))
        .arg(out)
        .arg(dump)
        .arg(backends)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "LeRobot could not load the export:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!(
        "LeRobot decoded with {} (errors of other backends: {})",
        v["backend"], v["errors"]
    );
    assert_eq!(v["episodes"], 2, "{v}");
    assert_eq!(v["frames"], total, "{v}");
    assert_eq!(v["fps"], 50, "{v}");
    assert_eq!(
        v["video_keys"],
        serde_json::json!(["observation.images.front", "observation.images.wrist"])
    );
    let cams = common::cameras();
    for (c, cam) in cams.iter().enumerate() {
        let key = format!("observation.images.{}", cam.name);
        let (w, h) = (cam.width, cam.height);
        assert_eq!(v["shapes"][&key], serde_json::json!([3, h, w]), "{v}");
        assert_eq!(v["features"][&key]["dtype"], "video");
        assert_eq!(v["stats_shapes"][&key], serde_json::json!([3, 1, 1]), "{v}");
        let raw = std::fs::read(dump.join(format!("{key}.rgb"))).unwrap();
        let size = Image::byte_len(w, h);
        assert_eq!(
            raw.len(),
            size * total as usize,
            "{key}: decoded frame count"
        );
        let mut row = 0usize;
        let mut worst = f64::INFINITY;
        for &n in lengths {
            for i in 0..n {
                let got = Image {
                    width: w,
                    height: h,
                    data: raw[row * size..(row + 1) * size].to_vec(),
                };
                let k = i / 2 + 100 * c as u64;
                let want = synthetic_image(k, w, h);
                let p = psnr(&want, &got);
                worst = worst.min(p);
                assert!(p >= 30.0, "{key} row {row} (frame {i}): PSNR {p:.1} dB");
                // The image two ticks later differs (the square moved): the match is exact,
                // not merely close.
                let other = psnr(&synthetic_image(k + 1, w, h), &got);
                assert!(
                    other < p - 3.0,
                    "{key} row {row}: {p:.1} vs neighbour {other:.1} dB"
                );
                row += 1;
            }
        }
        eprintln!("{key}: {total} frames, worst PSNR {worst:.1} dB");
    }
    let ep_idx: Vec<i64> = serde_json::from_value(v["episode_index"].clone()).unwrap();
    assert_eq!(
        ep_idx.iter().filter(|&&e| e == 1).count() as u64,
        lengths[1]
    );
}
