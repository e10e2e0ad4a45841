//! Gamepad teleoperation for intervened: gamepad input (gilrs, on its own thread), the
//! mapping from sticks to joint velocities, takeover semantics (hold or toggle, latched
//! hold on a lost pad, e-stop), rumble acknowledgements, and a virtual gamepad for tests
//! and simulation.
//!
//! The daemon's tick typically calls [`TeleopController::tick_source`] and acts on the
//! returned [`Intent`]s; see [`takeover`] for the exact rules. The default button layout is
//! drawn in `crates/teleop/docs/gamepad-layout.svg`.

pub mod controller;
pub mod error;
pub mod event;
#[cfg(feature = "gilrs")]
pub mod gilrs_source;
pub mod integrator;
pub mod mapping;
pub mod names;
pub mod rumble;
pub mod source;
pub mod state;
pub mod takeover;
pub mod virtual_pad;

pub use controller::{ack_for, TeleopController, TickOutput};
pub use error::TeleopError;
pub use event::{GamepadEvent, GamepadEventKind, PadId, PadInfo};
#[cfg(feature = "gilrs")]
pub use gilrs_source::{list_gamepads, Backend, GilrsSource};
pub use integrator::TeleopIntegrator;
pub use mapping::Mapping;
pub use names::{axis_name, button_name};
pub use rumble::{Motor, RumblePattern, RumbleSpec};
pub use source::GamepadSource;
pub use state::{deadzone_1d, radial_deadzone, PadChange, PadState};
pub use takeover::{ControlOwner, Intent, Takeover};
pub use virtual_pad::{Script, VirtualAction, VirtualGamepad};
