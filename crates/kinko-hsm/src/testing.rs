//! Test support: a fresh SoftHSM2 token per test, in a token directory of the workspace's own
//! (never the system-wide one).
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once per process. The workspace's `.cargo/config.toml` points
//! it at `target/tmp/softhsm2-test/softhsm2.conf` for every process cargo runs; the first
//! [`TestToken::new`] writes that file (atomically) with a token directory beside it. Each test
//! then initializes a token of its own, with a unique label, in that directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use secrecy::SecretString;

use crate::{Hsm, HsmConfig, HsmError, PinSource};

/// The SoftHSM2 module path: `KINKO_PKCS11_MODULE` or Debian's default.
pub fn module_path() -> PathBuf {
    std::env::var_os("KINKO_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// Writes the SoftHSM2 configuration named by `SOFTHSM2_CONF` if it does not exist yet, and
/// refuses to run against the system-wide configuration.
pub fn ensure_softhsm2_conf() -> Result<PathBuf, String> {
    // Tests of one process call this from many threads at once; they must not race on the
    // temporary file (other processes use their own pid in its name).
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = WRITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let conf = std::env::var_os("SOFTHSM2_CONF").map(PathBuf::from).ok_or(
        "SOFTHSM2_CONF is not set: run tests through cargo (the workspace .cargo/config.toml sets it)",
    )?;
    if conf.starts_with("/etc") {
        return Err(format!(
            "refusing to create test tokens through {}",
            conf.display()
        ));
    }
    if conf.exists() {
        return Ok(conf);
    }
    let dir = conf
        .parent()
        .ok_or("SOFTHSM2_CONF has no parent directory")?
        .to_path_buf();
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
    let body = format!(
        "# Written by kinko-hsm's test support. Tokens for tests only.\n\
         directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
        tokens.display()
    );
    let tmp = dir.join(format!("softhsm2.conf.{}", std::process::id()));
    std::fs::write(&tmp, body).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    Ok(conf)
}

/// A freshly initialized token with known PINs, unique to one test.
pub struct TestToken {
    /// The token label.
    pub label: String,
    /// The user PIN.
    pub user_pin: SecretString,
    /// The security officer PIN.
    pub so_pin: SecretString,
}

impl std::fmt::Debug for TestToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestToken")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestToken {
    /// Initializes a new token with a unique label and random PINs.
    pub fn new() -> Result<TestToken, HsmError> {
        ensure_softhsm2_conf().map_err(HsmError::PinSource)?;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let label = format!("t{}-{n}-{nanos:x}", std::process::id());
        let user_pin = SecretString::from(format!("user-{nanos:08x}-{n}"));
        let so_pin = SecretString::from(format!("so-{nanos:08x}-{n}"));
        crate::provision::init_token(&module_path(), &label, &so_pin, &user_pin)?;
        Ok(TestToken {
            label,
            user_pin,
            so_pin,
        })
    }

    /// A config for this token whose PIN comes from the environment variable `var`.
    pub fn config_with_env_pin(&self, var: &str, pool_size: usize) -> HsmConfig {
        HsmConfig {
            module: module_path(),
            token_label: self.label.clone(),
            pin: PinSource::Env(var.to_string()),
            pool_size,
        }
    }

    /// Opens the token with a pool of `pool_size` sessions.
    pub async fn open(&self, pool_size: usize) -> Result<Hsm, HsmError> {
        Hsm::open_with_pin(
            &module_path(),
            &self.label,
            self.user_pin.clone(),
            pool_size,
        )
        .await
    }
}
