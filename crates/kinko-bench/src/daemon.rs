//! The daemon under test: a fresh `kinkod dev` set-up with the bench policy and limits, started
//! with `--config`, and the raw `C_Sign` baseline on its token (in a child process, because
//! SoftHSM2 reads `SOFTHSM2_CONF` once per process).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kinko_bench::BenchError;

/// The bench policy's rules: the development policy's deny rule, then one 2-of-N rule per chain
/// to the development hot wallets, with limits and velocity caps no bench run reaches (so the
/// velocity check runs on every request and denies none).
const BENCH_RULES: &str = r#"
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
approvals = { count = 2, roles = ["approver"], lifetime = "4h" }
velocity = [{ window = "24h", max_total = "100000000", max_count = 100000000 }]

[[rules]]
name = "bench-btc-refill"
chain = "bitcoin"
asset = "BTC"
kinds = ["transfer"]
destination_book = "btc-hot"
max_amount = "10"
approvals = { count = 2, roles = ["approver"], lifetime = "4h" }
velocity = [{ window = "24h", max_total = "10000000", max_count = 100000000 }]

[[rules]]
name = "bench-sol-refill"
chain = "solana"
asset = "SOL"
kinds = ["transfer"]
destination_book = "sol-hot"
max_amount = "1000"
approvals = { count = 2, roles = ["approver"], lifetime = "4h" }
velocity = [{ window = "24h", max_total = "1000000000", max_count = 100000000 }]
"#;

/// A `kinkod dev --init-only` set-up, rewritten for the bench.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) token_label: String,
    pub(crate) softhsm_conf: PathBuf,
    pub(crate) module: PathBuf,
    pub(crate) pool_size: usize,
    /// Signing keys by policy name, from `kinkod dev`'s banner.
    pub(crate) keys: HashMap<String, Vec<u8>>,
}

fn free_port() -> Result<u16, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::io("choosing a free port", e))
}

/// Parses one "NAME: CHAIN NETWORK, public key HEX" line of `kinkod dev`'s banner.
fn key_line(line: &str) -> Option<(String, Vec<u8>)> {
    let (name, rest) = line.trim().split_once(": ")?;
    let (_, hex_key) = rest.split_once(", public key ")?;
    Some((name.to_string(), hex::decode(hex_key.trim()).ok()?))
}

fn read(path: &Path) -> Result<String, BenchError> {
    std::fs::read_to_string(path).map_err(|e| BenchError::io(path.display().to_string(), e))
}

fn write(path: &Path, text: &str) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(|e| BenchError::io(path.display().to_string(), e))
}

/// Creates the set-up in `dir` (which must not exist): SoftHSM2 configuration, then
/// `kinkod dev --init-only`, then the bench policy and limits — before the daemon's first real
/// start, which records the installed policy.
pub(crate) fn init(
    kinkod: &Path,
    dir: &Path,
    pool_size: usize,
    max_pending: usize,
) -> Result<Setup, BenchError> {
    if dir.exists() {
        return Err(BenchError::Config(format!(
            "{} exists; the bench needs a fresh data directory",
            dir.display()
        )));
    }
    let tokens = dir.join("softhsm/tokens");
    std::fs::create_dir_all(&tokens)
        .map_err(|e| BenchError::io(tokens.display().to_string(), e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| BenchError::io(dir.display().to_string(), e))?;
    let softhsm_conf = dir.join("softhsm/softhsm2.conf");
    write(
        &softhsm_conf,
        &format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            dir.join("softhsm/tokens").display()
        ),
    )?;
    let port = free_port()?;
    let token_label = format!("kinko-bench-{}", std::process::id());
    let out = Command::new(kinkod)
        .args(["dev", "--data-dir"])
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--token-label", &token_label, "--init-only"])
        .env("SOFTHSM2_CONF", &softhsm_conf)
        .env("RUST_LOG", "warn")
        .output()
        .map_err(|e| BenchError::io(format!("running {}", kinkod.display()), e))?;
    let banner = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(BenchError::Daemon(format!(
            "`kinkod dev --init-only` failed ({}): {banner}",
            out.status
        )));
    }
    let keys: HashMap<String, Vec<u8>> = banner.lines().filter_map(key_line).collect();
    for name in ["eth-dev", "btc-dev", "sol-dev"] {
        if !keys.contains_key(name) {
            return Err(BenchError::Daemon(format!(
                "`kinkod dev` did not print the public key of {name}: {banner}"
            )));
        }
    }

    // The policy: everything `kinkod dev` wrote (officers, requester, keys with any pinned
    // public keys, address books, governance), with the bench rules instead of its rules.
    let policy_path = dir.join("policy.toml");
    let mut policy: toml::Table = read(&policy_path)?
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
    write(&policy_path, &text)?;

    // The configuration: the pool size under test and limits the bench never hits (the
    // daemon's other limits keep their defaults: message size, pending expiry, burst).
    let config_path = dir.join("kinkod.toml");
    let mut config: toml::Table = read(&config_path)?
        .parse()
        .map_err(|e| BenchError::Config(format!("kinkod.toml: {e}")))?;
    let module = config
        .get("hsm")
        .and_then(|h| h.get("module"))
        .and_then(|m| m.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| BenchError::Config("kinkod.toml has no hsm.module".into()))?;
    let hsm = config
        .get_mut("hsm")
        .and_then(|h| h.as_table_mut())
        .ok_or_else(|| BenchError::Config("kinkod.toml has no [hsm]".into()))?;
    let to_int = |n: usize| -> Result<toml::Value, BenchError> {
        i64::try_from(n)
            .map(toml::Value::Integer)
            .map_err(|e| BenchError::Config(e.to_string()))
    };
    hsm.insert("pool_size".into(), to_int(pool_size)?);
    let mut limits = toml::Table::new();
    limits.insert("max_pending_per_requester".into(), to_int(max_pending)?);
    limits.insert("max_concurrent_per_principal".into(), to_int(256)?);
    limits.insert("request_timeout_secs".into(), to_int(120)?);
    // 0 = no per-principal rate limit: the bench's one requester and two officers make many
    // calls per second by design.
    limits.insert(
        "calls_per_second_per_principal".into(),
        toml::Value::Float(0.0),
    );
    config.insert("limits".into(), toml::Value::Table(limits));
    write(
        &config_path,
        &format!(
            "# kinkod.toml of `kinkod dev`, pool size and limits set by kinko-bench.\n{}",
            toml::to_string(&config).map_err(|e| BenchError::Config(e.to_string()))?
        ),
    )?;
    Ok(Setup {
        dir,
        port,
        token_label,
        softhsm_conf,
        module,
        pool_size,
        keys,
    })
}

/// A running kinkod; killed when dropped.
pub(crate) struct Daemon {
    child: Child,
}

impl Daemon {
    /// The daemon's process id, as `/proc` names it.
    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Stops the daemon.
    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kinkod --config DIR/kinkod.toml` and waits until it listens. Its log goes to
/// `DIR/kinkod.log`.
pub(crate) fn start(kinkod: &Path, setup: &Setup) -> Result<Daemon, BenchError> {
    let mut child = Command::new(kinkod)
        .arg("--config")
        .arg(setup.dir.join("kinkod.toml"))
        .env("SOFTHSM2_CONF", &setup.softhsm_conf)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::io(format!("starting {}", kinkod.display()), e))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| BenchError::Daemon("no stderr pipe".into()))?;
    let log_path = setup.dir.join("kinkod.log");
    let mut log = std::fs::File::create(&log_path)
        .map_err(|e| BenchError::io(log_path.display().to_string(), e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Write as _;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if line.contains("kinkod: listening on") {
                let _ = tx.send(Ok(()));
            } else if line.starts_with("kinkod: ") && !line.starts_with("kinkod: audit log key") {
                let _ = tx.send(Err(line));
            }
        }
    });
    let daemon = Daemon { child };
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok(())) => Ok(daemon),
        Ok(Err(line)) => Err(BenchError::Daemon(line)),
        Err(_) => Err(BenchError::Daemon(format!(
            "did not start listening in 120 s; see {}",
            log_path.display()
        ))),
    }
}

/// Raw `C_Sign` on the set-up's token, in a child process of this same binary (hidden
/// `raw-sign` command) so that SoftHSM2 reads the set-up's configuration.
pub(crate) fn raw_sign(
    setup: &Setup,
    key_label: &str,
    ed25519: bool,
    warmup: Duration,
    run: Duration,
) -> Result<f64, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::io("current_exe", e))?;
    let out = Command::new(exe)
        .arg("raw-sign")
        .arg("--module")
        .arg(&setup.module)
        .args([
            "--token-label",
            &setup.token_label,
            "--key-label",
            key_label,
        ])
        .arg("--pin-file")
        .arg(setup.dir.join("hsm/user.pin"))
        .args(["--sessions", &setup.pool_size.to_string()])
        .args(["--warmup-ms", &warmup.as_millis().to_string()])
        .args(["--run-ms", &run.as_millis().to_string()])
        .args(if ed25519 { &["--ed25519"][..] } else { &[][..] })
        .env("SOFTHSM2_CONF", &setup.softhsm_conf)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| BenchError::io("running the raw C_Sign child", e))?;
    if !out.status.success() {
        return Err(BenchError::Raw(format!("child failed: {}", out.status)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse::<f64>()
        .map_err(|e| BenchError::Raw(format!("child printed {text:?}: {e}")))
}
