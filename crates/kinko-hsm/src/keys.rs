//! Key generation, lookup by label, attribute checks and public-key export.

use std::fmt;

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use k256::ProjectivePoint;
use k256::elliptic_curve::sec1::ToSec1Point;

use crate::HsmError;
use crate::pool::OpError;

/// DER of OID 1.3.132.0.10 (secp256k1), the `CKA_EC_PARAMS` of Kinko's ECDSA keys.
pub(crate) const SECP256K1_OID_DER: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// DER of OID 1.3.101.112 (id-Ed25519, RFC 8410), the `CKA_EC_PARAMS` of Ed25519 keys.
pub(crate) const ED25519_OID_DER: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of PrintableString "edwards25519", which PKCS#11 3.0 also allows for Ed25519 keys.
const ED25519_NAME_DER: &[u8] = b"\x13\x0cedwards25519";

/// The kinds of key Kinko uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA over secp256k1 (Ethereum, Bitcoin).
    Secp256k1,
    /// Ed25519 (Solana, officer and log keys).
    Ed25519,
}

impl KeyKind {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Secp256k1 => "secp256k1",
            KeyKind::Ed25519 => "ed25519",
        }
    }
}

/// A public key exported from the token.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// secp256k1 point.
    Secp256k1(k256::PublicKey),
    /// Ed25519 key.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// The key kind.
    pub fn kind(&self) -> KeyKind {
        match self {
            PublicKey::Secp256k1(_) => KeyKind::Secp256k1,
            PublicKey::Ed25519(_) => KeyKind::Ed25519,
        }
    }
    /// SEC1 compressed (33 bytes) for secp256k1, the 32-byte key for Ed25519.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::Secp256k1(pk) => pk.to_sec1_point(true).as_bytes().to_vec(),
            PublicKey::Ed25519(vk) => vk.to_bytes().to_vec(),
        }
    }
    /// SEC1 uncompressed (65 bytes) for secp256k1; `None` for Ed25519.
    pub fn to_sec1_uncompressed(&self) -> Option<Vec<u8>> {
        match self {
            PublicKey::Secp256k1(pk) => Some(pk.to_sec1_point(false).as_bytes().to_vec()),
            PublicKey::Ed25519(_) => None,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "PublicKey({}:{hex})", self.kind().name())
    }
}

/// A private key found on the token and checked, with its public key.
pub(crate) struct KeyEntry {
    pub(crate) label: String,
    pub(crate) handle: ObjectHandle,
    /// The pool generation at which `handle` was found.
    pub(crate) generation: u64,
    pub(crate) public: PublicKey,
}

impl KeyEntry {
    pub(crate) fn secp256k1_point(&self) -> Option<ProjectivePoint> {
        match &self.public {
            PublicKey::Secp256k1(pk) => Some(pk.to_projective()),
            PublicKey::Ed25519(_) => None,
        }
    }
    pub(crate) fn ed25519_key(&self) -> Option<ed25519_dalek::VerifyingKey> {
        match &self.public {
            PublicKey::Ed25519(vk) => Some(*vk),
            PublicKey::Secp256k1(_) => None,
        }
    }
}

fn templates(label: &str, id: &[u8], kind: KeyKind) -> (Vec<Attribute>, Vec<Attribute>) {
    let params = match kind {
        KeyKind::Secp256k1 => SECP256K1_OID_DER,
        KeyKind::Ed25519 => ED25519_OID_DER,
    };
    let public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
        Attribute::EcParams(params.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::SignRecover(false),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    (public, private)
}

fn mechanism(kind: KeyKind) -> Mechanism<'static> {
    match kind {
        KeyKind::Secp256k1 => Mechanism::EccKeyPairGen,
        KeyKind::Ed25519 => Mechanism::EccEdwardsKeyPairGen,
    }
}

fn find(session: &Session, class: ObjectClass, label: &str) -> Result<Vec<ObjectHandle>, OpError> {
    Ok(session.find_objects(&[
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?)
}

pub(crate) fn generate(
    session: &Session,
    label: &str,
    kind: KeyKind,
    generation: u64,
) -> Result<KeyEntry, OpError> {
    if !find(session, ObjectClass::PRIVATE_KEY, label)?.is_empty()
        || !find(session, ObjectClass::PUBLIC_KEY, label)?.is_empty()
    {
        return Err(HsmError::KeyExists(label.to_string()).into());
    }
    let id = session.generate_random_vec(16)?;
    let (pub_t, priv_t) = templates(label, &id, kind);
    let (public, private) = session.generate_key_pair(&mechanism(kind), &pub_t, &priv_t)?;
    let entry = KeyEntry {
        label: label.to_string(),
        handle: private,
        generation,
        public: read_public(session, public, label, kind)?,
    };
    check_private(session, private, label, kind)?;
    self_test(session, &entry)?;
    Ok(entry)
}

pub(crate) fn load(session: &Session, label: &str) -> Result<KeyEntry, OpError> {
    let private = match find(session, ObjectClass::PRIVATE_KEY, label)?.as_slice() {
        [h] => *h,
        [] => return Err(HsmError::KeyNotFound(label.to_string()).into()),
        many => {
            return Err(HsmError::AmbiguousKey {
                label: label.to_string(),
                count: many.len(),
            }
            .into());
        }
    };
    let kind = check_private_kind(session, private, label)?;
    check_private(session, private, label, kind)?;
    let public = match find(session, ObjectClass::PUBLIC_KEY, label)?.as_slice() {
        [h] => *h,
        [] => {
            return Err(HsmError::BadPublicKey {
                label: label.to_string(),
                reason: "no public key object with this label".into(),
            }
            .into());
        }
        many => {
            return Err(HsmError::AmbiguousKey {
                label: label.to_string(),
                count: many.len(),
            }
            .into());
        }
    };
    let entry = KeyEntry {
        label: label.to_string(),
        handle: private,
        generation: 0,
        public: read_public(session, public, label, kind)?,
    };
    // Proves the public key object belongs to this private key before anything relies on it.
    self_test(session, &entry)?;
    Ok(entry)
}

fn check_private_kind(session: &Session, h: ObjectHandle, label: &str) -> Result<KeyKind, OpError> {
    let attrs = session.get_attributes(h, &[AttributeType::KeyType])?;
    match attrs.first() {
        Some(Attribute::KeyType(t)) if *t == KeyType::EC => Ok(KeyKind::Secp256k1),
        Some(Attribute::KeyType(t)) if *t == KeyType::EC_EDWARDS => Ok(KeyKind::Ed25519),
        other => Err(HsmError::UnsafeKey {
            label: label.to_string(),
            reason: format!("unsupported key type {other:?}"),
        }
        .into()),
    }
}

/// Refuses a private key that is extractable, not sensitive, not a signing key of `kind`, or
/// that the token would also use for anything but signing: decryption, unwrapping other keys,
/// or key derivation (ECDH). (`CKA_SIGN_RECOVER` is set false on new keys but not checked: no
/// EC mechanism signs with message recovery, and keys made by earlier Kinko versions carry
/// SoftHSM2's default, true.) Also refuses a key that the token reports
/// was once extractable or not sensitive (`CKA_NEVER_EXTRACTABLE` / `CKA_ALWAYS_SENSITIVE`
/// false): a copy of it may exist outside the HSM. An attribute the token does not report for
/// this key type counts as not granted.
fn check_private(
    session: &Session,
    h: ObjectHandle,
    label: &str,
    kind: KeyKind,
) -> Result<(), OpError> {
    let attrs = session.get_attributes(
        h,
        &[
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::Sign,
            AttributeType::EcParams,
            AttributeType::Decrypt,
            AttributeType::Unwrap,
            AttributeType::Derive,
            AttributeType::AlwaysSensitive,
            AttributeType::NeverExtractable,
        ],
    )?;
    let unsafe_key = |reason: &str| -> OpError {
        HsmError::UnsafeKey {
            label: label.to_string(),
            reason: reason.to_string(),
        }
        .into()
    };
    let (mut sensitive, mut extractable, mut sign, mut params) = (None, None, None, None);
    let mut more = Vec::new();
    let (mut always_sensitive, mut never_extractable) = (None, None);
    for a in attrs {
        match a {
            Attribute::Sensitive(v) => sensitive = Some(v),
            Attribute::Extractable(v) => extractable = Some(v),
            Attribute::Sign(v) => sign = Some(v),
            Attribute::EcParams(v) => params = Some(v),
            Attribute::Decrypt(true) => more.push("CKA_DECRYPT"),
            Attribute::Unwrap(true) => more.push("CKA_UNWRAP"),
            Attribute::Derive(true) => more.push("CKA_DERIVE"),
            Attribute::AlwaysSensitive(v) => always_sensitive = Some(v),
            Attribute::NeverExtractable(v) => never_extractable = Some(v),
            _ => {}
        }
    }
    if sensitive != Some(true) {
        return Err(unsafe_key("CKA_SENSITIVE is not true"));
    }
    if extractable != Some(false) {
        return Err(unsafe_key("CKA_EXTRACTABLE is not false"));
    }
    if sign != Some(true) {
        return Err(unsafe_key("CKA_SIGN is not true"));
    }
    if !more.is_empty() {
        return Err(unsafe_key(&format!(
            "{} is true: the key may be used for more than signing (make it again with \
             `kinkod create-key`, which sets only CKA_SIGN)",
            more.join(", ")
        )));
    }
    // Both are defined for every private key (PKCS#11 §4.9): one the token does not report is
    // refused like one that is false.
    if never_extractable != Some(true) {
        return Err(unsafe_key(
            "CKA_NEVER_EXTRACTABLE is not true: the key may have been extractable once, so a copy may exist outside the HSM",
        ));
    }
    if always_sensitive != Some(true) {
        return Err(unsafe_key(
            "CKA_ALWAYS_SENSITIVE is not true: the key may have been readable once, so a copy may exist outside the HSM",
        ));
    }
    let ok_params = match (kind, params.as_deref()) {
        (KeyKind::Secp256k1, Some(p)) => p == SECP256K1_OID_DER,
        (KeyKind::Ed25519, Some(p)) => p == ED25519_OID_DER || p == ED25519_NAME_DER,
        (_, None) => false,
    };
    if !ok_params {
        return Err(unsafe_key(match kind {
            KeyKind::Secp256k1 => "CKA_EC_PARAMS is not secp256k1 (OID 1.3.132.0.10)",
            KeyKind::Ed25519 => "CKA_EC_PARAMS is not Ed25519",
        }));
    }
    Ok(())
}

/// Reads `CKA_EC_POINT`, which tokens return either DER-wrapped in an OCTET STRING (as the
/// standard says) or raw.
fn read_public(
    session: &Session,
    h: ObjectHandle,
    label: &str,
    kind: KeyKind,
) -> Result<PublicKey, OpError> {
    let bad = |reason: String| -> OpError {
        HsmError::BadPublicKey {
            label: label.to_string(),
            reason,
        }
        .into()
    };
    let attrs = session.get_attributes(h, &[AttributeType::EcPoint])?;
    let point = match attrs.into_iter().next() {
        Some(Attribute::EcPoint(p)) => p,
        _ => return Err(bad("CKA_EC_POINT missing".into())),
    };
    let raw = unwrap_octet_string(&point).unwrap_or(&point);
    match kind {
        KeyKind::Secp256k1 => k256::PublicKey::from_sec1_bytes(raw)
            .map(PublicKey::Secp256k1)
            .map_err(|_| {
                bad(format!(
                    "{} bytes are not a secp256k1 SEC1 point",
                    raw.len()
                ))
            }),
        KeyKind::Ed25519 => {
            let bytes: [u8; 32] = raw
                .try_into()
                .map_err(|_| bad(format!("expected 32 bytes, got {}", raw.len())))?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(PublicKey::Ed25519)
                .map_err(|_| bad("not a valid Ed25519 point".into()))
        }
    }
}

/// Strips a DER OCTET STRING header (short or one/two-byte long form) when the length matches.
fn unwrap_octet_string(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x04 {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, body) = match len0 {
        n if n < 0x80 => (usize::from(n), rest),
        0x81 => {
            let (&n, body) = rest.split_first()?;
            (usize::from(n), body)
        }
        0x82 => {
            let (hi, body) = rest.split_first_chunk::<2>()?;
            (usize::from(u16::from_be_bytes(*hi)), body)
        }
        _ => return None,
    };
    (body.len() == len).then_some(body)
}

/// Signs a fixed test input with the private key and verifies it with the public key read from
/// the token, proving the two objects belong together.
fn self_test(session: &Session, entry: &KeyEntry) -> Result<(), OpError> {
    const PROBE: [u8; 32] = *b"kinko/hsm/key-self-test/v1......";
    let fail = |reason: String| -> OpError {
        HsmError::BadHsmSignature {
            label: entry.label.clone(),
            reason: format!("key self-test: {reason}"),
        }
        .into()
    };
    match &entry.public {
        PublicKey::Secp256k1(pk) => {
            let raw = session.sign(&Mechanism::Ecdsa, entry.handle, &PROBE)?;
            crate::verify::finish_ecdsa(&pk.to_projective(), &PROBE, &raw).map_err(fail)?;
        }
        PublicKey::Ed25519(vk) => {
            let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
            let raw = session.sign(&mech, entry.handle, &PROBE)?;
            crate::verify::finish_ed25519(vk, &PROBE, &raw).map_err(fail)?;
        }
    }
    Ok(())
}

/// Generates a session (non-token) key pair of `kind`, signs with it and verifies in software.
/// The objects vanish with the session; nothing is stored on the token.
pub(crate) fn self_test_session_key(session: &Session, kind: KeyKind) -> bool {
    let (mut pub_t, mut priv_t) = templates("kinko-probe", b"probe", kind);
    for t in [&mut pub_t, &mut priv_t] {
        for a in t.iter_mut() {
            if let Attribute::Token(v) = a {
                *v = false;
            }
        }
    }
    let Ok((public, private)) = session.generate_key_pair(&mechanism(kind), &pub_t, &priv_t) else {
        return false;
    };
    let ok = (|| -> Result<(), OpError> {
        let entry = KeyEntry {
            label: "kinko-probe".into(),
            handle: private,
            generation: 0,
            public: read_public(session, public, "kinko-probe", kind)?,
        };
        self_test(session, &entry)
    })()
    .is_ok();
    let _ = session.destroy_object(private);
    let _ = session.destroy_object(public);
    ok
}
