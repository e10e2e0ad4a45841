//! Real gamepads through gilrs, on their own thread (Gilrs is Send but not Sync). gilrs
//! types are converted here, at the boundary, into [`GamepadEvent`]s.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};
use gilrs::{Gilrs, GilrsBuilder};
use intervened_robot::{Axis, Button};
use tracing::{debug, info, trace, warn};

use crate::error::TeleopError;
use crate::event::{GamepadEvent, GamepadEventKind, PadId, PadInfo};
use crate::rumble::RumblePattern;
use crate::source::GamepadSource;

/// How long the gilrs thread sleeps when no event is pending. Bounds input latency.
const POLL: Duration = Duration::from_millis(4);

/// Builds Gilrs with the bundled SDL mapping database plus any custom mappings in
/// `SDL_GAMECONTROLLERCONFIG` (one SDL mapping line per pad, newline separated).
/// gilrs' default filters stay on (per-device deadzone, jitter, D-pad axes to buttons);
/// the configured radial deadzone is applied on top, in the mapping.
fn build_gilrs() -> Result<Gilrs, TeleopError> {
    let custom = std::env::var("SDL_GAMECONTROLLERCONFIG").is_ok();
    match GilrsBuilder::new()
        .add_included_mappings(true)
        .add_env_mappings(true)
        .build()
    {
        Ok(g) => {
            if custom {
                info!("custom gamepad mappings loaded from SDL_GAMECONTROLLERCONFIG");
            }
            Ok(g)
        }
        Err(gilrs::Error::NotImplemented(_)) => Err(TeleopError::Unsupported),
        Err(e) => Err(TeleopError::GamepadInit(e.to_string())),
    }
}

fn pad_id(id: gilrs::GamepadId) -> PadId {
    PadId(u32::try_from(usize::from(id)).unwrap_or(u32::MAX))
}

fn pad_info(id: gilrs::GamepadId, gp: &gilrs::Gamepad<'_>) -> PadInfo {
    PadInfo {
        id: pad_id(id),
        name: gp.name().to_string(),
        os_name: gp.os_name().to_string(),
        uuid: gp.uuid(),
        vendor_id: gp.vendor_id(),
        product_id: gp.product_id(),
        force_feedback: gp.is_ff_supported(),
        mapping: match gp.mapping_source() {
            gilrs::MappingSource::SdlMappings => "sdl-db",
            gilrs::MappingSource::Driver => "driver",
            gilrs::MappingSource::None => "none",
        },
    }
}

/// The connected gamepads, for `intervened doctor`. An error means gamepad input cannot
/// work at all on this machine (and says why); zero pads is `Ok(vec![])`.
pub fn list_gamepads() -> Result<Vec<PadInfo>, TeleopError> {
    let gilrs = build_gilrs()?;
    Ok(gilrs.gamepads().map(|(id, gp)| pad_info(id, &gp)).collect())
}

/// gilrs button -> project button. gilrs calls the bumpers LeftTrigger/RightTrigger and
/// the analog triggers LeftTrigger2/RightTrigger2.
pub fn map_button(b: gilrs::Button) -> Option<Button> {
    use gilrs::Button as G;
    Some(match b {
        G::South => Button::South,
        G::East => Button::East,
        G::North => Button::North,
        G::West => Button::West,
        G::LeftTrigger => Button::LeftBumper,
        G::RightTrigger => Button::RightBumper,
        G::LeftTrigger2 => Button::LeftTrigger,
        G::RightTrigger2 => Button::RightTrigger,
        G::Select => Button::Select,
        G::Start => Button::Start,
        G::Mode => Button::Mode,
        G::LeftThumb => Button::LeftThumb,
        G::RightThumb => Button::RightThumb,
        G::DPadUp => Button::DpadUp,
        G::DPadDown => Button::DpadDown,
        G::DPadLeft => Button::DpadLeft,
        G::DPadRight => Button::DpadRight,
        _ => return None,
    })
}

/// gilrs axis -> project axis. LeftZ/RightZ only appear on pads without a mapping and
/// have no agreed meaning, so they are dropped.
pub fn map_axis(a: gilrs::Axis) -> Option<Axis> {
    use gilrs::Axis as G;
    Some(match a {
        G::LeftStickX => Axis::LeftStickX,
        G::LeftStickY => Axis::LeftStickY,
        G::RightStickX => Axis::RightStickX,
        G::RightStickY => Axis::RightStickY,
        G::DPadX => Axis::DpadX,
        G::DPadY => Axis::DpadY,
        _ => return None,
    })
}

#[derive(Debug, Default)]
struct ConvPad {
    pressed: BTreeSet<Button>,
    axes: HashMap<Axis, f64>,
}

/// Turns gilrs events into project events, per pad, emitting only real changes:
/// analog trigger values become `Axis::LeftTrigger`/`RightTrigger` (0..1), D-pad buttons
/// also update `Axis::DpadX`/`DpadY` (up and right positive).
#[derive(Debug, Default)]
pub struct Converter {
    pads: HashMap<PadId, ConvPad>,
}

impl Converter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts one gilrs event of pad `pad`; `name` is asked only on connect.
    pub fn convert(
        &mut self,
        pad: PadId,
        ev: &gilrs::EventType,
        name: impl FnOnce() -> String,
    ) -> Vec<GamepadEventKind> {
        use gilrs::EventType as E;
        let mut out = Vec::new();
        match ev {
            E::Connected => {
                if let std::collections::hash_map::Entry::Vacant(slot) = self.pads.entry(pad) {
                    slot.insert(ConvPad::default());
                    out.push(GamepadEventKind::Connected { name: name() });
                }
            }
            E::Disconnected => {
                // Only a pad we announced can be lost.
                out.extend(
                    self.pads
                        .remove(&pad)
                        .map(|_| GamepadEventKind::Disconnected),
                );
            }
            E::ButtonPressed(b, _) | E::ButtonReleased(b, _) => {
                let pressed = matches!(ev, E::ButtonPressed(..));
                let Some(st) = self.pads.get_mut(&pad) else {
                    return out;
                };
                let Some(rb) = map_button(*b) else {
                    trace!(?b, "unmapped gilrs button");
                    return out;
                };
                let changed = if pressed {
                    st.pressed.insert(rb)
                } else {
                    st.pressed.remove(&rb)
                };
                if !changed {
                    return out;
                }
                out.push(if pressed {
                    GamepadEventKind::ButtonPressed(rb)
                } else {
                    GamepadEventKind::ButtonReleased(rb)
                });
                let dpad = |p: &BTreeSet<Button>, pos: Button, neg: Button| {
                    f64::from(u8::from(p.contains(&pos))) - f64::from(u8::from(p.contains(&neg)))
                };
                let axis = match rb {
                    Button::DpadUp | Button::DpadDown => Some((
                        Axis::DpadY,
                        dpad(&st.pressed, Button::DpadUp, Button::DpadDown),
                    )),
                    Button::DpadLeft | Button::DpadRight => Some((
                        Axis::DpadX,
                        dpad(&st.pressed, Button::DpadRight, Button::DpadLeft),
                    )),
                    _ => None,
                };
                if let Some((a, v)) = axis {
                    push_axis(st, a, v, &mut out);
                }
            }
            E::ButtonChanged(b, v, _) => {
                let Some(st) = self.pads.get_mut(&pad) else {
                    return out;
                };
                let axis = match b {
                    gilrs::Button::LeftTrigger2 => Axis::LeftTrigger,
                    gilrs::Button::RightTrigger2 => Axis::RightTrigger,
                    // Digital buttons are handled by their pressed/released events.
                    _ => return out,
                };
                let v = f64::from(*v);
                let v = if v.is_finite() {
                    v.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                push_axis(st, axis, v, &mut out);
            }
            E::AxisChanged(a, v, _) => {
                let Some(st) = self.pads.get_mut(&pad) else {
                    return out;
                };
                let Some(ra) = map_axis(*a) else {
                    trace!(?a, "unmapped gilrs axis");
                    return out;
                };
                let v = f64::from(*v);
                let v = if v.is_finite() {
                    v.clamp(-1.0, 1.0)
                } else {
                    0.0
                };
                push_axis(st, ra, v, &mut out);
            }
            _ => {}
        }
        out
    }
}

fn push_axis(st: &mut ConvPad, a: Axis, v: f64, out: &mut Vec<GamepadEventKind>) {
    let old = st.axes.insert(a, v).unwrap_or(0.0);
    if old != v {
        out.push(GamepadEventKind::AxisChanged(a, v));
    }
}

enum Command {
    Rumble(RumblePattern),
    Shutdown,
}

/// Whether the gilrs backend is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Running,
    /// It could not start; the source reports no pads and no events. The text says why.
    Unavailable(String),
}

/// Real gamepads. Dropping it stops the thread.
pub struct GilrsSource {
    events: Receiver<GamepadEvent>,
    cmd: Sender<Command>,
    pads: Arc<Mutex<Vec<PadInfo>>>,
    backend: Backend,
    thread: Option<JoinHandle<()>>,
}

fn lock_pads(p: &Mutex<Vec<PadInfo>>) -> MutexGuard<'_, Vec<PadInfo>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl GilrsSource {
    /// Starts the gilrs thread. A gilrs init failure is not an error: the source then has
    /// no pads (see [`GilrsSource::backend`]) and a warning says why. Only failing to spawn
    /// the thread is an error.
    pub fn start() -> Result<Self, TeleopError> {
        let (ev_tx, ev_rx) = unbounded();
        let (cmd_tx, cmd_rx) = unbounded();
        let (init_tx, init_rx) = crossbeam_channel::bounded(1);
        let pads = Arc::new(Mutex::new(Vec::new()));
        let thread_pads = Arc::clone(&pads);
        let thread = std::thread::Builder::new()
            .name("gamepad".into())
            .spawn(move || {
                // Gilrs is built on this thread and never leaves it.
                match build_gilrs() {
                    Ok(g) => {
                        let _ = init_tx.send(Ok(()));
                        run(g, &ev_tx, &cmd_rx, &thread_pads);
                    }
                    Err(e) => {
                        let _ = init_tx.send(Err(e.to_string()));
                    }
                }
            })?;
        let backend = match init_rx.recv() {
            Ok(Ok(())) => Backend::Running,
            Ok(Err(why)) => {
                warn!(%why, "no gamepad input; teleoperation is unavailable");
                Backend::Unavailable(why)
            }
            Err(_) => {
                let why = "the gamepad thread exited during start".to_string();
                warn!(%why, "no gamepad input; teleoperation is unavailable");
                Backend::Unavailable(why)
            }
        };
        Ok(Self {
            events: ev_rx,
            cmd: cmd_tx,
            pads,
            backend,
            thread: Some(thread),
        })
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }
}

impl Drop for GilrsSource {
    fn drop(&mut self) {
        let _ = self.cmd.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("gamepad thread panicked");
            }
        }
    }
}

impl GamepadSource for GilrsSource {
    fn events(&self) -> &Receiver<GamepadEvent> {
        &self.events
    }

    fn pads(&self) -> Vec<PadInfo> {
        lock_pads(&self.pads).clone()
    }

    fn rumble(&self, pattern: RumblePattern) {
        if self.cmd.send(Command::Rumble(pattern)).is_err() {
            debug!(?pattern, "rumble dropped: gamepad thread not running");
        }
    }
}

/// The gilrs thread: forwards events, plays rumble, keeps the pad list current.
fn run(
    mut gilrs: Gilrs,
    tx: &Sender<GamepadEvent>,
    cmd: &Receiver<Command>,
    pads: &Mutex<Vec<PadInfo>>,
) {
    let mut conv = Converter::new();
    let mut ids: HashMap<PadId, gilrs::GamepadId> = HashMap::new();
    // Effects stop when their handle drops, so keep each until it has played out.
    let mut playing: Vec<(gilrs::ff::Effect, Instant)> = Vec::new();

    // gilrs does not announce pads present at start; announce them ourselves.
    let present: Vec<(gilrs::GamepadId, String)> = gilrs
        .gamepads()
        .map(|(id, gp)| (id, gp.name().to_string()))
        .collect();
    for (gid, name) in present {
        let pad = pad_id(gid);
        ids.insert(pad, gid);
        for kind in conv.convert(pad, &gilrs::EventType::Connected, || name.clone()) {
            if tx.send(GamepadEvent::new(pad, kind)).is_err() {
                return;
            }
        }
    }
    refresh(&gilrs, pads);
    info!(pads = lock_pads(pads).len(), "gamepad thread running");

    loop {
        loop {
            match cmd.try_recv() {
                Ok(Command::Rumble(p)) => play(&mut gilrs, &ids, p, &mut playing),
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        playing.retain(|(_, until)| *until > now);

        let mut any = false;
        while let Some(ev) = gilrs.next_event() {
            any = true;
            let pad = pad_id(ev.id);
            let name = || gilrs.gamepad(ev.id).name().to_string();
            let kinds = conv.convert(pad, &ev.event, name);
            let hotplug = matches!(
                ev.event,
                gilrs::EventType::Connected | gilrs::EventType::Disconnected
            );
            if matches!(ev.event, gilrs::EventType::Connected) {
                ids.insert(pad, ev.id);
            }
            for kind in kinds {
                if tx.send(GamepadEvent::new(pad, kind)).is_err() {
                    debug!("gamepad event receiver dropped; stopping the gamepad thread");
                    return;
                }
            }
            if hotplug {
                refresh(&gilrs, pads);
            }
        }
        if !any {
            std::thread::sleep(POLL);
        }
    }
}

fn refresh(gilrs: &Gilrs, pads: &Mutex<Vec<PadInfo>>) {
    let list: Vec<PadInfo> = gilrs.gamepads().map(|(id, gp)| pad_info(id, &gp)).collect();
    *lock_pads(pads) = list;
}

fn play(
    gilrs: &mut Gilrs,
    ids: &HashMap<PadId, gilrs::GamepadId>,
    pattern: RumblePattern,
    playing: &mut Vec<(gilrs::ff::Effect, Instant)>,
) {
    let targets: Vec<gilrs::GamepadId> = ids
        .values()
        .copied()
        .filter(|id| {
            gilrs
                .connected_gamepad(*id)
                .is_some_and(|gp| gp.is_ff_supported())
        })
        .collect();
    if targets.is_empty() {
        debug!(?pattern, "no connected pad can rumble");
        return;
    }
    let mut builder = pattern.effect_builder();
    builder.gamepads(&targets);
    let effect = match builder.finish(gilrs) {
        Ok(e) => e,
        Err(e) => {
            warn!(?pattern, error = %e, "could not create rumble effect");
            return;
        }
    };
    if let Err(e) = effect.play() {
        warn!(?pattern, error = %e, "could not play rumble effect");
        return;
    }
    let ms = u64::from(pattern.spec().total_ms()) + 100;
    playing.push((effect, Instant::now() + Duration::from_millis(ms)));
}
