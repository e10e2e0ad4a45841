//! Listing what has been recorded: per session and in total. Frame counts come from the
//! episode files: a manifest whose counts disagree with its file is reported as stale and the
//! file's counts are used (episodes without a manifest are recovered in memory, not written).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::warn;

use crate::error::Result;
use crate::layout;
use crate::manifest::Manifest;
use crate::reader::scan_bytes;
use crate::types::{FailureCounts, Outcome};

/// Counts over a set of episodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub episodes: u64,
    pub frames: u64,
    pub intervention_steps: u64,
    pub intervention_count: u64,
    pub success: u64,
    pub failure: u64,
    pub discarded: u64,
    pub aborted: u64,
    /// Episodes whose outcome is `Truncated` (cut short with no verdict).
    pub truncated_outcome: u64,
    /// Episodes whose file was cut short, whatever their outcome.
    pub truncated_files: u64,
    pub dropped_frames: u64,
    /// Why the failed episodes failed.
    pub failures: FailureCounts,
    // Frames of episodes that count towards the intervention rate (all but discarded).
    rate_frames: u64,
    rate_intervention_steps: u64,
}

impl Counts {
    pub fn add(&mut self, m: &Manifest) {
        self.episodes += 1;
        self.frames += m.frames;
        self.intervention_steps += m.intervention_steps;
        self.intervention_count += m.intervention_count;
        self.dropped_frames += m.dropped_frames;
        match m.outcome {
            Outcome::Success => self.success += 1,
            Outcome::Failure => {
                self.failure += 1;
                self.failures.add(m.failure);
            }
            Outcome::Discarded => self.discarded += 1,
            Outcome::Aborted => self.aborted += 1,
            Outcome::Truncated => self.truncated_outcome += 1,
        }
        if m.truncated {
            self.truncated_files += 1;
        }
        if m.outcome != Outcome::Discarded {
            self.rate_frames += m.frames;
            self.rate_intervention_steps += m.intervention_steps;
        }
    }

    fn merge(&mut self, o: &Counts) {
        self.episodes += o.episodes;
        self.frames += o.frames;
        self.intervention_steps += o.intervention_steps;
        self.intervention_count += o.intervention_count;
        self.success += o.success;
        self.failure += o.failure;
        self.discarded += o.discarded;
        self.aborted += o.aborted;
        self.truncated_outcome += o.truncated_outcome;
        self.truncated_files += o.truncated_files;
        self.dropped_frames += o.dropped_frames;
        self.failures.merge(&o.failures);
        self.rate_frames += o.rate_frames;
        self.rate_intervention_steps += o.rate_intervention_steps;
    }

    /// Intervened steps / all steps, over episodes that were not discarded.
    pub fn intervention_rate(&self) -> f64 {
        if self.rate_frames == 0 {
            0.0
        } else {
            self.rate_intervention_steps as f64 / self.rate_frames as f64
        }
    }

    /// Successes / (successes + failures); `None` before any episode was judged.
    pub fn success_rate(&self) -> Option<f64> {
        let judged = self.success + self.failure;
        (judged > 0).then(|| self.success as f64 / judged as f64)
    }
}

/// One session's episodes.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub dir: PathBuf,
    /// Manifests in episode order (computed in memory for files that have none).
    pub episodes: Vec<Manifest>,
    pub counts: Counts,
    /// Policy versions that ran in this session, in order of first appearance.
    pub policy_versions: Vec<String>,
    /// Files without a manifest on disk (cut short and not yet recovered, or being recorded).
    pub unrecovered: Vec<PathBuf>,
    /// Files whose manifest disagreed with the frames in the file: each with the note. The
    /// counts above are the file's.
    pub stale_manifests: Vec<(PathBuf, String)>,
}

/// Everything under a data root.
#[derive(Debug, Clone, Serialize)]
pub struct DataSummary {
    pub root: PathBuf,
    pub sessions: Vec<SessionSummary>,
    pub total: Counts,
}

/// One episode's manifest with its counts taken from the file.
struct Listed {
    manifest: Manifest,
    /// There is no (readable) manifest on disk; `manifest` was computed from the file.
    unrecovered: bool,
    /// The manifest on disk disagreed with the file: why.
    stale: Option<String>,
}

fn manifest_for(path: &Path, session_id: &str, idx: u32) -> Listed {
    // What the file holds, whether or not there is a manifest: a manifest can be stale.
    let file = layout::episode_file_name(idx);
    let from_file = match std::fs::read(path) {
        Ok(buf) => {
            let scan = scan_bytes(&buf);
            match &scan.meta {
                Some(meta) => scan.implied_manifest(meta, None),
                None => Manifest::unreadable(
                    session_id,
                    idx,
                    &file,
                    "no readable episode header".into(),
                ),
            }
        }
        Err(e) => Manifest::unreadable(session_id, idx, &file, format!("cannot read: {e}")),
    };
    let mpath = layout::manifest_path(path);
    match Manifest::load(&mpath) {
        Ok(mut m) => {
            let stale = m.verify_against_file(&from_file);
            if let Some(note) = &stale {
                warn!(manifest = %mpath.display(), "{note}");
            }
            Listed {
                manifest: m,
                unrecovered: false,
                stale,
            }
        }
        // No (readable) manifest: recovered in memory so the episode is listed, never dropped.
        Err(_) => Listed {
            manifest: from_file,
            unrecovered: true,
            stale: None,
        },
    }
}

/// Summarise one session directory.
pub fn summarize_session(dir: &Path) -> Result<SessionSummary> {
    let session_id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let mut s = SessionSummary {
        session_id: session_id.clone(),
        dir: dir.to_path_buf(),
        episodes: Vec::new(),
        counts: Counts::default(),
        policy_versions: Vec::new(),
        unrecovered: Vec::new(),
        stale_manifests: Vec::new(),
    };
    for (idx, path) in layout::episode_files(dir)? {
        let Listed {
            manifest: m,
            unrecovered,
            stale,
        } = manifest_for(&path, &session_id, idx);
        if let Some(note) = stale {
            s.stale_manifests.push((path.clone(), note));
        }
        if unrecovered {
            s.unrecovered.push(path);
        }
        s.counts.add(&m);
        if let Some(v) = &m.policy_version {
            if !s.policy_versions.contains(v) {
                s.policy_versions.push(v.clone());
            }
        }
        s.episodes.push(m);
    }
    Ok(s)
}

/// Summarise every session under `<root>/sessions`, with totals.
pub fn list_sessions(root: &Path) -> Result<DataSummary> {
    let mut out = DataSummary {
        root: root.to_path_buf(),
        sessions: Vec::new(),
        total: Counts::default(),
    };
    for id in layout::session_ids(root)? {
        let dir = layout::session_dir(root, &id);
        match summarize_session(&dir) {
            Ok(s) => {
                out.total.merge(&s.counts);
                out.sessions.push(s);
            }
            Err(e) => warn!(dir = %dir.display(), error = %e, "skipping unreadable session dir"),
        }
    }
    Ok(out)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn write_row(f: &mut fmt::Formatter<'_>, name: &str, c: &Counts, policies: &str) -> fmt::Result {
    writeln!(
        f,
        "{:<20} {:>4} {:>8} {:>6} {:>7} {:>8} {:>4} {:>4} {:>4} {:>5} {:>8}  {}",
        name,
        c.episodes,
        c.frames,
        c.intervention_count,
        c.intervention_steps,
        pct(c.intervention_rate()),
        c.success,
        c.failure,
        c.discarded,
        c.truncated_files,
        c.success_rate().map_or_else(|| "-".to_string(), pct),
        policies
    )
}

impl fmt::Display for DataSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "data root: {}", self.root.display())?;
        writeln!(
            f,
            "{:<20} {:>4} {:>8} {:>6} {:>7} {:>8} {:>4} {:>4} {:>4} {:>5} {:>8}  policies",
            "session",
            "eps",
            "frames",
            "takes",
            "int.st",
            "int.rate",
            "ok",
            "fail",
            "disc",
            "trunc",
            "success",
        )?;
        for s in &self.sessions {
            write_row(f, &s.session_id, &s.counts, &s.policy_versions.join(","))?;
        }
        write_row(f, "TOTAL", &self.total, "")?;
        if self.total.failure > 0 {
            writeln!(f, "why episodes failed:")?;
            for s in &self.sessions {
                if s.counts.failure > 0 {
                    writeln!(f, "  {:<18} {}", s.session_id, s.counts.failures)?;
                }
            }
        }
        for s in &self.sessions {
            for (path, note) in &s.stale_manifests {
                writeln!(f, "{}: {note}", path.display())?;
            }
        }
        let unrecovered: usize = self.sessions.iter().map(|s| s.unrecovered.len()).sum();
        if unrecovered > 0 {
            writeln!(
                f,
                "{unrecovered} episode file(s) without a manifest (cut short or being recorded); \
                 the daemon recovers them at start"
            )?;
        }
        Ok(())
    }
}
