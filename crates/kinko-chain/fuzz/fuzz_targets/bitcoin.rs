//! Fuzzes the Bitcoin PSBT decoder and finalizer: any byte string → intent or typed error.
#![no_main]

#[path = "../bodies/bitcoin.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
