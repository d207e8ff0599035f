//! Fuzzes the inclusion and consistency proof verifiers against a real tree.
#![no_main]

#[path = "../bodies/proof.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
