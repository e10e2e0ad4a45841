//! Independent readers: the Python `mcap` package reads the episode files, `pyarrow` reads
//! the exported LeRobot dataset. Both live in the repository's `.venv` (scripts/setup.sh).

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{frames, meta, synthetic_image, write_with_images};
use intervened_episodes::{
    episode_path, export_lerobot, ControlSource, EpisodeWriter, Event, EventRecord, ExportOptions,
    Outcome,
};
use serde_json::Value;

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh --test to create the test venv (mcap, pyarrow)",
        p.display()
    );
    p
}

fn run_python(script: &str, args: &[&Path]) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg("-c").arg(script).args(args);
    python_json(cmd)
}

/// Runs a Python command and parses what it printed as JSON.
fn python_json(mut cmd: Command) -> Value {
    let out = cmd.output().expect("run python");
    assert!(
        out.status.success(),
        "python failed (run scripts/setup.sh --test if a module is missing):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

const MCAP_SCRIPT: &str = r#"
import json, sys
from mcap.reader import make_reader
out = {}
with open(sys.argv[1], "rb") as f:
    r = make_reader(f)
    s = r.get_summary()
    out["profile"] = r.get_header().profile
    out["schemas"] = {str(k): {"name": v.name, "encoding": v.encoding,
                               "type": json.loads(v.data)["type"]} for k, v in s.schemas.items()}
    out["channels"] = {c.topic: {"encoding": c.message_encoding,
                                 "schema": s.schemas[c.schema_id].name,
                                 "metadata": dict(c.metadata)} for c in s.channels.values()}
    out["stats_counts"] = {s.channels[k].topic: v for k, v in s.statistics.channel_message_counts.items()}
    counts, first = {}, {}
    for schema, channel, message in r.iter_messages():
        counts[channel.topic] = counts.get(channel.topic, 0) + 1
        first.setdefault(channel.topic, json.loads(message.data))
    out["counts"] = counts
    out["first"] = first
print(json.dumps(out))
"#;

#[test]
fn python_mcap_reads_episode_files() {
    let dir = common::tmp();
    let mut w = EpisodeWriter::create(dir.path(), &meta("py", 0)).unwrap();
    let fs = frames(40);
    for f in &fs {
        w.write_frame(f).unwrap();
    }
    w.write_event(&EventRecord {
        tick: 1020,
        t: 0.4,
        event: Event::ModeChange {
            from: "autonomous".into(),
            to: "intervening".into(),
            reason: "button".into(),
        },
    })
    .unwrap();
    w.finish(Outcome::Success, 0, 0).unwrap();
    let path = episode_path(dir.path(), "py", 0);
    let v = run_python(MCAP_SCRIPT, &[&path]);

    assert_eq!(v["profile"], "intervened");
    for s in v["schemas"].as_object().unwrap().values() {
        assert_eq!(s["encoding"], "jsonschema");
        assert_eq!(s["type"], "object");
    }
    let ch = v["channels"].as_object().unwrap();
    let topics: Vec<&str> = ch.keys().map(String::as_str).collect();
    for t in intervened_episodes::TOPICS {
        assert!(topics.contains(&t), "missing {t} in {topics:?}");
        assert_eq!(ch[t]["encoding"], "json");
    }
    assert_eq!(ch["/observation"]["schema"], "intervened.Observation");
    let names: Vec<String> = serde_json::from_str(
        ch["/observation"]["metadata"]["joint_names"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(names, common::JOINTS);

    let with_proposal = fs.iter().filter(|f| f.proposal.is_some()).count() as u64;
    let expect = [
        ("/observation", 40),
        ("/action", 40),
        ("/gamepad", 40),
        ("/policy/proposal", with_proposal),
        ("/events", 1),
        ("/episode", 2),
    ];
    for (topic, n) in expect {
        assert_eq!(v["counts"][topic], n, "{topic}");
        assert_eq!(
            v["stats_counts"][topic], n,
            "summary statistics for {topic}"
        );
    }
    assert_eq!(v["first"]["/episode"]["kind"], "begin");
    assert_eq!(v["first"]["/episode"]["meta"]["robot_type"], "koch_v1.1");
    assert_eq!(v["first"]["/action"]["source"], "robot");
    assert_eq!(v["first"]["/observation"]["tick"], 1000);
    assert_eq!(v["first"]["/events"]["event"]["kind"], "mode_change");
}

const ARROW_SCRIPT: &str = r#"
import json, sys, os
import pyarrow.parquet as pq
root = sys.argv[1]
out = {}
for rel in ["data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/tasks.parquet"]:
    t = pq.read_table(os.path.join(root, rel))
    out[rel] = {"rows": t.num_rows,
                "schema": {f.name: str(f.type) for f in t.schema},
                "cols": {n: t.column(n).to_pylist() for n in t.column_names
                         if not n.startswith("stats/") or n.startswith("stats/observation.state/")},
                "pandas": t.schema.pandas_metadata}
print(json.dumps(out))
"#;

#[test]
fn pyarrow_reads_the_lerobot_export() {
    let dir = common::tmp();
    let data = dir.path().join("data");
    // Session a: success (60 frames), discarded (skipped), truncated (cut mid-chunk).
    let fs = frames(60);
    let write = |session: &str, idx: u32, n: usize, outcome: Outcome, task: &str| {
        let mut m = meta(session, idx);
        m.task = task.to_string();
        let mut w = EpisodeWriter::create(&data, &m).unwrap();
        for (i, f) in fs.iter().take(n).enumerate() {
            w.write_frame(f).unwrap();
            if i % 10 == 9 {
                w.flush().unwrap();
            }
        }
        w.finish(outcome, 0, 0).unwrap();
    };
    write("a", 0, 60, Outcome::Success, "pick up the block");
    write("a", 1, 30, Outcome::Discarded, "pick up the block");
    write("b", 0, 25, Outcome::Failure, "push the block");
    // Cut b/1 after 20 flushed frames + a few bytes, without a manifest.
    write("b", 1, 40, Outcome::Success, "push the block");
    let p = episode_path(&data, "b", 1);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::remove_file(p.with_extension("json")).unwrap();
    let cut = {
        // Find a length that reads back exactly 20 frames.
        let mut n = bytes.len();
        loop {
            n -= 50;
            std::fs::write(&p, &bytes[..n]).unwrap();
            if intervened_episodes::read_episode(&p).unwrap().frames.len() <= 20 {
                break n;
            }
        }
    };
    std::fs::write(&p, &bytes[..cut]).unwrap();
    let recovered_frames = intervened_episodes::read_episode(&p).unwrap().frames.len();
    assert!(recovered_frames > 0);

    let out = dir.path().join("lerobot");
    let summary = export_lerobot(&data, &out, &ExportOptions::default()).unwrap();
    assert_eq!(summary.episodes.len(), 3);
    assert_eq!(summary.truncated_included, 1);
    assert_eq!(summary.skipped.len(), 1);
    let total = 60 + 25 + recovered_frames;
    assert_eq!(summary.total_frames, total);
    assert_eq!(summary.tasks, vec!["pick up the block", "push the block"]);
    // A second export refuses to clobber without overwrite, and works with it.
    assert!(export_lerobot(&data, &out, &ExportOptions::default()).is_err());
    let opts = ExportOptions {
        overwrite: true,
        ..ExportOptions::default()
    };
    export_lerobot(&data, &out, &opts).unwrap();
    assert!(!out.with_extension("partial").exists());

    let info: Value =
        serde_json::from_slice(&std::fs::read(out.join("meta/info.json")).unwrap()).unwrap();
    assert_eq!(info["codebase_version"], "v3.0");
    assert_eq!(info["fps"], 50);
    assert_eq!(info["total_episodes"], 3);
    assert_eq!(info["total_frames"], total);
    assert_eq!(info["total_tasks"], 2);
    assert_eq!(info["splits"]["train"], "0:3");
    assert_eq!(
        info["data_path"],
        "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    );
    assert!(info["video_path"].is_null());
    let feats = &info["features"];
    assert_eq!(feats["observation.state"]["names"][0], "shoulder_pan.pos");
    assert_eq!(feats["observation.state"]["shape"][0], 3);
    assert_eq!(
        feats["observation.environment_state"]["names"][1],
        "block.y"
    );
    assert_eq!(feats["timestamp"]["dtype"], "float32");
    assert_eq!(feats["next.done"]["dtype"], "bool");
    let stats: Value =
        serde_json::from_slice(&std::fs::read(out.join("meta/stats.json")).unwrap()).unwrap();
    for k in [
        "min", "max", "mean", "std", "q01", "q10", "q50", "q90", "q99",
    ] {
        assert_eq!(
            stats["observation.state"][k].as_array().unwrap().len(),
            3,
            "{k}"
        );
    }
    assert_eq!(stats["action"]["count"][0], total);
    // Gripper position is constant 0.5: min = max = mean, std 0.
    assert_eq!(stats["observation.state"]["min"][2], 0.5);
    assert_eq!(stats["observation.state"]["std"][2], 0.0);

    let v = run_python(ARROW_SCRIPT, &[&out]);
    let d = &v["data/chunk-000/file-000.parquet"];
    assert_eq!(d["rows"], total);
    let schema = d["schema"].as_object().unwrap();
    // Every info.json feature is a column, and every column a feature (LeRobot casts the
    // table to the features and fails on a mismatch).
    let mut cols: Vec<&String> = schema.keys().collect();
    let mut features: Vec<&String> = feats.as_object().unwrap().keys().collect();
    cols.sort();
    features.sort();
    assert_eq!(cols, features);
    assert_eq!(
        schema["observation.state"],
        "fixed_size_list<item: float>[3]"
    );
    assert_eq!(
        schema["observation.environment_state"],
        "fixed_size_list<item: float>[2]"
    );
    assert_eq!(schema["action"], "fixed_size_list<item: float>[3]");
    assert_eq!(schema["timestamp"], "float");
    for k in ["frame_index", "episode_index", "index", "task_index"] {
        assert_eq!(schema[k], "int64", "{k}");
    }
    assert_eq!(schema["next.done"], "bool");
    assert_eq!(schema["intervention"], "bool");
    assert_eq!(schema["control_source"], "string");
    let c = &d["cols"];
    let ep_idx: Vec<i64> = serde_json::from_value(c["episode_index"].clone()).unwrap();
    let index: Vec<i64> = serde_json::from_value(c["index"].clone()).unwrap();
    assert_eq!(index, (0..total as i64).collect::<Vec<_>>());
    assert_eq!(ep_idx.iter().filter(|&&e| e == 0).count(), 60);
    assert_eq!(ep_idx.iter().filter(|&&e| e == 1).count(), 25);
    assert_eq!(*ep_idx.iter().max().unwrap(), 2);
    let ts: Vec<f64> = serde_json::from_value(c["timestamp"].clone()).unwrap();
    let fi: Vec<i64> = serde_json::from_value(c["frame_index"].clone()).unwrap();
    assert_eq!(fi[60], 0);
    assert!((ts[59] - 59.0 / 50.0).abs() < 1e-6 && ts[60] == 0.0);
    let done: Vec<bool> = serde_json::from_value(c["next.done"].clone()).unwrap();
    assert_eq!(done.iter().filter(|&&x| x).count(), 3);
    assert!(done[59] && done[84] && done[total - 1]);
    let inter: Vec<bool> = serde_json::from_value(c["intervention"].clone()).unwrap();
    let src: Vec<String> = serde_json::from_value(c["control_source"].clone()).unwrap();
    let labels: Vec<String> = serde_json::from_value(c["label"].clone()).unwrap();
    for i in 0..60 {
        let expect = common::source_at(i as u64);
        assert_eq!(inter[i], expect == ControlSource::Intervention);
        assert_eq!(src[i], expect.as_str());
    }
    assert_eq!(labels[4], "robot");
    assert_eq!(labels[5], "pre-intervention");
    assert_eq!(labels[20], "intervention");
    let task_idx: Vec<i64> = serde_json::from_value(c["task_index"].clone()).unwrap();
    assert_eq!((task_idx[0], task_idx[60]), (0, 1));
    let state: Vec<Vec<f64>> = serde_json::from_value(c["observation.state"].clone()).unwrap();
    assert!((state[10][0] - 0.1).abs() < 1e-6);

    let e = &v["meta/episodes/chunk-000/file-000.parquet"];
    assert_eq!(e["rows"], 3);
    let es = e["schema"].as_object().unwrap();
    for k in [
        "episode_index",
        "tasks",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
        "dataset_to_index",
        "meta/episodes/chunk_index",
        "meta/episodes/file_index",
        "stats/observation.state/mean",
        "stats/action/count",
    ] {
        assert!(es.contains_key(k), "episodes parquet lacks {k}");
    }
    assert_eq!(es["tasks"], "list<item: string>");
    assert_eq!(e["cols"]["episode_index"], serde_json::json!([0, 1, 2]));
    assert_eq!(
        e["cols"]["length"],
        serde_json::json!([60, 25, recovered_frames])
    );
    assert_eq!(
        e["cols"]["dataset_from_index"],
        serde_json::json!([0, 60, 85])
    );
    assert_eq!(
        e["cols"]["dataset_to_index"],
        serde_json::json!([60, 85, total])
    );
    assert_eq!(e["cols"]["tasks"][1][0], "push the block");
    assert_eq!(
        e["cols"]["intervened_truncated"],
        serde_json::json!([false, false, true])
    );
    assert_eq!(e["cols"]["stats/observation.state/min"][0][2], 0.5);

    let t = &v["meta/tasks.parquet"];
    assert_eq!(t["rows"], 2);
    assert_eq!(
        t["cols"]["task"],
        serde_json::json!(["pick up the block", "push the block"])
    );
    assert_eq!(t["cols"]["task_index"], serde_json::json!([0, 1]));
    // pandas restores `task` as the index (LeRobot looks tasks up with tasks.iloc[i].name).
    assert_eq!(t["pandas"]["index_columns"], serde_json::json!(["task"]));
}

fn mcap_strict(paths: &[PathBuf]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcap_strict.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).args(paths);
    python_json(cmd)
}

/// One recording cut at many offsets (inside chunks, at chunk ends, in the summary, in the
/// header), each copy recovered: the official Python reader opens every file through its
/// summary, and reads as many messages as our reader recovered.
#[test]
fn python_mcap_reads_every_recovered_file() {
    let dir = common::tmp();
    let root = dir.path();
    let mut w = EpisodeWriter::create(root, &meta("src", 0)).unwrap();
    let mut ends = vec![w.file_len().unwrap()];
    for (i, f) in frames(60).iter().enumerate() {
        w.write_frame(f).unwrap();
        if i % 10 == 9 {
            w.flush().unwrap();
            ends.push(w.file_len().unwrap());
        }
    }
    w.finish(Outcome::Failure, 0, 0).unwrap();
    let src = episode_path(root, "src", 0);
    let bytes = std::fs::read(&src).unwrap();
    let len = bytes.len() as u64;
    let mut offsets = vec![5, 20, len - 1, len - 30, len - 200];
    for w in ends.windows(2) {
        offsets.extend([w[0] + 1, w[0] + 9, (w[0] + w[1]) / 2, w[1] - 1, w[1]]);
    }
    let mut paths = vec![src.clone()];
    for (k, &off) in offsets.iter().enumerate() {
        let p = episode_path(root, "cut", k as u32);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &bytes[..off as usize]).unwrap();
        paths.push(p);
    }
    let report = intervened_episodes::recover_all(root).unwrap();
    assert!(report.failed.is_empty(), "{report:#?}");
    assert_eq!(report.repaired().count(), offsets.len());

    let v = mcap_strict(&paths);
    let mut messages = 0;
    for p in &paths {
        let r = &v[p.to_str().unwrap()];
        let ctx = format!("{} ({r})", p.display());
        assert_eq!(r["error"], Value::Null, "{ctx}");
        assert_eq!(r["summary"], true, "{ctx}");
        assert_eq!(r["footer"], true, "{ctx}");
        assert_eq!(r["stats"], r["messages"], "{ctx}");
        // As many messages as our reader recovered from the cut file.
        let ours = match report.files.iter().find(|f| &f.path == p) {
            Some(f) => f.repair.as_ref().map(|r| r.messages),
            None => None,
        };
        if let Some(n) = ours {
            assert_eq!(r["messages"], n, "{ctx}");
        }
        match intervened_episodes::read_episode(p) {
            Ok(ep) => {
                let n = ep.frames.len() as u64;
                let topic = |t: &str| r["topics"][t].as_u64().unwrap_or(0);
                assert_eq!(topic("/observation"), n, "{ctx}");
                assert_eq!(topic("/action"), n, "{ctx}");
                assert_eq!(topic("/gamepad"), n, "{ctx}");
            }
            // Cut inside the header chunk: a valid MCAP file with no episode in it.
            Err(intervened_episodes::EpisodeError::NoEpisodeHeader { .. }) => {
                assert_eq!(r["messages"], 0, "{ctx}");
            }
            Err(e) => panic!("{ctx}: {e}"),
        }
        messages += r["messages"].as_u64().unwrap();
    }
    eprintln!(
        "mcap strict: {} files, {messages} messages, 0 bad",
        paths.len()
    );
}

const MCAP_IMAGES_SCRIPT: &str = r#"
import io, json, sys
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory
from PIL import Image
out = {"channels": {}, "images": {}}
with open(sys.argv[1], "rb") as f:
    r = make_reader(f, decoder_factories=[DecoderFactory()])
    s = r.get_summary()
    for c in s.channels.values():
        sc = s.schemas[c.schema_id]
        out["channels"][c.topic] = {"encoding": c.message_encoding, "schema": sc.name,
                                    "schema_encoding": sc.encoding, "metadata": dict(c.metadata)}
    out["stats_counts"] = {s.channels[k].topic: v for k, v in s.statistics.channel_message_counts.items()}
    for schema, channel, message, msg in r.iter_decoded_messages(topics=["/camera/front", "/camera/wrist"]):
        img = Image.open(io.BytesIO(msg.data))
        img.load()
        px = list(img.convert("RGB").getdata())
        out["images"].setdefault(channel.topic, []).append({
            "type": type(msg).DESCRIPTOR.full_name,
            "stamp_ns": msg.timestamp.seconds * 10**9 + msg.timestamp.nanos,
            "log_time": message.log_time, "frame_id": msg.frame_id, "format": msg.format,
            "pil_format": img.format, "size": list(img.size),
            "rgb": [v for p in px for v in p],
        })
print(json.dumps(out))
"#;

/// The official Python `mcap` reader with `mcap-protobuf-support` opens an episode with two
/// cameras through its summary and decodes every image as a `foxglove.CompressedImage`;
/// Pillow decodes each JPEG to the image we recorded.
#[test]
fn python_mcap_decodes_camera_images_as_foxglove_compressed_image() {
    let dir = common::tmp();
    let m = write_with_images(dir.path(), "cam", 0, 40, 10);
    let path = episode_path(dir.path(), "cam", 0);
    let v = run_python(MCAP_IMAGES_SCRIPT, &[&path]);
    for (c, cam) in m.cameras.iter().enumerate() {
        let topic = format!("/camera/{}", cam.name);
        let ch = &v["channels"][&topic];
        assert_eq!(ch["schema"], "foxglove.CompressedImage", "{topic}: {ch}");
        assert_eq!(ch["encoding"], "protobuf", "{topic}");
        assert_eq!(ch["schema_encoding"], "protobuf", "{topic}");
        assert_eq!(ch["metadata"]["width"], cam.width.to_string());
        assert_eq!(v["stats_counts"][&topic], 20, "{topic}");
        let imgs = v["images"][&topic].as_array().unwrap();
        assert_eq!(imgs.len(), 20, "{topic}");
        for (k, img) in imgs.iter().enumerate() {
            let k = k as u64;
            assert_eq!(img["type"], "foxglove.CompressedImage");
            assert_eq!(img["stamp_ns"], common::image_ns(k));
            assert_eq!(img["log_time"], m.started_at + k * 40_000_000);
            assert_eq!(img["frame_id"], cam.name.as_str());
            assert_eq!(
                (&img["format"], &img["pil_format"]),
                (&"jpeg".into(), &"JPEG".into())
            );
            assert_eq!(img["size"], serde_json::json!([cam.width, cam.height]));
            let rgb: Vec<u8> = serde_json::from_value(img["rgb"].clone()).unwrap();
            let got = intervened_camera::Image {
                width: cam.width,
                height: cam.height,
                data: rgb,
            };
            let want = synthetic_image(k + c as u64 * 100, cam.width, cam.height);
            let p = intervened_camera::psnr(&want, &got);
            assert!(p >= 30.0, "{topic} image {k}: PSNR {p:.1} dB");
        }
    }
    // The joint channels are there as always.
    assert_eq!(v["stats_counts"]["/observation"], 40);
}
