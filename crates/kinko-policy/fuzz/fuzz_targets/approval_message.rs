//! Fuzzes the approval message decoder and quorum evaluation over undecodable approvals.
#![no_main]

#[path = "../bodies/approval_message.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
