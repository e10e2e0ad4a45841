//! Crash recovery: every episode file without a manifest was cut short (the recorder writes
//! the manifest last, after the footer is on disk). Recovery reads such a file up to its last
//! complete chunk and writes a manifest marked `truncated`, leaving the MCAP file untouched.
//!
//! Run it at daemon start, before the recorder opens a new episode: a file being recorded
//! also has no manifest yet. Readers never need it: they recover in memory.

use std::fs;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::error::{EpisodeError, Result};
use crate::layout;
use crate::manifest::Manifest;
use crate::reader::scan_bytes;
use crate::types::Outcome;

/// One episode recovery wrote a manifest for.
#[derive(Debug, Clone)]
pub struct RecoveredEpisode {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// What a recovery pass did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Episode files looked at.
    pub scanned: usize,
    /// Episodes that had no manifest and now have one.
    pub recovered: Vec<RecoveredEpisode>,
    /// Files recovery could not write a manifest for (e.g. a read-only disk), with why.
    pub failed: Vec<(PathBuf, String)>,
    /// Stale `*.tmp` files removed (a manifest write interrupted by the crash).
    pub removed_tmp: Vec<PathBuf>,
}

impl RecoveryReport {
    fn merge(&mut self, other: RecoveryReport) {
        self.scanned += other.scanned;
        self.recovered.extend(other.recovered);
        self.failed.extend(other.failed);
        self.removed_tmp.extend(other.removed_tmp);
    }
}

/// Recover one episode file: read what is intact and write its manifest. `outcome` is used
/// when the file holds no end record (a known outcome, e.g. from the recorder after a disk
/// fault); otherwise the episode is `Truncated`.
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
    let buf = fs::read(path).map_err(|e| EpisodeError::io(path, e))?;
    let scan = scan_bytes(&buf);
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
            let mut m = Manifest::unreadable(
                &session,
                index,
                &file,
                format!(
                    "no readable episode header ({} bytes){}",
                    buf.len(),
                    scan.stream_error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            );
            if let Some(o) = outcome {
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
    // A recovered episode is always marked truncated when its file has no clean end, even
    // with a known outcome.
    manifest.save(&layout::manifest_path(path))?;
    warn!(
        path = %path.display(),
        frames = manifest.frames,
        outcome = %manifest.outcome,
        truncated = manifest.truncated,
        "recovered episode"
    );
    Ok(manifest)
}

/// Recover every episode in one session directory that has no manifest.
pub fn recover_session_dir(dir: &Path) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    // Interrupted atomic writes leave `*.json.tmp`: the real manifest was never renamed in.
    let entries = fs::read_dir(dir).map_err(|e| EpisodeError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EpisodeError::io(dir, e))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "tmp") {
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
        if layout::manifest_path(&path).exists() {
            continue;
        }
        match recover_episode(&path, None) {
            Ok(manifest) => report.recovered.push(RecoveredEpisode { path, manifest }),
            Err(e) => {
                error!(path = %path.display(), error = %e, "could not recover episode");
                report.failed.push((path, e.to_string()));
            }
        }
    }
    Ok(report)
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
    if !report.recovered.is_empty() {
        info!(
            recovered = report.recovered.len(),
            scanned = report.scanned,
            "crash recovery wrote manifests for cut-short episodes"
        );
    }
    Ok(report)
}
