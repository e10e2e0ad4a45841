//! Camera video for the LeRobot export: images aligned to frames, piped as raw RGB to the
//! `ffmpeg` program, which writes H.264 (`libx264`, `yuv420p`) MP4.
//!
//! Why the CLI and not a library binding: Debian's `ffmpeg` package is one `apt-get install`
//! away, needs no build-time headers, and its H.264 decodes with both of LeRobot's backends
//! (torchcodec and PyAV). H.264 rather than LeRobot's default AV1: `libx264` is much faster
//! on two cores, and `-g 2` keeps LeRobot's random access cheap as its AV1 setting does.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::JoinHandle;

use intervened_camera::{decode_jpeg, Image};

use crate::error::{EpisodeError, Result};
use crate::reader::Episode;

/// The codec written, as LeRobot's `video.codec` names it (PyAV's canonical name).
pub const VIDEO_CODEC: &str = "h264";
pub const VIDEO_PIX_FMT: &str = "yuv420p";
/// A keyframe every 2 frames, as LeRobot's own encoder: any frame decodes from at most one
/// predecessor, which keeps random access in training cheap.
const GOP: u32 = 2;
/// Visually lossless for x264 (the PSNR test asks for 30 dB; this gives well above 40).
const CRF: u32 = 18;

/// One camera's MP4, being written by an `ffmpeg` child process.
pub(crate) struct VideoEncoder {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
}

fn ffmpeg_missing(e: &std::io::Error) -> EpisodeError {
    EpisodeError::FfmpegMissing {
        detail: e.to_string(),
    }
}

impl VideoEncoder {
    /// Starts `ffmpeg` writing `path` from raw `width` x `height` RGB frames at `fps`.
    pub fn spawn(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self> {
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) || width == 0 || height == 0 {
            return Err(EpisodeError::Export(format!(
                "{}: {width}x{height} images cannot be encoded as {VIDEO_PIX_FMT} video, which \
                 needs even sizes; configure the camera with an even width and height",
                path.display()
            )));
        }
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
            .args(["-s", &format!("{width}x{height}")])
            .args(["-framerate", &fps.to_string()])
            .args(["-i", "pipe:0"])
            .args(["-c:v", "libx264", "-preset", "veryfast"])
            .args(["-crf", &CRF.to_string(), "-g", &GOP.to_string(), "-bf", "0"])
            .args(["-pix_fmt", VIDEO_PIX_FMT, "-an"])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ffmpeg_missing(&e))?;
        let stdin = child.stdin.take();
        // Drained on a thread so that a chatty ffmpeg can never block on a full pipe.
        let stderr = child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                text
            })
        });
        Ok(Self {
            path: path.to_path_buf(),
            width,
            height,
            frames: 0,
            child,
            stdin,
            stderr,
        })
    }

    fn failed(&mut self, what: &str) -> EpisodeError {
        drop(self.stdin.take());
        let _ = self.child.wait();
        let log = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        EpisodeError::Export(format!(
            "{}: ffmpeg {what}: {}",
            self.path.display(),
            log.trim()
        ))
    }

    /// Appends one frame (`width * height * 3` RGB bytes).
    pub fn push(&mut self, rgb: &[u8]) -> Result<()> {
        let res = match self.stdin.as_mut() {
            Some(s) => s.write_all(rgb),
            None => Err(std::io::Error::other("stdin closed")),
        };
        match res {
            Ok(()) => {
                self.frames += 1;
                Ok(())
            }
            Err(e) => Err(self.failed(&format!("stopped taking frames ({e})"))),
        }
    }

    /// Closes the input and waits for the MP4 to be complete.
    pub fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .map_err(|e| EpisodeError::io(&self.path, e))?;
        if !status.success() {
            return Err(self.failed(&format!("exited with {status}")));
        }
        Ok(())
    }
}

impl Drop for VideoEncoder {
    fn drop(&mut self) {
        // An export that failed elsewhere must not leave an ffmpeg behind.
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The log time the writer gave a frame at episode time `t` (see the writer's `log_time`).
fn frame_log_time(started_at: u64, t: f64) -> u64 {
    let offset = if t.is_finite() && t > 0.0 {
        (t * 1e9) as u64
    } else {
        0
    };
    started_at.saturating_add(offset)
}

/// For each frame of `ep`, which image of camera `cam` (an index into
/// `ep.images[cam].images`) it shows: the one whose capture time is the frame's
/// `image_capture_ns`, else the newest image logged at or before the frame, else the first
/// image. `None` only when the camera has no image at all.
pub(crate) fn align_images(ep: &Episode, cam: usize) -> Vec<Option<usize>> {
    let images = ep.images.get(cam).map_or(&[][..], |c| &c.images[..]);
    let mut by_capture: Vec<usize> = (0..images.len()).collect();
    by_capture.sort_by_key(|&i| images[i].capture_ns);
    let mut by_log: Vec<usize> = (0..images.len()).collect();
    by_log.sort_by_key(|&i| images[i].log_time);
    ep.frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let stamp = ep
                .image_capture_ns
                .get(i)
                .and_then(|v| v.get(cam))
                .copied()
                .filter(|&s| s != 0);
            if let Some(s) = stamp {
                if let Ok(k) = by_capture.binary_search_by_key(&s, |&j| images[j].capture_ns) {
                    return by_capture.get(k).copied();
                }
            }
            let lt = frame_log_time(ep.meta.started_at, f.t);
            let n = by_log.partition_point(|&j| images[j].log_time <= lt);
            by_log.get(n.saturating_sub(1)).copied()
        })
        .collect()
}

/// Per-channel pixel statistics of a camera's exported frames, as LeRobot keeps them for image
/// features in `stats.json` (values scaled to [0, 1], each stat shaped `[3, 1, 1]`): exact,
/// from a 256-bin histogram per channel.
#[derive(Debug, Clone)]
pub(crate) struct PixelStats {
    hist: [[u64; 256]; 3],
    /// Frames counted.
    pub frames: u64,
}

impl Default for PixelStats {
    fn default() -> Self {
        Self {
            hist: [[0; 256]; 3],
            frames: 0,
        }
    }
}

impl PixelStats {
    fn of_image(img: &[u8]) -> Self {
        let mut s = Self::default();
        for px in img.chunks_exact(3) {
            for (c, &v) in px.iter().enumerate() {
                s.hist[c][usize::from(v)] += 1;
            }
        }
        s.frames = 1;
        s
    }

    fn add(&mut self, o: &PixelStats) {
        for (a, b) in self.hist.iter_mut().zip(&o.hist) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.frames += o.frames;
    }

    /// `{min, max, mean, std, q01.., count}` with LeRobot's image shapes.
    pub fn to_json(&self, quantiles: &[(&str, f64)]) -> serde_json::Value {
        let per_channel = |f: &dyn Fn(&[u64; 256]) -> f64| -> serde_json::Value {
            serde_json::json!(self
                .hist
                .iter()
                .map(|h| vec![vec![f(h)]])
                .collect::<Vec<_>>())
        };
        let total = |h: &[u64; 256]| h.iter().sum::<u64>().max(1) as f64;
        let mean = |h: &[u64; 256]| {
            h.iter()
                .enumerate()
                .map(|(v, &n)| v as f64 * n as f64)
                .sum::<f64>()
                / total(h)
                / 255.0
        };
        let quantile = |h: &[u64; 256], q: f64| {
            let rank = (q * (total(h) - 1.0)).round() as u64;
            let mut seen = 0;
            for (v, &n) in h.iter().enumerate() {
                seen += n;
                if seen > rank {
                    return v as f64 / 255.0;
                }
            }
            1.0
        };
        let mut m = serde_json::Map::new();
        m.insert(
            "min".into(),
            per_channel(&|h| h.iter().position(|&n| n > 0).unwrap_or(0) as f64 / 255.0),
        );
        m.insert(
            "max".into(),
            per_channel(&|h| h.iter().rposition(|&n| n > 0).unwrap_or(0) as f64 / 255.0),
        );
        m.insert("mean".into(), per_channel(&mean));
        m.insert(
            "std".into(),
            per_channel(&|h| {
                let mu = mean(h);
                let var = h
                    .iter()
                    .enumerate()
                    .map(|(v, &n)| (v as f64 / 255.0 - mu).powi(2) * n as f64)
                    .sum::<f64>()
                    / total(h);
                var.sqrt()
            }),
        );
        for &(name, q) in quantiles {
            m.insert(name.into(), per_channel(&|h| quantile(h, q)));
        }
        m.insert("count".into(), serde_json::json!([self.frames]));
        serde_json::Value::Object(m)
    }
}

/// Pipes episode `ep`'s camera `cam` into `enc`, one image per frame (see [`align_images`]);
/// frames with no image at all are black. Adds every frame to `stats`. Returns how many frames
/// had no image.
pub(crate) fn encode_episode(
    ep: &Episode,
    cam: usize,
    enc: &mut VideoEncoder,
    stats: &mut PixelStats,
) -> Result<u64> {
    let black = vec![0u8; Image::byte_len(enc.width, enc.height)];
    let black_stats = PixelStats::of_image(&black);
    let mut decoded_stats = PixelStats::default();
    let mut decoded = Image::default();
    let mut current: Option<usize> = None;
    let mut missing = 0;
    let images = ep.images.get(cam).map_or(&[][..], |c| &c.images[..]);
    for pick in align_images(ep, cam) {
        let Some(k) = pick else {
            missing += 1;
            enc.push(&black)?;
            stats.add(&black_stats);
            continue;
        };
        if current != Some(k) {
            let img = &images[k];
            decode_jpeg(&img.jpeg, &mut decoded).map_err(|e| {
                EpisodeError::Export(format!(
                    "{}: image captured at {} ns does not decode: {e}",
                    ep.path.display(),
                    img.capture_ns
                ))
            })?;
            if (decoded.width, decoded.height) != (enc.width, enc.height) {
                return Err(EpisodeError::Export(format!(
                    "{}: an image is {}x{}, the camera is declared {}x{}",
                    ep.path.display(),
                    decoded.width,
                    decoded.height,
                    enc.width,
                    enc.height
                )));
            }
            decoded_stats = PixelStats::of_image(&decoded.data);
            current = Some(k);
        }
        enc.push(&decoded.data)?;
        stats.add(&decoded_stats);
    }
    Ok(missing)
}
