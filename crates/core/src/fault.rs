//! The loop's faults, typed: what each port can report, and what sends the arm to Hold.
//!
//! The loop decides by the variant (never by a message), status shows the `kind` and the
//! message (`Display`), and the recorder stores the message. Errors from the concrete backends
//! (the bus, the recorder thread) travel as their own error values behind an `Arc`, so the loop
//! needs no dependency on them and faults stay cheap to clone into status and events.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A backend's own error, kept whole (its `source()` chain included).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

fn cause(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
    Arc::new(e)
}

/// What reading or commanding the arm can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArmFault {
    /// The serial device vanished (adapter unplugged); the adapter keeps trying to reopen it.
    #[error("serial port gone (adapter unplugged?)")]
    PortGone,
    /// Reopening the port failed.
    #[error("reconnect failed: {0}")]
    Reconnect(Cause),
    /// Servos did not answer usably this tick (timeout, corrupt reply, error status). One is
    /// enough to fail the tick: a joint we cannot see is a joint we cannot hold safely.
    #[error("{failed} servo(s) failed: servo {id}: {cause}")]
    Servos { failed: u32, id: u8, cause: Cause },
    /// A servo latched a hardware alert (Hardware_Error_Status bits).
    #[error("servo {joint} hardware alert 0x{alert:02x}")]
    Servo {
        id: u8,
        joint: Cow<'static, str>,
        alert: u8,
    },
    /// The bus refused a command (goal write, torque, barrier).
    #[error("{0}")]
    Bus(Cause),
}

impl ArmFault {
    /// Wraps a bus error as it is (no string conversion).
    pub fn bus(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Bus(cause(e))
    }
    pub fn reconnect(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Reconnect(cause(e))
    }
    pub fn servos(failed: u32, id: u8, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Servos {
            failed,
            id,
            cause: cause(e),
        }
    }
}

/// What running the policy can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyFault {
    /// Inference failed (the runner's message).
    #[error("{0}")]
    Inference(String),
    /// No usable action for longer than `policy.action_timeout_ms`.
    #[error(
        "no usable action for {waited_ms} ms (policy.action_timeout_ms = {limit_ms}); \
         the model is too slow for this rate or its worker died"
    )]
    Starved { waited_ms: u128, limit_ms: u64 },
    /// A camera the policy reads has no fresh image (stale, stopped, or never started).
    #[error(
        "camera {camera} is {health}{} (max_age_ms {max_age_ms}): the policy reads it",
        age_ms.map(|a| format!(", newest frame {a} ms old")).unwrap_or_default()
    )]
    Camera {
        camera: String,
        health: &'static str,
        age_ms: Option<u64>,
        max_age_ms: u128,
    },
}

/// What the recorder can fail with. Recording faults never stop control.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecorderFault {
    /// The recorder could not start.
    #[error("recorder under {root}: {cause}")]
    Start { root: String, cause: Cause },
    /// The recorder thread refused the request (queue full or gone).
    #[error("{0}")]
    Refused(Cause),
    /// Writing to disk failed (the recorder thread's last error).
    #[error("{0}")]
    Disk(String),
}

impl RecorderFault {
    pub fn refused(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Refused(cause(e))
    }
}

/// The class of a fault: decides what clears it and what status shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The bus or a servo: resume is refused until the bus answers cleanly again.
    Bus,
    /// The policy failed, emitted garbage, or went too long without an action.
    Policy,
    /// The gamepad went away.
    Gamepad,
    /// A command the safety filter could not make safe.
    Command,
    /// Recording (disk, recorder thread); never a Hold.
    Recorder,
}

/// A fault that sends the arm to Hold.
#[derive(Debug, Clone)]
pub enum Fault {
    Arm(ArmFault),
    Policy(PolicyFault),
    GamepadLost,
    /// The command held a NaN or infinity.
    NonFiniteCommand,
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Arm(_) => FaultKind::Bus,
            Fault::Policy(_) => FaultKind::Policy,
            Fault::GamepadLost => FaultKind::Gamepad,
            Fault::NonFiniteCommand => FaultKind::Command,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // An alert names its servo itself; the rest are the bus's.
            Fault::Arm(a @ ArmFault::Servo { .. }) => write!(f, "{a}"),
            Fault::Arm(a) => write!(f, "bus: {a}"),
            Fault::Policy(p) => write!(f, "policy: {p}"),
            Fault::GamepadLost => f.write_str("gamepad lost"),
            Fault::NonFiniteCommand => f.write_str("non-finite command"),
        }
    }
}

impl std::error::Error for Fault {}

/// Why the arm holds.
#[derive(Debug, Clone)]
pub enum HoldReason {
    /// Someone asked for it on the control socket.
    Operator,
    Fault(Fault),
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldReason::Operator => f.write_str("operator hold"),
            HoldReason::Fault(x) => write!(f, "{x}"),
        }
    }
}

/// One active fault as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFault {
    pub kind: FaultKind,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_class_prefix() {
        let io = std::io::Error::other("timeout");
        assert_eq!(
            Fault::Arm(ArmFault::servos(2, 3, io)).to_string(),
            "bus: 2 servo(s) failed: servo 3: timeout"
        );
        let alert = ArmFault::Servo {
            id: 1,
            joint: "elbow".into(),
            alert: 0x20,
        };
        assert_eq!(
            Fault::Arm(alert).to_string(),
            "servo elbow hardware alert 0x20"
        );
        assert_eq!(Fault::Arm(ArmFault::PortGone).kind(), FaultKind::Bus);
        let starved = Fault::Policy(PolicyFault::Starved {
            waited_ms: 300,
            limit_ms: 250,
        });
        assert_eq!(starved.kind(), FaultKind::Policy);
        assert!(starved
            .to_string()
            .starts_with("policy: no usable action for 300 ms"));
    }

    #[test]
    fn bus_errors_stay_whole() {
        let f = ArmFault::bus(std::io::Error::other("refused"));
        let ArmFault::Bus(c) = &f else {
            panic!("not a bus fault")
        };
        assert!(c.downcast_ref::<std::io::Error>().is_some());
    }
}
