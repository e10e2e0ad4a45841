//! Reading episodes back, including files cut short by a crash: the stream is read up to the
//! first damaged record (the chunk being written when the process died) and everything
//! before it is returned. Crash recovery ([`crate::recovery`]) uses the same scan to rewrite
//! such a file complete; a rewritten file carries a [`REPAIR_METADATA`] record and still reads
//! as truncated.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mcap::read::ChunkReader;
use mcap::records::{op, Channel, ChunkHeader, Header, MessageHeader, Metadata, Record};
use tracing::warn;

use crate::error::{EpisodeError, Result};
use crate::format::{
    ActionIn, EpisodeRecord, GamepadIn, ObservationIn, ProposalIn, TOPIC_ACTION,
    TOPIC_CAMERA_PREFIX, TOPIC_DIAGNOSTICS, TOPIC_EPISODE, TOPIC_EVENTS, TOPIC_GAMEPAD,
    TOPIC_OBSERVATION, TOPIC_PROPOSAL,
};
use crate::foxglove;
use crate::labels::derive_labels;
use crate::layout;
use crate::manifest::{Manifest, ManifestBuilder};
use crate::types::{
    CameraInfo, ControlSource, DiagnosticsRecord, EpisodeMeta, EventRecord, FailureMode, Frame,
    Label, Outcome,
};

/// One recorded camera image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedImage {
    /// Capture time, `CLOCK_MONOTONIC` ns (the message's `timestamp`).
    pub capture_ns: u64,
    /// MCAP log time (ns), on the frames' timeline.
    pub log_time: u64,
    /// The JPEG file.
    pub jpeg: Vec<u8>,
}

/// A camera's images in an episode, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraImages {
    pub camera: CameraInfo,
    pub images: Vec<RecordedImage>,
}

/// A whole episode in memory.
#[derive(Debug, Clone)]
pub struct Episode {
    pub path: PathBuf,
    pub meta: EpisodeMeta,
    pub frames: Vec<Frame>,
    pub events: Vec<EventRecord>,
    pub diagnostics: Vec<DiagnosticsRecord>,
    /// Per frame (same index as `frames`), per camera of `meta.cameras`: the capture time of
    /// the image the loop used at that tick, 0 for none; an empty list when the frame carries
    /// none (episodes without cameras, older files).
    pub image_capture_ns: Vec<Vec<u64>>,
    /// Per camera of `meta.cameras` (same order), its images.
    pub images: Vec<CameraImages>,
    /// The manifest on disk, or (for an unrecovered file) one computed from the frames.
    pub manifest: Manifest,
    /// The file was cut short (no end record or no MCAP footer).
    pub truncated: bool,
}

impl Episode {
    pub fn sources(&self) -> Vec<ControlSource> {
        self.frames.iter().map(|f| f.source).collect()
    }

    /// Sirius labels with a pre-intervention window of `window` frames.
    pub fn labels(&self, window: usize) -> Vec<Label> {
        derive_labels(&self.sources(), window)
    }
}

/// What a scan of the MCAP bytes found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub meta: Option<EpisodeMeta>,
    pub frames: Vec<Frame>,
    /// Per frame, as [`Episode::image_capture_ns`].
    pub image_capture_ns: Vec<Vec<u64>>,
    /// Per camera topic, the images read.
    pub images: BTreeMap<String, Vec<RecordedImage>>,
    pub events: Vec<EventRecord>,
    pub diagnostics: Vec<DiagnosticsRecord>,
    /// Outcome and dropped-frame count from the end record, if it was reached.
    pub end: Option<(Outcome, u64)>,
    /// Why the episode failed, from the end record.
    pub failure: Option<FailureMode>,
    /// The file ends with a valid footer and end magic.
    pub has_footer: bool,
    /// The first damaged record, if the stream did not end cleanly.
    pub stream_error: Option<String>,
    /// Messages that were intact MCAP but not valid JSON for their topic.
    pub bad_messages: u64,
    /// Intact MCAP messages read (every topic).
    pub messages: u64,
    /// The newest log time among them (ns).
    pub last_log_time: Option<u64>,
    /// Where the intact part of the file ends: the byte after the last record read whole.
    pub intact_end: u64,
    /// The file starts with the MCAP magic (or is a prefix of it: cut during its first write).
    pub mcap_magic: bool,
    /// The file was rewritten by crash recovery: what its [`REPAIR_METADATA`] record says.
    pub repair: Option<BTreeMap<String, String>>,
}

impl Scan {
    /// The episode is whole: it was closed (end record, footer) and never cut.
    pub fn complete(&self) -> bool {
        self.has_footer
            && self.end.is_some()
            && self.stream_error.is_none()
            && self.repair.is_none()
    }

    /// The file is a well-formed MCAP: every record intact up to a valid footer, so every
    /// reader opens it (it may still be a repaired, cut-short episode).
    pub fn well_formed(&self) -> bool {
        self.has_footer && self.stream_error.is_none()
    }
}

/// Name of the MCAP metadata record crash recovery adds to a file it rewrote: it says that the
/// episode was cut short, how much was dropped, and the outcome recovery was told, so that a
/// recovery interrupted after the rewrite but before the manifest writes the same manifest.
pub const REPAIR_METADATA: &str = "intervened.recovery";

/// Everything intact in an episode file, as MCAP records, for rewriting it
/// ([`crate::recovery`]).
#[derive(Debug, Default)]
pub(crate) struct Raw {
    pub header: Option<Header>,
    /// id -> (name, encoding, data)
    pub schemas: BTreeMap<u16, (String, String, Vec<u8>)>,
    pub channels: BTreeMap<u16, Channel>,
    /// Intact messages, grouped as they were chunked (a message outside any chunk is a group
    /// of its own).
    pub groups: Vec<Vec<(MessageHeader, Vec<u8>)>>,
    /// Metadata records, in file order.
    pub metadata: Vec<Metadata>,
}

fn has_footer(buf: &[u8]) -> bool {
    buf.len() > 16 && buf.ends_with(mcap::MAGIC) && mcap::read::footer(buf).is_ok()
}

/// Turns a message sequence into frames: observation opens a frame; the action, proposal and
/// gamepad messages of the same tick complete it. The writer puts all of a frame's messages
/// in one chunk, and only complete chunks are read, so a frame is either whole or absent.
#[derive(Default)]
struct Assembler {
    scan: Scan,
    current: Option<Frame>,
    current_images: Vec<u64>,
    has_action: bool,
}

impl Assembler {
    fn finish_frame(&mut self) {
        if let Some(f) = self.current.take() {
            if self.has_action {
                self.scan.frames.push(f);
                self.scan
                    .image_capture_ns
                    .push(std::mem::take(&mut self.current_images));
            }
        }
        self.has_action = false;
    }

    fn message(&mut self, topic: &str, log_time: u64, data: &[u8]) {
        let ok = match topic {
            TOPIC_OBSERVATION => match serde_json::from_slice::<ObservationIn>(data) {
                Ok(o) => {
                    self.finish_frame();
                    self.current_images = o.image_capture_ns;
                    self.current = Some(Frame {
                        tick: o.tick,
                        t: o.t,
                        q: o.q,
                        qd: o.qd,
                        current: o.current,
                        goal: Vec::new(),
                        source: ControlSource::Robot,
                        proposal: None,
                        doubt: None,
                        pad_axes: Vec::new(),
                        pad_buttons: 0,
                        task: o.task,
                    });
                    true
                }
                Err(_) => false,
            },
            TOPIC_ACTION => match serde_json::from_slice::<ActionIn>(data) {
                Ok(a) => {
                    if let Some(f) = self.current.as_mut().filter(|f| f.tick == a.tick) {
                        f.goal = a.goal;
                        f.source = a.source;
                        self.has_action = true;
                    }
                    true
                }
                Err(_) => false,
            },
            TOPIC_PROPOSAL => match serde_json::from_slice::<ProposalIn>(data) {
                Ok(p) => {
                    if let Some(f) = self.current.as_mut().filter(|f| f.tick == p.tick) {
                        f.proposal = Some(p.action);
                        f.doubt = p.doubt;
                    }
                    true
                }
                Err(_) => false,
            },
            TOPIC_GAMEPAD => match serde_json::from_slice::<GamepadIn>(data) {
                Ok(g) => {
                    if let Some(f) = self.current.as_mut().filter(|f| f.tick == g.tick) {
                        f.pad_axes = g.axes;
                        f.pad_buttons = g.buttons;
                    }
                    true
                }
                Err(_) => false,
            },
            TOPIC_EVENTS => match serde_json::from_slice::<EventRecord>(data) {
                Ok(e) => {
                    self.scan.events.push(e);
                    true
                }
                Err(_) => false,
            },
            TOPIC_DIAGNOSTICS => match serde_json::from_slice::<DiagnosticsRecord>(data) {
                Ok(d) => {
                    self.scan.diagnostics.push(d);
                    true
                }
                Err(_) => false,
            },
            TOPIC_EPISODE => match serde_json::from_slice::<EpisodeRecord>(data) {
                Ok(EpisodeRecord::Begin { meta }) => {
                    self.scan.meta.get_or_insert(meta);
                    true
                }
                Ok(EpisodeRecord::End {
                    outcome,
                    dropped_frames,
                    failure,
                    ..
                }) => {
                    self.scan.end = Some((outcome, dropped_frames));
                    self.scan.failure = failure;
                    true
                }
                Err(_) => false,
            },
            t if t.starts_with(TOPIC_CAMERA_PREFIX) => {
                match <foxglove::CompressedImage as prost::Message>::decode(data) {
                    Ok(m) => {
                        self.scan
                            .images
                            .entry(t.to_string())
                            .or_default()
                            .push(RecordedImage {
                                capture_ns: m.timestamp.as_ref().map_or(0, foxglove::timestamp_ns),
                                log_time,
                                jpeg: m.data,
                            });
                        true
                    }
                    Err(_) => false,
                }
            }
            // Unknown topics (added by later versions or other tools) are skipped.
            _ => true,
        };
        if !ok {
            self.scan.bad_messages += 1;
        }
    }
}

/// A record found inside a chunk.
enum Inner {
    Message(MessageHeader, Vec<u8>),
    Schema(u16, String, String, Vec<u8>),
    Channel(Channel),
}

/// The records of one complete chunk, or why the chunk cannot be trusted.
fn chunk_records(header: ChunkHeader, data: &[u8]) -> std::result::Result<Vec<Inner>, String> {
    // A chunk whose length was written but whose data never reached the disk (power cut
    // between writeback of the two) fails its CRC; only uncompressed chunks are checked here,
    // which is what the writer produces.
    if header.compression.is_empty()
        && header.uncompressed_crc != 0
        && crc32fast::hash(data) != header.uncompressed_crc
    {
        return Err("chunk CRC mismatch (torn write)".to_string());
    }
    let reader = ChunkReader::new(header, data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for rec in reader {
        match rec.map_err(|e| e.to_string())? {
            Record::Message { header, data } => out.push(Inner::Message(header, data.into_owned())),
            Record::Channel(c) => out.push(Inner::Channel(c)),
            Record::Schema { header, data } => out.push(Inner::Schema(
                header.id,
                header.name,
                header.encoding,
                data.into_owned(),
            )),
            _ => {}
        }
    }
    Ok(out)
}

fn op_name(op: u8) -> &'static str {
    match op {
        op::HEADER => "header",
        op::FOOTER => "footer",
        op::SCHEMA => "schema",
        op::CHANNEL => "channel",
        op::MESSAGE => "message",
        op::CHUNK => "chunk",
        op::MESSAGE_INDEX => "message index",
        op::CHUNK_INDEX => "chunk index",
        op::ATTACHMENT => "attachment",
        op::ATTACHMENT_INDEX => "attachment index",
        op::STATISTICS => "statistics",
        op::METADATA => "metadata",
        op::METADATA_INDEX => "metadata index",
        op::SUMMARY_OFFSET => "summary offset",
        op::DATA_END => "data end",
        _ => "unknown",
    }
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// The newest message log time found in the damaged tail of a file (from `from` on), read
/// best-effort: through a torn chunk (its header may hold placeholder lengths) and cut-off
/// records. Evidence of how much recording time the dropped bytes held; never trusted as data.
pub(crate) fn tail_last_log_time(buf: &[u8], from: usize) -> Option<u64> {
    let mut newest: Option<u64> = None;
    let mut pos = from;
    while pos + 9 <= buf.len() {
        let opcode = buf[pos];
        let len = read_u64(buf, pos + 1)?;
        let body = pos + 9;
        match opcode {
            op::CHUNK => {
                // message start (8), end (8), uncompressed size (8), crc (4), compression
                // (u32 length + bytes), compressed size (8); then the records.
                if let Some(end) = read_u64(buf, body + 8).filter(|&t| t != 0) {
                    newest = newest.max(Some(end));
                }
                let clen = read_u32(buf, body + 28)? as usize;
                if clen != 0 {
                    // Compressed data cannot be walked record by record.
                    return newest;
                }
                pos = body + 32 + clen + 8;
                continue;
            }
            op::MESSAGE => {
                // channel id (2), sequence (4), log time (8)
                if let Some(t) = read_u64(buf, body + 6) {
                    newest = newest.max(Some(t));
                }
            }
            op::HEADER..=op::DATA_END => {}
            // Opcode 0 (zeros: a region never written) or garbage.
            _ => return newest,
        }
        let Some(next) = usize::try_from(len)
            .ok()
            .and_then(|l| body.checked_add(l))
            .filter(|&n| n <= buf.len())
        else {
            return newest;
        };
        pos = next;
    }
    newest
}

/// Scan an episode file's bytes up to its last complete chunk. Never fails: damage (a torn
/// chunk, a cut-off record) ends the scan and is noted in `stream_error`.
pub(crate) fn scan_bytes(buf: &[u8]) -> Scan {
    scan_impl(buf, None)
}

/// [`scan_bytes`], also collecting every intact record for rewriting the file.
pub(crate) fn scan_bytes_raw(buf: &[u8]) -> (Scan, Raw) {
    let mut raw = Raw::default();
    let scan = scan_impl(buf, Some(&mut raw));
    (scan, raw)
}

fn scan_impl(buf: &[u8], mut raw: Option<&mut Raw>) -> Scan {
    let mut asm = Assembler::default();
    asm.scan.has_footer = has_footer(buf);
    let magic = mcap::MAGIC;
    asm.scan.mcap_magic = buf.starts_with(magic) || magic.starts_with(buf);
    if !buf.starts_with(magic) {
        asm.scan.stream_error = Some(if asm.scan.mcap_magic {
            format!("cut off inside the MCAP magic ({} bytes)", buf.len())
        } else {
            "not an MCAP file (bad magic)".to_string()
        });
        return asm.scan;
    }
    let mut topics: HashMap<u16, String> = HashMap::new();
    let mut pos = magic.len();
    asm.scan.intact_end = pos as u64;
    // Top-level records, framed by hand (opcode, u64 length, body) so that where the intact
    // part ends is known exactly.
    while pos < buf.len() {
        let left = buf.len() - pos;
        let Some(len) = read_u64(buf, pos + 1) else {
            asm.scan.stream_error = Some(format!(
                "cut off inside a record header at byte {pos} ({left} bytes left)"
            ));
            break;
        };
        let opcode = buf[pos];
        if opcode == 0 {
            asm.scan.stream_error = Some(format!(
                "invalid record (opcode 0) at byte {pos}: bytes that were never written"
            ));
            break;
        }
        let body_start = pos + 9;
        let Some(body_end) = usize::try_from(len)
            .ok()
            .and_then(|l| body_start.checked_add(l))
            .filter(|&e| e <= buf.len())
        else {
            asm.scan.stream_error = Some(format!(
                "{} record at byte {pos} has length {len}, only {} bytes follow",
                op_name(opcode),
                left - 9
            ));
            break;
        };
        let rec = match mcap::parse_record(opcode, &buf[body_start..body_end]) {
            Ok(r) => r,
            Err(e) => {
                asm.scan.stream_error =
                    Some(format!("{} record at byte {pos}: {e}", op_name(opcode)));
                break;
            }
        };
        match rec {
            Record::Header(h) => {
                if let Some(r) = raw.as_deref_mut() {
                    r.header.get_or_insert(h);
                }
            }
            Record::Schema { header, data } => {
                if let Some(r) = raw.as_deref_mut() {
                    r.schemas.entry(header.id).or_insert((
                        header.name,
                        header.encoding,
                        data.into_owned(),
                    ));
                }
            }
            Record::Channel(c) => {
                topics.insert(c.id, c.topic.clone());
                if let Some(r) = raw.as_deref_mut() {
                    r.channels.entry(c.id).or_insert(c);
                }
            }
            Record::Message { header, data } => {
                asm.scan.messages += 1;
                asm.scan.last_log_time = asm.scan.last_log_time.max(Some(header.log_time));
                if let Some(t) = topics.get(&header.channel_id).cloned() {
                    asm.message(&t, header.log_time, &data);
                }
                if let Some(r) = raw.as_deref_mut() {
                    r.groups.push(vec![(header, data.into_owned())]);
                }
            }
            // Only a chunk that is all in the file gets here.
            Record::Chunk { header, data } => match chunk_records(header, &data) {
                Ok(recs) => {
                    let mut group = Vec::new();
                    for rec in recs {
                        match rec {
                            Inner::Message(h, d) => {
                                asm.scan.messages += 1;
                                asm.scan.last_log_time =
                                    asm.scan.last_log_time.max(Some(h.log_time));
                                if let Some(t) = topics.get(&h.channel_id).cloned() {
                                    asm.message(&t, h.log_time, &d);
                                }
                                if raw.is_some() {
                                    group.push((h, d));
                                }
                            }
                            Inner::Channel(c) => {
                                topics.insert(c.id, c.topic.clone());
                                if let Some(r) = raw.as_deref_mut() {
                                    r.channels.entry(c.id).or_insert(c);
                                }
                            }
                            Inner::Schema(id, name, encoding, d) => {
                                if let Some(r) = raw.as_deref_mut() {
                                    r.schemas.entry(id).or_insert((name, encoding, d));
                                }
                            }
                        }
                    }
                    if let Some(r) = raw.as_deref_mut() {
                        if !group.is_empty() {
                            r.groups.push(group);
                        }
                    }
                }
                Err(e) => {
                    asm.scan.stream_error = Some(format!("chunk at byte {pos}: {e}"));
                    break;
                }
            },
            Record::Metadata(m) => {
                if m.name == REPAIR_METADATA {
                    asm.scan.repair = Some(m.metadata.clone());
                }
                if let Some(r) = raw.as_deref_mut() {
                    r.metadata.push(m);
                }
            }
            // The summary section repeats what was read; the data section ends here.
            Record::DataEnd(_) => {
                asm.scan.intact_end = body_end as u64;
                break;
            }
            _ => {}
        }
        pos = body_end;
        asm.scan.intact_end = pos as u64;
    }
    if asm.scan.has_footer && asm.scan.stream_error.is_none() {
        // The summary and footer after the data end are intact too.
        asm.scan.intact_end = buf.len() as u64;
    }
    asm.finish_frame();
    asm.scan
}

impl Scan {
    /// The manifest this scan implies, for a file that has none on disk.
    pub(crate) fn implied_manifest(
        &self,
        meta: &EpisodeMeta,
        outcome_hint: Option<Outcome>,
    ) -> Manifest {
        let mut b = ManifestBuilder::new();
        for f in &self.frames {
            b.push(f.tick, f.t, f.source);
        }
        let truncated = !self.complete();
        let repair = self.repair.as_ref();
        let outcome = self
            .end
            .map(|(o, _)| o)
            .or(outcome_hint)
            .or_else(|| {
                repair
                    .and_then(|r| r.get("outcome"))
                    .and_then(|o| serde_json::from_value(serde_json::Value::String(o.clone())).ok())
            })
            .unwrap_or(Outcome::Truncated);
        let mut m = b.build(meta, outcome, truncated);
        m.recovered = true;
        m.failure = self.failure;
        m.dropped_frames = self.end.map(|(_, d)| d).unwrap_or(0);
        m.note = match (repair, &self.stream_error, self.has_footer) {
            (_, Some(e), _) => Some(format!("read up to the last complete chunk; then: {e}")),
            (Some(r), None, _) => Some(format!(
                "{}; rewritten as a complete MCAP file by crash recovery ({} bytes of damaged tail dropped)",
                r.get("reason").map_or("cut short", String::as_str),
                r.get("dropped_bytes").map_or("0", String::as_str),
            )),
            (None, None, false) => {
                Some("no MCAP footer (cut short after its last chunk)".to_string())
            }
            (None, None, true) => None,
        };
        m
    }

    /// The note [`Scan::implied_manifest`] gives a cut file, before any repair: why it is cut.
    pub(crate) fn damage(&self) -> String {
        match (&self.stream_error, self.has_footer) {
            (Some(e), _) => format!("read up to the last complete chunk; then: {e}"),
            (None, false) => "no MCAP footer (cut short after its last chunk)".to_string(),
            (None, true) => "complete".to_string(),
        }
    }
}

/// Read an episode: frames, events, diagnostics, and its manifest. A file cut short is read
/// up to its last complete chunk; if it has no manifest yet, one is computed in memory (not
/// written: the file may be an episode being recorded right now; see
/// [`crate::recover_session_dir`]).
pub fn read_episode(path: &Path) -> Result<Episode> {
    let buf = std::fs::read(path).map_err(|e| EpisodeError::io(path, e))?;
    let scan = scan_bytes(&buf);
    let Some(meta) = scan.meta.clone() else {
        return Err(EpisodeError::NoEpisodeHeader {
            path: path.to_path_buf(),
        });
    };
    if scan.bad_messages > 0 {
        warn!(path = %path.display(), bad = scan.bad_messages, "messages that did not parse were skipped");
    }
    let manifest_file = layout::manifest_path(path);
    let manifest = match Manifest::load(&manifest_file) {
        // The frames read are the truth; a manifest that disagrees is stale.
        Ok(mut m) => {
            if let Some(note) = m.verify_against_file(&scan.implied_manifest(&meta, None)) {
                warn!(manifest = %manifest_file.display(), "{note}");
            }
            m
        }
        Err(EpisodeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            scan.implied_manifest(&meta, None)
        }
        Err(e) => {
            warn!(error = %e, "unreadable manifest; computing one from the episode file");
            scan.implied_manifest(&meta, None)
        }
    };
    let truncated = manifest.truncated || !scan.complete();
    let mut by_topic = scan.images;
    let images = meta
        .cameras
        .iter()
        .map(|c| CameraImages {
            images: by_topic.remove(&c.topic()).unwrap_or_default(),
            camera: c.clone(),
        })
        .collect();
    Ok(Episode {
        path: path.to_path_buf(),
        meta,
        frames: scan.frames,
        image_capture_ns: scan.image_capture_ns,
        images,
        events: scan.events,
        diagnostics: scan.diagnostics,
        manifest,
        truncated,
    })
}
