//! Fault classes per servo, and errors of whole operations.

use std::path::PathBuf;

use thiserror::Error;

use crate::registers::{hardware_error_names, servo_error_name};

/// Why one servo's part of a transaction failed. Reported per servo, never for the bus as a whole,
/// so one bad servo does not hide the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum ServoFault {
    /// No reply before the deadline: a missing, unpowered or mis-addressed servo, or a lost packet.
    #[error("no reply (timeout)")]
    Timeout,
    /// A reply arrived but was unusable: bad CRC, garbled header or length.
    #[error("corrupt reply (bad CRC or garbled packet)")]
    Corrupt,
    /// The servo answered with a Protocol 2.0 error number (low 7 bits of the error byte).
    #[error("servo reported error {0} ({name})", name = servo_error_name(*.0))]
    Servo(u8),
    /// The reply carried the alert bit: a hardware error is latched. The data in the reply is
    /// valid; the bits are the last Hardware_Error_Status read (0 when not read yet).
    #[error("hardware alert, Hardware_Error_Status {0:#04x} ({names})", names = hardware_error_names(*.0))]
    HardwareAlert(u8),
    /// The serial device vanished (adapter unplugged) or cannot be written; call `reconnect()`.
    #[error("serial port gone (adapter unplugged?)")]
    PortGone,
}

/// The class of a fault, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultClass {
    Timeout,
    Corrupt,
    Servo,
    HardwareAlert,
    PortGone,
}

impl ServoFault {
    pub fn class(&self) -> FaultClass {
        match self {
            ServoFault::Timeout => FaultClass::Timeout,
            ServoFault::Corrupt => FaultClass::Corrupt,
            ServoFault::Servo(_) => FaultClass::Servo,
            ServoFault::HardwareAlert(_) => FaultClass::HardwareAlert,
            ServoFault::PortGone => FaultClass::PortGone,
        }
    }

    /// Whether the data of the transaction arrived despite the fault (only for an alert).
    pub fn data_valid(&self) -> bool {
        matches!(self, ServoFault::HardwareAlert(_))
    }

    /// Whether retrying within the same tick can help.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ServoFault::Timeout | ServoFault::Corrupt | ServoFault::Servo(_)
        )
    }
}

/// One servo's problem found while opening or configuring, with the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct ServoProblem {
    pub id: u8,
    pub joint: String,
    pub problem: String,
    pub fix: String,
}

impl std::fmt::Display for ServoProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "servo id {} ({}): {}\n    fix: {}",
            self.id, self.joint, self.problem, self.fix
        )
    }
}

fn join_problems(p: &[ServoProblem]) -> String {
    p.iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An operation on the bus or the arm that failed as a whole.
#[derive(Debug, Error)]
pub enum BusError {
    #[error("cannot open serial port {} at {baud} baud: {source}\n  fix: {fix}", path.display())]
    Open {
        path: PathBuf,
        baud: u32,
        fix: String,
        #[source]
        source: std::io::Error,
    },
    #[error("serial port {} is gone (adapter unplugged?); reconnect() reopens it", path.display())]
    PortGone { path: PathBuf },
    #[error("this bus was built from an already open port and cannot reopen it")]
    CannotReconnect,
    #[error("servo id {id}: {op} failed: {fault}")]
    Servo {
        id: u8,
        op: &'static str,
        fault: ServoFault,
    },
    #[error("{} servo problem(s):\n{}", problems.len(), join_problems(problems))]
    Servos { problems: Vec<ServoProblem> },
    #[error("calibration does not match the config: {0}")]
    Calibration(String),
    #[error("expected {expected} joint values, got {got}")]
    Length { expected: usize, got: usize },
    #[error("goal for joint {joint} is {value}, not a finite number")]
    NonFiniteGoal { joint: String, value: f64 },
    #[error("goal for joint {joint} is {ticks} ticks, outside the register range {min}..={max}")]
    GoalOutOfRange {
        joint: String,
        ticks: i64,
        min: i64,
        max: i64,
    },
    /// The bus benchmark cannot read the calling thread's CPU-time clock.
    #[error("cannot read this thread's CPU time (CLOCK_THREAD_CPUTIME_ID): {0}")]
    CpuClock(#[source] std::io::Error),
}
