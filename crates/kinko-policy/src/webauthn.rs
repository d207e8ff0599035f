//! Passkey (WebAuthn) approvals: an officer whose key is a WebAuthn credential approves by a
//! WebAuthn *assertion* whose challenge is the SHA-256 of the same domain-separated approval
//! message the CLI signs with Ed25519 ([`crate::ApprovalMessage::to_bytes`]) — policy hash,
//! subject (request id and intent digest), verdict, issue and expiry times, officer id. So a
//! passkey approval binds exactly what a CLI approval binds, and the auditor re-verifies it from
//! the log with no trust in the daemon.
//!
//! Verification follows WebAuthn Level 2 §7.2 ("Verifying an Authentication Assertion") for an
//! ES256 (ECDSA P-256, SHA-256) credential:
//!
//! * `clientDataJSON` is JSON with `type` = `"webauthn.get"`, `challenge` = base64url (no
//!   padding) of `SHA-256(message)`, `origin` one of the officer's allowed origins, and
//!   `crossOrigin` absent or `false`;
//! * `authenticatorData` starts with `SHA-256(rp_id)`, and its flags have user present (UP,
//!   bit 0) *and* user verified (UV, bit 2) — the authenticator checked the officer's PIN or
//!   biometric, not just a touch;
//! * the signature (ASN.1 DER) verifies under the credential's P-256 public key over
//!   `authenticatorData || SHA-256(clientDataJSON)`.
//!
//! The signature counter is not checked: passkeys synced between devices report 0, and a cloned
//! authenticator is outside this model (the credential's private key never leaves it).

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest, Sha256};

/// The most bytes of `authenticatorData` accepted.
pub const MAX_AUTHENTICATOR_DATA: usize = 1024;

/// The most bytes of `clientDataJSON` accepted.
pub const MAX_CLIENT_DATA: usize = 4096;

/// The most bytes of a DER ECDSA signature.
pub const MAX_SIGNATURE: usize = 72;

/// A passkey credential an officer approves with.
#[derive(Clone, PartialEq, Eq)]
pub struct PasskeyKey {
    /// The credential's P-256 public key.
    pub public_key: p256::ecdsa::VerifyingKey,
    /// The relying party id the credential is scoped to (the console's host, e.g. `localhost`).
    pub rp_id: String,
    /// The origins an assertion may come from (the console's, e.g. `http://localhost:7390`).
    pub origins: Vec<String>,
    /// The credential id (raw bytes), for the browser's `allowCredentials`.
    pub credential_id: Vec<u8>,
}

impl std::fmt::Debug for PasskeyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyKey")
            .field("public_key", &hex::encode(self.sec1()))
            .field("rp_id", &self.rp_id)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

impl PasskeyKey {
    /// The public key as an uncompressed SEC1 point (65 bytes, `04 || x || y`).
    pub fn sec1(&self) -> Vec<u8> {
        self.public_key.to_encoded_point(false).as_bytes().to_vec()
    }

    /// Parses an uncompressed or compressed SEC1 P-256 point.
    pub fn parse_public_key(sec1: &[u8]) -> Result<p256::ecdsa::VerifyingKey, AssertionError> {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map_err(|_| AssertionError::BadKey)
    }
}

/// A WebAuthn assertion as the browser returns it (`AuthenticatorAssertionResponse`).
#[derive(Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `authenticatorData`.
    pub authenticator_data: Vec<u8>,
    /// `clientDataJSON`, the exact bytes.
    pub client_data_json: Vec<u8>,
    /// The ECDSA signature, ASN.1 DER.
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion")
            .field("authenticator_data", &hex::encode(&self.authenticator_data))
            .field(
                "client_data_json",
                &String::from_utf8_lossy(&self.client_data_json),
            )
            .field("signature", &hex::encode(&self.signature))
            .finish()
    }
}

/// The first bytes of an assertion carried where an Ed25519 approval carries its 64-byte
/// signature (the gRPC `signature` field, the store, the audit record's `signature`).
pub const ENCODING_TAG: &[u8; 4] = b"WA1\n";

impl Assertion {
    /// The assertion as one byte string: `"WA1\n"`, then `authenticatorData` and
    /// `clientDataJSON` each with a 2-byte big-endian length, then the DER signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 + self.authenticator_data.len() + self.client_data_json.len() + self.signature.len(),
        );
        out.extend_from_slice(ENCODING_TAG);
        for field in [&self.authenticator_data, &self.client_data_json] {
            // The limits keep each length below 2^16.
            out.extend_from_slice(&(field.len().min(u16::MAX as usize) as u16).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.signature);
        out
    }

    /// Reads [`Assertion::to_bytes`]' encoding, within the limits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AssertionError> {
        let rest = bytes
            .strip_prefix(ENCODING_TAG.as_slice())
            .ok_or(AssertionError::Encoding)?;
        let mut rest = rest;
        let mut field = |max: usize| -> Result<Vec<u8>, AssertionError> {
            let (len, tail) = rest
                .split_first_chunk::<2>()
                .ok_or(AssertionError::Encoding)?;
            let len = usize::from(u16::from_be_bytes(*len));
            if len > max {
                return Err(AssertionError::TooLarge);
            }
            let (value, tail) = tail.split_at_checked(len).ok_or(AssertionError::Encoding)?;
            rest = tail;
            Ok(value.to_vec())
        };
        let authenticator_data = field(MAX_AUTHENTICATOR_DATA)?;
        let client_data_json = field(MAX_CLIENT_DATA)?;
        if rest.is_empty() {
            return Err(AssertionError::Encoding);
        }
        if rest.len() > MAX_SIGNATURE {
            return Err(AssertionError::TooLarge);
        }
        Ok(Assertion {
            authenticator_data,
            client_data_json,
            signature: rest.to_vec(),
        })
    }
}

/// The longest encoded assertion.
pub const MAX_ENCODED: usize = 4 + 2 + MAX_AUTHENTICATOR_DATA + 2 + MAX_CLIENT_DATA + MAX_SIGNATURE;

/// Why an assertion does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// A field is larger than the limits.
    #[error("assertion field too large")]
    TooLarge,
    /// The encoded assertion is malformed.
    #[error("the encoded assertion is malformed")]
    Encoding,
    /// `clientDataJSON` is not a JSON object with string `type`, `challenge` and `origin`.
    #[error("clientDataJSON is malformed")]
    ClientData,
    /// `type` is not `webauthn.get`.
    #[error("clientDataJSON type is {0:?}, not webauthn.get")]
    Type(String),
    /// The challenge is not the approval message's digest.
    #[error("the challenge is not SHA-256 of this approval message")]
    Challenge,
    /// The origin is not one of the officer's.
    #[error("origin {0:?} is not one of the officer's passkey origins")]
    Origin(String),
    /// `crossOrigin` is true.
    #[error("the assertion was made in a cross-origin frame")]
    CrossOrigin,
    /// `authenticatorData` is shorter than 37 bytes.
    #[error("authenticatorData is too short")]
    AuthenticatorData,
    /// The rpIdHash is not SHA-256 of the officer's relying party id.
    #[error("rpIdHash is not SHA-256 of {0:?}")]
    RpId(String),
    /// The user-present flag is not set.
    #[error("the authenticator did not report user presence")]
    UserPresent,
    /// The user-verified flag is not set.
    #[error("the authenticator did not verify the user (PIN or biometric)")]
    UserVerified,
    /// The public key is not a P-256 point.
    #[error("the passkey public key is not a P-256 point")]
    BadKey,
    /// The signature is malformed or does not verify.
    #[error("the assertion signature does not verify")]
    Signature,
}

/// The WebAuthn challenge for an approval message: `SHA-256(message)`.
pub fn challenge(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

/// Base64url without padding (the encoding of `challenge` in `clientDataJSON`).
pub fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(A[idx as usize]));
        }
    }
    out
}

/// What can be checked of an assertion without the officer's relying party and origins: the
/// limits, `type`, the challenge, the user-present and user-verified flags, and the signature
/// under `public_key` (the audit record's own check; [`verify`] does all of it).
pub fn verify_signature_and_challenge(
    public_key: &p256::ecdsa::VerifyingKey,
    message: &[u8],
    a: &Assertion,
) -> Result<(), AssertionError> {
    let key = PasskeyKey {
        public_key: *public_key,
        rp_id: String::new(),
        origins: Vec::new(),
        credential_id: Vec::new(),
    };
    check(&key, message, a, false)
}

/// Verifies `assertion` as the officer's approval of `message` under `key`.
pub fn verify(key: &PasskeyKey, message: &[u8], a: &Assertion) -> Result<(), AssertionError> {
    check(key, message, a, true)
}

fn check(
    key: &PasskeyKey,
    message: &[u8],
    a: &Assertion,
    scoped: bool,
) -> Result<(), AssertionError> {
    if a.authenticator_data.len() > MAX_AUTHENTICATOR_DATA
        || a.client_data_json.len() > MAX_CLIENT_DATA
        || a.signature.len() > MAX_SIGNATURE
    {
        return Err(AssertionError::TooLarge);
    }
    #[derive(serde::Deserialize)]
    struct ClientData {
        #[serde(rename = "type")]
        kind: String,
        challenge: String,
        origin: String,
        #[serde(rename = "crossOrigin", default)]
        cross_origin: Option<bool>,
    }
    let cd: ClientData =
        serde_json::from_slice(&a.client_data_json).map_err(|_| AssertionError::ClientData)?;
    if cd.kind != "webauthn.get" {
        return Err(AssertionError::Type(cd.kind));
    }
    if cd.challenge != base64url(&challenge(message)) {
        return Err(AssertionError::Challenge);
    }
    if scoped && !key.origins.contains(&cd.origin) {
        return Err(AssertionError::Origin(cd.origin));
    }
    if cd.cross_origin == Some(true) {
        return Err(AssertionError::CrossOrigin);
    }
    let (rp_hash, rest) = a
        .authenticator_data
        .split_first_chunk::<32>()
        .ok_or(AssertionError::AuthenticatorData)?;
    let flags = *rest.first().ok_or(AssertionError::AuthenticatorData)?;
    if rest.len() < 5 {
        return Err(AssertionError::AuthenticatorData);
    }
    let want: [u8; 32] = Sha256::digest(key.rp_id.as_bytes()).into();
    if scoped && *rp_hash != want {
        return Err(AssertionError::RpId(key.rp_id.clone()));
    }
    if flags & 0x01 == 0 {
        return Err(AssertionError::UserPresent);
    }
    if flags & 0x04 == 0 {
        return Err(AssertionError::UserVerified);
    }
    let sig =
        p256::ecdsa::Signature::from_der(&a.signature).map_err(|_| AssertionError::Signature)?;
    let mut signed = Sha256::new();
    signed.update(&a.authenticator_data);
    signed.update(Sha256::digest(&a.client_data_json));
    let prehash: [u8; 32] = signed.finalize().into();
    key.public_key
        .verify_prehash(&prehash, &sig)
        .map_err(|_| AssertionError::Signature)
}
