#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contact_proto::roundtrip::im_datagram(data));
