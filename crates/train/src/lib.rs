//! The retrain job of intervened: aggregate every recorded session (DAgger), weight frames by
//! who produced them (HG-DAgger, IWR, Sirius), train the seed MLP on tch, export TorchScript
//! with normalisation baked in, verify it, and publish it atomically into the policy registry.
//!
//! Entry points: [`retrain`] (what `intervened retrain` calls), [`bench_train`],
//! [`list_policies`] and [`rollback`].

pub mod bench;
pub mod dataset;
pub mod error;
pub mod model;
pub mod plot;
pub mod registry;
pub mod retrain;
pub mod source;
pub mod train;
pub mod types;
pub mod vision;

pub use bench::{bench_train, bench_train_on, bench_vision_train, machine, BenchTrain};
pub use dataset::{
    bootstrap_episodes, class_mass, sample_weights, split_by_episode, CameraFrames, ClassMass,
    Dataset, EpisodeData, ImageColumn, Label, LabelCounts, Sample, WeightedSampler, Weighting,
};
pub use error::TrainError;
pub use model::{Mlp, ModelInputs, ModelSpec, Normalizer, TrainedPolicy};
pub use registry::{
    current_version, list_policies, next_version, publish, rollback, set_current, PolicyEntry,
};
pub use retrain::{
    retrain, retrain_from_episodes, verify_export, verify_export_inputs, DeviceChoice,
    DoubtCalibration, RetrainOptions, RetrainReport, DEFAULT_CHUNK,
};
pub use source::load_episodes;
pub use train::{train, LossPoint, MemberReport, TrainConfig, TrainOutcome};
pub use types::{EpisodeSet, Exclusion, LoadedEpisode, RoundMetrics};
pub use vision::VisionNet;
