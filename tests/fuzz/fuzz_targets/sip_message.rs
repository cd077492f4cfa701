#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzzing::sip_message(data));
