//! Where episodes live: `<root>/sessions/<session-id>/episode-<NNNNNN>.{mcap,json}`.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{EpisodeError, Result};

/// `<root>/sessions`
pub fn sessions_dir(root: &Path) -> PathBuf {
    root.join("sessions")
}

/// `<root>/sessions/<session_id>`
pub fn session_dir(root: &Path, session_id: &str) -> PathBuf {
    sessions_dir(root).join(session_id)
}

/// `episode-000042.mcap`
pub fn episode_file_name(episode_index: u32) -> String {
    format!("episode-{episode_index:06}.mcap")
}

/// `<root>/sessions/<session_id>/episode-<NNNNNN>.mcap`
pub fn episode_path(root: &Path, session_id: &str, episode_index: u32) -> PathBuf {
    session_dir(root, session_id).join(episode_file_name(episode_index))
}

/// The manifest beside an episode file: `episode-<NNNNNN>.json`.
pub fn manifest_path(mcap_path: &Path) -> PathBuf {
    mcap_path.with_extension("json")
}

/// The episode index encoded in an `episode-NNNNNN.mcap` file name.
pub fn parse_episode_file_name(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix("episode-")?.strip_suffix(".mcap")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The episode files of a session directory, sorted by episode index.
pub fn episode_files(session_dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(session_dir).map_err(|e| EpisodeError::io(session_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EpisodeError::io(session_dir, e))?;
        let path = entry.path();
        if let Some(idx) = parse_episode_file_name(&path) {
            out.push((idx, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Session ids under `<root>/sessions`, sorted (ids that sort by time sort sessions by time).
pub fn session_ids(root: &Path) -> Result<Vec<String>> {
    let dir = sessions_dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        // No sessions yet is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EpisodeError::io(&dir, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| EpisodeError::io(&dir, e))?;
        let is_dir = entry
            .file_type()
            .map_err(|e| EpisodeError::io(entry.path(), e))?
            .is_dir();
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            ids.push(name.to_string());
        }
    }
    ids.sort();
    Ok(ids)
}

/// The next unused episode index in a session (one past the highest on disk).
pub fn next_episode_index(root: &Path, session_id: &str) -> Result<u32> {
    let dir = session_dir(root, session_id);
    if !dir.exists() {
        return Ok(0);
    }
    Ok(episode_files(&dir)?
        .last()
        .map(|(i, _)| i.saturating_add(1))
        .unwrap_or(0))
}

/// A session id from the wall clock, `YYYYMMDD-HHMMSS` in UTC: sorts by time.
pub fn new_session_id() -> String {
    let secs = crate::types::unix_now_ns() / 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm: avoids a date crate for one format.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// fsync a directory so a file created or renamed in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| EpisodeError::io(dir, e))
}

/// Write a file atomically: temp file, fsync, rename over the target, fsync the directory.
/// A reader sees either the old content or the new, never a torn file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| EpisodeError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| EpisodeError::io(&tmp, e))?;
        f.sync_all().map_err(|e| EpisodeError::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| EpisodeError::io(path, e))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        // Do not leave a half-written temp file behind (e.g. on a full disk).
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2024-02-29 is day 19782.
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
    }

    #[test]
    fn file_names() {
        assert_eq!(episode_file_name(7), "episode-000007.mcap");
        assert_eq!(
            parse_episode_file_name(Path::new("/x/episode-000123.mcap")),
            Some(123)
        );
        assert_eq!(parse_episode_file_name(Path::new("episode-.mcap")), None);
        assert_eq!(parse_episode_file_name(Path::new("episode-12.json")), None);
        assert_eq!(
            manifest_path(Path::new("/a/episode-000001.mcap")),
            PathBuf::from("/a/episode-000001.json")
        );
    }
}
