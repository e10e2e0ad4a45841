//! Images, frames and the monotonic clock frames are stamped with.

/// An RGB8 image: `width * height * 3` bytes, row-major, rows top to bottom, no padding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    /// `R, G, B` per pixel, row by row.
    pub data: Vec<u8>,
}

impl Image {
    /// A black image of this size (allocates once; capture then writes in place).
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0; Self::byte_len(width, height)],
        }
    }

    /// `width * height * 3`.
    pub fn byte_len(width: u32, height: u32) -> usize {
        width as usize * height as usize * 3
    }

    /// Resizes in place, reusing the allocation when it is large enough.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.data.resize(Self::byte_len(width, height), 0);
    }

    /// The pixel at column `x`, row `y`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// One captured image with when it was captured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub image: Image,
    /// Capture time, `CLOCK_MONOTONIC` nanoseconds (the clock of [`monotonic_now_ns`] and of
    /// V4L2 buffer timestamps).
    pub timestamp_ns: u64,
    /// 0 for the first frame a capture thread publishes, then +1 per frame.
    pub sequence: u64,
}

/// `CLOCK_MONOTONIC` now, nanoseconds. The same clock as V4L2's monotonic buffer timestamps
/// (and as `std::time::Instant` on Linux), so ages computed from it are meaningful.
pub fn monotonic_now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        // clock_gettime(CLOCK_MONOTONIC) cannot fail on Linux; never report time going back.
        Err(_) => 0,
    }
}
