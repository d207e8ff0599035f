//! Fuzz body for the policy loader, shared by the `policy_toml` cargo-fuzz target and the corpus
//! test (`tests/fuzz_corpus.rs`).

use kinko_intent::{Address, Amount, Chain, Fee, FeeDetail, Intent, IntentKind, Network, Transfer};
use kinko_policy::{Context, EmptyHistory, Policy, PolicyError};

/// Loads `data`; a loaded policy evaluates a fixed intent and every diagnostic names a line
/// inside the input. Any outcome but a panic, a line outside the file or an error without a
/// message is a pass.
#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// [`run`], saying whether `data` loaded.
pub(crate) fn check(data: &[u8]) -> bool {
    match Policy::from_toml(data) {
        Ok(policy) => {
            let _ = policy.summary();
            let (Ok(network), Ok(to), Ok(signer)) = (
                Network::new("1"),
                Address::new("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
                Address::new("0x000000000000000000000000000000000000c01d"),
            ) else {
                panic!("the fixed intent's network or addresses are invalid");
            };
            let intent = Intent {
                chain: Chain::Ethereum,
                network,
                kind: IntentKind::Transfer,
                signer,
                asset: kinko_intent::native_asset(Chain::Ethereum),
                transfers: vec![Transfer {
                    to,
                    amount: Amount::from_u64(1),
                    change: false,
                }],
                fee: Fee {
                    max: Amount::ZERO,
                    detail: FeeDetail::Ethereum {
                        gas_limit: 21_000,
                        max_fee_per_gas: Amount::ZERO,
                        max_priority_fee_per_gas: None,
                    },
                },
                nonce: Some(0),
                call: None,
                replay_keys: vec![],
                to_sign: vec![],
            };
            for key in policy.keys().map(|k| k.name.clone()).collect::<Vec<_>>() {
                let ctx = Context {
                    now: jiff::Timestamp::UNIX_EPOCH,
                    requester: "withdrawal-ledger",
                    key: &key,
                    frozen: false,
                    history: &EmptyHistory,
                };
                let d = kinko_policy::evaluate(&policy, &intent, &ctx);
                let _ = (d.to_text(), d.to_json());
            }
            true
        }
        Err(PolicyError::Invalid(d)) => {
            let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(!d.0.is_empty(), "invalid without a diagnostic");
            for e in &d.0 {
                assert!(
                    e.line >= 1 && e.line <= lines,
                    "diagnostic outside the file: {e}"
                );
                assert!(!e.to_string().trim().is_empty(), "empty diagnostic");
            }
            false
        }
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "no message: {e:?}");
            false
        }
    }
}
