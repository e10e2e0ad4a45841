//! The on-disk MCAP layout: topics, JSON Schemas, and the JSON messages on each topic.
//!
//! Every joint, event and episode message is JSON (`json` message encoding) described by a
//! JSON Schema (`jsonschema` schema encoding), so Foxglove can show and plot any field without
//! a plugin. Camera images are the exception: `/camera/<name>` carries Foxglove's own
//! `foxglove.CompressedImage` in protobuf (see [`crate::foxglove`]), which Foxglove's image
//! panel shows natively and which keeps the JPEG bytes as bytes (no base64).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::types::{de_f64, de_f64_vec, ControlSource, EpisodeMeta, FailureMode, Outcome};

pub const TOPIC_EPISODE: &str = "/episode";
pub const TOPIC_OBSERVATION: &str = "/observation";
pub const TOPIC_ACTION: &str = "/action";
pub const TOPIC_PROPOSAL: &str = "/policy/proposal";
pub const TOPIC_GAMEPAD: &str = "/gamepad";
pub const TOPIC_EVENTS: &str = "/events";
pub const TOPIC_DIAGNOSTICS: &str = "/diagnostics";

/// Every topic an episode file has, in the order its channels are declared.
pub const TOPICS: [&str; 7] = [
    TOPIC_EPISODE,
    TOPIC_OBSERVATION,
    TOPIC_ACTION,
    TOPIC_PROPOSAL,
    TOPIC_GAMEPAD,
    TOPIC_EVENTS,
    TOPIC_DIAGNOSTICS,
];

/// Camera `<name>`'s images are on topic `/camera/<name>` (one channel per camera, declared
/// after [`TOPICS`] in [`crate::EpisodeMeta::cameras`] order).
pub const TOPIC_CAMERA_PREFIX: &str = "/camera/";

/// Profile string in the MCAP header.
pub const PROFILE: &str = "intervened";

/// `/episode`: written first (begin, flushed at once so even a file cut short right after has
/// its meta) and last (end, with the outcome).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Two of these per episode file, never in a hot path: boxing the meta would only churn the API.
#[allow(clippy::large_enum_variant)]
pub enum EpisodeRecord {
    Begin {
        meta: EpisodeMeta,
    },
    End {
        outcome: Outcome,
        frames: u64,
        dropped_frames: u64,
        /// Why a failed episode failed, when known (absent in files from before it existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<FailureMode>,
    },
}

#[derive(Serialize)]
pub(crate) struct ObservationOut<'a> {
    pub tick: u64,
    pub t: f64,
    pub q: &'a [f64],
    pub qd: &'a [f64],
    pub current: &'a [f64],
    pub task: &'a [f64],
    /// Per camera, the capture time (`CLOCK_MONOTONIC` ns) of the image the loop used at this
    /// tick, 0 for none. Left out of episodes without cameras.
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    pub image_capture_ns: &'a [u64],
}

#[derive(Deserialize)]
pub(crate) struct ObservationIn {
    pub tick: u64,
    #[serde(deserialize_with = "de_f64")]
    pub t: f64,
    #[serde(deserialize_with = "de_f64_vec")]
    pub q: Vec<f64>,
    #[serde(deserialize_with = "de_f64_vec")]
    pub qd: Vec<f64>,
    #[serde(deserialize_with = "de_f64_vec")]
    pub current: Vec<f64>,
    #[serde(deserialize_with = "de_f64_vec")]
    pub task: Vec<f64>,
    /// Absent in files from before cameras.
    #[serde(default)]
    pub image_capture_ns: Vec<u64>,
}

#[derive(Serialize)]
pub(crate) struct ActionOut<'a> {
    pub tick: u64,
    pub t: f64,
    pub goal: &'a [f64],
    pub source: ControlSource,
}

#[derive(Deserialize)]
pub(crate) struct ActionIn {
    pub tick: u64,
    #[serde(deserialize_with = "de_f64_vec")]
    pub goal: Vec<f64>,
    pub source: ControlSource,
}

#[derive(Serialize)]
pub(crate) struct ProposalOut<'a> {
    pub tick: u64,
    pub t: f64,
    pub action: &'a [f64],
    pub doubt: Option<f64>,
    /// Who was actually driving when the policy proposed this.
    pub driver: ControlSource,
}

#[derive(Deserialize)]
pub(crate) struct ProposalIn {
    pub tick: u64,
    #[serde(deserialize_with = "de_f64_vec")]
    pub action: Vec<f64>,
    #[serde(default, deserialize_with = "de_opt_f64")]
    pub doubt: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct GamepadOut<'a> {
    pub tick: u64,
    pub t: f64,
    pub axes: &'a [f64],
    pub buttons: u32,
}

#[derive(Deserialize)]
pub(crate) struct GamepadIn {
    pub tick: u64,
    #[serde(deserialize_with = "de_f64_vec")]
    pub axes: Vec<f64>,
    pub buttons: u32,
}

// `doubt: null` means "no doubt", not NaN.
fn de_opt_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)
}

fn number_array(description: String) -> Value {
    json!({"type": "array", "items": {"type": ["number", "null"]}, "description": description})
}

fn stamp_props() -> Value {
    json!({
        "tick": {"type": "integer", "minimum": 0, "description": "control-loop tick"},
        "t": {"type": ["number", "null"], "description": "seconds since the episode started"}
    })
}

fn object(title: &str, mut props: Value, extra: Value, required: &[&str]) -> Value {
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": props,
        "required": required,
    })
}

/// (schema name, JSON Schema) for a topic, with this episode's names in the descriptions.
pub(crate) fn schema_for(topic: &str, meta: &EpisodeMeta) -> (&'static str, Value) {
    let (name, mut schema) = schema_for_topic(topic, meta);
    // Only episodes with cameras mention images, so files without them stay as they were.
    if topic == TOPIC_OBSERVATION && !meta.cameras.is_empty() {
        let cams: Vec<&str> = meta.cameras.iter().map(|c| c.name.as_str()).collect();
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "image_capture_ns".into(),
                json!({
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0},
                    "description": format!(
                        "per camera ({}): capture time (CLOCK_MONOTONIC ns) of the image used at this tick, 0 = none",
                        cams.join(", ")
                    )
                }),
            );
        }
    }
    (name, schema)
}

fn schema_for_topic(topic: &str, meta: &EpisodeMeta) -> (&'static str, Value) {
    let joints = meta.joint_names.join(", ");
    let tasks = meta.task_feature_names.join(", ");
    let sources = json!({"type": "string", "enum": ["demo", "robot", "intervention"]});
    match topic {
        TOPIC_OBSERVATION => (
            "intervened.Observation",
            object(
                "Observation",
                stamp_props(),
                json!({
                    "q": number_array(format!("joint positions (rad): {joints}")),
                    "qd": number_array(format!("joint velocities (rad/s): {joints}")),
                    "current": number_array(format!("joint currents (mA): {joints}")),
                    "task": number_array(format!("task features: {tasks}")),
                }),
                &["tick", "t", "q", "qd", "current", "task"],
            ),
        ),
        TOPIC_ACTION => (
            "intervened.Action",
            object(
                "Action",
                stamp_props(),
                json!({
                    "goal": number_array(format!("executed goal positions (rad): {joints}")),
                    "source": sources,
                }),
                &["tick", "t", "goal", "source"],
            ),
        ),
        TOPIC_PROPOSAL => (
            "intervened.PolicyProposal",
            object(
                "PolicyProposal",
                stamp_props(),
                json!({
                    "action": number_array(format!("policy proposal (rad): {joints}")),
                    "doubt": {"type": ["number", "null"], "description": "ensemble disagreement"},
                    "driver": sources,
                }),
                &["tick", "t", "action", "driver"],
            ),
        ),
        TOPIC_GAMEPAD => (
            "intervened.Gamepad",
            object(
                "Gamepad",
                stamp_props(),
                json!({
                    "axes": number_array("gamepad axes in [-1, 1]".to_string()),
                    "buttons": {"type": "integer", "minimum": 0, "description": "held-button bit mask"},
                }),
                &["tick", "t", "axes", "buttons"],
            ),
        ),
        TOPIC_EVENTS => (
            "intervened.Event",
            object(
                "Event",
                stamp_props(),
                json!({
                    "event": {"type": "object", "properties": {"kind": {"type": "string"}}, "required": ["kind"]},
                }),
                &["tick", "t", "event"],
            ),
        ),
        TOPIC_DIAGNOSTICS => (
            "intervened.LoopDiagnostics",
            object(
                "LoopDiagnostics",
                stamp_props(),
                json!({
                    "diagnostics": {
                        "type": "object",
                        "properties": {
                            "period_error_us": {"type": "number"},
                            "work_us": {"type": "number"},
                            "overruns": {"type": "integer"},
                            "clamps": {"type": "integer"},
                            "dropped_frames": {"type": "integer"}
                        }
                    }
                }),
                &["tick", "t", "diagnostics"],
            ),
        ),
        _ => (
            "intervened.EpisodeRecord",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "EpisodeRecord",
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": ["begin", "end"]},
                    "meta": {"type": "object"},
                    "outcome": {"type": "string"},
                    "frames": {"type": "integer"},
                    "dropped_frames": {"type": "integer"}
                },
                "required": ["kind"]
            }),
        ),
    }
}
