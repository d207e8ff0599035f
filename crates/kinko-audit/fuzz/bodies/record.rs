//! Fuzz body for the audit record decoder (`Record::decode` of one log line), shared by the
//! `record` cargo-fuzz target and the corpus test (`tests/fuzz_corpus.rs`).

use kinko_audit::merkle::leaf_hash;
use kinko_audit::record::{Approval, Event, IntentRecord, MAX_RECORD_LEN, Record};

/// Decodes `data` as one log line. Whatever decodes must be the canonical encoding of the
/// record it holds (one record, one line, one leaf hash), fit on one line of the log, and
/// survive the verifier's evidence checks: a recorded intent that checks re-records to the same
/// bytes and digest; an approval whose signature verifies stops verifying over another message.
/// What does not decode is refused with a typed error that has a message.
#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// [`run`], saying whether `data` decoded.
pub(crate) fn check(data: &[u8]) -> [bool; 1] {
    let record = match Record::decode(data) {
        Ok(record) => record,
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "no message: {e:?}");
            return [false];
        }
    };
    assert!(data.len() <= MAX_RECORD_LEN, "over-long line decoded");
    assert!(std::str::from_utf8(data).is_ok(), "non-UTF-8 line decoded");
    assert!(
        !data.contains(&b'\n'),
        "a decoded line holds a newline: the log would split it"
    );
    let line = match record.encode() {
        Ok(line) => line,
        Err(e) => panic!("decoded record does not re-encode: {e}"),
    };
    assert_eq!(line, data, "decoded record re-encodes differently");
    assert_eq!(leaf_hash(&line), leaf_hash(data));
    match Record::decode(&line) {
        Ok(again) => assert_eq!(again, record, "re-decoded record differs"),
        Err(e) => panic!("re-encoded record does not decode: {e}"),
    }
    let tag = format!("\"type\":\"{}\"", record.event.kind());
    assert!(
        std::str::from_utf8(data).is_ok_and(|s| s.contains(&tag)),
        "event kind {} is not the line's type",
        record.event.kind()
    );

    let (intents, approvals) = evidence(&record.event);
    for ir in intents {
        if let Ok(intent) = ir.check() {
            match IntentRecord::of(&intent) {
                Ok(again) => assert_eq!(&again, ir, "a checked intent re-records differently"),
                Err(e) => panic!("a checked intent does not re-record: {e}"),
            }
        }
    }
    for a in approvals {
        if a.signature_valid() {
            let mut other = a.clone();
            other.message.0.push(b'!');
            assert!(
                !other.signature_valid(),
                "approval signature covers two messages"
            );
        }
    }
    [true]
}

/// The intents and approvals a record carries as evidence.
fn evidence(event: &Event) -> (Vec<&IntentRecord>, Vec<&Approval>) {
    let mut intents = Vec::new();
    let mut approvals: Vec<&Approval> = Vec::new();
    match event {
        Event::KeyCreated(e) => approvals.extend(&e.approvals),
        Event::PolicyInstalled(e) => approvals.extend(&e.approvals),
        Event::RequestReceived(e) => intents.extend(&e.intent),
        Event::Approval(e) => approvals.push(&e.approval),
        Event::Rejection(e) => approvals.extend(&e.signed),
        Event::Freeze(e) => approvals.extend(&e.signed),
        Event::Unfreeze(e) => approvals.extend(&e.approvals),
        Event::SigningAuthorized(e) => {
            intents.push(&e.intent);
            approvals.extend(&e.approvals);
        }
        _ => {}
    }
    (intents, approvals)
}
