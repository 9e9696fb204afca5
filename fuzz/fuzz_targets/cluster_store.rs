#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presence_proto::fuzzing::cluster_store(data));
