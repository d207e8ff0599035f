//! `cosignature/v1` against known answers computed outside this crate: Python's `cryptography`
//! (OpenSSL's Ed25519) and `hashlib`, following the C2SP tlog-cosignature text step by step —
//! key id `SHA-256(name || "\n" || 0x04 || pk)[:4]`, message `cosignature/v1\ntime T\n` + body,
//! blob `key id || T as 8 bytes big-endian || signature`.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::note::SoftwareSigner;

/// Ed25519 seed 0x01 0x02 … 0x20.
fn seed() -> [u8; 32] {
    std::array::from_fn(|i| (i + 1) as u8)
}

const NAME: &str = "witness.example.com/w1";
const PUBLIC_KEY: &str = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664";
const KEY_ID: &str = "8561c71e";
const VKEY: &str = "witness.example.com/w1+8561c71e+BHm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk";
/// The checkpoint body of the spec's example, and the spec's example timestamp.
const BODY: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const TIME: u64 = 1_679_315_147;
const LINE: &str = "— witness.example.com/w1 hWHHHgAAAABkGFDLQB2dbiQ7rPMIDjq/twq5Ixt42T+awjiYS4+fxrnLnI31x5abVjZlhDVvZAcRRLyAiG4oQlhTgi4DsxiPwiDaDg==\n";
/// The same, with an extension line in the body (which the signed message must cover).
const LINE_EXT: &str = "— witness.example.com/w1 hWHHHgAAAABkGFDLM1Pf6FWQZG47hXCDHyFd6BMTuhzK9YizQ/WG2VH7s3SbpMQeun7YwyOnL9NRzEjtROkedDgKh2EBQQIYzvi/Dg==\n";

#[test]
fn known_answers_for_key_id_vkey_message_and_signature_line() {
    let signer = SoftwareSigner::from_seed(&seed());
    assert_eq!(hex::encode(signer.public_key()), PUBLIC_KEY);
    let pk = signer.public_key();
    assert_eq!(hex::encode(key_id(NAME, &pk)), KEY_ID);
    let key = CosignerKey::new(NAME, &pk).unwrap();
    assert_eq!(key.to_string(), VKEY);
    assert_eq!(CosignerKey::parse(VKEY).unwrap(), key);
    assert_eq!(
        signed_message(BODY, TIME).unwrap(),
        format!("cosignature/v1\ntime 1679315147\n{BODY}").into_bytes()
    );
    assert_eq!(cosign(BODY, NAME, &signer, TIME).unwrap(), LINE);
    // The timestamp encodes as in the spec's example line ("jWbPPwAAAABkGFDL…", same time).
    assert!(LINE.contains("AAAABkGFDL"));
    let note = format!(
        "{BODY}\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n{LINE}"
    );
    assert_eq!(key.verify_note(&note).unwrap(), TIME);
}

#[test]
fn extension_lines_are_part_of_the_signed_message() {
    let signer = SoftwareSigner::from_seed(&seed());
    let key = CosignerKey::parse(VKEY).unwrap();
    let body = format!("{BODY}extension line\n");
    assert_eq!(cosign(&body, NAME, &signer, TIME).unwrap(), LINE_EXT);
    assert_eq!(
        key.verify_note(&format!("{body}\n{LINE_EXT}")).unwrap(),
        TIME
    );
    // A cosignature over the first three lines only (what one implementation makes) does not
    // verify on the checkpoint with its extension line, and the other way round.
    assert!(matches!(
        key.verify_note(&format!("{body}\n{LINE}")),
        Err(Error::NoteBadSignature { .. })
    ));
    assert!(matches!(
        key.verify_note(&format!("{BODY}\n{LINE_EXT}")),
        Err(Error::NoteBadSignature { .. })
    ));
}

#[test]
fn tampered_or_foreign_cosignatures_are_refused() {
    let key = CosignerKey::parse(VKEY).unwrap();
    // Another size under the same cosignature.
    let other = BODY.replace("20852163", "20852164");
    assert!(matches!(
        key.verify_note(&format!("{other}\n{LINE}")),
        Err(Error::NoteBadSignature { .. })
    ));
    // Another timestamp under the same signature: the blob's bytes 4..12 changed.
    let blob = B64
        .decode(LINE.trim_end().rsplit_once(' ').unwrap().1)
        .unwrap();
    let mut later = blob.clone();
    later[11] ^= 1;
    let forged = format!("— {NAME} {}\n", B64.encode(&later));
    assert!(matches!(
        key.verify_note(&format!("{BODY}\n{forged}")),
        Err(Error::NoteBadSignature { .. })
    ));
    // A truncated blob is a typed error, not a panic.
    let short = format!("— {NAME} {}\n", B64.encode(&blob[..20]));
    assert!(matches!(
        key.verify_note(&format!("{BODY}\n{short}")),
        Err(Error::Cosignature(_))
    ));
    // Signed by another cosigner key: not this cosigner's cosignature.
    let stranger = SoftwareSigner::from_seed(&[9; 32]);
    let line = cosign(BODY, NAME, &stranger, TIME).unwrap();
    assert!(matches!(
        key.verify_note(&format!("{BODY}\n{line}")),
        Err(Error::NoteUnsigned { .. })
    ));
    // The log's own (0x01) signature of the same key is not a cosignature: other key id.
    let log_line = crate::note::sign_note(BODY, NAME, &SoftwareSigner::from_seed(&seed())).unwrap();
    assert!(matches!(
        key.verify_note(&log_line),
        Err(Error::NoteUnsigned { .. })
    ));
    // A timestamp beyond 2^63 - 1 is refused when signing.
    assert!(matches!(
        signed_message(BODY, MAX_TIMESTAMP + 1),
        Err(Error::Cosignature(_))
    ));
    // A log verifier key (0x01) is not a cosigner key.
    let log_vkey =
        crate::note::VerifierKey::new(NAME, &SoftwareSigner::from_seed(&seed()).public_key())
            .unwrap()
            .to_string();
    assert!(CosignerKey::parse(&log_vkey).is_err());
}
