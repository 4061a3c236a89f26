//! Fuzz target: `decode_datagram` must return an error or a valid value for any bytes, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = flevum_protocol::decode_datagram(data, 2_000_000_000_000) {
        let _ = format!("{v:?}");
    }
});
