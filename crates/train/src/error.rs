//! Errors of the retrain job. Each one says what went wrong and, where there is one, the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "no episodes found under {dir}: `intervened run` records them as \
         <data>/sessions/<session>/episode-<NNNNNN>.mcap, and {dir}/sessions/ holds none\n  \
         fix: record sessions first, or point --data at the data root (the directory that \
         holds sessions/)",
        dir = dir.display()
    )]
    NoEpisodes { dir: PathBuf },

    #[error(
        "no trainable frames under {dir} with weighting `{weighting}`: {detail}. Record \
         demonstrations or interventions, or choose another weighting (--weighting iwr uses robot frames too)"
    )]
    NoTrainableFrames {
        dir: PathBuf,
        weighting: String,
        detail: String,
    },

    #[error(
        "episodes under {dir} come from several robot types ({types}); pass --robot <config> \
         to choose one (episodes of other types are then skipped)"
    )]
    MixedRobotTypes { dir: PathBuf, types: String },

    #[error("invalid option {name}: {message}")]
    InvalidOption { name: &'static str, message: String },

    #[error("episode {episode}: {message}")]
    BadEpisode { episode: String, message: String },

    #[error("reading episodes under {dir}: {message}")]
    Episodes { dir: PathBuf, message: String },

    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),

    #[error(
        "training diverged (loss is {loss} at step {step}); lower the learning rate or check \
         the data for extreme values"
    )]
    Diverged { step: usize, loss: f64 },

    #[error(
        "exported policy failed verification: {message}; nothing was published and `current` \
         is unchanged"
    )]
    Verification { message: String },

    #[error("plotting {path}: {message}")]
    Plot { path: PathBuf, message: String },

    #[error("registry {path}: {message}")]
    Registry { path: PathBuf, message: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
