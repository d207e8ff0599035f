//! Fuzz body for the witness's `add-checkpoint` request parser and decision
//! (`kinko_audit::witness`), shared by the `witness` cargo-fuzz target and the corpus test
//! (`tests/fuzz_corpus.rs`).

use kinko_audit::note::{Checkpoint, CheckpointSigner, SoftwareSigner, VerifierKey};
use kinko_audit::witness::{KnownLog, Refusal, check as decide, parse_add_checkpoint};

/// The fixture log: the test fixtures' log signer (seed `01…01`) and origin.
const ORIGIN: &str = "kinko.test/audit";

#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// Parses `data` as a request body and decides it for a witness that knows the fixture log and
/// never cosigned it: a refusal carries one of the spec's statuses and a body (for 409, the
/// size as a decimal line); an accepted checkpoint opens under the log's key, from size 0 with
/// an empty proof. Says whether the body parsed and whether it was accepted.
pub(crate) fn check(data: &[u8]) -> [bool; 2] {
    let signer = SoftwareSigner::from_seed(&[1; 32]);
    let Ok(key) = VerifierKey::new(ORIGIN, &signer.public_key()) else {
        panic!("the fixture's log key is invalid");
    };
    let logs = [KnownLog {
        origin: ORIGIN.into(),
        key: key.clone(),
    }];
    let refused = |r: &Refusal| {
        assert!(
            [400, 403, 404, 409, 422].contains(&r.status()),
            "status {}",
            r.status()
        );
        let (body, _) = r.body();
        assert!(body.ends_with('\n') && body.len() > 1, "body {body:?}");
        if let Refusal::Conflict { latest } = r {
            assert_eq!(body, format!("{latest}\n"));
        }
    };
    let req = match parse_add_checkpoint(data) {
        Ok(r) => r,
        Err(e) => {
            refused(&e);
            assert_eq!(e.status(), 400);
            return [false, false];
        }
    };
    match decide(&req, &logs, |_| None) {
        Ok(cp) => {
            assert_eq!(req.old, 0, "accepted from another size than the latest (0)");
            assert!(req.proof.is_empty(), "accepted a proof from size 0");
            match Checkpoint::open(req.note, &key, Some(ORIGIN)) {
                Ok(opened) => assert_eq!(opened, cp, "accepted another checkpoint"),
                Err(e) => panic!("accepted a checkpoint that does not open: {e}"),
            }
            [true, true]
        }
        Err(e) => {
            refused(&e);
            [true, false]
        }
    }
}
