//! Shared test helpers: the example policy, officer keys from the example's public test seeds,
//! and intent builders.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use kinko_intent::{
    Address, Amount, Asset, Chain, Fee, FeeDetail, Intent, IntentDigest, IntentKind, Network,
    Transfer, native_asset,
};
use kinko_policy::{
    ApprovalMessage, Context, EmptyHistory, Policy, PolicyHash, SignedApproval, Subject,
    VelocityHistory, Verdict,
};
use sha2::Digest;

pub const EXAMPLE: &str = include_str!("../../../../policy/example.toml");

/// EIP-55 test vectors (https://eips.ethereum.org/EIPS/eip-55), used as hot wallets in the example.
pub const HOT1: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
pub const HOT2: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";
pub const HOT3: &str = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB";
/// Also an EIP-55 vector, but not in any address book.
pub const STRANGER: &str = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb";
/// BIP-173 P2WPKH example address.
pub const BTC_HOT1: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";
pub const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";

pub fn example() -> Policy {
    Policy::from_toml(EXAMPLE.as_bytes()).unwrap()
}

/// The example with its rules replaced by `rules` (officers, keys, books and governance kept).
pub fn with_rules(rules: &str) -> String {
    let start = EXAMPLE.find("\n[[rules]]").unwrap();
    let gov = EXAMPLE.find("[governance.install]").unwrap();
    format!("{}\n{}\n{}", &EXAMPLE[..start], rules, &EXAMPLE[gov..])
}

/// The example's documented test seed: SHA-256("kinko-example:" || id).
pub fn key_of(id: &str) -> SigningKey {
    let seed: [u8; 32] = sha2::Sha256::digest(format!("kinko-example:{id}").as_bytes()).into();
    SigningKey::from_bytes(&seed)
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn eth(whole: u64) -> Amount {
    Amount::parse_units(&whole.to_string(), 18).unwrap()
}

pub fn eth_fee() -> Fee {
    Fee {
        max: Amount::from_u64(21_000 * 30_000_000_000),
        detail: FeeDetail::Ethereum {
            gas_limit: 21_000,
            max_fee_per_gas: Amount::from_u64(30_000_000_000),
            max_priority_fee_per_gas: None,
        },
    }
}

pub fn eth_transfer_many(to: &[(&str, Amount)]) -> Intent {
    Intent {
        chain: Chain::Ethereum,
        network: Network::new("1").unwrap(),
        kind: IntentKind::Transfer,
        signer: Address::new("0x000000000000000000000000000000000000c01d").unwrap(),
        asset: native_asset(Chain::Ethereum),
        transfers: to
            .iter()
            .map(|(a, v)| Transfer {
                to: Address::new(*a).unwrap(),
                amount: *v,
                change: false,
            })
            .collect(),
        fee: eth_fee(),
        nonce: Some(7),
        call: None,
        replay_keys: vec!["nonce:7".into()],
        to_sign: vec![],
    }
}

pub fn eth_transfer(to: &str, amount: Amount) -> Intent {
    eth_transfer_many(&[(to, amount)])
}

pub fn usdc_transfer(to: &str, whole: u64) -> Intent {
    let mut i = eth_transfer(to, Amount::parse_units(&whole.to_string(), 6).unwrap());
    i.kind = IntentKind::TokenTransfer;
    i.asset = Asset::Token {
        contract: Address::new(USDC).unwrap(),
        symbol: Some("USDC".into()),
        decimals: Some(6),
    };
    i
}

pub fn btc_transfer(to: &str, sats: u64, change_sats: u64) -> Intent {
    Intent {
        chain: Chain::Bitcoin,
        network: Network::new("bitcoin").unwrap(),
        kind: IntentKind::Transfer,
        signer: Address::new("bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3")
            .unwrap(),
        asset: native_asset(Chain::Bitcoin),
        transfers: vec![
            Transfer {
                to: Address::new(to).unwrap(),
                amount: Amount::from_u64(sats),
                change: false,
            },
            Transfer {
                to: Address::new("bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3")
                    .unwrap(),
                amount: Amount::from_u64(change_sats),
                change: true,
            },
        ],
        fee: Fee {
            max: Amount::from_u64(2_000),
            detail: FeeDetail::Bitcoin {
                vsize: 200,
                sat_per_kvb: 10_000,
            },
        },
        nonce: None,
        call: None,
        replay_keys: vec![],
        to_sign: vec![],
    }
}

pub fn ctx<'a>(now: Timestamp, key: &'a str, history: &'a dyn VelocityHistory) -> Context<'a> {
    Context {
        now,
        requester: "withdrawal-ledger",
        key,
        frozen: false,
        history,
    }
}

pub static EMPTY: EmptyHistory = EmptyHistory;

/// A Monday, 10:00 in Tokyo (01:00 UTC), well after every example book entry's cool-down.
pub fn office_hours() -> Timestamp {
    ts("2026-07-06T01:00:00Z")
}

pub fn withdrawal(request_id: &str, digest: IntentDigest) -> Subject {
    Subject::Withdrawal {
        request_id: request_id.into(),
        intent_digest: digest,
    }
}

pub fn approve(
    policy_hash: PolicyHash,
    subject: &Subject,
    officer: &str,
    verdict: Verdict,
    issued_at: i64,
    expires_at: i64,
) -> SignedApproval {
    let msg = ApprovalMessage {
        policy_hash,
        subject: subject.clone(),
        officer_id: officer.into(),
        verdict,
        issued_at,
        expires_at,
    };
    SignedApproval::sign(&msg, &key_of(officer)).unwrap()
}
