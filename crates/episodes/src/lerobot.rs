//! LeRobotDataset v3.0 export:
//!
//! ```text
//! meta/info.json  meta/stats.json  meta/tasks.parquet
//! meta/episodes/chunk-000/file-000.parquet
//! data/chunk-000/file-000.parquet
//! videos/observation.images.<camera>/chunk-000/file-000.mp4   (only with cameras)
//! meta/intervened.json   (provenance: which recorded episode each exported one came from)
//! ```
//!
//! Cameras become LeRobot video features `observation.images.<name>` (dtype `video`, shape
//! `[h, w, 3]`): one MP4 per camera holding every episode back to back at the dataset's fps,
//! one video frame per data row, and each episode's place in it in the episodes parquet
//! (`videos/<key>/from_timestamp`, `to_timestamp`, `chunk_index`, `file_index`). Row i shows
//! the image whose capture time the frame recorded (`image_capture_ns`), else the newest image
//! logged at or before the frame. Encoding needs the `ffmpeg` program (see [`crate::video`]).
//! Episodes without cameras export exactly as before: no `videos/`, `video_path` null.
//!
//! Data columns: `observation.state` (measured joint positions, float32[n], names
//! `<joint>.pos`), `observation.environment_state` (task features such as the block position,
//! float32[m], only when the episodes have task features: kept apart from the robot state as
//! LeRobot's own simulated datasets do), `action` (the executed goal, float32[n], names
//! `<joint>.pos`), `timestamp` (float32, frame_index / fps), `frame_index`, `episode_index`,
//! `index`, `task_index` (int64), `next.done` (bool, last frame of the episode),
//! `intervention` (bool, the human was driving), `control_source` (string: demo, robot,
//! intervention) and `label` (string: the Sirius class, with pre-intervention derived over
//! the configured window).
//!
//! Episodes are renumbered 0..N-1 without gaps; discarded and empty episodes are skipped.
//! Truncated (crash-recovered) episodes are included up to their last complete chunk and
//! listed in the summary and in `meta/intervened.json`.
//!
//! The dataset is built in `<out>.partial` and renamed into place, so an interrupted export
//! never leaves a half-written dataset behind.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, ListArray,
    RecordBatch, StringArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tracing::{info, warn};

use crate::error::{EpisodeError, Result};
use crate::labels::{derive_labels, DEFAULT_PRE_INTERVENTION_WINDOW};
use crate::layout;
use crate::manifest::Manifest;
use crate::reader::read_episode;
use crate::types::{CameraInfo, ControlSource, Outcome};
use crate::video::{encode_episode, PixelStats, VideoEncoder, VIDEO_CODEC, VIDEO_PIX_FMT};

pub const CODEBASE_VERSION: &str = "v3.0";
const CHUNKS_SIZE: u64 = 1000;
const DATA_FILES_SIZE_IN_MB: u64 = 100;
const VIDEO_FILES_SIZE_IN_MB: u64 = 500;
const DATA_PATH: &str = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet";
const VIDEO_PATH: &str = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4";
const QUANTILES: [(&str, f64); 5] = [
    ("q01", 0.01),
    ("q10", 0.10),
    ("q50", 0.50),
    ("q90", 0.90),
    ("q99", 0.99),
];

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Frames before each takeover labelled `pre-intervention` in the `label` column.
    pub pre_intervention_window: usize,
    /// Only these sessions (all when `None`).
    pub sessions: Option<Vec<String>>,
    /// Include crash-recovered (truncated) episodes.
    pub include_truncated: bool,
    /// Replace an existing dataset at the output directory.
    pub overwrite: bool,
    /// Task text for episodes recorded without one.
    pub default_task: String,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            pre_intervention_window: DEFAULT_PRE_INTERVENTION_WINDOW,
            sessions: None,
            include_truncated: true,
            overwrite: false,
            default_task: "unspecified task".to_string(),
        }
    }
}

/// One exported episode and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedEpisode {
    pub episode_index: i64,
    pub session_id: String,
    pub source_episode: u32,
    pub frames: usize,
    pub outcome: Outcome,
    pub truncated: bool,
    pub intervention_steps: u64,
}

/// What [`export_lerobot`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub out_dir: PathBuf,
    pub episodes: Vec<ExportedEpisode>,
    pub total_frames: usize,
    pub tasks: Vec<String>,
    /// Episodes left out, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Exported episodes that were crash-recovered (cut short).
    pub truncated_included: usize,
    /// Video features written (`observation.images.<camera>`), none without cameras (and then
    /// left out of the JSON, which stays as it was).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub video_keys: Vec<String>,
    /// Exported frames that had no image of some camera at all (shown black).
    #[serde(skip_serializing_if = "is_zero")]
    pub frames_without_image: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The LeRobot feature of camera `name`.
pub fn video_key(name: &str) -> String {
    format!("observation.images.{name}")
}

/// A numeric feature, flattened row-major, kept as f64 for statistics.
struct NumFeature {
    name: &'static str,
    dim: usize,
    values: Vec<f64>,
}

impl NumFeature {
    fn new(name: &'static str, dim: usize) -> Self {
        Self {
            name,
            dim,
            values: Vec::new(),
        }
    }

    /// Per-dimension statistics over rows `[from, to)`.
    fn stats(&self, from: usize, to: usize) -> Stats {
        let mut s = Stats {
            count: (to - from) as i64,
            ..Stats::default()
        };
        for d in 0..self.dim {
            let mut col: Vec<f64> = (from..to)
                .filter_map(|r| self.values.get(r * self.dim + d).copied())
                .filter(|v| !v.is_nan())
                .collect();
            col.sort_by(f64::total_cmp);
            let n = col.len() as f64;
            let mean = if col.is_empty() {
                0.0
            } else {
                col.iter().sum::<f64>() / n
            };
            let var = if col.is_empty() {
                0.0
            } else {
                col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n
            };
            s.min.push(col.first().copied().unwrap_or(0.0));
            s.max.push(col.last().copied().unwrap_or(0.0));
            s.mean.push(mean);
            s.std.push(var.sqrt());
            for (i, (_, q)) in QUANTILES.iter().enumerate() {
                if let Some(slot) = s.quantiles.get_mut(i) {
                    slot.push(quantile(&col, *q));
                }
            }
        }
        s
    }
}

/// Linear interpolation between closest ranks (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (
        sorted.get(lo).copied().unwrap_or(0.0),
        sorted.get(hi).copied().unwrap_or(0.0),
    );
    a + (b - a) * (pos - lo as f64)
}

#[derive(Debug, Default)]
struct Stats {
    min: Vec<f64>,
    max: Vec<f64>,
    mean: Vec<f64>,
    std: Vec<f64>,
    count: i64,
    quantiles: [Vec<f64>; 5],
}

impl Stats {
    fn named(&self) -> Vec<(&'static str, Vec<f64>)> {
        let mut v = vec![
            ("min", self.min.clone()),
            ("max", self.max.clone()),
            ("mean", self.mean.clone()),
            ("std", self.std.clone()),
        ];
        for (i, (name, _)) in QUANTILES.iter().enumerate() {
            v.push((name, self.quantiles.get(i).cloned().unwrap_or_default()));
        }
        v
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in self.named() {
            m.insert(k.to_string(), json!(v));
        }
        m.insert("count".into(), json!([self.count]));
        Value::Object(m)
    }
}

/// Everything accumulated from the episodes before writing.
struct Accum {
    joint_names: Vec<String>,
    task_feature_names: Vec<String>,
    fps: f64,
    robot_type: String,
    state: NumFeature,
    env: NumFeature,
    action: NumFeature,
    timestamp: NumFeature,
    frame_index: NumFeature,
    episode_index: NumFeature,
    index: NumFeature,
    task_index: NumFeature,
    done: NumFeature,
    intervention: NumFeature,
    control_source: Vec<&'static str>,
    label: Vec<&'static str>,
    /// Per episode: `[from, to)` rows and task index.
    ranges: Vec<(usize, usize, i64)>,
    tasks: Vec<String>,
    cameras: Vec<CameraInfo>,
    /// One per camera, fed episode by episode.
    videos: Vec<VideoEncoder>,
    /// One per camera: pixel statistics over every exported frame.
    pixel_stats: Vec<PixelStats>,
    frames_without_image: u64,
}

impl Accum {
    fn numeric(&self) -> Vec<&NumFeature> {
        let mut v = vec![&self.state];
        if self.env.dim > 0 {
            v.push(&self.env);
        }
        v.extend([
            &self.action,
            &self.timestamp,
            &self.frame_index,
            &self.episode_index,
            &self.index,
            &self.task_index,
            &self.done,
            &self.intervention,
        ]);
        v
    }
}

fn collect_episodes(data_root: &Path, opts: &ExportOptions) -> Result<Vec<(PathBuf, Manifest)>> {
    let mut out = Vec::new();
    for id in layout::session_ids(data_root)? {
        if let Some(wanted) = &opts.sessions {
            if !wanted.contains(&id) {
                continue;
            }
        }
        let summary = crate::summary::summarize_session(&layout::session_dir(data_root, &id))?;
        for m in summary.episodes {
            out.push((summary.dir.join(&m.file), m));
        }
    }
    Ok(out)
}

/// Export every recorded episode under `data_root` as a LeRobotDataset v3.0 at `out_dir`.
pub fn export_lerobot(
    data_root: &Path,
    out_dir: &Path,
    opts: &ExportOptions,
) -> Result<ExportSummary> {
    if out_dir.exists() && !opts.overwrite {
        let empty = fs::read_dir(out_dir)
            .map_err(|e| EpisodeError::io(out_dir, e))?
            .next()
            .is_none();
        if !empty {
            return Err(EpisodeError::Export(format!(
                "{} exists and is not empty (pass overwrite to replace it)",
                out_dir.display()
            )));
        }
    }
    let mut skipped = Vec::new();
    let mut exported = Vec::new();
    let mut acc: Option<Accum> = None;
    // Videos are encoded into the partial dataset while episodes are read (an episode's images
    // are held in memory only while it is exported).
    let partial = with_suffix(out_dir, ".partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(|e| EpisodeError::io(&partial, e))?;
    }
    for (path, manifest) in collect_episodes(data_root, opts)? {
        if manifest.outcome == Outcome::Discarded {
            skipped.push((path, "discarded".to_string()));
            continue;
        }
        if manifest.frames == 0 {
            skipped.push((path, "no frames".to_string()));
            continue;
        }
        let ep = match read_episode(&path) {
            Ok(ep) => ep,
            Err(e) => {
                warn!(error = %e, "skipping unreadable episode");
                skipped.push((path, e.to_string()));
                continue;
            }
        };
        if ep.truncated && !opts.include_truncated {
            skipped.push((path, "truncated".to_string()));
            continue;
        }
        if ep.frames.is_empty() {
            skipped.push((path, "no frames".to_string()));
            continue;
        }
        let meta = &ep.meta;
        if acc.is_none() {
            acc = Some(new_accum(meta, &partial)?);
        }
        let Some(a) = acc.as_mut() else {
            continue;
        };
        if !same_cameras(&meta.cameras, &a.cameras) {
            return Err(EpisodeError::Export(format!(
                "{}: cameras {:?} differ from the first episode's ({:?}); export those \
                 sessions separately",
                path.display(),
                camera_list(&meta.cameras),
                camera_list(&a.cameras)
            )));
        }
        if meta.joint_names != a.joint_names
            || meta.task_feature_names != a.task_feature_names
            || (meta.fps - a.fps).abs() > 1e-9
        {
            return Err(EpisodeError::Export(format!(
                "{}: joints {:?}, task features {:?} at {} fps differ from the first episode's \
                 ({:?}, {:?}, {} fps); export those sessions separately",
                path.display(),
                meta.joint_names,
                meta.task_feature_names,
                meta.fps,
                a.joint_names,
                a.task_feature_names,
                a.fps
            )));
        }
        let task = if meta.task.trim().is_empty() {
            opts.default_task.clone()
        } else {
            meta.task.clone()
        };
        let task_index = match a.tasks.iter().position(|t| *t == task) {
            Some(i) => i,
            None => {
                a.tasks.push(task);
                a.tasks.len() - 1
            }
        } as i64;
        let episode_index = exported.len() as i64;
        let from = a.control_source.len();
        let n = ep.frames.len();
        let labels = derive_labels(&ep.sources(), opts.pre_intervention_window);
        for (i, (f, label)) in ep.frames.iter().zip(&labels).enumerate() {
            if f.q.len() != a.state.dim || f.goal.len() != a.action.dim || f.task.len() != a.env.dim
            {
                return Err(EpisodeError::FrameShape {
                    tick: f.tick,
                    field: "q/goal/task",
                    got: f.q.len(),
                    expected: a.state.dim,
                });
            }
            a.state.values.extend(&f.q);
            a.env.values.extend(&f.task);
            a.action.values.extend(&f.goal);
            a.timestamp.values.push(f64::from(i as f32 / a.fps as f32));
            a.frame_index.values.push(i as f64);
            a.episode_index.values.push(episode_index as f64);
            a.index.values.push((from + i) as f64);
            a.task_index.values.push(task_index as f64);
            a.done.values.push(if i + 1 == n { 1.0 } else { 0.0 });
            a.intervention
                .values
                .push(if f.source == ControlSource::Intervention {
                    1.0
                } else {
                    0.0
                });
            a.control_source.push(f.source.as_str());
            a.label.push(label.as_str());
        }
        a.ranges.push((from, from + n, task_index));
        for (c, (enc, stats)) in a.videos.iter_mut().zip(&mut a.pixel_stats).enumerate() {
            let missing = encode_episode(&ep, c, enc, stats)?;
            if missing > 0 {
                warn!(
                    path = %path.display(),
                    camera = %meta.cameras[c].name,
                    frames = missing,
                    "camera has no image at all in this episode: exported black"
                );
                a.frames_without_image += missing;
            }
        }
        exported.push(ExportedEpisode {
            episode_index,
            session_id: meta.session_id.clone(),
            source_episode: meta.episode_index,
            frames: n,
            outcome: ep.manifest.outcome,
            truncated: ep.truncated,
            intervention_steps: ep.manifest.intervention_steps,
        });
    }
    let Some(mut acc) = acc else {
        return Err(EpisodeError::Export(format!(
            "no episodes to export under {}",
            data_root.display()
        )));
    };
    for enc in std::mem::take(&mut acc.videos) {
        let frames = enc.frames;
        enc.finish()?;
        if frames as usize != acc.control_source.len() {
            return Err(EpisodeError::Export(format!(
                "video has {frames} frames for {} rows",
                acc.control_source.len()
            )));
        }
    }
    write_dataset(&partial, &acc, &exported, opts)?;
    if out_dir.exists() {
        let old = with_suffix(out_dir, ".old");
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| EpisodeError::io(&old, e))?;
        }
        fs::rename(out_dir, &old).map_err(|e| EpisodeError::io(out_dir, e))?;
        fs::rename(&partial, out_dir).map_err(|e| EpisodeError::io(out_dir, e))?;
        fs::remove_dir_all(&old).map_err(|e| EpisodeError::io(&old, e))?;
    } else {
        if let Some(parent) = out_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| EpisodeError::io(parent, e))?;
        }
        fs::rename(&partial, out_dir).map_err(|e| EpisodeError::io(out_dir, e))?;
    }
    let summary = ExportSummary {
        out_dir: out_dir.to_path_buf(),
        total_frames: acc.control_source.len(),
        truncated_included: exported.iter().filter(|e| e.truncated).count(),
        episodes: exported,
        tasks: acc.tasks,
        skipped,
        video_keys: acc.cameras.iter().map(|c| video_key(&c.name)).collect(),
        frames_without_image: acc.frames_without_image,
    };
    info!(
        out = %out_dir.display(),
        episodes = summary.episodes.len(),
        frames = summary.total_frames,
        truncated = summary.truncated_included,
        skipped = summary.skipped.len(),
        "exported LeRobotDataset v3.0"
    );
    Ok(summary)
}

fn camera_list(c: &[CameraInfo]) -> Vec<String> {
    c.iter()
        .map(|c| format!("{} {}x{}", c.name, c.width, c.height))
        .collect()
}

/// Same names and sizes in the same order (the capture rate may differ).
fn same_cameras(a: &[CameraInfo], b: &[CameraInfo]) -> bool {
    camera_list(a) == camera_list(b)
}

fn new_accum(meta: &crate::types::EpisodeMeta, partial: &Path) -> Result<Accum> {
    let mut videos = Vec::new();
    for cam in &meta.cameras {
        let dir = partial
            .join("videos")
            .join(video_key(&cam.name))
            .join("chunk-000");
        mkdirs(&dir)?;
        videos.push(VideoEncoder::spawn(
            &dir.join("file-000.mp4"),
            cam.width,
            cam.height,
            meta.fps,
        )?);
    }
    Ok(Accum {
        joint_names: meta.joint_names.clone(),
        task_feature_names: meta.task_feature_names.clone(),
        fps: meta.fps,
        robot_type: meta.robot_type.clone(),
        state: NumFeature::new("observation.state", meta.joint_names.len()),
        env: NumFeature::new(
            "observation.environment_state",
            meta.task_feature_names.len(),
        ),
        action: NumFeature::new("action", meta.joint_names.len()),
        timestamp: NumFeature::new("timestamp", 1),
        frame_index: NumFeature::new("frame_index", 1),
        episode_index: NumFeature::new("episode_index", 1),
        index: NumFeature::new("index", 1),
        task_index: NumFeature::new("task_index", 1),
        done: NumFeature::new("next.done", 1),
        intervention: NumFeature::new("intervention", 1),
        control_source: Vec::new(),
        label: Vec::new(),
        ranges: Vec::new(),
        tasks: Vec::new(),
        cameras: meta.cameras.clone(),
        pixel_stats: vec![PixelStats::default(); videos.len()],
        videos,
        frames_without_image: 0,
    })
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_json_file(path: &Path, v: &Value) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| EpisodeError::json(path, e))?;
    bytes.push(b'\n');
    fs::write(path, bytes).map_err(|e| EpisodeError::io(path, e))
}

fn mkdirs(p: &Path) -> Result<()> {
    fs::create_dir_all(p).map_err(|e| EpisodeError::io(p, e))
}

fn feature(dtype: &str, shape: usize, names: Option<Vec<String>>) -> Value {
    json!({"dtype": dtype, "shape": [shape], "names": names})
}

fn write_dataset(
    dir: &Path,
    acc: &Accum,
    eps: &[ExportedEpisode],
    opts: &ExportOptions,
) -> Result<()> {
    let meta = dir.join("meta");
    mkdirs(&meta.join("episodes/chunk-000"))?;
    mkdirs(&dir.join("data/chunk-000"))?;
    let total = acc.control_source.len();
    let pos_names: Vec<String> = acc.joint_names.iter().map(|j| format!("{j}.pos")).collect();

    // info.json
    let mut features = Map::new();
    features.insert(
        "observation.state".into(),
        feature("float32", acc.state.dim, Some(pos_names.clone())),
    );
    if acc.env.dim > 0 {
        features.insert(
            "observation.environment_state".into(),
            feature("float32", acc.env.dim, Some(acc.task_feature_names.clone())),
        );
    }
    features.insert(
        "action".into(),
        feature("float32", acc.action.dim, Some(pos_names.clone())),
    );
    features.insert("timestamp".into(), feature("float32", 1, None));
    for k in ["frame_index", "episode_index", "index", "task_index"] {
        features.insert(k.into(), feature("int64", 1, None));
    }
    features.insert("next.done".into(), feature("bool", 1, None));
    features.insert("intervention".into(), feature("bool", 1, None));
    features.insert("control_source".into(), feature("string", 1, None));
    features.insert("label".into(), feature("string", 1, None));
    // LeRobot stores an integral fps as an integer.
    let fps = if acc.fps.fract() == 0.0 && acc.fps > 0.0 && acc.fps < 1e9 {
        json!(acc.fps as i64)
    } else {
        json!(acc.fps)
    };
    // What LeRobot's `get_video_info` reads back from the MP4.
    for cam in &acc.cameras {
        features.insert(
            video_key(&cam.name),
            json!({
                "dtype": "video",
                "shape": [cam.height, cam.width, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": cam.height,
                    "video.width": cam.width,
                    "video.codec": VIDEO_CODEC,
                    "video.pix_fmt": VIDEO_PIX_FMT,
                    "video.is_depth_map": false,
                    "video.fps": fps,
                    "video.channels": 3,
                    "has_audio": false,
                },
            }),
        );
    }
    let video_path = if acc.cameras.is_empty() {
        Value::Null
    } else {
        json!(VIDEO_PATH)
    };
    let info = json!({
        "codebase_version": CODEBASE_VERSION,
        "robot_type": acc.robot_type,
        "total_episodes": eps.len(),
        "total_frames": total,
        "total_tasks": acc.tasks.len(),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": fps,
        "splits": {"train": format!("0:{}", eps.len())},
        "data_path": DATA_PATH,
        "video_path": video_path,
        "features": features,
    });
    write_json_file(&meta.join("info.json"), &info)?;

    // stats.json
    let mut stats = Map::new();
    for f in acc.numeric() {
        stats.insert(f.name.to_string(), f.stats(0, total).to_json());
    }
    for (cam, px) in acc.cameras.iter().zip(&acc.pixel_stats) {
        stats.insert(video_key(&cam.name), px.to_json(&QUANTILES));
    }
    write_json_file(&meta.join("stats.json"), &Value::Object(stats))?;

    write_tasks(&meta.join("tasks.parquet"), &acc.tasks)?;
    write_episodes(&meta.join("episodes/chunk-000/file-000.parquet"), acc, eps)?;
    write_data(&dir.join("data/chunk-000/file-000.parquet"), acc)?;

    let provenance = json!({
        "exported_by": concat!("intervened-episodes/", env!("CARGO_PKG_VERSION")),
        "pre_intervention_window": opts.pre_intervention_window,
        "label_values": ["demo", "robot", "intervention", "pre-intervention"],
        "control_source_values": ["demo", "robot", "intervention"],
        "observation.environment_state": acc.task_feature_names,
        "episodes": eps,
    });
    let mut provenance = provenance;
    if !acc.cameras.is_empty() {
        provenance["cameras"] = json!(acc.cameras);
        provenance["video_alignment"] = json!(
            "row i shows the image whose capture time the frame recorded (image_capture_ns), \
             else the newest image logged at or before the frame"
        );
    }
    write_json_file(&meta.join("intervened.json"), &provenance)
}

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .build()
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file = File::create(path).map_err(|e| EpisodeError::io(path, e))?;
    let perr = |source| EpisodeError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props())).map_err(perr)?;
    w.write(batch).map_err(perr)?;
    w.close().map_err(perr)?;
    Ok(())
}

/// `tasks.parquet` as pandas writes `DataFrame({"task_index": ...}, index=Index(tasks, name="task"))`:
/// LeRobot reads it with pandas and looks tasks up by index, so the pandas metadata that
/// marks `task` as the index must be there.
fn write_tasks(path: &Path, tasks: &[String]) -> Result<()> {
    let pandas = json!({
        "index_columns": ["task"],
        "column_indexes": [{"name": null, "field_name": null, "pandas_type": "unicode", "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": null},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": null}
        ],
        "creator": {"library": "intervened-episodes", "version": env!("CARGO_PKG_VERSION")},
        "pandas_version": "2.2.3"
    });
    let schema = Schema::new_with_metadata(
        vec![
            Field::new("task_index", DataType::Int64, true),
            Field::new("task", DataType::Utf8, true),
        ],
        HashMap::from([("pandas".to_string(), pandas.to_string())]),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..tasks.len() as i64)),
            Arc::new(StringArray::from_iter_values(tasks.iter())),
        ],
    )?;
    write_parquet(path, &batch)
}

fn fixed_list(values: &[f64], dim: usize) -> Result<(Field, ArrayRef)> {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let floats: Float32Array = values.iter().map(|&v| Some(v as f32)).collect();
    let size = i32::try_from(dim).map_err(|_| EpisodeError::Export("feature too wide".into()))?;
    let arr = FixedSizeListArray::try_new(item.clone(), size, Arc::new(floats), None)?;
    let field = Field::new("", DataType::FixedSizeList(item, size), true);
    Ok((field, Arc::new(arr)))
}

fn int_col(f: &NumFeature, from: usize, to: usize) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        f.values
            .get(from..to)
            .unwrap_or_default()
            .iter()
            .map(|&v| v as i64),
    ))
}

fn write_data(path: &Path, acc: &Accum) -> Result<()> {
    let total = acc.control_source.len();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    let mut push = |name: &str, field: Field, col: ArrayRef| {
        fields.push(field.with_name(name));
        cols.push(col);
    };
    let (f, c) = fixed_list(&acc.state.values, acc.state.dim)?;
    push("observation.state", f, c);
    if acc.env.dim > 0 {
        let (f, c) = fixed_list(&acc.env.values, acc.env.dim)?;
        push("observation.environment_state", f, c);
    }
    let (f, c) = fixed_list(&acc.action.values, acc.action.dim)?;
    push("action", f, c);
    let ts: Float32Array = acc
        .timestamp
        .values
        .iter()
        .map(|&v| Some(v as f32))
        .collect();
    push(
        "timestamp",
        Field::new("", DataType::Float32, true),
        Arc::new(ts),
    );
    for feat in [
        &acc.frame_index,
        &acc.episode_index,
        &acc.index,
        &acc.task_index,
    ] {
        push(
            feat.name,
            Field::new("", DataType::Int64, true),
            int_col(feat, 0, total),
        );
    }
    for feat in [&acc.done, &acc.intervention] {
        let b: BooleanArray = feat.values.iter().map(|&v| Some(v != 0.0)).collect();
        push(
            feat.name,
            Field::new("", DataType::Boolean, true),
            Arc::new(b),
        );
    }
    push(
        "control_source",
        Field::new("", DataType::Utf8, true),
        Arc::new(StringArray::from(acc.control_source.clone())),
    );
    push(
        "label",
        Field::new("", DataType::Utf8, true),
        Arc::new(StringArray::from(acc.label.clone())),
    );
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    write_parquet(path, &batch)
}

fn write_episodes(path: &Path, acc: &Accum, eps: &[ExportedEpisode]) -> Result<()> {
    let n = eps.len();
    let mut fields: Vec<Field> = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    let int = |name: &str, vals: Vec<i64>, fields: &mut Vec<Field>, cols: &mut Vec<ArrayRef>| {
        fields.push(Field::new(name, DataType::Int64, true));
        cols.push(Arc::new(Int64Array::from(vals)));
    };
    int(
        "episode_index",
        eps.iter().map(|e| e.episode_index).collect(),
        &mut fields,
        &mut cols,
    );
    // tasks: list<string>, one task per episode.
    let item = Arc::new(Field::new("item", DataType::Utf8, true));
    let task_names: Vec<&str> = acc
        .ranges
        .iter()
        .map(|(_, _, t)| {
            usize::try_from(*t)
                .ok()
                .and_then(|t| acc.tasks.get(t))
                .map_or("", String::as_str)
        })
        .collect();
    let tasks = ListArray::try_new(
        item.clone(),
        OffsetBuffer::from_lengths(std::iter::repeat_n(1, n)),
        Arc::new(StringArray::from(task_names)),
        None,
    )?;
    fields.push(Field::new("tasks", DataType::List(item), true));
    cols.push(Arc::new(tasks));
    int(
        "length",
        eps.iter().map(|e| e.frames as i64).collect(),
        &mut fields,
        &mut cols,
    );
    for name in ["data/chunk_index", "data/file_index"] {
        int(name, vec![0; n], &mut fields, &mut cols);
    }
    int(
        "dataset_from_index",
        acc.ranges.iter().map(|r| r.0 as i64).collect(),
        &mut fields,
        &mut cols,
    );
    int(
        "dataset_to_index",
        acc.ranges.iter().map(|r| r.1 as i64).collect(),
        &mut fields,
        &mut cols,
    );
    for name in ["meta/episodes/chunk_index", "meta/episodes/file_index"] {
        int(name, vec![0; n], &mut fields, &mut cols);
    }
    // Each episode's place in its camera's MP4: all episodes back to back, one video frame per
    // row, so an episode starts at its first row's time.
    for cam in &acc.cameras {
        let key = video_key(&cam.name);
        for what in ["chunk_index", "file_index"] {
            int(
                &format!("videos/{key}/{what}"),
                vec![0; n],
                &mut fields,
                &mut cols,
            );
        }
        for (what, end) in [("from_timestamp", false), ("to_timestamp", true)] {
            let ts: Float64Array = acc
                .ranges
                .iter()
                .map(|&(from, to, _)| Some((if end { to } else { from }) as f64 / acc.fps))
                .collect();
            fields.push(Field::new(
                format!("videos/{key}/{what}"),
                DataType::Float64,
                true,
            ));
            cols.push(Arc::new(ts));
        }
    }
    // Per-episode stats, flattened as LeRobot does: stats/<feature>/<stat> = list<double>.
    let per_ep: Vec<Vec<(&'static str, Stats)>> = acc
        .ranges
        .iter()
        .map(|&(from, to, _)| {
            acc.numeric()
                .into_iter()
                .map(|f| (f.name, f.stats(from, to)))
                .collect()
        })
        .collect();
    let mut stat_cols: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for ep in &per_ep {
        for (feat, s) in ep {
            for (stat, v) in s.named() {
                let key = format!("stats/{feat}/{stat}");
                if !stat_cols.contains_key(&key) {
                    order.push(key.clone());
                }
                stat_cols.entry(key).or_default().push(v);
            }
        }
    }
    let item64 = Arc::new(Field::new("item", DataType::Float64, true));
    for key in &order {
        let Some(rows) = stat_cols.get(key) else {
            continue;
        };
        let flat: Float64Array = rows.iter().flatten().map(|&v| Some(v)).collect();
        let list = ListArray::try_new(
            item64.clone(),
            OffsetBuffer::from_lengths(rows.iter().map(Vec::len)),
            Arc::new(flat),
            None,
        )?;
        fields.push(Field::new(key, DataType::List(item64.clone()), true));
        cols.push(Arc::new(list));
    }
    let itemi = Arc::new(Field::new("item", DataType::Int64, true));
    for f in acc.numeric() {
        let counts: Int64Array = acc
            .ranges
            .iter()
            .map(|r| Some((r.1 - r.0) as i64))
            .collect();
        let list = ListArray::try_new(
            itemi.clone(),
            OffsetBuffer::from_lengths(std::iter::repeat_n(1, n)),
            Arc::new(counts),
            None,
        )?;
        fields.push(Field::new(
            format!("stats/{}/count", f.name),
            DataType::List(itemi.clone()),
            true,
        ));
        cols.push(Arc::new(list));
    }
    // Provenance columns (LeRobot ignores columns it does not know).
    fields.push(Field::new("intervened_session_id", DataType::Utf8, true));
    cols.push(Arc::new(StringArray::from_iter_values(
        eps.iter().map(|e| e.session_id.as_str()),
    )));
    int(
        "intervened_source_episode",
        eps.iter().map(|e| i64::from(e.source_episode)).collect(),
        &mut fields,
        &mut cols,
    );
    fields.push(Field::new("intervened_outcome", DataType::Utf8, true));
    cols.push(Arc::new(StringArray::from_iter_values(
        eps.iter().map(|e| e.outcome.as_str()),
    )));
    fields.push(Field::new("intervened_truncated", DataType::Boolean, true));
    cols.push(Arc::new(BooleanArray::from(
        eps.iter().map(|e| e.truncated).collect::<Vec<_>>(),
    )));
    int(
        "intervened_intervention_steps",
        eps.iter().map(|e| e.intervention_steps as i64).collect(),
        &mut fields,
        &mut cols,
    );
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    write_parquet(path, &batch)
}
