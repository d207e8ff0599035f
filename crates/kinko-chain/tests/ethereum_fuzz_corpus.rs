//! Replays every committed seed of the `ethereum` fuzz target (`fuzz/corpus/ethereum/`) through
//! the same body the fuzzer runs, in the normal `cargo test` run: the decoder must map each seed
//! and each of its prefixes to an intent or a typed error, never a panic.
//!
//! `cargo test -p kinko-chain --test ethereum_fuzz_corpus -- --ignored` regenerates the seeds
//! from the vectors in `tests/vectors/ethereum/` and a few synthetic transactions.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use alloy_consensus::{
    SignableTransaction, TxEip1559, TxEip2930, TxEip4844, TxEip7702, TxEnvelope, TxLegacy,
};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Bytes, TxKind, U256, address};
use sha2::{Digest, Sha256};

#[path = "../fuzz/bodies/ethereum.rs"]
mod body;

mod fuzz_tally;
use fuzz_tally::Tally;

/// How many of the committed seeds decode (a lower bound: new seeds may add more).
const SEEDS_DECODED: usize = 11;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ethereum")
}

#[test]
fn ethereum_fuzz_corpus_replays_without_panic() {
    let (mut n, mut seeds, mut all) = (0, Tally::new(body::check), Tally::new(body::check));
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        seeds.run(&data);
        all.run(&data);
        for len in 0..data.len() {
            all.run(&data[..len]);
        }
        n += 1;
    }
    assert!(n >= 10, "only {n} seeds");
    // The unsigned transactions among the seeds decode; the signed one and the prefixes do not.
    seeds.assert_both_paths(SEEDS_DECODED);
    all.assert_both_paths(SEEDS_DECODED);
}

fn unsigned<T: SignableTransaction<alloy_primitives::Signature>>(tx: &T) -> Vec<u8> {
    let mut out = Vec::new();
    tx.encode_for_signing(&mut out);
    out
}

#[test]
#[ignore = "regenerates the committed seed corpus"]
fn regenerate_seeds() {
    let vectors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/ethereum");
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let eip155: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors.join("eip155.json")).unwrap())
            .unwrap();
    seeds.push(hex::decode(eip155["signing_data"].as_str().unwrap()).unwrap());
    seeds.push(hex::decode(eip155["signed_tx"].as_str().unwrap()).unwrap());
    let onchain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors.join("onchain.json")).unwrap())
            .unwrap();
    for v in onchain.as_array().unwrap() {
        let signed = hex::decode(v["signed_tx"].as_str().unwrap()).unwrap();
        let env = TxEnvelope::decode_2718(&mut signed.as_slice()).unwrap();
        seeds.push(match &env {
            TxEnvelope::Legacy(s) => unsigned(s.tx()),
            TxEnvelope::Eip2930(s) => unsigned(s.tx()),
            TxEnvelope::Eip1559(s) => unsigned(s.tx()),
            TxEnvelope::Eip4844(s) => unsigned(s.tx().tx()),
            TxEnvelope::Eip7702(s) => unsigned(s.tx()),
        });
    }
    let bob = address!("3535353535353535353535353535353535353535");
    seeds.push(unsigned(&TxLegacy {
        chain_id: None,
        nonce: 1,
        gas_price: 1,
        gas_limit: 21_000,
        to: TxKind::Call(bob),
        value: U256::from(1u8),
        input: Bytes::new(),
    }));
    seeds.push(unsigned(&TxEip2930 {
        chain_id: 1,
        to: TxKind::Call(bob),
        ..Default::default()
    }));
    let mut approve = vec![0x09, 0x5e, 0xa7, 0xb3];
    approve.extend_from_slice(&[0u8; 12]);
    approve.extend_from_slice(bob.as_slice());
    approve.extend_from_slice(&[0xff; 32]);
    seeds.push(unsigned(&TxEip1559 {
        chain_id: 1,
        to: TxKind::Call(bob),
        input: approve.into(),
        ..Default::default()
    }));
    seeds.push(unsigned(&TxEip1559 {
        chain_id: 1,
        to: TxKind::Create,
        input: vec![0x60, 0x80].into(),
        ..Default::default()
    }));
    seeds.push(unsigned(&TxEip4844 {
        chain_id: 1,
        to: bob,
        blob_versioned_hashes: vec![Default::default()],
        ..Default::default()
    }));
    seeds.push(unsigned(&TxEip7702 {
        chain_id: 1,
        to: bob,
        ..Default::default()
    }));
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for seed in seeds {
        let name = hex::encode(&Sha256::digest(&seed)[..20]);
        std::fs::write(dir.join(name), seed).unwrap();
    }
}
