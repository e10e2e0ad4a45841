//! Errors of the episodes crate. Each names the file it concerns.

use std::path::PathBuf;

/// Everything that can go wrong while recording, reading, recovering or exporting episodes.
#[derive(Debug, thiserror::Error)]
pub enum EpisodeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: MCAP: {source}")]
    Mcap {
        path: PathBuf,
        #[source]
        source: mcap::McapError,
    },
    #[error("{path}: JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: no readable episode header (the file was cut off before its first chunk)")]
    NoEpisodeHeader { path: PathBuf },
    #[error("{path}: not an episode file name (expected episode-NNNNNN.mcap)")]
    BadFileName { path: PathBuf },
    #[error("{path}: episode already exists; refusing to overwrite recorded data")]
    AlreadyExists { path: PathBuf },
    #[error(
        "{path}: being recorded right now (another process holds its lock); \
         recover it once that recording has ended"
    )]
    Busy { path: PathBuf },
    #[error(
        "{path}: the repaired copy failed its read-back check ({detail}); the original file \
         is untouched and still reads up to its last complete chunk: keep it and report this"
    )]
    RepairCheck { path: PathBuf, detail: String },
    #[error(
        "frame {tick} has {got} values in `{field}`, the episode has {expected} joints/features"
    )]
    FrameShape {
        tick: u64,
        field: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{path}: camera {camera} does not exist (the episode has {cameras} camera(s))")]
    UnknownCamera {
        path: PathBuf,
        camera: usize,
        cameras: usize,
    },
    #[error(
        "export: video needs the `ffmpeg` program, which was not found ({detail})\n  fix: \
         sudo apt-get install ffmpeg (or run scripts/setup.sh)"
    )]
    FfmpegMissing { detail: String },
    #[error("export: {0}")]
    Export(String),
    #[error("{path}: parquet: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("recorder thread: {0}")]
    Thread(String),
}

impl EpisodeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn mcap(path: impl Into<PathBuf>, source: mcap::McapError) -> Self {
        Self::Mcap {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Self::Json {
            path: path.into(),
            source,
        }
    }

    /// True when the error is the disk running out of space.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Io { source, .. } => source.raw_os_error() == Some(28),
            Self::Mcap {
                source: mcap::McapError::Io(e),
                ..
            } => e.raw_os_error() == Some(28),
            _ => false,
        }
    }
}

pub type Result<T, E = EpisodeError> = std::result::Result<T, E>;
