//! Synchronous writer for one episode file. The [`crate::Recorder`] thread drives it; tests,
//! the simulator and tools can use it directly.
//!
//! Crash safety: chunks are only closed by [`EpisodeWriter::flush`] (no size-triggered
//! chunking), so a frame's messages never straddle two chunks. Each chunk is built in memory
//! and handed to the OS whole, header and body in one write (the MCAP writer's buffered chunk
//! mode), followed by its message indexes; then the file is `fdatasync`ed. A `kill -9`
//! therefore leaves only complete records and at most one torn tail, never a chunk header
//! with a placeholder length; on a power cut the file holds every chunk flushed before it and
//! the last may be torn. Readers stop at a torn record, and crash recovery rewrites the file
//! complete ([`crate::recovery`]). Nothing that was flushed is ever rewritten.
//!
//! While it records, the writer holds an exclusive `flock` on its file, so that recovery run
//! by another process (`intervened recover`) leaves the file alone.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mcap::records::MessageHeader;
use tracing::{debug, warn};

use crate::error::{EpisodeError, Result};
use crate::format::{
    self, ActionOut, EpisodeRecord, GamepadOut, ObservationOut, ProposalOut, TOPICS,
};
use crate::foxglove;
use crate::layout;
use crate::manifest::{Manifest, ManifestBuilder};
use crate::types::{DiagnosticsRecord, EpisodeMeta, EventRecord, FailureMode, Frame, Outcome};

const EPISODE: usize = 0;
const OBSERVATION: usize = 1;
const ACTION: usize = 2;
const PROPOSAL: usize = 3;
const GAMEPAD: usize = 4;
const EVENTS: usize = 5;
const DIAGNOSTICS: usize = 6;

/// Knobs for [`EpisodeWriter::create_with`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Close a chunk early once this many message bytes are pending, whatever the flush timer
    /// says (bounds memory and loss when frames are large).
    pub max_chunk_bytes: u64,
    /// Fault injection for tests: the file behaves like a disk that fills up after this many
    /// bytes (writes past it fail with ENOSPC).
    #[doc(hidden)]
    pub disk_budget: Option<u64>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_chunk_bytes: 1 << 20,
            disk_budget: None,
        }
    }
}

/// A file that may pretend the disk is full past a byte budget (see [`WriterOptions`]).
struct Sink {
    file: File,
    budget: Option<u64>,
    pos: u64,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let allowed = match self.budget {
            Some(b) => {
                let room = b.saturating_sub(self.pos);
                if room == 0 && !buf.is_empty() {
                    return Err(io::Error::from_raw_os_error(28));
                }
                buf.len().min(usize::try_from(room).unwrap_or(usize::MAX))
            }
            None => buf.len(),
        };
        let n = self.file.write(&buf[..allowed])?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Sink {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(pos)?;
        Ok(self.pos)
    }
}

type McapWriter = mcap::Writer<BufWriter<Sink>>;

/// Writes one episode to `<root>/sessions/<session>/episode-<NNNNNN>.mcap`.
pub struct EpisodeWriter {
    path: PathBuf,
    meta: EpisodeMeta,
    mcap: Option<McapWriter>,
    // A second handle on the same open file, for fsync without reaching through the writer.
    sync_handle: File,
    channels: [u16; TOPICS.len()],
    sequences: [u32; TOPICS.len()],
    /// Per camera of `meta.cameras`: channel id and sequence.
    camera_channels: Vec<(u16, u32)>,
    /// Reused for every image, so writing one allocates nothing once warm.
    image_msg: foxglove::CompressedImage,
    images_written: u64,
    buf: Vec<u8>,
    builder: ManifestBuilder,
    opts: WriterOptions,
    pending_bytes: u64,
    /// The newest log time written (ns); the end record is stamped with it.
    last_log_time: u64,
    dirty: bool,
    frames_flushed: u64,
    failed: Option<String>,
}

impl EpisodeWriter {
    /// Create the episode file (never overwriting one) and write its header, flushed to disk.
    pub fn create(root: &Path, meta: &EpisodeMeta) -> Result<Self> {
        Self::create_with(root, meta, WriterOptions::default())
    }

    pub fn create_with(root: &Path, meta: &EpisodeMeta, opts: WriterOptions) -> Result<Self> {
        let dir = layout::session_dir(root, &meta.session_id);
        let sessions = layout::sessions_dir(root);
        let new_sessions_dir = !sessions.exists();
        fs::create_dir_all(&dir).map_err(|e| EpisodeError::io(&dir, e))?;
        let path = dir.join(layout::episode_file_name(meta.episode_index));
        if path.exists() {
            return Err(EpisodeError::AlreadyExists { path });
        }
        // The file is born under a `.tmp` name and renamed in only once its header is on disk,
        // so a crash at any instant leaves either no episode file or a readable one (recovery
        // removes a stale `.tmp`).
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| EpisodeError::io(&tmp, e))?;
        // Released when the file is closed, or by the kernel when the process dies.
        if let Err(e) = file.try_lock() {
            warn!(path = %tmp.display(), error = %e, "could not lock the new episode file");
        }
        let sync_handle = file.try_clone().map_err(|e| EpisodeError::io(&path, e))?;
        let sink = Sink {
            file,
            budget: opts.disk_budget,
            pos: 0,
        };
        let mut mcap = mcap::WriteOptions::new()
            // Uncompressed: the most robust to partial writes and readable by any tool;
            // JSON at control rates is a few tens of kB/s.
            .compression(None)
            // Chunks close only on flush(), so a frame never straddles two chunks.
            .chunk_size(None)
            // Buffered chunks: each chunk is built in memory and written with its final
            // header in one piece, never a placeholder header patched later.
            .disable_seeking(true)
            .profile(format::PROFILE)
            .library(concat!("intervened-episodes/", env!("CARGO_PKG_VERSION")))
            .create(BufWriter::with_capacity(64 * 1024, sink))
            .map_err(|e| EpisodeError::mcap(&path, e))?;

        let mut channels = [0u16; TOPICS.len()];
        let names_json =
            serde_json::to_string(&meta.joint_names).map_err(|e| EpisodeError::json(&path, e))?;
        let task_json = serde_json::to_string(&meta.task_feature_names)
            .map_err(|e| EpisodeError::json(&path, e))?;
        for (i, topic) in TOPICS.iter().enumerate() {
            let (schema_name, schema) = format::schema_for(topic, meta);
            let schema_bytes =
                serde_json::to_vec(&schema).map_err(|e| EpisodeError::json(&path, e))?;
            let schema_id = mcap
                .add_schema(schema_name, "jsonschema", &schema_bytes)
                .map_err(|e| EpisodeError::mcap(&path, e))?;
            let mut md = BTreeMap::new();
            if matches!(i, OBSERVATION | ACTION | PROPOSAL) {
                md.insert("joint_names".to_string(), names_json.clone());
            }
            if i == OBSERVATION {
                md.insert("task_feature_names".to_string(), task_json.clone());
            }
            channels[i] = mcap
                .add_channel(schema_id, topic, "json", &md)
                .map_err(|e| EpisodeError::mcap(&path, e))?;
        }
        let mut camera_channels = Vec::with_capacity(meta.cameras.len());
        if !meta.cameras.is_empty() {
            let schema_id = mcap
                .add_schema(
                    foxglove::SCHEMA_NAME,
                    "protobuf",
                    &foxglove::descriptor_set(),
                )
                .map_err(|e| EpisodeError::mcap(&path, e))?;
            for cam in &meta.cameras {
                let md = BTreeMap::from([
                    ("width".to_string(), cam.width.to_string()),
                    ("height".to_string(), cam.height.to_string()),
                    ("fps".to_string(), cam.fps.to_string()),
                ]);
                let id = mcap
                    .add_channel(schema_id, &cam.topic(), "protobuf", &md)
                    .map_err(|e| EpisodeError::mcap(&path, e))?;
                camera_channels.push((id, 0));
            }
        }

        let mut w = Self {
            path,
            meta: meta.clone(),
            mcap: Some(mcap),
            sync_handle,
            channels,
            sequences: [0; TOPICS.len()],
            camera_channels,
            image_msg: foxglove::CompressedImage {
                format: foxglove::FORMAT_JPEG.to_string(),
                ..foxglove::CompressedImage::default()
            },
            images_written: 0,
            buf: Vec::with_capacity(4096),
            builder: ManifestBuilder::new(),
            opts,
            pending_bytes: 0,
            last_log_time: 0,
            dirty: false,
            frames_flushed: 0,
            failed: None,
        };
        let begin = EpisodeRecord::Begin { meta: meta.clone() };
        w.write_json(EPISODE, 0.0, &begin)?;
        // The header goes to disk before any frame: a file cut short later still says what
        // it is.
        w.flush()?;
        fs::rename(&tmp, &w.path).map_err(|e| EpisodeError::io(&w.path, e))?;
        // The new directory entries must survive a power cut too.
        layout::sync_dir(&dir)?;
        if new_sessions_dir {
            layout::sync_dir(&sessions)?;
            if let Some(parent) = sessions.parent() {
                layout::sync_dir(parent)?;
            }
        } else {
            layout::sync_dir(&sessions)?;
        }
        debug!(path = %w.path.display(), "episode file created");
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &EpisodeMeta {
        &self.meta
    }

    /// Frames accepted so far.
    pub fn frames(&self) -> u64 {
        self.builder.frames()
    }

    /// Frames known to be on disk (as of the last successful flush).
    pub fn frames_flushed(&self) -> u64 {
        self.frames_flushed
    }

    /// The first write error, once the writer has failed.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The file's length on disk now (after a flush: the flushed length).
    pub fn file_len(&self) -> Result<u64> {
        self.sync_handle
            .metadata()
            .map(|m| m.len())
            .map_err(|e| EpisodeError::io(&self.path, e))
    }

    fn check_shape(&self, f: &Frame) -> Result<()> {
        let n = self.meta.joint_names.len();
        let checks: [(&'static str, usize, bool); 5] = [
            ("q", f.q.len(), false),
            ("goal", f.goal.len(), false),
            // Velocities and currents may be read less often than every tick.
            ("qd", f.qd.len(), true),
            ("current", f.current.len(), true),
            ("proposal", f.proposal.as_ref().map_or(n, Vec::len), false),
        ];
        for (field, got, may_be_empty) in checks {
            if got != n && !(may_be_empty && got == 0) {
                return Err(EpisodeError::FrameShape {
                    tick: f.tick,
                    field,
                    got,
                    expected: n,
                });
            }
        }
        let nt = self.meta.task_feature_names.len();
        if f.task.len() != nt {
            return Err(EpisodeError::FrameShape {
                tick: f.tick,
                field: "task",
                got: f.task.len(),
                expected: nt,
            });
        }
        Ok(())
    }

    /// Append one frame (observation, action, proposal if any, gamepad). A frame of the wrong
    /// shape is refused without harming the writer.
    pub fn write_frame(&mut self, f: &Frame) -> Result<()> {
        self.write_frame_with_images(f, &[])
    }

    /// [`EpisodeWriter::write_frame`], with, per camera of the episode, the capture time
    /// (`CLOCK_MONOTONIC` ns, 0 = none) of the image the loop used at this tick: export and
    /// training align images to ticks with it. Empty, or one value per camera.
    pub fn write_frame_with_images(&mut self, f: &Frame, image_capture_ns: &[u64]) -> Result<()> {
        self.check_failed()?;
        self.check_shape(f)?;
        if !image_capture_ns.is_empty() && image_capture_ns.len() != self.meta.cameras.len() {
            return Err(EpisodeError::FrameShape {
                tick: f.tick,
                field: "image_capture_ns",
                got: image_capture_ns.len(),
                expected: self.meta.cameras.len(),
            });
        }
        let obs = ObservationOut {
            tick: f.tick,
            t: f.t,
            q: &f.q,
            qd: &f.qd,
            current: &f.current,
            task: &f.task,
            image_capture_ns,
        };
        self.write_json(OBSERVATION, f.t, &obs)?;
        let act = ActionOut {
            tick: f.tick,
            t: f.t,
            goal: &f.goal,
            source: f.source,
        };
        self.write_json(ACTION, f.t, &act)?;
        if let Some(p) = &f.proposal {
            let prop = ProposalOut {
                tick: f.tick,
                t: f.t,
                action: p,
                doubt: f.doubt,
                driver: f.source,
            };
            self.write_json(PROPOSAL, f.t, &prop)?;
        }
        let pad = GamepadOut {
            tick: f.tick,
            t: f.t,
            axes: &f.pad_axes,
            buttons: f.pad_buttons,
        };
        self.write_json(GAMEPAD, f.t, &pad)?;
        self.builder.push(f.tick, f.t, f.source);
        if self.pending_bytes >= self.opts.max_chunk_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Images written so far (every camera).
    pub fn images(&self) -> u64 {
        self.images_written
    }

    /// The MCAP log time of an image: at episode time `t` when given, else from its capture
    /// time and [`EpisodeMeta::monotonic_start_ns`], else the newest log time written.
    pub fn image_log_time(&self, capture_ns: u64, t: Option<f64>) -> u64 {
        match (t, self.meta.monotonic_start_ns) {
            (Some(t), _) => self.log_time(t),
            (None, Some(origin)) => self
                .meta
                .started_at
                .saturating_add(capture_ns.saturating_sub(origin)),
            (None, None) => self.last_log_time.max(self.meta.started_at),
        }
    }

    /// Append one JPEG image of camera `camera` (its index in [`EpisodeMeta::cameras`]) as a
    /// `foxglove.CompressedImage` on `/camera/<name>`, stamped with `capture_ns` and logged at
    /// [`EpisodeWriter::image_log_time`].
    pub fn write_jpeg(
        &mut self,
        camera: usize,
        capture_ns: u64,
        t: Option<f64>,
        jpeg: &[u8],
    ) -> Result<()> {
        self.check_failed()?;
        let Some(cam) = self.meta.cameras.get(camera) else {
            return Err(EpisodeError::UnknownCamera {
                path: self.path.clone(),
                camera,
                cameras: self.meta.cameras.len(),
            });
        };
        let log_time = self.image_log_time(capture_ns, t);
        self.image_msg.timestamp = Some(foxglove::timestamp(capture_ns));
        self.image_msg.frame_id.clear();
        self.image_msg.frame_id.push_str(&cam.name);
        self.image_msg.data.clear();
        self.image_msg.data.extend_from_slice(jpeg);
        self.buf.clear();
        prost::Message::encode(&self.image_msg, &mut self.buf)
            .map_err(|e| EpisodeError::Thread(format!("protobuf encoding: {e}")))?;
        let Some((channel_id, seq)) = self.camera_channels.get_mut(camera) else {
            return Err(EpisodeError::Thread(format!(
                "no channel for camera {camera}"
            )));
        };
        *seq = seq.wrapping_add(1);
        let header = MessageHeader {
            channel_id: *channel_id,
            sequence: *seq,
            log_time,
            publish_time: log_time,
        };
        self.write_message(&header)?;
        self.images_written += 1;
        if self.pending_bytes >= self.opts.max_chunk_bytes {
            self.flush()?;
        }
        Ok(())
    }

    pub fn write_event(&mut self, e: &EventRecord) -> Result<()> {
        self.check_failed()?;
        self.write_json(EVENTS, e.t, e)
    }

    pub fn write_diagnostics(&mut self, d: &DiagnosticsRecord) -> Result<()> {
        self.check_failed()?;
        self.write_json(DIAGNOSTICS, d.t, d)
    }

    fn check_failed(&self) -> Result<()> {
        match &self.failed {
            Some(first) => Err(EpisodeError::Io {
                path: self.path.clone(),
                source: io::Error::other(format!("writer failed earlier: {first}")),
            }),
            None => Ok(()),
        }
    }

    fn log_time(&self, t: f64) -> u64 {
        let offset = if t.is_finite() && t > 0.0 {
            (t * 1e9) as u64
        } else {
            0
        };
        self.meta.started_at.saturating_add(offset)
    }

    fn write_json<T: serde::Serialize>(&mut self, topic: usize, t: f64, msg: &T) -> Result<()> {
        let log_time = self.log_time(t);
        self.write_json_at(topic, log_time, msg)
    }

    fn write_json_at<T: serde::Serialize>(
        &mut self,
        topic: usize,
        log_time: u64,
        msg: &T,
    ) -> Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, msg).map_err(|e| EpisodeError::json(&self.path, e))?;
        let (Some(&channel_id), Some(seq)) =
            (self.channels.get(topic), self.sequences.get_mut(topic))
        else {
            return Err(EpisodeError::Thread(format!(
                "no channel for topic {topic}"
            )));
        };
        *seq = seq.wrapping_add(1);
        let header = MessageHeader {
            channel_id,
            sequence: *seq,
            log_time,
            publish_time: log_time,
        };
        self.write_message(&header)
    }

    /// Writes `self.buf` as the message `header` describes.
    fn write_message(&mut self, header: &MessageHeader) -> Result<()> {
        self.last_log_time = self.last_log_time.max(header.log_time);
        let res = match self.mcap.as_mut() {
            Some(m) => m.write_to_known_channel(header, &self.buf),
            None => Err(mcap::McapError::AttemptedWriteAfterFailure),
        };
        match res {
            Ok(()) => {
                self.pending_bytes += self.buf.len() as u64;
                self.dirty = true;
                Ok(())
            }
            Err(e) => Err(self.fail(EpisodeError::mcap(&self.path, e))),
        }
    }

    fn fail(&mut self, e: EpisodeError) -> EpisodeError {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        e
    }

    /// Close the open chunk, hand it to the OS and fdatasync it. A no-op when nothing was
    /// written since the last flush.
    pub fn flush(&mut self) -> Result<()> {
        self.check_failed()?;
        if !self.dirty {
            return Ok(());
        }
        let res = match self.mcap.as_mut() {
            Some(m) => m.flush(),
            None => Err(mcap::McapError::AttemptedWriteAfterFailure),
        };
        if let Err(e) = res {
            return Err(self.fail(EpisodeError::mcap(&self.path, e)));
        }
        if let Err(e) = self.sync_handle.sync_data() {
            return Err(self.fail(EpisodeError::io(&self.path, e)));
        }
        self.dirty = false;
        self.pending_bytes = 0;
        self.frames_flushed = self.builder.frames();
        Ok(())
    }

    /// Close the episode: end record, MCAP summary and footer, fsync, then the manifest
    /// (atomically). `dropped`/`lost` are the frames the loop or the disk lost meanwhile.
    pub fn finish(self, outcome: Outcome, dropped: u64, lost: u64) -> Result<Manifest> {
        self.finish_with(outcome, None, dropped, lost)
    }

    /// [`EpisodeWriter::finish`], also recording why a failed episode failed (end record and
    /// manifest).
    pub fn finish_with(
        mut self,
        outcome: Outcome,
        failure: Option<FailureMode>,
        dropped: u64,
        lost: u64,
    ) -> Result<Manifest> {
        self.check_failed()?;
        let end = EpisodeRecord::End {
            outcome,
            frames: self.builder.frames(),
            dropped_frames: dropped,
            failure,
        };
        // The end record is stamped with the newest time written, not the start: it closes
        // the episode, and readers that sort by log time must find it last.
        let end_time = self.last_log_time.max(self.meta.started_at);
        self.write_json_at(EPISODE, end_time, &end)?;
        let Some(mut mcap) = self.mcap.take() else {
            return Err(EpisodeError::mcap(
                &self.path,
                mcap::McapError::AttemptedWriteAfterFailure,
            ));
        };
        mcap.finish()
            .map_err(|e| EpisodeError::mcap(&self.path, e))?;
        let mut inner = mcap.into_inner();
        inner.flush().map_err(|e| EpisodeError::io(&self.path, e))?;
        self.sync_handle
            .sync_all()
            .map_err(|e| EpisodeError::io(&self.path, e))?;
        let mut manifest = self.builder.build(&self.meta, outcome, false);
        manifest.failure = failure;
        manifest.dropped_frames = dropped;
        manifest.lost_frames = lost;
        manifest.save(&layout::manifest_path(&self.path))?;
        Ok(manifest)
    }

    /// Give up on a failed episode: stop writing, then write a manifest for what is really on
    /// disk (recovered up to the last complete chunk, marked truncated).
    pub fn abandon(mut self, outcome: Outcome, dropped: u64, lost: u64) -> Result<Manifest> {
        // Dropping a failed MCAP writer writes nothing more; one that did not fail would
        // append a summary and footer, which only helps readers.
        drop(self.mcap.take());
        // Recovery takes the file's lock; this writer is done with it.
        if let Err(e) = self.sync_handle.unlock() {
            warn!(path = %self.path.display(), error = %e, "could not unlock the episode file");
        }
        let note = self.failed.clone().map(|f| format!("writing failed: {f}"));
        warn!(path = %self.path.display(), ?note, "abandoning episode; recovering what is on disk");
        crate::recovery::recover_episode_with(&self.path, Some(outcome), dropped, lost, note)
    }
}
