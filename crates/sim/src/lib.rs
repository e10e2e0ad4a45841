//! A Protocol 2.0 device-side emulator for a chain of Dynamixel X-series servos.
//!
//! [`Chain`] holds every servo's control table and physical state and answers instruction
//! packets byte-for-byte as the e-manual describes; [`PtyServer`] serves a chain on a pty so
//! that any host implementation (dynamixel2, the Robotis SDK, the daemon) can open it like a
//! USB serial adapter, with optional injected faults.
//!
//! Choices where the e-manual leaves room, or where the emulator departs from a real servo:
//! - A packet with a bad CRC addressed to one servo is answered with error 3 (CRC); a
//!   broadcast one is ignored. Malformed packets (bad length, truncated) get no reply.
//! - A write is answered with the ID and status return level the servo had when the packet
//!   arrived (a write that changes either is still confirmed).
//! - Torque-on sets Goal_Position to Present_Position, so enabling torque never jumps.
//! - A latched hardware error turns torque off; writing Torque_Enable = 1 then fails with
//!   error 1 (result fail) until reboot. Every status carries the alert bit meanwhile.
//! - Factory defaults except Baud_Rate 3 (1 Mbps) and Return_Delay_Time 0. Baud rate and
//!   return delay are stored but not emulated (replies go out at once).
//! - Not emulated: Drive_Mode direction bit, indirect addressing, PWM/current control
//!   physics, fast bulk read (0x9A), Protocol 1.0.
//! - Bus_Watchdog is fed by any packet on the line, trips in `advance`, and locks the goal
//!   registers (error 4) until the host writes 0.

pub mod chain;
pub mod emulator;
pub mod packet;
pub mod server;
pub mod table;

pub use chain::{specs_from_config, Chain, Dynamics, ServoSpec, SharedChain};
pub use emulator::SimBus;
pub use packet::{DecodeError, Packet, StreamParser};
pub use server::{
    FaultConfig, FaultSchedule, PtyServer, ServerOptions, ServerStats, ThreadStart,
    DEFAULT_LINK_NAME,
};
