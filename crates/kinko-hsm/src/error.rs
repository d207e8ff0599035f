//! The one error type of `kinko-hsm`.

use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::RvError;

/// Everything that can go wrong between Kinko and the HSM. Each variant says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The PKCS#11 module could not be loaded or initialized.
    #[error(
        "cannot load the PKCS#11 module {path}: {reason} (set hsm.module to the vendor's library, e.g. /usr/lib/softhsm/libsofthsm2.so)"
    )]
    ModuleLoad {
        /// The configured module path.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// No token with the configured label is present.
    #[error(
        "no token labelled {label:?} is present (tokens seen: {available:?}); check hsm.token_label and that the token is connected"
    )]
    TokenNotFound {
        /// The label looked for.
        label: String,
        /// Labels of the tokens that are present.
        available: Vec<String>,
    },
    /// More than one token carries the configured label, so the choice would be arbitrary.
    #[error("{count} tokens are labelled {label:?}; token labels must be unique")]
    AmbiguousToken {
        /// The label.
        label: String,
        /// How many tokens carry it.
        count: usize,
    },
    /// The user PIN was rejected. It is not retried: tokens lock after a few failures.
    #[error(
        "the user PIN for token {label:?} is incorrect; not retried (tokens lock after a few failures) — fix the PIN file or variable"
    )]
    PinIncorrect {
        /// The token label.
        label: String,
    },
    /// The token has locked the user PIN after too many failures.
    #[error("the user PIN of token {label:?} is locked; the security officer must unlock it")]
    PinLocked {
        /// The token label.
        label: String,
    },
    /// The PIN could not be read from its configured source.
    #[error("cannot read the HSM user PIN: {0}")]
    PinSource(String),
    /// The token stayed unavailable after bounded retries (sessions invalidated, token removed).
    #[error("the token is unavailable: {function} returned {rv} after {attempts} attempts")]
    TokenUnavailable {
        /// The PKCS#11 function that last failed.
        function: Function,
        /// The return value.
        rv: RvError,
        /// How many attempts were made.
        attempts: u32,
    },
    /// No private key with this label exists on the token.
    #[error("no private key labelled {0:?} on the token")]
    KeyNotFound(String),
    /// A key with this label already exists (refusing to create a second one).
    #[error("a key labelled {0:?} already exists on the token")]
    KeyExists(String),
    /// More than one private key carries the label.
    #[error("{count} private keys are labelled {label:?}; key labels must be unique")]
    AmbiguousKey {
        /// The label.
        label: String,
        /// How many keys carry it.
        count: usize,
    },
    /// The key's attributes make it unfit for use (extractable, not sensitive, wrong type).
    #[error("refusing to use key {label:?}: {reason}")]
    UnsafeKey {
        /// The key label.
        label: String,
        /// Which attribute is wrong.
        reason: String,
    },
    /// The key is of another algorithm than the operation needs.
    #[error("key {label:?} is a {actual} key, not {expected}")]
    WrongKeyType {
        /// The key label.
        label: String,
        /// What the operation needs.
        expected: &'static str,
        /// What the key is.
        actual: &'static str,
    },
    /// The public key on the token could not be parsed.
    #[error("the public key of {label:?} is malformed: {reason}")]
    BadPublicKey {
        /// The key label.
        label: String,
        /// Why.
        reason: String,
    },
    /// The HSM returned a signature that does not verify in software. It was discarded.
    #[error(
        "the HSM returned a signature for {label:?} that does not verify ({reason}); it was discarded"
    )]
    BadHsmSignature {
        /// The key label.
        label: String,
        /// Why verification failed.
        reason: String,
    },
    /// The token lacks a mechanism Kinko needs.
    #[error("the token does not support {0}")]
    MissingMechanism(String),
    /// A label was empty or longer than 32 bytes (the PKCS#11 token label limit applies to keys here too).
    #[error("invalid label {0:?}: 1 to 32 bytes of printable ASCII")]
    InvalidLabel(String),
    /// Any other PKCS#11 failure, with the function that failed.
    #[error("{function} failed: {rv}")]
    Pkcs11 {
        /// The PKCS#11 function.
        function: Function,
        /// The return value.
        rv: RvError,
    },
    /// A failure inside cryptoki that is not a PKCS#11 return value.
    #[error("PKCS#11 binding error: {0}")]
    Binding(String),
    /// The blocking worker running the PKCS#11 call was lost (a bug or shutdown).
    #[error("the HSM worker task failed: {0}")]
    Worker(String),
}

impl HsmError {
    /// Whether the error means the HSM cannot be reached right now (map to gRPC `Unavailable`).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            HsmError::TokenUnavailable { .. }
                | HsmError::TokenNotFound { .. }
                | HsmError::Worker(_)
        )
    }
}

pub(crate) fn from_cryptoki(e: cryptoki::error::Error) -> HsmError {
    match e {
        cryptoki::error::Error::Pkcs11(rv, function) => HsmError::Pkcs11 { function, rv },
        other => HsmError::Binding(other.to_string()),
    }
}

/// Errors after which the session (or the whole login state) is gone and a fresh session may
/// succeed.
pub(crate) fn is_session_lost(e: &cryptoki::error::Error) -> bool {
    matches!(
        e,
        cryptoki::error::Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceError
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// Errors meaning a key's object handle is no longer valid (the token was reset).
pub(crate) fn is_stale_handle(e: &cryptoki::error::Error) -> bool {
    matches!(
        e,
        cryptoki::error::Error::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _)
    )
}
