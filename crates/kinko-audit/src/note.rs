//! Checkpoints ([C2SP tlog-checkpoint]) signed as [C2SP signed-note]s with Ed25519.
//!
//! A checkpoint body is
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <base64 of the 32-byte root hash>\n
//! [<extension line>\n ...]
//! ```
//!
//! and a signed note is the body, an empty line, and one line per signature:
//! `— <key name> <base64(key id || signature)>\n` (the dash is U+2014). For Ed25519 the key id is
//! the first four bytes of `SHA-256(<key name> || 0x0A || 0x01 || <32-byte public key>)`, and the
//! verifier key is written `<key name>+<key id, 8 hex digits>+<base64(0x01 || public key)>`
//! (the format of `golang.org/x/mod/sumdb/note`).
//!
//! [C2SP tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
//! [C2SP signed-note]: https://c2sp.org/signed-note

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::merkle::{HASH_LEN, Hash};

/// The signature type byte of Ed25519 in signed-note key ids and verifier keys.
pub const ALG_ED25519: u8 = 0x01;

/// The longest signed note accepted (a checkpoint is a few hundred bytes).
pub const MAX_NOTE_LEN: usize = 16 * 1024;

/// The most signature lines accepted on one note (as `golang.org/x/mod/sumdb/note`).
pub const MAX_NOTE_SIGNATURES: usize = 100;

/// The longest key name or origin accepted.
pub const MAX_NAME_LEN: usize = 256;

/// The most extension lines accepted in a checkpoint.
pub const MAX_EXTENSIONS: usize = 16;

/// The signature line prefix: U+2014 EM DASH and a space.
pub(crate) const SIG_PREFIX: &str = "\u{2014} ";

/// The 4-byte key id of an Ed25519 signed-note key:
/// `SHA-256(name || 0x0A || 0x01 || public_key)[..4]`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    typed_key_id(ALG_ED25519, name, public_key)
}

/// A key name must be non-empty, have no `+` and no whitespace (C2SP signed-note).
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::VerifierKey("key name must be 1..=256 bytes"));
    }
    if name.contains('+') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::VerifierKey(
            "key name must not contain '+' or whitespace",
        ));
    }
    Ok(())
}

/// The parts of a verifier key `name+hash+base64(alg || 32-byte public key)`: the name, the id
/// the hash spells, and the public key. The caller checks the id against the name and key.
fn vkey_parts(vkey: &str, alg: u8) -> Result<(&str, [u8; 4], [u8; 32]), Error> {
    if vkey.len() > MAX_NAME_LEN + 64 {
        return Err(Error::VerifierKey("too long"));
    }
    // The base64 part may itself contain '+': split at the first two.
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(hash), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::VerifierKey("expected name+hash+key"));
    };
    if hash.len() != 8 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::VerifierKey(
            "key hash must be 8 lowercase hex digits",
        ));
    }
    let mut id = [0u8; 4];
    hex::decode_to_slice(hash, &mut id).map_err(|_| Error::VerifierKey("key hash is not hex"))?;
    let raw = B64
        .decode(b64)
        .map_err(|_| Error::VerifierKey("key is not base64"))?;
    let Some((&found, pk)) = raw.split_first() else {
        return Err(Error::VerifierKey("empty key"));
    };
    if found != alg {
        return Err(Error::VerifierKey(if alg == ALG_ED25519 {
            "not an Ed25519 (0x01) key"
        } else {
            "not a cosignature/v1 (0x04) key"
        }));
    }
    let pk: [u8; 32] = pk
        .try_into()
        .map_err(|_| Error::VerifierKey("Ed25519 key must be 32 bytes"))?;
    Ok((name, id, pk))
}

/// Signs checkpoints. The daemon implements it with the log key in the HSM (through
/// kinko-hsm); [`SoftwareSigner`] implements it with an in-memory key for tests and tools.
pub trait CheckpointSigner: Send + 'static {
    /// The signer's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Signs `msg` with Ed25519 (pure Ed25519, RFC 8032 §5.1, over the message itself).
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Self::Error>;
    /// The 32-byte Ed25519 public key.
    fn public_key(&self) -> [u8; 32];
}

/// An Ed25519 [`CheckpointSigner`] holding its key in memory. For tests, benches and offline
/// tools; the daemon's log key lives in the HSM.
pub struct SoftwareSigner {
    key: SigningKey,
}

impl SoftwareSigner {
    /// A signer from a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }
}

impl fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().as_bytes()),
            )
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner for SoftwareSigner {
    type Error = std::convert::Infallible;
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Self::Error> {
        Ok(self.key.sign(msg).to_bytes())
    }
    fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}

/// A signed-note verifier key for Ed25519: its name, id and public key, for the key type
/// `ALG` — [`ALG_ED25519`] for the log's own signatures ([`VerifierKey`]), `0x04` for witness
/// cosignatures ([`crate::cosignature::CosignerKey`]). The type byte is part of the key id and
/// of the written form, so a key of one type never verifies as the other.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteKey<const ALG: u8> {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

/// The log's signed-note verifier key (type [`ALG_ED25519`]).
pub type VerifierKey = NoteKey<ALG_ED25519>;

impl<const ALG: u8> fmt::Debug for NoteKey<ALG> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if ALG == ALG_ED25519 {
            write!(f, "VerifierKey({self})")
        } else {
            write!(f, "CosignerKey({self})")
        }
    }
}

/// `SHA-256(name || 0x0A || alg || public_key)[..4]`.
pub(crate) fn typed_key_id(alg: u8, name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl<const ALG: u8> NoteKey<ALG> {
    /// The key named `name` for the Ed25519 public key `public_key`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, Error> {
        check_name(name)?;
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| Error::VerifierKey("not a valid Ed25519 public key"))?;
        if key.is_weak() {
            return Err(Error::VerifierKey("Ed25519 public key of small order"));
        }
        Ok(Self {
            name: name.to_string(),
            id: typed_key_id(ALG, name, public_key),
            key,
        })
    }

    /// Parses `name+hash+base64(ALG || public key)`, checking that the hash is the key id.
    pub fn parse(vkey: &str) -> Result<Self, Error> {
        let (name, id, pk) = vkey_parts(vkey, ALG)?;
        let key = Self::new(name, &pk)?;
        if key.id != id {
            return Err(Error::VerifierKey("key hash does not match name and key"));
        }
        if key.to_string() != vkey {
            return Err(Error::VerifierKey("non-canonical encoding"));
        }
        Ok(key)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Verifies an Ed25519 signature by this key (strict RFC 8032 verification).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.key
            .verify_strict(msg, &Signature::from_bytes(sig))
            .is_ok()
    }
}

impl<const ALG: u8> fmt::Display for NoteKey<ALG> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG);
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        )
    }
}

impl<const ALG: u8> FromStr for NoteKey<ALG> {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// Signs `text` as a signed note by `key_name` with `signer`, and checks the signature verifies
/// under the signer's public key before returning it (a faulty signer is caught here).
pub fn sign_note<S: CheckpointSigner + ?Sized>(
    text: &str,
    key_name: &str,
    signer: &S,
) -> Result<String, Error> {
    check_text(text)?;
    let key = VerifierKey::new(key_name, &signer.public_key())?;
    let sig = signer
        .sign(text.as_bytes())
        .map_err(|e| Error::Signer(e.to_string()))?;
    if !key.verify(text.as_bytes(), &sig) {
        return Err(Error::SignerBadSignature);
    }
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&key.id);
    blob.extend_from_slice(&sig);
    Ok(format!(
        "{text}\n{SIG_PREFIX}{key_name} {}\n",
        B64.encode(blob)
    ))
}

/// The text of a note: UTF-8, ending in a newline, no control characters but newlines, and no
/// empty line (which would end the text early).
pub(crate) fn check_text(text: &str) -> Result<(), Error> {
    if text.len() > MAX_NOTE_LEN {
        return Err(Error::NoteFormat("note too long"));
    }
    if !text.ends_with('\n') {
        return Err(Error::NoteFormat("text must end with a newline"));
    }
    if text.chars().any(|c| c != '\n' && c.is_control()) {
        return Err(Error::NoteFormat("text has control characters"));
    }
    if text.starts_with('\n') || text.contains("\n\n") {
        return Err(Error::NoteFormat("text has an empty line"));
    }
    Ok(())
}

/// Opens a signed note: returns its text if it carries a valid signature by `key`.
///
/// Signatures by other keys are ignored (C2SP signed-note); a signature line naming `key` with
/// its id that does not verify is an error, as is a note with no signature by `key`.
pub fn open_note<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, Error> {
    let (text, lines) = split_note(note)?;
    let mut verified = false;
    for (name, blob) in lines {
        if name != key.name() || blob.get(..4) != Some(&key.id[..]) {
            continue;
        }
        let sig: [u8; 64] = blob
            .get(4..)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::NoteFormat("Ed25519 signature must be 64 bytes"))?;
        if !key.verify(text.as_bytes(), &sig) {
            return Err(Error::NoteBadSignature {
                key: key.name().to_string(),
            });
        }
        verified = true;
    }
    if !verified {
        return Err(Error::NoteUnsigned {
            key: key.name().to_string(),
        });
    }
    Ok(text)
}

/// A note's signature lines: key name and decoded blob.
pub(crate) type SignatureLines<'a> = Vec<(&'a str, Vec<u8>)>;

/// A signed note's text and its signature lines (key name, decoded blob of at least 5 bytes),
/// checked for form only: the text as [`check_text`], at most [`MAX_NOTE_SIGNATURES`] lines,
/// each `— <name> <base64>`.
pub(crate) fn split_note(note: &str) -> Result<(&str, SignatureLines<'_>), Error> {
    if note.len() > MAX_NOTE_LEN {
        return Err(Error::NoteFormat("note too long"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(Error::NoteFormat("no signature block"))?;
    let text = note.get(..split + 1).ok_or(Error::NoteFormat("no text"))?;
    let sigs = note
        .get(split + 2..)
        .ok_or(Error::NoteFormat("no signatures"))?;
    check_text(text)?;
    // Lines end in exactly "\n" (not `str::lines`, which would also accept "\r\n" and give one
    // note two encodings).
    let sig_lines = sigs
        .strip_suffix('\n')
        .ok_or(Error::NoteFormat("signature block must end with a newline"))?;
    let mut out = Vec::new();
    for (n, line) in sig_lines.split('\n').enumerate() {
        if n >= MAX_NOTE_SIGNATURES {
            return Err(Error::NoteFormat("too many signatures"));
        }
        out.push(signature_line(line)?);
    }
    Ok((text, out))
}

/// One signature line, `— <name> <base64>` without its newline: the name and the decoded blob.
pub(crate) fn signature_line(line: &str) -> Result<(&str, Vec<u8>), Error> {
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(Error::NoteFormat(
        "signature line must start with an em dash",
    ))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(Error::NoteFormat("signature line must be name and base64"))?;
    check_name(name).map_err(|_| Error::NoteFormat("bad key name in signature line"))?;
    let blob = B64
        .decode(b64)
        .map_err(|_| Error::NoteFormat("signature is not base64"))?;
    if blob.len() < 5 {
        return Err(Error::NoteFormat("signature too short"));
    }
    Ok((name, blob))
}

/// A C2SP `tlog-checkpoint`: the log's origin, its size and root, and optional extension lines.
#[derive(Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (unique name of the log).
    pub origin: String,
    /// The number of leaves.
    pub size: u64,
    /// The RFC 6962 root of those leaves.
    pub root: Hash,
    /// Extension lines (opaque, non-empty), in order.
    pub extensions: Vec<String>,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("origin", &self.origin)
            .field("size", &self.size)
            .field("root", &hex::encode(self.root))
            .field("extensions", &self.extensions)
            .finish()
    }
}

impl Checkpoint {
    /// The checkpoint body (the note text).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body (a note's text, without signatures).
    pub fn parse_text(text: &str) -> Result<Self, Error> {
        check_text(text).map_err(|_| Error::CheckpointFormat("not a valid note text"))?;
        let body = text
            .strip_suffix('\n')
            .ok_or(Error::CheckpointFormat("must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty() && o.len() <= MAX_NAME_LEN)
            .ok_or(Error::CheckpointFormat("missing origin"))?;
        let size_line = lines
            .next()
            .ok_or(Error::CheckpointFormat("missing tree size"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(Error::CheckpointFormat(
                "tree size must be a decimal without leading zeros",
            ));
        }
        let size: u64 = size_line
            .parse()
            .map_err(|_| Error::CheckpointFormat("tree size out of range"))?;
        let root_line = lines
            .next()
            .ok_or(Error::CheckpointFormat("missing root hash"))?;
        let root_raw = B64
            .decode(root_line)
            .map_err(|_| Error::CheckpointFormat("root hash is not base64"))?;
        let root: Hash = root_raw
            .as_slice()
            .try_into()
            .map_err(|_| Error::CheckpointFormat("root hash must be 32 bytes"))?;
        if B64.encode(root) != root_line {
            return Err(Error::CheckpointFormat("root hash base64 is not canonical"));
        }
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.len() > MAX_EXTENSIONS {
            return Err(Error::CheckpointFormat("too many extension lines"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// Signs this checkpoint as a signed note by `key_name`.
    pub fn sign<S: CheckpointSigner + ?Sized>(
        &self,
        key_name: &str,
        signer: &S,
    ) -> Result<String, Error> {
        sign_note(&self.to_text(), key_name, signer)
    }

    /// Opens a signed checkpoint: verifies the signature by `key`, parses the body, and checks
    /// the origin when one is expected.
    pub fn open(note: &str, key: &VerifierKey, origin: Option<&str>) -> Result<Self, Error> {
        let text = open_note(note, key)?;
        let cp = Self::parse_text(text)?;
        if let Some(expected) = origin
            && cp.origin != expected
        {
            return Err(Error::CheckpointOrigin {
                expected: expected.to_string(),
                found: cp.origin,
            });
        }
        Ok(cp)
    }
}

const _: () = assert!(HASH_LEN == 32);

#[cfg(test)]
#[path = "note_tests.rs"]
mod tests;
