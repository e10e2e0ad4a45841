//! The arm in joint space: what the daemon's control thread calls every tick.
//!
//! The arm converts between radians and servo ticks with the software calibration
//! ([`intervened_robot::JointCalibration`]); the servos' Homing_Offset registers stay at 0.
//!
//! The arm does no safety filtering: it writes whatever goals it is given (after checking that
//! they are finite and fit the Goal_Position register). The daemon's safety filter (joint
//! limits, step limit) is the only code that may call [`Arm::write_goals`].

use std::path::Path;
use std::time::{Duration, Instant};

use intervened_robot::{Calibration, JointConfig, OperatingMode, RobotConfig, ServoModel};
use tracing::{info, warn};

use crate::bus::{Bus, PingInfo};
use crate::error::{BusError, ServoFault, ServoProblem};
use crate::registers as reg;
use intervened_dxl_proto::x_series as x;
use intervened_dxl_proto::Block;

/// What Present_Current (address 126) measures on a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CurrentUnit {
    /// Current in amps per register unit.
    Amps(f64),
    /// No current sensor (XL430-W250): the register is Present_Load, reported as a fraction of
    /// the maximum torque (-1..1).
    LoadFraction,
}

impl CurrentUnit {
    pub fn of(model: ServoModel) -> Self {
        match model {
            ServoModel::Xl330M077 | ServoModel::Xl330M288 => CurrentUnit::Amps(0.001),
            ServoModel::Xm430W350 | ServoModel::Xm540W270 => CurrentUnit::Amps(0.00269),
            ServoModel::Xl430W250 => CurrentUnit::LoadFraction,
        }
    }

    fn convert(self, raw: i16) -> f64 {
        match self {
            CurrentUnit::Amps(a) => raw as f64 * a,
            CurrentUnit::LoadFraction => raw as f64 * 0.001,
        }
    }
}

/// One servo's periodic health read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServoHealth {
    /// Hardware_Error_Status bits (see [`crate::registers::hardware_error_names`]).
    pub hardware_error: u8,
    pub voltage_v: f64,
    pub temperature_c: f64,
}

/// One tick's measurements. Build it once with [`Arm::new_reading`] and pass it to
/// [`Arm::read_into`] every tick: the vectors are reused, nothing is allocated.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmReading {
    pub tick: u64,
    /// Joint positions in radians. For a joint whose status is an error other than
    /// `HardwareAlert`, this is the last good value (stale).
    pub q: Vec<f64>,
    /// Raw Present_Position ticks (same staleness rule as `q`).
    pub raw: Vec<i32>,
    /// Joint velocities in rad/s, on ticks where velocity and current were read.
    pub qd: Option<Vec<f64>>,
    /// Per joint: amps, or the load fraction on models without a current sensor
    /// (see [`Arm::current_units`]), on ticks where velocity and current were read.
    pub current: Option<Vec<f64>>,
    /// Per joint outcome of this tick's position read.
    pub status: Vec<Result<(), ServoFault>>,
    /// On health ticks: per joint health, `None` for a servo whose health read failed.
    pub health: Option<Vec<Option<ServoHealth>>>,
    /// Time the read took.
    pub elapsed: Duration,
}

impl ArmReading {
    pub fn new(joints: usize) -> Self {
        Self {
            tick: 0,
            q: vec![0.0; joints],
            raw: vec![0; joints],
            qd: None,
            current: None,
            status: vec![Err(ServoFault::Timeout); joints],
            health: None,
            elapsed: Duration::ZERO,
        }
    }

    /// Whether every joint delivered a fresh position (an alert still counts as a failure).
    pub fn all_ok(&self) -> bool {
        self.status.iter().all(|s| s.is_ok())
    }

    /// Joints whose position this tick is stale.
    pub fn stale_joints(&self) -> impl Iterator<Item = usize> + '_ {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Err(f) if !f.data_valid()))
            .map(|(i, _)| i)
    }
}

fn problem(j: &JointConfig, problem: String, fix: &str) -> ServoProblem {
    ServoProblem {
        id: j.id,
        joint: j.name.clone(),
        problem,
        fix: fix.into(),
    }
}

/// Pings a joint's servo and checks its model and firmware against the config.
/// Firmware older than [`ServoModel::min_firmware`] only logs a warning.
pub fn check_servo(bus: &mut Bus, j: &JointConfig) -> Result<PingInfo, ServoProblem> {
    // Start-up is not time-critical: a servo gets three pings before it counts as silent, so a
    // reply lost to noise (or a loaded host) does not stop the daemon from starting.
    let mut attempt = bus.ping(j.id);
    for _ in 0..2 {
        if !matches!(attempt, Err(ServoFault::Timeout) | Err(ServoFault::Corrupt)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        attempt = bus.ping(j.id);
    }
    let p = attempt.map_err(|f| {
        problem(
            j,
            format!("does not answer a ping at {} baud: {f}", bus.baud()),
            "check power and cabling, and that the servo's id and baud rate match the config \
             (`intervened doctor` tries other baud rates)",
        )
    })?;
    if p.model != j.model.number() {
        let found = ServoModel::from_number(p.model)
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "an unknown model".into());
        return Err(problem(
            j,
            format!(
                "is {found} (model number {}), but the config says {} ({})",
                p.model,
                j.model,
                j.model.number()
            ),
            "fix the joint's model in the config, or give this servo the right id",
        ));
    }
    if p.firmware < j.model.min_firmware() {
        warn!(
            id = j.id,
            joint = %j.name,
            firmware = p.firmware,
            min = j.model.min_firmware(),
            "servo firmware is older than the oldest version checked; update it with Dynamixel Wizard"
        );
    }
    Ok(p)
}

/// Brings the servos to the state the daemon needs: Return_Delay_Time 0, the configured
/// Operating_Mode, Homing_Offset 0 (calibration is applied in software).
///
/// EEPROM registers are only written when they differ (they wear, and writing them needs
/// torque off). Torque is turned off only for such a write, so restarting the daemon does not
/// drop an arm that is holding. Afterwards torque is `torque` if given, else as found; before
/// torque goes on, the goal is set to the present position so the arm does not jump.
pub fn configure(
    bus: &mut Bus,
    joints: &[JointConfig],
    torque: Option<bool>,
) -> Result<(), BusError> {
    let mut problems = Vec::new();
    for j in joints {
        if let Err(p) = configure_one(bus, j, torque) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BusError::Servos { problems })
    }
}

fn configure_one(bus: &mut Bus, j: &JointConfig, torque: Option<bool>) -> Result<(), ServoProblem> {
    let fail = |what: &str, f: ServoFault| {
        problem(
            j,
            format!("{what} failed: {f}"),
            "check the servo's power and cable; run `intervened doctor`",
        )
    };
    let torque_was = bus
        .read_u8(j.id, reg::TORQUE_ENABLE)
        .map_err(|f| fail("reading Torque_Enable", f))?
        != 0;
    let delay = bus
        .read_u8(j.id, reg::RETURN_DELAY_TIME)
        .map_err(|f| fail("reading Return_Delay_Time", f))?;
    let mode = bus
        .read_u8(j.id, reg::OPERATING_MODE)
        .map_err(|f| fail("reading Operating_Mode", f))?;
    let homing = bus
        .read_i32(j.id, reg::HOMING_OFFSET)
        .map_err(|f| fail("reading Homing_Offset", f))?;
    let want_mode = j.mode.register_value();
    let eeprom = delay != 0 || mode != want_mode || homing != 0;
    let mut torque_now = torque_was;
    if eeprom {
        if torque_now {
            bus.write_u8(j.id, reg::TORQUE_ENABLE, 0)
                .map_err(|f| fail("turning torque off", f))?;
            torque_now = false;
        }
        if delay != 0 {
            info!(id = j.id, joint = %j.name, from = delay, "setting Return_Delay_Time to 0");
            bus.write_u8(j.id, reg::RETURN_DELAY_TIME, 0)
                .map_err(|f| fail("writing Return_Delay_Time", f))?;
        }
        if mode != want_mode {
            info!(id = j.id, joint = %j.name, from = mode, to = want_mode, "setting Operating_Mode");
            bus.write_u8(j.id, reg::OPERATING_MODE, want_mode)
                .map_err(|f| fail("writing Operating_Mode", f))?;
        }
        if homing != 0 {
            info!(id = j.id, joint = %j.name, from = homing, "setting Homing_Offset to 0 (calibration is in software)");
            bus.write_i32(j.id, reg::HOMING_OFFSET, 0)
                .map_err(|f| fail("writing Homing_Offset", f))?;
        }
    }
    let want_torque = torque.unwrap_or(torque_was);
    if want_torque && !torque_now {
        let present = bus
            .read_i32(j.id, reg::PRESENT_POSITION)
            .map_err(|f| fail("reading Present_Position", f))?;
        bus.write_i32(j.id, reg::GOAL_POSITION, present)
            .map_err(|f| fail("writing Goal_Position", f))?;
        bus.write_u8(j.id, reg::TORQUE_ENABLE, 1)
            .map_err(|f| fail("turning torque on", f))?;
    } else if !want_torque && torque_now {
        bus.write_u8(j.id, reg::TORQUE_ENABLE, 0)
            .map_err(|f| fail("turning torque off", f))?;
    }
    Ok(())
}

/// The register range of Goal_Position in a mode.
fn goal_range(mode: OperatingMode) -> (i64, i64) {
    match mode {
        // Position mode clamps goals to the position limits, whose own range this is.
        OperatingMode::Position => (x::MAX_POSITION_LIMIT.reg.min, x::MAX_POSITION_LIMIT.reg.max),
        OperatingMode::ExtendedPosition | OperatingMode::CurrentBasedPosition => {
            (x::GOAL_POSITION.reg.min, x::GOAL_POSITION.reg.max)
        }
    }
}

/// The arm: a bus plus the joint config and calibration.
#[derive(Debug)]
pub struct Arm {
    bus: Bus,
    joints: Vec<JointConfig>,
    cal: Calibration,
    ids: Vec<u8>,
    units: Vec<CurrentUnit>,
    velocity_current_every: u32,
    health_every: u32,
    read_budget: Duration,
    buf: Vec<u8>,
    scratch_status: Vec<Result<(), ServoFault>>,
    goal_ticks: Vec<i32>,
    spare_qd: Option<Vec<f64>>,
    spare_current: Option<Vec<f64>>,
    spare_health: Option<Vec<Option<ServoHealth>>>,
}

impl Arm {
    /// Opens the port, checks every servo (ping, model, firmware) and configures them (torque
    /// left as found). All problems are reported together, each naming its servo and fix.
    pub fn open(cfg: &RobotConfig, cal: Calibration, port: &Path) -> Result<Arm, BusError> {
        let mut bus = Bus::open(port, cfg.bus.baud)?;
        bus.set_retries(cfg.bus.retries);
        Self::from_bus(bus, cfg, cal)
    }

    /// Like [`Arm::open`], over a bus that is already open.
    pub fn from_bus(mut bus: Bus, cfg: &RobotConfig, cal: Calibration) -> Result<Arm, BusError> {
        if cal.joints.len() != cfg.joints.len() {
            return Err(BusError::Calibration(format!(
                "it has {} joints, the config {}",
                cal.joints.len(),
                cfg.joints.len()
            )));
        }
        for (j, (name, c)) in cfg.joints.iter().zip(&cal.joints) {
            if *name != j.name || c.id != j.id {
                return Err(BusError::Calibration(format!(
                    "entry {name:?} (id {}) stands where the config has joint {:?} (id {})",
                    c.id, j.name, j.id
                )));
            }
        }
        let problems: Vec<ServoProblem> = cfg
            .joints
            .iter()
            .filter_map(|j| check_servo(&mut bus, j).err())
            .collect();
        if !problems.is_empty() {
            return Err(BusError::Servos { problems });
        }
        configure(&mut bus, &cfg.joints, None)?;
        let n = cfg.joints.len();
        // Half a period for reads leaves the rest of the tick for the goal write and the loop.
        let read_budget = Duration::from_secs_f64(cfg.period_s() * 0.5);
        Ok(Arm {
            bus,
            ids: cfg.joints.iter().map(|j| j.id).collect(),
            units: cfg
                .joints
                .iter()
                .map(|j| CurrentUnit::of(j.model))
                .collect(),
            joints: cfg.joints.clone(),
            cal,
            velocity_current_every: cfg.bus.velocity_current_every.max(1),
            health_every: cfg.bus.health_every.max(1),
            read_budget,
            buf: vec![0; n * usize::from(reg::MOTION_BLOCK.len)],
            scratch_status: vec![Ok(()); n],
            goal_ticks: vec![0; n],
            spare_qd: Some(vec![0.0; n]),
            spare_current: Some(vec![0.0; n]),
            spare_health: Some(vec![None; n]),
        })
    }

    pub fn joints(&self) -> &[JointConfig] {
        &self.joints
    }

    pub fn ids(&self) -> &[u8] {
        &self.ids
    }

    pub fn calibration(&self) -> &Calibration {
        &self.cal
    }

    /// Replaces the calibration (e.g. after [`crate::Calibrator`] produced a new one).
    pub fn set_calibration(&mut self, cal: Calibration) -> Result<(), BusError> {
        if cal.joints.len() != self.joints.len()
            || cal
                .joints
                .iter()
                .zip(&self.joints)
                .any(|((n, c), j)| *n != j.name || c.id != j.id)
        {
            return Err(BusError::Calibration(
                "joints or ids differ from the config".into(),
            ));
        }
        self.cal = cal;
        Ok(())
    }

    /// What `ArmReading::current` holds per joint.
    pub fn current_units(&self) -> &[CurrentUnit] {
        &self.units
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn bus_mut(&mut self) -> &mut Bus {
        &mut self.bus
    }

    /// The longest a read (with its retries and health reads) may take; the default is half
    /// the control period.
    pub fn set_read_budget(&mut self, budget: Duration) {
        self.read_budget = budget;
    }

    pub fn read_budget(&self) -> Duration {
        self.read_budget
    }

    /// A reading sized for this arm, to reuse with [`Arm::read_into`].
    pub fn new_reading(&self) -> ArmReading {
        ArmReading::new(self.joints.len())
    }

    /// Reads the arm (allocates a new reading; the control loop should use `read_into`).
    pub fn read(&mut self, tick: u64) -> ArmReading {
        let mut r = self.new_reading();
        self.read_into(tick, &mut r);
        r
    }

    /// One tick's read: positions every tick; velocity and current every
    /// `velocity_current_every` ticks (one sync read of the block 126..136); hardware error,
    /// voltage and temperature every `health_every` ticks. Never waits past the read budget.
    pub fn read_into(&mut self, tick: u64, r: &mut ArmReading) {
        let motion = tick.is_multiple_of(u64::from(self.velocity_current_every));
        let health = tick.is_multiple_of(u64::from(self.health_every));
        self.read_with(tick, r, motion, health);
    }

    /// A read of positions, velocities and currents without health reads (for benchmarks and
    /// calibration sampling).
    pub fn read_motion_only(&mut self, r: &mut ArmReading) {
        let tick = r.tick;
        self.read_with(tick, r, true, false);
    }

    fn read_with(&mut self, tick: u64, r: &mut ArmReading, motion: bool, health: bool) {
        let start = Instant::now();
        let deadline = start + self.read_budget;
        let n = self.ids.len();
        r.tick = tick;
        r.q.resize(n, 0.0);
        r.raw.resize(n, 0);
        r.status.resize(n, Err(ServoFault::Timeout));
        let block = if motion {
            reg::MOTION_BLOCK
        } else {
            Block::of(x::PRESENT_POSITION.reg)
        };
        let l = usize::from(block.len);
        self.buf.resize(n * l, 0);
        if let Err(e) = self.bus.sync_read(
            &self.ids,
            block.addr,
            block.len,
            &mut self.buf[..n * l],
            &mut r.status,
            Some(deadline),
        ) {
            // Only a buffer-size mismatch lands here, which resize() above rules out.
            warn!(error = %e, "position read refused");
        }
        let mut qd = if motion {
            r.qd.take().or_else(|| self.spare_qd.take())
        } else {
            self.spare_qd = r.qd.take().or(self.spare_qd.take());
            None
        };
        let mut cur = if motion {
            r.current.take().or_else(|| self.spare_current.take())
        } else {
            self.spare_current = r.current.take().or(self.spare_current.take());
            None
        };
        if let Some(v) = qd.as_mut() {
            v.resize(n, 0.0);
        }
        if let Some(v) = cur.as_mut() {
            v.resize(n, 0.0);
        }
        for i in 0..n {
            let fresh = match r.status.get(i) {
                Some(Ok(())) => true,
                Some(Err(f)) => f.data_valid(),
                None => false,
            };
            if !fresh {
                continue;
            }
            let Some(b) = self.buf.get(i * l..i * l + l) else {
                continue;
            };
            let Some((_, c)) = self.cal.joints.get(i) else {
                continue;
            };
            let Some(raw) = x::PRESENT_POSITION.decode_in(b, block.addr) else {
                continue;
            };
            r.raw[i] = raw;
            r.q[i] = c.ticks_to_rad(raw);
            if let (true, Some(current), Some(velocity)) = (
                motion,
                x::PRESENT_CURRENT.decode_in(b, block.addr),
                x::PRESENT_VELOCITY.decode_in(b, block.addr),
            ) {
                if let Some(v) = qd.as_mut().and_then(|v| v.get_mut(i)) {
                    *v = c.velocity_to_rad_s(velocity);
                }
                if let (Some(v), Some(u)) =
                    (cur.as_mut().and_then(|v| v.get_mut(i)), self.units.get(i))
                {
                    *v = u.convert(current);
                }
            }
        }
        r.qd = qd;
        r.current = cur;
        if health {
            let mut h = r
                .health
                .take()
                .or_else(|| self.spare_health.take())
                .unwrap_or_default();
            self.read_health(&mut h, deadline);
            r.health = Some(h);
        } else if let Some(h) = r.health.take() {
            self.spare_health = Some(h);
        }
        r.elapsed = start.elapsed();
    }

    fn read_health(&mut self, h: &mut Vec<Option<ServoHealth>>, deadline: Instant) {
        let n = self.ids.len();
        h.clear();
        h.resize(n, None);
        self.buf.resize(n * 4, 0);
        self.scratch_status.resize(n, Ok(()));
        let _ = self.bus.sync_read(
            &self.ids,
            reg::HARDWARE_ERROR_STATUS,
            1,
            &mut self.buf[..n],
            &mut self.scratch_status,
            Some(deadline),
        );
        for i in 0..n {
            let ok = matches!(
                self.scratch_status.get(i),
                Some(Ok(())) | Some(Err(ServoFault::HardwareAlert(_)))
            );
            if let (true, Some(&bits), Some(&id)) = (ok, self.buf.get(i), self.ids.get(i)) {
                self.bus.note_hardware_error(id, bits);
                if let Some(slot) = h.get_mut(i) {
                    *slot = Some(ServoHealth {
                        hardware_error: bits,
                        voltage_v: f64::NAN,
                        temperature_c: f64::NAN,
                    });
                }
            }
        }
        let power = reg::POWER_BLOCK;
        let pl = usize::from(power.len);
        let _ = self.bus.sync_read(
            &self.ids,
            power.addr,
            power.len,
            &mut self.buf[..n * pl],
            &mut self.scratch_status,
            Some(deadline),
        );
        for i in 0..n {
            let ok = matches!(
                self.scratch_status.get(i),
                Some(Ok(())) | Some(Err(ServoFault::HardwareAlert(_)))
            );
            let b = self.buf.get(i * pl..i * pl + pl);
            let volts = b.and_then(|b| x::PRESENT_INPUT_VOLTAGE.decode_in(b, power.addr));
            let temp = b.and_then(|b| x::PRESENT_TEMPERATURE.decode_in(b, power.addr));
            match (ok, volts, temp, h.get_mut(i)) {
                (true, Some(v), Some(t), Some(Some(s))) => {
                    s.voltage_v = f64::from(v) * 0.1;
                    s.temperature_c = f64::from(t);
                }
                (_, _, _, Some(slot)) => *slot = None,
                _ => {}
            }
        }
    }

    /// Converts joint goals (rad) to ticks and sync-writes Goal_Position.
    ///
    /// No safety filtering happens here: the daemon's safety filter is the only caller.
    /// Only goals that cannot be encoded are refused: wrong length, non-finite values, and
    /// values outside the Goal_Position register's range for the joint's mode.
    pub fn write_goals(&mut self, q_goal: &[f64]) -> Result<(), BusError> {
        let n = self.joints.len();
        if q_goal.len() != n {
            return Err(BusError::Length {
                expected: n,
                got: q_goal.len(),
            });
        }
        self.goal_ticks.resize(n, 0);
        for (i, (&q, j)) in q_goal.iter().zip(&self.joints).enumerate() {
            let (min, max) = goal_range(j.mode);
            // Bound the angle first: the tick conversion must not overflow.
            if !q.is_finite() {
                return Err(BusError::NonFiniteGoal {
                    joint: j.name.clone(),
                    value: q,
                });
            }
            let Some((_, c)) = self.cal.joints.get(i) else {
                return Err(BusError::Calibration(format!(
                    "no calibration for joint {}",
                    j.name
                )));
            };
            let ticks = if q.abs() < 1.0e4 {
                c.rad_to_ticks(q) as i64
            } else {
                i64::MAX
            };
            if ticks < min || ticks > max {
                return Err(BusError::GoalOutOfRange {
                    joint: j.name.clone(),
                    ticks,
                    min,
                    max,
                });
            }
            if let Some(t) = self.goal_ticks.get_mut(i) {
                *t = ticks as i32;
            }
        }
        self.bus.write_goal_positions(&self.ids, &self.goal_ticks)
    }

    /// Torque on or off for every servo. Before torque goes on, each servo's goal is set to
    /// its present position, so the arm holds where it is instead of jumping to an old goal.
    pub fn set_torque(&mut self, on: bool) -> Result<(), BusError> {
        let ids = self.ids.clone();
        self.set_torque_for(&ids, on)
    }

    /// Torque on or off for some servos (by id).
    pub fn set_torque_for(&mut self, ids: &[u8], on: bool) -> Result<(), BusError> {
        let n = ids.len();
        let mut status = vec![Ok(()); n];
        if on {
            let pos = x::PRESENT_POSITION;
            let l = usize::from(pos.size());
            let mut buf = vec![0u8; n * l];
            self.bus
                .sync_read(ids, pos.addr(), pos.size(), &mut buf, &mut status, None)?;
            let mut good_ids = Vec::with_capacity(n);
            let mut ticks = Vec::with_capacity(n);
            for (i, &id) in ids.iter().enumerate() {
                if status
                    .get(i)
                    .is_some_and(|s| s.is_ok() || matches!(s, Err(f) if f.data_valid()))
                {
                    if let Some(t) = buf.get(i * l..).and_then(|b| pos.decode(b)) {
                        good_ids.push(id);
                        ticks.push(t);
                    }
                }
            }
            self.bus.write_goal_positions(&good_ids, &ticks)?;
            let mut problems = Vec::new();
            for (i, &id) in ids.iter().enumerate() {
                if let Some(Err(f)) = status.get(i) {
                    if !f.data_valid() {
                        problems.push(self.torque_problem(
                            id,
                            *f,
                            "reading the present position before torque on",
                        ));
                    }
                }
            }
            if !problems.is_empty() {
                // Never enable torque on a servo whose goal could not be set to where it is.
                return Err(BusError::Servos { problems });
            }
        }
        self.bus.set_torque(ids, on, &mut status);
        let problems: Vec<ServoProblem> = ids
            .iter()
            .zip(&status)
            .filter_map(|(&id, s)| {
                s.err()
                    .map(|f| self.torque_problem(id, f, "writing Torque_Enable"))
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BusError::Servos { problems })
        }
    }

    fn torque_problem(&self, id: u8, f: ServoFault, what: &str) -> ServoProblem {
        let joint = self
            .joints
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.name.clone())
            .unwrap_or_else(|| "?".into());
        ServoProblem {
            id,
            joint,
            problem: format!("{what} failed: {f}"),
            fix: "check the servo's power and cable; run `intervened doctor`".into(),
        }
    }

    /// Reopens the port after an unplug and re-applies the configuration (torque as found).
    pub fn reconnect(&mut self) -> Result<(), BusError> {
        self.bus.reconnect()?;
        configure(&mut self.bus, &self.joints, None)
    }
}
