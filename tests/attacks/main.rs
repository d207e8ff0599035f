//! The red-team suite: every attack of ../shared/THREATS.md that reaches the signer, against a
//! real kinkod (TLS 1.3 with client certificates, SoftHSM2, SQLite, the audit log). Each attack
//! must be refused, leave state and velocity unchanged, and be audited where it reached the
//! daemon. docs/security.md maps threats to these tests.
//!
//! Slow variants (10,000 pending requests, 20 kills under load) run with `KINKO_SLOW_TESTS=1`;
//! the normal run executes a fast variant of every scenario.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod approvals;
mod audit_tamper;
mod controls;
mod database;
mod disk_full;
mod drill;
mod exhaustion;
mod faults;
mod governance;
mod hsm_faults;
mod pipeline;
mod proxy;
mod replicas;
mod store_edits;
mod witnesses;

/// Whether the slow variants run.
#[allow(dead_code)] // used by the scenarios that have a slow variant
pub(crate) fn slow() -> bool {
    std::env::var_os("KINKO_SLOW_TESTS").is_some_and(|v| v == "1")
}
