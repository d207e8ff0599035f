//! Fuzz body for the signed-note opener, the checkpoint parser, the verifier key parser
//! (`kinko_audit::note`) and witness cosignatures (`kinko_audit::cosignature`), shared by the `note` cargo-fuzz target and the corpus test
//! (`tests/fuzz_corpus.rs`).

use kinko_audit::cosignature::{CosignerKey, cosign};
use kinko_audit::note::{
    Checkpoint, CheckpointSigner, SoftwareSigner, VerifierKey, open_note, sign_note,
};

/// The log key of the seed corpus: the test fixtures' log signer (seed `01…01`) and origin.
pub(crate) const ORIGIN: &str = "kinko.test/audit";
/// The log key's Ed25519 seed.
pub(crate) const SEED: [u8; 32] = [1; 32];

/// Opens `data` as a signed note and parses it as a checkpoint and as a verifier key.
///
/// A note that opens verifies only under the right key (never under another key of the same
/// name, nor the same key under another name), stops verifying when its text changes, and, when
/// it carries that one signature only, is byte for byte the note the library signs (Ed25519 is
/// deterministic, base64 is strict). A checkpoint or verifier key that parses re-encodes to the
/// same bytes, and a parsed checkpoint signs and opens back to itself. Every refusal is a typed
/// error with a message.
#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// The refusal must say why.
fn refused(e: &kinko_audit::Error) {
    assert!(!e.to_string().trim().is_empty(), "no message: {e:?}");
}

/// [`run`], saying whether `data` opened as a note, parsed as a checkpoint, and parsed as a
/// verifier key.
pub(crate) fn check(data: &[u8]) -> [bool; 3] {
    let Ok(s) = std::str::from_utf8(data) else {
        return [false; 3];
    };
    let mut accepted = [false; 3];
    let signer = SoftwareSigner::from_seed(&SEED);
    let Ok(key) = VerifierKey::new(ORIGIN, &signer.public_key()) else {
        panic!("the fixture's log key is invalid");
    };

    let opened = open_note(s, &key);
    if let Err(e) = &opened {
        refused(e);
    }
    if let Ok(text) = opened {
        accepted[0] = true;
        let sigs = s
            .strip_prefix(text)
            .and_then(|rest| rest.strip_prefix('\n'))
            .unwrap_or_else(|| panic!("opened text is not the note's text"));
        let wrong = [
            SoftwareSigner::from_seed(&[2; 32]).public_key(),
            signer.public_key(),
        ];
        for (name, pk) in [(ORIGIN, &wrong[0]), ("kinko.test/other", &wrong[1])] {
            if let Ok(other) = VerifierKey::new(name, pk) {
                assert!(
                    open_note(s, &other).is_err(),
                    "note opens under another key"
                );
            }
        }
        let altered = format!("{text}x\n\n{sigs}");
        assert!(
            open_note(&altered, &key).is_err(),
            "altered text still opens"
        );
        if sigs.lines().count() == 1 {
            match sign_note(text, ORIGIN, &signer) {
                Ok(ours) => assert_eq!(ours, s, "an opened note is not the canonical note"),
                Err(e) => panic!("opened text does not sign: {e}"),
            }
        }
        if let Ok(cp) = Checkpoint::open(s, &key, None) {
            assert_eq!(
                cp.to_text(),
                text,
                "opened checkpoint re-encodes differently"
            );
            assert_eq!(
                Checkpoint::open(s, &key, Some(ORIGIN)).is_ok(),
                cp.origin == ORIGIN,
                "origin check"
            );
        }
    } else {
        assert!(
            Checkpoint::open(s, &key, None).is_err(),
            "unopened note parses"
        );
    }

    let parsed = Checkpoint::parse_text(s);
    if let Err(e) = &parsed {
        refused(e);
    }
    if let Ok(cp) = parsed {
        accepted[1] = true;
        assert_eq!(cp.to_text(), s, "parsed checkpoint re-encodes differently");
        if let Ok(ck) = VerifierKey::new(&cp.origin, &signer.public_key()) {
            match cp.sign(&cp.origin, &signer) {
                Ok(note) => match Checkpoint::open(&note, &ck, Some(&cp.origin)) {
                    Ok(back) => assert_eq!(back, cp, "checkpoint does not round-trip"),
                    Err(e) => panic!("signed checkpoint does not open: {e}"),
                },
                Err(e) => panic!("parsed checkpoint does not sign: {e}"),
            }
        }
    }

    match VerifierKey::parse(s) {
        Ok(vkey) => {
            accepted[2] = true;
            assert_eq!(vkey.to_string(), s, "verifier key re-encodes differently");
            match VerifierKey::new(vkey.name(), &vkey.public_key()) {
                Ok(again) => assert_eq!(again, vkey),
                Err(e) => panic!("parsed verifier key does not rebuild: {e}"),
            }
        }
        Err(e) => refused(&e),
    }

    // Witness cosignatures (C2SP cosignature/v1) on the same input: a cosigner key that parses
    // re-encodes to the same bytes, and a note either carries a valid cosignature by the
    // cosigner — and then also verifies as its text cosigned anew — or is refused with a reason.
    match CosignerKey::parse(s) {
        Ok(k) => assert_eq!(k.to_string(), s, "cosigner key re-encodes differently"),
        Err(e) => refused(&e),
    }
    let witness = SoftwareSigner::from_seed(&[3; 32]);
    let Ok(cosigner) = CosignerKey::new("witness.test/w1", &witness.public_key()) else {
        panic!("the fixture's cosigner key is invalid");
    };
    match cosigner.verify_note(s) {
        Ok(time) => {
            let text = s
                .get(..s.rfind("\n\n").map_or(0, |i| i + 1))
                .unwrap_or_default();
            match cosign(text, cosigner.name(), &witness, time) {
                Ok(line) => assert!(
                    s.contains(&line),
                    "a verified cosignature differs from a fresh one"
                ),
                Err(e) => panic!("a cosigned text does not cosign again: {e}"),
            }
        }
        Err(e) => refused(&e),
    }
    accepted
}
