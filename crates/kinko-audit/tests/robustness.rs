//! Parsers of untrusted input never panic, and reject what they do not fully understand.
#![allow(clippy::unwrap_used)]

use kinko_audit::merkle::{verify_consistency, verify_inclusion};
use kinko_audit::note::{Checkpoint, SoftwareSigner, VerifierKey, open_note};
use kinko_audit::record::Record;
use proptest::prelude::*;

const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn record_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Record::decode(&bytes);
    }

    #[test]
    fn record_decode_of_json_text_never_panics(s in "\\{\"(event|seq|time_ms|principal)\":[ -~]{0,200}\\}") {
        let _ = Record::decode(s.as_bytes());
    }

    #[test]
    fn note_and_checkpoint_parsers_never_panic(s in "[\\PC\n]{0,300}") {
        let key = VerifierKey::parse(VKEY).unwrap();
        let _ = open_note(&s, &key);
        let _ = Checkpoint::parse_text(&s);
        let _ = Checkpoint::open(&s, &key, None);
        let _ = VerifierKey::parse(&s);
    }

}

proptest! {
    // Each case signs and verifies: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signed_checkpoints_round_trip(size in any::<u64>(), root in any::<[u8; 32]>(),
                                     origin in "[a-z0-9./-]{1,40}") {
        let signer = SoftwareSigner::from_seed(&[3; 32]);
        let key = VerifierKey::new(&origin, &kinko_audit::note::CheckpointSigner::public_key(&signer)).unwrap();
        let cp = Checkpoint { origin: origin.clone(), size, root, extensions: vec![] };
        let note = cp.sign(&origin, &signer).unwrap();
        prop_assert_eq!(Checkpoint::open(&note, &key, Some(&origin)).unwrap(), cp);
        prop_assert_eq!(VerifierKey::parse(&key.to_string()).unwrap(), key);
    }

    #[test]
    fn proof_verification_never_panics(a in any::<u64>(), b in any::<u64>(),
                                       proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70)) {
        let _ = verify_inclusion(a, b, &[0; 32], &proof, &[1; 32]);
        let _ = verify_consistency(a, b, &[0; 32], &[1; 32], &proof);
    }
}
