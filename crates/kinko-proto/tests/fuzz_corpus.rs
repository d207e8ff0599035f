//! Replays every committed seed of the `requests` fuzz target (`fuzz/corpus/requests/`) through
//! the same body the fuzzer runs, in the normal `cargo test` run: never a panic. The seeds are
//! written by the ignored test below from real messages (named by SHA-256, as libFuzzer does).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use kinko_proto::v1 as pb;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

#[path = "../fuzz/bodies/requests.rs"]
mod requests;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/requests")
}

/// How many committed seeds validate, per message type (lower bounds: new seeds may add more).
const MIN_VALID_SEEDS: [usize; 4] = [3, 3, 2, 17];

#[test]
fn requests_corpus_replays_without_panic() {
    let (mut n, mut valid_seeds, mut inputs, mut refused) = (0, [0usize; 4], 0, [0usize; 4]);
    for entry in std::fs::read_dir(corpus()).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let kind = usize::from(data.first().copied().unwrap_or(0) % 4);
        if requests::check(&data) {
            valid_seeds[kind] += 1;
        } else {
            refused[kind] += 1;
        }
        // Every proper prefix too (the empty one holds no message type).
        for len in 0..data.len() {
            inputs += 1;
            if !requests::check(&data[..len]) && len > 0 {
                refused[kind] += 1;
            }
        }
        n += 1;
    }
    assert!(n >= 8, "only {n} seeds");
    assert!(inputs > n, "no prefixes replayed");
    // Every message type's bounds were checked on valid messages, and its refusals on others.
    for kind in 0..4 {
        assert!(
            valid_seeds[kind] >= MIN_VALID_SEEDS[kind],
            "message type {kind}: only {} valid seeds",
            valid_seeds[kind]
        );
        assert!(refused[kind] > 0, "message type {kind}: nothing refused");
    }
}

/// The seeds: each message type valid, and each at or past a bound.
#[test]
#[ignore = "writes files; run by hand to regenerate fuzz/corpus/requests"]
fn write_requests_corpus() {
    let submit = pb::SubmitWithdrawalRequest {
        key_name: "eth-hot".into(),
        chain: pb::Chain::Ethereum as i32,
        payload: hex::decode("02f383aa36a780843b9aca008506fc23ac00825208945aaeb6053f3e94c9b9a09f33669435e7ef1beaed880de0b6b3a764000080c0").unwrap(),
        idempotency_key: "w-1".into(),
        reference: "withdrawal 1".into(),
        requester_signature: vec![7; 64],
    };
    let approval = pb::SignedApproval {
        request_id: "req-0123".into(),
        officer_id: "alice".into(),
        message: vec![b'k'; 200],
        signature: vec![1; 64],
    };
    let governance = pb::GovernanceApproval {
        subject_id: "freeze-1".into(),
        officer_id: "carol".into(),
        message: vec![b'g'; 150],
        signature: vec![2; 64],
    };
    let mut seeds: Vec<Vec<u8>> = vec![
        [vec![0], submit.encode_to_vec()].concat(),
        [
            vec![0],
            pb::SubmitWithdrawalRequest {
                chain: 7,
                requester_signature: vec![7; 63],
                ..submit.clone()
            }
            .encode_to_vec(),
        ]
        .concat(),
        [
            vec![0],
            pb::SubmitWithdrawalRequest {
                idempotency_key: "k".repeat(129),
                reference: "r".repeat(1024),
                ..submit.clone()
            }
            .encode_to_vec(),
        ]
        .concat(),
        [vec![1], approval.encode_to_vec()].concat(),
        [
            vec![1],
            pb::SignedApproval {
                message: vec![0; 4097],
                ..approval.clone()
            }
            .encode_to_vec(),
        ]
        .concat(),
        [vec![2], governance.encode_to_vec()].concat(),
        [
            vec![3],
            pb::ListPendingRequest {
                limit: 500,
                after_request_id: "req-9".into(),
            }
            .encode_to_vec(),
        ]
        .concat(),
        [
            vec![3],
            pb::ListPendingRequest {
                limit: u32::MAX,
                after_request_id: String::new(),
            }
            .encode_to_vec(),
        ]
        .concat(),
    ];
    seeds.push(vec![0, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]); // a length far past the end
    std::fs::create_dir_all(corpus()).unwrap();
    for s in seeds {
        let name = hex::encode(Sha256::digest(&s));
        std::fs::write(corpus().join(&name[..40]), s).unwrap();
    }
}
