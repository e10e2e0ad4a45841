//! V4L2 without a camera: negotiation, YUYV conversion, MJPEG decoding, a missing device.

use intervened_camera::jpeg::has_huffman_tables;
use intervened_camera::v4l2::{describe_offers, DEFAULT_PREFERENCE};
use intervened_camera::{
    decode_jpeg, decode_mjpeg, encode_jpeg, negotiate, psnr, yuyv_to_rgb, CameraError, FormatOffer,
    Image, Negotiated, PixelFormat,
};

fn usual_webcam() -> Vec<FormatOffer> {
    vec![
        FormatOffer::new(b"YUYV", 640, 480, 30),
        FormatOffer::new(b"YUYV", 640, 480, 15),
        FormatOffer::new(b"YUYV", 1280, 720, 10),
        FormatOffer::new(b"MJPG", 640, 480, 30),
        FormatOffer::new(b"MJPG", 1280, 720, 30),
        FormatOffer::new(b"MJPG", 1920, 1080, 30),
        FormatOffer::new(b"H264", 1920, 1080, 30),
    ]
}

#[test]
fn negotiation_prefers_mjpeg_then_yuyv_at_the_exact_size_and_rate() {
    let offers = usual_webcam();
    let n = negotiate("cam", &offers, 640, 480, 30, &DEFAULT_PREFERENCE).unwrap();
    assert_eq!(
        n,
        Negotiated {
            format: PixelFormat::Mjpeg,
            width: 640,
            height: 480,
            interval: [1, 30]
        }
    );
    // Only YUYV has 640x480 at 15 fps.
    let n = negotiate("cam", &offers, 640, 480, 15, &DEFAULT_PREFERENCE).unwrap();
    assert_eq!((n.format, n.interval), (PixelFormat::Yuyv, [1, 15]));
    // A preference for YUYV is honoured.
    let n = negotiate(
        "cam",
        &offers,
        640,
        480,
        30,
        &[PixelFormat::Yuyv, PixelFormat::Mjpeg],
    )
    .unwrap();
    assert_eq!(n.format, PixelFormat::Yuyv);
    // NTSC-style 29.97 fps counts as 30, and its exact interval is kept.
    let ntsc = vec![FormatOffer {
        fourcc: *b"MJPG",
        width: 320,
        height: 240,
        interval: [1001, 30000],
    }];
    let n = negotiate("cam", &ntsc, 320, 240, 30, &DEFAULT_PREFERENCE).unwrap();
    assert_eq!(n.interval, [1001, 30000]);
    // The closest rate wins when several are within tolerance.
    let close = vec![
        FormatOffer {
            fourcc: *b"YUYV",
            width: 320,
            height: 240,
            interval: [1001, 30000],
        },
        FormatOffer::new(b"YUYV", 320, 240, 30),
    ];
    let n = negotiate("cam", &close, 320, 240, 30, &DEFAULT_PREFERENCE).unwrap();
    assert_eq!(n.interval, [1, 30]);
}

#[test]
fn negotiation_errors_name_the_device_and_list_the_offers() {
    let offers = usual_webcam();
    for (w, h, fps) in [(800, 600, 30), (640, 480, 60), (1920, 1080, 15)] {
        let err = negotiate(
            "front (/dev/video0)",
            &offers,
            w,
            h,
            fps,
            &DEFAULT_PREFERENCE,
        )
        .unwrap_err();
        assert!(matches!(err, CameraError::Unsupported { .. }));
        let msg = err.to_string();
        assert!(msg.contains("front (/dev/video0)"), "{msg}");
        assert!(
            msg.contains(&format!("{w}x{h} @ {fps} fps as MJPG or YUYV")),
            "{msg}"
        );
        assert!(
            msg.contains("YUYV 640x480 @ 30/15 fps")
                && msg.contains("MJPG 1920x1080 @ 30 fps")
                && msg.contains("H264 1920x1080 @ 30 fps (not decoded here)"),
            "{msg}"
        );
    }
    // Only H.264 offered at the size: still unsupported.
    let err = negotiate("cam", &offers[6..], 1920, 1080, 30, &DEFAULT_PREFERENCE).unwrap_err();
    assert!(err.to_string().contains("not decoded here"));
    // A device that lists nothing.
    let msg = negotiate("cam", &[], 640, 480, 30, &DEFAULT_PREFERENCE)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("it offers: nothing"), "{msg}");
    assert_eq!(
        describe_offers(&[FormatOffer {
            fourcc: *b"MJPG",
            width: 320,
            height: 240,
            interval: [1001, 30000],
        }]),
        "MJPG 320x240 @ 29.97 fps"
    );
}

/// Packs pixel pairs `(y0, y1, u, v)` into a YUYV row.
fn yuyv(pairs: &[(u8, u8, u8, u8)]) -> Vec<u8> {
    pairs
        .iter()
        .flat_map(|&(y0, y1, u, v)| [y0, u, y1, v])
        .collect()
}

#[test]
fn yuyv_converts_with_bt601_limited_range() {
    // Black, white, mid grey; BT.601 red, green, blue (their studio-swing YUV values).
    let cases: [((u8, u8, u8), [u8; 3]); 6] = [
        ((16, 128, 128), [0, 0, 0]),
        ((235, 128, 128), [255, 255, 255]),
        ((126, 128, 128), [128, 128, 128]),
        ((81, 90, 240), [255, 0, 0]),
        ((145, 54, 34), [0, 255, 0]),
        ((41, 240, 110), [0, 0, 255]),
    ];
    for ((y, u, v), rgb) in cases {
        let src = yuyv(&[(y, y, u, v)]);
        let mut out = [0u8; 6];
        yuyv_to_rgb(&src, 4, 2, 1, &mut out).unwrap();
        for (k, px) in out.chunks(3).enumerate() {
            for c in 0..3 {
                assert!(
                    (i16::from(px[c]) - i16::from(rgb[c])).abs() <= 1,
                    "YUV ({y}, {u}, {v}) pixel {k} -> {px:?}, expected {rgb:?}"
                );
            }
        }
    }
    // Below black and above white clamp.
    let mut out = [0u8; 6];
    yuyv_to_rgb(&yuyv(&[(0, 255, 128, 128)]), 4, 2, 1, &mut out).unwrap();
    assert_eq!(out, [0, 0, 0, 255, 255, 255]);
}

#[test]
fn yuyv_respects_the_stride_and_checks_sizes() {
    // 2x2 with rows padded to 8 bytes; the padding is garbage.
    let mut src = yuyv(&[(16, 235, 128, 128)]);
    src.extend_from_slice(&[99, 99, 99, 99]);
    src.extend(yuyv(&[(235, 16, 128, 128)]));
    let mut out = [0u8; 12];
    yuyv_to_rgb(&src, 8, 2, 2, &mut out).unwrap();
    assert_eq!(out, [0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0]);
    // The last row needs no padding.
    yuyv_to_rgb(&src[..12], 8, 2, 2, &mut out).unwrap();
    assert!(yuyv_to_rgb(&src[..11], 8, 2, 2, &mut out).is_err());
    assert!(yuyv_to_rgb(&src, 2, 2, 2, &mut out).is_err());
    assert!(yuyv_to_rgb(&src, 8, 3, 1, &mut [0u8; 9]).is_err());
    assert!(yuyv_to_rgb(&src, 8, 2, 2, &mut [0u8; 11]).is_err());
}

#[test]
fn mjpeg_frames_decode_to_the_encoded_image() {
    // A smooth gradient with a hard-edged square: what a camera frame roughly looks like.
    let (w, h) = (160u32, 120u32);
    let mut img = Image::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 3) as usize;
            let inside = (40..80).contains(&x) && (30..70).contains(&y);
            img.data[i] = if inside { 220 } else { (x * 255 / w) as u8 };
            img.data[i + 1] = if inside { 30 } else { (y * 255 / h) as u8 };
            img.data[i + 2] = 128;
        }
    }
    let jpg = encode_jpeg(&img, 90).unwrap();
    assert_eq!(&jpg[..2], &[0xFF, 0xD8]);
    let mut out = Image::new(1, 1);
    decode_jpeg(&jpg, &mut out).unwrap();
    assert_eq!((out.width, out.height), (w, h));
    let p = psnr(&img, &out);
    assert!(p > 30.0, "PSNR {p:.1} dB");
    let mut scratch = Vec::new();
    let mut out2 = Image::default();
    decode_mjpeg(&jpg, &mut scratch, &mut out2).unwrap();
    assert_eq!(out2, out);
    // UVC cameras' MJPEG often leaves out the Huffman tables (DHT) and relies on the standard
    // ones (which the encoder used here): the same frame without its DHT segments decodes
    // to the same image.
    let stripped = strip_dht(&jpg);
    assert!(stripped.len() < jpg.len(), "the encoder wrote DHT segments");
    assert!(has_huffman_tables(&jpg) && !has_huffman_tables(&stripped));
    let mut out3 = Image::default();
    decode_mjpeg(&stripped, &mut scratch, &mut out3).unwrap();
    assert_eq!(out3, out);
    // Garbage is an error; a truncated frame does not panic (the decoder may fill the rest).
    assert!(decode_jpeg(b"not a jpeg", &mut out).is_err());
    let _ = decode_jpeg(&jpg[..jpg.len() / 3], &mut out);
}

/// The JPEG without its DHT (0xFFC4) segments, as a UVC camera sends MJPEG.
fn strip_dht(jpg: &[u8]) -> Vec<u8> {
    let mut out = jpg[..2].to_vec();
    let mut i = 2;
    while i + 4 <= jpg.len() && jpg[i] == 0xFF {
        let marker = jpg[i + 1];
        if marker == 0xDA {
            break; // start of scan: the entropy-coded data follows
        }
        let len = usize::from(u16::from_be_bytes([jpg[i + 2], jpg[i + 3]]));
        if marker != 0xC4 {
            out.extend_from_slice(&jpg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpg[i..]);
    out
}

#[cfg(all(target_os = "linux", feature = "v4l2"))]
#[test]
fn a_missing_device_is_a_clear_error() {
    use intervened_camera::{CameraConfig, V4l2Camera};
    let cfg = CameraConfig {
        name: "front".into(),
        device: "/dev/video-does-not-exist".into(),
        width: 640,
        height: 480,
        fps: 30,
        max_age_ms: None,
        pose: None,
    };
    cfg.validate(0).unwrap();
    let err = V4l2Camera::open(&cfg).unwrap_err();
    assert!(matches!(err, CameraError::Open { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("front (/dev/video-does-not-exist)") && msg.contains("no such device"),
        "{msg}"
    );
    assert!(msg.contains("fix:"), "{msg}");
    // A simulated config is refused, too.
    let sim = CameraConfig {
        device: "sim".into(),
        width: 96,
        height: 96,
        ..cfg
    };
    assert!(V4l2Camera::open(&sim)
        .unwrap_err()
        .to_string()
        .contains("simulated"));
}

#[cfg(all(target_os = "linux", feature = "v4l2"))]
#[test]
fn a_device_that_is_not_a_camera_is_a_clear_error() {
    use intervened_camera::{CameraConfig, V4l2Camera};
    // /dev/null exists but is no V4L2 device: the capability query fails.
    let cfg = CameraConfig {
        name: "front".into(),
        device: "/dev/null".into(),
        width: 640,
        height: 480,
        fps: 30,
        max_age_ms: None,
        pose: None,
    };
    let msg = V4l2Camera::open(&cfg).unwrap_err().to_string();
    assert!(msg.contains("front (/dev/null)"), "{msg}");
}
