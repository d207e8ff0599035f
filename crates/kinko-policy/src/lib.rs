#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod approval;
mod authorize;
mod error;
mod eval;
pub mod governance;
mod load;
mod model;
mod raw;
pub mod request;
pub mod velocity;
pub mod webauthn;

pub use approval::{
    ApprovalMessage, FreezeId, QuorumResult, QuorumState, SignedApproval, Subject, Verdict,
    evaluate_quorum,
};
pub use authorize::{Authorization, authorize};
pub use error::{Diagnostic, Diagnostics, PolicyError};
pub use eval::{
    Check, Context, Decision, DenyCode, Outcome, RuleRef, Skipped, evaluate, velocity_entries,
    window_start,
};
pub use load::{
    MAX_BOOK_ENTRIES, MAX_BOOKS, MAX_DURATION_SECS, MAX_FEE_BPS, MAX_KEYS, MAX_LIST, MAX_OFFICERS,
    MAX_POLICY_BYTES, MAX_REQUESTERS, MAX_RULES, MAX_TEXT, MAX_TOKENS,
};
pub use model::{
    AddressBook, AssetId, BookEntry, FreezeGovernance, Governance, InstallGovernance, KeyEntry,
    Officer, POLICY_HASH_DOMAIN, Policy, PolicyHash, QuorumRequirement, Requester, Rule,
    RuleAction, TimeWindow, UnfreezeGovernance, VelocityLimit, normalize_address,
};
pub use velocity::{
    EmptyHistory, HistoryUnavailable, VelocityHistory, VelocityLedger, WindowTotals, WithPending,
};

impl Policy {
    /// Loads and validates a policy file (`kinko policy check FILE`). On failure the error is
    /// [`PolicyError::Invalid`] with every problem found, each naming its line.
    pub fn from_toml(bytes: &[u8]) -> Result<Policy, PolicyError> {
        load::load(bytes)
    }
}

/// `kinko policy explain`: evaluates and renders the decision as text.
pub fn explain(policy: &Policy, intent: &kinko_intent::Intent, ctx: &Context<'_>) -> String {
    evaluate(policy, intent, ctx).to_text()
}

#[cfg(test)]
mod tests;
