//! Own test binary: it sets an environment variable, which must not race other tests.

use intervened_teleop::{Backend, GamepadSource, GilrsSource};

#[test]
fn custom_sdl_mappings_in_the_environment_are_accepted() {
    // A custom mapping line for an imaginary pad (SDL format: guid,name,bindings,platform).
    std::env::set_var(
        "SDL_GAMECONTROLLERCONFIG",
        "03000000de2800000112000001000000,Test Pad,a:b0,b:b1,x:b2,y:b3,leftshoulder:b4,\
         rightshoulder:b5,back:b6,start:b7,leftx:a0,lefty:a1,rightx:a3,righty:a4,\
         lefttrigger:a2,righttrigger:a5,platform:Linux,",
    );
    let src = GilrsSource::start().unwrap();
    if !std::path::Path::new("/dev/input").exists() {
        assert_eq!(src.backend(), &Backend::Running);
        assert!(src.pads().is_empty());
    }
}
