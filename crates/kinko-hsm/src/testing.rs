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

/// The second PKCS#11 implementation the tests also run on (Kryoptic, built by
/// `hsm-config/kryoptic/build.sh`; the README's test command sets `KINKO_SECOND_PKCS11_MODULE`),
/// or `None` when `KINKO_ALLOW_SKIP` names `second_token` (or is `1`): a test skips knowingly,
/// and says so. Without either it panics: the test would otherwise pass having tested nothing.
pub fn second_module() -> Option<PathBuf> {
    if let Some(m) = std::env::var_os("KINKO_SECOND_PKCS11_MODULE") {
        return Some(PathBuf::from(m));
    }
    assert!(
        std::env::var("KINKO_ALLOW_SKIP")
            .is_ok_and(|v| v == "1" || v.split(',').any(|s| s.trim() == "second_token")),
        "KINKO_SECOND_PKCS11_MODULE is not set: build Kryoptic with hsm-config/kryoptic/build.sh \
         (scripts/test-all.sh does), or set KINKO_ALLOW_SKIP=second_token to skip knowingly"
    );
    eprintln!("SKIPPED (KINKO_ALLOW_SKIP): no second PKCS#11 module");
    None
}

/// Writes a Kryoptic configuration in `dir` with one slot whose token is the SQLite file
/// `dir/token.sql`, and returns its path (what `KRYOPTIC_CONF` must name for the process that
/// loads the module).
pub fn write_kryoptic_conf(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    let conf = dir.join("kryoptic.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = 7\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            dir.join("token.sql").display()
        ),
    )?;
    Ok(conf)
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

/// What [`raw_sign_rate`] measured: `C_Sign` calls completed in the timed window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawSignRate {
    /// `C_Sign` calls completed inside the timed window, all sessions together.
    pub ops: u64,
    /// Length of the timed window, seconds.
    pub seconds: f64,
}

impl RawSignRate {
    /// Calls per second (0 for an empty window).
    pub fn ops_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The HSM's own speed, the baseline of benchmarks: `sessions` OS threads, each with its own
/// logged-in session on the token labelled `token_label`, call `C_Sign` in a loop with the
/// private key labelled `key_label` — `CKM_ECDSA` over a 32-byte prehash for secp256k1,
/// `CKM_EDDSA` (pure) over 32 bytes for Ed25519 — with no verification, pool or queue. After
/// `warmup`, calls are counted for `run`. The same approach as this crate's `benches/sign.rs`.
///
/// SoftHSM2 reads `SOFTHSM2_CONF` when the module is first loaded in a process, so callers
/// measuring a token of another configuration run this in a process of their own.
// Each argument is one independent knob of the measurement; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn raw_sign_rate(
    module: &std::path::Path,
    token_label: &str,
    pin: &SecretString,
    key_label: &str,
    kind: crate::KeyKind,
    sessions: usize,
    warmup: std::time::Duration,
    run: std::time::Duration,
) -> Result<RawSignRate, HsmError> {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
    use cryptoki::object::{Attribute, ObjectClass};
    use cryptoki::session::UserType;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    if sessions == 0 || sessions > crate::MAX_POOL_SIZE {
        return Err(HsmError::Worker(format!(
            "raw_sign_rate: sessions must be 1..={}",
            crate::MAX_POOL_SIZE
        )));
    }
    let ctx = crate::load_module(module)?;
    let slot = crate::find_token(&ctx, token_label)?;
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::with_capacity(sessions);
    for t in 0..sessions {
        let session = ctx
            .open_rw_session(slot)
            .map_err(crate::error::from_cryptoki)?;
        match session.login(UserType::User, Some(pin)) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => return Err(crate::error::from_cryptoki(e)),
        }
        let key = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(key_label.as_bytes().to_vec()),
            ])
            .map_err(crate::error::from_cryptoki)?
            .first()
            .copied()
            .ok_or_else(|| HsmError::KeyNotFound(key_label.to_string()))?;
        let (stop, measuring, count) = (stop.clone(), measuring.clone(), count.clone());
        threads.push(std::thread::spawn(move || -> Result<(), HsmError> {
            let mech = match kind {
                crate::KeyKind::Secp256k1 => Mechanism::Ecdsa,
                crate::KeyKind::Ed25519 => {
                    Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure))
                }
            };
            let mut data = [u8::try_from(t % 256).unwrap_or(0); 32];
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                data[..8].copy_from_slice(&i.to_be_bytes());
                let sig = session
                    .sign(&mech, key, &data)
                    .map_err(crate::error::from_cryptoki)?;
                std::hint::black_box(sig);
                if measuring.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                i = i.wrapping_add(1);
            }
            Ok(())
        }));
    }
    std::thread::sleep(warmup);
    measuring.store(true, Ordering::SeqCst);
    let start = std::time::Instant::now();
    std::thread::sleep(run);
    let ops = count.load(Ordering::SeqCst);
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join()
            .map_err(|_| HsmError::Worker("a raw C_Sign thread panicked".into()))??;
    }
    Ok(RawSignRate { ops, seconds })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::{TestToken, module_path, raw_sign_rate};
    use crate::{HsmError, KeyKind};

    /// The raw baseline signs with the labelled key on each session, and refuses what it
    /// cannot measure (no sessions, no such key). Counts only, no timing asserted.
    #[tokio::test(flavor = "multi_thread")]
    async fn raw_sign_rate_signs_with_the_labelled_key() {
        let token = TestToken::new().unwrap();
        let hsm = token.open(1).await.unwrap();
        hsm.generate_key("raw-k1", KeyKind::Secp256k1)
            .await
            .unwrap();
        hsm.generate_key("raw-ed", KeyKind::Ed25519).await.unwrap();
        let (label, pin) = (token.label.clone(), token.user_pin.clone());
        tokio::task::spawn_blocking(move || {
            let short = Duration::from_millis(20);
            for (key, kind) in [("raw-k1", KeyKind::Secp256k1), ("raw-ed", KeyKind::Ed25519)] {
                let r = raw_sign_rate(&module_path(), &label, &pin, key, kind, 2, short, short)
                    .unwrap();
                assert!(r.ops > 0, "{key}: no C_Sign completed");
                assert!(r.seconds > 0.0);
            }
            assert!(matches!(
                raw_sign_rate(
                    &module_path(),
                    &label,
                    &pin,
                    "nope",
                    KeyKind::Ed25519,
                    1,
                    short,
                    short
                ),
                Err(HsmError::KeyNotFound(_))
            ));
            assert!(
                raw_sign_rate(
                    &module_path(),
                    &label,
                    &pin,
                    "raw-ed",
                    KeyKind::Ed25519,
                    0,
                    short,
                    short
                )
                .is_err()
            );
        })
        .await
        .unwrap();
    }
}
