//! A gamepad in software: for tests, the simulator's simulated human, and demos without
//! hardware. It emits exactly the events a real pad read through gilrs would.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use intervened_robot::{Axis, Button};
use tracing::debug;

use crate::error::TeleopError;
use crate::event::{GamepadEvent, GamepadEventKind, PadId, PadInfo};
use crate::names::{axis_index, ALL_AXES};
use crate::rumble::RumblePattern;
use crate::source::GamepadSource;

/// One step of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum VirtualAction {
    Connect,
    Disconnect,
    Press(Button),
    Release(Button),
    SetAxis(Axis, f64),
    /// The whole pad state, as [`VirtualGamepad::apply_state`].
    State {
        axes: Vec<(Axis, f64)>,
        pressed: Vec<Button>,
    },
}

/// A timed sequence of actions; offsets are from the moment it starts playing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    steps: Vec<(Duration, VirtualAction)>,
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an action at `offset`. Steps are played in offset order (stable for ties).
    pub fn at(mut self, offset: Duration, action: VirtualAction) -> Self {
        self.steps.push((offset, action));
        self.steps.sort_by_key(|(t, _)| *t);
        self
    }

    /// Press at `offset`, release `hold` later.
    pub fn tap(self, button: Button, offset: Duration, hold: Duration) -> Self {
        self.at(offset, VirtualAction::Press(button))
            .at(offset + hold, VirtualAction::Release(button))
    }

    pub fn steps(&self) -> &[(Duration, VirtualAction)] {
        &self.steps
    }
}

#[derive(Debug)]
struct Shared {
    id: PadId,
    name: String,
    connected: bool,
    axes: [f64; 8],
    pressed: BTreeSet<Button>,
    rumbles: Vec<RumblePattern>,
}

/// A cloneable handle to one virtual pad. All clones share the pad and its event queue:
/// give one clone to the daemon as its [`GamepadSource`] and drive the others.
///
/// It starts disconnected. While disconnected, input is dropped (an unplugged pad sends
/// nothing). Disconnecting forgets held buttons and axes without release events, as a
/// real unplug does.
#[derive(Debug, Clone)]
pub struct VirtualGamepad {
    shared: Arc<Mutex<Shared>>,
    tx: Sender<GamepadEvent>,
    rx: Receiver<GamepadEvent>,
}

impl Default for VirtualGamepad {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualGamepad {
    /// Pad `PadId(0)`, named "virtual gamepad", disconnected.
    pub fn new() -> Self {
        Self::with_id(PadId(0), "virtual gamepad")
    }

    pub fn with_id(id: PadId, name: &str) -> Self {
        let (tx, rx) = unbounded();
        Self {
            shared: Arc::new(Mutex::new(Shared {
                id,
                name: name.to_string(),
                connected: false,
                axes: [0.0; 8],
                pressed: BTreeSet::new(),
                rumbles: Vec::new(),
            })),
            tx,
            rx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere while holding the lock leaves plain data; keep going.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, s: &Shared, kind: GamepadEventKind, time: Instant) {
        // The receiver lives in self, so sending cannot fail while self exists.
        let _ = self.tx.send(GamepadEvent {
            pad: s.id,
            time,
            kind,
        });
    }

    pub fn id(&self) -> PadId {
        self.lock().id
    }

    pub fn is_connected(&self) -> bool {
        self.lock().connected
    }

    pub fn connect(&self) {
        self.do_action(&VirtualAction::Connect, Instant::now());
    }

    pub fn disconnect(&self) {
        self.do_action(&VirtualAction::Disconnect, Instant::now());
    }

    pub fn press(&self, b: Button) {
        self.do_action(&VirtualAction::Press(b), Instant::now());
    }

    pub fn release(&self, b: Button) {
        self.do_action(&VirtualAction::Release(b), Instant::now());
    }

    /// Sets an axis (clamped to its range; NaN reads as 0).
    pub fn set_axis(&self, a: Axis, v: f64) {
        self.do_action(&VirtualAction::SetAxis(a, v), Instant::now());
    }

    /// Sets the whole pad state and emits only the differences: axes not listed are at
    /// rest (0) and buttons not listed are released. Returns how many events were emitted.
    pub fn apply_state(&self, axes: &[(Axis, f64)], pressed: &[Button]) -> usize {
        self.apply_state_at(axes, pressed, Instant::now())
    }

    /// As [`VirtualGamepad::apply_state`], with a given event time (lockstep simulation).
    pub fn apply_state_at(&self, axes: &[(Axis, f64)], pressed: &[Button], time: Instant) -> usize {
        let mut s = self.lock();
        if !s.connected {
            debug!("virtual pad is disconnected; state ignored");
            return 0;
        }
        let mut target = [0.0; 8];
        for (a, v) in axes {
            target[axis_index(*a)] = clamp_axis(*a, *v);
        }
        let want: BTreeSet<Button> = pressed.iter().copied().collect();
        let mut n = 0;
        // Releases first so a button swap within one tick never shows both held.
        let released: Vec<Button> = s.pressed.difference(&want).copied().collect();
        for b in released {
            s.pressed.remove(&b);
            self.emit(&s, GamepadEventKind::ButtonReleased(b), time);
            n += 1;
        }
        for a in ALL_AXES {
            let i = axis_index(a);
            if s.axes[i] != target[i] {
                s.axes[i] = target[i];
                self.emit(&s, GamepadEventKind::AxisChanged(a, target[i]), time);
                n += 1;
            }
        }
        let new: Vec<Button> = want.difference(&s.pressed).copied().collect();
        for b in new {
            s.pressed.insert(b);
            self.emit(&s, GamepadEventKind::ButtonPressed(b), time);
            n += 1;
        }
        n
    }

    fn do_action(&self, action: &VirtualAction, time: Instant) {
        if let VirtualAction::State { axes, pressed } = action {
            self.apply_state_at(axes, pressed, time);
            return;
        }
        let mut s = self.lock();
        match action {
            VirtualAction::Connect => {
                if !s.connected {
                    s.connected = true;
                    let name = s.name.clone();
                    self.emit(&s, GamepadEventKind::Connected { name }, time);
                }
            }
            VirtualAction::Disconnect => {
                if s.connected {
                    s.connected = false;
                    s.axes = [0.0; 8];
                    s.pressed.clear();
                    self.emit(&s, GamepadEventKind::Disconnected, time);
                }
            }
            _ if !s.connected => debug!(?action, "virtual pad is disconnected; input ignored"),
            VirtualAction::Press(b) => {
                if s.pressed.insert(*b) {
                    self.emit(&s, GamepadEventKind::ButtonPressed(*b), time);
                }
            }
            VirtualAction::Release(b) => {
                if s.pressed.remove(b) {
                    self.emit(&s, GamepadEventKind::ButtonReleased(*b), time);
                }
            }
            VirtualAction::SetAxis(a, v) => {
                let v = clamp_axis(*a, *v);
                let i = axis_index(*a);
                if s.axes[i] != v {
                    s.axes[i] = v;
                    self.emit(&s, GamepadEventKind::AxisChanged(*a, v), time);
                }
            }
            VirtualAction::State { .. } => {}
        }
    }

    /// Plays a script now, without sleeping: each event is stamped `t0 + offset`. For
    /// lockstep simulation and tests.
    pub fn play_at(&self, script: &Script, t0: Instant) {
        for (offset, action) in script.steps() {
            self.do_action(action, t0 + *offset);
        }
    }

    /// Plays a script in real time on its own thread, sleeping to absolute deadlines.
    pub fn play(&self, script: Script) -> Result<JoinHandle<()>, TeleopError> {
        let pad = self.clone();
        let handle = std::thread::Builder::new()
            .name("virtual-gamepad".into())
            .spawn(move || {
                let t0 = Instant::now();
                for (offset, action) in script.steps() {
                    let deadline = t0 + *offset;
                    let now = Instant::now();
                    if deadline > now {
                        std::thread::sleep(deadline - now);
                    }
                    pad.do_action(action, Instant::now());
                }
            })?;
        Ok(handle)
    }

    /// Rumble patterns requested while connected, oldest first.
    pub fn rumbles(&self) -> Vec<RumblePattern> {
        self.lock().rumbles.clone()
    }

    /// Returns and forgets the recorded rumble requests.
    pub fn take_rumbles(&self) -> Vec<RumblePattern> {
        std::mem::take(&mut self.lock().rumbles)
    }

    /// The pad's current raw state (axes at rest are included as 0).
    pub fn state(&self) -> ([(Axis, f64); 8], Vec<Button>) {
        let s = self.lock();
        (
            ALL_AXES.map(|a| (a, s.axes[axis_index(a)])),
            s.pressed.iter().copied().collect(),
        )
    }
}

fn clamp_axis(a: Axis, v: f64) -> f64 {
    if !v.is_finite() {
        return 0.0;
    }
    match a {
        Axis::LeftTrigger | Axis::RightTrigger => v.clamp(0.0, 1.0),
        _ => v.clamp(-1.0, 1.0),
    }
}

impl GamepadSource for VirtualGamepad {
    fn events(&self) -> &Receiver<GamepadEvent> {
        &self.rx
    }

    fn pads(&self) -> Vec<PadInfo> {
        let s = self.lock();
        if !s.connected {
            return Vec::new();
        }
        vec![PadInfo {
            id: s.id,
            name: s.name.clone(),
            os_name: "virtual".into(),
            uuid: [0; 16],
            vendor_id: None,
            product_id: None,
            force_feedback: true,
            mapping: "virtual",
        }]
    }

    fn rumble(&self, pattern: RumblePattern) {
        let mut s = self.lock();
        if s.connected {
            s.rumbles.push(pattern);
        } else {
            debug!(?pattern, "rumble requested with no virtual pad connected");
        }
    }
}
