//! `kinko-hsm`: the only Kinko crate that talks PKCS#11.
//!
//! It loads the module, finds the token by **label**, keeps a pool of logged-in sessions, creates
//! non-extractable secp256k1 and Ed25519 keys, and signs — verifying every signature in software
//! before returning it, so a faulty HSM signature never leaves the process. ECDSA signatures come
//! back normalized to low-S with their recovery id.
//!
//! All FFI lives in the `cryptoki` crate; this crate itself forbids `unsafe`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kinko_hsm::HsmError> {
//! use kinko_hsm::{Hsm, HsmConfig, KeyKind, PinSource};
//! let hsm = Hsm::open(&HsmConfig {
//!     module: "/usr/lib/softhsm/libsofthsm2.so".into(),
//!     token_label: "kinko".into(),
//!     pin: PinSource::File("/etc/kinko/hsm.pin".into()),
//!     pool_size: 4,
//! })
//! .await?;
//! hsm.generate_key("eth-cold-1", KeyKind::Secp256k1).await?;
//! let sig = hsm.sign_secp256k1_prehash("eth-cold-1", [7u8; 32]).await?;
//! assert!(sig.recovery_id <= 1);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod config;
mod error;
mod keys;
mod pool;
pub mod provision;
#[cfg(feature = "test-util")]
pub mod testing;
mod verify;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::slot::Slot;
use secrecy::SecretString;

pub use config::{DEFAULT_POOL_SIZE, HsmConfig, MAX_POOL_SIZE, PinSource};
pub use error::HsmError;
pub use keys::{KeyKind, PublicKey};
pub use pool::MAX_ATTEMPTS;
pub use verify::EcdsaSignature;

use keys::KeyEntry;
use pool::Pool;

/// A connection to one token: a session pool plus a cache of verified key metadata.
/// Cheap to clone; all clones share the pool.
#[derive(Clone)]
pub struct Hsm {
    pool: Arc<Pool>,
    keys: Arc<Mutex<HashMap<String, Arc<KeyEntry>>>>,
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("token_label", &self.pool.label)
            .field("pool_size", &self.pool.size)
            .finish_non_exhaustive()
    }
}

/// Modules loaded by this process. PKCS#11 state is process-wide and `C_Initialize` is not safe
/// to race, so each module is loaded and initialized once, under a lock, and shared.
static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

/// Loads a PKCS#11 module and initializes it, once per process; later calls share it. The module
/// is finalized only by [`finalize_modules`] at exit (and reset by
/// [`Hsm::dangerous_reset_module`]).
pub fn load_module(path: &Path) -> Result<Pkcs11, HsmError> {
    let load_err = |reason: String| HsmError::ModuleLoad {
        path: path.to_path_buf(),
        reason,
    };
    let mut modules = MODULES
        .lock()
        .map_err(|_| HsmError::Worker("module registry lock poisoned".into()))?;
    if let Some((_, ctx)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(ctx.clone());
    }
    if !path.exists() {
        return Err(load_err("no such file".into()));
    }
    let ctx = Pkcs11::new(path).map_err(|e| load_err(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_err(format!("C_Initialize: {e}"))),
    }
    modules.push((path.to_path_buf(), ctx.clone()));
    Ok(ctx)
}

/// Finalizes every module this process loaded (`C_Finalize`). Call it last, when the process is
/// about to exit and every [`Hsm`] handle is gone: a module left initialized tears itself down in
/// the C library's exit handlers, and SoftHSM2's teardown there frees its state twice when a
/// session is still being closed on another thread (`double free or corruption`, an abort
/// instead of a clean exit). Later calls to [`load_module`] load and initialize again.
pub fn finalize_modules() {
    let Ok(mut modules) = MODULES.lock() else {
        return;
    };
    for (path, ctx) in modules.drain(..) {
        if let Err(e) = ctx.finalize() {
            tracing::warn!(module = %path.display(), error = %e, "C_Finalize failed at exit");
        }
    }
}

/// Finds the slot holding the token labelled `label`.
pub fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let slots = ctx.get_slots_with_token().map_err(error::from_cryptoki)?;
    let mut found = Vec::new();
    let mut available = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let l = info.label().trim_end().to_string();
        if l == label {
            found.push(slot);
        }
        available.push(l);
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(HsmError::TokenNotFound {
            label: label.to_string(),
            available,
        }),
        many => Err(HsmError::AmbiguousToken {
            label: label.to_string(),
            count: many.len(),
        }),
    }
}

/// What the token can do for Kinko.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Every mechanism the token lists, by PKCS#11 name.
    pub mechanisms: Vec<String>,
    /// `CKM_EC_KEY_PAIR_GEN` and `CKM_ECDSA` are listed and a secp256k1 key pair could be
    /// generated (as a session object, destroyed with the session) and used.
    pub secp256k1_ecdsa: bool,
    /// `CKM_EC_EDWARDS_KEY_PAIR_GEN` and `CKM_EDDSA` are listed and an Ed25519 key pair worked.
    pub ed25519: bool,
}

/// The PKCS#11 name of the mechanisms Kinko uses, hex for the rest. (cryptoki's `Display`
/// logs an error for every vendor mechanism it does not know, which floods the log.)
fn mechanism_name(m: MechanismType) -> String {
    for (known, name) in [
        (MechanismType::ECDSA, "CKM_ECDSA"),
        (MechanismType::EDDSA, "CKM_EDDSA"),
        (MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
        (
            MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
            "CKM_EC_EDWARDS_KEY_PAIR_GEN",
        ),
    ] {
        if m == known {
            return name.to_string();
        }
    }
    format!("0x{:08x}", u64::from(m))
}

impl Capabilities {
    /// An error naming what is missing, if anything Kinko needs is.
    pub fn require_all(&self) -> Result<(), HsmError> {
        self.require(&[KeyKind::Secp256k1, KeyKind::Ed25519])
    }

    /// An error naming what is missing of `kinds` (a token without secp256k1 can still hold
    /// the log key and Solana keys).
    pub fn require(&self, kinds: &[KeyKind]) -> Result<(), HsmError> {
        let mut missing = Vec::new();
        if kinds.contains(&KeyKind::Secp256k1) && !self.secp256k1_ecdsa {
            missing.push("secp256k1 ECDSA (CKM_EC_KEY_PAIR_GEN with OID 1.3.132.0.10, CKM_ECDSA)");
        }
        if kinds.contains(&KeyKind::Ed25519) && !self.ed25519 {
            missing.push("Ed25519 (CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA)");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(HsmError::MissingMechanism(missing.join(" and ")))
        }
    }
}

impl Hsm {
    /// Opens the token named by `config`, reading the PIN from its source, and logs in once.
    pub async fn open(config: &HsmConfig) -> Result<Hsm, HsmError> {
        let pin = config.pin.load()?;
        Self::open_with_pin(&config.module, &config.token_label, pin, config.pool_size).await
    }

    /// Opens a token with a PIN already in hand.
    pub async fn open_with_pin(
        module: &Path,
        token_label: &str,
        pin: SecretString,
        pool_size: usize,
    ) -> Result<Hsm, HsmError> {
        let module = module.to_path_buf();
        let label = token_label.to_string();
        let size = pool_size.clamp(1, MAX_POOL_SIZE);
        let pool = tokio::task::spawn_blocking(move || {
            let ctx = load_module(&module)?;
            let slot = find_token(&ctx, &label)?;
            Pool::open(ctx, slot, label, pin, size)
        })
        .await
        .map_err(|e| HsmError::Worker(e.to_string()))??;
        Ok(Hsm {
            pool: Arc::new(pool),
            keys: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// How many sessions the pool has open (never more than its configured size).
    pub fn open_sessions(&self) -> usize {
        self.pool.open_sessions()
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.pool.label
    }

    /// Generates a key pair in the token: token object, private, sensitive, never extractable,
    /// sign-only, with `label` and a fresh random `CKA_ID`. Refuses a label already in use.
    pub async fn generate_key(&self, label: &str, kind: KeyKind) -> Result<PublicKey, HsmError> {
        config::check_label(label)?;
        let l = label.to_string();
        let pool = Arc::clone(&self.pool);
        let entry = self
            .pool
            .run(move |s| keys::generate(s, &l, kind, pool.generation()))
            .await?;
        self.remember(entry)
    }

    /// The public key of the key pair labelled `label`, after checking the private key's
    /// attributes and a sign-verify self-test.
    pub async fn public_key(&self, label: &str) -> Result<PublicKey, HsmError> {
        Ok(self.key(label).await?.public.clone())
    }

    async fn key(&self, label: &str) -> Result<Arc<KeyEntry>, HsmError> {
        if let Some(k) = self.cached(label)? {
            return Ok(k);
        }
        config::check_label(label)?;
        let l = label.to_string();
        let pool = Arc::clone(&self.pool);
        let entry = self
            .pool
            .run(move |s| {
                let generation = pool.generation();
                let mut e = keys::load(s, &l)?;
                e.generation = generation;
                Ok(e)
            })
            .await?;
        self.remember(entry)?;
        self.cached(label)?
            .ok_or_else(|| HsmError::KeyNotFound(label.to_string()))
    }

    fn cached(&self, label: &str) -> Result<Option<Arc<KeyEntry>>, HsmError> {
        let keys = self
            .keys
            .lock()
            .map_err(|_| HsmError::Worker("key cache poisoned".into()))?;
        Ok(keys.get(label).cloned())
    }

    fn remember(&self, entry: KeyEntry) -> Result<PublicKey, HsmError> {
        let public = entry.public.clone();
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| HsmError::Worker("key cache poisoned".into()))?;
        keys.insert(entry.label.clone(), Arc::new(entry));
        Ok(public)
    }

    /// Signs a 32-byte prehash with `CKM_ECDSA` and returns the signature verified, low-S, with
    /// its recovery id.
    pub async fn sign_secp256k1_prehash(
        &self,
        label: &str,
        prehash: [u8; 32],
    ) -> Result<EcdsaSignature, HsmError> {
        let key = self.key(label).await?;
        let q = key.secp256k1_point().ok_or(HsmError::WrongKeyType {
            label: label.to_string(),
            expected: KeyKind::Secp256k1.name(),
            actual: key.public.kind().name(),
        })?;
        self.sign_raw(&key, prehash.to_vec(), move |raw| {
            verify::finish_ecdsa(&q, &prehash, raw)
        })
        .await
    }

    /// Signs `message` with `CKM_EDDSA` (pure Ed25519) and returns the verified signature.
    pub async fn sign_ed25519(&self, label: &str, message: &[u8]) -> Result<[u8; 64], HsmError> {
        let key = self.key(label).await?;
        let vk = key.ed25519_key().ok_or(HsmError::WrongKeyType {
            label: label.to_string(),
            expected: KeyKind::Ed25519.name(),
            actual: key.public.kind().name(),
        })?;
        let msg = message.to_vec();
        self.sign_raw(&key, message.to_vec(), move |raw| {
            verify::finish_ed25519(&vk, &msg, raw)
        })
        .await
    }

    /// Blocking variant of [`Hsm::sign_ed25519`] for callers on their own thread (not a tokio
    /// worker), such as the audit log's checkpoint writer. The key must have been used (or
    /// looked up with [`Hsm::public_key`]) once before.
    pub fn sign_ed25519_blocking(&self, label: &str, message: &[u8]) -> Result<[u8; 64], HsmError> {
        let key = self
            .cached(label)?
            .ok_or_else(|| HsmError::KeyNotFound(label.to_string()))?;
        let vk = key.ed25519_key().ok_or(HsmError::WrongKeyType {
            label: label.to_string(),
            expected: KeyKind::Ed25519.name(),
            actual: key.public.kind().name(),
        })?;
        // As in `sign_raw`: a handle from before a token reset is looked up again by label and
        // must carry the same public key (the log key must survive a token re-attach too).
        let mut current = (key.handle, key.generation);
        let pool = Arc::clone(&self.pool);
        let raw = self.pool.run_blocking(&mut |s| {
            if current.1 != pool.generation() {
                let generation = pool.generation();
                let fresh = keys::load(s, label)?;
                if fresh.public != key.public {
                    return Err(HsmError::UnsafeKey {
                        label: label.to_string(),
                        reason: "the key under this label changed its public key".into(),
                    }
                    .into());
                }
                current = (fresh.handle, generation);
            }
            let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
            Ok(s.sign(&mech, current.0, message)?)
        })?;
        if current != (key.handle, key.generation) {
            self.remember(KeyEntry {
                label: key.label.clone(),
                handle: current.0,
                generation: current.1,
                public: key.public.clone(),
            })?;
        }
        verify::finish_ed25519(&vk, message, &raw).map_err(|reason| HsmError::BadHsmSignature {
            label: label.to_string(),
            reason,
        })
    }

    /// Runs `C_Sign` with the key's mechanism, then `verify` on the signature on the same worker
    /// once the session is back in the pool (no further hand-off, and the session is not held
    /// during the check). A key
    /// handle the token no longer knows (after a token reset) is looked up again by label,
    /// re-checked, and must carry the same public key.
    async fn sign_raw<V, F>(
        &self,
        key: &Arc<KeyEntry>,
        data: Vec<u8>,
        verify: F,
    ) -> Result<V, HsmError>
    where
        V: Send + 'static,
        F: Fn(&[u8]) -> Result<V, String> + Send + 'static,
    {
        let pool = Arc::clone(&self.pool);
        let expected = key.public.clone();
        let label = key.label.clone();
        let mut current = (key.handle, key.generation);
        let label_for_errors = key.label.clone();
        let (raw, used) = self
            .pool
            .run_then(
                move |s| {
                    if current.1 != pool.generation() {
                        let generation = pool.generation();
                        let fresh = keys::load(s, &label)?;
                        if fresh.public != expected {
                            return Err(HsmError::UnsafeKey {
                                label: label.clone(),
                                reason: "the key under this label changed its public key".into(),
                            }
                            .into());
                        }
                        current = (fresh.handle, generation);
                    }
                    let mech = match expected.kind() {
                        KeyKind::Secp256k1 => Mechanism::Ecdsa,
                        KeyKind::Ed25519 => {
                            Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure))
                        }
                    };
                    Ok((s.sign(&mech, current.0, &data)?, current))
                },
                move |(raw, used)| {
                    let verified = verify(&raw).map_err(|reason| HsmError::BadHsmSignature {
                        label: label_for_errors,
                        reason,
                    })?;
                    Ok((verified, used))
                },
            )
            .await?;
        if used != (key.handle, key.generation) {
            self.remember(KeyEntry {
                label: key.label.clone(),
                handle: used.0,
                generation: used.1,
                public: key.public.clone(),
            })?;
        }
        Ok(raw)
    }

    /// Lists the token's mechanisms and tries secp256k1 ECDSA and Ed25519 with session keys
    /// (never stored on the token).
    pub async fn probe(&self) -> Result<Capabilities, HsmError> {
        let ctx = self.pool.ctx.clone();
        let slot = self.pool.slot()?;
        let mechs = tokio::task::spawn_blocking(move || ctx.get_mechanism_list(slot))
            .await
            .map_err(|e| HsmError::Worker(e.to_string()))?
            .map_err(error::from_cryptoki)?;
        let has = |m: MechanismType| mechs.contains(&m);
        let mut caps = Capabilities {
            mechanisms: mechs.iter().map(|m| mechanism_name(*m)).collect(),
            secp256k1_ecdsa: false,
            ed25519: false,
        };
        if has(MechanismType::ECC_KEY_PAIR_GEN) && has(MechanismType::ECDSA) {
            caps.secp256k1_ecdsa = self
                .pool
                .run(|s| Ok(keys::self_test_session_key(s, KeyKind::Secp256k1)))
                .await?;
        }
        if has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN) && has(MechanismType::EDDSA) {
            caps.ed25519 = self
                .pool
                .run(|s| Ok(keys::self_test_session_key(s, KeyKind::Ed25519)))
                .await?;
        }
        Ok(caps)
    }

    /// Finalizes and re-initializes the PKCS#11 module in this process (`C_Finalize`,
    /// `C_Initialize`), as a token reset would: every session of every handle in the process is
    /// closed and the login is gone. The pool recovers by reopening sessions, logging in again
    /// and re-finding keys. Meant for recovery drills and the fault tests, never for normal use.
    pub async fn dangerous_reset_module(&self) -> Result<(), HsmError> {
        let ctx = self.pool.ctx.clone();
        tokio::task::spawn_blocking(move || {
            let _registry = MODULES
                .lock()
                .map_err(|_| HsmError::Worker("module registry lock poisoned".into()))?;
            let again = ctx.clone();
            ctx.finalize().map_err(error::from_cryptoki)?;
            again
                .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                .map_err(error::from_cryptoki)
        })
        .await
        .map_err(|e| HsmError::Worker(e.to_string()))?
    }
}
