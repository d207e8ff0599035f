//! Microseconds per policy decision with a 10,000-entry allowlist and a 100,000-entry velocity
//! history (target: ≤ 20 µs median). Prints a table; run with `cargo bench -p kinko-policy`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kinko_intent::{
    Address, Amount, Chain, Fee, FeeDetail, Intent, IntentKind, Network, Transfer, native_asset,
};
use kinko_policy::{
    ApprovalMessage, AssetId, Context, Policy, SignedApproval, Subject, VelocityLedger, Verdict,
    evaluate, evaluate_quorum,
};
use sha2::Digest;

const EXAMPLE: &str = include_str!("../../../policy/example.toml");
const ENTRIES: usize = 10_000;
const HISTORY: usize = 100_000;

fn addr(i: usize) -> String {
    format!("0x{:040x}", 0x1000_0000 + i)
}

fn big_policy() -> String {
    let marker = "[[address_books]]\nname = \"btc-hot-wallets\"";
    let at = EXAMPLE.find(marker).unwrap();
    let mut extra = String::with_capacity(ENTRIES * 110);
    for i in 0..ENTRIES {
        extra.push_str(&format!(
            "[[address_books.entries]]\naddress = \"{}\"\nlabel = \"hot wallet {i}\"\nadded_at = \"2025-01-01T00:00:00Z\"\n\n",
            addr(i)
        ));
    }
    format!("{}{}{}", &EXAMPLE[..at], extra, &EXAMPLE[at..])
}

fn intent(to: &str, whole_eth: u64) -> Intent {
    Intent {
        chain: Chain::Ethereum,
        network: Network::new("1").unwrap(),
        kind: IntentKind::Transfer,
        signer: Address::new("0x000000000000000000000000000000000000c01d").unwrap(),
        asset: native_asset(Chain::Ethereum),
        transfers: vec![Transfer {
            to: Address::new(to).unwrap(),
            amount: Amount::parse_units(&whole_eth.to_string(), 18).unwrap(),
            change: false,
        }],
        fee: Fee {
            max: Amount::from_u64(630_000_000_000_000),
            detail: FeeDetail::Ethereum {
                gas_limit: 21_000,
                max_fee_per_gas: Amount::from_u64(30_000_000_000),
                max_priority_fee_per_gas: None,
            },
        },
        nonce: Some(1),
        call: None,
        replay_keys: vec!["nonce:1".into()],
        to_sign: vec![],
    }
}

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct =
        |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "{name:<58} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        pct(50),
        pct(90),
        pct(99),
        samples[0].as_secs_f64() * 1e6
    );
}

fn measure(name: &str, iters: usize, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    stats(name, samples);
}

fn main() {
    let text = big_policy();
    let t = Instant::now();
    let policy = Policy::from_toml(text.as_bytes()).unwrap();
    let load = t.elapsed();
    assert_eq!(
        policy
            .address_book("eth-hot-wallets")
            .unwrap()
            .entries
            .len(),
        ENTRIES + 3
    );

    // 100,000 past signatures of ETH with the key, one every 5 minutes, the newest 25 h ago:
    // the 24 h window is empty so the decisions pass, but every lookup searches the full series.
    let now: Timestamp = "2026-07-06T01:00:00Z".parse().unwrap();
    let asset = AssetId::Native(Chain::Ethereum);
    let mut ledger = VelocityLedger::new();
    let newest = now - SignedDuration::from_hours(25);
    for i in 0..HISTORY {
        let at = newest - SignedDuration::from_mins(5 * i as i64);
        ledger
            .record(
                "eth-cold-1",
                &asset,
                at,
                Amount::from_u64(1_000_000_000_000_000),
            )
            .unwrap();
    }
    assert_eq!(ledger.len(), HISTORY);
    let ctx = Context {
        now,
        requester: "withdrawal-ledger",
        key: "eth-cold-1",
        frozen: false,
        history: &ledger,
    };

    let refill = intent(
        &addr(ENTRIES / 2).to_ascii_uppercase().replace("0X", "0x"),
        100,
    );
    let large = intent(&addr(ENTRIES - 1), 1000);
    let stranger = intent("0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb", 1);
    let d = evaluate(&policy, &refill, &ctx);
    assert_eq!(
        d.rule.as_ref().unwrap().name,
        "eth-hot-refill",
        "{}",
        d.to_text()
    );
    assert!(!d.is_denied());
    let d = evaluate(&policy, &large, &ctx);
    assert_eq!(
        d.rule.as_ref().unwrap().name,
        "eth-large-refill",
        "{}",
        d.to_text()
    );
    assert!(!d.is_denied(), "{}", d.to_text());
    assert!(evaluate(&policy, &stranger, &ctx).is_denied());

    println!(
        "policy: {ENTRIES} allowlist entries (+3), velocity history {HISTORY} entries; load {:.1} ms",
        load.as_secs_f64() * 1e3
    );
    println!(
        "{:<58} {:>9} {:>9} {:>9} {:>9}",
        "µs per call", "median", "p90", "p99", "min"
    );
    measure(
        "evaluate: 2-of-N refill (rule 3, book, 1 velocity limit)",
        20_000,
        || {
            black_box(evaluate(black_box(&policy), black_box(&refill), &ctx));
        },
    );
    measure(
        "evaluate: 3-of-N large (rule 7, book, window, velocity)",
        20_000,
        || {
            black_box(evaluate(black_box(&policy), black_box(&large), &ctx));
        },
    );
    measure(
        "evaluate: unknown destination (all rules, deny by default)",
        20_000,
        || {
            black_box(evaluate(black_box(&policy), black_box(&stranger), &ctx));
        },
    );

    // Quorum: three valid approvals (strict Ed25519 verification dominates).
    let digest = large.digest().unwrap();
    let subject = Subject::Withdrawal {
        request_id: "req-1".into(),
        intent_digest: digest,
    };
    let approvals: Vec<SignedApproval> = ["alice", "bob", "carol"]
        .iter()
        .map(|id| {
            let seed: [u8; 32] =
                sha2::Sha256::digest(format!("kinko-example:{id}").as_bytes()).into();
            let msg = ApprovalMessage {
                policy_hash: policy.hash(),
                subject: subject.clone(),
                officer_id: (*id).into(),
                verdict: Verdict::Approve,
                issued_at: now.as_second() - 60,
                expires_at: now.as_second() + 3600,
            };
            SignedApproval::sign(&msg, &ed25519_dalek::SigningKey::from_bytes(&seed)).unwrap()
        })
        .collect();
    let q = evaluate(&policy, &large, &ctx).quorum().unwrap().clone();
    assert!(
        evaluate_quorum(
            &policy,
            &q,
            &subject,
            Some("withdrawal-ledger"),
            &approvals,
            now
        )
        .is_satisfied()
    );
    measure(
        "evaluate_quorum: 3 approvals, 2 groups (3 × verify_strict)",
        2_000,
        || {
            black_box(evaluate_quorum(
                &policy,
                &q,
                &subject,
                Some("withdrawal-ledger"),
                black_box(&approvals),
                now,
            ));
        },
    );
}
