//! What the pad looks like right now, built only from [`GamepadEvent`]s, and the deadzones.

use std::collections::{BTreeMap, BTreeSet};

use intervened_robot::{Axis, Button};
use tracing::debug;

use crate::event::{GamepadEvent, GamepadEventKind, PadId};
use crate::names::{axis_index, stick_partner, ALL_AXES};

/// One pad's raw inputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PadSnapshot {
    axes: [f64; 8],
    pressed: BTreeSet<Button>,
}

/// The effect one event had, as seen from the *active* pad (the one that drives the arm).
#[derive(Debug, Clone, PartialEq)]
pub enum PadChange {
    /// Nothing changed for the active pad: a repeat, another pad's input, or an unknown pad.
    None,
    Connected {
        pad: PadId,
        active: bool,
    },
    /// A pad went away. `was_active` means the pad that drove the arm is gone.
    Disconnected {
        pad: PadId,
        was_active: bool,
    },
    Pressed(Button),
    Released(Button),
    Axis(Axis, f64),
}

/// Current axes and buttons of every connected pad, and which one is active.
///
/// The first pad to connect is active; when it goes away the lowest-numbered remaining pad
/// (if any) becomes active. Input from other pads is tracked but does not drive anything.
/// A disconnected pad's state is forgotten, so a stick held at the moment of the unplug
/// can never keep driving a joint.
#[derive(Debug, Clone, Default)]
pub struct PadState {
    pads: BTreeMap<PadId, PadSnapshot>,
    active: Option<PadId>,
}

impl PadState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event. Repeated presses, releases of buttons not held and unchanged axis
    /// values report [`PadChange::None`], so a press seen by the caller is always a fresh one.
    pub fn apply(&mut self, ev: &GamepadEvent) -> PadChange {
        match &ev.kind {
            GamepadEventKind::Connected { .. } => {
                // A reconnect starts from nothing held: gilrs does not replay held buttons.
                self.pads.insert(ev.pad, PadSnapshot::default());
                let active = match self.active {
                    None => {
                        self.active = Some(ev.pad);
                        true
                    }
                    Some(a) => a == ev.pad,
                };
                PadChange::Connected {
                    pad: ev.pad,
                    active,
                }
            }
            GamepadEventKind::Disconnected => {
                if self.pads.remove(&ev.pad).is_none() {
                    return PadChange::None;
                }
                let was_active = self.active == Some(ev.pad);
                if was_active {
                    self.active = self.pads.keys().next().copied();
                }
                PadChange::Disconnected {
                    pad: ev.pad,
                    was_active,
                }
            }
            GamepadEventKind::ButtonPressed(b) => {
                let Some(snap) = self.pads.get_mut(&ev.pad) else {
                    debug!(pad = %ev.pad, "input from a pad that is not connected; ignored");
                    return PadChange::None;
                };
                if snap.pressed.insert(*b) && self.active == Some(ev.pad) {
                    PadChange::Pressed(*b)
                } else {
                    PadChange::None
                }
            }
            GamepadEventKind::ButtonReleased(b) => {
                let Some(snap) = self.pads.get_mut(&ev.pad) else {
                    debug!(pad = %ev.pad, "input from a pad that is not connected; ignored");
                    return PadChange::None;
                };
                if snap.pressed.remove(b) && self.active == Some(ev.pad) {
                    PadChange::Released(*b)
                } else {
                    PadChange::None
                }
            }
            GamepadEventKind::AxisChanged(a, v) => {
                let Some(snap) = self.pads.get_mut(&ev.pad) else {
                    debug!(pad = %ev.pad, "input from a pad that is not connected; ignored");
                    return PadChange::None;
                };
                let v = sanitize(*a, *v);
                let slot = &mut snap.axes[axis_index(*a)];
                if *slot == v {
                    return PadChange::None;
                }
                *slot = v;
                if self.active == Some(ev.pad) {
                    PadChange::Axis(*a, v)
                } else {
                    PadChange::None
                }
            }
        }
    }

    /// The pad that drives the arm.
    pub fn active(&self) -> Option<PadId> {
        self.active
    }

    /// Every connected pad.
    pub fn connected(&self) -> Vec<PadId> {
        self.pads.keys().copied().collect()
    }

    /// How many pads are connected (without allocating, for the control thread).
    pub fn connected_count(&self) -> usize {
        self.pads.len()
    }

    pub fn any_connected(&self) -> bool {
        !self.pads.is_empty()
    }

    fn snap(&self) -> Option<&PadSnapshot> {
        self.active.and_then(|a| self.pads.get(&a))
    }

    /// Raw value of an axis of the active pad (0 without one).
    pub fn axis(&self, a: Axis) -> f64 {
        self.snap().map_or(0.0, |s| s.axes[axis_index(a)])
    }

    /// Whether a button of the active pad is held.
    pub fn is_pressed(&self, b: Button) -> bool {
        self.snap().is_some_and(|s| s.pressed.contains(&b))
    }

    /// Held buttons of the active pad, in a stable order.
    pub fn pressed(&self) -> Vec<Button> {
        self.snap()
            .map(|s| s.pressed.iter().copied().collect())
            .unwrap_or_default()
    }

    /// All raw axes of the active pad (for recording).
    pub fn axes(&self) -> [(Axis, f64); 8] {
        ALL_AXES.map(|a| (a, self.axis(a)))
    }

    /// An axis after the deadzone: radial for sticks (the stick's deflection, not each axis
    /// alone, must leave the circle of radius `deadzone`), plain for triggers, none for the
    /// D-pad. Outside the deadzone the value is rescaled so it starts from 0 (no step).
    pub fn axis_deadzoned(&self, a: Axis, deadzone: f64) -> f64 {
        let v = self.axis(a);
        match (a, stick_partner(a)) {
            (Axis::DpadX | Axis::DpadY, _) => v,
            (_, Some(partner)) => radial_deadzone(v, self.axis(partner), deadzone).0,
            (_, None) => deadzone_1d(v, deadzone),
        }
    }
}

/// NaN reads as rest; values are clamped to the axis's documented range.
fn sanitize(a: Axis, v: f64) -> f64 {
    if !v.is_finite() {
        return 0.0;
    }
    match a {
        Axis::LeftTrigger | Axis::RightTrigger => v.clamp(0.0, 1.0),
        _ => v.clamp(-1.0, 1.0),
    }
}

/// Scalar deadzone with rescaling: |v| <= dz reads 0, |v| = 1 reads 1.
pub fn deadzone_1d(v: f64, dz: f64) -> f64 {
    let dz = dz.clamp(0.0, 0.999);
    let m = v.abs().min(1.0);
    if !v.is_finite() || m <= dz {
        0.0
    } else {
        v.signum() * (m - dz) / (1.0 - dz)
    }
}

/// Radial deadzone on a stick (x, y): keeps the direction, rescales the magnitude from
/// `dz..1` to `0..1`.
pub fn radial_deadzone(x: f64, y: f64, dz: f64) -> (f64, f64) {
    let dz = dz.clamp(0.0, 0.999);
    if !x.is_finite() || !y.is_finite() {
        return (0.0, 0.0);
    }
    let m = x.hypot(y);
    if m <= dz {
        return (0.0, 0.0);
    }
    let scale = (m.min(1.0) - dz) / (1.0 - dz) / m;
    (x * scale, y * scale)
}
