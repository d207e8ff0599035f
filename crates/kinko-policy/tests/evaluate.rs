//! Evaluation: each rule shape passing and failing, cool-down and velocity boundaries, time
//! windows across DST changes, and the preliminary checks.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use jiff::{SignedDuration, Timestamp};
use kinko_intent::{Address, Amount, Call, Chain, Fee, FeeDetail, Intent, IntentKind};
use kinko_policy::{
    AssetId, Context, DenyCode, Outcome, Policy, VelocityLedger, evaluate, velocity_entries,
};

fn code(d: &kinko_policy::Decision) -> Option<DenyCode> {
    match &d.outcome {
        Outcome::Deny { code, .. } => Some(*code),
        Outcome::RequireApprovals { .. } => None,
    }
}

fn rule_name(d: &kinko_policy::Decision) -> &str {
    d.rule.as_ref().map_or("", |r| r.name.as_str())
}

#[test]
fn hot_wallet_refill_needs_two_approvers() {
    let p = example();
    let d = evaluate(
        &p,
        &eth_transfer(HOT1, eth(100)),
        &ctx(office_hours(), "eth-cold-1", &EMPTY),
    );
    assert_eq!(rule_name(&d), "eth-hot-refill", "{}", d.to_text());
    let q = d.quorum().unwrap();
    assert_eq!((q.count, q.distinct_groups), (2, 0));
    assert_eq!(q.roles, vec!["approver".to_string()]);
    // The rule's checks each carry the value seen.
    let dest = d
        .checks
        .iter()
        .find(|c| c.condition == "destination")
        .unwrap();
    assert!(dest.passed && dest.saw.contains("hot wallet 1"));
    let amount = d.checks.iter().find(|c| c.condition == "amount").unwrap();
    assert_eq!(amount.saw, "100 ETH");
    // Skipped rules say which matcher failed.
    assert_eq!(d.skipped.len(), 2);
    assert_eq!(d.skipped[0].failed.condition, "kind");
    // Text and JSON renderings name the rule and its line.
    let line = p.rules()[2].line;
    assert!(
        d.to_text()
            .contains(&format!("matched rule \"eth-hot-refill\" (line {line})"))
    );
    let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(json["rule"]["name"], "eth-hot-refill");
    assert_eq!(json["outcome"], "require_approvals");
    assert_eq!(json["quorum"]["count"], 2);
}

#[test]
fn ethereum_addresses_compare_case_insensitively() {
    let p = example();
    for to in [
        HOT1.to_ascii_lowercase(),
        HOT1.to_ascii_uppercase().replace("0X", "0x"),
    ] {
        let d = evaluate(
            &p,
            &eth_transfer(&to, eth(1)),
            &ctx(office_hours(), "eth-cold-1", &EMPTY),
        );
        assert_eq!(rule_name(&d), "eth-hot-refill", "{to}");
    }
}

#[test]
fn unknown_destination_is_denied_by_default() {
    let p = example();
    let d = evaluate(
        &p,
        &eth_transfer(STRANGER, eth(1)),
        &ctx(office_hours(), "eth-cold-1", &EMPTY),
    );
    assert_eq!(code(&d), Some(DenyCode::NoRuleMatched));
    assert!(d.rule.is_none());
    assert!(
        d.skipped.iter().any(
            |s| s.failed.condition == "destination" && s.failed.saw.contains("not in the book")
        )
    );
}

#[test]
fn every_destination_must_be_in_the_book() {
    let p = example();
    let c = ctx(office_hours(), "eth-cold-1", &EMPTY);
    let both = eth_transfer_many(&[(HOT1, eth(1)), (HOT2, eth(1))]);
    assert_eq!(rule_name(&evaluate(&p, &both, &c)), "eth-hot-refill");
    let one_bad = eth_transfer_many(&[(HOT1, eth(1)), (STRANGER, eth(1))]);
    assert_eq!(
        code(&evaluate(&p, &one_bad, &c)),
        Some(DenyCode::NoRuleMatched)
    );
}

#[test]
fn amount_range_selects_the_rule_and_its_quorum() {
    let p = example();
    let c = ctx(office_hours(), "eth-cold-1", &EMPTY);
    // 500 ETH exactly: the refill rule (max inclusive) matches first.
    assert_eq!(
        rule_name(&evaluate(&p, &eth_transfer(HOT1, eth(500)), &c)),
        "eth-hot-refill"
    );
    // One wei more: the large rule, 3 approvers from 2 groups.
    let over = eth(500).checked_add(Amount::from_u64(1)).unwrap();
    let d = evaluate(&p, &eth_transfer(HOT1, over), &c);
    assert_eq!(rule_name(&d), "eth-large-refill");
    assert_eq!(d.quorum().unwrap().count, 3);
    assert_eq!(d.quorum().unwrap().distinct_groups, 2);
    // Above the large cap: no rule.
    let d = evaluate(&p, &eth_transfer(HOT1, eth(5001)), &c);
    assert_eq!(code(&d), Some(DenyCode::NoRuleMatched));
}

#[test]
fn token_rules_match_the_token_by_contract() {
    let p = example();
    let c = ctx(office_hours(), "eth-cold-1", &EMPTY);
    let d = evaluate(&p, &usdc_transfer(HOT2, 250_000), &c);
    assert_eq!(rule_name(&d), "usdc-hot-refill", "{}", d.to_text());
    // An unregistered token with the same symbol is another asset.
    let mut fake = usdc_transfer(HOT2, 1);
    fake.asset = kinko_intent::Asset::Token {
        contract: Address::new("0x000000000000000000000000000000000000dEaD").unwrap(),
        symbol: Some("USDC".into()),
        decimals: Some(6),
    };
    assert_eq!(
        code(&evaluate(&p, &fake, &c)),
        Some(DenyCode::NoRuleMatched)
    );
}

#[test]
fn token_approve_and_contract_calls_are_denied_with_reasons() {
    let p = example();
    let c = ctx(office_hours(), "eth-cold-1", &EMPTY);
    let mut approve = usdc_transfer(HOT1, 1);
    approve.kind = IntentKind::TokenApprove;
    let d = evaluate(&p, &approve, &c);
    assert_eq!(code(&d), Some(DenyCode::RuleDenies));
    assert_eq!(rule_name(&d), "deny-token-approve");
    assert!(
        matches!(&d.outcome, Outcome::Deny { reason, .. } if reason.contains("ERC-20 approve"))
    );
    for kind in [
        IntentKind::ContractCall,
        IntentKind::SafeDelegateCall,
        IntentKind::SafeSelfCall,
    ] {
        let mut call = eth_transfer(HOT1, Amount::ZERO);
        call.kind = kind;
        call.transfers.clear();
        call.call = Some(Call {
            target: Some(Address::new(HOT1).unwrap()),
            selector: Some("a9059cbb".into()),
            value: Amount::ZERO,
            data_len: 68,
            note: None,
        });
        let d = evaluate(&p, &call, &c);
        assert_eq!(rule_name(&d), "deny-contract-calls", "{kind}");
    }
}

#[test]
fn bitcoin_change_does_not_count_toward_amount_or_destinations() {
    let p = example();
    let c = ctx(office_hours(), "btc-cold-1", &EMPTY);
    // 10 BTC out, 900 BTC change back to ourselves: a 10 BTC refill.
    let d = evaluate(
        &p,
        &btc_transfer(BTC_HOT1, 1_000_000_000, 90_000_000_000),
        &c,
    );
    assert_eq!(rule_name(&d), "btc-hot-refill", "{}", d.to_text());
    let amount = d.checks.iter().find(|c| c.condition == "amount").unwrap();
    assert_eq!(amount.saw, "10 BTC");
}

#[test]
fn cool_down_boundary_is_exact() {
    let p = example();
    // HOT3 was added 2026-06-01T09:00:00Z with a 72 h cool-down: usable from 06-04T09:00:00Z.
    let intent = eth_transfer(HOT3, eth(1));
    let before = ts("2026-06-04T08:59:59Z");
    let at = ts("2026-06-04T09:00:00Z");
    let d = evaluate(&p, &intent, &ctx(before, "eth-cold-1", &EMPTY));
    assert_eq!(code(&d), Some(DenyCode::NoRuleMatched), "{}", d.to_text());
    assert!(d.skipped.iter().any(|s| {
        s.failed
            .saw
            .contains("cool-down until 2026-06-04T09:00:00Z")
    }));
    let d = evaluate(&p, &intent, &ctx(at, "eth-cold-1", &EMPTY));
    assert_eq!(rule_name(&d), "eth-hot-refill");
}

#[test]
fn velocity_window_boundary_is_exact() {
    let p = example();
    let (asset, _) = velocity_entries(&eth_transfer(HOT1, eth(1))).unwrap()[0].clone();
    assert_eq!(asset, AssetId::Native(kinko_intent::Chain::Ethereum));
    let t0 = ts("2026-07-06T00:00:00Z");
    let mut ledger = VelocityLedger::new();
    // 1900 ETH signed at t0; the daily cap is 2000 ETH.
    ledger.record("eth-cold-1", &asset, t0, eth(1900)).unwrap();
    let intent = eth_transfer(HOT1, eth(200));
    // One second before the window slides past t0: 1900 + 200 > 2000.
    let just_inside =
        t0.checked_add(SignedDuration::from_hours(24)).unwrap() - SignedDuration::from_secs(1);
    let d = evaluate(&p, &intent, &ctx(just_inside, "eth-cold-1", &ledger));
    assert_eq!(
        code(&d),
        Some(DenyCode::VelocityExceeded),
        "{}",
        d.to_text()
    );
    assert_eq!(rule_name(&d), "eth-hot-refill");
    let v = d.checks.iter().find(|c| c.condition == "velocity").unwrap();
    assert!(v.saw.contains("1900 ETH in 1 signature(s)"), "{}", v.saw);
    // Exactly 24 h later the t0 entry is outside (now − 24h, now].
    let boundary = t0.checked_add(SignedDuration::from_hours(24)).unwrap();
    let d = evaluate(&p, &intent, &ctx(boundary, "eth-cold-1", &ledger));
    assert_eq!(rule_name(&d), "eth-hot-refill");
    assert!(!d.is_denied(), "{}", d.to_text());
    // Exactly at the cap passes; one wei over fails. The worst-case fee counts with the amount.
    let at_cap = eth_transfer(HOT1, eth(100).checked_sub(eth_fee().max).unwrap());
    assert!(!evaluate(&p, &at_cap, &ctx(just_inside, "eth-cold-1", &ledger)).is_denied());
    let over = eth_transfer(
        HOT1,
        eth(100)
            .checked_sub(eth_fee().max)
            .unwrap()
            .checked_add(Amount::from_u64(1))
            .unwrap(),
    );
    assert!(evaluate(&p, &over, &ctx(just_inside, "eth-cold-1", &ledger)).is_denied());
}

#[test]
fn velocity_count_limit_and_per_key_scope() {
    let p = example();
    let (asset, _) = velocity_entries(&eth_transfer(HOT1, eth(1))).unwrap()[0].clone();
    let now = office_hours();
    let mut ledger = VelocityLedger::new();
    for i in 0..20 {
        ledger
            .record(
                "eth-cold-1",
                &asset,
                now - SignedDuration::from_mins(i + 1),
                eth(1),
            )
            .unwrap();
    }
    let d = evaluate(
        &p,
        &eth_transfer(HOT1, eth(1)),
        &ctx(now, "eth-cold-1", &ledger),
    );
    assert_eq!(code(&d), Some(DenyCode::VelocityExceeded));
    // Another asset's history does not count.
    let usdc = velocity_entries(&usdc_transfer(HOT1, 1)).unwrap()[0]
        .0
        .clone();
    let mut other = VelocityLedger::new();
    for i in 0..20 {
        other
            .record(
                "eth-cold-1",
                &usdc,
                now - SignedDuration::from_mins(i + 1),
                Amount::from_u64(1),
            )
            .unwrap();
    }
    assert!(
        !evaluate(
            &p,
            &eth_transfer(HOT1, eth(1)),
            &ctx(now, "eth-cold-1", &other)
        )
        .is_denied()
    );
    // Another key's history of the same asset does not count; the key's own does. 19 of the
    // key's own signatures leave room for a 20th (count <= 20) even with another key at 20;
    // a 20th of its own then fills the limit.
    let mut per_key = VelocityLedger::new();
    for i in 0..20 {
        let at = now - SignedDuration::from_mins(i + 1);
        per_key.record("eth-cold-2", &asset, at, eth(1)).unwrap();
        if i < 19 {
            per_key.record("eth-cold-1", &asset, at, eth(1)).unwrap();
        }
    }
    let d = evaluate(
        &p,
        &eth_transfer(HOT1, eth(1)),
        &ctx(now, "eth-cold-1", &per_key),
    );
    assert!(!d.is_denied(), "{}", d.to_text());
    let velocity = d.checks.iter().find(|c| c.condition == "velocity").unwrap();
    assert!(
        velocity.saw.contains("in 19 signature(s) already"),
        "{velocity:?}"
    );
    per_key
        .record(
            "eth-cold-1",
            &asset,
            now - SignedDuration::from_secs(1),
            eth(1),
        )
        .unwrap();
    let d = evaluate(
        &p,
        &eth_transfer(HOT1, eth(1)),
        &ctx(now, "eth-cold-1", &per_key),
    );
    assert_eq!(
        code(&d),
        Some(DenyCode::VelocityExceeded),
        "{}",
        d.to_text()
    );
}

#[test]
fn large_amounts_only_in_tokyo_office_hours() {
    let p = example();
    let intent = eth_transfer(HOT1, eth(1000));
    // Asia/Tokyo is UTC+9 all year. Monday 2026-07-06 09:00 JST = 00:00 UTC.
    let cases = [
        ("2026-07-06T00:00:00Z", true),  // Mon 09:00 JST: from is inclusive
        ("2026-07-05T23:59:59Z", false), // Mon 08:59:59 JST
        ("2026-07-06T08:59:59Z", true),  // Mon 17:59:59 JST
        ("2026-07-06T09:00:00Z", false), // Mon 18:00 JST: until is exclusive
        ("2026-07-04T01:00:00Z", false), // Sat 10:00 JST
        ("2026-07-10T01:00:00Z", true),  // Fri 10:00 JST
        ("2026-07-10T16:00:00Z", false), // Sat 01:00 JST, still Friday in UTC
    ];
    for (t, inside) in cases {
        let d = evaluate(&p, &intent, &ctx(ts(t), "eth-cold-1", &EMPTY));
        assert_eq!(rule_name(&d), "eth-large-refill", "{t}");
        assert_eq!(!d.is_denied(), inside, "{t}: {}", d.to_text());
        if !inside {
            assert_eq!(code(&d), Some(DenyCode::OutsideTimeWindow));
        }
    }
}

fn window_policy(zone: &str, days: &str, from: &str, until: &str) -> Policy {
    let rules = format!(
        r#"[[rules]]
name = "windowed"
chain = "ethereum"
max_fee = "0.01"
approvals = {{ count = 1, roles = ["approver"], lifetime = "1h" }}
windows = [{{ zone = "{zone}", days = [{days}], from = "{from}", until = "{until}" }}]
"#
    );
    Policy::from_toml(with_rules(&rules).as_bytes()).unwrap()
}

fn allowed_at(p: &Policy, t: &str) -> bool {
    !evaluate(
        p,
        &eth_transfer(HOT1, eth(1)),
        &ctx(ts(t), "eth-cold-1", &EMPTY),
    )
    .is_denied()
}

#[test]
fn windows_follow_the_wall_clock_across_dst_in_berlin() {
    // Europe/Berlin: CET (UTC+1) until Sunday 2026-03-29 01:00 UTC, then CEST (UTC+2)
    // (EU summer time: last Sunday of March, 01:00 UTC).
    let p = window_policy(
        "Europe/Berlin",
        r#""mon","tue","wed","thu","fri""#,
        "09:00",
        "18:00",
    );
    // The Monday before: 07:30 UTC is 08:30 CET (closed), 08:00 UTC is 09:00 CET (open).
    assert!(!allowed_at(&p, "2026-03-23T07:30:00Z"));
    assert!(allowed_at(&p, "2026-03-23T08:00:00Z"));
    assert!(allowed_at(&p, "2026-03-23T16:59:59Z"));
    assert!(!allowed_at(&p, "2026-03-23T17:00:00Z"));
    // The Monday after: the same UTC instants are an hour later on the wall clock.
    assert!(allowed_at(&p, "2026-03-30T07:30:00Z")); // 09:30 CEST
    assert!(allowed_at(&p, "2026-03-30T07:00:00Z")); // 09:00 CEST
    assert!(!allowed_at(&p, "2026-03-30T06:59:59Z")); // 08:59:59 CEST
    assert!(!allowed_at(&p, "2026-03-30T16:00:00Z")); // 18:00 CEST
}

#[test]
fn window_on_the_night_of_the_change_itself() {
    // Sunday 2026-03-29 in Berlin: 02:00–03:00 local does not exist. A 01:00–04:00 window is
    // open from 00:00 UTC (01:00 CET) to 02:00 UTC (04:00 CEST): two hours, not three.
    let p = window_policy("Europe/Berlin", r#""sun""#, "01:00", "04:00");
    assert!(!allowed_at(&p, "2026-03-28T23:59:59Z"));
    assert!(allowed_at(&p, "2026-03-29T00:00:00Z"));
    assert!(allowed_at(&p, "2026-03-29T01:00:00Z")); // 03:00 CEST
    assert!(allowed_at(&p, "2026-03-29T01:59:59Z"));
    assert!(!allowed_at(&p, "2026-03-29T02:00:00Z")); // 04:00 CEST (03:00 at a fixed +1)
}

#[test]
fn windows_follow_the_wall_clock_across_dst_in_new_york() {
    // America/New_York: EDT (UTC−4) until Sunday 2026-11-01 06:00 UTC, then EST (UTC−5).
    let p = window_policy(
        "America/New_York",
        r#""mon","tue","wed","thu","fri""#,
        "09:00",
        "17:00",
    );
    assert!(allowed_at(&p, "2026-10-30T13:00:00Z")); // Fri 09:00 EDT
    assert!(!allowed_at(&p, "2026-10-30T21:00:00Z")); // Fri 17:00 EDT
    assert!(!allowed_at(&p, "2026-11-02T13:30:00Z")); // Mon 08:30 EST
    assert!(allowed_at(&p, "2026-11-02T14:00:00Z")); // Mon 09:00 EST
    assert!(allowed_at(&p, "2026-11-02T21:30:00Z")); // Mon 16:30 EST
    assert!(!allowed_at(&p, "2026-11-02T22:00:00Z")); // Mon 17:00 EST
}

#[test]
fn window_until_midnight() {
    let p = window_policy("Asia/Tokyo", r#""mon""#, "18:00", "24:00");
    assert!(allowed_at(&p, "2026-07-06T14:59:59Z")); // Mon 23:59:59 JST
    assert!(!allowed_at(&p, "2026-07-06T15:00:00Z")); // Tue 00:00 JST
}

#[test]
fn preliminary_checks_deny_first() {
    let p = example();
    let intent = eth_transfer(HOT1, eth(1));
    let now = office_hours();
    let mut c = ctx(now, "eth-cold-1", &EMPTY);
    c.frozen = true;
    assert_eq!(code(&evaluate(&p, &intent, &c)), Some(DenyCode::Frozen));
    let c = Context {
        requester: "alice",
        ..ctx(now, "eth-cold-1", &EMPTY)
    };
    assert_eq!(
        code(&evaluate(&p, &intent, &c)),
        Some(DenyCode::UnknownRequester)
    );
    let c = ctx(now, "eth-hot-9", &EMPTY);
    let d = evaluate(&p, &intent, &c);
    // The requester's own key list is checked before the key itself.
    assert_eq!(code(&d), Some(DenyCode::RequesterKeyNotAllowed));
    let c = ctx(now, "btc-cold-1", &EMPTY);
    assert_eq!(
        code(&evaluate(&p, &intent, &c)),
        Some(DenyCode::KeyChainMismatch)
    );
    let mut other_net = intent.clone();
    other_net.network = kinko_intent::Network::new("11155111").unwrap();
    assert_eq!(
        code(&evaluate(&p, &other_net, &ctx(now, "eth-cold-1", &EMPTY))),
        Some(DenyCode::KeyChainMismatch)
    );
}

#[test]
fn history_failure_fails_closed() {
    struct Broken;
    impl kinko_policy::VelocityHistory for Broken {
        fn totals_since(
            &self,
            _: &str,
            _: &AssetId,
            _: Timestamp,
        ) -> Result<kinko_policy::WindowTotals, kinko_policy::HistoryUnavailable> {
            Err(kinko_policy::HistoryUnavailable("disk on fire".into()))
        }
    }
    let p = example();
    let d = evaluate(
        &p,
        &eth_transfer(HOT1, eth(1)),
        &ctx(office_hours(), "eth-cold-1", &Broken),
    );
    assert_eq!(code(&d), Some(DenyCode::HistoryUnavailable));
}

#[test]
fn explain_text_names_the_failed_condition() {
    let p = example();
    let text = kinko_policy::explain(
        &p,
        &eth_transfer(HOT1, eth(1000)),
        &ctx(ts("2026-07-04T01:00:00Z"), "eth-cold-1", &EMPTY),
    );
    assert!(text.contains("[FAIL] window"), "{text}");
    assert!(text.contains("sat 10:00:00 Asia/Tokyo"), "{text}");
    assert!(text.contains("DENIED (OutsideTimeWindow)"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Fees: the worst-case fee is capped per rule and counts toward velocity in the native asset.

fn reason(d: &kinko_policy::Decision) -> &str {
    match &d.outcome {
        Outcome::Deny { reason, .. } => reason,
        Outcome::RequireApprovals { .. } => "",
    }
}

/// An Ethereum fee as kinko-chain fills it: at most gas limit × max fee per gas.
fn eth_fee_of(gas_limit: u64, max_fee_per_gas: u128) -> Fee {
    Fee {
        max: Amount::from_u64(gas_limit)
            .checked_mul(Amount::from_u128(max_fee_per_gas))
            .unwrap(),
        detail: FeeDetail::Ethereum {
            gas_limit,
            max_fee_per_gas: Amount::from_u128(max_fee_per_gas),
            max_priority_fee_per_gas: Some(Amount::from_u64(1_000_000_000)),
        },
    }
}

/// A Bitcoin fee as kinko-chain fills it: inputs − outputs, and the rate over the virtual size.
fn btc_fee(sats: u64, vsize: u64) -> Fee {
    Fee {
        max: Amount::from_u64(sats),
        detail: FeeDetail::Bitcoin {
            vsize,
            sat_per_kvb: sats * 1000 / vsize,
        },
    }
}

fn with_fee(mut intent: Intent, fee: Fee) -> Intent {
    intent.fee = fee;
    intent
}

fn fee_check(d: &kinko_policy::Decision) -> &kinko_policy::Check {
    d.checks
        .iter()
        .find(|c| c.condition == "fee")
        .unwrap_or_else(|| panic!("no fee check: {}", d.to_text()))
}

#[test]
fn a_5_btc_fee_on_dust_to_an_allowlisted_address_is_denied() {
    let p = example();
    let c = ctx(office_hours(), "btc-cold-1", &EMPTY);
    // 0.0001 BTC to hot wallet 1, 0.5 BTC change, and inputs − outputs = 5 BTC to the miner
    // (a 141 vB one-input, two-output P2WPKH transaction).
    let dust = with_fee(
        btc_transfer(BTC_HOT1, 10_000, 50_000_000),
        btc_fee(500_000_000, 141),
    );
    let d = evaluate(&p, &dust, &c);
    assert_eq!(code(&d), Some(DenyCode::FeeTooHigh), "{}", d.to_text());
    // Denied by the rule that matched; it does not fall through to a later rule.
    assert_eq!(rule_name(&d), "btc-hot-refill");
    let why = reason(&d);
    assert!(why.contains("rule \"btc-hot-refill\""), "{why}");
    assert!(why.contains("at most 0.001 BTC"), "{why}");
    assert!(
        why.contains("at most 100 bps of the amount (0.000001 BTC)"),
        "{why}"
    );
    assert!(why.contains("saw 5 BTC (inputs − outputs"), "{why}");
    assert!(why.contains("on an amount of 0.0001 BTC"), "{why}");
    assert!(!fee_check(&d).passed);
    let text = d.to_text();
    assert!(text.contains("[FAIL] fee"), "{text}");
    assert!(text.contains("DENIED (FeeTooHigh)"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(json["code"], "fee_too_high");
    // Control: the same refill shape, 0.5 BTC with a 2,000 sat fee, is an ordinary refill.
    let ok = evaluate(&p, &btc_transfer(BTC_HOT1, 50_000_000, 50_000_000), &c);
    assert!(!ok.is_denied(), "{}", ok.to_text());
    assert!(fee_check(&ok).passed);
}

#[test]
fn an_ethereum_transfer_with_a_max_fee_of_several_eth_is_denied() {
    let p = example();
    let c = ctx(office_hours(), "eth-cold-1", &EMPTY);
    // 1 ETH to hot wallet 1, gas limit 100,000 at a max fee of 50,000 gwei: up to 5 ETH for a
    // colluding block builder.
    let greedy = eth_fee_of(100_000, 50_000_000_000_000);
    let d = evaluate(
        &p,
        &with_fee(eth_transfer(HOT1, eth(1)), greedy.clone()),
        &c,
    );
    assert_eq!(code(&d), Some(DenyCode::FeeTooHigh), "{}", d.to_text());
    assert_eq!(rule_name(&d), "eth-hot-refill");
    let why = reason(&d);
    assert!(why.contains("at most 0.01 ETH"), "{why}");
    assert!(
        why.contains("saw 5 ETH (gas limit 100000 × max fee per gas 50000000000000 wei)"),
        "{why}"
    );
    // A token transfer pays its fee in ETH: the USDC rule caps it in ETH too.
    let d = evaluate(&p, &with_fee(usdc_transfer(HOT1, 1_000), greedy), &c);
    assert_eq!(code(&d), Some(DenyCode::FeeTooHigh), "{}", d.to_text());
    assert_eq!(rule_name(&d), "usdc-hot-refill");
    let why = reason(&d);
    assert!(why.contains("at most 0.02 ETH"), "{why}");
    assert!(why.contains("on an amount of 1000 USDC"), "{why}");
    // Control: with an ordinary fee (21,000 gas at 30 gwei) both are refills.
    assert!(!evaluate(&p, &eth_transfer(HOT1, eth(1)), &c).is_denied());
    assert!(!evaluate(&p, &usdc_transfer(HOT1, 1_000), &c).is_denied());
}

#[test]
fn a_fee_at_the_cap_is_allowed_and_one_base_unit_over_is_denied() {
    let p = example();
    // eth-hot-refill: max_fee 0.01 ETH. On 100 ETH the 1 % relative cap (1 ETH) does not bind.
    // 100,000 gas × 100 gwei = 0.01 ETH exactly.
    let c = ctx(office_hours(), "eth-cold-1", &EMPTY);
    let at = with_fee(
        eth_transfer(HOT1, eth(100)),
        eth_fee_of(100_000, 100_000_000_000),
    );
    let d = evaluate(&p, &at, &c);
    assert!(!d.is_denied(), "{}", d.to_text());
    assert!(fee_check(&d).passed);
    let mut over = at.clone();
    over.fee.max = over.fee.max.checked_add(Amount::from_u64(1)).unwrap();
    assert_eq!(code(&evaluate(&p, &over, &c)), Some(DenyCode::FeeTooHigh));
    // Bitcoin: max_fee 0.001 BTC = 100,000 sat, on a 1 BTC refill.
    let c = ctx(office_hours(), "btc-cold-1", &EMPTY);
    let at = with_fee(
        btc_transfer(BTC_HOT1, 100_000_000, 0),
        btc_fee(100_000, 141),
    );
    assert!(!evaluate(&p, &at, &c).is_denied());
    let over = with_fee(
        btc_transfer(BTC_HOT1, 100_000_000, 0),
        btc_fee(100_001, 141),
    );
    assert_eq!(code(&evaluate(&p, &over, &c)), Some(DenyCode::FeeTooHigh));
}

#[test]
fn the_relative_fee_cap_is_in_basis_points_of_the_amount() {
    let p = example();
    let c = ctx(office_hours(), "btc-cold-1", &EMPTY);
    // btc-hot-refill: max_fee_bps = 100 (1 %). On 0.05 BTC out (0.2 BTC change, which is not
    // amount) that is 0.0005 BTC = 50,000 sat, below the 0.001 BTC absolute cap.
    let at = with_fee(
        btc_transfer(BTC_HOT1, 5_000_000, 20_000_000),
        btc_fee(50_000, 141),
    );
    let d = evaluate(&p, &at, &c);
    assert!(!d.is_denied(), "{}", d.to_text());
    let over = with_fee(
        btc_transfer(BTC_HOT1, 5_000_000, 20_000_000),
        btc_fee(50_001, 141),
    );
    let d = evaluate(&p, &over, &c);
    assert_eq!(code(&d), Some(DenyCode::FeeTooHigh), "{}", d.to_text());
    let f = fee_check(&d);
    assert!(
        f.expected
            .contains("at most 100 bps of the amount (0.0005 BTC)"),
        "{}",
        f.expected
    );
    assert!(f.saw.contains("0.00050001 BTC"), "{}", f.saw);
    assert!(f.saw.contains("on an amount of 0.05 BTC"), "{}", f.saw);
}

/// A rule with a daily velocity cap of `max_total` ETH (and none on fees per se).
fn eth_daily_policy(max_total: &str) -> Policy {
    let rules = format!(
        r#"[[rules]]
name = "eth-daily"
chain = "ethereum"
asset = "ETH"
kinds = ["transfer"]
destination_book = "eth-hot-wallets"
max_fee = "0.01"
approvals = {{ count = 2, roles = ["approver"], lifetime = "4h" }}
velocity = [{{ window = "24h", max_total = "{max_total}" }}]

[[rules]]
name = "usdc-daily"
chain = "ethereum"
asset = "USDC"
kinds = ["token_transfer"]
destination_book = "eth-hot-wallets"
max_fee = "0.01"
approvals = {{ count = 2, roles = ["approver"], lifetime = "4h" }}
velocity = [{{ window = "24h", max_total = "1000" }}]
"#
    );
    Policy::from_toml(with_rules(&rules).as_bytes()).unwrap()
}

/// What the daemon does once an intent is signed.
fn record_signed(ledger: &mut VelocityLedger, key: &str, intent: &Intent, at: Timestamp) {
    for (asset, amount) in velocity_entries(intent).unwrap() {
        ledger.record(key, &asset, at, amount).unwrap();
    }
}

#[test]
fn fees_count_toward_velocity() {
    let p = eth_daily_policy("2");
    let fee = eth_fee().max; // 21,000 gas × 30 gwei = 0.00063 ETH
    let now = office_hours();
    let mut ledger = VelocityLedger::new();
    // Two 1 ETH withdrawals: the amounts fit the 2 ETH day exactly, amounts plus fees do not.
    let first = eth_transfer(HOT1, eth(1));
    assert_eq!(
        velocity_entries(&first).unwrap(),
        vec![(
            AssetId::Native(Chain::Ethereum),
            eth(1).checked_add(fee).unwrap()
        )]
    );
    let d = evaluate(&p, &first, &ctx(now, "eth-cold-1", &ledger));
    assert!(!d.is_denied(), "{}", d.to_text());
    record_signed(&mut ledger, "eth-cold-1", &first, now);
    let later = now + SignedDuration::from_mins(1);
    let second = eth_transfer(HOT2, eth(1));
    let d = evaluate(&p, &second, &ctx(later, "eth-cold-1", &ledger));
    assert_eq!(
        code(&d),
        Some(DenyCode::VelocityExceeded),
        "{}",
        d.to_text()
    );
    let v = d.checks.iter().find(|c| c.condition == "velocity").unwrap();
    assert!(
        v.expected.contains("amounts + worst-case fees"),
        "{}",
        v.expected
    );
    assert!(
        v.saw
            .contains("1.00063 ETH in 1 signature(s) already; with this request 2.00126 ETH"),
        "{}",
        v.saw
    );
    // What does fit: a second withdrawal whose amount plus fee is the 0.99937 ETH left.
    let rest = eth(1).checked_sub(fee).unwrap().checked_sub(fee).unwrap();
    let d = evaluate(
        &p,
        &eth_transfer(HOT2, rest),
        &ctx(later, "eth-cold-1", &ledger),
    );
    assert!(!d.is_denied(), "{}", d.to_text());
}

#[test]
fn a_token_transfers_fee_counts_in_the_native_series() {
    let p = eth_daily_policy("1");
    let now = office_hours();
    // 1000 USDC with a worst-case fee of 65,000 gas × 100 gwei = 0.0065 ETH.
    let usdc = with_fee(
        usdc_transfer(HOT1, 1_000),
        eth_fee_of(65_000, 100_000_000_000),
    );
    let fee = usdc.fee.max;
    assert_eq!(
        velocity_entries(&usdc).unwrap(),
        vec![
            (
                AssetId::Token(Chain::Ethereum, USDC.to_ascii_lowercase()),
                Amount::from_u64(1_000_000_000)
            ),
            (AssetId::Native(Chain::Ethereum), fee),
        ]
    );
    // A token transfer that costs the signer nothing (a SafeTx: the executor pays) adds nothing
    // to the native series.
    let mut free = usdc.clone();
    free.fee.max = Amount::ZERO;
    assert_eq!(velocity_entries(&free).unwrap().len(), 1);

    let mut ledger = VelocityLedger::new();
    assert!(!evaluate(&p, &usdc, &ctx(now, "eth-cold-1", &ledger)).is_denied());
    record_signed(&mut ledger, "eth-cold-1", &usdc, now);
    // 0.995 ETH plus its 0.00063 ETH fee fits a 1 ETH day alone …
    let eth_out = Amount::parse_units("0.995", 18).unwrap();
    let alone = evaluate(
        &p,
        &eth_transfer(HOT1, eth_out),
        &ctx(now, "eth-cold-1", &EMPTY),
    );
    assert!(!alone.is_denied(), "{}", alone.to_text());
    // … but not after the USDC transfer's 0.0065 ETH fee.
    let later = now + SignedDuration::from_mins(1);
    let d = evaluate(
        &p,
        &eth_transfer(HOT1, eth_out),
        &ctx(later, "eth-cold-1", &ledger),
    );
    assert_eq!(
        code(&d),
        Some(DenyCode::VelocityExceeded),
        "{}",
        d.to_text()
    );
    let v = d.checks.iter().find(|c| c.condition == "velocity").unwrap();
    assert!(v.saw.contains("0.0065 ETH in 1 signature(s)"), "{}", v.saw);
    // The USDC series holds the 1000 USDC and no fee: a second 1 USDC transfer exceeds the
    // 1000 USDC day by exactly its amount.
    let d = evaluate(
        &p,
        &usdc_transfer(HOT1, 1),
        &ctx(later, "eth-cold-1", &ledger),
    );
    assert_eq!(code(&d), Some(DenyCode::VelocityExceeded));
    let v = d.checks.iter().find(|c| c.condition == "velocity").unwrap();
    assert!(
        v.saw
            .contains("1000 USDC in 1 signature(s) already; with this request 1001 USDC"),
        "{}",
        v.saw
    );
}

/// An address-book entry counts from the moment kinkod installed the policy that added it,
/// not from the `added_at` its proposer wrote: a backdated entry still waits out its cool-down.
#[test]
fn a_backdated_address_book_entry_waits_out_its_cool_down_from_installation() {
    // The policy in force has HOT1 and HOT2 but not HOT3.
    let without_hot3 = EXAMPLE.replace(
        "[[address_books.entries]]\naddress = \"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB\"\nlabel = \"hot wallet 3 (added after the audit)\"\nadded_at = \"2026-06-01T09:00:00Z\"\n\n",
        "",
    );
    assert_ne!(without_hot3, EXAMPLE);
    let previous = Policy::from_toml(without_hot3.as_bytes()).unwrap();
    // A proposal adds HOT3 claiming it was added on 2026-06-01; it is installed on 07-01.
    let installed_at = ts("2026-07-01T12:00:00Z");
    let mut p = example();
    p.settle_added_at(Some(&previous), installed_at);
    let intent = eth_transfer(HOT3, eth(1));
    // Two days after installation: still in its cool-down (72 h from installation).
    let d = evaluate(
        &p,
        &intent,
        &ctx(ts("2026-07-03T12:00:00Z"), "eth-cold-1", &EMPTY),
    );
    assert_eq!(code(&d), Some(DenyCode::NoRuleMatched), "{}", d.to_text());
    assert!(
        d.skipped.iter().any(|s| s
            .failed
            .saw
            .contains("cool-down until 2026-07-04T12:00:00Z")),
        "{}",
        d.to_text()
    );
    let d = evaluate(
        &p,
        &intent,
        &ctx(ts("2026-07-04T12:00:00Z"), "eth-cold-1", &EMPTY),
    );
    assert_eq!(rule_name(&d), "eth-hot-refill");
    // HOT1 was in the previous policy: it keeps its earlier time and is usable at once.
    let d = evaluate(
        &p,
        &eth_transfer(HOT1, eth(1)),
        &ctx(ts("2026-07-01T12:00:01Z"), "eth-cold-1", &EMPTY),
    );
    assert_eq!(rule_name(&d), "eth-hot-refill");
    // With no known previous policy, every entry counts from installation.
    let mut q = example();
    q.settle_added_at(None, installed_at);
    let d = evaluate(
        &q,
        &eth_transfer(HOT1, eth(1)),
        &ctx(ts("2026-07-01T12:00:01Z"), "eth-cold-1", &EMPTY),
    );
    assert_eq!(code(&d), Some(DenyCode::NoRuleMatched), "{}", d.to_text());
}
