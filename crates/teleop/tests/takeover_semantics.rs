// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{koch, koch_controller, tick, DT};
use intervened_robot::{Axis, Button, TakeoverMode, TeleopConfig};
use intervened_teleop::{
    ControlOwner, GamepadSource, Intent, PadId, Takeover, TeleopController, VirtualGamepad,
};

fn machine(mode: TakeoverMode) -> (Takeover, VirtualGamepad) {
    let cfg = TeleopConfig {
        takeover: mode,
        ..koch().teleop
    };
    (Takeover::new(&cfg), VirtualGamepad::new())
}

fn drain(m: &mut Takeover, pad: &VirtualGamepad) -> Vec<Intent> {
    let evs: Vec<_> = pad.events().try_iter().collect();
    m.handle_all(&evs)
}

#[test]
fn hold_mode_is_a_deadman() {
    let (mut m, pad) = machine(TakeoverMode::Hold);
    assert_eq!(m.mode(), TakeoverMode::Hold);
    pad.connect();
    assert_eq!(
        drain(&mut m, &pad),
        vec![Intent::GamepadConnected(PadId(0))]
    );
    assert_eq!(m.owner(), ControlOwner::Policy);

    pad.press(Button::RightBumper);
    assert_eq!(drain(&mut m, &pad), vec![Intent::Takeover]);
    assert_eq!(m.owner(), ControlOwner::Human);
    // Other input while holding changes nothing about ownership.
    pad.set_axis(Axis::LeftStickX, 0.7);
    pad.press(Button::LeftBumper);
    assert!(drain(&mut m, &pad).is_empty());
    assert!(m.is_human());

    pad.release(Button::RightBumper);
    assert_eq!(drain(&mut m, &pad), vec![Intent::Handback]);
    assert_eq!(m.owner(), ControlOwner::Policy);

    // A press and release within one batch: both intents, in order.
    pad.press(Button::RightBumper);
    pad.release(Button::RightBumper);
    assert_eq!(
        drain(&mut m, &pad),
        vec![Intent::Takeover, Intent::Handback]
    );
    assert_eq!(m.owner(), ControlOwner::Policy);
}

#[test]
fn toggle_mode_swaps_on_each_press_and_ignores_releases() {
    let (mut m, pad) = machine(TakeoverMode::Toggle);
    assert_eq!(m.mode(), TakeoverMode::Toggle);
    pad.connect();
    drain(&mut m, &pad);

    pad.press(Button::RightBumper);
    assert_eq!(drain(&mut m, &pad), vec![Intent::Takeover]);
    pad.release(Button::RightBumper);
    assert!(drain(&mut m, &pad).is_empty());
    assert_eq!(m.owner(), ControlOwner::Human);

    pad.press(Button::RightBumper);
    assert_eq!(drain(&mut m, &pad), vec![Intent::Handback]);
    pad.release(Button::RightBumper);
    assert!(drain(&mut m, &pad).is_empty());
    assert_eq!(m.owner(), ControlOwner::Policy);
}

#[test]
fn disconnect_while_driving_latches_hold_until_a_fresh_takeover() {
    let (mut m, pad) = machine(TakeoverMode::Hold);
    pad.connect();
    pad.press(Button::RightBumper);
    drain(&mut m, &pad);
    assert!(m.is_human());

    pad.disconnect();
    assert_eq!(drain(&mut m, &pad), vec![Intent::GamepadLost]);
    assert_eq!(m.owner(), ControlOwner::Hold);
    assert!(!m.pad().any_connected());
    assert!(!m.pad().is_pressed(Button::RightBumper));

    // Reconnecting, moving sticks and pressing other buttons never leaves Hold.
    pad.connect();
    pad.set_axis(Axis::LeftStickY, 1.0);
    pad.press(Button::South);
    pad.release(Button::South);
    let got = drain(&mut m, &pad);
    assert_eq!(
        got,
        vec![Intent::GamepadConnected(PadId(0)), Intent::Success]
    );
    assert_eq!(m.owner(), ControlOwner::Hold);
    // A release of the takeover button (it was held across the unplug) is not an action.
    pad.release(Button::RightBumper);
    assert!(drain(&mut m, &pad).is_empty());
    assert_eq!(m.owner(), ControlOwner::Hold);

    // The explicit way out: a fresh press (human drives) and a release (policy resumes).
    pad.press(Button::RightBumper);
    assert_eq!(drain(&mut m, &pad), vec![Intent::Takeover]);
    assert_eq!(m.owner(), ControlOwner::Human);
    pad.release(Button::RightBumper);
    assert_eq!(drain(&mut m, &pad), vec![Intent::Handback]);
    assert_eq!(m.owner(), ControlOwner::Policy);
}

#[test]
fn hold_stays_hold_over_many_ticks_of_the_controller() {
    let mut c = koch_controller();
    let pad = VirtualGamepad::new();
    let q = [0.1, -0.2, 0.3, 0.0, 0.5, 0.7];
    pad.connect();
    pad.press(Button::RightBumper);
    tick(&mut c, &pad, &q);
    pad.set_axis(Axis::LeftStickX, 1.0);
    tick(&mut c, &pad, &q);
    pad.disconnect();
    let out = tick(&mut c, &pad, &q);
    assert_eq!(out.intents, vec![Intent::GamepadLost]);
    assert_eq!(out.owner, ControlOwner::Hold);
    assert!(out.human_goal.is_none(), "no teleop goal while holding");
    // The stick that was deflected at the unplug drives nothing.
    assert!(out.velocities.iter().all(|v| *v == 0.0));
    pad.connect();
    for _ in 0..500 {
        let out = tick(&mut c, &pad, &q);
        assert_eq!(out.owner, ControlOwner::Hold);
        assert!(out.human_goal.is_none());
    }
}

#[test]
fn pad_lost_while_policy_drives_also_holds() {
    let (mut m, pad) = machine(TakeoverMode::Hold);
    pad.connect();
    drain(&mut m, &pad);
    pad.disconnect();
    assert_eq!(drain(&mut m, &pad), vec![Intent::GamepadLost]);
    assert_eq!(m.owner(), ControlOwner::Hold);
}

#[test]
fn release_hold_needs_a_connected_pad_and_no_estop() {
    let (mut m, pad) = machine(TakeoverMode::Hold);
    pad.connect();
    pad.press(Button::RightBumper);
    pad.disconnect();
    drain(&mut m, &pad);
    assert_eq!(m.owner(), ControlOwner::Hold);
    assert!(m.release_hold().is_err());
    assert_eq!(m.owner(), ControlOwner::Hold);
    pad.connect();
    drain(&mut m, &pad);
    assert_eq!(m.release_hold().unwrap(), Some(Intent::Handback));
    assert_eq!(m.owner(), ControlOwner::Policy);
    assert_eq!(m.release_hold().unwrap(), None);
    // An e-stop from outside the pad latches too, and blocks the operator's release.
    assert_eq!(m.latch_estop(), Some(Intent::EStop));
    assert_eq!(m.latch_estop(), None);
    assert!(matches!(
        m.release_hold(),
        Err(intervened_teleop::TeleopError::EStopLatched)
    ));
    assert_eq!(m.owner(), ControlOwner::Hold);
}

#[test]
fn estop_latches_until_the_ordered_clear_chord() {
    let (mut m, pad) = machine(TakeoverMode::Hold);
    pad.connect();
    pad.press(Button::RightBumper);
    drain(&mut m, &pad);
    assert!(m.is_human());

    pad.press(Button::Select);
    assert_eq!(drain(&mut m, &pad), vec![Intent::EStop]);
    assert!(m.is_estopped());
    assert_eq!(m.owner(), ControlOwner::Hold);
    pad.release(Button::Select);
    // Neither releasing the deadman nor pressing it again, nor start, does anything.
    pad.release(Button::RightBumper);
    pad.press(Button::RightBumper);
    pad.release(Button::RightBumper);
    pad.press(Button::Start);
    pad.release(Button::Start);
    assert!(drain(&mut m, &pad).is_empty());
    assert!(m.is_estopped());

    // Clear alone, and the wrong order (clear held, then e-stop) do not clear.
    pad.press(Button::North);
    pad.release(Button::North);
    pad.press(Button::North);
    pad.press(Button::Select);
    assert!(drain(&mut m, &pad).is_empty());
    assert!(m.is_estopped());
    pad.release(Button::North);
    pad.release(Button::Select);
    drain(&mut m, &pad);

    // Labelling the episode still works while stopped.
    pad.press(Button::East);
    assert_eq!(drain(&mut m, &pad), vec![Intent::Failure]);

    // Hold e-stop, then press clear.
    pad.press(Button::Select);
    pad.press(Button::North);
    assert_eq!(drain(&mut m, &pad), vec![Intent::ClearEStop]);
    assert!(!m.is_estopped());
    assert_eq!(
        m.owner(),
        ControlOwner::Hold,
        "clearing does not hand the arm to anyone"
    );
    pad.release(Button::North);
    pad.release(Button::Select);
    assert!(drain(&mut m, &pad).is_empty());

    // A fresh takeover drives again; pressing e-stop again latches again.
    pad.press(Button::RightBumper);
    assert_eq!(drain(&mut m, &pad), vec![Intent::Takeover]);
    pad.press(Button::Select);
    assert_eq!(drain(&mut m, &pad), vec![Intent::EStop]);
}

#[test]
fn episode_buttons_map_to_intents() {
    let (mut m, pad) = machine(TakeoverMode::Hold);
    pad.connect();
    drain(&mut m, &pad);
    for (b, want) in [
        (Button::Start, Intent::StartEpisode),
        (Button::South, Intent::Success),
        (Button::East, Intent::Failure),
        (Button::West, Intent::Discard),
    ] {
        pad.press(b);
        assert_eq!(drain(&mut m, &pad), vec![want], "{b:?}");
        // Intents fire on the press, not the release, and only once per press.
        pad.release(b);
        assert!(drain(&mut m, &pad).is_empty());
    }
    assert_eq!(m.owner(), ControlOwner::Policy);
}

#[test]
fn demonstration_mode_is_human_all_episode() {
    let (mut m, pad) = machine(TakeoverMode::Hold);
    pad.connect();
    drain(&mut m, &pad);
    assert!(!m.is_demo());
    assert_eq!(m.set_demo(true), Some(Intent::Takeover));
    assert!(m.is_demo());
    assert!(m.is_human());
    // No deadman in demo: pressing and releasing the takeover button keeps the human.
    pad.press(Button::RightBumper);
    pad.release(Button::RightBumper);
    assert!(drain(&mut m, &pad).is_empty());
    assert!(m.is_human());
    // A lost pad still holds; a fresh press resumes the demo.
    pad.disconnect();
    assert_eq!(drain(&mut m, &pad), vec![Intent::GamepadLost]);
    assert_eq!(m.owner(), ControlOwner::Hold);
    pad.connect();
    pad.press(Button::RightBumper);
    pad.release(Button::RightBumper);
    assert_eq!(
        drain(&mut m, &pad),
        vec![Intent::GamepadConnected(PadId(0)), Intent::Takeover]
    );
    assert!(m.is_human());
    // Leaving demo mode never hands the arm straight to the policy.
    m.set_demo(false);
    assert_eq!(m.owner(), ControlOwner::Hold);
}

#[test]
fn controller_demo_first_goal_is_measured() {
    let mut c: TeleopController = koch_controller();
    let pad = VirtualGamepad::new();
    pad.connect();
    let q = [0.3, 0.2, 0.1, 0.0, -0.1, 0.4];
    tick(&mut c, &pad, &q);
    let i = c.takeover_mut().set_demo(true).unwrap();
    c.note_intent(i);
    let out = c.tick(Vec::new(), &q, DT);
    assert_eq!(out.human_goal.as_deref(), Some(&q[..]));
}

#[test]
fn only_the_active_pad_drives_and_losing_it_holds() {
    let (mut m, first) = machine(TakeoverMode::Hold);
    let second = VirtualGamepad::with_id(PadId(1), "spare");
    first.connect();
    second.connect();
    let mut evs: Vec<_> = first.events().try_iter().collect();
    evs.extend(second.events().try_iter());
    m.handle_all(&evs);
    assert_eq!(m.pad().active(), Some(PadId(0)));
    assert_eq!(m.pad().connected(), vec![PadId(0), PadId(1)]);

    // The spare pad's buttons do nothing while the first pad is active.
    second.press(Button::RightBumper);
    second.press(Button::Select);
    assert!(drain(&mut m, &second).is_empty());
    assert_eq!(m.owner(), ControlOwner::Policy);
    second.release(Button::RightBumper);
    second.release(Button::Select);
    drain(&mut m, &second);

    first.press(Button::RightBumper);
    assert_eq!(drain(&mut m, &first), vec![Intent::Takeover]);
    first.disconnect();
    assert_eq!(drain(&mut m, &first), vec![Intent::GamepadLost]);
    assert_eq!(m.owner(), ControlOwner::Hold);
    // The spare becomes active, but only a fresh press on it takes over.
    assert_eq!(m.pad().active(), Some(PadId(1)));
    second.press(Button::RightBumper);
    assert_eq!(drain(&mut m, &second), vec![Intent::Takeover]);
}
