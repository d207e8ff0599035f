//! The bench's changes to a `kinkod dev` set-up, made before kinkod's first start (kinkod
//! records the installed policy then and refuses a changed file afterwards).

use std::path::PathBuf;

use crate::BenchError;

/// The bench policy's rules: the development policy's deny rule, then one 2-of-N rule per chain
/// to the development hot wallets (address books `eth-hot`, `btc-hot`, `sol-hot`), with
/// velocity caps no bench run reaches — so the velocity check runs on every request and denies
/// none.
pub const BENCH_RULES: &str = r#"
[[rules]]
name = "deny-contract-calls"
kinds = ["token_approve", "contract_call", "safe_delegate_call", "safe_self_call"]
deny = "contract calls and token approvals are never signed"

[[rules]]
name = "bench-eth-refill"
chain = "ethereum"
asset = "ETH"
kinds = ["transfer"]
destination_book = "eth-hot"
max_amount = "100"
max_fee = "0.01"
approvals = { count = 2, roles = ["approver"], lifetime = "4h" }
velocity = [{ window = "24h", max_total = "100000000", max_count = 100000000 }]

[[rules]]
name = "bench-btc-refill"
chain = "bitcoin"
asset = "BTC"
kinds = ["transfer"]
destination_book = "btc-hot"
max_amount = "10"
max_fee = "0.001"
approvals = { count = 2, roles = ["approver"], lifetime = "4h" }
velocity = [{ window = "24h", max_total = "10000000", max_count = 100000000 }]

[[rules]]
name = "bench-sol-refill"
chain = "solana"
asset = "SOL"
kinds = ["transfer"]
destination_book = "sol-hot"
max_amount = "1000"
max_fee = "0.001"
approvals = { count = 2, roles = ["approver"], lifetime = "4h" }
velocity = [{ window = "24h", max_total = "1000000000", max_count = 100000000 }]
"#;

/// The development policy `dev_policy` with its rules replaced by [`BENCH_RULES`]; everything
/// else — officers, requesters, keys with any pinned public keys, address books, governance —
/// is kept. The result is checked to load.
pub fn bench_policy(dev_policy: &str) -> Result<String, BenchError> {
    let mut policy: toml::Table = dev_policy
        .parse()
        .map_err(|e| BenchError::Config(format!("dev policy: {e}")))?;
    let mut rules: toml::Table = BENCH_RULES
        .parse()
        .map_err(|e| BenchError::Config(format!("bench rules: {e}")))?;
    let rules = rules
        .remove("rules")
        .ok_or_else(|| BenchError::Config("bench rules: no [[rules]]".into()))?;
    policy.insert("rules".into(), rules);
    policy.insert(
        "description".into(),
        toml::Value::String(
            "kinko-bench: the development policy with bench rules (2-of-N, velocity caps no run reaches)"
                .into(),
        ),
    );
    let text = format!(
        "# Written by kinko-bench before kinkod's first start. NOT FOR PRODUCTION.\n{}",
        toml::to_string(&policy).map_err(|e| BenchError::Config(e.to_string()))?
    );
    kinko_policy::Policy::from_toml(text.as_bytes())
        .map_err(|e| BenchError::Config(format!("the bench policy does not load: {e}")))?;
    Ok(text)
}

/// `kinkod.toml` on the PostgreSQL database at `url` instead of the SQLite file, with a seen-
/// checkpoint file of its own (the SQLite run's would name a longer log than the fresh
/// database's, and kinkod would rightly refuse it). Other settings keep their values.
pub fn postgres_config(config: &str, url: &str) -> Result<String, BenchError> {
    let mut config: toml::Table = config
        .parse()
        .map_err(|e| BenchError::Config(format!("kinkod.toml: {e}")))?;
    let mut store = toml::Table::new();
    store.insert("postgres".into(), toml::Value::String(url.to_string()));
    store.insert(
        "seen_checkpoint".into(),
        toml::Value::String("seen-checkpoint-postgres.note".into()),
    );
    config.insert("store".into(), toml::Value::Table(store));
    Ok(format!(
        "# kinkod.toml of `kinkod dev`, on PostgreSQL for kinko-bench's backends phase.\n{}",
        toml::to_string(&config).map_err(|e| BenchError::Config(e.to_string()))?
    ))
}

/// `kinkod.toml` with the pool size under test and limits the bench must not hit:
/// `max_pending_per_requester`, no per-principal call rate limit (one requester and two
/// officers make hundreds of calls per second by design), `max_concurrent_per_principal` 256, a
/// 120 s deadline. Other settings keep their values. Returns the text and the PKCS#11 module.
pub fn bench_config(
    dev_config: &str,
    pool_size: usize,
    max_pending: usize,
) -> Result<(String, PathBuf), BenchError> {
    let mut config: toml::Table = dev_config
        .parse()
        .map_err(|e| BenchError::Config(format!("kinkod.toml: {e}")))?;
    let module = config
        .get("hsm")
        .and_then(|h| h.get("module"))
        .and_then(|m| m.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| BenchError::Config("kinkod.toml has no hsm.module".into()))?;
    let to_int = |n: usize| -> Result<toml::Value, BenchError> {
        i64::try_from(n)
            .map(toml::Value::Integer)
            .map_err(|e| BenchError::Config(e.to_string()))
    };
    let pool = to_int(pool_size)?;
    config
        .get_mut("hsm")
        .and_then(|h| h.as_table_mut())
        .ok_or_else(|| BenchError::Config("kinkod.toml has no [hsm]".into()))?
        .insert("pool_size".into(), pool);
    let mut limits = match config.remove("limits") {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    limits.insert("max_pending_per_requester".into(), to_int(max_pending)?);
    limits.insert("max_concurrent_per_principal".into(), to_int(256)?);
    limits.insert("request_timeout_secs".into(), to_int(120)?);
    limits.insert(
        "calls_per_second_per_principal".into(),
        toml::Value::Float(0.0),
    );
    config.insert("limits".into(), toml::Value::Table(limits));
    let text = format!(
        "# kinkod.toml of `kinkod dev`, pool size and limits set by kinko-bench.\n{}",
        toml::to_string(&config).map_err(|e| BenchError::Config(e.to_string()))?
    );
    Ok((text, module))
}
