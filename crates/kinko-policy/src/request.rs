//! The requester's signature over a withdrawal request, so that nothing between the requesting
//! system (the exchange's withdrawal ledger) and Kinko can alter the payload or its reference.
//!
//! # Request signature message (`kinko/request/v1`)
//!
//! Integers big-endian; `str` is a 1-byte length (1..=128) and that many printable ASCII bytes.
//!
//! | field | bytes |
//! |---|---|
//! | domain tag `"kinko/request/v1\n"` | 17 |
//! | requester id (`str`) | 2..=129 |
//! | signing key name (`str`) | 2..=129 |
//! | chain name (`str`: `ethereum`, `bitcoin`, `solana`) | 2..=129 |
//! | idempotency key (`str`) | 2..=129 |
//! | reference length (`u32`, at most 4096) and reference bytes (UTF-8) | 4..=4100 |
//! | SHA-256 of the unsigned payload bytes | 32 |
//!
//! The requester signs these bytes with Ed25519; Kinko verifies with `verify_strict` against the
//! requester's key in the current policy, before it decodes the payload.

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use kinko_intent::Chain;
use sha2::{Digest, Sha256};

use crate::error::PolicyError;
use crate::model::Policy;

/// Domain tag that starts every request signature message.
pub const REQUEST_DOMAIN: &[u8] = b"kinko/request/v1\n";
/// The longest reference, in bytes.
pub const MAX_REFERENCE_LEN: usize = 4096;

/// The fields a requester signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestToSign<'a> {
    /// The requester's id in the policy.
    pub requester_id: &'a str,
    /// The signing key the request is for.
    pub key_name: &'a str,
    /// The chain of the payload.
    pub chain: Chain,
    /// The idempotency key.
    pub idempotency_key: &'a str,
    /// The free-text reference (e.g. the ledger's withdrawal id).
    pub reference: &'a str,
    /// The unsigned transaction bytes.
    pub payload: &'a [u8],
}

fn malformed(reason: &str) -> PolicyError {
    PolicyError::Malformed {
        what: "request signature message",
        reason: reason.to_string(),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &str) -> Result<(), PolicyError> {
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| (0x21..=0x7e).contains(&b));
    let len = u8::try_from(s.len()).ok().filter(|_| ok).ok_or_else(|| {
        malformed(&format!(
            "{what} must be 1..=128 printable ASCII characters"
        ))
    })?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl RequestToSign<'_> {
    /// The canonical message bytes (see the module documentation).
    pub fn to_bytes(&self) -> Result<Vec<u8>, PolicyError> {
        if self.reference.len() > MAX_REFERENCE_LEN {
            return Err(malformed("reference longer than 4096 bytes"));
        }
        let mut out =
            Vec::with_capacity(REQUEST_DOMAIN.len() + 4 * 129 + 4 + self.reference.len() + 32);
        out.extend_from_slice(REQUEST_DOMAIN);
        put_str(&mut out, self.requester_id, "requester id")?;
        put_str(&mut out, self.key_name, "key name")?;
        put_str(&mut out, self.chain.as_str(), "chain")?;
        put_str(&mut out, self.idempotency_key, "idempotency key")?;
        let len =
            u32::try_from(self.reference.len()).map_err(|_| malformed("reference too long"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.reference.as_bytes());
        out.extend_from_slice(&Sha256::digest(self.payload));
        Ok(out)
    }

    /// Signs the request (what the requesting system does).
    pub fn sign(&self, key: &SigningKey) -> Result<[u8; 64], PolicyError> {
        Ok(key.sign(&self.to_bytes()?).to_bytes())
    }

    /// Verifies the requester's signature strictly against its key in `policy`.
    pub fn verify(&self, policy: &Policy, signature: &[u8; 64]) -> Result<(), PolicyError> {
        let requester = policy
            .requester(self.requester_id)
            .ok_or_else(|| PolicyError::UnknownRequester(self.requester_id.to_string()))?;
        let bytes = self.to_bytes()?;
        requester
            .public_key
            .verify_strict(&bytes, &Signature::from_bytes(signature))
            .map_err(|_| PolicyError::BadSignature("requester"))
    }
}
