// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{koch_controller, tick};
use intervened_robot::{Axis, Button};
use intervened_teleop::{
    GamepadEventKind, GamepadSource, Motor, PadId, RumblePattern, Script, VirtualAction,
    VirtualGamepad,
};

#[test]
fn takeover_and_handback_are_acknowledged_by_rumble() {
    let mut c = koch_controller();
    let pad = VirtualGamepad::new();
    let q = [0.0; 6];
    pad.connect();
    tick(&mut c, &pad, &q);
    assert_eq!(pad.take_rumbles(), vec![RumblePattern::Connected]);

    pad.press(Button::RightBumper);
    let out = tick(&mut c, &pad, &q);
    assert_eq!(out.rumbles, vec![RumblePattern::TakeoverAck]);
    assert_eq!(pad.take_rumbles(), vec![RumblePattern::TakeoverAck]);
    // Driving does not rumble.
    pad.set_axis(Axis::LeftStickX, 1.0);
    tick(&mut c, &pad, &q);
    assert!(pad.take_rumbles().is_empty());

    pad.release(Button::RightBumper);
    tick(&mut c, &pad, &q);
    assert_eq!(pad.take_rumbles(), vec![RumblePattern::HandbackAck]);

    pad.press(Button::Select);
    tick(&mut c, &pad, &q);
    pad.press(Button::North);
    tick(&mut c, &pad, &q);
    assert_eq!(
        pad.take_rumbles(),
        vec![RumblePattern::EStop, RumblePattern::EStopCleared]
    );

    // A pad that is gone records nothing.
    pad.disconnect();
    pad.rumble(RumblePattern::HelpRequested);
    assert!(pad.rumbles().is_empty());
}

#[test]
fn patterns_are_distinct_and_documented() {
    let t = RumblePattern::TakeoverAck.spec();
    assert_eq!((t.motor, t.pulses), (Motor::Strong, 1));
    let h = RumblePattern::HandbackAck.spec();
    assert_eq!((h.motor, h.pulses), (Motor::Weak, 2));
    let help = RumblePattern::HelpRequested.spec();
    assert_eq!(help.pulses, 3);
    assert!(help.on_ms > t.on_ms, "help pulses are long");
    let specs: Vec<_> = RumblePattern::ALL.iter().map(|p| p.spec()).collect();
    for (i, a) in specs.iter().enumerate() {
        // gilrs schedules in 50 ms ticks: durations off the grid would be rounded.
        assert_eq!(a.on_ms % 50, 0);
        assert_eq!(a.off_ms % 50, 0);
        assert!(a.total_ms() <= 2000);
        for b in &specs[i + 1..] {
            assert_ne!(a, b, "two patterns feel the same");
        }
    }
    assert_eq!(help.total_ms(), 3 * 400 + 2 * 200);
    for p in RumblePattern::ALL {
        assert!(!p.feel().is_empty());
        // Building the gilrs effect description must not panic.
        #[cfg(feature = "gilrs")]
        let _ = p.effect_builder();
    }
}

#[test]
fn apply_state_emits_only_the_diff() {
    let pad = VirtualGamepad::with_id(PadId(7), "sim human");
    // Disconnected: nothing.
    assert_eq!(
        pad.apply_state(&[(Axis::LeftStickX, 0.5)], &[Button::South]),
        0
    );
    pad.connect();
    let kinds = |p: &VirtualGamepad| -> Vec<GamepadEventKind> {
        p.events()
            .try_iter()
            .map(|e| {
                assert_eq!(e.pad, PadId(7));
                e.kind
            })
            .collect()
    };
    assert_eq!(
        kinds(&pad),
        vec![GamepadEventKind::Connected {
            name: "sim human".into()
        }]
    );

    assert_eq!(
        pad.apply_state(&[(Axis::LeftStickX, 0.5)], &[Button::South]),
        2
    );
    assert_eq!(
        kinds(&pad),
        vec![
            GamepadEventKind::AxisChanged(Axis::LeftStickX, 0.5),
            GamepadEventKind::ButtonPressed(Button::South),
        ]
    );
    // Same state again: no events.
    assert_eq!(
        pad.apply_state(&[(Axis::LeftStickX, 0.5)], &[Button::South]),
        0
    );
    // Axis omitted -> back to rest; button swapped -> release first, then press.
    pad.apply_state(&[(Axis::RightTrigger, 2.0)], &[Button::East]);
    assert_eq!(
        kinds(&pad),
        vec![
            GamepadEventKind::ButtonReleased(Button::South),
            GamepadEventKind::AxisChanged(Axis::LeftStickX, 0.0),
            GamepadEventKind::AxisChanged(Axis::RightTrigger, 1.0),
            GamepadEventKind::ButtonPressed(Button::East),
        ]
    );
    let (axes, pressed) = pad.state();
    assert!(axes.contains(&(Axis::RightTrigger, 1.0)));
    assert_eq!(pressed, vec![Button::East]);
    assert_eq!(pad.pads().len(), 1);
    pad.disconnect();
    assert_eq!(kinds(&pad), vec![GamepadEventKind::Disconnected]);
    assert!(pad.pads().is_empty());
    assert_eq!(pad.state().1, Vec::<Button>::new());
}

#[test]
fn scripts_are_stamped_or_played_in_time() {
    let pad = VirtualGamepad::new();
    let script = Script::new()
        .at(Duration::ZERO, VirtualAction::Connect)
        .tap(
            Button::RightBumper,
            Duration::from_millis(100),
            Duration::from_millis(500),
        )
        .at(
            Duration::from_millis(300),
            VirtualAction::SetAxis(Axis::LeftStickY, -0.4),
        );
    let t0 = Instant::now();
    pad.play_at(&script, t0);
    let evs: Vec<_> = pad.events().try_iter().collect();
    let got: Vec<_> = evs.iter().map(|e| (e.time - t0, e.kind.clone())).collect();
    assert_eq!(
        got,
        vec![
            (
                Duration::ZERO,
                GamepadEventKind::Connected {
                    name: "virtual gamepad".into()
                }
            ),
            (
                Duration::from_millis(100),
                GamepadEventKind::ButtonPressed(Button::RightBumper)
            ),
            (
                Duration::from_millis(300),
                GamepadEventKind::AxisChanged(Axis::LeftStickY, -0.4)
            ),
            (
                Duration::from_millis(600),
                GamepadEventKind::ButtonReleased(Button::RightBumper)
            ),
        ]
    );

    // Real time: the release arrives no earlier than scripted.
    let pad = VirtualGamepad::new();
    pad.connect();
    let _ = pad.events().try_iter().count();
    let start = Instant::now();
    let h = pad
        .play(Script::new().tap(
            Button::South,
            Duration::from_millis(10),
            Duration::from_millis(30),
        ))
        .unwrap();
    h.join().unwrap();
    let evs: Vec<_> = pad.events().try_iter().collect();
    assert_eq!(evs.len(), 2);
    assert!(evs[1].time - start >= Duration::from_millis(40));
    assert!(evs[0].time <= evs[1].time);
}
