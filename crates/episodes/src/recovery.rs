//! Crash recovery: every episode file without a manifest was cut short (the recorder writes
//! the manifest last, after the footer is on disk). Recovery reads such a file up to its last
//! complete chunk, rewrites it as a complete MCAP file when it is not one (see below), and
//! writes a manifest marked `truncated`.
//!
//! The rewrite makes a cut file open in every MCAP reader (Foxglove, the `mcap` CLI, the
//! Python and C++ libraries), not only in ours, which reads cut files in memory:
//!
//! 1. every intact message (same schemas, channels, sequence numbers and log/publish times,
//!    chunked as before) plus a [`REPAIR_METADATA`] record saying what was dropped is written
//!    to `episode-NNNNNN.mcap.repair` beside the original, with a summary (statistics, chunk
//!    and message indexes) and a footer, and fsynced;
//! 2. that copy is read back: it must be a well-formed MCAP holding as many messages and
//!    frames as were read from the original;
//! 3. it is renamed over the original and the directory fsynced; then the manifest is
//!    written (atomically).
//!
//! The original bytes are never touched before step 3, so a crash at any point leaves either
//! the old file or the new one; a leftover `.repair` file is deleted and the next recovery
//! starts over. A repaired file carries its [`REPAIR_METADATA`] record, so a recovery that is
//! interrupted between the rename and the manifest writes the same manifest the next time.
//! Files that already end with a valid footer are never rewritten.
//!
//! Run it at daemon start, before the recorder opens a new episode: a file being recorded
//! also has no manifest yet. The recorder holds an exclusive `flock` on the file it records;
//! recovery skips a locked file ([`RecoveryAction::Busy`]), so `intervened recover` is safe to
//! run next to a recording daemon.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mcap::records::Metadata;
use serde::Serialize;
use tracing::{error, info, warn};

use crate::error::{EpisodeError, Result};
use crate::format;
use crate::layout;
use crate::manifest::Manifest;
use crate::reader::{scan_bytes, scan_bytes_raw, tail_last_log_time, Raw, Scan, REPAIR_METADATA};
use crate::types::Outcome;

/// What recovery did to one episode file's bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repair {
    pub path: PathBuf,
    /// The file's length before the rewrite.
    pub bytes_before: u64,
    /// The repaired file's length (it gains a summary and a footer).
    pub bytes_after: u64,
    /// Bytes of damaged tail (a torn or unfinished chunk, a cut-off record) that were dropped.
    pub bytes_dropped: u64,
    /// Intact MCAP messages kept (every topic).
    pub messages: u64,
    /// Whole frames kept.
    pub frames: u64,
    /// Episode time of the last frame kept (s).
    pub kept_until_s: Option<f64>,
    /// Log-time span of the messages still legible in the dropped bytes, after the last kept
    /// message (s). Frames that had not reached the disk when the process died (at most one
    /// flush interval) left no bytes and are not counted.
    pub lost_span_s: f64,
    /// Why the file needed repair.
    pub damage: String,
}

/// What recovery did with one episode file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryAction {
    /// A manifest and a valid footer were already there: nothing to do.
    Intact,
    /// The MCAP file was whole (or repaired earlier); only its manifest was missing.
    ManifestWritten,
    /// The MCAP file was rewritten complete (and its manifest written if it had none).
    Repaired,
    /// Being recorded by a running process: left alone.
    Busy,
    /// Recovery failed; see `error`. The file is untouched. When only the rewrite failed (no
    /// room for the copy, say), the manifest was written and the next recovery retries.
    Failed,
}

/// One episode file's line in a [`RecoveryReport`].
#[derive(Debug, Clone, Serialize)]
pub struct FileRecovery {
    pub path: PathBuf,
    pub action: RecoveryAction,
    /// What the rewrite kept and dropped, when the file was rewritten.
    pub repair: Option<Repair>,
    pub error: Option<String>,
}

/// One episode recovery wrote a manifest for.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveredEpisode {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Set when the MCAP file was rewritten.
    pub repair: Option<Repair>,
}

/// What a recovery pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// Episode files looked at.
    pub scanned: usize,
    /// Episodes that had no manifest and now have one.
    pub recovered: Vec<RecoveredEpisode>,
    /// Files recovery could not recover (e.g. a read-only disk), with why.
    pub failed: Vec<(PathBuf, String)>,
    /// Stale temp files removed: `*.tmp` (a manifest or episode creation interrupted by the
    /// crash) and `*.mcap.repair` (a repair interrupted before its rename).
    pub removed_tmp: Vec<PathBuf>,
    /// Every episode file scanned, in order, with what was done to it.
    pub files: Vec<FileRecovery>,
}

impl RecoveryReport {
    fn merge(&mut self, other: RecoveryReport) {
        self.scanned += other.scanned;
        self.recovered.extend(other.recovered);
        self.failed.extend(other.failed);
        self.removed_tmp.extend(other.removed_tmp);
        self.files.extend(other.files);
    }

    /// Files whose MCAP bytes were rewritten.
    pub fn repaired(&self) -> impl Iterator<Item = &Repair> {
        self.files.iter().filter_map(|f| f.repair.as_ref())
    }
}

/// Recover one episode file: repair it if it is cut short, and write its manifest. `outcome`
/// is used when the file holds no end record (a known outcome, e.g. from the recorder after a
/// disk fault); otherwise the episode is `Truncated`. Fails with [`EpisodeError::Busy`] when
/// another process is recording the file.
pub fn recover_episode(path: &Path, outcome: Option<Outcome>) -> Result<Manifest> {
    recover_episode_with(path, outcome, 0, 0, None)
}

pub(crate) fn recover_episode_with(
    path: &Path,
    outcome: Option<Outcome>,
    dropped: u64,
    lost: u64,
    note: Option<String>,
) -> Result<Manifest> {
    let _lock = lock_for_recovery(path)?.ok_or_else(|| EpisodeError::Busy {
        path: path.to_path_buf(),
    })?;
    remove_stale_repair(path);
    recover_locked(path, outcome, dropped, lost, note).map(|(m, _, _)| m)
}

/// Rewrite a cut-short episode file as a complete MCAP file (see the module docs), leaving
/// its manifest alone. `Ok(None)` when the file already ends with a valid footer (it is left
/// byte for byte as it was) or is not an MCAP file at all.
pub fn repair_episode_file(path: &Path) -> Result<Option<Repair>> {
    let _lock = lock_for_recovery(path)?.ok_or_else(|| EpisodeError::Busy {
        path: path.to_path_buf(),
    })?;
    remove_stale_repair(path);
    repair_locked(path)
}

/// [`repair_episode_file`]; the caller holds the file's lock.
fn repair_locked(path: &Path) -> Result<Option<Repair>> {
    let buf = fs::read(path).map_err(|e| EpisodeError::io(path, e))?;
    let scan = scan_bytes(&buf);
    if !needs_repair(&scan, &buf) {
        return Ok(None);
    }
    // What the manifest knows that the file cannot tell, kept in the repaired file too.
    let mut hints = RepairHints::default();
    if let Ok(m) = Manifest::load(&layout::manifest_path(path)) {
        if m.outcome != Outcome::Truncated {
            hints.outcome = Some(m.outcome);
        }
        hints.dropped = m.dropped_frames;
        hints.lost = m.lost_frames;
    }
    rewrite(path, &buf, &scan, &hints).map(|(_, r)| Some(r))
}

/// What the caller knows about a cut episode that the file does not say.
#[derive(Debug, Clone, Default)]
struct RepairHints {
    outcome: Option<Outcome>,
    dropped: u64,
    lost: u64,
    note: Option<String>,
}

/// The file must be rewritten for every reader to open it: it does not end with a footer, a
/// record before it is damaged, or (a torn write on a power cut) its summary section does not
/// parse. A file that does not even start like an MCAP file is not ours to rewrite.
fn needs_repair(scan: &Scan, buf: &[u8]) -> bool {
    scan.mcap_magic && (!scan.well_formed() || mcap::Summary::read(buf).is_err())
}

/// Repair (if needed) and write the manifest; the caller holds the file's lock. When the
/// rewrite fails (no room for the copy, say), the manifest is written all the same, for the
/// file as it is, and the error returned beside it: the next recovery finds a manifest beside
/// a file without a footer and retries the rewrite.
fn recover_locked(
    path: &Path,
    outcome: Option<Outcome>,
    dropped: u64,
    lost: u64,
    note: Option<String>,
) -> Result<(Manifest, Option<Repair>, Option<EpisodeError>)> {
    let buf = fs::read(path).map_err(|e| EpisodeError::io(path, e))?;
    let scan = scan_bytes(&buf);
    let mut repair_error = None;
    let (scan, bytes_len, repair) = if needs_repair(&scan, &buf) {
        let hints = RepairHints {
            outcome,
            dropped,
            lost,
            note: note.clone(),
        };
        match rewrite(path, &buf, &scan, &hints) {
            Ok((new_scan, repair)) => (new_scan, repair.bytes_after, Some(repair)),
            Err(e) => {
                error!(path = %path.display(), error = %e, "could not rewrite a cut-short episode file; writing its manifest anyway");
                repair_error = Some(e);
                (scan, buf.len() as u64, None)
            }
        }
    } else {
        if !scan.mcap_magic {
            warn!(path = %path.display(), "not an MCAP file; left as it is");
        }
        (scan, buf.len() as u64, None)
    };
    // A repaired file says what recovery was told (the same values, when it was this call).
    let info = scan.repair.clone().unwrap_or_default();
    let num = |k: &str| info.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let dropped = dropped.max(num("dropped_frames"));
    let lost = lost.max(num("lost_frames"));
    let note = note.or_else(|| info.get("note").cloned());
    let mut manifest = match &scan.meta {
        Some(meta) => scan.implied_manifest(meta, outcome),
        None => {
            // Not even the header chunk survived; keep the file listed, never drop it.
            let session = path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let index =
                layout::parse_episode_file_name(path).ok_or_else(|| EpisodeError::BadFileName {
                    path: path.to_path_buf(),
                })?;
            let file = layout::episode_file_name(index);
            let why = info
                .get("reason")
                .cloned()
                .or_else(|| scan.stream_error.clone());
            let mut m = Manifest::unreadable(
                &session,
                index,
                &file,
                format!(
                    "no readable episode header ({} bytes){}",
                    repair.as_ref().map_or(bytes_len, |r| r.bytes_before),
                    why.map(|e| format!(": {e}")).unwrap_or_default()
                ),
            );
            if let Some(o) = outcome.or_else(|| {
                info.get("outcome")
                    .and_then(|o| serde_json::from_value(serde_json::Value::String(o.clone())).ok())
            }) {
                m.outcome = o;
            }
            m
        }
    };
    manifest.dropped_frames = manifest.dropped_frames.max(dropped);
    manifest.lost_frames = lost;
    if let Some(n) = note {
        manifest.note = Some(match manifest.note.take() {
            Some(old) => format!("{n}; {old}"),
            None => n,
        });
    }
    if let Some(e) = &repair_error {
        let n = format!("{PENDING_REWRITE} ({e})");
        manifest.note = Some(match manifest.note.take() {
            Some(old) => format!("{old}; {n}"),
            None => n,
        });
    }
    // A recovered episode is always marked truncated when its file has no clean end, even
    // with a known outcome.
    manifest.save(&layout::manifest_path(path))?;
    warn!(
        path = %path.display(),
        frames = manifest.frames,
        outcome = %manifest.outcome,
        truncated = manifest.truncated,
        repaired = repair.is_some(),
        "recovered episode"
    );
    Ok((manifest, repair, repair_error))
}

/// `episode-NNNNNN.mcap.repair`: where the repaired copy is written before its rename.
pub fn repair_temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".repair");
    PathBuf::from(name)
}

/// Delete the leftover of a repair interrupted before its rename (the original is intact).
fn remove_stale_repair(path: &Path) -> Option<PathBuf> {
    let tmp = repair_temp_path(path);
    match fs::remove_file(&tmp) {
        Ok(()) => {
            warn!(path = %tmp.display(), "removed an interrupted repair; redoing it");
            Some(tmp)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            warn!(path = %tmp.display(), error = %e, "could not remove an interrupted repair");
            None
        }
    }
}

/// Take the file's exclusive lock without waiting: `Ok(None)` when another process (a
/// recorder) holds it. The lock is released when the returned file is dropped.
fn lock_for_recovery(path: &Path) -> Result<Option<File>> {
    let f = File::open(path).map_err(|e| EpisodeError::io(path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(TryLockError::WouldBlock) => Ok(None),
        // A file system without locks: nothing can be told apart, go ahead.
        Err(TryLockError::Error(e)) => {
            warn!(path = %path.display(), error = %e, "cannot lock episode file; recovering anyway");
            Ok(Some(f))
        }
    }
}

/// The file ends with an MCAP footer record and the magic (read from the last 37 bytes only).
fn ends_with_footer(path: &Path) -> Result<bool> {
    // Footer record: opcode (1), length (8) = 20, summary start (8), summary offset start
    // (8), summary CRC (4); then the magic (8).
    const TAIL: usize = 1 + 8 + 20 + 8;
    let mut f = File::open(path).map_err(|e| EpisodeError::io(path, e))?;
    let len = f.metadata().map_err(|e| EpisodeError::io(path, e))?.len();
    if len < (mcap::MAGIC.len() + TAIL) as u64 {
        return Ok(false);
    }
    let mut tail = [0u8; TAIL];
    f.seek(SeekFrom::End(-(TAIL as i64)))
        .and_then(|_| f.read_exact(&mut tail))
        .map_err(|e| EpisodeError::io(path, e))?;
    let summary_start = u64::from_le_bytes(tail[9..17].try_into().unwrap_or_default());
    Ok(tail[0] == mcap::records::op::FOOTER
        && tail[1..9] == 20u64.to_le_bytes()
        && tail[29..] == *mcap::MAGIC
        && summary_start < len)
}

/// Write the repaired copy, check it, rename it over `path`. Returns the repaired file's scan.
fn rewrite(path: &Path, buf: &[u8], scan: &Scan, hints: &RepairHints) -> Result<(Scan, Repair)> {
    let (scan, raw) = {
        // The first scan kept no message bytes; read again, keeping them.
        let (s, r) = scan_bytes_raw(buf);
        debug_assert_eq!(s.messages, scan.messages);
        (s, r)
    };
    let tmp = repair_temp_path(path);
    let lost_span_ns = match (
        tail_last_log_time(buf, scan.intact_end as usize),
        scan.last_log_time,
    ) {
        (Some(t), Some(k)) => t.saturating_sub(k),
        _ => 0,
    };
    let bytes_dropped = (buf.len() as u64).saturating_sub(scan.intact_end);
    let damage = if scan.well_formed() {
        "the summary section does not parse (a torn write)".to_string()
    } else {
        scan.damage()
    };
    let mut info = BTreeMap::new();
    info.insert("reason".to_string(), damage.clone());
    info.insert("original_bytes".to_string(), buf.len().to_string());
    info.insert("kept_bytes".to_string(), scan.intact_end.to_string());
    info.insert("dropped_bytes".to_string(), bytes_dropped.to_string());
    info.insert("lost_span_ns".to_string(), lost_span_ns.to_string());
    if let Some(o) = hints.outcome {
        info.insert("outcome".to_string(), o.as_str().to_string());
    }
    info.insert("dropped_frames".to_string(), hints.dropped.to_string());
    info.insert("lost_frames".to_string(), hints.lost.to_string());
    if let Some(n) = &hints.note {
        info.insert("note".to_string(), n.clone());
    }

    let result = (|| {
        let written = write_repaired(&tmp, &raw, info)?;
        // Read the copy back from the disk, the way every reader will.
        let bytes = fs::read(&tmp).map_err(|e| EpisodeError::io(&tmp, e))?;
        let check = scan_bytes(&bytes);
        let problem = if !check.well_formed() {
            Some(format!(
                "not a well-formed MCAP file: {}",
                check.stream_error.as_deref().unwrap_or("no footer")
            ))
        } else if check.messages != written || written != scan.messages {
            Some(format!(
                "{} messages read back, {written} written, {} in the original",
                check.messages, scan.messages
            ))
        } else if check.frames.len() != scan.frames.len() {
            Some(format!(
                "{} frames read back, {} in the original",
                check.frames.len(),
                scan.frames.len()
            ))
        } else if check.repair.is_none() {
            Some("no recovery record".to_string())
        } else {
            match mcap::Summary::read(&bytes) {
                Ok(Some(s)) if s.stats.as_ref().map(|s| s.message_count) == Some(written) => None,
                Ok(Some(_)) => Some("summary statistics disagree".to_string()),
                Ok(None) => Some("no summary section".to_string()),
                Err(e) => Some(format!("summary: {e}")),
            }
        };
        if let Some(detail) = problem {
            return Err(EpisodeError::RepairCheck {
                path: path.to_path_buf(),
                detail,
            });
        }
        // Only now is the original replaced, atomically.
        fs::rename(&tmp, path).map_err(|e| EpisodeError::io(path, e))?;
        if let Some(dir) = path.parent() {
            layout::sync_dir(dir)?;
        }
        Ok((check, bytes.len() as u64))
    })();
    let (check, bytes_after) = match result {
        Ok(v) => v,
        Err(e) => {
            // The original is untouched; do not leave a half-checked copy behind.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let repair = Repair {
        path: path.to_path_buf(),
        bytes_before: buf.len() as u64,
        bytes_after,
        bytes_dropped,
        messages: check.messages,
        frames: check.frames.len() as u64,
        kept_until_s: check.frames.last().map(|f| f.t),
        lost_span_s: lost_span_ns as f64 / 1e9,
        damage,
    };
    info!(
        path = %path.display(),
        messages = repair.messages,
        bytes_dropped = repair.bytes_dropped,
        "rewrote a cut-short episode file as a complete MCAP file"
    );
    Ok((check, repair))
}

/// Write `raw` as a complete MCAP file at `tmp` and fsync it. Returns the messages written.
fn write_repaired(tmp: &Path, raw: &Raw, info: BTreeMap<String, String>) -> Result<u64> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| EpisodeError::io(tmp, e))?;
    let sync = file.try_clone().map_err(|e| EpisodeError::io(tmp, e))?;
    let (profile, library) = match &raw.header {
        Some(h) => (h.profile.clone(), h.library.clone()),
        None => (
            format::PROFILE.to_string(),
            concat!("intervened-episodes/", env!("CARGO_PKG_VERSION")).to_string(),
        ),
    };
    let mk = |e| EpisodeError::mcap(tmp, e);
    let mut w = mcap::WriteOptions::new()
        .compression(None)
        .chunk_size(None)
        .profile(profile)
        .library(library)
        .create(BufWriter::with_capacity(256 * 1024, file))
        .map_err(mk)?;
    for (&id, (name, encoding, data)) in &raw.schemas {
        if id != 0 {
            w.add_schema_with_id(id, name, encoding, data).map_err(mk)?;
        }
    }
    for c in raw.channels.values() {
        // A channel whose schema was lost keeps its messages, without a schema.
        let schema_id = if raw.schemas.contains_key(&c.schema_id) {
            c.schema_id
        } else {
            0
        };
        w.add_channel_with_id(c.id, schema_id, &c.topic, &c.message_encoding, &c.metadata)
            .map_err(mk)?;
    }
    let mut written = 0u64;
    for group in &raw.groups {
        for (header, data) in group {
            if raw.channels.contains_key(&header.channel_id) {
                w.write_to_known_channel(header, data).map_err(mk)?;
                written += 1;
            }
        }
        // One chunk per original chunk: a frame never straddles two.
        w.flush().map_err(mk)?;
    }
    for m in raw.metadata.iter().filter(|m| m.name != REPAIR_METADATA) {
        w.write_metadata(m).map_err(mk)?;
    }
    w.write_metadata(&Metadata {
        name: REPAIR_METADATA.to_string(),
        metadata: info,
    })
    .map_err(mk)?;
    w.finish().map_err(mk)?;
    let mut inner = w.into_inner();
    inner.flush().map_err(|e| EpisodeError::io(tmp, e))?;
    drop(inner);
    sync.sync_all().map_err(|e| EpisodeError::io(tmp, e))?;
    Ok(written)
}

/// Recover every episode in one session directory: repair cut files, write missing manifests.
pub fn recover_session_dir(dir: &Path) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    // Interrupted atomic writes leave `*.tmp` (the real file was never renamed in), and
    // interrupted repairs `*.mcap.repair` (the original is intact).
    let entries = fs::read_dir(dir).map_err(|e| EpisodeError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EpisodeError::io(dir, e))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "tmp" || e == "repair") {
            match fs::remove_file(&p) {
                Ok(()) => report.removed_tmp.push(p),
                Err(e) => {
                    warn!(path = %p.display(), error = %e, "could not remove stale temp file")
                }
            }
        }
    }
    for (_, path) in layout::episode_files(dir)? {
        report.scanned += 1;
        let line = recover_file(&path, &mut report);
        report.files.push(line);
    }
    Ok(report)
}

/// Recover one file of a session directory, adding to `report`.
fn recover_file(path: &Path, report: &mut RecoveryReport) -> FileRecovery {
    let mut line = FileRecovery {
        path: path.to_path_buf(),
        action: RecoveryAction::Intact,
        repair: None,
        error: None,
    };
    let has_manifest = layout::manifest_path(path).exists();
    let result = (|| -> Result<()> {
        if has_manifest && ends_with_footer(path)? {
            return Ok(());
        }
        let Some(_lock) = lock_for_recovery(path)? else {
            line.action = RecoveryAction::Busy;
            return Ok(());
        };
        if has_manifest {
            // Recovered before recovery rewrote files: the manifest stands, the file is
            // repaired now.
            if let Some(r) = repair_locked(path)? {
                line.action = RecoveryAction::Repaired;
                line.repair = Some(r);
                drop_pending_rewrite_note(path)?;
            }
            return Ok(());
        }
        let (manifest, repair, repair_error) = recover_locked(path, None, 0, 0, None)?;
        line.action = if repair.is_some() {
            RecoveryAction::Repaired
        } else {
            RecoveryAction::ManifestWritten
        };
        line.repair = repair.clone();
        report.recovered.push(RecoveredEpisode {
            path: path.to_path_buf(),
            manifest,
            repair,
        });
        match repair_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })();
    if let Err(e) = result {
        error!(path = %path.display(), error = %e, "could not recover episode");
        report.failed.push((path.to_path_buf(), e.to_string()));
        line.action = RecoveryAction::Failed;
        line.error = Some(e.to_string());
    }
    if line.action == RecoveryAction::Busy {
        info!(path = %path.display(), "episode file is being recorded; left alone");
    }
    line
}

/// The note an earlier recovery left when it could not rewrite the file.
const PENDING_REWRITE: &str = "not yet rewritten as a complete MCAP file";

/// Once the file is rewritten, its manifest no longer says it is pending.
fn drop_pending_rewrite_note(path: &Path) -> Result<()> {
    let mpath = layout::manifest_path(path);
    let Ok(mut m) = Manifest::load(&mpath) else {
        return Ok(());
    };
    let Some(i) = m.note.as_deref().and_then(|n| n.find(PENDING_REWRITE)) else {
        return Ok(());
    };
    let kept = m
        .note
        .as_deref()
        .map(|n| n[..i].trim_end_matches("; ").to_string())
        .unwrap_or_default();
    m.note = (!kept.is_empty()).then_some(kept);
    m.save(&mpath)
}

/// Recover every session under `<root>/sessions`.
pub fn recover_all(root: &Path) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    for id in layout::session_ids(root)? {
        let dir = layout::session_dir(root, &id);
        match recover_session_dir(&dir) {
            Ok(r) => report.merge(r),
            Err(e) => {
                error!(dir = %dir.display(), error = %e, "could not scan session");
                report.failed.push((dir, e.to_string()));
            }
        }
    }
    let repaired = report.repaired().count();
    if !report.recovered.is_empty() || repaired > 0 {
        info!(
            recovered = report.recovered.len(),
            repaired,
            scanned = report.scanned,
            "crash recovery repaired cut-short episode files and wrote their manifests"
        );
    }
    Ok(report)
}
