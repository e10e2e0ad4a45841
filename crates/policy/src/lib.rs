//! The policy runtime of intervened, on tch (libtorch).
//!
//! - [`sidecar`]: `policy.json`, the metadata beside every `policy.pt`, and the file helpers
//!   (`write_sidecar`, `sha256_file`) the train crate uses when it exports.
//! - [`model`]: [`Policy::load`] checks a policy against the robot and [`Policy::infer`] runs
//!   it (the model I/O contract is documented there and in `CONTRACT.md`).
//! - [`ensemble`]: ACT temporal ensembling of action chunks.
//! - [`runner`]: [`PolicyRunner`], what the control thread calls every tick; it moves a slow
//!   model to a worker thread so that the loop never waits for it.

pub mod ensemble;
pub mod error;
pub mod model;
pub mod runner;
pub mod sidecar;

pub use ensemble::{ChunkShapeError, TemporalEnsembler};
pub use error::PolicyError;
pub use model::{
    bench_infer, ensemble_doubt, Latency, Policy, PolicyExpectations, Prediction, WARMUP_RUNS,
};
pub use runner::{PolicyRunner, RunnerMode, RunnerOptions, RunnerStats};
pub use sidecar::{
    policy_paths, sha256_file, write_sidecar, ActionKind, ImageInput, PolicySidecar,
    FORMAT_VERSION, MAX_IMAGE_SIDE, MODEL_FILE, SIDECAR_FILE,
};
