#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contact_registry::fuzzing::run(data));
