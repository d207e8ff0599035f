//! Signed-note and checkpoint tests against published examples.
#![allow(clippy::unwrap_used)]

use super::*;

// The example of golang.org/x/mod/sumdb/note (package documentation in `note.go`, and
// `ExampleSign` in `example_test.go`): the key pair and the signed note it produces.
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n";
const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
    then you don't know what your problem is.\n\
    \n\
    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

// The verifier key of sum.golang.org, built into the go command (cmd/go/internal/modfetch/key.go,
// `knownGOSUMDB`).
const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";

// Signed tree heads published by sum.golang.org (checkpoint format), as quoted in the Sigsum
// project's proposal to adopt the checkpoint format and in a sum.golang.org `/latest` response
// quoted in a public blog post; their authenticity is what this test checks.
const SUMDB_CHECKPOINTS: [(&str, u64); 2] = [
    (
        "go.sum database tree\n15368405\n/g9am3I6YWNKaZX/jkne1fqd9zEyjss+JXyPXG0WfkY=\n\n\
         \u{2014} sum.golang.org Az3grqJGUaSGukG9p8nI2vKgiFn7qGHxn0W+mrwyI6Gz3F0t1J3LzmWk/p96Ybf295EjwdSwlzgijq5WA9d1Ded7owM=\n",
        15368405,
    ),
    (
        "go.sum database tree\n19238995\nrYNqIZewerbOSOnMYPyCJKxl86UaEBZ1mrEpfiAQhcs=\n\n\
         \u{2014} sum.golang.org Az3grut2xBvodM8V9oOPG46SgC7w8BqMN9z5tsbaN9nTEEIPNjhvYZJ4aQOzCy8qW2LEaJBANgKjGlfW42nf3DmtVwc=\n",
        19238995,
    ),
];

fn peter_signer() -> SoftwareSigner {
    let b64 = PETER_SKEY.splitn(5, '+').nth(4).unwrap();
    let raw = B64.decode(b64).unwrap();
    assert_eq!(raw[0], ALG_ED25519);
    SoftwareSigner::from_seed(&raw[1..].try_into().unwrap())
}

#[test]
fn go_example_key_id_and_vkey() {
    let s = peter_signer();
    let key = VerifierKey::new("PeterNeumann", &s.public_key()).unwrap();
    assert_eq!(key.to_string(), PETER_VKEY);
    assert_eq!(hex::encode(key.id()), "c74f20a3");
    assert_eq!(VerifierKey::parse(PETER_VKEY).unwrap(), key);
}

#[test]
fn go_example_signature_is_reproduced_byte_for_byte() {
    let note = sign_note(PETER_TEXT, "PeterNeumann", &peter_signer()).unwrap();
    assert_eq!(note, PETER_NOTE);
}

#[test]
fn go_example_opens_and_tampering_fails() {
    let key = VerifierKey::parse(PETER_VKEY).unwrap();
    assert_eq!(open_note(PETER_NOTE, &key).unwrap(), PETER_TEXT);
    let edited = PETER_NOTE.replace("cryptography", "cryptographY");
    assert!(matches!(
        open_note(&edited, &key),
        Err(Error::NoteBadSignature { .. })
    ));
    // A note signed only by another key is unsigned for this one.
    let other = VerifierKey::new(
        "PeterNeumann",
        &SoftwareSigner::from_seed(&[9; 32]).public_key(),
    )
    .unwrap();
    assert!(matches!(
        open_note(PETER_NOTE, &other),
        Err(Error::NoteUnsigned { .. })
    ));
    // Unknown signatures are ignored when a known one verifies.
    let extra = format!("{PETER_NOTE}\u{2014} someone AAAAAAAAAA==\n");
    assert_eq!(open_note(&extra, &key).unwrap(), PETER_TEXT);
    // Malformed notes.
    for bad in [
        PETER_TEXT,
        &PETER_NOTE.replace('\u{2014}', "-"),
        &PETER_NOTE[..PETER_NOTE.len() - 1],
        &format!("\n{PETER_NOTE}"),
    ] {
        assert!(open_note(bad, &key).is_err(), "{bad:?}");
    }
}

#[test]
fn vkey_manglings_are_rejected() {
    // As `TestNewVerifier` of golang.org/x/mod/sumdb/note: every proper substring and every
    // one-byte change of a valid key is refused.
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            if let Ok(s) = std::str::from_utf8(&b[i..j]) {
                assert!(VerifierKey::parse(s).is_err(), "{s}");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(VerifierKey::parse(s).is_err(), "{s}");
        }
    }
}

#[test]
fn sum_golang_org_checkpoints_verify() {
    let key = VerifierKey::parse(SUMDB_VKEY).unwrap();
    for (note, size) in SUMDB_CHECKPOINTS {
        let cp = Checkpoint::open(note, &key, Some("go.sum database tree")).unwrap();
        assert_eq!(cp.size, size);
        assert!(cp.extensions.is_empty());
        assert_eq!(
            Checkpoint::parse_text(&cp.to_text()).unwrap(),
            cp,
            "round trip"
        );
        // Another size under the same signature fails.
        let forged = note.replacen(&size.to_string(), &(size + 1).to_string(), 1);
        assert!(Checkpoint::open(&forged, &key, None).is_err());
        // The wrong origin is refused.
        assert!(matches!(
            Checkpoint::open(note, &key, Some("kinko")),
            Err(Error::CheckpointOrigin { .. })
        ));
    }
}

#[test]
fn checkpoint_sign_open_round_trip_with_extensions() {
    let s = SoftwareSigner::from_seed(&[7; 32]);
    let key = VerifierKey::new("kinko.example/audit", &s.public_key()).unwrap();
    let cp = Checkpoint {
        origin: "kinko.example/audit".into(),
        size: 42,
        root: [0xab; 32],
        extensions: vec!["time 1700000000000".into()],
    };
    let note = cp.sign(key.name(), &s).unwrap();
    assert!(note.starts_with("kinko.example/audit\n42\n"));
    assert_eq!(
        Checkpoint::open(&note, &key, Some("kinko.example/audit")).unwrap(),
        cp
    );
}

#[test]
fn malformed_checkpoints_are_rejected() {
    let root = B64.encode([1u8; 32]);
    for bad in [
        format!("o\n01\n{root}\n"),
        format!("o\n-1\n{root}\n"),
        format!("o\n18446744073709551616\n{root}\n"),
        format!("o\n1\n{}\n", B64.encode([1u8; 31])),
        "o\n1\n".to_string(),
        format!("\n1\n{root}\n"),
        format!("o\n1\n{root}"),
        format!("o\n1\n{root}\n\next\n"),
        format!("o\n1 \n{root}\n"),
    ] {
        assert!(Checkpoint::parse_text(&bad).is_err(), "{bad:?}");
    }
}

/// A signer whose signatures do not verify is caught before its note leaves `sign_note`.
#[test]
fn faulty_signer_is_caught() {
    struct Bad;
    impl CheckpointSigner for Bad {
        type Error = std::convert::Infallible;
        fn sign(&self, _: &[u8]) -> Result<[u8; 64], Self::Error> {
            Ok([1; 64])
        }
        fn public_key(&self) -> [u8; 32] {
            SoftwareSigner::from_seed(&[3; 32]).public_key()
        }
    }
    assert!(matches!(
        sign_note("x\n", "k", &Bad),
        Err(Error::SignerBadSignature)
    ));
}
