//! Host side of the Dynamixel servo bus for intervened.
//!
//! - [`Bus`]: Protocol 2.0 transactions on one serial port (scan, ping, sync read/write,
//!   torque), faults reported per servo and classified ([`ServoFault`]), bounded retries
//!   within a deadline, counters, and `reconnect()` after an unplug.
//! - [`Arm`]: the joint-space view the daemon's control thread uses every tick.
//! - [`adapter`]: USB serial adapter discovery and the FTDI latency timer.
//! - [`doctor()`]: a checklist of everything between the config and the servos.
//! - [`Calibrator`]: the middle-pose-and-sweep calibration flow, without any terminal I/O.
//! - [`bench_bus`]: cycle rate, cycle time, host software time per cycle (measured as the
//!   thread's CPU time) and the wire-time floor.

pub mod adapter;
pub mod arm;
pub mod bench;
pub mod bus;
pub mod calibrate;
pub mod doctor;
pub mod error;
pub mod registers;

pub use arm::{Arm, ArmReading, CurrentUnit, ServoHealth};
pub use bench::{bench_bus, BusBench};
pub use bus::{wire_time, Bus, BusStats, FaultCounts, PingInfo};
pub use calibrate::{CalibrateError, Calibrator, SweepProgress};
pub use doctor::{
    doctor, doctor_checks, doctor_with, CalibrationState, CheckStatus, DoctorOptions, DoctorReport,
    DoctorRow,
};
pub use error::{BusError, FaultClass, ServoFault, ServoProblem};
