//! One log line per audit record, once its commit is durable: signatures, decisions,
//! approvals, freezes, policy changes, refusals. The audit log is the record; these lines are
//! for the operators' log pipeline (journald, a SIEM), at target `kinko::audit`, with the
//! record's sequence number so that a line can be matched with its record. Payloads, policy
//! texts and signatures stay in the log only.

use kinko_store::log::Appended;

/// Logs `a` (called by the store for every record it commits).
pub(crate) fn log_record(a: &Appended) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&a.line) else {
        return;
    };
    let e = &v["event"];
    let kind = e["type"].as_str().unwrap_or("unknown");
    let principal = v["principal"].as_str().unwrap_or_default();
    let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    let request = field("request_id");
    let seq = a.seq;
    match kind {
        "signature_produced" => tracing::info!(
            target: "kinko::audit",
            seq,
            event = kind,
            principal,
            request,
            key = field("key_name"),
            transaction = field("transaction_id"),
            "signature produced"
        ),
        "refusal" => tracing::warn!(
            target: "kinko::audit",
            seq,
            event = kind,
            principal,
            request,
            code = field("code"),
            reason = field("message"),
            "refused"
        ),
        "decision" if e["outcome"] == "deny" => tracing::warn!(
            target: "kinko::audit",
            seq,
            event = kind,
            principal,
            request,
            outcome = "deny",
            explanation = field("explanation"),
            "denied by the policy"
        ),
        "decision" => tracing::info!(
            target: "kinko::audit",
            seq,
            event = kind,
            principal,
            request,
            outcome = e["outcome"].as_str().unwrap_or_default(),
            rules = e["rules"].to_string(),
            "policy decision"
        ),
        "freeze" | "unfreeze" => tracing::warn!(
            target: "kinko::audit",
            seq,
            event = kind,
            principal,
            reason = field("reason"),
            "{}",
            if kind == "freeze" { "signing frozen" } else { "signing unfrozen" }
        ),
        "policy_installed" | "policy_proposed" | "key_created" => tracing::warn!(
            target: "kinko::audit",
            seq,
            event = kind,
            principal,
            request,
            policy = field("policy_hash"),
            key = field("key_name"),
            "{}",
            kind.replace('_', " ")
        ),
        "approval" | "rejection" | "governance_vote" => tracing::info!(
            target: "kinko::audit",
            seq,
            event = kind,
            principal,
            request,
            officer = e["approval"]["officer"].as_str().unwrap_or_default(),
            "{}",
            kind.replace('_', " ")
        ),
        _ => tracing::info!(
            target: "kinko::audit",
            seq,
            event = kind,
            principal,
            request,
            key = field("key_name"),
            "{}",
            kind.replace('_', " ")
        ),
    }
}
