//! Fuzzes the offline verifier over a whole log directory written from the input bytes.
#![no_main]

#[path = "../bodies/verify_dir.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
