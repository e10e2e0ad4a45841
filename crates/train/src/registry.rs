//! The policy registry: `<registry>/<version>/{policy.pt, policy.json, loss.svg}` plus a
//! `current` symlink naming the live version. Versions are `v0001`, `v0002`, ... and are never
//! overwritten, so history is kept and a rollback is just a symlink switch.
//!
//! Both publishing and switching are atomic: a version directory appears whole (written in a
//! staging directory, then renamed) and `current` is replaced by renaming a fresh symlink over
//! it, so a reader (the daemon) never sees a half-written policy or a missing `current`.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{info, warn};

use crate::error::TrainError;

pub const CURRENT: &str = "current";
pub const POLICY_FILE: &str = "policy.pt";
pub const SIDECAR_FILE: &str = "policy.json";
pub const LOSS_PLOT_FILE: &str = "loss.svg";

/// One published version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyEntry {
    pub version: String,
    pub path: PathBuf,
    pub current: bool,
    /// The parsed `policy.json`, when it is readable.
    pub sidecar: Option<serde_json::Value>,
}

/// `v0012` -> 12. Anything else (staging directories, `current`) is not a version.
pub fn parse_version(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('v')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn format_version(n: u32) -> String {
    format!("v{n:04}")
}

fn reg_err(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Registry {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Version names present in the registry, oldest first. A missing registry has none.
fn versions(registry: &Path) -> Result<Vec<(u32, String)>, TrainError> {
    let rd = match fs::read_dir(registry) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(registry)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(TrainError::io(registry))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let (Some(n), true) = (parse_version(&name), is_dir) {
            out.push((n, name));
        }
    }
    out.sort();
    Ok(out)
}

/// The version `current` points at, if any.
pub fn current_version(registry: &Path) -> Result<Option<String>, TrainError> {
    let link = registry.join(CURRENT);
    match fs::read_link(&link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrainError::io(link)(e)),
    }
}

/// Every published version, oldest first, marking the current one.
pub fn list_policies(registry: &Path) -> Result<Vec<PolicyEntry>, TrainError> {
    let current = current_version(registry)?;
    versions(registry)?
        .into_iter()
        .map(|(_, version)| {
            let path = registry.join(&version);
            let sidecar = fs::read(path.join(SIDECAR_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            Ok(PolicyEntry {
                current: current.as_deref() == Some(version.as_str()),
                version,
                path,
                sidecar,
            })
        })
        .collect()
}

/// The name the next publish will take.
pub fn next_version(registry: &Path) -> Result<String, TrainError> {
    let last = versions(registry)?.last().map(|(n, _)| *n).unwrap_or(0);
    Ok(format_version(last + 1))
}

fn is_complete(dir: &Path) -> bool {
    dir.join(POLICY_FILE).is_file() && dir.join(SIDECAR_FILE).is_file()
}

/// Points `current` at `version`, atomically (a new symlink renamed over the old one).
pub fn set_current(registry: &Path, version: &str) -> Result<(), TrainError> {
    let dir = registry.join(version);
    if parse_version(version).is_none() || !is_complete(&dir) {
        return Err(reg_err(
            registry,
            format!("{version} is not a complete published version (policy.pt and policy.json)"),
        ));
    }
    let tmp = registry.join(format!(".current-{}", std::process::id()));
    // A stale temp link from a crashed run would make symlink() fail.
    let _ = fs::remove_file(&tmp);
    // Relative target: the registry stays valid when moved or mounted elsewhere.
    std::os::unix::fs::symlink(version, &tmp).map_err(TrainError::io(&tmp))?;
    if let Err(e) = fs::rename(&tmp, registry.join(CURRENT)) {
        let _ = fs::remove_file(&tmp);
        return Err(TrainError::io(registry.join(CURRENT))(e));
    }
    info!(registry = %registry.display(), version, "current policy switched");
    Ok(())
}

/// Switches `current` back to `to`, or by default to the version before the current one.
/// Returns the version now current.
pub fn rollback(registry: &Path, to: Option<&str>) -> Result<String, TrainError> {
    let all = versions(registry)?;
    let target = match to {
        Some(v) => {
            if !all.iter().any(|(_, name)| name == v) {
                let known: Vec<&str> = all.iter().map(|(_, n)| n.as_str()).collect();
                return Err(reg_err(
                    registry,
                    format!("no version {v} (published: {})", known.join(", ")),
                ));
            }
            v.to_string()
        }
        None => {
            let cur = current_version(registry)?.ok_or_else(|| {
                reg_err(
                    registry,
                    "no current policy to roll back from; name a version",
                )
            })?;
            let cur_n = parse_version(&cur).ok_or_else(|| {
                reg_err(
                    registry,
                    format!("current points at {cur}, which is not a version"),
                )
            })?;
            all.iter()
                .rev()
                .find(|(n, name)| *n < cur_n && is_complete(&registry.join(name)))
                .map(|(_, name)| name.clone())
                .ok_or_else(|| reg_err(registry, format!("no version before {cur}")))?
        }
    };
    set_current(registry, &target)?;
    Ok(target)
}

/// Publishes a new version: `write(dir, version)` fills a staging directory, which is then
/// renamed to `<registry>/<version>`, and `current` is switched to it.
///
/// If `write` fails, nothing appears in the registry and `current` is untouched. If another
/// publisher took the version meanwhile, the files are written again under the next one.
pub fn publish<F>(registry: &Path, mut write: F) -> Result<(String, PathBuf), TrainError>
where
    F: FnMut(&Path, &str) -> Result<(), TrainError>,
{
    fs::create_dir_all(registry).map_err(TrainError::io(registry))?;
    for _attempt in 0..8 {
        let version = next_version(registry)?;
        let staging = registry.join(format!(".staging-{version}-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(TrainError::io(&staging))?;
        }
        fs::create_dir(&staging).map_err(TrainError::io(&staging))?;
        if let Err(e) = write(&staging, &version) {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        sync_dir(&staging);
        let dest = registry.join(&version);
        if dest.exists() {
            warn!(version, "version taken by another publisher; retrying");
            let _ = fs::remove_dir_all(&staging);
            continue;
        }
        match fs::rename(&staging, &dest) {
            Ok(()) => {
                sync_dir(registry);
                set_current(registry, &version)?;
                sync_dir(registry);
                return Ok((version, dest));
            }
            // A non-empty directory of that name appeared between the check and the rename.
            Err(e) if dest.exists() => {
                warn!(version, error = %e, "version taken by another publisher; retrying");
                let _ = fs::remove_dir_all(&staging);
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(TrainError::io(dest)(e));
            }
        }
    }
    Err(reg_err(
        registry,
        "could not claim a version after 8 tries (concurrent publishers?)",
    ))
}

/// Flushes a directory's entries so a rename survives a power cut; best effort.
fn sync_dir(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}
