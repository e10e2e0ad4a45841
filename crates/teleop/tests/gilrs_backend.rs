use std::time::Duration;

use intervened_robot::{Axis, Button};
use intervened_teleop::gilrs_source::{map_axis, map_button, Converter};
use intervened_teleop::{
    list_gamepads, Backend, GamepadEventKind, GamepadSource, GilrsSource, PadId, RumblePattern,
};

#[test]
fn gilrs_source_starts_without_gamepads_and_without_panicking() {
    let src = GilrsSource::start().expect("thread spawns");
    // On a machine without /dev/input gilrs starts with zero pads; if the backend could not
    // start at all, the source still exists and says why.
    match src.backend() {
        Backend::Running => {}
        Backend::Unavailable(why) => assert!(!why.is_empty()),
    }
    std::thread::sleep(Duration::from_millis(30));
    if std::path::Path::new("/dev/input").exists() {
        return; // A developer machine may have real pads; the rest assumes a bare CI box.
    }
    assert!(src.pads().is_empty());
    assert!(src.events().try_recv().is_err());
    // Rumble with no pad is logged, not fatal.
    src.rumble(RumblePattern::TakeoverAck);
    assert!(list_gamepads().map(|p| p.is_empty()).unwrap_or(true));
    drop(src); // joins the thread
}

#[test]
fn gilrs_names_map_to_project_names() {
    use gilrs::Button as G;
    assert_eq!(map_button(G::LeftTrigger), Some(Button::LeftBumper));
    assert_eq!(map_button(G::RightTrigger), Some(Button::RightBumper));
    assert_eq!(map_button(G::LeftTrigger2), Some(Button::LeftTrigger));
    assert_eq!(map_button(G::RightTrigger2), Some(Button::RightTrigger));
    assert_eq!(map_button(G::DPadLeft), Some(Button::DpadLeft));
    assert_eq!(map_button(G::C), None);
    assert_eq!(map_axis(gilrs::Axis::RightStickY), Some(Axis::RightStickY));
    assert_eq!(map_axis(gilrs::Axis::LeftZ), None);
}

#[test]
fn converter_turns_triggers_and_dpad_into_axes() {
    use gilrs::EventType as E;
    let code = |b: gilrs::Button| b.to_nec().unwrap();
    let mut c = Converter::new();
    let p = PadId(0);
    let name = || "Test Pad".to_string();
    // Input before connect is dropped (gilrs never sends it; be safe anyway).
    assert!(c
        .convert(
            p,
            &E::ButtonPressed(gilrs::Button::South, code(gilrs::Button::South)),
            name
        )
        .is_empty());
    assert_eq!(
        c.convert(p, &E::Connected, name),
        vec![GamepadEventKind::Connected {
            name: "Test Pad".into()
        }]
    );
    assert!(
        c.convert(p, &E::Connected, name).is_empty(),
        "duplicate connect"
    );

    let lt2 = code(gilrs::Button::LeftTrigger2);
    assert_eq!(
        c.convert(
            p,
            &E::ButtonChanged(gilrs::Button::LeftTrigger2, 0.4, lt2),
            name
        ),
        vec![GamepadEventKind::AxisChanged(
            Axis::LeftTrigger,
            f64::from(0.4f32)
        )]
    );
    assert_eq!(
        c.convert(p, &E::ButtonPressed(gilrs::Button::LeftTrigger2, lt2), name),
        vec![GamepadEventKind::ButtonPressed(Button::LeftTrigger)]
    );
    // Digital buttons' value changes are not events of their own.
    let s = code(gilrs::Button::South);
    assert!(c
        .convert(p, &E::ButtonChanged(gilrs::Button::South, 1.0, s), name)
        .is_empty());
    // Bumper.
    let rb = code(gilrs::Button::RightTrigger);
    assert_eq!(
        c.convert(p, &E::ButtonPressed(gilrs::Button::RightTrigger, rb), name),
        vec![GamepadEventKind::ButtonPressed(Button::RightBumper)]
    );

    let up = code(gilrs::Button::DPadUp);
    let down = code(gilrs::Button::DPadDown);
    assert_eq!(
        c.convert(p, &E::ButtonPressed(gilrs::Button::DPadUp, up), name),
        vec![
            GamepadEventKind::ButtonPressed(Button::DpadUp),
            GamepadEventKind::AxisChanged(Axis::DpadY, 1.0)
        ]
    );
    // Both pressed cancel out; releasing up leaves down.
    assert_eq!(
        c.convert(p, &E::ButtonPressed(gilrs::Button::DPadDown, down), name),
        vec![
            GamepadEventKind::ButtonPressed(Button::DpadDown),
            GamepadEventKind::AxisChanged(Axis::DpadY, 0.0)
        ]
    );
    assert_eq!(
        c.convert(p, &E::ButtonReleased(gilrs::Button::DPadUp, up), name),
        vec![
            GamepadEventKind::ButtonReleased(Button::DpadUp),
            GamepadEventKind::AxisChanged(Axis::DpadY, -1.0)
        ]
    );
    let left = code(gilrs::Button::DPadLeft);
    assert_eq!(
        c.convert(p, &E::ButtonPressed(gilrs::Button::DPadLeft, left), name),
        vec![
            GamepadEventKind::ButtonPressed(Button::DpadLeft),
            GamepadEventKind::AxisChanged(Axis::DpadX, -1.0)
        ]
    );
    // Stick axes pass through (any code will do; the converter ignores it).
    assert_eq!(
        c.convert(p, &E::AxisChanged(gilrs::Axis::LeftStickY, -0.5, s), name),
        vec![GamepadEventKind::AxisChanged(Axis::LeftStickY, -0.5)]
    );
    assert!(c
        .convert(p, &E::AxisChanged(gilrs::Axis::LeftStickY, -0.5, s), name)
        .is_empty());

    assert_eq!(
        c.convert(p, &E::Disconnected, name),
        vec![GamepadEventKind::Disconnected]
    );
    // Reconnect starts clean: the old D-pad state is gone.
    c.convert(p, &E::Connected, name);
    assert_eq!(
        c.convert(p, &E::ButtonReleased(gilrs::Button::DPadDown, down), name),
        vec![]
    );
}
