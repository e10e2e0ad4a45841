//! The servo chain: every servo's control table and physical state, the Protocol 2.0
//! instruction semantics, and first-order dynamics.

use std::sync::{Arc, Mutex};

use intervened_robot::{RobotConfig, ServoModel, SimConfig, TICKS_PER_TURN};
use tracing::{debug, trace};

use crate::packet::{self, encode_status, inst, le16, status_error as se, DecodeError, Packet};
use crate::table::{self, addr, Access, TABLE_LEN};

/// One servo on the emulated bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServoSpec {
    pub id: u8,
    pub model: ServoModel,
    pub firmware: u8,
}

/// One servo per configured joint, with the oldest firmware the daemon supports for its model.
pub fn specs_from_config(cfg: &RobotConfig) -> Vec<ServoSpec> {
    cfg.joints
        .iter()
        .map(|j| ServoSpec {
            id: j.id,
            model: j.model,
            firmware: j.model.min_firmware(),
        })
        .collect()
}

/// How the emulated servos move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dynamics {
    /// First-order time constant of the position response, in seconds (0 = instant).
    pub time_constant_s: f64,
    /// Velocity cap in rad/s (a finite, positive value).
    pub max_velocity_rad_s: f64,
}

impl From<&SimConfig> for Dynamics {
    fn from(s: &SimConfig) -> Self {
        Self {
            time_constant_s: s.servo_time_constant_s,
            max_velocity_rad_s: s.servo_max_velocity,
        }
    }
}

impl Default for Dynamics {
    fn default() -> Self {
        Self::from(&SimConfig::default())
    }
}

/// The chain shared between the pty server thread and whoever scripts the world.
pub type SharedChain = Arc<Mutex<Chain>>;

/// Present_Velocity / Goal_Velocity unit: 0.229 rpm.
const RPM_PER_UNIT: f64 = 0.229;
/// Ambient temperature in degrees C.
const AMBIENT_C: f64 = 28.0;
/// Thermal time constant: slow, so temperature only drifts under sustained load.
const THERMAL_TAU_S: f64 = 120.0;
/// Current (register units) per tick of position error: a stiff spring that saturates at the limit.
const CURRENT_PER_TICK: f64 = 4.0;
/// Current per tick/s of velocity (viscous friction).
const CURRENT_PER_TICK_S: f64 = 0.02;

/// Bus_Watchdog unit: 20 ms.
const WATCHDOG_UNIT_S: f64 = 0.02;
/// What Bus_Watchdog reads after it trips (-1 as a byte).
const WATCHDOG_TRIPPED: u8 = 0xFF;

const CLEAR_MULTI_TURN: [u8; 5] = [0x01, 0x44, 0x58, 0x4C, 0x22];

/// Which side of `o` the position `x` is on: -1, +1, or 0 when on it.
fn side_of(x: f64, o: f64) -> f64 {
    if x > o {
        1.0
    } else if x < o {
        -1.0
    } else {
        0.0
    }
}

fn ticks_per_rad() -> f64 {
    f64::from(TICKS_PER_TURN) / std::f64::consts::TAU
}

/// Velocity register units (0.229 rpm) to ticks/s.
fn units_to_ticks_s(units: f64) -> f64 {
    units * RPM_PER_UNIT / 60.0 * f64::from(TICKS_PER_TURN)
}

fn ticks_s_to_units(ticks_s: f64) -> f64 {
    ticks_s * 60.0 / f64::from(TICKS_PER_TURN) / RPM_PER_UNIT
}

#[derive(Debug, Clone)]
struct Servo {
    model: ServoModel,
    firmware: u8,
    table: [u8; TABLE_LEN],
    /// Shaft position in ticks, before Homing_Offset.
    pos: f64,
    /// Ticks per second.
    vel: f64,
    /// Present_Current in register units.
    current: f64,
    temperature: f64,
    tick_ms: f64,
    responding: bool,
    /// A shaft position (before Homing_Offset) the joint cannot move through, and the side
    /// (-1 below, +1 above, 0 not yet known) the shaft is on.
    obstacle: Option<(f64, f64)>,
    /// A Reg Write waiting for Action.
    pending: Option<(u16, Vec<u8>)>,
    /// Seconds since the servo last heard an instruction packet (for Bus_Watchdog).
    silent_s: f64,
}

/// Why a write is refused, as a status error number.
type WriteResult = Result<(), u8>;

impl Servo {
    fn new(spec: ServoSpec) -> Self {
        let mut s = Self {
            model: spec.model,
            firmware: spec.firmware,
            table: table::factory_table(spec.id, spec.model, spec.firmware),
            pos: 2048.0,
            vel: 0.0,
            current: 0.0,
            temperature: AMBIENT_C,
            tick_ms: 0.0,
            responding: true,
            obstacle: None,
            pending: None,
            silent_s: 0.0,
        };
        s.power_on_goal();
        s.refresh();
        s
    }

    fn get(&self, a: u16) -> i64 {
        match table::register_at(a) {
            Some(r) => r.get(&self.table),
            None => 0,
        }
    }

    fn set(&mut self, a: u16, v: i64) {
        if let Some(r) = table::register_at(a) {
            r.put(&mut self.table, v);
        }
    }

    fn id(&self) -> u8 {
        self.table[usize::from(addr::ID)]
    }
    fn torque_on(&self) -> bool {
        self.get(addr::TORQUE_ENABLE) == 1
    }
    fn hardware_error(&self) -> u8 {
        self.table[usize::from(addr::HARDWARE_ERROR_STATUS)]
    }
    fn mode(&self) -> i64 {
        self.get(addr::OPERATING_MODE)
    }
    fn homing_offset(&self) -> f64 {
        self.get(addr::HOMING_OFFSET) as f64
    }
    /// Bus_Watchdog reads 255 (-1) once it has tripped.
    fn watchdog_tripped(&self) -> bool {
        self.table[usize::from(addr::BUS_WATCHDOG)] == WATCHDOG_TRIPPED
    }
    fn status_return_level(&self) -> u8 {
        self.table[usize::from(addr::STATUS_RETURN_LEVEL)]
    }
    /// Present_Position as the host sees it.
    fn present(&self) -> i64 {
        (self.pos + self.homing_offset()).round() as i64
    }
    fn power_on_goal(&mut self) {
        let p = self.present();
        self.set(addr::GOAL_POSITION, p);
    }

    /// The error byte for a status packet: the error number plus the alert bit.
    fn error_byte(&self, err: u8) -> u8 {
        if self.hardware_error() != 0 {
            err | se::ALERT
        } else {
            err
        }
    }

    /// Copy the physical state into the read-only registers.
    fn refresh(&mut self) {
        let limit = self.get(addr::CURRENT_LIMIT).max(1) as f64;
        let vel_units = ticks_s_to_units(self.vel).round() as i64;
        let moving = vel_units.abs() > self.get(addr::MOVING_THRESHOLD);
        self.set(addr::REALTIME_TICK, (self.tick_ms as i64).rem_euclid(32768));
        self.set(addr::MOVING, i64::from(moving));
        self.set(addr::MOVING_STATUS, if moving { 0x02 } else { 0x01 });
        self.set(
            addr::PRESENT_PWM,
            (self.current / limit * 885.0).round() as i64,
        );
        self.set(addr::PRESENT_CURRENT, self.current.round() as i64);
        self.set(addr::PRESENT_VELOCITY, vel_units);
        let present = self.present();
        self.set(addr::PRESENT_POSITION, present);
        self.set(addr::VELOCITY_TRAJECTORY, vel_units);
        let traj = if self.torque_on() {
            self.get(addr::GOAL_POSITION)
        } else {
            present
        };
        self.set(addr::POSITION_TRAJECTORY, traj);
        // Voltage sags a little under load.
        let nominal = f64::from(table::model_facts(self.model).voltage_decivolt);
        let sag = (self.current.abs() / limit * 3.0).min(5.0);
        self.set(addr::PRESENT_INPUT_VOLTAGE, (nominal - sag).round() as i64);
        self.set(addr::PRESENT_TEMPERATURE, self.temperature.round() as i64);
    }

    fn read(&self, a: u16, len: u16) -> Result<Vec<u8>, u8> {
        let start = usize::from(a);
        let end = start + usize::from(len);
        if len == 0 {
            return Err(se::DATA_LENGTH);
        }
        self.table
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or(se::ACCESS)
    }

    /// Check a write the way the firmware does; nothing changes.
    fn validate_write(&self, a: u16, data: &[u8]) -> WriteResult {
        if data.is_empty() {
            return Err(se::DATA_LENGTH);
        }
        let start = usize::from(a);
        let end = start + data.len();
        if end > TABLE_LEN {
            return Err(se::ACCESS);
        }
        let mut off = start;
        while off < end {
            // `off` < TABLE_LEN <= u16::MAX.
            let Some(r) = table::register_at(off as u16) else {
                return Err(se::ACCESS);
            };
            if r.access == Access::ReadOnly {
                return Err(se::ACCESS);
            }
            let (ra, rs) = (usize::from(r.addr), usize::from(r.size));
            if ra < start || ra + rs > end {
                return Err(se::DATA_LENGTH);
            }
            if r.addr < table::EEPROM_END && self.torque_on() {
                return Err(se::ACCESS);
            }
            let v = table::decode_le(&data[ra - start..ra - start + rs], r.signed);
            if v < r.min || v > r.max {
                return Err(se::DATA_RANGE);
            }
            if r.addr == addr::GOAL_POSITION && self.mode() == 3 {
                let (lo, hi) = (
                    self.get(addr::MIN_POSITION_LIMIT),
                    self.get(addr::MAX_POSITION_LIMIT),
                );
                if v < lo || v > hi {
                    return Err(se::DATA_RANGE);
                }
            }
            if r.addr == addr::OPERATING_MODE && ![0, 1, 3, 4, 5, 16].contains(&v) {
                return Err(se::DATA_RANGE);
            }
            if self.watchdog_tripped()
                && [
                    addr::GOAL_PWM,
                    addr::GOAL_CURRENT,
                    addr::GOAL_VELOCITY,
                    addr::GOAL_POSITION,
                ]
                .contains(&r.addr)
            {
                // Goals stay locked until the host writes 0 to Bus_Watchdog.
                return Err(se::DATA_RANGE);
            }
            if r.addr == addr::TORQUE_ENABLE && v == 1 && self.hardware_error() != 0 {
                // A latched shutdown keeps torque off until reboot.
                return Err(se::RESULT_FAIL);
            }
            off = ra + rs;
        }
        Ok(())
    }

    fn write(&mut self, a: u16, data: &[u8]) -> WriteResult {
        self.validate_write(a, data)?;
        let was_on = self.torque_on();
        let start = usize::from(a);
        self.table[start..start + data.len()].copy_from_slice(data);
        if (start..start + data.len()).contains(&usize::from(addr::BUS_WATCHDOG)) {
            self.silent_s = 0.0;
        }
        if !was_on && self.torque_on() {
            // The X-series trajectory restarts from where the shaft is: no jump on torque-on.
            self.power_on_goal();
        }
        self.refresh();
        Ok(())
    }

    /// Reboot: RAM back to power-on values, hardware error cleared; the shaft stays put.
    fn reboot(&mut self) {
        table::reset_ram(&mut self.table, self.model);
        self.pending = None;
        self.vel = 0.0;
        self.current = 0.0;
        self.power_on_goal();
        self.refresh();
    }

    fn factory_reset(&mut self, option: u8) {
        let (id, baud) = (self.id(), self.table[usize::from(addr::BAUD_RATE)]);
        // Factory ID is 1.
        self.table = table::factory_table(1, self.model, self.firmware);
        match option {
            0x01 => self.table[usize::from(addr::ID)] = id,
            0x02 => {
                self.table[usize::from(addr::ID)] = id;
                self.table[usize::from(addr::BAUD_RATE)] = baud;
            }
            _ => {}
        }
        self.pending = None;
        self.reboot();
    }

    fn advance(&mut self, dt: f64, dyn_: &Dynamics) {
        self.tick_ms += dt * 1000.0;
        let limit = self.get(addr::CURRENT_LIMIT) as f64;
        let before = self.pos;
        let mut drive_current = 0.0;
        let watchdog = self.table[usize::from(addr::BUS_WATCHDOG)];
        if self.torque_on() && (1..=127).contains(&watchdog) {
            self.silent_s += dt;
            if self.silent_s > f64::from(watchdog) * WATCHDOG_UNIT_S {
                debug!(id = self.id(), "bus watchdog tripped");
                self.table[usize::from(addr::BUS_WATCHDOG)] = WATCHDOG_TRIPPED;
                self.power_on_goal();
            }
        }
        if self.torque_on() && !self.watchdog_tripped() {
            let mut vmax = dyn_.max_velocity_rad_s.abs() * ticks_per_rad();
            let profile = self.get(addr::PROFILE_VELOCITY);
            if profile > 0 {
                vmax = vmax.min(units_to_ticks_s(profile as f64));
            }
            match self.mode() {
                3..=5 => {
                    let mut goal = self.get(addr::GOAL_POSITION);
                    if self.mode() == 3 {
                        let lo = self.get(addr::MIN_POSITION_LIMIT);
                        let hi = self.get(addr::MAX_POSITION_LIMIT).max(lo);
                        goal = goal.clamp(lo, hi);
                    }
                    let target = goal as f64 - self.homing_offset();
                    let err = target - self.pos;
                    let frac = if dyn_.time_constant_s > 0.0 {
                        1.0 - (-dt / dyn_.time_constant_s).exp()
                    } else {
                        1.0
                    };
                    let step = (err * frac).clamp(-vmax * dt, vmax * dt);
                    self.pos = self.stop_at_obstacle(before, before + step);
                    let cap = if self.mode() == 5 {
                        (self.get(addr::GOAL_CURRENT).abs() as f64).min(limit)
                    } else {
                        limit
                    };
                    let vel = (self.pos - before) / dt;
                    drive_current = (CURRENT_PER_TICK * (target - self.pos)
                        + CURRENT_PER_TICK_S * vel)
                        .clamp(-cap, cap);
                }
                1 => {
                    let v =
                        units_to_ticks_s(self.get(addr::GOAL_VELOCITY) as f64).clamp(-vmax, vmax);
                    self.pos = self.stop_at_obstacle(before, before + v * dt);
                    drive_current = (CURRENT_PER_TICK_S * v).clamp(-limit, limit);
                }
                // Current and PWM control: no load model, the shaft stays.
                _ => {}
            }
        }
        self.vel = (self.pos - before) / dt;
        self.current = drive_current;
        let heat = (self.current.abs() / limit.max(1.0)).min(1.5);
        let target_temp = AMBIENT_C + 25.0 * heat * heat;
        self.temperature += (target_temp - self.temperature) * (1.0 - (-dt / THERMAL_TAU_S).exp());
        self.refresh();
    }

    /// Clip a move from `from` to `to` at the obstacle, if the move would pass it.
    fn stop_at_obstacle(&mut self, from: f64, to: f64) -> f64 {
        let Some((o, side)) = self.obstacle else {
            return to;
        };
        let side = if side == 0.0 { side_of(from, o) } else { side };
        let side = if side == 0.0 { side_of(to, o) } else { side };
        self.obstacle = Some((o, side));
        if (side < 0.0 && to > o) || (side > 0.0 && to < o) {
            o
        } else {
            to
        }
    }
}

/// All servos on one bus.
#[derive(Debug, Clone)]
pub struct Chain {
    servos: Vec<Servo>,
    dynamics: Dynamics,
}

/// Which status return level a reply to an instruction needs (0: ping only, 1: + reads, 2: all).
fn level_needed(instruction: u8) -> u8 {
    match instruction {
        inst::PING => 0,
        inst::READ | inst::SYNC_READ | inst::FAST_SYNC_READ | inst::BULK_READ => 1,
        _ => 2,
    }
}

impl Chain {
    pub fn new(specs: Vec<ServoSpec>, dynamics: Dynamics) -> Self {
        Self {
            servos: specs.into_iter().map(Servo::new).collect(),
            dynamics,
        }
    }

    /// Convenience: a chain behind a mutex, ready for [`crate::PtyServer::start`].
    pub fn shared(self) -> SharedChain {
        Arc::new(Mutex::new(self))
    }

    pub fn dynamics(&self) -> Dynamics {
        self.dynamics
    }
    pub fn set_dynamics(&mut self, d: Dynamics) {
        self.dynamics = d;
    }

    /// The IDs currently in the control tables (an ID write changes them), in chain order.
    pub fn ids(&self) -> Vec<u8> {
        self.servos.iter().map(Servo::id).collect()
    }

    fn find(&self, id: u8) -> Option<&Servo> {
        self.servos.iter().find(|s| s.id() == id)
    }
    fn find_mut(&mut self, id: u8) -> Option<&mut Servo> {
        self.servos.iter_mut().find(|s| s.id() == id)
    }

    /// Indices of the servos that hear a packet for `id` (all responding ones for broadcast).
    fn targets(&self, id: u8) -> Vec<usize> {
        self.servos
            .iter()
            .enumerate()
            .filter(|(_, s)| s.responding && (id == packet::BROADCAST_ID || s.id() == id))
            .map(|(i, _)| i)
            .collect()
    }

    /// A status packet from servo `i`, unless its status return level suppresses it.
    fn reply(&self, i: usize, instruction: u8, err: u8, data: &[u8]) -> Option<Vec<u8>> {
        let s = self.servos.get(i)?;
        self.reply_as(i, (s.id(), s.status_return_level()), instruction, err, data)
    }

    /// A status from servo `i` as it was when the packet arrived (`before` = its ID and status
    /// return level then): a write that changes either is still answered the old way.
    fn reply_as(
        &self,
        i: usize,
        before: (u8, u8),
        instruction: u8,
        err: u8,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let s = self.servos.get(i)?;
        if before.1 < level_needed(instruction) {
            return None;
        }
        Some(encode_status(before.0, s.error_byte(err), data))
    }

    fn identity(&self, i: usize) -> (u8, u8) {
        self.servos
            .get(i)
            .map(|s| (s.id(), s.status_return_level()))
            .unwrap_or((0, 0))
    }

    /// One instruction packet as it came off the wire (stuffed, with CRC) in; the status
    /// packets to send back, in wire order. Empty when no reply is due (broadcast writes,
    /// status return level, an unknown or silent ID, a malformed packet).
    ///
    /// A packet with a bad CRC addressed to one servo gets a status with error 3 (CRC), as
    /// the e-manual describes; a broadcast one gets nothing.
    pub fn handle(&mut self, request: &[u8]) -> Vec<Vec<u8>> {
        match packet::decode(request) {
            Ok(p) => self.execute(&p),
            Err(DecodeError::BadCrc {
                id, instruction, ..
            }) => {
                debug!(id, "instruction packet with bad CRC");
                if id == packet::BROADCAST_ID {
                    return Vec::new();
                }
                self.targets(id)
                    .into_iter()
                    .filter_map(|i| self.reply(i, instruction, se::CRC, &[]))
                    .collect()
            }
            Err(e) => {
                debug!(error = %e, "dropping malformed packet");
                Vec::new()
            }
        }
    }

    /// Execute a decoded instruction packet.
    pub fn execute(&mut self, p: &Packet) -> Vec<Vec<u8>> {
        let bc = p.id == packet::BROADCAST_ID;
        let ins = p.instruction;
        // Every servo on the line hears every packet: that is what feeds Bus_Watchdog.
        for s in self.servos.iter_mut().filter(|s| s.responding) {
            s.silent_s = 0.0;
        }
        trace!(
            id = p.id,
            instruction = ins,
            params = p.params.len(),
            "instruction"
        );
        let mut out = Vec::new();
        match ins {
            inst::PING => {
                let mut ts = self.targets(p.id);
                ts.sort_by_key(|&i| self.servos[i].id());
                for i in ts {
                    let s = &self.servos[i];
                    let model = s.model.number().to_le_bytes();
                    let data = [model[0], model[1], s.firmware];
                    out.extend(self.reply(i, ins, 0, &data));
                }
            }
            inst::READ if !bc => {
                for i in self.targets(p.id) {
                    let r = match packet::parse_addr_len(&p.params) {
                        Some((a, n)) if p.params.len() == 4 => self.servos[i].read(a, n),
                        _ => Err(se::DATA_LENGTH),
                    };
                    out.extend(match r {
                        Ok(d) => self.reply(i, ins, 0, &d),
                        Err(e) => self.reply(i, ins, e, &[]),
                    });
                }
            }
            inst::WRITE | inst::REG_WRITE => {
                let Some(a) = le16(&p.params, 0) else {
                    if !bc {
                        for i in self.targets(p.id) {
                            out.extend(self.reply(i, ins, se::DATA_LENGTH, &[]));
                        }
                    }
                    return out;
                };
                let data = p.params.get(2..).unwrap_or(&[]);
                for i in self.targets(p.id) {
                    let before = self.identity(i);
                    let s = &mut self.servos[i];
                    let r = if ins == inst::WRITE {
                        s.write(a, data)
                    } else {
                        s.validate_write(a, data).map(|()| {
                            s.pending = Some((a, data.to_vec()));
                            s.set(addr::REGISTERED_INSTRUCTION, 1);
                        })
                    };
                    if let Err(e) = r {
                        debug!(id = s.id(), addr = a, error = e, "write refused");
                    }
                    if !bc {
                        out.extend(self.reply_as(i, before, ins, r.err().unwrap_or(0), &[]));
                    }
                }
            }
            inst::ACTION => {
                for i in self.targets(p.id) {
                    let before = self.identity(i);
                    let s = &mut self.servos[i];
                    let r = match s.pending.take() {
                        Some((a, d)) => {
                            s.set(addr::REGISTERED_INSTRUCTION, 0);
                            s.write(a, &d)
                        }
                        None => Err(se::INSTRUCTION),
                    };
                    if !bc {
                        out.extend(self.reply_as(i, before, ins, r.err().unwrap_or(0), &[]));
                    }
                }
            }
            inst::REBOOT => {
                for i in self.targets(p.id) {
                    // The status goes out before the servo restarts.
                    if !bc {
                        out.extend(self.reply(i, ins, 0, &[]));
                    }
                    self.servos[i].reboot();
                }
            }
            inst::FACTORY_RESET => {
                let option = p.params.first().copied().unwrap_or(0xFF);
                // Servos refuse a broadcast reset-everything (it would give them all ID 1).
                if bc && option == 0xFF {
                    return out;
                }
                for i in self.targets(p.id) {
                    let r = if self.servos[i].torque_on() {
                        Err(se::ACCESS)
                    } else if ![0x01, 0x02, 0xFF].contains(&option) {
                        Err(se::DATA_RANGE)
                    } else {
                        Ok(())
                    };
                    if !bc {
                        out.extend(self.reply(i, ins, r.err().unwrap_or(0), &[]));
                    }
                    if r.is_ok() {
                        self.servos[i].factory_reset(option);
                    }
                }
            }
            inst::CLEAR => {
                for i in self.targets(p.id) {
                    let s = &mut self.servos[i];
                    let r = if p.params != CLEAR_MULTI_TURN {
                        Err(se::DATA_RANGE)
                    } else if s.torque_on() {
                        Err(se::RESULT_FAIL)
                    } else {
                        // Keep the position within one turn, as after a power cycle.
                        let off = s.homing_offset();
                        let turns = ((s.pos + off) / f64::from(TICKS_PER_TURN)).floor();
                        s.pos -= turns * f64::from(TICKS_PER_TURN);
                        s.refresh();
                        Ok(())
                    };
                    if !bc {
                        out.extend(self.reply(i, ins, r.err().unwrap_or(0), &[]));
                    }
                }
            }
            inst::SYNC_READ | inst::FAST_SYNC_READ if bc => {
                let Some((a, n)) = packet::parse_addr_len(&p.params) else {
                    return out;
                };
                let ids = p.params.get(4..).unwrap_or(&[]);
                if ins == inst::SYNC_READ {
                    for &id in ids {
                        for i in self.targets(id) {
                            out.extend(match self.servos[i].read(a, n) {
                                Ok(d) => self.reply(i, ins, 0, &d),
                                Err(e) => self.reply(i, ins, e, &[]),
                            });
                        }
                    }
                } else {
                    out.extend(self.fast_sync_read(ids, a, n));
                }
            }
            inst::SYNC_WRITE if bc => {
                let Some((a, n)) = packet::parse_addr_len(&p.params) else {
                    return out;
                };
                let stride = usize::from(n) + 1;
                let body = p.params.get(4..).unwrap_or(&[]);
                if n == 0 || !body.len().is_multiple_of(stride) {
                    debug!(len = n, body = body.len(), "malformed sync write ignored");
                    return out;
                }
                for block in body.chunks(stride) {
                    self.write_id(block[0], a, &block[1..]);
                }
            }
            inst::BULK_READ if bc => {
                if !p.params.len().is_multiple_of(5) {
                    return out;
                }
                for block in p.params.chunks(5) {
                    let Some((a, n)) = block.get(1..).and_then(packet::parse_addr_len) else {
                        continue;
                    };
                    for i in self.targets(block[0]) {
                        out.extend(match self.servos[i].read(a, n) {
                            Ok(d) => self.reply(i, ins, 0, &d),
                            Err(e) => self.reply(i, ins, e, &[]),
                        });
                    }
                }
            }
            inst::BULK_WRITE if bc => {
                let mut rest = p.params.as_slice();
                while rest.len() >= 5 {
                    let Some((a, n)) = rest.get(1..).and_then(packet::parse_addr_len) else {
                        break;
                    };
                    let end = 5 + usize::from(n);
                    let Some(data) = rest.get(5..end) else {
                        debug!("truncated bulk write");
                        break;
                    };
                    self.write_id(rest[0], a, data);
                    rest = &rest[end..];
                }
            }
            // Another device's status packet: servos ignore it.
            inst::STATUS => {}
            _ => {
                if !bc {
                    for i in self.targets(p.id) {
                        out.extend(self.reply(i, ins, se::INSTRUCTION, &[]));
                    }
                }
            }
        }
        out
    }

    fn write_id(&mut self, id: u8, a: u16, data: &[u8]) {
        for i in self.targets(id) {
            if let Err(e) = self.servos[i].write(a, data) {
                debug!(id, addr = a, error = e, "write refused");
            }
        }
    }

    /// Fast Sync Read: one status packet (ID 0xFE) holding `ERR ID DATA CRC` per servo, where
    /// each intermediate CRC covers the packet so far and the last one is the packet CRC.
    /// Not byte-stuffed, like the official SDK expects.
    fn fast_sync_read(&self, ids: &[u8], a: u16, n: u16) -> Option<Vec<u8>> {
        let mut parts = Vec::new();
        for &id in ids {
            for i in self.targets(id) {
                let s = &self.servos[i];
                if s.status_return_level() < 1 {
                    continue;
                }
                let (err, data) = match s.read(a, n) {
                    Ok(d) => (0, d),
                    Err(e) => (e, vec![0; usize::from(n)]),
                };
                parts.push((s.error_byte(err), s.id(), data));
            }
        }
        if parts.is_empty() {
            return None;
        }
        let body: usize =
            1 + parts.iter().map(|p| 2 + p.2.len()).sum::<usize>() + 2 * (parts.len() - 1);
        let len = u16::try_from(body + 2).ok()?;
        let mut out = Vec::with_capacity(packet::PREFIX_LEN + body + 2);
        out.extend_from_slice(&packet::HEADER);
        out.push(packet::BROADCAST_ID);
        out.extend_from_slice(&len.to_le_bytes());
        out.push(inst::STATUS);
        let last = parts.len() - 1;
        for (k, (err, id, data)) in parts.into_iter().enumerate() {
            out.push(err);
            out.push(id);
            out.extend_from_slice(&data);
            if k != last {
                let crc = packet::crc16(0, &out);
                out.extend_from_slice(&crc.to_le_bytes());
            }
        }
        let crc = packet::crc16(0, &out);
        out.extend_from_slice(&crc.to_le_bytes());
        Some(out)
    }

    /// Integrate servo dynamics by `dt_s` seconds (lockstep calls this once per tick).
    pub fn advance(&mut self, dt_s: f64) {
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return;
        }
        let d = self.dynamics;
        for s in &mut self.servos {
            s.advance(dt_s, &d);
        }
    }

    pub fn present_position(&self, id: u8) -> Option<i32> {
        self.find(id).map(|s| s.get(addr::PRESENT_POSITION) as i32)
    }
    pub fn goal_position(&self, id: u8) -> Option<i32> {
        self.find(id).map(|s| s.get(addr::GOAL_POSITION) as i32)
    }
    /// Present_Velocity in register units (0.229 rpm).
    pub fn present_velocity(&self, id: u8) -> Option<i32> {
        self.find(id).map(|s| s.get(addr::PRESENT_VELOCITY) as i32)
    }
    /// Present_Current in register units.
    pub fn present_current(&self, id: u8) -> Option<i16> {
        self.find(id).map(|s| s.get(addr::PRESENT_CURRENT) as i16)
    }
    pub fn torque_enabled(&self, id: u8) -> Option<bool> {
        self.find(id).map(Servo::torque_on)
    }

    /// Move a joint by hand (scripted calibration, a person pushing the arm): sets the
    /// position the host reads, in its frame (Homing_Offset applied). With torque on, the
    /// servo pulls back toward its goal on the next `advance`.
    pub fn set_present_position(&mut self, id: u8, ticks: i32) {
        if let Some(s) = self.find_mut(id) {
            s.pos = f64::from(ticks) - s.homing_offset();
            s.vel = 0.0;
            // A hand may carry the joint past the obstacle; it then blocks from the new side.
            if let Some((o, _)) = s.obstacle {
                s.obstacle = Some((o, side_of(s.pos, o)));
            }
            s.refresh();
        }
    }

    /// A servo that stops answering (and hearing) the bus, or comes back.
    pub fn set_responding(&mut self, id: u8, on: bool) {
        if let Some(s) = self.find_mut(id) {
            s.responding = on;
        }
    }

    /// Latch Hardware_Error_Status (bits as in the e-manual: 0x01 voltage, 0x04 overheating,
    /// 0x08 encoder, 0x10 electrical shock, 0x20 overload). Non-zero bits turn torque off and
    /// set the alert bit in every status until reboot; 0 clears them.
    pub fn set_hardware_error(&mut self, id: u8, bits: u8) {
        if let Some(s) = self.find_mut(id) {
            s.table[usize::from(addr::HARDWARE_ERROR_STATUS)] = bits;
            if bits != 0 {
                s.set(addr::TORQUE_ENABLE, 0);
                s.vel = 0.0;
                s.current = 0.0;
            }
            s.refresh();
        }
    }

    /// A position (host frame, ticks) the joint cannot move through, e.g. a grasped block
    /// stopping the gripper; `None` removes it. The servo stalls there with its current at the limit.
    pub fn set_obstacle(&mut self, id: u8, ticks: Option<i32>) {
        if let Some(s) = self.find_mut(id) {
            s.obstacle = ticks.map(|t| {
                let o = f64::from(t) - s.homing_offset();
                (o, side_of(s.pos, o))
            });
        }
    }

    /// Peek at `len` bytes of servo `id`'s control table from `addr` (for tests).
    pub fn register(&self, id: u8, addr: u16, len: u16) -> Option<Vec<u8>> {
        let s = self.find(id)?;
        let start = usize::from(addr);
        s.table
            .get(start..start + usize::from(len))
            .map(<[u8]>::to_vec)
    }
}
