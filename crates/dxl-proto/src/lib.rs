//! Dynamixel Protocol 2.0, written once for both ends of the wire: the host bus
//! (`intervened-dxl`) and the device-side emulator (`intervened-sim`).
//!
//! - [`control_table!`] declares a model family's register map as a table (name, address,
//!   width/type, access, write range) and generates typed registers from it;
//!   [`x_series`] is the X-series map (XL330, XL430, XM430, XM540).
//! - [`packet`]: CRC-16, byte stuffing, instruction and status packets, and the parameter
//!   layouts of the instructions the project uses.

pub mod control_table;
pub mod packet;
pub mod x_series;

pub use control_table::{Access, Block, Reg, Register, Value};
pub use packet::{DecodeError, Packet};
