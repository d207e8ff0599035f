//! Fuzzes protobuf decoding and validation of every message a client sends.
#![no_main]

#[path = "../bodies/requests.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
