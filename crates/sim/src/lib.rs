//! A Protocol 2.0 device-side emulator for a chain of Dynamixel X-series servos.
//!
//! [`Chain`] holds every servo's control table and physical state and answers instruction
//! packets byte-for-byte as the e-manual describes; [`PtyServer`] serves a chain on a pty so
//! that any host implementation (dynamixel2, the Robotis SDK, the daemon) can open it like a
//! USB serial adapter, with optional injected faults.

pub mod chain;
pub mod packet;
pub mod server;
pub mod table;

pub use chain::{specs_from_config, Chain, Dynamics, ServoSpec, SharedChain};
pub use packet::{DecodeError, Packet, StreamParser};
pub use server::{FaultConfig, PtyServer, ServerOptions, ServerStats, DEFAULT_LINK_NAME};
