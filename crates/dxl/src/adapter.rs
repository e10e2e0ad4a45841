//! USB serial adapter discovery and the FTDI latency timer.
//!
//! `serialport` (built without libudev) scans /sys/class/tty itself and still reports USB
//! VID/PID, serial number, manufacturer and product on Linux, so libudev is not needed.
//!
//! FTDI chips (the U2D2 is an FT232H) buffer received bytes for up to `latency_timer`
//! milliseconds, 16 by default: every reply then arrives up to 16 ms late and the bus cannot
//! run faster than about 30 Hz. The fix is 1 ms, set through sysfs (the udev rule in
//! `crates/dxl/udev/99-intervened.rules` does it at plug-in).

use std::io;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

/// FTDI's USB vendor id.
pub const FTDI_VID: u16 = 0x0403;
/// FT232H (the U2D2's chip).
pub const FT232H_PID: u16 = 0x6014;
/// FT232R.
pub const FT232R_PID: u16 = 0x6001;

/// A USB serial adapter found on the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbAdapter {
    pub port: PathBuf,
    pub vid: u16,
    pub pid: u16,
    pub serial_number: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
}

impl UsbAdapter {
    /// Whether this is a chip a Dynamixel adapter is known to use (U2D2: FT232H; FT232R).
    pub fn is_known_dynamixel_adapter(&self) -> bool {
        self.vid == FTDI_VID && (self.pid == FT232H_PID || self.pid == FT232R_PID)
    }

    /// Whether the ftdi_sio driver (and so a latency timer) is likely behind it.
    pub fn is_ftdi(&self) -> bool {
        self.vid == FTDI_VID
    }
}

impl std::fmt::Display for UsbAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:04x}:{:04x}",
            self.port.display(),
            self.vid,
            self.pid
        )?;
        if let Some(p) = &self.product {
            write!(f, " {p}")?;
        }
        if let Some(s) = &self.serial_number {
            write!(f, " serial {s}")?;
        }
        Ok(())
    }
}

/// Lists the USB serial adapters. An empty list (not an error) on a machine without
/// /sys/class/tty, where `serialport` would otherwise panic.
pub fn list_adapters() -> Result<Vec<UsbAdapter>, serialport::Error> {
    if !Path::new("/sys/class/tty").is_dir() {
        return Ok(Vec::new());
    }
    let ports = serialport::available_ports()?;
    Ok(ports
        .into_iter()
        .filter_map(|p| match p.port_type {
            serialport::SerialPortType::UsbPort(u) => Some(UsbAdapter {
                port: PathBuf::from(p.port_name),
                vid: u.vid,
                pid: u.pid,
                serial_number: u.serial_number,
                manufacturer: u.manufacturer,
                product: u.product,
            }),
            _ => None,
        })
        .collect())
}

/// The adapter behind a port path (resolving symlinks such as /dev/intervened-bus).
pub fn adapter_for(port: &Path, adapters: &[UsbAdapter]) -> Option<UsbAdapter> {
    let target = port.canonicalize().ok()?;
    adapters
        .iter()
        .find(|a| a.port.canonicalize().ok().as_deref() == Some(target.as_path()))
        .cloned()
}

/// Where sysfs is mounted; tests point it at a temporary directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::system()
    }
}

impl Sysfs {
    pub fn system() -> Self {
        Self {
            root: PathBuf::from("/sys"),
        }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The latency_timer file of a tty (`ttyUSB0`), whether or not it exists.
    pub fn latency_timer_path(&self, tty: &str) -> PathBuf {
        self.root
            .join("bus/usb-serial/devices")
            .join(tty)
            .join("latency_timer")
    }
}

/// The kernel name of the tty behind a port path: `/dev/intervened-bus` -> `ttyUSB0`.
pub fn tty_name(port: &Path) -> io::Result<String> {
    let real = port.canonicalize()?;
    real.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "port path has no file name"))
}

/// Reads a tty's latency timer in ms; `Ok(None)` when the tty has none (not an FTDI
/// usb-serial device: a pty, a CDC-ACM adapter, a built-in UART).
pub fn read_latency_timer(sysfs: &Sysfs, tty: &str) -> io::Result<Option<u32>> {
    let path = sysfs.latency_timer_path(tty);
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a tty's latency timer (needs root or the udev rule's permissions).
pub fn write_latency_timer(sysfs: &Sysfs, tty: &str, ms: u32) -> io::Result<()> {
    std::fs::write(sysfs.latency_timer_path(tty), format!("{ms}\n"))
}

/// The outcome of checking (and possibly fixing) a port's latency timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatencyCheck {
    /// Not an FTDI usb-serial tty, so there is no timer to tune.
    NotApplicable { tty: String },
    /// The timer is already at 1 ms (or below).
    Ok { tty: String, ms: u32 },
    /// It was too high and has been set to 1 ms.
    Fixed { tty: String, was: u32 },
    /// It is too high and could not be changed.
    TooHigh {
        tty: String,
        ms: u32,
        error: Option<String>,
    },
}

impl LatencyCheck {
    /// The command that fixes a high timer until the next plug-in, and the permanent fix.
    pub fn fix(tty: &str, sysfs: &Sysfs) -> String {
        format!(
            "echo 1 | sudo tee {} ; for good, install the udev rule: sudo cp crates/dxl/udev/99-intervened.rules \
             /etc/udev/rules.d/ && sudo udevadm control --reload-rules, then replug the adapter",
            sysfs.latency_timer_path(tty).display()
        )
    }
}

/// Checks the latency timer of the tty behind `port`; if it is above 1 ms and `fix` is set,
/// tries to set it to 1 (which works where the process may write the sysfs file).
pub fn check_latency_timer(sysfs: &Sysfs, port: &Path, fix: bool) -> io::Result<LatencyCheck> {
    let tty = tty_name(port)?;
    let Some(ms) = read_latency_timer(sysfs, &tty)? else {
        return Ok(LatencyCheck::NotApplicable { tty });
    };
    if ms <= 1 {
        return Ok(LatencyCheck::Ok { tty, ms });
    }
    warn!(
        tty = %tty,
        latency_timer_ms = ms,
        fix = %LatencyCheck::fix(&tty, sysfs),
        "FTDI latency timer is above 1 ms: every servo reply is delayed by up to that long"
    );
    if !fix {
        return Ok(LatencyCheck::TooHigh {
            tty,
            ms,
            error: None,
        });
    }
    match write_latency_timer(sysfs, &tty, 1).and_then(|()| read_latency_timer(sysfs, &tty)) {
        Ok(Some(v)) if v <= 1 => {
            info!(tty = %tty, was = ms, "set FTDI latency timer to 1 ms");
            Ok(LatencyCheck::Fixed { tty, was: ms })
        }
        Ok(v) => Ok(LatencyCheck::TooHigh {
            tty,
            ms: v.unwrap_or(ms),
            error: Some("the write did not take effect".into()),
        }),
        Err(e) => Ok(LatencyCheck::TooHigh {
            tty,
            ms,
            error: Some(e.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sysfs(ms: &str) -> (tempfile::TempDir, Sysfs, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(sys.join("bus/usb-serial/devices/ttyUSB3")).unwrap();
        std::fs::write(sys.join("bus/usb-serial/devices/ttyUSB3/latency_timer"), ms).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("ttyUSB3"), "").unwrap();
        std::os::unix::fs::symlink(dev.join("ttyUSB3"), dev.join("intervened-bus")).unwrap();
        (dir, Sysfs::at(sys), dev.join("intervened-bus"))
    }

    #[test]
    fn symlink_resolves_to_tty_name() {
        let (_d, _s, link) = fake_sysfs("16\n");
        assert_eq!(tty_name(&link).unwrap(), "ttyUSB3");
    }

    #[test]
    fn high_latency_is_reported_and_fixed() {
        let (_d, sysfs, link) = fake_sysfs("16\n");
        let c = check_latency_timer(&sysfs, &link, false).unwrap();
        assert_eq!(
            c,
            LatencyCheck::TooHigh {
                tty: "ttyUSB3".into(),
                ms: 16,
                error: None
            }
        );
        let c = check_latency_timer(&sysfs, &link, true).unwrap();
        assert_eq!(
            c,
            LatencyCheck::Fixed {
                tty: "ttyUSB3".into(),
                was: 16
            }
        );
        assert_eq!(read_latency_timer(&sysfs, "ttyUSB3").unwrap(), Some(1));
        let c = check_latency_timer(&sysfs, &link, true).unwrap();
        assert_eq!(
            c,
            LatencyCheck::Ok {
                tty: "ttyUSB3".into(),
                ms: 1
            }
        );
    }

    #[test]
    fn non_ftdi_tty_is_not_applicable() {
        let (d, sysfs, _) = fake_sysfs("16\n");
        let other = d.path().join("dev/pts7");
        std::fs::write(&other, "").unwrap();
        assert_eq!(
            check_latency_timer(&sysfs, &other, true).unwrap(),
            LatencyCheck::NotApplicable { tty: "pts7".into() }
        );
    }

    #[test]
    fn listing_adapters_does_not_fail() {
        let adapters = list_adapters().unwrap();
        for a in &adapters {
            assert!(!a.port.as_os_str().is_empty());
        }
        let u2d2 = UsbAdapter {
            port: "/dev/ttyUSB0".into(),
            vid: 0x0403,
            pid: 0x6014,
            serial_number: Some("FT1234".into()),
            manufacturer: None,
            product: Some("USB <-> Serial Converter".into()),
        };
        assert!(u2d2.is_known_dynamixel_adapter());
        assert_eq!(
            u2d2.to_string(),
            "/dev/ttyUSB0 0403:6014 USB <-> Serial Converter serial FT1234"
        );
    }
}
