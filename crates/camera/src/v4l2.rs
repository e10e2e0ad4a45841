//! Real USB cameras through V4L2.
//!
//! The device-independent parts are plain functions, unit-tested without a camera:
//! [`negotiate`] picks a mode from what a device offers, [`yuyv_to_rgb`] converts YUYV 4:2:2,
//! and MJPEG frames go through [`crate::jpeg::decode_mjpeg`] (which also takes the usual
//! UVC frames without Huffman tables). [`V4l2Camera`] (Linux, feature
//! `v4l2`, the `v4l` crate) wires them to a device: it opens it, checks that it is a
//! streaming capture device, lists its modes, negotiates, sets format and frame interval,
//! streams through four mmap buffers, and stamps each frame with the kernel buffer's
//! timestamp (`CLOCK_MONOTONIC`, when the driver says so; the time of dequeueing otherwise).
//!
//! # What cannot be checked without hardware
//! The tests cover negotiation, conversion, decoding and a missing device. Not covered, since
//! this machine has no camera: that real drivers accept the negotiated format and interval
//! (some round the interval: the camera then runs at the driver's rate), that their buffer
//! timestamps are monotonic and close to exposure (UVC stamps at the first USB packet of a
//! frame), the MJPEG streams of real cameras (corrupt or truncated frames are skipped, up to
//! [`MAX_CONSECUTIVE_DECODE_FAILURES`] in a row), behaviour on unplugging (the dequeue fails and
//! the capture thread stops), USB bandwidth limits with several cameras, and the `v4l` crate's
//! drop of a stream, which panics if `VIDIOC_STREAMOFF` fails with anything but `ENODEV`.

use crate::error::CameraError;

/// Pixel formats this crate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Motion JPEG: each frame a JPEG (possibly without Huffman tables).
    Mjpeg,
    /// YUYV 4:2:2 (`Y0 U Y1 V` per pixel pair), BT.601 limited range.
    Yuyv,
}

impl PixelFormat {
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Yuyv => *b"YUYV",
        }
    }

    pub fn from_fourcc(fourcc: [u8; 4]) -> Option<Self> {
        match &fourcc {
            b"MJPG" => Some(PixelFormat::Mjpeg),
            b"YUYV" => Some(PixelFormat::Yuyv),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Mjpeg => "MJPG",
            PixelFormat::Yuyv => "YUYV",
        }
    }
}

/// The order [`V4l2Camera`] tries formats in: MJPEG first, because its USB bandwidth is a
/// fraction of YUYV's, so that several cameras can share a USB 2 bus (at the price of a JPEG
/// decode, about 2 ms for 640x480 here); YUYV when the device has no MJPEG at that mode.
pub const DEFAULT_PREFERENCE: [PixelFormat; 2] = [PixelFormat::Mjpeg, PixelFormat::Yuyv];

/// Relative tolerance between the configured and an offered frame rate (29.97 matches 30).
pub const FPS_TOLERANCE: f64 = 0.01;

/// One mode a device offers: a pixel format, a size and a frame interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatOffer {
    pub fourcc: [u8; 4],
    pub width: u32,
    pub height: u32,
    /// Seconds per frame as `[numerator, denominator]` (V4L2's frame interval).
    pub interval: [u32; 2],
}

impl FormatOffer {
    /// An offer at a whole frame rate (interval `1/fps`).
    pub fn new(fourcc: &[u8; 4], width: u32, height: u32, fps: u32) -> Self {
        Self {
            fourcc: *fourcc,
            width,
            height,
            interval: [1, fps],
        }
    }

    pub fn fps(&self) -> f64 {
        if self.interval[0] == 0 {
            return 0.0;
        }
        f64::from(self.interval[1]) / f64::from(self.interval[0])
    }
}

/// The mode chosen by [`negotiate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// The offered interval, `[numerator, denominator]` seconds per frame.
    pub interval: [u32; 2],
}

fn fmt_fps(f: f64) -> String {
    if (f - f.round()).abs() < 1e-6 {
        format!("{}", f.round())
    } else {
        format!("{f:.2}")
    }
}

/// Every offer, grouped by format and size, e.g.
/// `MJPG 640x480 @ 30/15 fps, YUYV 640x480 @ 30 fps, H264 1920x1080 @ 30 fps (not decoded here)`.
pub fn describe_offers(offers: &[FormatOffer]) -> String {
    let mut groups: Vec<([u8; 4], u32, u32, Vec<f64>)> = Vec::new();
    for o in offers {
        match groups
            .iter_mut()
            .find(|g| g.0 == o.fourcc && g.1 == o.width && g.2 == o.height)
        {
            Some(g) => {
                if !g.3.iter().any(|f| (f - o.fps()).abs() < 1e-9) {
                    g.3.push(o.fps());
                }
            }
            None => groups.push((o.fourcc, o.width, o.height, vec![o.fps()])),
        }
    }
    if groups.is_empty() {
        return "nothing".into();
    }
    groups
        .iter()
        .map(|(cc, w, h, fps)| {
            let rates: Vec<String> = fps.iter().map(|f| fmt_fps(*f)).collect();
            format!(
                "{} {w}x{h} @ {} fps{}",
                String::from_utf8_lossy(cc),
                rates.join("/"),
                if PixelFormat::from_fourcc(*cc).is_none() {
                    " (not decoded here)"
                } else {
                    ""
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Chooses the mode for a camera configured at `width` x `height` and `fps`: exactly that
/// size (images are not rescaled: a policy is trained at one size), a frame rate within
/// [`FPS_TOLERANCE`] of `fps`, and the first format of `prefer` that the device offers so.
/// Otherwise an [`CameraError::Unsupported`] naming `device` and listing every offer.
pub fn negotiate(
    device: &str,
    offers: &[FormatOffer],
    width: u32,
    height: u32,
    fps: u32,
    prefer: &[PixelFormat],
) -> Result<Negotiated, CameraError> {
    let want = f64::from(fps);
    for &format in prefer {
        let best = offers
            .iter()
            .filter(|o| o.fourcc == format.fourcc() && o.width == width && o.height == height)
            .filter(|o| want > 0.0 && ((o.fps() - want).abs() / want) <= FPS_TOLERANCE)
            // The closest rate, then the first listed: deterministic.
            .min_by(|a, b| {
                let da = (a.fps() - want).abs();
                let db = (b.fps() - want).abs();
                da.partial_cmp(&db).unwrap_or(std::cmp::Ordering::Equal)
            });
        if let Some(o) = best {
            return Ok(Negotiated {
                format,
                width,
                height,
                interval: o.interval,
            });
        }
    }
    let names: Vec<&str> = prefer.iter().map(|p| p.name()).collect();
    Err(CameraError::Unsupported {
        device: device.to_string(),
        wanted: format!("{width}x{height} @ {fps} fps as {}", names.join(" or ")),
        offered: describe_offers(offers),
    })
}

/// Converts one YUYV 4:2:2 frame (BT.601, limited range, as UVC cameras send by default) to
/// RGB8. `stride` is bytes per source row (at least `2 * width`); `out` must hold
/// `width * height * 3` bytes. `width` must be even.
pub fn yuyv_to_rgb(
    src: &[u8],
    stride: usize,
    width: u32,
    height: u32,
    out: &mut [u8],
) -> Result<(), String> {
    let (w, h) = (width as usize, height as usize);
    if w % 2 != 0 {
        return Err(format!("YUYV width {w} is odd"));
    }
    if stride < 2 * w {
        return Err(format!(
            "stride {stride} is shorter than a row ({} bytes)",
            2 * w
        ));
    }
    let need = if h == 0 { 0 } else { stride * (h - 1) + 2 * w };
    if src.len() < need {
        return Err(format!(
            "a {w}x{h} YUYV frame needs {need} bytes, got {}",
            src.len()
        ));
    }
    if out.len() != w * h * 3 {
        return Err(format!(
            "output holds {} bytes, not {}",
            out.len(),
            w * h * 3
        ));
    }
    for (row, dst) in out.chunks_exact_mut(w * 3).enumerate() {
        let line = &src[row * stride..row * stride + 2 * w];
        for (quad, px) in line.chunks_exact(4).zip(dst.chunks_exact_mut(6)) {
            let d = i32::from(quad[1]) - 128;
            let e = i32::from(quad[3]) - 128;
            let rv = 409 * e;
            let gv = -100 * d - 208 * e;
            let bv = 516 * d;
            for (k, y) in [quad[0], quad[2]].into_iter().enumerate() {
                let c = 298 * (i32::from(y) - 16) + 128;
                px[3 * k] = ((c + rv) >> 8).clamp(0, 255) as u8;
                px[3 * k + 1] = ((c + gv) >> 8).clamp(0, 255) as u8;
                px[3 * k + 2] = ((c + bv) >> 8).clamp(0, 255) as u8;
            }
        }
    }
    Ok(())
}

/// Corrupt MJPEG frames skipped in a row before [`V4l2Camera::capture`] gives up.
pub const MAX_CONSECUTIVE_DECODE_FAILURES: u32 = 5;

/// The V4L2 device nodes present (`/dev/video*`), sorted, for error messages.
pub fn list_video_devices() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("video"))
                .map(|n| format!("/dev/{n}"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(all(target_os = "linux", feature = "v4l2"))]
pub use device::V4l2Camera;

#[cfg(all(target_os = "linux", feature = "v4l2"))]
mod device {
    use std::io;
    use std::path::Path;
    use std::time::Duration;

    use tracing::{debug, info, warn};
    use v4l::buffer::{Flags as BufFlags, Type};
    use v4l::capability::Flags as CapFlags;
    use v4l::frameinterval::FrameIntervalEnum;
    use v4l::framesize::FrameSizeEnum;
    use v4l::io::mmap::Stream;
    use v4l::io::traits::CaptureStream;
    use v4l::video::capture::Parameters;
    use v4l::video::Capture;
    use v4l::{Device, Format, FourCC, Fraction};

    use super::*;
    use crate::capture::Camera;
    use crate::config::{CameraConfig, CameraDevice};
    use crate::image::{monotonic_now_ns, Image};
    use crate::jpeg::decode_mjpeg;

    /// A USB (UVC) or other V4L2 capture device. See the module docs for what is checked
    /// only on hardware.
    pub struct V4l2Camera {
        name: String,
        label: String,
        mode: Negotiated,
        fps: u32,
        stride: usize,
        timeout: Duration,
        // Field order matters: the stream must be dropped before the device.
        stream: Stream<'static>,
        _device: Device,
        decode_failures: u32,
        scratch: Vec<u8>,
    }

    impl std::fmt::Debug for V4l2Camera {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("V4l2Camera")
                .field("label", &self.label)
                .field("mode", &self.mode)
                .finish()
        }
    }

    fn io_err<'a>(label: &'a str, op: &'static str) -> impl Fn(io::Error) -> CameraError + 'a {
        move |e| CameraError::Io {
            device: label.to_string(),
            op,
            message: e.to_string(),
        }
    }

    /// Every (format, size, interval) the device lists; a stepwise size or interval range is
    /// represented by the configured size and rate when they fall inside it, and by its ends.
    fn offers(
        dev: &Device,
        label: &str,
        cfg: &CameraConfig,
    ) -> Result<Vec<FormatOffer>, CameraError> {
        let mut out = Vec::new();
        for desc in dev
            .enum_formats()
            .map_err(io_err(label, "VIDIOC_ENUM_FMT"))?
        {
            let cc = desc.fourcc;
            let sizes = dev.enum_framesizes(cc).unwrap_or_default();
            let mut discrete: Vec<(u32, u32)> = Vec::new();
            for s in sizes {
                match s.size {
                    FrameSizeEnum::Discrete(d) => discrete.push((d.width, d.height)),
                    FrameSizeEnum::Stepwise(st) => {
                        let fits = |v: u32, lo: u32, hi: u32, step: u32| {
                            (lo..=hi).contains(&v) && (v - lo).is_multiple_of(step.max(1))
                        };
                        if fits(cfg.width, st.min_width, st.max_width, st.step_width)
                            && fits(cfg.height, st.min_height, st.max_height, st.step_height)
                        {
                            discrete.push((cfg.width, cfg.height));
                        }
                        discrete.push((st.min_width, st.min_height));
                        discrete.push((st.max_width, st.max_height));
                    }
                }
            }
            for (w, h) in discrete {
                let ivs = dev.enum_frameintervals(cc, w, h).unwrap_or_default();
                for iv in ivs {
                    match iv.interval {
                        FrameIntervalEnum::Discrete(f) => out.push(FormatOffer {
                            fourcc: cc.repr,
                            width: w,
                            height: h,
                            interval: [f.numerator, f.denominator],
                        }),
                        FrameIntervalEnum::Stepwise(st) => {
                            let secs = |f: Fraction| {
                                f64::from(f.numerator) / f64::from(f.denominator.max(1))
                            };
                            let want = 1.0 / f64::from(cfg.fps.max(1));
                            if secs(st.min) <= want && want <= secs(st.max) {
                                out.push(FormatOffer::new(&cc.repr, w, h, cfg.fps));
                            }
                            for f in [st.min, st.max] {
                                out.push(FormatOffer {
                                    fourcc: cc.repr,
                                    width: w,
                                    height: h,
                                    interval: [f.numerator, f.denominator],
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    impl V4l2Camera {
        /// Opens and configures the camera of a validated config with a device path; frames
        /// start flowing at the first [`capture`](Camera::capture).
        pub fn open(cfg: &CameraConfig) -> Result<Self, CameraError> {
            Self::open_with(cfg, &DEFAULT_PREFERENCE)
        }

        /// [`open`](Self::open) with a format preference other than [`DEFAULT_PREFERENCE`].
        pub fn open_with(cfg: &CameraConfig, prefer: &[PixelFormat]) -> Result<Self, CameraError> {
            let CameraDevice::V4l2(path) = cfg.device() else {
                return Err(CameraError::Open {
                    device: cfg.device.clone(),
                    message: format!("camera {} is simulated, not a V4L2 device", cfg.name),
                    fix: "give a device path such as /dev/video0".into(),
                });
            };
            let label = format!("{} ({})", cfg.name, path.display());
            let present = || {
                let l = list_video_devices();
                if l.is_empty() {
                    "no /dev/video* exists on this machine: is the camera plugged in, and its driver (uvcvideo) loaded?".to_string()
                } else {
                    format!(
                        "devices present: {}; `v4l2-ctl --list-devices` names them",
                        l.join(", ")
                    )
                }
            };
            if !Path::new(&path).exists() {
                return Err(CameraError::Open {
                    device: label,
                    message: "no such device".into(),
                    fix: present(),
                });
            }
            let dev = Device::with_path(&path).map_err(|e| CameraError::Open {
                device: label.clone(),
                message: e.to_string(),
                fix: if e.kind() == io::ErrorKind::PermissionDenied {
                    "add the service user to the `video` group".into()
                } else {
                    present()
                },
            })?;
            let caps = dev.query_caps().map_err(|e| CameraError::Open {
                device: label.clone(),
                message: format!("VIDIOC_QUERYCAP failed: {e}"),
                fix: "is this a V4L2 device?".into(),
            })?;
            if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE)
                || !caps.capabilities.contains(CapFlags::STREAMING)
            {
                return Err(CameraError::Open {
                    device: label,
                    message: format!(
                        "{} (driver {}) is not a streaming video capture node (capabilities: {})",
                        caps.card, caps.driver, caps.capabilities
                    ),
                    fix: format!(
                        "UVC cameras also expose a metadata node: use the other /dev/video* of the same camera; {}",
                        present()
                    ),
                });
            }
            let offered = offers(&dev, &label, cfg)?;
            let mode = negotiate(&label, &offered, cfg.width, cfg.height, cfg.fps, prefer)?;
            let cc = FourCC::new(&mode.format.fourcc());
            let set = dev
                .set_format(&Format::new(mode.width, mode.height, cc))
                .map_err(io_err(&label, "VIDIOC_S_FMT"))?;
            if (set.width, set.height, set.fourcc) != (mode.width, mode.height, cc) {
                return Err(CameraError::Unsupported {
                    device: label,
                    wanted: format!(
                        "{}x{} {} (the driver set {}x{} {})",
                        mode.width,
                        mode.height,
                        mode.format.name(),
                        set.width,
                        set.height,
                        set.fourcc
                    ),
                    offered: describe_offers(&offered),
                });
            }
            let params = dev
                .set_params(&Parameters::new(Fraction::new(
                    mode.interval[0],
                    mode.interval[1],
                )))
                .map_err(io_err(&label, "VIDIOC_S_PARM"))?;
            let got = params.interval;
            if [got.numerator, got.denominator] != mode.interval {
                warn!(camera = %label, wanted = ?mode.interval, got = %got, "driver changed the frame interval");
            }
            let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 4)
                .map_err(io_err(&label, "VIDIOC_REQBUFS/mmap"))?;
            let period = Duration::from_secs_f64(1.0 / f64::from(cfg.fps.max(1)));
            let timeout = (period * 10).max(Duration::from_secs(2));
            stream.set_timeout(timeout);
            info!(camera = %label, format = mode.format.name(), width = mode.width, height = mode.height, interval = ?mode.interval, "camera configured");
            Ok(Self {
                name: cfg.name.clone(),
                label,
                mode,
                fps: cfg.fps,
                stride: set.stride.max(2 * mode.width) as usize,
                timeout,
                stream,
                _device: dev,
                decode_failures: 0,
                scratch: Vec::new(),
            })
        }

        /// The negotiated mode.
        pub fn mode(&self) -> Negotiated {
            self.mode
        }
    }

    impl Camera for V4l2Camera {
        fn name(&self) -> &str {
            &self.name
        }

        fn size(&self) -> (u32, u32) {
            (self.mode.width, self.mode.height)
        }

        fn fps(&self) -> u32 {
            self.fps
        }

        fn capture(&mut self, image: &mut Image) -> Result<u64, CameraError> {
            loop {
                let (buf, meta) = match self.stream.next() {
                    Ok(x) => x,
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(CameraError::Timeout {
                            device: self.label.clone(),
                            waited_ms: self.timeout.as_millis() as u64,
                        })
                    }
                    Err(e) => {
                        return Err(CameraError::Io {
                            device: self.label.clone(),
                            op: "VIDIOC_DQBUF",
                            message: e.to_string(),
                        })
                    }
                };
                let monotonic =
                    meta.flags & BufFlags::TIMESTAMP_MASK == BufFlags::TIMESTAMP_MONOTONIC;
                let t = if monotonic {
                    (meta.timestamp.sec as u64) * 1_000_000_000
                        + (meta.timestamp.usec as u64) * 1_000
                } else {
                    monotonic_now_ns()
                };
                let used = (meta.bytesused as usize).min(buf.len());
                let data = &buf[..used];
                let (w, h) = (self.mode.width, self.mode.height);
                let result = match self.mode.format {
                    PixelFormat::Yuyv => {
                        if image.width != w || image.height != h {
                            image.resize(w, h);
                        }
                        yuyv_to_rgb(data, self.stride, w, h, &mut image.data)
                    }
                    PixelFormat::Mjpeg => {
                        decode_mjpeg(data, &mut self.scratch, image).and_then(|()| {
                            if (image.width, image.height) == (w, h) {
                                Ok(())
                            } else {
                                let got = (image.width, image.height);
                                image.resize(w, h);
                                Err(format!("frame is {}x{}, not {w}x{h}", got.0, got.1))
                            }
                        })
                    }
                };
                match result {
                    Ok(()) => {
                        self.decode_failures = 0;
                        return Ok(t);
                    }
                    Err(message) => {
                        self.decode_failures += 1;
                        debug!(camera = %self.label, sequence = meta.sequence, %message, "frame skipped");
                        if self.decode_failures >= MAX_CONSECUTIVE_DECODE_FAILURES {
                            return Err(CameraError::Decode {
                                device: self.label.clone(),
                                format: self.mode.format.name(),
                                message: format!(
                                    "{} frames in a row; last: {message}",
                                    self.decode_failures
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
}
