//! The simulated camera: a deterministic software renderer ([`render`]) of a scene of
//! primitives, the [`SimCamera`] that renders the latest published scene at its frame rate,
//! and (feature `sim`) the scene of the simulated arm-and-block world ([`world`]).

pub mod render;
#[cfg(feature = "sim")]
pub mod world;

use std::time::{Duration, Instant};

pub use render::{Ground, PinholeCamera, Primitive, Renderer, Scene, Shape};

use crate::capture::Camera;
use crate::config::{CameraConfig, CameraDevice};
use crate::error::CameraError;
use crate::image::{monotonic_now_ns, Image};

/// The writing end of a scene channel: whoever steps the simulation (the control thread)
/// publishes the scene each tick. Never blocks; after the first scene of a given size it
/// never allocates (the slots' vectors are reused).
pub struct ScenePublisher {
    input: triple_buffer::Input<Scene>,
}

/// The reading end of a scene channel, for a [`SimCamera`].
pub struct SceneSubscriber {
    output: triple_buffer::Output<Scene>,
}

/// A latest-value channel of scenes (a triple buffer), starting with `initial`.
pub fn scene_channel(initial: &Scene) -> (ScenePublisher, SceneSubscriber) {
    let (input, output) = triple_buffer::triple_buffer(initial);
    (ScenePublisher { input }, SceneSubscriber { output })
}

impl ScenePublisher {
    /// Publishes a copy of `scene`.
    pub fn publish(&mut self, scene: &Scene) {
        self.input.input_buffer_mut().clone_from(scene);
        self.input.publish();
    }

    /// Fills a slot in place with `fill` and publishes it. The slot holds an older scene.
    pub fn publish_with<E>(
        &mut self,
        fill: impl FnOnce(&mut Scene) -> Result<(), E>,
    ) -> Result<(), E> {
        fill(self.input.input_buffer_mut())?;
        self.input.publish();
        Ok(())
    }
}

impl SceneSubscriber {
    /// The latest published scene.
    pub fn latest(&mut self) -> &Scene {
        self.output.read()
    }
}

impl std::fmt::Debug for ScenePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScenePublisher")
    }
}

impl std::fmt::Debug for SceneSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SceneSubscriber")
    }
}

/// A [`Camera`] that renders the latest scene of a [`SceneSubscriber`].
///
/// Paced (the default), it captures on absolute deadlines at its frame rate, like a real
/// camera, and skips deadlines it has missed rather than bursting. Unpaced, it renders as fast
/// as it is called (tests, offline rendering). The timestamp is the monotonic time at which
/// rendering starts, i.e. when the scene was "exposed".
#[derive(Debug)]
pub struct SimCamera {
    name: String,
    fps: u32,
    renderer: Renderer,
    scenes: SceneSubscriber,
    paced: bool,
    next: Option<Instant>,
}

impl SimCamera {
    /// A simulated camera from a validated config with `device = "sim"`.
    pub fn from_config(cfg: &CameraConfig, scenes: SceneSubscriber) -> Result<Self, CameraError> {
        if cfg.device() != CameraDevice::Sim {
            return Err(CameraError::Open {
                device: cfg.device.clone(),
                message: format!("camera {} is not a simulated camera", cfg.name),
                fix: "use device = \"sim\" for a simulated camera".into(),
            });
        }
        let renderer =
            Renderer::new(&cfg.sim_pose(), cfg.width, cfg.height).map_err(|e| match e {
                CameraError::BadSize {
                    what,
                    width,
                    height,
                    problem,
                    ..
                } => CameraError::BadSize {
                    device: format!("{} (sim)", cfg.name),
                    what,
                    width,
                    height,
                    problem,
                },
                other => other,
            })?;
        Ok(Self {
            name: cfg.name.clone(),
            fps: cfg.fps.max(1),
            renderer,
            scenes,
            paced: true,
            next: None,
        })
    }

    /// Renders on every call without waiting for the frame period.
    pub fn unpaced(mut self) -> Self {
        self.paced = false;
        self
    }

    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    fn wait_for_deadline(&mut self) {
        let period = Duration::from_nanos(1_000_000_000 / u64::from(self.fps));
        let now = Instant::now();
        let next = match self.next {
            None => now,
            Some(n) if n + period < now => now, // missed by more than a period: skip ahead
            Some(n) => n,
        };
        if next > now {
            std::thread::sleep(next - now);
        }
        self.next = Some(next + period);
    }
}

impl Camera for SimCamera {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> (u32, u32) {
        (self.renderer.camera().width, self.renderer.camera().height)
    }

    fn fps(&self) -> u32 {
        self.fps
    }

    fn capture(&mut self, image: &mut Image) -> Result<u64, CameraError> {
        if self.paced {
            self.wait_for_deadline();
        }
        let t = monotonic_now_ns();
        let scene = self.scenes.latest();
        self.renderer.render(scene, image);
        Ok(t)
    }
}
