//! Observation sources beside the servos: the simulated world's task features today, cameras
//! later. The control loop reads every source once per tick, like the servos.

/// A source of named scalar features, read once per control tick.
///
/// `read` must not block on disk or network: the control loop calls it on its hot path.
pub trait SensorSource: Send {
    /// Feature names, fixed for the source's lifetime (e.g. `block.x`).
    fn names(&self) -> &[String];
    /// Writes the latest values into `out` (`out.len() == names().len()`).
    fn read(&mut self, out: &mut [f64]) -> Result<(), SensorError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("sensor {name}: {message}")]
    Unavailable { name: String, message: String },
}
