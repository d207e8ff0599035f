//! The bench's rewrite of a `kinkod dev` set-up: the policy keeps everything but the rules, the
//! configuration keeps everything but the pool size and the limits the bench must not hit.
#![allow(clippy::unwrap_used, missing_docs)]

use kinko_bench::setup::{bench_config, bench_policy, postgres_config};

// Public keys: RFC 8032 §7.1 TEST 1, 2 and 3 (Ed25519), the SEC 2 §2.4.1 secp256k1 generator G
// (compressed) for the two secp256k1 keys; any valid points do.
const ED1: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const ED2: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const ED3: &str = "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025";
const SECP_G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

/// The shape `kinkod dev` writes (crates/kinkod/src/dev.rs, `dev_policy`), with its rules.
fn dev_policy() -> String {
    let requester = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[42u8; 32])
            .verifying_key()
            .to_bytes(),
    );
    format!(
        r#"# Development policy made by `kinkod dev`. NOT FOR PRODUCTION.
version = 1
description = "Development"

[[officers]]
id = "alice"
name = "alice (development)"
roles = ["approver", "admin", "freezer"]
group = "treasury"
public_key = "{ED1}"

[[officers]]
id = "bob"
name = "bob (development)"
roles = ["approver", "admin"]
group = "treasury"
public_key = "{ED2}"

[[officers]]
id = "carol"
name = "carol (development)"
roles = ["approver", "admin", "freezer"]
group = "risk"
public_key = "{ED3}"

[[requesters]]
id = "ledger"
public_key = "{requester}"
keys = ["eth-dev", "btc-dev", "sol-dev"]

[[keys]]
name = "eth-dev"
chain = "ethereum"
network = "11155111"
hsm_label = "kinko-eth-dev"
public_key = "{SECP_G}"

[[keys]]
name = "btc-dev"
chain = "bitcoin"
network = "testnet"
hsm_label = "kinko-btc-dev"
public_key = "{SECP_G}"

[[keys]]
name = "sol-dev"
chain = "solana"
network = "devnet"
hsm_label = "kinko-sol-dev"
public_key = "{ED3}"

[[address_books]]
name = "eth-hot"
chain = "ethereum"
cool_down = "72h"

[[address_books.entries]]
address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
label = "development hot wallet"
added_at = "2026-01-01T00:00:00Z"

[[address_books]]
name = "btc-hot"
chain = "bitcoin"
cool_down = "72h"

[[address_books.entries]]
address = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
label = "development hot wallet"
added_at = "2026-01-01T00:00:00Z"

[[address_books]]
name = "sol-hot"
chain = "solana"
cool_down = "72h"

[[address_books.entries]]
address = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
label = "development hot wallet"
added_at = "2026-01-01T00:00:00Z"

[[rules]]
name = "eth-hot-refill"
chain = "ethereum"
asset = "ETH"
kinds = ["transfer"]
destination_book = "eth-hot"
max_amount = "100"
max_fee = "0.01"
approvals = {{ count = 2, roles = ["approver"], lifetime = "4h" }}
velocity = [{{ window = "24h", max_total = "500", max_count = 50 }}]

[governance.install]
quorum = {{ count = 2, roles = ["admin"], distinct_groups = 2, lifetime = "72h" }}
time_lock = "1h"
veto_roles = []

[governance.freeze]
roles = ["freezer"]
lifetime = "1h"

[governance.unfreeze]
quorum = {{ count = 2, roles = ["admin"], distinct_groups = 2, lifetime = "24h" }}
delay = "1h"
"#
    )
}

fn table(text: &str) -> toml::Table {
    text.parse().unwrap()
}

#[test]
fn the_bench_policy_keeps_everything_but_the_rules() {
    let dev = dev_policy();
    kinko_policy::Policy::from_toml(dev.as_bytes()).unwrap();
    let bench = bench_policy(&dev).unwrap();
    let policy = kinko_policy::Policy::from_toml(bench.as_bytes()).unwrap();
    assert_eq!(
        hex::encode(
            policy
                .officer("alice")
                .unwrap()
                .public_key
                .unwrap()
                .to_bytes()
        ),
        ED1
    );
    let (dev, bench) = (table(&dev), table(&bench));
    for kept in [
        "version",
        "officers",
        "requesters",
        "keys",
        "address_books",
        "governance",
    ] {
        assert_eq!(dev.get(kept), bench.get(kept), "{kept} changed");
    }
    let names: Vec<&str> = bench["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "deny-contract-calls",
            "bench-eth-refill",
            "bench-btc-refill",
            "bench-sol-refill"
        ]
    );
    // Every bench transfer rule asks for 2 approvers and has a velocity cap far above any run.
    for rule in &bench["rules"].as_array().unwrap()[1..] {
        assert_eq!(rule["approvals"]["count"].as_integer(), Some(2));
        let cap = rule["velocity"][0]["max_count"].as_integer().unwrap();
        assert!(cap >= 100_000_000, "{rule:?}");
    }
}

#[test]
fn a_policy_that_does_not_parse_is_refused() {
    assert!(bench_policy("officers = [").is_err());
    // Parses, but the bench rules name books the file lacks: refused before kinkod sees it.
    assert!(bench_policy("version = 1\n").is_err());
}

#[test]
fn the_bench_config_sets_the_pool_and_lifts_the_limits_only() {
    let dev = r#"[server]
listen = "127.0.0.1:7443"

[tls]
client_ca = "tls/ca.pem"
cert = "tls/server.pem"
key = "tls/server.key"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "kinko-dev"
pin = { file = "hsm/user.pin" }
pool_size = 4

[store]
path = "kinko.db"

[limits]
pending_expiry_secs = 86400
max_pending_per_requester = 1000
"#;
    let (text, module) = bench_config(dev, 2, 50_000).unwrap();
    assert_eq!(
        module,
        std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so")
    );
    let (dev, bench) = (table(dev), table(&text));
    for kept in ["server", "tls", "store"] {
        assert_eq!(dev.get(kept), bench.get(kept), "{kept} changed");
    }
    assert_eq!(bench["hsm"]["pool_size"].as_integer(), Some(2));
    assert_eq!(bench["hsm"]["token_label"].as_str(), Some("kinko-dev"));
    assert_eq!(bench["hsm"]["pin"]["file"].as_str(), Some("hsm/user.pin"));
    let limits = &bench["limits"];
    assert_eq!(
        limits["max_pending_per_requester"].as_integer(),
        Some(50_000)
    );
    assert_eq!(
        limits["calls_per_second_per_principal"].as_float(),
        Some(0.0)
    );
    assert_eq!(
        limits["max_concurrent_per_principal"].as_integer(),
        Some(256)
    );
    assert_eq!(limits["pending_expiry_secs"].as_integer(), Some(86_400));
    assert!(bench_config("[server]\n", 4, 1).is_err(), "no [hsm]");
}

#[test]
fn the_backends_phase_moves_only_the_store_to_postgresql() {
    let dev = "[server]\nlisten = \"127.0.0.1:7000\"\n\n[hsm]\ntoken_label = \"kinko-dev\"\n\n[store]\npath = \"kinko.db\"\n";
    let url = "host=127.0.0.1 port=5999 user=kinko dbname=kinko_bench_1";
    let (dev_t, pg) = (table(dev), table(&postgres_config(dev, url).unwrap()));
    assert_eq!(dev_t.get("server"), pg.get("server"));
    assert_eq!(dev_t.get("hsm"), pg.get("hsm"));
    let store = pg["store"].as_table().unwrap();
    assert_eq!(store["postgres"].as_str(), Some(url));
    assert!(store.get("path").is_none(), "both backends named");
    // Not the SQLite run's seen checkpoint: that log is longer than the fresh database's.
    assert_eq!(
        store["seen_checkpoint"].as_str(),
        Some("seen-checkpoint-postgres.note")
    );
    assert!(postgres_config("not toml [", url).is_err());
}
