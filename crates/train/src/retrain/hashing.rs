//! The data hash recorded in a policy's provenance.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::types::LoadedEpisode;

/// sha256 over the used episodes (path relative to the data dir, and file hash), sorted.
pub(super) fn data_hash(root: &Path, used: &[LoadedEpisode]) -> String {
    let mut rows: Vec<String> = used
        .iter()
        .map(|e| {
            let rel = e.path.strip_prefix(root).unwrap_or(&e.path);
            format!("{}\0{}\n", rel.display(), e.content_sha256)
        })
        .collect();
    rows.sort();
    let mut h = Sha256::new();
    for r in rows {
        h.update(r.as_bytes());
    }
    hex::encode(h.finalize())
}
