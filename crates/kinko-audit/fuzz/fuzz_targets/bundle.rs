//! Fuzzes inclusion-proof bundles (`kinko audit check-proof`).
#![no_main]

#[path = "../bodies/bundle.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
