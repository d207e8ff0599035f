//! Decode + intent digest, µs per operation, for Bitcoin PSBTs and Solana messages.
//!
//! `cargo bench -p kinko-chain --bench bitcoin_solana`. A plain timing loop (no harness), like
//! the `ethereum` bench: each case is warmed up, then timed over enough iterations to run for
//! about half a second; the figure is the mean wall-clock time of `decode` followed by
//! `Intent::digest` (canonical JSON + SHA-256).

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bitcoin::psbt::Psbt;
use bitcoin::{Amount, CompressedPublicKey, ScriptBuf, Transaction, TxOut, Witness};
use kinko_chain::{Chain, DecodeContext, Network, TokenRegistry};
use kinko_intent::TokenInfo;

fn vector(rel: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/vectors")
            .join(rel),
    )
    .unwrap()
}

fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap()
}

fn bench(name: &str, chain: Chain, payload: &[u8], ctx: &DecodeContext<'_>) {
    let run = || {
        let intent = kinko_chain::decode(chain, black_box(payload), ctx).unwrap();
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
            return;
        }
        iters *= 2;
    }
}

fn main() {
    let tokens = TokenRegistry::new();

    // Bitcoin: the BIP-143 example PSBT (2 inputs, 2 outputs).
    let network = Network::new("bitcoin").unwrap();
    let key =
        hex::decode("025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357").unwrap();
    let psbt = base64::engine::general_purpose::STANDARD
        .decode(vector("bitcoin/bip143_example.psbt.base64").trim())
        .unwrap();
    let ctx = DecodeContext {
        network: &network,
        public_key: &key,
        tokens: &tokens,
    };
    bench(
        "bitcoin BIP-143 PSBT (2 in, 2 out)",
        Chain::Bitcoin,
        &psbt,
        &ctx,
    );

    // Bitcoin: mainnet 5d6bf535 as a PSBT (2 P2WPKH inputs, 1 output).
    let text = vector("bitcoin/mainnet_p2wpkh_5d6bf535.txt");
    let mut tx: Transaction =
        bitcoin::consensus::deserialize(&hex::decode(field(&text, "signed_tx ")).unwrap()).unwrap();
    let key = tx.input[0].witness.nth(1).unwrap().to_vec();
    let pk = CompressedPublicKey::from_slice(&key).unwrap();
    for txin in &mut tx.input {
        txin.witness = Witness::new();
    }
    let mut p = Psbt::from_unsigned_tx(tx).unwrap();
    for (input, v) in p
        .inputs
        .iter_mut()
        .zip(field(&text, "input_values ").split(' '))
    {
        input.witness_utxo = Some(TxOut {
            value: Amount::from_sat(v.parse().unwrap()),
            script_pubkey: ScriptBuf::new_p2wpkh(&pk.wpubkey_hash()),
        });
    }
    let ctx = DecodeContext {
        network: &network,
        public_key: &key,
        tokens: &tokens,
    };
    bench(
        "bitcoin mainnet 5d6bf535 PSBT (2 in, 1 out)",
        Chain::Bitcoin,
        &p.serialize(),
        &ctx,
    );

    // Solana: the mainnet SPL TransferChecked message (3vZ67C…).
    let network = Network::new("mainnet-beta").unwrap();
    let text = vector("solana/mainnet_spl_transfer_checked_3vZ67C.txt");
    let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
    let tx = bitcoin::base58::decode(line.trim()).unwrap();
    let key = bitcoin::base58::decode("B1iGmDJdvmxyUiYM8UEo2Uw2D58EmUrw4KyLYMmrhf8V").unwrap();
    let mut sol_tokens = TokenRegistry::new();
    sol_tokens.insert(
        Chain::Solana,
        "SRMuApVNdxXokk5GT7XD5cUUgXMBCoAz2LHeuAoKWRt",
        TokenInfo {
            symbol: "SRM".to_string(),
            decimals: 6,
        },
    );
    let ctx = DecodeContext {
        network: &network,
        public_key: &key,
        tokens: &sol_tokens,
    };
    bench(
        "solana mainnet SPL TransferChecked message",
        Chain::Solana,
        &tx[65..],
        &ctx,
    );

    // Solana: Trust Wallet's System transfer message.
    let text = vector("solana/trustwallet_sol_transfer_42.txt");
    let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
    let tx = bitcoin::base58::decode(line.trim()).unwrap();
    let key = bitcoin::base58::decode("41a5jYky56M6EWDsFfLaZRxoRtgAJSRWxJnxaJNJELn5").unwrap();
    let ctx = DecodeContext {
        network: &network,
        public_key: &key,
        tokens: &tokens,
    };
    bench(
        "solana System transfer message",
        Chain::Solana,
        &tx[65..],
        &ctx,
    );
}
