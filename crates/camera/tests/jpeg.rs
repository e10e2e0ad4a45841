//! JPEG for the recorder: a rendered sim frame survives encoding with PSNR >= 30 dB.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use intervened_camera::sim::world::scene_from_world;
use intervened_camera::{
    decode_jpeg, encode_jpeg, encode_jpeg_into, psnr, CameraError, Image, Renderer, SimCameraPose,
};
use intervened_robot::RobotConfig;
use intervened_world::World;

fn sim_frame(side: u32) -> Image {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/sim-koch.toml");
    let mut w = World::new(&RobotConfig::load(&p).unwrap()).unwrap();
    w.reset(11);
    let mut q = vec![0.0; w.arm().joint_count()];
    q[w.arm().index().shoulder_lift] = 0.3;
    q[w.arm().index().gripper] = 1.0;
    let scene = scene_from_world(&w, &q).unwrap();
    let mut r = Renderer::new(&SimCameraPose::default(), side, side).unwrap();
    let mut img = Image::new(side, side);
    r.render(&scene, &mut img);
    img
}

#[test]
fn a_rendered_frame_round_trips_with_psnr_of_at_least_30_db() {
    for side in [96, 224] {
        let img = sim_frame(side);
        for quality in [75u8, 90] {
            let jpg = encode_jpeg(&img, quality).unwrap();
            let mut back = Image::default();
            decode_jpeg(&jpg, &mut back).unwrap();
            assert_eq!((back.width, back.height), (side, side));
            let p = psnr(&img, &back);
            assert!(p >= 30.0, "{side}px q{quality}: PSNR {p:.1} dB");
            assert!(
                jpg.len() < img.data.len() / 3,
                "{side}px q{quality}: {} bytes",
                jpg.len()
            );
        }
    }
}

#[test]
fn the_output_buffer_is_reused_and_bad_input_is_an_error() {
    let img = sim_frame(96);
    let mut buf = Vec::with_capacity(64 * 1024);
    let cap = buf.capacity();
    encode_jpeg_into(&img, 80, &mut buf).unwrap();
    let first = buf.clone();
    encode_jpeg_into(&img, 80, &mut buf).unwrap();
    assert_eq!(buf, first, "same image, same bytes");
    assert_eq!(buf.capacity(), cap);
    for q in [0u8, 101] {
        assert!(matches!(
            encode_jpeg(&img, q),
            Err(CameraError::Encode { .. })
        ));
    }
    let short = Image {
        width: 96,
        height: 96,
        data: vec![0; 10],
    };
    let msg = encode_jpeg(&short, 80).unwrap_err().to_string();
    assert!(msg.contains("96x96"), "{msg}");
}
