//! Fuzzes witness policies (C2SP tlog-policy).
#![no_main]

#[path = "../bodies/tlog_policy.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
