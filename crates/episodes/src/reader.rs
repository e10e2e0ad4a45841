//! Reading episodes back, including files cut short by a crash: the stream is read up to the
//! first damaged record (the chunk being written when the process died) and everything
//! before it is returned.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use enumset::EnumSet;
use mcap::read::{ChunkReader, LinearReader, Options};
use mcap::records::{ChunkHeader, Record};
use tracing::warn;

use crate::error::{EpisodeError, Result};
use crate::format::{
    ActionIn, EpisodeRecord, GamepadIn, ObservationIn, ProposalIn, TOPIC_ACTION, TOPIC_DIAGNOSTICS,
    TOPIC_EPISODE, TOPIC_EVENTS, TOPIC_GAMEPAD, TOPIC_OBSERVATION, TOPIC_PROPOSAL,
};
use crate::labels::derive_labels;
use crate::layout;
use crate::manifest::{Manifest, ManifestBuilder};
use crate::types::{
    ControlSource, DiagnosticsRecord, EpisodeMeta, EventRecord, FailureMode, Frame, Label, Outcome,
};

/// A whole episode in memory.
#[derive(Debug, Clone)]
pub struct Episode {
    pub path: PathBuf,
    pub meta: EpisodeMeta,
    pub frames: Vec<Frame>,
    pub events: Vec<EventRecord>,
    pub diagnostics: Vec<DiagnosticsRecord>,
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
}

impl Scan {
    pub fn complete(&self) -> bool {
        self.has_footer && self.end.is_some() && self.stream_error.is_none()
    }
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
    has_action: bool,
}

impl Assembler {
    fn finish_frame(&mut self) {
        if let Some(f) = self.current.take() {
            if self.has_action {
                self.scan.frames.push(f);
            }
        }
        self.has_action = false;
    }

    fn message(&mut self, topic: &str, data: &[u8]) {
        let ok = match topic {
            TOPIC_OBSERVATION => match serde_json::from_slice::<ObservationIn>(data) {
                Ok(o) => {
                    self.finish_frame();
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
            // Unknown topics (added by later versions or other tools) are skipped.
            _ => true,
        };
        if !ok {
            self.scan.bad_messages += 1;
        }
    }
}

/// The messages of one complete chunk, or why the chunk cannot be trusted.
fn chunk_messages(
    header: ChunkHeader,
    data: &[u8],
    topics: &mut HashMap<u16, String>,
) -> std::result::Result<Vec<(u16, Vec<u8>)>, String> {
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
            Record::Message { header, data } => out.push((header.channel_id, data.into_owned())),
            Record::Channel(c) => {
                topics.insert(c.id, c.topic);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Scan an episode file's bytes up to its last complete chunk. Never fails: damage (a torn
/// chunk, a cut-off record) ends the scan and is noted in `stream_error`.
pub(crate) fn scan_bytes(buf: &[u8]) -> Scan {
    let mut asm = Assembler::default();
    asm.scan.has_footer = has_footer(buf);
    let opts: EnumSet<Options> = Options::IgnoreEndMagic.into();
    let reader = match LinearReader::new_with_options(buf, opts) {
        Ok(r) => r,
        Err(e) => {
            asm.scan.stream_error = Some(e.to_string());
            return asm.scan;
        }
    };
    let mut topics: HashMap<u16, String> = HashMap::new();
    for rec in reader {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                asm.scan.stream_error = Some(e.to_string());
                break;
            }
        };
        match rec {
            Record::Channel(c) => {
                topics.insert(c.id, c.topic);
            }
            Record::Message { header, data } => {
                if let Some(t) = topics.get(&header.channel_id).cloned() {
                    asm.message(&t, &data);
                }
            }
            // The linear reader yields a chunk only once all of it is in the file.
            Record::Chunk { header, data } => match chunk_messages(header, &data, &mut topics) {
                Ok(msgs) => {
                    for (cid, d) in msgs {
                        if let Some(t) = topics.get(&cid).cloned() {
                            asm.message(&t, &d);
                        }
                    }
                }
                Err(e) => {
                    asm.scan.stream_error = Some(e);
                    break;
                }
            },
            // The summary section repeats what was read; the data section ends here.
            Record::DataEnd(_) => break,
            _ => {}
        }
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
        let outcome = self
            .end
            .map(|(o, _)| o)
            .or(outcome_hint)
            .unwrap_or(Outcome::Truncated);
        let mut m = b.build(meta, outcome, truncated);
        m.recovered = true;
        m.failure = self.failure;
        m.dropped_frames = self.end.map(|(_, d)| d).unwrap_or(0);
        m.note = match (&self.stream_error, self.has_footer) {
            (Some(e), _) => Some(format!("read up to the last complete chunk; then: {e}")),
            (None, false) => Some("no MCAP footer (cut short after its last chunk)".to_string()),
            (None, true) => None,
        };
        m
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
    Ok(Episode {
        path: path.to_path_buf(),
        meta,
        frames: scan.frames,
        events: scan.events,
        diagnostics: scan.diagnostics,
        manifest,
        truncated,
    })
}
