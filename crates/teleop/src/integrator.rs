//! Velocities -> absolute goal positions, starting from where the arm actually is.

use crate::error::TeleopError;

/// Integrates joint velocities into absolute goals.
///
/// [`TeleopIntegrator::reset_to`] must be called with the *measured* positions on the tick
/// control passes to the human; that tick's goal is exactly the measured position, so the
/// takeover cannot make the arm jump. Later ticks add `velocity * dt`.
///
/// Limits: a goal never moves further outside `[min, max]` than it already is. A measured
/// position outside the limits (a calibration drift, a pushed arm) is kept as the start goal
/// rather than snapped inside, which would be a jump; from there the human can only move it
/// back towards the range.
#[derive(Debug, Clone)]
pub struct TeleopIntegrator {
    limits: Vec<[f64; 2]>,
    goal: Vec<f64>,
    armed: bool,
}

impl TeleopIntegrator {
    /// `limits[i] = [min, max]` in radians for joint `i`.
    pub fn new(limits: Vec<[f64; 2]>) -> Result<Self, TeleopError> {
        for (joint, [lo, hi]) in limits.iter().copied().enumerate() {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(TeleopError::BadLimits { joint, lo, hi });
            }
        }
        let n = limits.len();
        Ok(Self {
            limits,
            goal: vec![0.0; n],
            armed: false,
        })
    }

    /// Starts integrating from `measured`; returns the goal, equal to `measured`.
    pub fn reset_to(&mut self, measured: &[f64]) -> Result<&[f64], TeleopError> {
        self.check(measured, "measured position")?;
        self.goal.copy_from_slice(measured);
        self.armed = true;
        Ok(&self.goal)
    }

    /// Advances the goal by `velocities * dt`, limited as described on the type. Non-finite
    /// velocities count as zero (a corrupt input must not move the arm).
    pub fn step(&mut self, velocities: &[f64], dt: f64) -> Result<&[f64], TeleopError> {
        if !self.armed {
            return Err(TeleopError::NotArmed);
        }
        if velocities.len() != self.goal.len() {
            return Err(TeleopError::LengthMismatch {
                what: "velocity command",
                expected: self.goal.len(),
                got: velocities.len(),
            });
        }
        if !(dt.is_finite() && dt >= 0.0) {
            return Err(TeleopError::NonFinite {
                what: "time step",
                joint: 0,
                value: dt,
            });
        }
        for ((g, &v), &[lo, hi]) in self.goal.iter_mut().zip(velocities).zip(&self.limits) {
            let v = if v.is_finite() { v } else { 0.0 };
            let prev = *g;
            *g = (prev + v * dt).clamp(lo.min(prev), hi.max(prev));
        }
        Ok(&self.goal)
    }

    /// The current goal, or `None` before the first `reset_to` / after `disarm`.
    pub fn goal(&self) -> Option<&[f64]> {
        self.armed.then_some(self.goal.as_slice())
    }

    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// Forgets the goal (control left the human); the next takeover must `reset_to` again.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    pub fn limits(&self) -> &[[f64; 2]] {
        &self.limits
    }

    fn check(&self, v: &[f64], what: &'static str) -> Result<(), TeleopError> {
        if v.len() != self.goal.len() {
            return Err(TeleopError::LengthMismatch {
                what,
                expected: self.goal.len(),
                got: v.len(),
            });
        }
        if let Some((joint, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(TeleopError::NonFinite { what, joint, value });
        }
        Ok(())
    }
}
