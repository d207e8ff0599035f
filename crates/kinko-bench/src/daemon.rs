//! The daemon under test: a fresh `kinkod dev` set-up with the bench policy and limits, started
//! with `--config`, and the raw `C_Sign` baseline on its token (in a child process, because
//! SoftHSM2 reads `SOFTHSM2_CONF` once per process).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kinko_bench::BenchError;

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

pub(crate) fn free_port() -> Result<u16, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::io("choosing a free port", e))
}

/// Writes `DIR/softhsm/softhsm2.conf`, naming `DIR/softhsm/tokens` as the token directory, and
/// returns its path.
pub(crate) fn softhsm_conf(dir: &Path) -> Result<PathBuf, BenchError> {
    let path = dir.join("softhsm/softhsm2.conf");
    write(
        &path,
        &format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            dir.join("softhsm/tokens").display()
        ),
    )?;
    Ok(path)
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
    let softhsm_conf = softhsm_conf(&dir)?;
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

    let policy_path = dir.join("policy.toml");
    let policy = kinko_bench::setup::bench_policy(&read(&policy_path)?)?;
    write(&policy_path, &policy)?;
    let config_path = dir.join("kinkod.toml");
    let (config, module) =
        kinko_bench::setup::bench_config(&read(&config_path)?, pool_size, max_pending)?;
    write(&config_path, &config)?;
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

/// Starts `kinkod --config DIR/kinkod.toml` and waits until it listens (up to 120 s). Its log
/// goes to `DIR/kinkod.log`.
pub(crate) fn start(kinkod: &Path, setup: &Setup) -> Result<Daemon, BenchError> {
    start_within(kinkod, setup, Duration::from_secs(120))
}

/// [`start`], waiting up to `wait` (a big state takes longer: kinkod checks all of it first).
pub(crate) fn start_within(
    kinkod: &Path,
    setup: &Setup,
    wait: Duration,
) -> Result<Daemon, BenchError> {
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
    match rx.recv_timeout(wait) {
        Ok(Ok(())) => Ok(daemon),
        Ok(Err(line)) => Err(BenchError::Daemon(line)),
        Err(_) => Err(BenchError::Daemon(format!(
            "did not start listening in {} s; see {}",
            wait.as_secs(),
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
