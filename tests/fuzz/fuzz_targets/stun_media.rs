#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rtprelay::fuzzing::stun_media(data));
