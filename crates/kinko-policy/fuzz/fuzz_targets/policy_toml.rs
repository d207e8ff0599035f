//! Fuzzes the policy loader and evaluation: any bytes → a policy or line-numbered diagnostics.
#![no_main]

#[path = "../bodies/policy_toml.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
