//! Fuzzes the audit record decoder (one log line) and the evidence checks on what it decodes.
#![no_main]

#[path = "../bodies/record.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
