//! Episode recording for intervened: crash-safe MCAP files (one per episode), Sirius frame
//! labels, per-episode manifests, crash recovery, readers and LeRobotDataset v3.0 export.
//!
//! Layout: `<root>/sessions/<session-id>/episode-<NNNNNN>.mcap` plus `episode-<NNNNNN>.json`
//! (the manifest, written atomically when the episode ends, or by recovery).
//!
//! Loss bound: the recorder closes and fdatasyncs a chunk every `flush_ms` (100 ms by
//! default), so a crash, `kill -9` or power cut loses at most the frames since the last
//! flush; readers stop at the torn chunk, and crash recovery rewrites a cut file as a complete
//! MCAP file that every reader opens ([`recovery`]).

pub mod bench;
pub mod error;
mod format;
pub mod foxglove;
pub mod labels;
pub mod layout;
pub mod lerobot;
pub mod manifest;
pub mod reader;
pub mod recorder;
pub mod recovery;
pub mod summary;
pub mod types;
mod video;
pub mod writer;

pub use bench::{bench_record, BenchCameraReport, BenchRecordOptions, BenchRecordReport};
pub use error::{EpisodeError, Result};
pub use format::{
    EpisodeRecord, TOPICS, TOPIC_ACTION, TOPIC_CAMERA_PREFIX, TOPIC_DIAGNOSTICS, TOPIC_EPISODE,
    TOPIC_EVENTS, TOPIC_GAMEPAD, TOPIC_OBSERVATION, TOPIC_PROPOSAL,
};
pub use labels::{derive_labels, takeover_indices, DEFAULT_PRE_INTERVENTION_WINDOW};
pub use layout::{episode_path, new_session_id, next_episode_index, session_dir};
pub use lerobot::{export_lerobot, ExportOptions, ExportSummary};
pub use manifest::{Manifest, ManifestBuilder};
pub use reader::{read_episode, CameraImages, Episode, RecordedImage, REPAIR_METADATA};
pub use recorder::{
    CameraGapReason, EpisodeReport, ImageMsg, ImageStamps, Recorder, RecorderHandle, RecorderMsg,
    RecorderOptions, RecorderStatus, SendRejected, StaticEvent, FRAME_POOL, MAX_CAMERAS,
};
pub use recovery::{
    recover_all, recover_episode, recover_session_dir, repair_episode_file, repair_temp_path,
    FileRecovery, RecoveredEpisode, RecoveryAction, RecoveryReport, Repair,
};
pub use summary::{list_sessions, summarize_session, Counts, DataSummary, SessionSummary};
pub use types::{
    CameraInfo, ControlSource, DiagnosticsRecord, EpisodeMeta, Event, EventRecord, FailureCounts,
    FailureMode, Frame, Label, LoopDiagnostics, Outcome,
};
pub use writer::{EpisodeWriter, WriterOptions};
