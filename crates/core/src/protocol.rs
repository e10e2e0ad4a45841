//! The control socket's protocol: one JSON object per line each way.
//!
//! Requests: `{"cmd": "status"}`, `{"cmd": "start_episode", "demo": false}`,
//! `{"cmd": "stop_episode", "outcome": "success" | "failure" | "discard"}`, `{"cmd": "hold"}`,
//! `{"cmd": "resume"}`, `{"cmd": "estop"}`,
//! `{"cmd": "clear_estop"}`, `{"cmd": "reload"}`.
//! Replies: `{"ok": true, "status": {...}}` or `{"ok": false, "error": "..."}`.
//! A malformed line gets an error reply and changes nothing.
//!
//! Takeover and handback are deliberately not socket commands: only the person holding the
//! gamepad can take the arm, so there is never doubt about who drives.

use serde::{Deserialize, Serialize};

use crate::status::Status;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    // Unit variants are written `{}` so that deny_unknown_fields also rejects `{"cmd":"status","x":1}`.
    Status {},
    StartEpisode {
        #[serde(default)]
        demo: bool,
    },
    StopEpisode {
        outcome: StopOutcome,
    },
    Hold {},
    Resume {},
    Estop {},
    ClearEstop {},
    Reload {},
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    Success,
    Failure,
    Discard,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok(status: Status) -> Self {
        Self {
            ok: true,
            status: Some(status),
            error: None,
        }
    }
    pub fn err(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            status: None,
            error: Some(msg.into()),
        }
    }
}

/// Longest request line accepted; longer input is refused without being buffered whole.
pub const MAX_LINE: usize = 4096;

/// Parses one request line, with an error message that says what is accepted.
pub fn parse_request(line: &str) -> Result<Request, String> {
    if line.len() > MAX_LINE {
        return Err(format!("request longer than {MAX_LINE} bytes"));
    }
    serde_json::from_str(line.trim()).map_err(|e| {
        format!(
            "bad request ({e}); send one JSON object per line, e.g. {{\"cmd\":\"status\"}}; commands: \
             status, start_episode, stop_episode, hold, resume, estop, clear_estop, reload"
        )
    })
}

/// A request for the control thread, with where to send its reply.
pub struct Command {
    pub request: Request,
    pub reply: tokio::sync::oneshot::Sender<Reply>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(
            parse_request(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status {}
        );
        assert_eq!(
            parse_request(r#"{"cmd":"start_episode"}"#).unwrap(),
            Request::StartEpisode { demo: false }
        );
        assert_eq!(
            parse_request(r#"{"cmd":"start_episode","demo":true}"#).unwrap(),
            Request::StartEpisode { demo: true }
        );
        assert_eq!(
            parse_request(r#"{"cmd":"stop_episode","outcome":"failure"}"#).unwrap(),
            Request::StopEpisode {
                outcome: StopOutcome::Failure
            }
        );
        assert_eq!(
            parse_request(r#" {"cmd":"clear_estop"} "#).unwrap(),
            Request::ClearEstop {}
        );
    }

    #[test]
    fn rejects_malformed_input_with_help() {
        for bad in [
            "",
            "status",
            "{",
            r#"{"cmd":"fly"}"#,
            r#"{"cmd":"status","x":1}"#,
            r#"{"cmd":"stop_episode"}"#,
            "[1,2]",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(e.contains("commands:"), "{bad}: {e}");
        }
        assert!(parse_request(&"x".repeat(MAX_LINE + 1))
            .unwrap_err()
            .contains("longer"));
    }
}
