//! The arm as the control loop sees it: joint space in radians, behind a small trait so the loop
//! is the same over a real bus, the emulated bus on a pty, and unit tests.

use crate::fault::ArmFault;
use crate::safety::SafeGoal;

/// The measured state of every joint, in config order. Reused every tick (no allocation).
#[derive(Debug, Clone, PartialEq)]
pub struct ArmState {
    /// Positions, rad.
    pub q: Vec<f64>,
    /// Velocities, rad/s (last read; may lag by a few ticks when read at a lower rate).
    pub qd: Vec<f64>,
    /// Currents, mA.
    pub current: Vec<f64>,
    /// A latched hardware alert per servo (Hardware_Error_Status bits), if any.
    pub alerts: Vec<Option<u8>>,
}

impl ArmState {
    pub fn new(n: usize) -> Self {
        Self {
            q: vec![0.0; n],
            qd: vec![0.0; n],
            current: vec![0.0; n],
            alerts: vec![None; n],
        }
    }
}

/// Reading and commanding the arm. Implementations never panic and never block longer than
/// their bounded retries allow.
pub trait ArmIo: Send {
    /// Reads the arm into `out`. On error `out.q` keeps the last good values.
    fn read(&mut self, tick: u64, out: &mut ArmState) -> Result<(), ArmFault>;
    /// Writes goal positions (rad). Only a goal the safety filter made can be written.
    fn write(&mut self, goals: &SafeGoal) -> Result<(), ArmFault>;
    fn set_torque(&mut self, on: bool) -> Result<(), ArmFault>;
    /// Returns once everything written so far has reached the arm. The loop never calls it; a
    /// lockstep simulator's tick hook does, to advance the world only after the tick's goals
    /// were applied.
    fn barrier(&mut self) -> Result<(), ArmFault> {
        Ok(())
    }
    /// Time spent waiting for the arm's replies since it was opened (the loop charges the
    /// difference across a read to its "bus wait" phase).
    fn bus_wait(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}
