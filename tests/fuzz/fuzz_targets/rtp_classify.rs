#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rtprelay::fuzzing::rtp_classify(data));
