//! The cameras as the control loop sees them: one non-blocking reader per `[[cameras]]` entry,
//! polled once per tick.
//!
//! What happens when a camera fails:
//! - it stops (unplugged, a capture error, a panicking driver) or its newest frame is older
//!   than its `max_age_ms`: while the running policy reads that camera and has the arm, the
//!   loop goes to Hold (a camera fault, shown in status); while a person drives, the policy's
//!   proposal is only skipped. The recording marks the gap with an event either way.
//! - it comes back: the gap ends (another event); Hold lasts until a person resumes.
//!
//! The loop never waits for a frame: each tick takes the newest one there is.

use intervened_camera::{FrameReader, Latest};

/// Most cameras a loop reads: the images a tick hands the policy live in a fixed array.
pub const MAX_CAMERAS: usize = 4;

/// A camera's state as of the last poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraHealth {
    Fresh,
    /// Running, but the newest frame is older than `max_age_ms`.
    Stale,
    /// No frame yet.
    Waiting,
    /// The capture ended.
    Stopped,
}

impl CameraHealth {
    pub fn name(self) -> &'static str {
        match self {
            CameraHealth::Fresh => "fresh",
            CameraHealth::Stale => "stale",
            CameraHealth::Waiting => "waiting",
            CameraHealth::Stopped => "stopped",
        }
    }
}

/// How the loop tells a frame's age: the monotonic clock on a robot, the tick count in
/// lockstep (where the simulator stamps frames with simulated time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraClock {
    Monotonic,
    Ticks { period_ns: u64 },
}

/// The simulated time of `tick` in lockstep, as frames are stamped with it. It starts at 1 s so
/// that no frame's time is 0, which the recording uses for "no image".
pub fn lockstep_time_ns(tick: u64, period_ns: u64) -> u64 {
    1_000_000_000u64.saturating_add(tick.saturating_mul(period_ns))
}

/// A change of a camera's health, for the recording and the fault path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraChange {
    pub camera: usize,
    pub from: CameraHealth,
    pub to: CameraHealth,
    /// Age of the newest frame when it went stale (ns).
    pub age_ns: Option<u64>,
}

pub struct LoopCameras {
    readers: Vec<FrameReader>,
    clock: CameraClock,
    health: Vec<CameraHealth>,
    /// Capture time (ns) of the image each camera showed this tick; 0 for none.
    seen_ns: Vec<u64>,
    ages_ns: Vec<Option<u64>>,
    /// Kept alive with the readers: capture threads, publishers' owners.
    _keep: Vec<Box<dyn Send>>,
}

impl LoopCameras {
    /// No cameras.
    pub fn none() -> Self {
        Self::new(Vec::new(), CameraClock::Monotonic, Vec::new())
    }

    /// `readers` in config order (at most [`MAX_CAMERAS`]; the runtime checks); `keep` holds
    /// what must live as long as they do (capture threads).
    pub fn new(readers: Vec<FrameReader>, clock: CameraClock, keep: Vec<Box<dyn Send>>) -> Self {
        let n = readers.len();
        Self {
            readers,
            clock,
            health: vec![CameraHealth::Waiting; n],
            seen_ns: vec![0; n],
            ages_ns: vec![None; n],
            _keep: keep,
        }
    }

    pub fn len(&self) -> usize {
        self.readers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    pub fn name(&self, camera: usize) -> &str {
        self.readers
            .get(camera)
            .map(FrameReader::name)
            .unwrap_or("?")
    }

    /// Takes each camera's newest frame. Calls `changed` for each camera whose health changed
    /// since the last poll. Never blocks or allocates.
    pub fn poll(&mut self, tick: u64, mut changed: impl FnMut(CameraChange)) {
        let now_ns = self.now_ns(tick);
        for (i, r) in self.readers.iter_mut().enumerate() {
            let (health, seen, age) = match r.latest_at(now_ns) {
                Latest::Fresh { frame, age_ns } => {
                    (CameraHealth::Fresh, frame.timestamp_ns, Some(age_ns))
                }
                Latest::Stale { frame, age_ns } => {
                    (CameraHealth::Stale, frame.timestamp_ns, Some(age_ns))
                }
                Latest::Waiting => (CameraHealth::Waiting, 0, None),
                Latest::Stopped { .. } => (CameraHealth::Stopped, 0, None),
            };
            if let (Some(h), Some(s), Some(a)) = (
                self.health.get_mut(i),
                self.seen_ns.get_mut(i),
                self.ages_ns.get_mut(i),
            ) {
                if *h != health {
                    changed(CameraChange {
                        camera: i,
                        from: *h,
                        to: health,
                        age_ns: age,
                    });
                    *h = health;
                }
                // Only a fresh frame is an observation; an old one is recorded as none.
                *s = if health == CameraHealth::Fresh {
                    seen
                } else {
                    0
                };
                *a = age;
            }
        }
    }

    /// Now on the cameras' clock (frames' capture times are on it).
    pub fn now_ns(&self, tick: u64) -> u64 {
        match self.clock {
            CameraClock::Monotonic => intervened_camera::monotonic_now_ns(),
            CameraClock::Ticks { period_ns } => lockstep_time_ns(tick, period_ns),
        }
    }

    pub fn health(&self, camera: usize) -> CameraHealth {
        self.health
            .get(camera)
            .copied()
            .unwrap_or(CameraHealth::Stopped)
    }

    /// Capture times of this tick's images, config order (0 = no fresh image).
    pub fn seen_ns(&self) -> &[u64] {
        &self.seen_ns
    }

    /// The fresh image of `camera` this tick (RGB, `H * W * 3`), if there is one.
    pub fn image(&self, camera: usize) -> Option<&[u8]> {
        if self.health(camera) != CameraHealth::Fresh {
            return None;
        }
        self.frame(camera).map(|f| f.image.data.as_slice())
    }

    /// The newest frame of `camera` whatever its health, if it ever delivered one.
    pub fn frame(&self, camera: usize) -> Option<&intervened_camera::Frame> {
        self.readers.get(camera).and_then(FrameReader::current)
    }

    /// The first of `cameras` without a fresh image, with its health and frame age.
    pub fn first_unusable(&self, cameras: &[usize]) -> Option<(usize, CameraHealth, Option<u64>)> {
        cameras.iter().copied().find_map(|c| {
            let h = self.health(c);
            (h != CameraHealth::Fresh).then(|| (c, h, self.ages_ns.get(c).copied().flatten()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn health_follows_the_frames_and_changes_are_reported_once() {
        let (mut publisher, reader) =
            intervened_camera::frame_channel("front", 2, 2, Duration::from_millis(100), None);
        let mut cams = LoopCameras::new(
            vec![reader],
            CameraClock::Ticks {
                period_ns: 20_000_000,
            },
            Vec::new(),
        );
        let mut changes = Vec::new();
        cams.poll(0, |c| changes.push(c));
        assert!(changes.is_empty(), "starts Waiting: {changes:?}");
        assert_eq!(cams.image(0), None);
        publisher
            .publish_with(lockstep_time_ns(0, 20_000_000), |img| {
                img.data.fill(9);
                Ok::<(), ()>(())
            })
            .unwrap();
        cams.poll(1, |c| changes.push(c));
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].from, changes[0].to),
            (CameraHealth::Waiting, CameraHealth::Fresh)
        );
        assert_eq!(cams.image(0), Some(&[9u8; 12][..]));
        assert_eq!(cams.seen_ns(), &[1_000_000_000]);
        assert_eq!(cams.first_unusable(&[0]), None);
        // 6 ticks of 20 ms later the frame is 120 ms old: stale, no image, a change.
        cams.poll(6, |c| changes.push(c));
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[1].to, CameraHealth::Stale);
        assert_eq!(changes[1].age_ns, Some(120_000_000));
        assert_eq!(cams.image(0), None);
        assert_eq!(
            cams.first_unusable(&[0]),
            Some((0, CameraHealth::Stale, Some(120_000_000)))
        );
        cams.poll(7, |c| changes.push(c));
        assert_eq!(changes.len(), 2, "no change, no report");
        drop(publisher);
        cams.poll(8, |c| changes.push(c));
        assert_eq!(changes[2].to, CameraHealth::Stopped);
    }
}
