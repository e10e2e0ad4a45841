//! Shared setup: the Koch config and an emulated chain on a pty.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use intervened_dxl::{Arm, Bus};
use intervened_robot::{Calibration, RobotConfig};
use intervened_sim::{
    specs_from_config, Chain, Dynamics, PtyServer, ServerOptions, ServoSpec, SharedChain,
};

pub fn koch() -> RobotConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/koch-v1.1.toml");
    RobotConfig::load(&p).unwrap()
}

/// Distinct positions per servo, so a reply attributed to the wrong servo shows.
pub fn position_of(id: u8) -> i32 {
    1500 + 137 * id as i32
}

pub struct Rig {
    pub cfg: RobotConfig,
    pub chain: SharedChain,
    pub server: PtyServer,
}

pub fn rig_with(specs: Vec<ServoSpec>) -> Rig {
    let cfg = koch();
    let chain = Chain::new(specs, Dynamics::default()).shared();
    {
        let mut c = chain.lock().unwrap();
        for id in c.ids() {
            c.set_present_position(id, position_of(id));
        }
    }
    let server = PtyServer::start(chain.clone(), ServerOptions::default()).unwrap();
    Rig { cfg, chain, server }
}

pub fn rig() -> Rig {
    let cfg = koch();
    rig_with(specs_from_config(&cfg))
}

/// Generous timing: the test machine is shared and busy; tests that measure timing set their own.
pub fn relax(bus: &mut Bus) {
    bus.set_reply_margin(Duration::from_millis(60));
}

pub fn open_arm(r: &Rig) -> Arm {
    let mut bus = Bus::open(&r.server.path(), r.cfg.bus.baud).unwrap();
    relax(&mut bus);
    bus.set_retries(1);
    let mut arm = Arm::from_bus(bus, &r.cfg, Calibration::identity(&r.cfg)).unwrap();
    arm.set_read_budget(Duration::from_millis(500));
    arm
}
