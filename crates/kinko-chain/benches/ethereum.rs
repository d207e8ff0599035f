//! Decode + intent digest, µs per operation, for Ethereum payloads and a SafeTx.
//!
//! `cargo bench -p kinko-chain --bench ethereum`. A plain timing loop (no harness): each case is
//! warmed up, then timed over enough iterations to run for about half a second; the figure is
//! the mean wall-clock time of `decode` followed by `Intent::digest` (canonical JSON + SHA-256).

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use kinko_chain::{Chain, DecodeContext, Network, TokenRegistry};

fn vectors(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn main() {
    // The EIP-155 example's key (0x4646…46), compressed.
    let key =
        hex::decode("024bc2a31265153f07e70e0bab08724e6b85e217f8cd628ceb62974247bb493382").unwrap();
    let tokens = TokenRegistry::new();
    let eip155: serde_json::Value = serde_json::from_slice(
        &std::fs::read(vectors("tests/vectors/ethereum/eip155.json")).unwrap(),
    )
    .unwrap();
    let legacy = hex::decode(eip155["signing_data"].as_str().unwrap()).unwrap();
    let safe_td = std::fs::read(vectors(
        "tests/vectors/safe/mainnet_nonce434.typed_data.json",
    ))
    .unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("ethereum legacy EIP-155 transfer", legacy),
        ("safe SafeTx typed data (292-byte call)", safe_td),
    ];
    // The seed corpus holds the stripped on-chain payloads: add the largest one that decodes on
    // chain 1 (the Uniswap swap, a contract call).
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ethereum");
    let network = Network::new("1").unwrap();
    let ctx = DecodeContext {
        network: &network,
        public_key: &key,
        tokens: &tokens,
    };
    let mut biggest: Option<Vec<u8>> = None;
    for entry in std::fs::read_dir(corpus).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        if kinko_chain::decode(Chain::Ethereum, &data, &ctx).is_ok()
            && biggest.as_ref().is_none_or(|b| data.len() > b.len())
        {
            biggest = Some(data);
        }
    }
    if let Some(b) = biggest {
        cases.push(("ethereum largest accepted seed (contract call)", b));
    }

    for (name, payload) in &cases {
        let run = || {
            let intent = kinko_chain::decode(Chain::Ethereum, black_box(payload), &ctx).unwrap();
            black_box(intent.digest().unwrap());
        };
        for _ in 0..200 {
            run();
        }
        let mut iters: u32 = 256;
        loop {
            let start = Instant::now();
            for _ in 0..iters {
                run();
            }
            let elapsed = start.elapsed();
            if elapsed >= Duration::from_millis(500) || iters >= 1 << 24 {
                let us = elapsed.as_secs_f64() * 1e6 / f64::from(iters);
                println!(
                    "{name:<48} {:>5} bytes  decode+digest {us:>8.2} µs/op  ({iters} iterations)",
                    payload.len()
                );
                break;
            }
            iters *= 2;
        }
    }
}
