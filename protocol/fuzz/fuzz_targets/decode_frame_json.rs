//! Fuzz target: `decode_frame_json` must return an error or a valid frame for any bytes, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = flevum_protocol::decode_frame_json(data) {
        assert!(flevum_protocol::codec::validate_frame(&frame).is_ok());
    }
});
