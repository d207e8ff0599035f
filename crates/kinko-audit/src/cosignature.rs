//! Witness cosignatures of checkpoints: [C2SP tlog-cosignature] `cosignature/v1` (Ed25519).
//!
//! A cosignature is a signed-note signature line added to a checkpoint by a *cosigner* (a
//! witness) that checked the checkpoint is consistent with every one of that log it saw before:
//!
//! ```text
//! — <cosigner name> base64(key id || timestamp || Ed25519 signature)
//! ```
//!
//! * key id: `SHA-256(<name> || 0x0A || 0x04 || <32-byte public key>)[..4]`;
//! * timestamp: when it cosigned, POSIX seconds, 8 bytes big-endian, at most 2^63 − 1;
//! * signed message: `cosignature/v1\n`, `time <timestamp in decimal>\n`, then the checkpoint's
//!   whole note body — origin, size, root *and every extension line*, with its final newline
//!   (the spec requires the extension lines in the message; a cosigner that signs only the first
//!   three lines makes cosignatures that do not verify here).
//!
//! Cosigner keys are written as verifier keys with type 0x04:
//! `<name>+<key id, 8 hex digits>+<base64(0x04 || public key)>`.
//!
//! [C2SP tlog-cosignature]: https://c2sp.org/tlog-cosignature

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::Error;
use crate::note::{CheckpointSigner, NoteKey, SIG_PREFIX, check_text, split_note, typed_key_id};

/// The signature type byte of `cosignature/v1` (Ed25519) in key ids and verifier keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The largest timestamp a cosignature may carry (2^63 − 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The 4-byte key id of a `cosignature/v1` key:
/// `SHA-256(name || 0x0A || 0x04 || public_key)[..4]`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    typed_key_id(ALG_COSIGNATURE_V1, name, public_key)
}

/// The message a `cosignature/v1` signs for the checkpoint note body `body` (its text, without
/// the blank line and signatures) at `timestamp`.
pub fn signed_message(body: &str, timestamp: u64) -> Result<Vec<u8>, Error> {
    check_text(body)?;
    if timestamp > MAX_TIMESTAMP {
        return Err(Error::Cosignature("timestamp above 2^63 - 1"));
    }
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(body.as_bytes());
    Ok(m)
}

/// Cosigns the checkpoint body `body` at `timestamp` as the cosigner `name` with `signer`;
/// returns the signature line (with its newline) to append to the checkpoint's note. The
/// signature is checked before it is returned.
pub fn cosign<S: CheckpointSigner + ?Sized>(
    body: &str,
    name: &str,
    signer: &S,
    timestamp: u64,
) -> Result<String, Error> {
    let key = CosignerKey::new(name, &signer.public_key())?;
    let msg = signed_message(body, timestamp)?;
    let sig = signer
        .sign(&msg)
        .map_err(|e| Error::Signer(e.to_string()))?;
    if !key.verify(&msg, &sig) {
        return Err(Error::SignerBadSignature);
    }
    let mut blob = Vec::with_capacity(76);
    blob.extend_from_slice(&key.id());
    blob.extend_from_slice(&timestamp.to_be_bytes());
    blob.extend_from_slice(&sig);
    Ok(format!("{SIG_PREFIX}{name} {}\n", B64.encode(blob)))
}

/// A cosigner's (witness's) public key: its name, key id and Ed25519 key, written
/// `name+hash+base64(0x04 || public key)`.
pub type CosignerKey = NoteKey<ALG_COSIGNATURE_V1>;

impl CosignerKey {
    /// Finds this cosigner's cosignature on the signed checkpoint `note` and verifies it over
    /// the whole note body; returns its timestamp. Lines of other keys are ignored; a line with
    /// this name and key id that does not verify is an error, as is a note without one.
    pub fn verify_note(&self, note: &str) -> Result<u64, Error> {
        let (body, lines) = split_note(note)?;
        let mut found = None;
        for (name, blob) in lines {
            if name != self.name() || blob.get(..4) != Some(&self.id()[..]) {
                continue;
            }
            let (ts, sig) = blob
                .get(4..)
                .and_then(|rest| rest.split_first_chunk::<8>())
                .ok_or(Error::Cosignature("cosignature too short"))?;
            let sig: &[u8; 64] = sig
                .try_into()
                .map_err(|_| Error::Cosignature("Ed25519 signature must be 64 bytes"))?;
            let timestamp = u64::from_be_bytes(*ts);
            let msg = signed_message(body, timestamp)?;
            if !self.verify(&msg, sig) {
                return Err(Error::NoteBadSignature {
                    key: self.name().to_string(),
                });
            }
            found = Some(found.map_or(timestamp, |t: u64| t.max(timestamp)));
        }
        found.ok_or_else(|| Error::NoteUnsigned {
            key: self.name().to_string(),
        })
    }
}

#[cfg(test)]
#[path = "cosignature_tests.rs"]
mod tests;
