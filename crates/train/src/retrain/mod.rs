//! The retrain job end to end: episodes -> checks -> dataset -> training -> export ->
//! verification -> publish. Any failure before the publish's final rename leaves the registry
//! (and its `current` link) as it was.
//!
//! Bad data policy:
//! - a truncated episode (crash, power cut) is used up to its last readable frame and listed
//!   in the report;
//! - an episode of another robot type, another joint list or observation layout, another
//!   frame rate, with no frames, or marked discarded is skipped and listed with the reason;
//! - without `--robot`, episodes of several robot types abort the job (which one is meant is
//!   not guessable);
//! - no episodes, or no frames the chosen weighting trains on, is an error naming the data
//!   directory and the fix.

mod hashing;
mod options;
mod pipeline;
mod provenance;
mod report;
mod selection;
mod verify;

pub use crate::types::{EpisodeSet, Exclusion, LoadedEpisode, RoundMetrics};
pub use options::{DeviceChoice, RetrainOptions, DEFAULT_CHUNK, DEFAULT_MIN_STEPS};
pub use pipeline::{retrain, retrain_from_episodes};
pub use report::{DoubtCalibration, RetrainReport};
pub use verify::{verify_export, verify_export_inputs};
