//! The rumble vocabulary: each pattern is a distinct feel, so the human knows what the
//! daemon understood without looking away from the arm.
//!
//! gilrs schedules force feedback in 50 ms ticks, so every duration is a multiple of 50 ms.

#[cfg(feature = "gilrs")]
use gilrs::ff::{BaseEffect, BaseEffectType, EffectBuilder, Repeat, Replay, Ticks};

/// What to tell the human through the pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RumblePattern {
    /// One short strong pulse (150 ms): "you have the arm".
    TakeoverAck,
    /// Two short weak pulses (100 ms on, 100 ms off): "the policy has the arm again".
    HandbackAck,
    /// Three long pulses on both motors (400 ms on, 200 ms off): the policy asks for help.
    HelpRequested,
    /// One long full-strength buzz on both motors (800 ms): e-stop latched.
    EStop,
    /// Two short strong pulses (150 ms on, 150 ms off): e-stop cleared.
    EStopCleared,
    /// One very short weak tick (50 ms): an episode button was taken.
    EpisodeMark,
    /// One medium weak pulse (300 ms): this pad is connected and is the one in use.
    Connected,
    /// Two long strong pulses (500 ms on, 250 ms off): a fault (bus, policy, command) put the
    /// arm in Hold by itself; take over or resume.
    Fault,
}

/// Which motor(s) a pattern uses. Pads have a strong (low-frequency) and a weak
/// (high-frequency) motor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motor {
    Strong,
    Weak,
    Both,
}

/// A pattern as numbers: `pulses` pulses of `on_ms`, separated by `off_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RumbleSpec {
    pub motor: Motor,
    pub magnitude: u16,
    pub on_ms: u32,
    pub off_ms: u32,
    pub pulses: u32,
}

impl RumbleSpec {
    /// From the first pulse's start to the last pulse's end.
    pub fn total_ms(&self) -> u32 {
        self.pulses * self.on_ms + self.pulses.saturating_sub(1) * self.off_ms
    }
}

impl RumblePattern {
    pub const ALL: [RumblePattern; 8] = [
        RumblePattern::TakeoverAck,
        RumblePattern::HandbackAck,
        RumblePattern::HelpRequested,
        RumblePattern::EStop,
        RumblePattern::EStopCleared,
        RumblePattern::EpisodeMark,
        RumblePattern::Connected,
        RumblePattern::Fault,
    ];

    pub fn spec(self) -> RumbleSpec {
        let s = |motor, magnitude, on_ms, off_ms, pulses| RumbleSpec {
            motor,
            magnitude,
            on_ms,
            off_ms,
            pulses,
        };
        match self {
            RumblePattern::TakeoverAck => s(Motor::Strong, 0xFFFF, 150, 0, 1),
            RumblePattern::HandbackAck => s(Motor::Weak, 0xA000, 100, 100, 2),
            RumblePattern::HelpRequested => s(Motor::Both, 0xC000, 400, 200, 3),
            RumblePattern::EStop => s(Motor::Both, 0xFFFF, 800, 0, 1),
            RumblePattern::EStopCleared => s(Motor::Strong, 0xC000, 150, 150, 2),
            RumblePattern::EpisodeMark => s(Motor::Weak, 0x8000, 50, 0, 1),
            RumblePattern::Connected => s(Motor::Weak, 0x8000, 300, 0, 1),
            RumblePattern::Fault => s(Motor::Strong, 0xE000, 500, 250, 2),
        }
    }

    /// How it feels, for docs and `doctor`.
    pub fn feel(self) -> &'static str {
        match self {
            RumblePattern::TakeoverAck => "one short strong pulse",
            RumblePattern::HandbackAck => "two short weak pulses",
            RumblePattern::HelpRequested => "three long pulses, both motors",
            RumblePattern::EStop => "one long full-strength buzz",
            RumblePattern::EStopCleared => "two short strong pulses",
            RumblePattern::EpisodeMark => "one very short weak tick",
            RumblePattern::Connected => "one medium weak pulse",
            RumblePattern::Fault => "two long strong pulses",
        }
    }

    /// A gilrs effect builder for this pattern, without gamepads: add them and `finish`.
    #[cfg(feature = "gilrs")]
    pub fn effect_builder(self) -> EffectBuilder {
        let spec = self.spec();
        let scheduling = Replay {
            after: Ticks::from_ms(0),
            play_for: Ticks::from_ms(spec.on_ms),
            // Replay repeats every play_for + with_delay; Repeat::For below cuts it after
            // the last pulse.
            with_delay: Ticks::from_ms(spec.off_ms),
        };
        let base = |kind| BaseEffect {
            kind,
            scheduling,
            ..Default::default()
        };
        let mut b = EffectBuilder::new();
        let strong = BaseEffectType::Strong {
            magnitude: spec.magnitude,
        };
        let weak = BaseEffectType::Weak {
            magnitude: spec.magnitude,
        };
        match spec.motor {
            Motor::Strong => {
                b.add_effect(base(strong));
            }
            Motor::Weak => {
                b.add_effect(base(weak));
            }
            Motor::Both => {
                b.add_effect(base(strong)).add_effect(base(weak));
            }
        }
        b.repeat(Repeat::For(Ticks::from_ms(spec.total_ms())));
        b
    }
}
