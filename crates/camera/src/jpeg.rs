//! JPEG encoding (for the recorder: Foxglove's `foxglove.CompressedImage` with
//! `format = "jpeg"`) with `jpeg-encoder`, and decoding (MJPEG cameras, tests) with
//! `zune-jpeg`. Both are pure Rust.

use jpeg_encoder::{ColorType, Encoder};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::error::CameraError;
use crate::image::Image;

/// Encodes `image` as a baseline JPEG (4:2:0) of `quality` 1..=100 into `out`, which is
/// cleared first and keeps its allocation across calls.
pub fn encode_jpeg_into(image: &Image, quality: u8, out: &mut Vec<u8>) -> Result<(), CameraError> {
    if !(1..=100).contains(&quality) {
        return Err(CameraError::Encode {
            message: format!("quality {quality} is outside 1..=100"),
        });
    }
    let (w, h) = (image.width, image.height);
    if image.data.len() != Image::byte_len(w, h) || w == 0 || h == 0 {
        return Err(CameraError::Encode {
            message: format!(
                "a {w}x{h} RGB image needs {} bytes, this one has {}",
                Image::byte_len(w, h),
                image.data.len()
            ),
        });
    }
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(CameraError::Encode {
            message: format!("{w}x{h} is larger than JPEG's 65535x65535"),
        });
    };
    out.clear();
    Encoder::new(&mut *out, quality)
        .encode(&image.data, w16, h16, ColorType::Rgb)
        .map_err(|e| CameraError::Encode {
            message: e.to_string(),
        })
}

/// Encodes `image` as a JPEG of `quality` 1..=100.
pub fn encode_jpeg(image: &Image, quality: u8) -> Result<Vec<u8>, CameraError> {
    let mut out = Vec::new();
    encode_jpeg_into(image, quality, &mut out)?;
    Ok(out)
}

/// Decodes a JPEG into RGB8, resizing `out` to the JPEG's size. Errors are the decoder's
/// message. For camera frames use [`decode_mjpeg`].
pub fn decode_jpeg(data: &[u8], out: &mut Image) -> Result<(), String> {
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(data), options);
    dec.decode_headers().map_err(|e| e.to_string())?;
    let info = dec.info().ok_or("no JPEG header")?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if out.width != w || out.height != h || out.data.len() != Image::byte_len(w, h) {
        out.resize(w, h);
    }
    dec.decode_into(&mut out.data).map_err(|e| e.to_string())
}

/// An APP0 segment with the `AVI1` tag: it tells `zune-jpeg` to use the standard Huffman
/// tables (JPEG Annex K.3) for any the stream leaves out.
const AVI1_APP0: [u8; 9] = [0xFF, 0xE0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00];

/// Whether the JPEG header before the first start-of-scan has a DHT (Huffman table) segment.
pub fn has_huffman_tables(jpg: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= jpg.len() && jpg[i] == 0xFF {
        match jpg[i + 1] {
            0xC4 => return true,
            0xDA => return false,
            0xFF => i += 1, // fill byte
            _ => i += 2 + usize::from(u16::from_be_bytes([jpg[i + 2], jpg[i + 3]])),
        }
    }
    false
}

/// Decodes one MJPEG frame from a camera. UVC cameras commonly send JPEGs without Huffman
/// tables (the AVI convention: decoders use the standard ones), which `zune-jpeg` decodes
/// only when the frame carries an `AVI1` APP0 tag; a frame with neither tables nor tag gets
/// the tag inserted (copied through `scratch`, which keeps its allocation).
pub fn decode_mjpeg(data: &[u8], scratch: &mut Vec<u8>, out: &mut Image) -> Result<(), String> {
    if data.len() < 4 || has_huffman_tables(data) {
        return decode_jpeg(data, out);
    }
    scratch.clear();
    scratch.extend_from_slice(&data[..2]);
    scratch.extend_from_slice(&AVI1_APP0);
    scratch.extend_from_slice(&data[2..]);
    decode_jpeg(scratch, out)
}

/// Peak signal-to-noise ratio of `b` against `a`, dB (infinite for identical images).
/// Panics if the sizes differ.
pub fn psnr(a: &Image, b: &Image) -> f64 {
    assert_eq!(
        (a.width, a.height),
        (b.width, b.height),
        "psnr of different sizes"
    );
    let se: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    if se == 0.0 {
        return f64::INFINITY;
    }
    let mse = se / a.data.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}
