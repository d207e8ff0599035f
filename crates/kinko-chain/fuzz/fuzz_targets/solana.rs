//! Fuzzes the Solana message decoder and finalizer: any byte string → intent or typed error.
#![no_main]

#[path = "../bodies/solana.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
