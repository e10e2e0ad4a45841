//! The safety filter: the only path from any controller (policy, human, hold) to the servos.
//!
//! Every goal the daemon writes passes through [`SafetyFilter::apply`]:
//! - a non-finite value anywhere rejects the whole command (the caller must hold);
//! - each joint is clamped to its limits (calibrated range intersected with the config's);
//! - each joint's goal stays within `max_step` of the span between the previous goal and the
//!   measured position: it may always come back to where the arm is (a takeover that stops the
//!   arm where it stands is never clamped), but never run ahead by more than a step.
//!
//! Every clamp is counted per joint; the control loop logs the counts and records them.
//!
//! The filter is the only maker of a [`SafeGoal`], and a `SafeGoal` is the only thing
//! `ArmIo::write` takes: a goal that skipped the filter does not type-check.

use std::ops::Deref;

/// Goal positions (rad, config order) that came out of the safety filter. Only this module can
/// make or change one; everyone else reads it as a slice. The loop keeps two and reuses them, so
/// no tick allocates for them.
#[derive(Debug)]
pub struct SafeGoal {
    q: Vec<f64>,
}

impl SafeGoal {
    pub fn as_slice(&self) -> &[f64] {
        &self.q
    }

    /// Copies another safe goal in place (no allocation). A length mismatch copies the common
    /// joints rather than panicking on the robot.
    pub fn copy_from(&mut self, other: &SafeGoal) {
        self.q.iter_mut().zip(&other.q).for_each(|(o, v)| *o = *v);
    }
}

impl Deref for SafeGoal {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        &self.q
    }
}

/// What happened to one command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterOutcome {
    /// Joints clamped to a position limit.
    pub limit_clamps: u32,
    /// Joints slowed to the step limit.
    pub step_clamps: u32,
    /// The command held a NaN or infinity and was refused.
    pub non_finite: bool,
}

impl FilterOutcome {
    pub fn clamped(&self) -> bool {
        self.limit_clamps > 0 || self.step_clamps > 0
    }
}

#[derive(Debug, Clone)]
pub struct SafetyFilter {
    limits: Vec<[f64; 2]>,
    max_step: f64,
    /// Clamps per joint since start (limit + step).
    pub clamp_counts: Vec<u64>,
    pub non_finite_count: u64,
}

impl SafetyFilter {
    /// `limits` are per joint `[min, max]` in rad, `max_step` the largest move per tick in rad.
    pub fn new(limits: Vec<[f64; 2]>, max_step: f64) -> Self {
        let n = limits.len();
        Self {
            limits,
            max_step,
            clamp_counts: vec![0; n],
            non_finite_count: 0,
        }
    }

    pub fn limits(&self) -> &[[f64; 2]] {
        &self.limits
    }

    /// A goal buffer for this arm: every joint at the point of its limits nearest zero. The
    /// loop writes nothing from it before [`SafetyFilter::seed`] or [`SafetyFilter::apply`]
    /// filled it.
    pub fn new_goal(&self) -> SafeGoal {
        let mut q = vec![0.0; self.limits.len()];
        self.clamp_to_limits(&mut q);
        SafeGoal { q }
    }

    /// Seeds `goal` with the measured position, clamped into the limits (the arm may sit
    /// slightly outside them after a manual move): holding where the arm is.
    pub fn seed(&self, measured: &[f64], goal: &mut SafeGoal) {
        goal.q.iter_mut().zip(measured).for_each(|(o, v)| *o = *v);
        self.clamp_to_limits(&mut goal.q);
    }

    /// Clamps a position into the limits (used to seed goals from a measured pose that may sit
    /// slightly outside them after a manual move).
    pub fn clamp_to_limits(&self, q: &mut [f64]) {
        for (v, [lo, hi]) in q.iter_mut().zip(&self.limits) {
            if v.is_finite() {
                *v = v.clamp(*lo, *hi);
            }
        }
    }

    /// Filters `proposed` into `out`, given the previous goal actually written and the measured
    /// position.
    ///
    /// On a non-finite proposal `out` is set to `previous` (clamped) and the outcome says so:
    /// the arm holds where it was last sent.
    pub fn apply(
        &mut self,
        proposed: &[f64],
        previous: &[f64],
        measured: &[f64],
        out: &mut SafeGoal,
    ) -> FilterOutcome {
        self.filter_into(proposed, previous, measured, &mut out.q)
    }

    fn filter_into(
        &mut self,
        proposed: &[f64],
        previous: &[f64],
        measured: &[f64],
        out: &mut [f64],
    ) -> FilterOutcome {
        let mut o = FilterOutcome::default();
        let n = self.limits.len();
        if proposed.len() != n
            || previous.len() != n
            || out.len() != n
            || proposed.iter().any(|v| !v.is_finite())
        {
            o.non_finite = true;
            self.non_finite_count += 1;
            for i in 0..n.min(out.len()).min(previous.len()) {
                let [lo, hi] = self.limits[i];
                out[i] = if previous[i].is_finite() {
                    previous[i].clamp(lo, hi)
                } else {
                    (lo + hi) / 2.0
                };
            }
            return o;
        }
        for i in 0..n {
            let [lo, hi] = self.limits[i];
            let mut v = proposed[i];
            if v < lo || v > hi {
                v = v.clamp(lo, hi);
                o.limit_clamps += 1;
                self.clamp_counts[i] += 1;
            }
            let prev = previous[i];
            if prev.is_finite() {
                let m = measured
                    .get(i)
                    .copied()
                    .filter(|m| m.is_finite())
                    .unwrap_or(prev);
                let (a, b) = (prev.min(m) - self.max_step, prev.max(m) + self.max_step);
                if v < a || v > b {
                    v = v.clamp(a, b);
                    // A step from a previous goal outside the limits must still end inside them.
                    v = v.clamp(lo, hi);
                    o.step_clamps += 1;
                    self.clamp_counts[i] += 1;
                }
            }
            out[i] = v;
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> SafetyFilter {
        SafetyFilter::new(vec![[-1.0, 1.0], [0.0, 2.0]], 0.1)
    }

    #[test]
    fn passes_commands_inside_limits() {
        let mut f = filter();
        let mut out = [0.0; 2];
        let o = f.filter_into(&[0.05, 1.0], &[0.0, 0.95], &[0.0, 0.95], &mut out);
        assert_eq!(out, [0.05, 1.0]);
        assert!(!o.clamped() && !o.non_finite);
    }

    #[test]
    fn clamps_limits_and_steps_and_counts() {
        let mut f = filter();
        let mut out = [0.0; 2];
        let o = f.filter_into(&[5.0, 1.5], &[0.95, 1.0], &[0.95, 1.0], &mut out);
        assert_eq!(out[0], 1.0);
        assert!((out[1] - 1.1).abs() < 1e-12);
        assert_eq!(o.limit_clamps, 1);
        assert_eq!(o.step_clamps, 1);
        assert_eq!(f.clamp_counts, vec![1, 1]);
    }

    #[test]
    fn never_leaves_limits_even_from_outside() {
        let mut f = filter();
        let mut out = [0.0; 2];
        // The previous goal was outside (e.g. limits narrowed by a new calibration).
        f.filter_into(&[-3.0, 2.0], &[-2.0, 2.5], &[-2.0, 2.5], &mut out);
        assert!(out[0] >= -1.0 && out[1] <= 2.0);
    }

    #[test]
    fn returning_to_the_measured_position_is_never_clamped() {
        let mut f = filter();
        let mut out = [0.0; 2];
        // The arm lags 0.4 rad behind its goal; a takeover commands where the arm is.
        let o = f.filter_into(&[0.1, 1.0], &[0.5, 1.0], &[0.1, 1.0], &mut out);
        assert_eq!(out, [0.1, 1.0]);
        assert!(!o.clamped());
        // But running ahead of both is limited to one step beyond them.
        f.filter_into(&[0.9, 1.0], &[0.5, 1.0], &[0.1, 1.0], &mut out);
        assert!((out[0] - 0.6).abs() < 1e-12);
    }

    #[test]
    fn non_finite_holds_previous() {
        let mut f = filter();
        let mut out = [9.0; 2];
        let o = f.filter_into(&[f64::NAN, 1.0], &[0.3, 0.4], &[0.3, 0.4], &mut out);
        assert!(o.non_finite);
        assert_eq!(out, [0.3, 0.4]);
        let o = f.filter_into(&[0.0, f64::INFINITY], &[0.3, 0.4], &[0.3, 0.4], &mut out);
        assert!(o.non_finite);
        assert_eq!(f.non_finite_count, 2);
    }

    #[test]
    fn safe_goals_come_from_the_filter() {
        let mut f = SafetyFilter::new(vec![[-1.0, 1.0], [0.25, 2.0]], 0.1);
        let mut goal = f.new_goal();
        // Zero is outside the second joint's limits: the fresh buffer is already inside.
        assert_eq!(goal.as_slice(), [0.0, 0.25]);
        f.seed(&[3.0, 0.5], &mut goal);
        assert_eq!(goal.as_slice(), [1.0, 0.5]);
        let mut next = f.new_goal();
        let o = f.apply(&[0.95, 9.0], &goal, &[1.0, 0.5], &mut next);
        assert_eq!(next.as_slice(), [0.95, 0.6]);
        assert_eq!(o.step_clamps, 1);
        goal.copy_from(&next);
        assert_eq!(&goal[..], &next[..]);
    }

    #[test]
    fn random_commands_never_escape() {
        let mut f = SafetyFilter::new(vec![[-0.5, 0.7]; 6], 0.05);
        let mut prev = [0.0; 6];
        let mut out = [0.0; 6];
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for _ in 0..10_000 {
            let mut cmd = [0.0; 6];
            for c in cmd.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = (x % 20_000) as f64 / 1000.0 - 10.0;
            }
            f.filter_into(&cmd, &prev, &prev, &mut out);
            for i in 0..6 {
                assert!(out[i] >= -0.5 && out[i] <= 0.7);
                assert!((out[i] - prev[i]).abs() <= 0.05 + 1e-12);
            }
            prev = out;
        }
    }
}
