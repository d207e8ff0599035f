//! The C2SP tlog-policy text, rule by rule: the spec's two-level example, thresholds, names
//! defined before use and once, duplicates, and checkpoints verified against a quorum with
//! real cosignatures.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::cosignature::cosign;
use crate::merkle::empty_root;
use crate::note::{CheckpointSigner as _, SoftwareSigner};

fn signer(i: u8) -> SoftwareSigner {
    SoftwareSigner::from_seed(&[i; 32])
}

fn cosigner(i: u8) -> (String, SoftwareSigner) {
    (format!("w{i}.example"), signer(i))
}

fn vkey(i: u8) -> String {
    let (name, s) = cosigner(i);
    CosignerKey::new(&name, &s.public_key())
        .unwrap()
        .to_string()
}

fn log_key() -> (VerifierKey, SoftwareSigner) {
    let s = signer(100);
    (
        VerifierKey::new("kinko.test/log", &s.public_key()).unwrap(),
        s,
    )
}

/// The spec's example: two of X1..X3 and one of Y1..Y3.
fn example() -> String {
    format!(
        "# the example of c2sp.org/tlog-policy\nlog {}\n\nwitness X1 {}\nwitness X2 {} https://x2.example/\n\twitness X3 {}\ngroup X-witnesses 2 X1 X2 X3\n\nwitness Y1 {}\nwitness Y2 {}\nwitness Y3 {}\ngroup Y-witnesses any Y1 Y2 Y3\n\ngroup X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n",
        log_key().0,
        vkey(1),
        vkey(2),
        vkey(3),
        vkey(4),
        vkey(5),
        vkey(6)
    )
}

#[test]
fn the_spec_example_needs_two_x_and_one_y() {
    let p = WitnessPolicy::parse(&example()).unwrap();
    assert_eq!(p.witnesses().len(), 6);
    assert_eq!(p.logs().len(), 1);
    assert_eq!(p.witnesses()[1].url.as_deref(), Some("https://x2.example/"));
    assert!(!p.requires_nothing());
    let met = |set: &[usize]| p.quorum_met(|i| set.contains(&i));
    assert!(met(&[0, 1, 3]));
    assert!(met(&[0, 2, 5]));
    assert!(met(&[0, 1, 2, 3, 4, 5]));
    assert!(!met(&[0, 3, 4, 5]), "one X is not two");
    assert!(!met(&[0, 1, 2]), "no Y");
    assert!(!met(&[]));
}

#[test]
fn quorum_none_and_a_single_witness() {
    let p = WitnessPolicy::parse("quorum none\n").unwrap();
    assert!(p.requires_nothing());
    assert!(p.quorum_met(|_| false));
    let p = WitnessPolicy::parse(&format!("witness a {}\nquorum a", vkey(1))).unwrap();
    assert!(p.quorum_met(|i| i == 0));
    assert!(!p.quorum_met(|_| false));
}

#[test]
fn malformed_policies_are_refused_with_the_line() {
    let w1 = vkey(1);
    let w2 = vkey(2);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "no quorum line"),
        (format!("witness a {w1}\n"), "no quorum line"),
        ("quorum a\n".into(), "line 1: \"a\" is not defined above"),
        (format!("quorum a\nwitness a {w1}\n"), "line 1"),
        (
            format!("witness a {w1}\nwitness a {w2}\nquorum a\n"),
            "line 2: \"a\" is defined twice",
        ),
        (
            format!("witness a {w1}\nwitness b {w1}\nquorum a\n"),
            "line 2: duplicate witness key",
        ),
        (
            format!("witness a {w1}\ngroup g 2 a\nquorum g\n"),
            "between 1 and the member count",
        ),
        (
            format!("witness a {w1}\ngroup g 0 a\nquorum g\n"),
            "all, any or a decimal",
        ),
        (
            format!("witness a {w1}\ngroup g any a a\nquorum g\n"),
            "listed twice",
        ),
        (
            format!("witness a {w1}\ngroup g any\nquorum g\n"),
            "at least one member",
        ),
        (
            format!("witness a {w1}\ngroup g any b\nquorum g\n"),
            "\"b\" is not defined above",
        ),
        (format!("witness none {w1}\nquorum none\n"), "reserved"),
        (
            format!("witness a {w1}\nquorum a\nquorum a\n"),
            "second quorum",
        ),
        ("quorum none\nwitnesses a b\n".into(), "unknown keyword"),
        ("quorum none\r\n".into(), "control characters"),
        // A log key where a cosigner key is expected (type 0x01, not 0x04), and the reverse.
        (
            format!("witness a {}\nquorum a\n", log_key().0),
            "line 1: malformed verifier key",
        ),
        (
            format!("log {w1}\nquorum none\n"),
            "line 1: malformed verifier key",
        ),
        (
            format!("log {k}\nlog {k}\nquorum none\n", k = log_key().0),
            "duplicate log key",
        ),
    ];
    for (text, want) in cases {
        let e = WitnessPolicy::parse(&text).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

/// A checkpoint of `size` signed by the log and cosigned by witnesses `by`.
fn checkpoint(size: u64, by: &[u8]) -> String {
    let (key, log) = log_key();
    let cp = Checkpoint {
        origin: key.name().to_string(),
        size,
        root: if size == 0 {
            empty_root()
        } else {
            [size as u8; 32]
        },
        extensions: vec![],
    };
    let mut note = cp.sign(key.name(), &log).unwrap().to_string();
    let body = cp.to_text();
    for i in by {
        let (name, s) = cosigner(*i);
        note.push_str(&cosign(&body, &name, &s, 1_700_000_000).unwrap());
    }
    note
}

#[test]
fn a_checkpoint_verifies_only_with_the_log_signature_and_the_quorum() {
    let p = WitnessPolicy::parse(&example()).unwrap();
    let (key, _) = log_key();
    let cp = p.verify(&checkpoint(7, &[1, 3, 5]), &key).unwrap();
    assert_eq!(cp.size, 7);
    let e = p.verify(&checkpoint(7, &[1, 4, 5]), &key).unwrap_err();
    assert!(
        e.to_string()
            .contains("lacks the witness quorum (cosigned by X1, Y1, Y2)"),
        "{e}"
    );
    assert!(matches!(
        p.verify(&checkpoint(7, &[]), &key),
        Err(Error::WitnessQuorum { size: 7, .. })
    ));
    // A cosignature by a witness outside the policy counts for nothing.
    let e = p.verify(&checkpoint(7, &[1, 9, 4]), &key).unwrap_err();
    assert!(matches!(e, Error::WitnessQuorum { .. }), "{e}");
    // A cosignature line that does not verify (here: moved to another checkpoint) counts as
    // none.
    let good = checkpoint(7, &[1, 3, 5]);
    let moved =
        checkpoint(8, &[]) + (good.lines().skip(5).collect::<Vec<_>>().join("\n") + "\n").as_str();
    assert!(p.cosigners(&moved).is_empty());
    // Another log's key is refused when the policy names its logs.
    let other = VerifierKey::new("other/log", &signer(101).public_key()).unwrap();
    assert!(matches!(
        p.verify(&good, &other),
        Err(Error::WitnessPolicy(_))
    ));
}
