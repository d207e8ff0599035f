//! Fuzzes the Ethereum transaction decoder and finalizer: any byte string → intent or typed error.
#![no_main]

#[path = "../bodies/ethereum.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
