//! Evaluating an intent against the policy: first matching rule, deny by default, explained.

use std::fmt::Write as _;

use jiff::civil::Time;
use jiff::{SignedDuration, Timestamp};
use kinko_intent::{Amount, FeeDetail, Intent, IntentError, native_asset};
use serde::Serialize;

use crate::model::{
    AssetId, Policy, PolicyHash, QuorumRequirement, Rule, RuleAction, TimeWindow, normalize_address,
};
use crate::velocity::VelocityHistory;

/// What the evaluation needs besides the policy and the intent.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The time of the evaluation (the daemon's clock; re-evaluated at signing time).
    pub now: Timestamp,
    /// The authenticated principal that submitted the request (a requester id).
    pub requester: &'a str,
    /// The name of the signing key the request is for.
    pub key: &'a str,
    /// Whether signing is frozen.
    pub frozen: bool,
    /// What was already signed.
    pub history: &'a dyn VelocityHistory,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("now", &self.now)
            .field("requester", &self.requester)
            .field("key", &self.key)
            .field("frozen", &self.frozen)
            .finish_non_exhaustive()
    }
}

/// A stable code for why a request was denied (for the daemon's gRPC status details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenyCode {
    /// Signing is frozen.
    Frozen,
    /// The requester is not listed in the policy.
    UnknownRequester,
    /// The requester may not use this key.
    RequesterKeyNotAllowed,
    /// The signing key is not in the policy.
    UnknownKey,
    /// The intent's chain or network differs from the key's.
    KeyChainMismatch,
    /// The intent's amounts could not be summed.
    InvalidIntent,
    /// No rule matched (deny by default).
    NoRuleMatched,
    /// The matched rule denies.
    RuleDenies,
    /// The matched rule's time windows do not contain the current time.
    OutsideTimeWindow,
    /// The intent's worst-case fee exceeds the matched rule's `max_fee` or `max_fee_bps`.
    FeeTooHigh,
    /// A velocity limit of the matched rule would be exceeded.
    VelocityExceeded,
    /// The velocity history could not be read.
    HistoryUnavailable,
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Refused.
    Deny {
        /// Stable code.
        code: DenyCode,
        /// Why, for people.
        reason: String,
    },
    /// Allowed once this quorum approves.
    RequireApprovals {
        /// The quorum.
        quorum: QuorumRequirement,
    },
}

/// One condition checked, with the value it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`key`, `chain`, `asset`, `kind`, `destination`, `amount`, `fee`,
    /// `window`, `velocity`, …).
    pub condition: &'static str,
    /// What the rule wants.
    pub expected: String,
    /// What the intent or context had.
    pub saw: String,
    /// Whether it held.
    pub passed: bool,
}

/// The matched rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    /// Its name.
    pub name: String,
    /// Its position, 0-based.
    pub index: usize,
    /// Its line in the policy file.
    pub line: usize,
}

/// A rule before the match that did not apply, with the first matcher that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The rule.
    pub rule: RuleRef,
    /// The failed matcher.
    pub failed: Check,
}

/// A policy decision that explains itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The policy that decided.
    pub policy_hash: PolicyHash,
    /// The evaluation time, RFC 3339.
    pub at: String,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The matched rule, if any.
    pub rule: Option<RuleRef>,
    /// Preliminary checks, the matched rule's matchers and its conditions, in order.
    pub checks: Vec<Check>,
    /// Rules tried before the match.
    pub skipped: Vec<Skipped>,
}

impl Decision {
    /// Whether the request is denied.
    pub fn is_denied(&self) -> bool {
        matches!(self.outcome, Outcome::Deny { .. })
    }

    /// The quorum, when the decision requires approvals.
    pub fn quorum(&self) -> Option<&QuorumRequirement> {
        match &self.outcome {
            Outcome::RequireApprovals { quorum } => Some(quorum),
            Outcome::Deny { .. } => None,
        }
    }

    /// The decision as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The decision as text for people (`kinko policy explain`).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "policy {}", self.policy_hash);
        let _ = writeln!(s, "at     {}", self.at);
        for sk in &self.skipped {
            let _ = writeln!(
                s,
                "rule {:?} (line {}) skipped: {} wants {}, saw {}",
                sk.rule.name, sk.rule.line, sk.failed.condition, sk.failed.expected, sk.failed.saw
            );
        }
        match &self.rule {
            Some(r) => {
                let _ = writeln!(s, "matched rule {:?} (line {})", r.name, r.line);
            }
            None => {
                let _ = writeln!(s, "no rule matched");
            }
        }
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  [{}] {:<11} wants {}; saw {}",
                if c.passed { "ok  " } else { "FAIL" },
                c.condition,
                c.expected,
                c.saw
            );
        }
        match &self.outcome {
            Outcome::Deny { code, reason } => {
                let _ = writeln!(s, "DENIED ({code:?}): {reason}");
            }
            Outcome::RequireApprovals { quorum } => {
                let _ = writeln!(
                    s,
                    "REQUIRES APPROVAL: {} officer(s) with roles {:?}{}, approvals valid at most {:#}{}",
                    quorum.count,
                    quorum.roles,
                    if quorum.distinct_groups > 1 {
                        format!(", from {} distinct groups", quorum.distinct_groups)
                    } else {
                        String::new()
                    },
                    quorum.lifetime,
                    if quorum.reject_blocks {
                        "; one reject blocks"
                    } else {
                        ""
                    }
                );
            }
        }
        s
    }
}

fn check(condition: &'static str, expected: String, saw: String, passed: bool) -> Check {
    Check {
        condition,
        expected,
        saw,
        passed,
    }
}

fn fmt_amount(a: Amount, rule: &Rule) -> String {
    match &rule.asset {
        Some((_, sym, dec)) => format!("{} {sym}", a.format_units(*dec)),
        None => format!("{a} base units"),
    }
}

/// What the daemon records in the velocity history once an intent is signed — the same
/// quantities the velocity limits compare — one entry per asset the intent spends:
///
/// * an intent in the chain's native asset: one entry, the total out **plus** the worst-case fee
///   (`fee.max`);
/// * a token intent: the token and its total out, then the chain's native asset and the
///   worst-case fee (left out when the fee is zero, as for a Safe transaction, whose executor
///   pays the gas).
///
/// Fails only when a sum overflows 256 bits ([`evaluate`] denies such an intent).
pub fn velocity_entries(intent: &Intent) -> Result<Vec<(AssetId, Amount)>, IntentError> {
    let asset = AssetId::of_intent_asset(intent.chain, &intent.asset);
    let total = intent.total_out()?;
    let fee = intent.fee.max;
    Ok(match asset {
        AssetId::Native(_) => vec![(
            asset,
            total.checked_add(fee).ok_or(IntentError::AmountOverflow)?,
        )],
        AssetId::Token(..) if fee.is_zero() => vec![(asset, total)],
        AssetId::Token(..) => vec![(asset, total), (AssetId::Native(intent.chain), fee)],
    })
}

/// `fee ≤ total × bps / 10,000`, exactly (no division); fails closed when both sides overflow.
fn fee_within_bps(fee: Amount, total: Amount, bps: u32) -> bool {
    let lhs = fee.checked_mul(Amount::from_u64(10_000));
    let rhs = total.checked_mul(Amount::from_u64(u64::from(bps)));
    match (lhs, rhs) {
        (Some(l), Some(r)) => l <= r,
        // The right side is at least 2^256, the left side below it.
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// How the decoder reached the worst-case fee, for the explanation.
fn fee_detail_text(detail: &FeeDetail) -> String {
    match detail {
        FeeDetail::Ethereum {
            gas_limit,
            max_fee_per_gas,
            ..
        } => format!("gas limit {gas_limit} × max fee per gas {max_fee_per_gas} wei"),
        FeeDetail::Bitcoin { vsize, sat_per_kvb } => format!(
            "inputs − outputs, {} sat/vB over {vsize} vB",
            Amount::from_u64(*sat_per_kvb).format_units(3)
        ),
        FeeDetail::Solana {
            signatures,
            compute_unit_price_micro_lamports,
            compute_unit_limit,
        } => {
            let mut s = format!("{signatures} signature(s)");
            if let Some(p) = compute_unit_price_micro_lamports {
                let _ = write!(s, ", priority {p} micro-lamports per compute unit");
            }
            if let Some(l) = compute_unit_limit {
                let _ = write!(s, ", limit {l} compute units");
            }
            s
        }
        FeeDetail::Safe { .. } => "Safe transaction: the executor pays the gas".to_string(),
    }
}

struct Eval<'a> {
    policy: &'a Policy,
    intent: &'a Intent,
    ctx: &'a Context<'a>,
    asset: AssetId,
    total: Amount,
    /// What this request adds to the `asset` series (total out, plus the fee for a native asset).
    counted: Amount,
}

impl Eval<'_> {
    /// The matchers of a rule, in order; stops at the first failure.
    fn matchers(&self, rule: &Rule, out: &mut Vec<Check>) -> bool {
        let intent = self.intent;
        if let Some(keys) = &rule.keys {
            let ok = keys.iter().any(|k| k == self.ctx.key);
            out.push(check(
                "key",
                format!("one of {keys:?}"),
                self.ctx.key.to_string(),
                ok,
            ));
            if !ok {
                return false;
            }
        }
        if let Some(chain) = rule.chain {
            let ok = chain == intent.chain;
            out.push(check(
                "chain",
                chain.to_string(),
                intent.chain.to_string(),
                ok,
            ));
            if !ok {
                return false;
            }
        }
        if let Some((id, sym, _)) = &rule.asset {
            let ok = *id == self.asset;
            out.push(check(
                "asset",
                format!("{sym} ({id})"),
                format!("{} ({})", intent.asset.display_symbol(), self.asset),
                ok,
            ));
            if !ok {
                return false;
            }
        }
        if let Some(kinds) = &rule.kinds {
            let ok = kinds.contains(&intent.kind);
            let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            out.push(check(
                "kind",
                format!("one of {names:?}"),
                intent.kind.to_string(),
                ok,
            ));
            if !ok {
                return false;
            }
        }
        if let Some(book_name) = &rule.destination_book {
            let (ok, saw) = self.destinations_in_book(book_name);
            out.push(check(
                "destination",
                format!("every destination in book {book_name:?}, past its cool-down"),
                saw,
                ok,
            ));
            if !ok {
                return false;
            }
        }
        if rule.min_amount.is_some() || rule.max_amount.is_some() {
            let lo_ok = rule.min_amount.is_none_or(|m| self.total >= m);
            let hi_ok = rule.max_amount.is_none_or(|m| self.total <= m);
            let expected = match (rule.min_amount, rule.max_amount) {
                (Some(lo), Some(hi)) => format!(
                    "between {} and {}",
                    fmt_amount(lo, rule),
                    fmt_amount(hi, rule)
                ),
                (Some(lo), None) => format!("at least {}", fmt_amount(lo, rule)),
                (None, Some(hi)) => format!("at most {}", fmt_amount(hi, rule)),
                (None, None) => String::new(),
            };
            out.push(check(
                "amount",
                expected,
                fmt_amount(self.total, rule),
                lo_ok && hi_ok,
            ));
            if !(lo_ok && hi_ok) {
                return false;
            }
        }
        true
    }

    fn destinations_in_book(&self, book_name: &str) -> (bool, String) {
        let Some(book) = self.policy.address_book(book_name) else {
            return (false, format!("book {book_name:?} missing"));
        };
        if book.chain != self.intent.chain {
            return (
                false,
                format!("intent on {}, book for {}", self.intent.chain, book.chain),
            );
        }
        let dests = self.intent.destinations();
        if dests.is_empty() {
            return (false, "no destination".to_string());
        }
        for d in &dests {
            let norm = normalize_address(self.intent.chain, d.as_str());
            match book.entries.get(&norm) {
                None => return (false, format!("{d} is not in the book")),
                Some(e) => {
                    let usable_from = e
                        .added_at
                        .checked_add(book.cool_down)
                        .unwrap_or(Timestamp::MAX);
                    if self.ctx.now < usable_from {
                        return (
                            false,
                            format!("{d} ({}) is in its cool-down until {usable_from}", e.label),
                        );
                    }
                }
            }
        }
        let labels: Vec<String> = dests
            .iter()
            .filter_map(|d| {
                book.entries
                    .get(&normalize_address(self.intent.chain, d.as_str()))
            })
            .map(|e| format!("{} ({})", e.address, e.label))
            .collect();
        (true, labels.join(", "))
    }

    fn in_window(&self, w: &TimeWindow) -> (bool, String) {
        let local = self.ctx.now.to_zoned_datetime(w.zone.clone());
        let t = local.time();
        let day_ok = w.days.contains(&local.weekday());
        let time_ok = t >= w.from && (t < w.until || w.until == Time::MAX);
        (
            day_ok && time_ok,
            format!(
                "{} {} {}",
                local.weekday_str(),
                local.strftime("%H:%M:%S"),
                w.zone_name
            ),
        )
    }

    fn conditions(
        &self,
        rule: &Rule,
        out: &mut Vec<Check>,
    ) -> Result<(), (crate::eval::DenyCode, String)> {
        self.fee(rule, out)?;
        if !rule.windows.is_empty() {
            let mut any = false;
            let mut saw = Vec::new();
            let mut expected = Vec::new();
            for w in &rule.windows {
                let (ok, s) = self.in_window(w);
                any |= ok;
                saw.push(s);
                let days: Vec<&str> = w.days.iter().map(|d| weekday_name(*d)).collect();
                let until = if w.until == Time::MAX {
                    "24:00".to_string()
                } else {
                    w.until.strftime("%H:%M").to_string()
                };
                expected.push(format!(
                    "{} {}–{} {}",
                    days.join(","),
                    w.from.strftime("%H:%M"),
                    until,
                    w.zone_name
                ));
            }
            out.push(check("window", expected.join(" or "), saw.join(" / "), any));
            if !any {
                return Err((
                    DenyCode::OutsideTimeWindow,
                    format!(
                        "rule {:?} allows this only {}",
                        rule.name,
                        expected.join(" or ")
                    ),
                ));
            }
        }
        for v in &rule.velocity {
            let since = self.ctx.now.checked_sub(v.window).unwrap_or(Timestamp::MIN);
            let totals = self
                .ctx
                .history
                .totals_since(self.ctx.key, &self.asset, since)
                .map_err(|e| (DenyCode::HistoryUnavailable, e.to_string()))?;
            let new_total = totals.total.checked_add(self.counted);
            let new_count = totals.count.checked_add(1);
            let total_ok = v
                .max_total
                .is_none_or(|m| new_total.is_some_and(|t| t <= m));
            let count_ok = v
                .max_count
                .is_none_or(|m| new_count.is_some_and(|c| c <= m));
            let mut expected = Vec::new();
            if let Some(m) = v.max_total {
                let what = if matches!(self.asset, AssetId::Native(_)) {
                    "total (amounts + worst-case fees)"
                } else {
                    "total"
                };
                expected.push(format!("{what} ≤ {}", fmt_amount(m, rule)));
            }
            if let Some(m) = v.max_count {
                expected.push(format!("count ≤ {m}"));
            }
            let expected = format!(
                "{} per {:#} for key {:?}",
                expected.join(" and "),
                v.window,
                self.ctx.key
            );
            let saw = format!(
                "{} in {} signature(s) already; with this request {} in {}",
                fmt_amount(totals.total, rule),
                totals.count,
                new_total.map_or("overflow".to_string(), |t| fmt_amount(t, rule)),
                new_count.map_or("overflow".to_string(), |c| c.to_string()),
            );
            out.push(check(
                "velocity",
                expected.clone(),
                saw.clone(),
                total_ok && count_ok,
            ));
            if !(total_ok && count_ok) {
                return Err((
                    DenyCode::VelocityExceeded,
                    format!(
                        "velocity limit of rule {:?} exceeded: {expected}; {saw}",
                        rule.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Eval<'_> {
    /// The rule's fee caps against the intent's worst-case fee.
    fn fee(&self, rule: &Rule, out: &mut Vec<Check>) -> Result<(), (DenyCode, String)> {
        if rule.max_fee.is_none() && rule.max_fee_bps.is_none() {
            return Ok(());
        }
        let (sym, dec) = match native_asset(self.intent.chain) {
            kinko_intent::Asset::Native { symbol, decimals } => (symbol, decimals),
            kinko_intent::Asset::Token { .. } => (String::new(), 0),
        };
        let native = |a: Amount| format!("{} {sym}", a.format_units(dec));
        let fee = self.intent.fee.max;
        let mut expected = Vec::new();
        let mut ok = true;
        if let Some(cap) = rule.max_fee {
            ok &= fee <= cap;
            expected.push(format!("at most {}", native(cap)));
        }
        if let Some(bps) = rule.max_fee_bps {
            ok &= fee_within_bps(fee, self.total, bps);
            // total × bps / 10^4, shown exactly with four more decimals.
            let cap = self
                .total
                .checked_mul(Amount::from_u64(u64::from(bps)))
                .map_or("more than 2^256 base units".to_string(), |c| {
                    format!("{} {sym}", c.format_units(dec.saturating_add(4)))
                });
            expected.push(format!("at most {bps} bps of the amount ({cap})"));
        }
        let expected = format!("worst-case fee {}", expected.join(" and "));
        let saw = format!(
            "{} ({}) on an amount of {}",
            native(fee),
            fee_detail_text(&self.intent.fee.detail),
            fmt_amount(self.total, rule)
        );
        out.push(check("fee", expected.clone(), saw.clone(), ok));
        if ok {
            Ok(())
        } else {
            Err((
                DenyCode::FeeTooHigh,
                format!(
                    "fee cap of rule {:?} exceeded: {expected}; saw {saw}",
                    rule.name
                ),
            ))
        }
    }
}

fn weekday_name(d: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match d {
        Monday => "mon",
        Tuesday => "tue",
        Wednesday => "wed",
        Thursday => "thu",
        Friday => "fri",
        Saturday => "sat",
        Sunday => "sun",
    }
}

trait WeekdayStr {
    fn weekday_str(&self) -> &'static str;
}

impl WeekdayStr for jiff::ZonedDateTime {
    fn weekday_str(&self) -> &'static str {
        weekday_name(self.weekday())
    }
}

fn rule_ref(rule: &Rule) -> RuleRef {
    RuleRef {
        name: rule.name.clone(),
        index: rule.index,
        line: rule.line,
    }
}

/// Evaluates `intent` against `policy` in `ctx`.
///
/// Order: the freeze; the requester (listed, allowed this key); the key (listed, same chain and
/// network as the intent); then the rules top-down. The first rule whose matchers (key, chain,
/// asset, kind, destination book, amount range) all hold is *the* rule: its conditions (fee
/// caps on the worst-case fee, time windows, velocity limits counting fees in the native asset)
/// must then hold or the request is denied, and its action applies. When no rule matches, the
/// request is denied.
pub fn evaluate(policy: &Policy, intent: &Intent, ctx: &Context<'_>) -> Decision {
    let mut checks = Vec::new();
    let mut skipped = Vec::new();
    let deny = |code, reason: String, rule: Option<RuleRef>, checks, skipped| Decision {
        policy_hash: policy.hash(),
        at: ctx.now.to_string(),
        outcome: Outcome::Deny { code, reason },
        rule,
        checks,
        skipped,
    };

    checks.push(check(
        "frozen",
        "not frozen".into(),
        if ctx.frozen { "frozen" } else { "not frozen" }.into(),
        !ctx.frozen,
    ));
    if ctx.frozen {
        return deny(
            DenyCode::Frozen,
            "signing is frozen; unfreezing needs the governance quorum and delay".into(),
            None,
            checks,
            skipped,
        );
    }
    let Some(requester) = policy.requester(ctx.requester) else {
        checks.push(check(
            "requester",
            "a requester listed in the policy".into(),
            ctx.requester.to_string(),
            false,
        ));
        return deny(
            DenyCode::UnknownRequester,
            format!("{:?} is not a requester in this policy", ctx.requester),
            None,
            checks,
            skipped,
        );
    };
    if let Some(keys) = &requester.keys {
        let ok = keys.iter().any(|k| k == ctx.key);
        checks.push(check(
            "requester",
            format!("{:?} may use {keys:?}", requester.id),
            ctx.key.to_string(),
            ok,
        ));
        if !ok {
            return deny(
                DenyCode::RequesterKeyNotAllowed,
                format!("requester {:?} may not use key {:?}", requester.id, ctx.key),
                None,
                checks,
                skipped,
            );
        }
    }
    let Some(key) = policy.key(ctx.key) else {
        checks.push(check(
            "key",
            "a signing key listed in the policy".into(),
            ctx.key.to_string(),
            false,
        ));
        return deny(
            DenyCode::UnknownKey,
            format!("signing key {:?} is not in this policy", ctx.key),
            None,
            checks,
            skipped,
        );
    };
    let chain_ok = key.chain == intent.chain && key.network == intent.network;
    checks.push(check(
        "key chain",
        format!("{} network {}", key.chain, key.network),
        format!("{} network {}", intent.chain, intent.network),
        chain_ok,
    ));
    if !chain_ok {
        return deny(
            DenyCode::KeyChainMismatch,
            format!(
                "key {:?} signs for {} {}, the intent is for {} {}",
                key.name, key.chain, key.network, intent.chain, intent.network
            ),
            None,
            checks,
            skipped,
        );
    }
    let Ok(total) = intent.total_out() else {
        return deny(
            DenyCode::InvalidIntent,
            "the transfer amounts overflow 256 bits".into(),
            None,
            checks,
            skipped,
        );
    };
    let asset = AssetId::of_intent_asset(intent.chain, &intent.asset);
    let Some(counted) = velocity_entries(intent)
        .ok()
        .and_then(|v| v.into_iter().find(|(a, _)| *a == asset))
        .map(|(_, a)| a)
    else {
        return deny(
            DenyCode::InvalidIntent,
            "the transfer amounts plus the fee overflow 256 bits".into(),
            None,
            checks,
            skipped,
        );
    };
    let ev = Eval {
        policy,
        intent,
        ctx,
        asset,
        total,
        counted,
    };

    for rule in policy.rules() {
        let mut rule_checks = Vec::new();
        if !ev.matchers(rule, &mut rule_checks) {
            if let Some(failed) = rule_checks.pop() {
                skipped.push(Skipped {
                    rule: rule_ref(rule),
                    failed,
                });
            }
            continue;
        }
        checks.append(&mut rule_checks);
        if let Err((code, reason)) = ev.conditions(rule, &mut checks) {
            return deny(code, reason, Some(rule_ref(rule)), checks, skipped);
        }
        return match &rule.action {
            RuleAction::Deny(reason) => deny(
                DenyCode::RuleDenies,
                reason.clone(),
                Some(rule_ref(rule)),
                checks,
                skipped,
            ),
            RuleAction::RequireApprovals(q) => Decision {
                policy_hash: policy.hash(),
                at: ctx.now.to_string(),
                outcome: Outcome::RequireApprovals { quorum: q.clone() },
                rule: Some(rule_ref(rule)),
                checks,
                skipped,
            },
        };
    }
    deny(
        DenyCode::NoRuleMatched,
        "no rule matched this intent (deny by default)".into(),
        None,
        checks,
        skipped,
    )
}

/// The velocity window start for a limit: entries strictly after it count.
pub fn window_start(now: Timestamp, window: SignedDuration) -> Timestamp {
    now.checked_sub(window).unwrap_or(Timestamp::MIN)
}
