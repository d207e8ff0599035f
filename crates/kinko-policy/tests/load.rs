//! Loading policy files: the example, the policy hash, and errors that name their lines.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kinko_intent::Chain;
use kinko_policy::{Diagnostic, Policy, PolicyError, PolicyHash};
use sha2::Digest;

/// The 1-based line of the first occurrence of `needle`, computed by the test itself.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match Policy::from_toml(text.as_bytes()) {
        Err(PolicyError::Invalid(d)) => d.0,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("policy loaded but should not have"),
    }
}

#[test]
fn example_loads_and_summarises() {
    let p = example();
    assert_eq!(p.officers().count(), 6);
    assert_eq!(p.rules().len(), 8);
    assert_eq!(p.rules()[0].name, "deny-token-approve");
    assert!(p.summary().contains("6 officer(s)"));
    // The token registry answers for any case of an Ethereum contract.
    let reg = p.token_registry();
    assert_eq!(
        reg.get(Chain::Ethereum, &USDC.to_ascii_lowercase())
            .unwrap()
            .symbol,
        "USDC"
    );
    assert_eq!(
        reg.get(
            Chain::Solana,
            "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
        )
        .unwrap()
        .decimals,
        6
    );
    // Ethereum book entries are stored in comparison form (lowercase).
    let book = p.address_book("eth-hot-wallets").unwrap();
    assert!(book.entries.contains_key(&HOT1.to_ascii_lowercase()));
}

#[test]
fn policy_hash_is_domain_tagged_sha256_of_the_exact_bytes() {
    let p = example();
    let mut h = sha2::Sha256::new();
    h.update(b"kinko/policy/v1\n");
    h.update(EXAMPLE.as_bytes());
    let expected: [u8; 32] = h.finalize().into();
    assert_eq!(p.hash(), PolicyHash(expected));
    // A comment change is a different policy file, hence a different hash.
    let edited = format!("{EXAMPLE}\n# edited\n");
    assert_ne!(
        Policy::from_toml(edited.as_bytes()).unwrap().hash(),
        p.hash()
    );
}

#[test]
fn several_semantic_errors_are_reported_at_once_with_their_lines() {
    let text = with_rules(
        r#"
[[rules]]
name = "bad-asset"
chain = "ethereum"
asset = "DOGE"
max_fee = "0.01"
approvals = { count = 2, roles = ["approver"], lifetime = "4h" }

[[rules]]
name = "bad-book"
destination_book = "nowhere"
deny = "x"

[[rules]]
name = "too-many"
chain = "ethereum"
max_fee = "0.01"
approvals = { count = 9, roles = ["approver"], lifetime = "4h" }

[[rules]]
name = "bad-window"
chain = "ethereum"
windows = [{ zone = "Mars/Olympus", days = ["mon", "funday"], from = "09:00", until = "25:00" }]
deny = "x"
"#,
    );
    let errs = errors(&text);
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    let want = [
        line_of(&text, "asset = \"DOGE\""),
        line_of(&text, "destination_book = \"nowhere\""),
        line_of(&text, "count = 9"),
        line_of(&text, "zone = \"Mars/Olympus\""),
    ];
    for w in want {
        assert!(lines.contains(&w), "no error on line {w}: {errs:#?}");
    }
    // The window line has three problems: zone, day, time.
    let window_line = line_of(&text, "zone = \"Mars/Olympus\"");
    assert_eq!(
        errs.iter().filter(|e| e.line == window_line).count(),
        3,
        "{errs:#?}"
    );
    assert!(errs.iter().any(|e| e.message.contains("funday")));
    assert!(errs.iter().any(|e| e.message.contains("Mars/Olympus")));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("can never be reached"))
    );
    // Sorted by position in the file.
    assert!(lines.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn schema_errors_in_several_entries_are_all_reported() {
    let text = EXAMPLE
        .replacen(
            "name = \"Bob Tanaka\"",
            "name = \"Bob Tanaka\"\nnickname = \"bobby\"",
            1,
        )
        .replacen("hsm_label = \"kinko-btc-cold-1\"", "hsm_label = 42", 1)
        .replacen(
            "label = \"hot wallet 2\"",
            "label = \"hot wallet 2\"\nnote = \"x\"",
            1,
        );
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_eq!(errs[0].line, line_of(&text, "nickname"));
    assert!(errs[0].message.contains("nickname"), "{}", errs[0].message);
    assert_eq!(errs[1].line, line_of(&text, "hsm_label = 42"));
    assert_eq!(errs[2].line, line_of(&text, "note = \"x\""));
}

#[test]
fn field_errors_name_their_lines() {
    let text = EXAMPLE
        .replacen(
            "public_key = \"3d4eb13ff20a042497b5a9e87e04e949a05d0a604e7a9b39c6a8c51e70c7efe9\"",
            "public_key = \"247e8cff2e3993be58e9bc685b5b94709b7dec5c785d848164eb71b16569967c\"",
            1,
        )
        .replacen(
            "address = \"0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359\"",
            "address = \"0xfB69\"",
            1,
        )
        .replacen(
            "added_at = \"2026-06-01T09:00:00Z\"",
            "added_at = \"June 1st\"",
            1,
        )
        .replacen("cool_down = \"72h\"", "cool_down = \"-5h\"", 1)
        .replacen("time_lock = \"48h\"", "time_lock = \"soon\"", 1)
        .replacen("id = \"withdrawal-ledger\"", "id = \"alice\"", 1);
    let errs = errors(&text);
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    // Bob's key is now Alice's: reported on Bob's public_key line (the second occurrence).
    let first = text.find("247e8cff").unwrap();
    let second = first + 1 + text[first + 1..].find("247e8cff").unwrap();
    let bob_key_line = text[..second].matches('\n').count() + 1;
    for w in [
        bob_key_line,
        line_of(&text, "address = \"0xfB69\""),
        line_of(&text, "added_at = \"June 1st\""),
        line_of(&text, "cool_down = \"-5h\""),
        line_of(&text, "time_lock = \"soon\""),
        line_of(&text, "id = \"alice\"\npublic_key = \"d918"),
    ] {
        assert!(lines.contains(&w), "no error on line {w}: {errs:#?}");
    }
    assert_eq!(errs.len(), 6, "{errs:#?}");
}

#[test]
fn toml_syntax_errors_name_lines() {
    let text = "version = 1\ndescription = \"x\"\n[[officers]]\nid = \"a\nname = 1\n";
    let errs = errors(text);
    assert!(!errs.is_empty());
    assert_eq!(errs[0].line, 4, "{errs:#?}");
    assert!(errs[0].message.starts_with("TOML syntax"));
}

#[test]
fn unknown_top_level_keys_and_missing_sections() {
    let text = "version = 2\nfoo = 1\n";
    let errs = errors(text);
    assert!(
        errs.iter()
            .any(|e| e.line == 1 && e.message.contains("version"))
    );
    assert!(
        errs.iter()
            .any(|e| e.line == 2 && e.message.contains("foo"))
    );
    assert!(errs.iter().any(|e| e.message.contains("governance")));
    assert!(errs.iter().any(|e| e.message.contains("no [[officers]]")));
}

#[test]
fn invalid_utf8_and_oversized_files_are_refused() {
    let mut bytes = b"version = 1\n# \xff\n".to_vec();
    match Policy::from_toml(&bytes) {
        Err(PolicyError::Invalid(d)) => assert_eq!(d.0[0].line, 2),
        other => panic!("{other:?}"),
    }
    bytes.resize(kinko_policy::MAX_POLICY_BYTES + 1, b' ');
    assert!(matches!(
        Policy::from_toml(&bytes),
        Err(PolicyError::TooLarge(_))
    ));
}

#[test]
fn rule_action_must_be_exactly_one() {
    let text = with_rules(
        "[[rules]]\nname = \"both\"\nchain = \"ethereum\"\nmax_fee = \"0.01\"\ndeny = \"x\"\napprovals = { count = 1, roles = [\"approver\"], lifetime = \"1h\" }\n\n[[rules]]\nname = \"neither\"\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].line, line_of(&text, "deny = \"x\""));
    assert_eq!(errs[1].line, line_of(&text, "name = \"neither\""));
}

#[test]
fn amounts_need_an_asset_and_respect_its_decimals() {
    let text = with_rules(
        "[[rules]]\nname = \"a\"\nmax_amount = \"5\"\ndeny = \"x\"\n\n[[rules]]\nname = \"b\"\nchain = \"ethereum\"\nasset = \"USDC\"\nmax_amount = \"1.0000001\"\ndeny = \"x\"\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].line, line_of(&text, "max_amount = \"5\""));
    assert_eq!(errs[1].line, line_of(&text, "max_amount = \"1.0000001\""));
    assert!(errs[1].message.contains("6 decimals"));
}

#[test]
fn small_order_and_invalid_officer_keys_are_refused() {
    // The identity point (small order; listed among Ed25519 small-order encodings in
    // "Taming the many EdDSAs", Chalkias et al. 2020) and a non-point.
    let weak = "0100000000000000000000000000000000000000000000000000000000000000";
    let alice = "247e8cff2e3993be58e9bc685b5b94709b7dec5c785d848164eb71b16569967c";
    let text = EXAMPLE.replacen(alice, weak, 1);
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("weak"));
    assert_eq!(errs[0].line, line_of(&text, weak));
}

#[test]
fn rfc8032_test_key_loads_as_an_officer_key() {
    // RFC 8032 section 7.1, TEST 1: public key of secret 9d61b19d…7f60.
    let rfc = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let secret =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&secret.try_into().unwrap());
    assert_eq!(hex::encode(sk.verifying_key().to_bytes()), rfc);
    let text = EXAMPLE.replacen(
        "247e8cff2e3993be58e9bc685b5b94709b7dec5c785d848164eb71b16569967c",
        rfc,
        1,
    );
    let p = Policy::from_toml(text.as_bytes()).unwrap();
    assert_eq!(
        hex::encode(p.officer("alice").unwrap().public_key.unwrap().to_bytes()),
        rfc
    );
}

#[test]
fn durations_use_jiffs_friendly_format() {
    for (d, ok) in [
        ("1h 30m", true),
        ("90m", true),
        ("PT2H", true),
        ("1.5h", true),
        ("1.5s", false),
        ("0s", false),
        ("-1h", false),
        ("9601h", false),
    ] {
        let text = EXAMPLE.replacen("lifetime = \"1h\"", &format!("lifetime = \"{d}\""), 1);
        assert_eq!(Policy::from_toml(text.as_bytes()).is_ok(), ok, "{d}");
    }
}

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Cutting, splicing or corrupting the example never panics the loader; every error
        /// names a line inside the file.
        #[test]
        fn mutated_examples_load_or_fail_cleanly(
            at in 0usize..EXAMPLE.len(),
            len in 0usize..200,
            insert in "[ -~\n\"\\[\\]=]{0,40}",
        ) {
            let mut bytes = EXAMPLE.as_bytes().to_vec();
            let end = (at + len).min(bytes.len());
            bytes.splice(at..end, insert.bytes());
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            match Policy::from_toml(&bytes) {
                Ok(_) => {}
                Err(PolicyError::Invalid(d)) => {
                    prop_assert!(!d.0.is_empty());
                    for e in d.0 {
                        prop_assert!(e.line >= 1 && e.line <= lines, "{e}");
                    }
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        /// Arbitrary bytes never panic the loader or the approval decoder.
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Policy::from_toml(&bytes);
            if let Ok(m) = kinko_policy::ApprovalMessage::from_bytes(&bytes) {
                prop_assert_eq!(m.to_bytes().unwrap(), bytes);
            }
        }
    }
}

#[test]
fn deeply_nested_input_is_refused_without_overflowing_the_stack() {
    let n = 100_000;
    for text in [
        format!("a = {}{}\n", "[".repeat(n), "]".repeat(n)),
        format!("a = {}1{}\n", "{b=".repeat(n), "}".repeat(n)),
    ] {
        assert!(matches!(
            Policy::from_toml(text.as_bytes()),
            Err(PolicyError::Invalid(_))
        ));
    }
}

#[test]
fn a_rule_that_allows_signing_must_cap_the_fee() {
    let approvals = "approvals = { count = 2, roles = [\"approver\"], lifetime = \"4h\" }";
    let text = with_rules(&format!(
        "[[rules]]\nname = \"uncapped\"\nchain = \"ethereum\"\nasset = \"ETH\"\n{approvals}\n\n\
         [[rules]]\nname = \"any-chain\"\nmax_fee = \"0.01\"\n{approvals}\n\n\
         [[rules]]\nname = \"a-deny-needs-no-cap\"\nchain = \"bitcoin\"\ndeny = \"x\"\n"
    ));
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].line, line_of(&text, "name = \"uncapped\""));
    assert!(
        errs[0]
            .message
            .contains("a rule that allows signing needs `max_fee`"),
        "{}",
        errs[0].message
    );
    // A fee cap is in the chain's native asset: without a chain it means nothing.
    assert_eq!(errs[1].line, line_of(&text, "max_fee = \"0.01\""));
    assert!(
        errs[1].message.contains("needs `chain`"),
        "{}",
        errs[1].message
    );
}

#[test]
fn fee_caps_are_in_native_units_and_relative_caps_only_on_native_rules() {
    let text = with_rules(
        r#"[[rules]]
name = "too-precise"
chain = "bitcoin"
asset = "BTC"
max_fee = "0.000000001"
deny = "x"

[[rules]]
name = "relative-on-a-token"
chain = "ethereum"
asset = "USDC"
max_fee = "0.02"
max_fee_bps = 10
deny = "x"

[[rules]]
name = "over-100-percent"
chain = "ethereum"
asset = "ETH"
max_fee = "0.01"
max_fee_bps = 10001
deny = "x"

[[rules]]
name = "relative-without-asset"
chain = "solana"
max_fee = "0.001"
max_fee_bps = 5
deny = "x"
"#,
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_eq!(errs[0].line, line_of(&text, "max_fee = \"0.000000001\""));
    assert!(
        errs[0].message.contains("BTC, which has 8 decimals"),
        "{}",
        errs[0].message
    );
    assert_eq!(errs[1].line, line_of(&text, "max_fee_bps = 10\n"));
    assert!(
        errs[1].message.contains("native asset"),
        "{}",
        errs[1].message
    );
    assert_eq!(errs[2].line, line_of(&text, "max_fee_bps = 10001"));
    assert!(
        errs[2].message.contains("at most 10000"),
        "{}",
        errs[2].message
    );
    assert_eq!(errs[3].line, line_of(&text, "max_fee_bps = 5"));
    assert!(
        errs[3].message.contains("native asset"),
        "{}",
        errs[3].message
    );

    // The example's caps, in base units of the native asset.
    let p = example();
    let rule = |name: &str| p.rules().iter().find(|r| r.name == name).unwrap();
    let eth = rule("eth-hot-refill");
    assert_eq!(
        eth.max_fee,
        Some(kinko_intent::Amount::from_u64(10_000_000_000_000_000))
    );
    assert_eq!(eth.max_fee_bps, Some(100));
    let usdc = rule("usdc-hot-refill");
    assert_eq!(
        usdc.max_fee,
        Some(kinko_intent::Amount::from_u64(20_000_000_000_000_000))
    );
    assert_eq!(usdc.max_fee_bps, None);
    assert_eq!(
        rule("btc-hot-refill").max_fee,
        Some(kinko_intent::Amount::from_u64(100_000))
    );
    assert_eq!(
        rule("sol-hot-refill").max_fee,
        Some(kinko_intent::Amount::from_u64(1_000_000))
    );
    // Every rule of the example that allows signing caps the fee.
    for r in p.rules() {
        if matches!(r.action, kinko_policy::RuleAction::RequireApprovals(_)) {
            assert!(r.max_fee.is_some(), "{}", r.name);
        }
    }
}

#[test]
fn witnessed_is_a_flag_of_rules_that_allow_signing() {
    let text = with_rules(
        r#"[[rules]]
name = "large-and-witnessed"
chain = "ethereum"
asset = "ETH"
kinds = ["transfer"]
max_amount = "5000"
max_fee = "0.01"
approvals = { count = 2, roles = ["approver"], lifetime = "4h" }
witnessed = true

[[rules]]
name = "small"
chain = "ethereum"
asset = "ETH"
kinds = ["transfer"]
max_amount = "1"
max_fee = "0.01"
approvals = { count = 2, roles = ["approver"], lifetime = "4h" }
"#,
    );
    let p = Policy::from_toml(text.as_bytes()).unwrap();
    let flags: Vec<(&str, bool)> = p
        .rules()
        .iter()
        .map(|r| (r.name.as_str(), r.witnessed))
        .collect();
    assert_eq!(flags, [("large-and-witnessed", true), ("small", false)]);

    let text = with_rules(
        r#"[[rules]]
name = "deny-witnessed"
kinds = ["contract_call"]
deny = "no"
witnessed = true
"#,
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].line, line_of(&text, "witnessed = true"));
    assert!(errs[0].message.contains("deny rule"), "{}", errs[0].message);
}
