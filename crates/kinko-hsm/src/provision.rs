//! Token provisioning for key ceremonies and development set-ups: initialize a token in a free
//! slot and set its user PIN. Production HSMs are usually initialized with the vendor's tools;
//! this serves SoftHSM2 and any token that offers an uninitialized slot.

use std::path::Path;
use std::sync::Mutex;

use cryptoki::session::UserType;
use secrecy::SecretString;

use crate::{HsmError, config, error::from_cryptoki, load_module};

/// Serializes slot selection and `C_InitToken` within this process, so that two callers never
/// pick the same free slot.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Initializes a token labelled `label` in the first slot whose token is not initialized, with
/// security-officer PIN `so_pin`, and sets the user PIN to `user_pin`. Refuses a label that an
/// initialized token already carries.
pub fn init_token(
    module: &Path,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<(), HsmError> {
    config::check_label(label)?;
    let _guard = INIT_LOCK
        .lock()
        .map_err(|_| HsmError::Worker("token initialization lock poisoned".into()))?;
    // Other processes too (several `kinkod dev` at once): otherwise two can pick the same free
    // slot. The module is loaded after the lock, so its view of the slots is current.
    let lock_path = std::env::temp_dir().join("kinko-pkcs11-token-init.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| {
            HsmError::Worker(format!(
                "token initialization lock {}: {e}",
                lock_path.display()
            ))
        })?;
    let ctx = load_module(module)?;
    match crate::find_token(&ctx, label) {
        Err(HsmError::TokenNotFound { .. }) => {}
        Ok(_) | Err(HsmError::AmbiguousToken { .. }) => {
            return Err(HsmError::KeyExists(format!("token {label}")));
        }
        Err(e) => return Err(e),
    }
    let mut free = None;
    for slot in ctx.get_slots_with_token().map_err(from_cryptoki)? {
        // A token another process is deleting from the shared token directory can fail
        // C_GetTokenInfo (CKR_GENERAL_ERROR); it is no free slot either way (as `find_token`).
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            free = Some(slot);
            break;
        }
    }
    let slot = free.ok_or_else(|| HsmError::TokenNotFound {
        label: "(a slot with an uninitialized token)".into(),
        available: Vec::new(),
    })?;
    ctx.init_token(slot, so_pin, label).map_err(from_cryptoki)?;
    let session = ctx.open_rw_session(slot).map_err(from_cryptoki)?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(from_cryptoki)?;
    session.init_pin(user_pin).map_err(from_cryptoki)?;
    session.logout().map_err(from_cryptoki)?;
    drop(lock_file);
    Ok(())
}
