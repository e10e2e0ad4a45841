//! `doctor`: every check between the config and the servos, as rows with a status and a fix.
//! The CLI prints the report and exits non-zero when [`DoctorReport::has_failures`].

use std::fmt;
use std::path::Path;

use intervened_robot::config::VALID_BAUDS;
use intervened_robot::{
    Calibration, JointCalibration, JointConfig, OperatingMode, RobotConfig, ServoModel,
};

use crate::adapter::{adapter_for, check_latency_timer, list_adapters, LatencyCheck, Sysfs};
use crate::bus::Bus;
use crate::registers::{self as reg, hardware_error_names};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
        })
    }
}

/// One check's outcome. `target` is "-" for bus-wide checks, else "id N joint".
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorRow {
    pub check: String,
    pub target: String,
    pub status: CheckStatus,
    pub detail: String,
    /// Empty when there is nothing to fix.
    pub fix: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DoctorReport {
    pub rows: Vec<DoctorRow>,
}

impl DoctorReport {
    pub fn has_failures(&self) -> bool {
        self.rows.iter().any(|r| r.status == CheckStatus::Fail)
    }

    pub fn has_warnings(&self) -> bool {
        self.rows.iter().any(|r| r.status == CheckStatus::Warn)
    }

    /// Rows that are not ok.
    pub fn problems(&self) -> impl Iterator<Item = &DoctorRow> {
        self.rows.iter().filter(|r| r.status != CheckStatus::Ok)
    }

    fn push(
        &mut self,
        check: &str,
        target: &str,
        status: CheckStatus,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.rows.push(DoctorRow {
            check: check.into(),
            target: target.into(),
            status,
            detail: detail.into(),
            fix: fix.into(),
        });
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = |h: &str, g: &dyn Fn(&DoctorRow) -> usize| {
            self.rows.iter().map(g).max().unwrap_or(0).max(h.len())
        };
        let wc = w("CHECK", &|r| r.check.chars().count());
        let wt = w("SERVO", &|r| r.target.chars().count());
        let wd = w("DETAIL", &|r| r.detail.chars().count());
        writeln!(
            f,
            "{:<6} {:<wc$} {:<wt$} {:<wd$} FIX",
            "STATUS", "CHECK", "SERVO", "DETAIL"
        )?;
        for r in &self.rows {
            let line = format!(
                "{:<6} {:<wc$} {:<wt$} {:<wd$} {}",
                r.status, r.check, r.target, r.detail, r.fix
            );
            writeln!(f, "{}", line.trim_end())?;
        }
        let fails = self
            .rows
            .iter()
            .filter(|r| r.status == CheckStatus::Fail)
            .count();
        let warns = self
            .rows
            .iter()
            .filter(|r| r.status == CheckStatus::Warn)
            .count();
        write!(
            f,
            "{} checks: {fails} failed, {warns} warnings",
            self.rows.len()
        )
    }
}

/// Options for [`doctor_with`].
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    pub sysfs: Sysfs,
    /// Set a high FTDI latency timer to 1 ms where permitted.
    pub fix_latency: bool,
    /// Look for silent servos at the other Dynamixel baud rates.
    pub probe_bauds: bool,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            sysfs: Sysfs::system(),
            fix_latency: true,
            probe_bauds: true,
        }
    }
}

/// Runs every check with the default options (system sysfs, fix the latency timer, probe bauds).
pub fn doctor(cfg: &RobotConfig, cal: Option<&Calibration>, port: &Path) -> DoctorReport {
    doctor_with(cfg, cal, port, &DoctorOptions::default())
}

fn target(j: &JointConfig) -> String {
    format!("id {} {}", j.id, j.name)
}

fn baud_register(baud: u32) -> Option<u8> {
    match baud {
        9_600 => Some(0),
        57_600 => Some(1),
        115_200 => Some(2),
        1_000_000 => Some(3),
        2_000_000 => Some(4),
        3_000_000 => Some(5),
        4_000_000 => Some(6),
        4_500_000 => Some(7),
        _ => None,
    }
}

/// What the caller found when it loaded the calibration the config names.
#[derive(Debug, Clone, Copy)]
pub enum CalibrationState<'a> {
    /// Loaded and checked against the config.
    Loaded(&'a Calibration),
    /// The config names none: a warning; limits are checked against the identity calibration.
    NotGiven,
    /// The config names one that cannot be used (missing, unreadable, or not matching the
    /// config): a failure, because `run` refuses it too. Limits are then checked against the
    /// identity calibration.
    Broken {
        /// What is wrong, naming the file.
        problem: &'a str,
        /// How to fix it.
        fix: &'a str,
    },
}

/// [`doctor_checks`] with a calibration that was either loaded or not given.
pub fn doctor_with(
    cfg: &RobotConfig,
    cal: Option<&Calibration>,
    port: &Path,
    opts: &DoctorOptions,
) -> DoctorReport {
    let state = match cal {
        Some(c) => CalibrationState::Loaded(c),
        None => CalibrationState::NotGiven,
    };
    doctor_checks(cfg, state, port, opts)
}

/// Every check between the config, its calibration and the servos on `port`.
pub fn doctor_checks(
    cfg: &RobotConfig,
    calibration: CalibrationState<'_>,
    port: &Path,
    opts: &DoctorOptions,
) -> DoctorReport {
    use CheckStatus::*;
    let mut rep = DoctorReport::default();
    // A broken calibration is reported first, whatever the bus checks find.
    if let CalibrationState::Broken { problem, fix } = calibration {
        rep.push(
            "calibration",
            "-",
            Fail,
            format!("{problem} (`intervened run` refuses it; limits below are checked against the identity calibration)"),
            fix,
        );
    }
    let cal = match calibration {
        CalibrationState::Loaded(c) => Some(c),
        _ => None,
    };
    let adapters = list_adapters().unwrap_or_default();
    if !port.exists() {
        let found = if adapters.is_empty() {
            "no USB serial adapter is connected".to_string()
        } else {
            format!(
                "adapters present: {}",
                adapters
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        rep.push(
            "adapter",
            "-",
            Fail,
            format!("{} does not exist; {found}", port.display()),
            "plug in the U2D2, install crates/dxl/udev/99-intervened.rules for /dev/intervened-bus, or set bus.port",
        );
        return rep;
    }
    match adapter_for(port, &adapters) {
        Some(a) if a.is_known_dynamixel_adapter() => {
            rep.push("adapter", "-", Ok, a.to_string(), "")
        }
        Some(a) => rep.push(
            "adapter",
            "-",
            Ok,
            format!("{a} (not a U2D2/FT232; fine if it is a half-duplex TTL/RS-485 adapter)"),
            "",
        ),
        None => rep.push(
            "adapter",
            "-",
            Ok,
            format!(
                "{} is not a USB serial adapter (a pty or a built-in UART)",
                port.display()
            ),
            "",
        ),
    }
    match check_latency_timer(&opts.sysfs, port, opts.fix_latency) {
        Result::Ok(LatencyCheck::NotApplicable { tty }) => rep.push(
            "latency timer",
            "-",
            Ok,
            format!("n/a: {tty} has no FTDI latency timer"),
            "",
        ),
        Result::Ok(LatencyCheck::Ok { tty, ms }) => {
            rep.push("latency timer", "-", Ok, format!("{tty}: {ms} ms"), "")
        }
        Result::Ok(LatencyCheck::Fixed { tty, was }) => rep.push(
            "latency timer",
            "-",
            Warn,
            format!("{tty}: was {was} ms, set to 1 ms until the next plug-in"),
            LatencyCheck::fix(&tty, &opts.sysfs),
        ),
        Result::Ok(LatencyCheck::TooHigh { tty, ms, error }) => rep.push(
            "latency timer",
            "-",
            Warn,
            format!(
                "{tty}: {ms} ms caps the bus near {} Hz{}",
                1000 / (2 * ms.max(1)),
                error
                    .map(|e| format!(" (could not set it: {e})"))
                    .unwrap_or_default()
            ),
            LatencyCheck::fix(&tty, &opts.sysfs),
        ),
        Err(e) => rep.push("latency timer", "-", Warn, format!("cannot check: {e}"), ""),
    }
    let mut bus = match Bus::open(port, cfg.bus.baud) {
        Result::Ok(b) => b,
        Err(crate::BusError::Open { source, fix, .. }) => {
            rep.push(
                "open port",
                "-",
                Fail,
                format!("{}: {source}", port.display()),
                fix,
            );
            return rep;
        }
        Err(e) => {
            rep.push("open port", "-", Fail, e.to_string(), "");
            return rep;
        }
    };
    bus.set_retries(cfg.bus.retries.max(1));
    rep.push(
        "open port",
        "-",
        Ok,
        format!("{} at {} baud", port.display(), cfg.bus.baud),
        "",
    );
    if matches!(calibration, CalibrationState::NotGiven) {
        rep.push(
            "calibration",
            "-",
            Warn,
            "no calibration given: limits are checked against the identity calibration",
            "run `intervened calibrate` and set `calibration` in the config",
        );
    }
    let mut missing = Vec::new();
    for (i, j) in cfg.joints.iter().enumerate() {
        let t = target(j);
        let p = match bus.ping(j.id) {
            Result::Ok(p) => p,
            Err(f) => {
                rep.push(
                    "ping",
                    &t,
                    Fail,
                    format!("servo id {} does not answer at {} baud: {f}", j.id, cfg.bus.baud),
                    "check power, cable and daisy chain; check the id and baud (Dynamixel Wizard) or look below for the rate it answers at",
                );
                missing.push(j);
                continue;
            }
        };
        rep.push("ping", &t, Ok, "answers", "");
        rep.push("baud", &t, Ok, format!("{} baud", cfg.bus.baud), "");
        if p.model == j.model.number() {
            rep.push("model", &t, Ok, format!("{} ({})", j.model, p.model), "");
        } else {
            let found = ServoModel::from_number(p.model)
                .map(|m| m.name().to_string())
                .unwrap_or_else(|| "unknown model".into());
            rep.push(
                "model",
                &t,
                Fail,
                format!(
                    "servo id {} is {found} ({}), config says {} ({})",
                    j.id,
                    p.model,
                    j.model,
                    j.model.number()
                ),
                format!(
                    "fix `model` of joint {:?} in the config, or give the right servo id {}",
                    j.name, j.id
                ),
            );
        }
        if p.firmware >= j.model.min_firmware() {
            rep.push("firmware", &t, Ok, format!("v{}", p.firmware), "");
        } else {
            rep.push(
                "firmware",
                &t,
                Warn,
                format!(
                    "v{} is older than v{}, the oldest checked",
                    p.firmware,
                    j.model.min_firmware()
                ),
                "update the firmware with Dynamixel Wizard 2.0 (Firmware Update)",
            );
        }
        servo_registers(
            &mut rep,
            &mut bus,
            j,
            cal.and_then(|c| c.joints.get(i)).map(|(_, c)| *c),
        );
    }
    if !missing.is_empty() {
        probe_missing(&mut rep, &mut bus, cfg, &missing, opts.probe_bauds);
    }
    rep
}

/// Register checks of one answering servo.
fn servo_registers(
    rep: &mut DoctorReport,
    bus: &mut Bus,
    j: &JointConfig,
    cal: Option<JointCalibration>,
) {
    use CheckStatus::*;
    let t = target(j);
    let unreadable = |rep: &mut DoctorReport, check: &str, f: crate::ServoFault| {
        rep.push(
            check,
            &t,
            Fail,
            format!("cannot read: {f}"),
            "check the cable; rerun doctor",
        )
    };
    match bus.read_u8(j.id, reg::RETURN_DELAY_TIME) {
        Result::Ok(0) => rep.push("return delay", &t, Ok, "0 us", ""),
        Result::Ok(v) => rep.push(
            "return delay",
            &t,
            Warn,
            format!("{} us before every reply", v as u32 * 2),
            "the daemon sets Return_Delay_Time to 0 when it starts",
        ),
        Err(f) => unreadable(rep, "return delay", f),
    }
    match bus.read_u8(j.id, reg::OPERATING_MODE) {
        Result::Ok(v) if v == j.mode.register_value() => {
            rep.push("operating mode", &t, Ok, format!("{:?} ({v})", j.mode), "")
        }
        Result::Ok(v) => rep.push(
            "operating mode",
            &t,
            Warn,
            format!(
                "{} ({v}), config says {:?} ({})",
                OperatingMode::from_register(v)
                    .map(|m| format!("{m:?}"))
                    .unwrap_or_else(|| "other".into()),
                j.mode,
                j.mode.register_value()
            ),
            "the daemon sets Operating_Mode when it starts",
        ),
        Err(f) => unreadable(rep, "operating mode", f),
    }
    match bus.read_i32(j.id, reg::HOMING_OFFSET) {
        Result::Ok(0) => rep.push("homing offset", &t, Ok, "0 (calibration in software)", ""),
        Result::Ok(v) => rep.push(
            "homing offset",
            &t,
            Warn,
            format!("register is {v}; intervened applies calibration in software and keeps it 0"),
            "the daemon sets Homing_Offset to 0 when it starts; recalibrate if this arm was calibrated elsewhere",
        ),
        Err(f) => unreadable(rep, "homing offset", f),
    }
    match bus.read_u8(j.id, reg::HARDWARE_ERROR_STATUS) {
        Result::Ok(0) => rep.push("hardware error", &t, Ok, "none", ""),
        Result::Ok(b) => rep.push(
            "hardware error",
            &t,
            Fail,
            format!("latched: {} ({b:#04x})", hardware_error_names(b)),
            "remove the cause (load, supply voltage, heat), then power-cycle or reboot the servo",
        ),
        Err(f) => unreadable(rep, "hardware error", f),
    }
    // Limits: the config's limits must lie inside the calibrated range and, in the modes
    // where the servo clamps goals, inside its position limit registers.
    let c = cal.unwrap_or(JointCalibration::identity(j.id));
    let [cal_lo, cal_hi] = c.range_rad();
    let [lo, hi] = j.limits;
    let (eff_lo, eff_hi) = (lo.max(cal_lo), hi.min(cal_hi));
    if eff_lo >= eff_hi {
        rep.push(
            "limits",
            &t,
            Fail,
            format!("config limits [{lo:.3}, {hi:.3}] rad miss the calibrated range [{cal_lo:.3}, {cal_hi:.3}]"),
            "recalibrate this joint, or correct its limits in the config",
        );
        return;
    }
    let mut notes = Vec::new();
    let mut status = Ok;
    if lo < cal_lo || hi > cal_hi {
        status = Warn;
        notes.push(format!(
            "config [{lo:.3}, {hi:.3}] exceeds the calibrated range [{cal_lo:.3}, {cal_hi:.3}]; effective [{eff_lo:.3}, {eff_hi:.3}]"
        ));
    }
    if j.mode != OperatingMode::ExtendedPosition {
        let a = c.rad_to_ticks(eff_lo);
        let b = c.rad_to_ticks(eff_hi);
        let (raw_lo, raw_hi) = (a.min(b), a.max(b));
        match (
            bus.read_i32(j.id, reg::MIN_POSITION_LIMIT),
            bus.read_i32(j.id, reg::MAX_POSITION_LIMIT),
        ) {
            (Result::Ok(min), Result::Ok(max)) if raw_lo < min || raw_hi > max => {
                status = Warn;
                notes.push(format!("servo clamps goals to {min}..{max} ticks but the limits need {raw_lo}..{raw_hi}"));
            }
            (Result::Ok(_), Result::Ok(_)) => {}
            (Err(f), _) | (_, Err(f)) => {
                notes.push(format!("position limit registers unreadable: {f}"))
            }
        }
    }
    if notes.is_empty() {
        rep.push(
            "limits",
            &t,
            Ok,
            format!("[{eff_lo:.3}, {eff_hi:.3}] rad"),
            "",
        );
    } else {
        rep.push(
            "limits",
            &t,
            status,
            notes.join("; "),
            "narrow the config limits, recalibrate, or widen Min/Max_Position_Limit with Dynamixel Wizard",
        );
    }
}

/// For servos that did not answer: the ids that do answer, and other baud rates.
fn probe_missing(
    rep: &mut DoctorReport,
    bus: &mut Bus,
    cfg: &RobotConfig,
    missing: &[&JointConfig],
    probe_bauds: bool,
) {
    use CheckStatus::*;
    if let Result::Ok(found) = bus.scan() {
        for p in found
            .iter()
            .filter(|p| !cfg.joints.iter().any(|j| j.id == p.id))
        {
            let model = ServoModel::from_number(p.model)
                .map(|m| m.name().to_string())
                .unwrap_or_else(|| format!("model {}", p.model));
            rep.push(
                "unexpected servo",
                &format!("id {}", p.id),
                Warn,
                format!("a {model} answers at id {}, which the config does not list", p.id),
                "if it is one of the missing joints, set its id with Dynamixel Wizard (or fix the config)",
            );
        }
    }
    if !probe_bauds {
        return;
    }
    let mut still: Vec<&JointConfig> = missing.to_vec();
    for &b in VALID_BAUDS.iter().filter(|&&b| b != cfg.bus.baud) {
        if still.is_empty() || bus.set_baud(b).is_err() {
            break;
        }
        still.retain(|j| match bus.ping(j.id) {
            Result::Ok(_) => {
                rep.push(
                    "baud",
                    &target(j),
                    Fail,
                    format!("servo id {} answers at {b} baud, the config uses {}", j.id, cfg.bus.baud),
                    format!(
                        "set its Baud_Rate register (address 8) to {} with Dynamixel Wizard, or set bus.baud = {b}",
                        baud_register(cfg.bus.baud).map(|v| v.to_string()).unwrap_or_else(|| "?".into())
                    ),
                );
                false
            }
            Err(_) => true,
        });
    }
    let _ = bus.set_baud(cfg.bus.baud);
}
