#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contact_proto::roundtrip::line(data));
