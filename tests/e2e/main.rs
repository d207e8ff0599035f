//! End to end: a real `kinkod` process on 127.0.0.1 with real TLS 1.3 and client certificates,
//! a real SoftHSM2 token, a real SQLite file and audit log, set up by `kinkod dev`; the test
//! plays the withdrawal pipeline, the officers (with their own decoding) and the auditor.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod chains;
mod cli;
mod console;
mod governance;
mod install;
mod operations;
mod packaging;
mod passkeys;
mod prometheus;
mod upgrade;
mod walkthrough;
