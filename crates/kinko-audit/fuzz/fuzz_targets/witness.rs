//! Fuzzes the witness's `add-checkpoint` request parser and decision.
#![no_main]

#[path = "../bodies/witness.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
