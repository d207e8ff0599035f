//! Fuzzes the signed-note opener, the checkpoint parser and the verifier key parser.
#![no_main]

#[path = "../bodies/note.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
