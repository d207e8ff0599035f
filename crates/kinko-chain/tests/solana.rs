//! Solana message decoding and finalizing: a real mainnet transaction, an external signed
//! vector, a round trip verified by ed25519-dalek, and one test per refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use kinko_chain::solana::{SolanaError, base58};
use kinko_chain::{ChainError, DecodeContext, ProducedSignature, decode, finalize};
use kinko_intent::{
    Amount, Asset, Chain, FeeDetail, IntentKind, Network, SigningInput, TokenInfo, TokenRegistry,
};

const SYSTEM: [u8; 32] = [0; 32];

fn b58(s: &str) -> Vec<u8> {
    bitcoin::base58::decode(s).unwrap()
}

fn key32(s: &str) -> [u8; 32] {
    b58(s).try_into().unwrap()
}

fn program(name: &str) -> [u8; 32] {
    key32(name)
}

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/solana")
        .join(name);
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    b58(line.trim())
}

/// Splits a signed transaction with one signature into (signature, message).
fn split_signed(tx: &[u8]) -> ([u8; 64], Vec<u8>) {
    assert_eq!(tx[0], 1, "one signature");
    (tx[1..65].try_into().unwrap(), tx[65..].to_vec())
}

/// The unsigned transaction in wire format, as `@solana/web3.js`
/// `Transaction.serialize({requireAllSignatures: false})` (and solders) write it, built byte by
/// byte from the format (<https://solana.com/docs/core/transactions>): the compact-u16
/// signature count (`header.num_required_signatures`; one byte below 128), one 64-byte slot per
/// required signer, all zeros while unsigned (web3.js allocates the buffer zeroed and copies only
/// non-null signatures), then the message bytes unchanged.
fn unsigned_tx(msg: &[u8]) -> Vec<u8> {
    let count = msg[usize::from(msg[0] & 0x80 != 0)];
    assert!(count < 0x80, "one-byte shortvec");
    let mut tx = vec![count];
    tx.extend(std::iter::repeat_n(0u8, 64 * usize::from(count)));
    tx.extend_from_slice(msg);
    tx
}

/// The replay key of a recent-blockhash message: blockhash and SHA-256 of the message.
fn message_key(blockhash: &[u8; 32], msg: &[u8]) -> String {
    use sha2::Digest as _;
    format!(
        "blockhash:{}:message:{}",
        base58(blockhash),
        hex::encode(sha2::Sha256::digest(msg))
    )
}

fn ctx<'a>(
    network: &'a Network,
    public_key: &'a [u8],
    tokens: &'a TokenRegistry,
) -> DecodeContext<'a> {
    DecodeContext {
        network,
        public_key,
        tokens,
    }
}

fn solana_err(r: Result<impl std::fmt::Debug, ChainError>) -> SolanaError {
    match r {
        Err(ChainError::Solana(e)) => e,
        other => panic!("expected a Solana error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// A message writer (the inverse of the parser, written from the documented format).
// ---------------------------------------------------------------------------------------------

fn shortvec(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n & 0x7f) as u8;
        n >>= 7;
        if n != 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

struct Ix {
    program: u8,
    accounts: Vec<u8>,
    data: Vec<u8>,
}

struct Lookup {
    table: [u8; 32],
    writable: Vec<u8>,
    readonly: Vec<u8>,
}

fn message(
    v0: bool,
    header: [u8; 3],
    keys: &[[u8; 32]],
    blockhash: [u8; 32],
    ixs: &[Ix],
    lookups: &[Lookup],
) -> Vec<u8> {
    let mut m = Vec::new();
    if v0 {
        m.push(0x80);
    }
    m.extend_from_slice(&header);
    m.extend(shortvec(keys.len()));
    for k in keys {
        m.extend_from_slice(k);
    }
    m.extend_from_slice(&blockhash);
    m.extend(shortvec(ixs.len()));
    for ix in ixs {
        m.push(ix.program);
        m.extend(shortvec(ix.accounts.len()));
        m.extend_from_slice(&ix.accounts);
        m.extend(shortvec(ix.data.len()));
        m.extend_from_slice(&ix.data);
    }
    if v0 {
        m.extend(shortvec(lookups.len()));
        for l in lookups {
            m.extend_from_slice(&l.table);
            m.extend(shortvec(l.writable.len()));
            m.extend_from_slice(&l.writable);
            m.extend(shortvec(l.readonly.len()));
            m.extend_from_slice(&l.readonly);
        }
    }
    m
}

fn transfer_data(lamports: u64) -> Vec<u8> {
    let mut d = 2u32.to_le_bytes().to_vec();
    d.extend_from_slice(&lamports.to_le_bytes());
    d
}

fn transfer_checked_data(amount: u64, decimals: u8) -> Vec<u8> {
    let mut d = vec![12u8];
    d.extend_from_slice(&amount.to_le_bytes());
    d.push(decimals);
    d
}

fn signer() -> SigningKey {
    // RFC 8032 section 7.1, TEST 1 secret key.
    let seed: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    SigningKey::from_bytes(&seed)
}

fn recipient() -> [u8; 32] {
    [0x42; 32]
}

/// Payer (key), recipient, System Program; one transfer of `lamports`.
fn sol_transfer(payer: [u8; 32], lamports: u64) -> Vec<u8> {
    message(
        false,
        [1, 0, 1],
        &[payer, recipient(), SYSTEM],
        [7; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 1],
            data: transfer_data(lamports),
        }],
        &[],
    )
}

// ---------------------------------------------------------------------------------------------
// External vectors
// ---------------------------------------------------------------------------------------------

/// A real mainnet SPL `TransferChecked` (see the vector file): decoded, and re-finalized with
/// its on-chain signature into exactly the on-chain bytes.
#[test]
fn mainnet_spl_transfer_checked() {
    let tx = vector("mainnet_spl_transfer_checked_3vZ67C.txt");
    let (sig, msg) = split_signed(&tx);
    let owner = key32("B1iGmDJdvmxyUiYM8UEo2Uw2D58EmUrw4KyLYMmrhf8V");
    // The vector is what it claims: the owner's signature over these message bytes.
    VerifyingKey::from_bytes(&owner)
        .unwrap()
        .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();

    let net = Network::new("mainnet-beta").unwrap();
    let mut tokens = TokenRegistry::new();
    tokens.insert(
        Chain::Solana,
        "SRMuApVNdxXokk5GT7XD5cUUgXMBCoAz2LHeuAoKWRt",
        TokenInfo {
            symbol: "SRM".to_string(),
            decimals: 6,
        },
    );
    let c = ctx(&net, &owner, &tokens);
    let intent = decode(Chain::Solana, &msg, &c).unwrap();
    assert_eq!(intent.kind, IntentKind::TokenTransfer);
    assert_eq!(
        intent.signer.as_str(),
        "B1iGmDJdvmxyUiYM8UEo2Uw2D58EmUrw4KyLYMmrhf8V"
    );
    assert_eq!(
        intent.asset,
        Asset::Token {
            contract: kinko_intent::Address::new("SRMuApVNdxXokk5GT7XD5cUUgXMBCoAz2LHeuAoKWRt")
                .unwrap(),
            symbol: Some("SRM".to_string()),
            decimals: Some(6),
        }
    );
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(
        intent.transfers[0].to.as_str(),
        "3WUX9wASxyScbA7brDipioKfXS1XEYkQ4vo3Kej9bKei"
    );
    assert_eq!(intent.transfers[0].amount, Amount::from_u64(4000));
    assert_eq!(
        intent.replay_keys,
        vec![message_key(
            &key32("CNaHfvqePgGYMvtYi9RuUdVxDYttr1zs4TWrTXYabxZi"),
            &msg
        )]
    );
    assert_eq!(intent.fee.max, Amount::from_u64(5000));
    assert_eq!(
        intent.to_sign,
        vec![SigningInput::Ed25519 {
            message: hex::encode(&msg),
            public_key: hex::encode(owner),
            index: 0,
        }]
    );

    let fin = finalize(Chain::Solana, &msg, &c, &[ProducedSignature::Ed25519(sig)]).unwrap();
    assert_eq!(fin.signed, tx);
    assert_eq!(
        fin.id,
        "3vZ67CGoRYkuT76TtpP2VrtTPBfnvG2xj6mUTvvux46qbnpThgQDgm27nC3yQVUZrABFjT9Qo7vA74tCjtV5P9Xg"
    );

    // The registry's decimals must agree with the instruction's.
    let mut wrong = TokenRegistry::new();
    wrong.insert(
        Chain::Solana,
        "SRMuApVNdxXokk5GT7XD5cUUgXMBCoAz2LHeuAoKWRt",
        TokenInfo {
            symbol: "SRM".to_string(),
            decimals: 9,
        },
    );
    assert!(matches!(
        solana_err(decode(Chain::Solana, &msg, &ctx(&net, &owner, &wrong))),
        SolanaError::DecimalsMismatch {
            instruction: 6,
            registry: 9,
            ..
        }
    ));
    // An unregistered mint is shown by address, decimals from the instruction.
    let empty = TokenRegistry::new();
    let intent = decode(Chain::Solana, &msg, &ctx(&net, &owner, &empty)).unwrap();
    assert!(matches!(
        intent.asset,
        Asset::Token {
            symbol: None,
            decimals: Some(6),
            ..
        }
    ));
}

/// The worked example of `docs/intents.md`: the mainnet message decodes to exactly the committed
/// canonical intent, whose digest is `SHA-256("kinko/intent/v1\n" || json)` — the digest file was
/// checked with Python's `hashlib`, independently of this crate.
#[test]
fn worked_example_of_the_docs() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/solana");
    let (_, msg) = split_signed(&vector("mainnet_spl_transfer_checked_3vZ67C.txt"));
    let canonical = std::fs::read(dir.join("mainnet_3vZ67C.intent.canonical.json")).unwrap();
    let digest = std::fs::read_to_string(dir.join("mainnet_3vZ67C.intent.digest")).unwrap();
    let owner = key32("B1iGmDJdvmxyUiYM8UEo2Uw2D58EmUrw4KyLYMmrhf8V");
    let net = Network::new("mainnet-beta").unwrap();
    let mut tokens = TokenRegistry::new();
    tokens.insert(
        Chain::Solana,
        "SRMuApVNdxXokk5GT7XD5cUUgXMBCoAz2LHeuAoKWRt",
        TokenInfo {
            symbol: "SRM".to_string(),
            decimals: 6,
        },
    );
    let intent = decode(Chain::Solana, &msg, &ctx(&net, &owner, &tokens)).unwrap();
    assert_eq!(intent.canonical_bytes().unwrap(), canonical);
    assert_eq!(intent.digest().unwrap().to_hex(), digest.trim());
}

/// Trust Wallet's signed System transfer vector: 42 lamports.
#[test]
fn trust_wallet_system_transfer() {
    let tx = vector("trustwallet_sol_transfer_42.txt");
    let (sig, msg) = split_signed(&tx);
    let from = key32("41a5jYky56M6EWDsFfLaZRxoRtgAJSRWxJnxaJNJELn5");
    let net = Network::new("mainnet-beta").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &from, &tokens);
    let intent = decode(Chain::Solana, &msg, &c).unwrap();
    assert_eq!(intent.kind, IntentKind::Transfer);
    assert_eq!(intent.asset, kinko_intent::native_asset(Chain::Solana));
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(
        intent.transfers[0].to.as_str(),
        "4iSnyfDKaejniaPc2pBBckwQqV3mDS93go15NdxWJq2y"
    );
    assert_eq!(intent.transfers[0].amount, Amount::from_u64(42));
    assert_eq!(intent.replay_keys, vec![message_key(&[0; 32], &msg)]);
    let fin = finalize(Chain::Solana, &msg, &c, &[ProducedSignature::Ed25519(sig)]).unwrap();
    assert_eq!(fin.signed, tx);
    assert_eq!(
        fin.id,
        "46SRiQGvtPb1iivDfnuC3dW1GzXkfQPTjdUyvFqF2sdPvFrsfx94fys2xpNKR6UiAj7RgKWdJG6mEfe85up6i1JT"
    );
}

// ---------------------------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------------------------

/// decode → sign with ed25519-dalek → finalize → parse the finalized bytes and verify the
/// signature with ed25519-dalek; for a v0 message with compute-budget instructions and a lookup
/// table that only a non-transfer instruction uses.
#[test]
fn round_trip_v0_with_compute_budget() {
    let sk = signer();
    let pk = sk.verifying_key().to_bytes();
    let budget = program("ComputeBudget111111111111111111111111111111");
    let memo = program("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
    let mut limit = vec![2u8];
    limit.extend_from_slice(&300_000u32.to_le_bytes());
    let mut price = vec![3u8];
    price.extend_from_slice(&10_000u64.to_le_bytes());
    let msg = message(
        true,
        [1, 0, 3],
        &[pk, recipient(), SYSTEM, budget, memo],
        [9; 32],
        &[
            Ix {
                program: 3,
                accounts: vec![],
                data: limit,
            },
            Ix {
                program: 3,
                accounts: vec![],
                data: price,
            },
            Ix {
                program: 2,
                accounts: vec![0, 1],
                data: transfer_data(1_500_000_000),
            },
        ],
        &[Lookup {
            table: [5; 32],
            writable: vec![],
            readonly: vec![0, 1],
        }],
    );
    let net = Network::new("devnet").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &pk, &tokens);
    let intent = decode(Chain::Solana, &msg, &c).unwrap();
    assert_eq!(intent.kind, IntentKind::Transfer);
    assert_eq!(intent.signer.as_str(), base58(&pk));
    assert_eq!(intent.transfers[0].amount, Amount::from_u64(1_500_000_000));
    assert_eq!(intent.transfers[0].to.as_str(), base58(&recipient()));
    // 5000 + ceil(10_000 µlamports × 300_000 CU / 1e6) = 5000 + 3000.
    assert_eq!(intent.fee.max, Amount::from_u64(8_000));
    assert_eq!(
        intent.fee.detail,
        FeeDetail::Solana {
            signatures: 1,
            compute_unit_price_micro_lamports: Some(10_000),
            compute_unit_limit: Some(300_000),
        }
    );
    assert_eq!(intent.replay_keys, vec![message_key(&[9; 32], &msg)]);

    let SigningInput::Ed25519 { message: m, .. } = &intent.to_sign[0] else {
        panic!()
    };
    let sig = sk.sign(&hex::decode(m).unwrap()).to_bytes();
    let fin = finalize(Chain::Solana, &msg, &c, &[ProducedSignature::Ed25519(sig)]).unwrap();

    // Independent path: split the wire transaction and verify with the public key alone.
    let (got_sig, got_msg) = split_signed(&fin.signed);
    assert_eq!(got_msg, msg);
    VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify_strict(&got_msg, &ed25519_dalek::Signature::from_bytes(&got_sig))
        .unwrap();
    assert_eq!(fin.id, base58(&got_sig));
}

/// Without SetComputeUnitLimit the limit is 200 000 per instruction; the priority fee rounds up.
#[test]
fn priority_fee_uses_the_default_limit_and_rounds_up() {
    let sk = signer();
    let pk = sk.verifying_key().to_bytes();
    let budget = program("ComputeBudget111111111111111111111111111111");
    let mut price = vec![3u8];
    price.extend_from_slice(&3u64.to_le_bytes());
    let msg = message(
        false,
        [1, 0, 2],
        &[pk, recipient(), SYSTEM, budget],
        [1; 32],
        &[
            Ix {
                program: 3,
                accounts: vec![],
                data: price,
            },
            Ix {
                program: 2,
                accounts: vec![0, 1],
                data: transfer_data(1),
            },
        ],
        &[],
    );
    let net = Network::new("testnet").unwrap();
    let tokens = TokenRegistry::new();
    let intent = decode(Chain::Solana, &msg, &ctx(&net, &pk, &tokens)).unwrap();
    // 3 × 200 000 / 1e6 = 0.6 → 1 lamport.
    assert_eq!(intent.fee.max, Amount::from_u64(5_001));
}

/// An instruction Kinko cannot read makes the intent a contract call that names the program.
#[test]
fn unknown_instruction_is_a_contract_call() {
    let sk = signer();
    let pk = sk.verifying_key().to_bytes();
    let other = [0x99; 32];
    let msg = message(
        false,
        [1, 0, 2],
        &[pk, recipient(), SYSTEM, other],
        [1; 32],
        &[
            Ix {
                program: 2,
                accounts: vec![0, 1],
                data: transfer_data(10),
            },
            Ix {
                program: 3,
                accounts: vec![0, 1],
                data: vec![0xab, 1, 2],
            },
        ],
        &[],
    );
    let net = Network::new("mainnet-beta").unwrap();
    let tokens = TokenRegistry::new();
    let intent = decode(Chain::Solana, &msg, &ctx(&net, &pk, &tokens)).unwrap();
    assert_eq!(intent.kind, IntentKind::ContractCall);
    let call = intent.call.unwrap();
    assert_eq!(call.target.unwrap().as_str(), base58(&other));
    assert_eq!(call.selector.as_deref(), Some("ab"));
    assert_eq!(call.data_len, 3);
    // The SOL transfer beside it is still listed.
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(intent.transfers[0].amount, Amount::from_u64(10));
    // A System instruction other than Transfer (here CreateAccount, index 0) is a call too.
    let mut create = 0u32.to_le_bytes().to_vec();
    create.extend_from_slice(&[0; 48]);
    let msg = message(
        false,
        [1, 0, 1],
        &[pk, recipient(), SYSTEM],
        [1; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 1],
            data: create,
        }],
        &[],
    );
    let intent = decode(Chain::Solana, &msg, &ctx(&net, &pk, &tokens)).unwrap();
    assert_eq!(intent.kind, IntentKind::ContractCall);
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

fn refuse(msg: &[u8], pk: &[u8]) -> SolanaError {
    let net = Network::new("mainnet-beta").unwrap();
    let tokens = TokenRegistry::new();
    solana_err(decode(Chain::Solana, msg, &ctx(&net, pk, &tokens)))
}

#[test]
fn refuses_payer_not_the_key() {
    let pk = signer().verifying_key().to_bytes();
    let someone = SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes();
    let msg = sol_transfer(someone, 1);
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::PayerNotSigner { .. }
    ));
}

#[test]
fn refuses_trailing_bytes() {
    let pk = signer().verifying_key().to_bytes();
    let mut msg = sol_transfer(pk, 1);
    msg.push(0);
    assert!(matches!(refuse(&msg, &pk), SolanaError::TrailingBytes(1)));
}

#[test]
fn refuses_every_truncation() {
    let pk = signer().verifying_key().to_bytes();
    let msg = sol_transfer(pk, 1);
    for n in 0..msg.len() {
        let err = refuse(&msg[..n], &pk);
        assert!(
            matches!(
                err,
                SolanaError::Truncated(_) | SolanaError::InvalidProgramIndex(_)
            ),
            "prefix {n}: {err:?}"
        );
    }
}

#[test]
fn refuses_oversized_account_counts() {
    let pk = signer().verifying_key().to_bytes();
    // 65535 account keys announced, a few bytes given: refused before any allocation.
    let mut msg = vec![1, 0, 1, 0xff, 0xff, 0x03];
    msg.extend_from_slice(&pk);
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::Truncated("account keys")
    ));
    // A shortvec above u16::MAX, or with a fourth byte.
    let msg = vec![1, 0, 1, 0xff, 0xff, 0x04];
    assert!(matches!(refuse(&msg, &pk), SolanaError::InvalidShortVec(_)));
    // A non-canonical shortvec (3 encoded as 0x83 0x00).
    let msg = vec![1, 0, 1, 0x83, 0x00];
    assert!(matches!(refuse(&msg, &pk), SolanaError::InvalidShortVec(_)));
    // Too many instructions announced.
    let mut msg = vec![1, 0, 1, 3];
    msg.extend_from_slice(&pk);
    msg.extend_from_slice(&recipient());
    msg.extend_from_slice(&SYSTEM);
    msg.extend_from_slice(&[7; 32]);
    msg.extend_from_slice(&[0xff, 0xff, 0x03]);
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::Truncated("instructions")
    ));
    // A well-formed message over the 1232-byte packet limit.
    let keys: Vec<[u8; 32]> = std::iter::once(pk)
        .chain((1..40u8).map(|i| [i; 32]))
        .chain(std::iter::once(SYSTEM))
        .collect();
    let msg = message(
        false,
        [1, 0, 1],
        &keys,
        [1; 32],
        &[Ix {
            program: 40,
            accounts: vec![0, 1],
            data: transfer_data(1),
        }],
        &[],
    );
    assert!(matches!(refuse(&msg, &pk), SolanaError::TooLarge(_)));
}

#[test]
fn refuses_lookup_table_destination() {
    let pk = signer().verifying_key().to_bytes();
    // Account 3 (the first beyond the 3 static keys) is loaded from a lookup table.
    let msg = message(
        true,
        [1, 0, 1],
        &[pk, recipient(), SYSTEM],
        [1; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 3],
            data: transfer_data(1),
        }],
        &[Lookup {
            table: [5; 32],
            writable: vec![7],
            readonly: vec![],
        }],
    );
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::LookupTableAccount(0)
    ));
}

#[test]
fn refuses_malformed_structures() {
    let pk = signer().verifying_key().to_bytes();
    // Unsupported version.
    let mut msg = sol_transfer(pk, 1);
    msg.insert(0, 0x81);
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::UnsupportedVersion(1)
    ));
    // A second required signer.
    let msg = message(
        false,
        [2, 0, 1],
        &[pk, recipient(), SYSTEM],
        [1; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 1],
            data: transfer_data(1),
        }],
        &[],
    );
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::OtherSignersRequired(2)
    ));
    // A duplicate account key.
    let msg = message(
        false,
        [1, 0, 1],
        &[pk, pk, SYSTEM],
        [1; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 1],
            data: transfer_data(1),
        }],
        &[],
    );
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::DuplicateAccount(_)
    ));
    // An account index out of range.
    let msg = message(
        false,
        [1, 0, 1],
        &[pk, recipient(), SYSTEM],
        [1; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 9],
            data: transfer_data(1),
        }],
        &[],
    );
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::AccountIndexOutOfRange { .. }
    ));
    // A Transfer with a trailing byte: the runtime would still execute it (bincode ignores
    // trailing bytes), so it is refused rather than shown as a call to the System Program.
    let mut data = transfer_data(1);
    data.push(0);
    let msg = message(
        false,
        [1, 0, 1],
        &[pk, recipient(), SYSTEM],
        [1; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 1],
            data,
        }],
        &[],
    );
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::MalformedInstruction(0, _)
    ));
    // A TransferChecked with a byte too many, or with a fifth (multisig signer) account.
    let token = program("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
    let mut data = transfer_checked_data(5, 6);
    data.push(0);
    for (data, accounts) in [
        (data, vec![1, 3, 2, 0]),
        (transfer_checked_data(5, 6), vec![1, 3, 2, 0, 0]),
    ] {
        let msg = message(
            false,
            [1, 0, 2],
            &[pk, [0x11; 32], [0x13; 32], [0x12; 32], token],
            [1; 32],
            &[Ix {
                program: 4,
                accounts,
                data,
            }],
            &[],
        );
        assert!(matches!(
            refuse(&msg, &pk),
            SolanaError::MalformedInstruction(0, _)
        ));
    }
    // No instructions.
    let msg = message(false, [1, 0, 0], &[pk], [1; 32], &[], &[]);
    assert!(matches!(refuse(&msg, &pk), SolanaError::NoInstructions));
    // A readonly fee payer.
    let msg = message(
        false,
        [1, 1, 1],
        &[pk, recipient(), SYSTEM],
        [1; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 1],
            data: transfer_data(1),
        }],
        &[],
    );
    assert!(matches!(refuse(&msg, &pk), SolanaError::InvalidHeader(_)));
}

#[test]
fn refuses_transfers_not_from_the_key_and_mixed_assets() {
    let pk = signer().verifying_key().to_bytes();
    let token = program("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
    let (src, mint, dst, other_owner) = ([0x11; 32], [0x12; 32], [0x13; 32], [0x14; 32]);
    // TransferChecked whose owner is not the key.
    let msg = message(
        false,
        [1, 0, 3],
        &[pk, src, dst, mint, other_owner, token],
        [1; 32],
        &[Ix {
            program: 5,
            accounts: vec![1, 3, 2, 4],
            data: transfer_checked_data(5, 6),
        }],
        &[],
    );
    assert!(matches!(refuse(&msg, &pk), SolanaError::SourceNotSigner(0)));
    // A system transfer from an account other than the key.
    let msg = message(
        false,
        [1, 0, 1],
        &[pk, recipient(), SYSTEM],
        [1; 32],
        &[Ix {
            program: 2,
            accounts: vec![1, 0],
            data: transfer_data(1),
        }],
        &[],
    );
    assert!(matches!(refuse(&msg, &pk), SolanaError::SourceNotSigner(0)));
    // SOL and a token in one message.
    let msg = message(
        false,
        [1, 0, 3],
        &[pk, src, dst, mint, SYSTEM, token],
        [1; 32],
        &[
            Ix {
                program: 5,
                accounts: vec![1, 3, 2, 0],
                data: transfer_checked_data(5, 6),
            },
            Ix {
                program: 4,
                accounts: vec![0, 2],
                data: transfer_data(1),
            },
        ],
        &[],
    );
    assert!(matches!(refuse(&msg, &pk), SolanaError::MixedAssets));
}

#[test]
fn refuses_bad_context_and_bad_signatures() {
    let sk = signer();
    let pk = sk.verifying_key().to_bytes();
    let msg = sol_transfer(pk, 1);
    let tokens = TokenRegistry::new();
    let bad_net = Network::new("mainnet").unwrap();
    assert!(matches!(
        solana_err(decode(Chain::Solana, &msg, &ctx(&bad_net, &pk, &tokens))),
        SolanaError::UnknownNetwork(_)
    ));
    let net = Network::new("mainnet-beta").unwrap();
    assert!(matches!(
        solana_err(decode(Chain::Solana, &msg, &ctx(&net, &pk[..31], &tokens))),
        SolanaError::InvalidPublicKey(_)
    ));
    let c = ctx(&net, &pk, &tokens);
    // A signature over other bytes.
    let wrong = sk.sign(b"something else").to_bytes();
    assert!(matches!(
        solana_err(finalize(
            Chain::Solana,
            &msg,
            &c,
            &[ProducedSignature::Ed25519(wrong)]
        )),
        SolanaError::InvalidSignature
    ));
    // No signature, two signatures, or an ECDSA one.
    let good = sk.sign(&msg).to_bytes();
    for sigs in [
        vec![],
        vec![ProducedSignature::Ed25519(good); 2],
        vec![ProducedSignature::EcdsaSecp256k1 {
            rs: [1; 64],
            recovery_id: 0,
        }],
    ] {
        assert!(matches!(
            solana_err(finalize(Chain::Solana, &msg, &c, &sigs)),
            SolanaError::SignatureCount(_)
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The unsigned wire transaction (web3.js / solders)
// ---------------------------------------------------------------------------------------------

/// The messages of both external vectors, a v0 message and a built legacy one: each as the
/// unsigned transaction decodes to exactly the intent (and digest) of the bare message, whose
/// `to_sign` is the message, not the transaction.
#[test]
fn unsigned_transaction_decodes_to_the_intent_of_its_message() {
    let pk = signer().verifying_key().to_bytes();
    let mainnet_owner = key32("B1iGmDJdvmxyUiYM8UEo2Uw2D58EmUrw4KyLYMmrhf8V");
    let tw_from = key32("41a5jYky56M6EWDsFfLaZRxoRtgAJSRWxJnxaJNJELn5");
    let budget = program("ComputeBudget111111111111111111111111111111");
    let mut limit = vec![2u8];
    limit.extend_from_slice(&300_000u32.to_le_bytes());
    let v0 = message(
        true,
        [1, 0, 2],
        &[pk, recipient(), SYSTEM, budget],
        [9; 32],
        &[
            Ix {
                program: 3,
                accounts: vec![],
                data: limit,
            },
            Ix {
                program: 2,
                accounts: vec![0, 1],
                data: transfer_data(77),
            },
        ],
        &[],
    );
    let cases = [
        (
            split_signed(&vector("mainnet_spl_transfer_checked_3vZ67C.txt")).1,
            mainnet_owner,
        ),
        (
            split_signed(&vector("trustwallet_sol_transfer_42.txt")).1,
            tw_from,
        ),
        (v0, pk),
        (sol_transfer(pk, 5), pk),
    ];
    let net = Network::new("mainnet-beta").unwrap();
    let tokens = TokenRegistry::new();
    for (msg, key) in cases {
        let c = ctx(&net, &key, &tokens);
        let tx = unsigned_tx(&msg);
        assert_eq!(tx.len(), 1 + 64 + msg.len());
        let bare = decode(Chain::Solana, &msg, &c).unwrap();
        let wire = decode(Chain::Solana, &tx, &c).unwrap();
        assert_eq!(wire, bare);
        assert_eq!(wire.digest().unwrap(), bare.digest().unwrap());
        let SigningInput::Ed25519 { message: m, .. } = &wire.to_sign[0] else {
            panic!("expected Ed25519")
        };
        assert_eq!(m, &hex::encode(&msg));
    }
}

/// The real mainnet transaction with its signature slot zeroed is byte for byte what web3.js
/// serializes before signing; decoding it matches the committed worked-example intent, and
/// finalizing it with the on-chain signature yields exactly the on-chain transaction.
#[test]
fn mainnet_vector_as_unsigned_transaction() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/solana");
    let onchain = vector("mainnet_spl_transfer_checked_3vZ67C.txt");
    let (sig, msg) = split_signed(&onchain);
    // shortvec(1) || 64 zero bytes || message.
    let mut unsigned = onchain.clone();
    unsigned[1..65].fill(0);
    assert_eq!(unsigned, unsigned_tx(&msg));

    let owner = key32("B1iGmDJdvmxyUiYM8UEo2Uw2D58EmUrw4KyLYMmrhf8V");
    let net = Network::new("mainnet-beta").unwrap();
    let mut tokens = TokenRegistry::new();
    tokens.insert(
        Chain::Solana,
        "SRMuApVNdxXokk5GT7XD5cUUgXMBCoAz2LHeuAoKWRt",
        TokenInfo {
            symbol: "SRM".to_string(),
            decimals: 6,
        },
    );
    let c = ctx(&net, &owner, &tokens);
    let intent = decode(Chain::Solana, &unsigned, &c).unwrap();
    let canonical = std::fs::read(dir.join("mainnet_3vZ67C.intent.canonical.json")).unwrap();
    assert_eq!(intent.canonical_bytes().unwrap(), canonical);
    let fin = finalize(
        Chain::Solana,
        &unsigned,
        &c,
        &[ProducedSignature::Ed25519(sig)],
    )
    .unwrap();
    assert_eq!(fin.signed, onchain);
    assert_eq!(
        fin.id,
        "3vZ67CGoRYkuT76TtpP2VrtTPBfnvG2xj6mUTvvux46qbnpThgQDgm27nC3yQVUZrABFjT9Qo7vA74tCjtV5P9Xg"
    );
    // The signed transaction itself is partially signed from Kinko's point of view.
    assert!(matches!(
        solana_err(decode(Chain::Solana, &onchain, &c)),
        SolanaError::PartiallySigned(0)
    ));
}

/// decode(unsigned tx) → sign the `to_sign` message with ed25519-dalek → finalize(unsigned tx):
/// the signature sits in slot 0, verifies over the message, and the message bytes are unchanged;
/// the result equals finalizing the bare message.
#[test]
fn finalize_from_unsigned_transaction() {
    let sk = signer();
    let pk = sk.verifying_key().to_bytes();
    let msg = sol_transfer(pk, 123_456);
    let tx = unsigned_tx(&msg);
    let net = Network::new("devnet").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &pk, &tokens);
    let intent = decode(Chain::Solana, &tx, &c).unwrap();
    let SigningInput::Ed25519 { message: m, .. } = &intent.to_sign[0] else {
        panic!("expected Ed25519")
    };
    let sig = sk.sign(&hex::decode(m).unwrap()).to_bytes();
    let fin = finalize(Chain::Solana, &tx, &c, &[ProducedSignature::Ed25519(sig)]).unwrap();
    assert_eq!(fin.signed.len(), tx.len());
    let (got_sig, got_msg) = split_signed(&fin.signed);
    assert_eq!(got_msg, msg);
    VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify_strict(&got_msg, &ed25519_dalek::Signature::from_bytes(&got_sig))
        .unwrap();
    assert_eq!(fin.id, base58(&got_sig));
    let bare = finalize(Chain::Solana, &msg, &c, &[ProducedSignature::Ed25519(sig)]).unwrap();
    assert_eq!(fin.signed, bare.signed);
    // A signature over the whole unsigned transaction (not the message) is refused.
    let over_tx = sk.sign(&tx).to_bytes();
    assert!(matches!(
        solana_err(finalize(
            Chain::Solana,
            &tx,
            &c,
            &[ProducedSignature::Ed25519(over_tx)]
        )),
        SolanaError::InvalidSignature
    ));
}

/// Any non-zero byte in a signature slot: refused as partially signed, never co-signed.
#[test]
fn refuses_partially_signed_transaction() {
    let sk = signer();
    let pk = sk.verifying_key().to_bytes();
    let msg = sol_transfer(pk, 1);
    let net = Network::new("mainnet-beta").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &pk, &tokens);
    // A real signature in the slot, or a single stray byte at either end of it.
    let mut signed = vec![1u8];
    signed.extend_from_slice(&sk.sign(&msg).to_bytes());
    signed.extend_from_slice(&msg);
    for tx in [
        signed,
        {
            let mut t = unsigned_tx(&msg);
            t[1] = 1;
            t
        },
        {
            let mut t = unsigned_tx(&msg);
            t[64] = 0xff;
            t
        },
    ] {
        let err = solana_err(decode(Chain::Solana, &tx, &c));
        assert!(matches!(err, SolanaError::PartiallySigned(0)), "{err:?}");
        assert!(err.to_string().contains("never co-signs"), "{err}");
        assert!(matches!(
            solana_err(finalize(
                Chain::Solana,
                &tx,
                &c,
                &[ProducedSignature::Ed25519(sk.sign(&msg).to_bytes())]
            )),
            SolanaError::PartiallySigned(0)
        ));
    }
}

/// The signature count must equal the header's `num_required_signatures`.
#[test]
fn refuses_wrong_signature_count() {
    let pk = signer().verifying_key().to_bytes();
    let msg = sol_transfer(pk, 1);
    let net = Network::new("mainnet-beta").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &pk, &tokens);
    for count in [0u8, 2, 3] {
        let mut tx = vec![count];
        tx.extend(std::iter::repeat_n(0u8, 64 * usize::from(count)));
        tx.extend_from_slice(&msg);
        let err = solana_err(decode(Chain::Solana, &tx, &c));
        assert!(
            matches!(err, SolanaError::SignatureSlotCount { slots, required: 1 } if slots == usize::from(count)),
            "count {count}: {err:?}"
        );
    }
    // A two-signer message with one slot.
    let two = message(
        false,
        [2, 0, 1],
        &[pk, recipient(), SYSTEM],
        [1; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 1],
            data: transfer_data(1),
        }],
        &[],
    );
    let mut tx = vec![1u8];
    tx.extend_from_slice(&[0; 64]);
    tx.extend_from_slice(&two);
    assert!(matches!(
        solana_err(decode(Chain::Solana, &tx, &c)),
        SolanaError::SignatureSlotCount {
            slots: 1,
            required: 2
        }
    ));
    // With the right count it is refused for what it is: another signer is required.
    assert!(matches!(
        solana_err(decode(Chain::Solana, &unsigned_tx(&two), &c)),
        SolanaError::OtherSignersRequired(2)
    ));
}

/// Nothing may follow the message inside the transaction; truncations are refused too.
#[test]
fn refuses_trailing_bytes_and_truncation_of_unsigned_transaction() {
    let pk = signer().verifying_key().to_bytes();
    let msg = sol_transfer(pk, 1);
    let net = Network::new("mainnet-beta").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &pk, &tokens);
    for extra in [vec![0u8], vec![1], vec![0; 64]] {
        let mut tx = unsigned_tx(&msg);
        tx.extend_from_slice(&extra);
        let err = solana_err(decode(Chain::Solana, &tx, &c));
        assert!(
            matches!(err, SolanaError::TrailingBytes(n) if n == extra.len()),
            "{err:?}"
        );
    }
    let tx = unsigned_tx(&msg);
    for len in 0..tx.len() {
        assert!(
            decode(Chain::Solana, &tx[..len], &c).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Replay keys
// ---------------------------------------------------------------------------------------------

fn replay_keys(msg: &[u8], pk: &[u8; 32]) -> Vec<String> {
    let net = Network::new("mainnet-beta").unwrap();
    let tokens = TokenRegistry::new();
    decode(Chain::Solana, msg, &ctx(&net, pk, &tokens))
        .unwrap()
        .replay_keys
}

/// A recent blockhash is shared by any number of transactions: two different withdrawals with
/// the same blockhash do not conflict; the same message (bare or as a transaction) does.
#[test]
fn replay_key_of_a_blockhash_message_is_the_message() {
    let pk = signer().verifying_key().to_bytes();
    let a = sol_transfer(pk, 1_000);
    let b = sol_transfer(pk, 2_000);
    let to_other = message(
        false,
        [1, 0, 1],
        &[pk, [0x43; 32], SYSTEM],
        [7; 32],
        &[Ix {
            program: 2,
            accounts: vec![0, 1],
            data: transfer_data(1_000),
        }],
        &[],
    );
    let (ka, kb, kc) = (
        replay_keys(&a, &pk),
        replay_keys(&b, &pk),
        replay_keys(&to_other, &pk),
    );
    assert_eq!(ka, vec![message_key(&[7; 32], &a)]);
    assert_ne!(ka, kb);
    assert_ne!(ka, kc);
    assert_ne!(kb, kc);
    assert!(ka[0].starts_with(&format!("blockhash:{}:", base58(&[7; 32]))));
    assert_eq!(replay_keys(&unsigned_tx(&a), &pk), ka);
    assert_eq!(replay_keys(&a, &pk), ka);
}

/// System `AdvanceNonceAccount` (index 4; accounts nonce, RecentBlockhashes sysvar, authority)
/// as the first instruction, then a transfer; the blockhash field holds the stored nonce.
fn nonce_transfer(
    pk: [u8; 32],
    nonce_account: [u8; 32],
    nonce: [u8; 32],
    to: [u8; 32],
    lamports: u64,
    header: [u8; 3],
) -> Vec<u8> {
    let recent_blockhashes_sysvar = key32("SysvarRecentB1ockHashes11111111111111111111");
    message(
        false,
        header,
        &[pk, nonce_account, to, recent_blockhashes_sysvar, SYSTEM],
        nonce,
        &[
            Ix {
                program: 4,
                accounts: vec![1, 3, 0],
                data: 4u32.to_le_bytes().to_vec(),
            },
            Ix {
                program: 4,
                accounts: vec![0, 2],
                data: transfer_data(lamports),
            },
        ],
        &[],
    )
}

/// A durable nonce is consumed once: two different transactions advancing the same nonce
/// account at the same nonce share their replay key; another nonce value or account does not.
#[test]
fn replay_key_of_a_durable_nonce_is_the_nonce() {
    let pk = signer().verifying_key().to_bytes();
    let acct = [0x55; 32];
    let header = [1, 0, 2];
    let a = nonce_transfer(pk, acct, [8; 32], recipient(), 1_000, header);
    let b = nonce_transfer(pk, acct, [8; 32], [0x43; 32], 2_000, header);
    let ka = replay_keys(&a, &pk);
    assert_eq!(
        ka,
        vec![format!(
            "nonce-account:{}:nonce:{}",
            base58(&acct),
            base58(&[8; 32])
        )]
    );
    assert_eq!(replay_keys(&b, &pk), ka);
    assert_eq!(replay_keys(&unsigned_tx(&b), &pk), ka);
    let later = nonce_transfer(pk, acct, [9; 32], recipient(), 1_000, header);
    assert_ne!(replay_keys(&later, &pk), ka);
    let other_account = nonce_transfer(pk, [0x56; 32], [8; 32], recipient(), 1_000, header);
    assert_ne!(replay_keys(&other_account, &pk), ka);
    // A readonly nonce account is not a durable nonce for the runtime (it uses the field as a
    // recent blockhash): the key is the message's.
    let readonly = nonce_transfer(pk, acct, [8; 32], recipient(), 1_000, [1, 0, 4]);
    assert_eq!(
        replay_keys(&readonly, &pk),
        vec![message_key(&[8; 32], &readonly)]
    );
    // AdvanceNonceAccount in second place does not make a nonce transaction either.
    let recent_blockhashes_sysvar = key32("SysvarRecentB1ockHashes11111111111111111111");
    let second = message(
        false,
        [1, 0, 2],
        &[pk, acct, recipient(), recent_blockhashes_sysvar, SYSTEM],
        [8; 32],
        &[
            Ix {
                program: 4,
                accounts: vec![0, 2],
                data: transfer_data(1_000),
            },
            Ix {
                program: 4,
                accounts: vec![1, 3, 0],
                data: 4u32.to_le_bytes().to_vec(),
            },
        ],
        &[],
    );
    assert_eq!(
        replay_keys(&second, &pk),
        vec![message_key(&[8; 32], &second)]
    );
}

/// A nonce account loaded from an address lookup table cannot be named offline: refused.
#[test]
fn refuses_nonce_account_from_lookup_table() {
    let pk = signer().verifying_key().to_bytes();
    let recent_blockhashes_sysvar = key32("SysvarRecentB1ockHashes11111111111111111111");
    let msg = message(
        true,
        [1, 0, 2],
        &[pk, recipient(), recent_blockhashes_sysvar, SYSTEM],
        [8; 32],
        &[
            Ix {
                program: 3,
                accounts: vec![4, 2, 0],
                data: 4u32.to_le_bytes().to_vec(),
            },
            Ix {
                program: 3,
                accounts: vec![0, 1],
                data: transfer_data(1_000),
            },
        ],
        &[Lookup {
            table: [5; 32],
            writable: vec![0],
            readonly: vec![],
        }],
    );
    assert!(matches!(
        refuse(&msg, &pk),
        SolanaError::NonceAccountFromLookupTable
    ));
}

// ---------------------------------------------------------------------------------------------
// Fuzz seeds
// ---------------------------------------------------------------------------------------------

/// Writes a seed file named by the SHA-256 of its content (as libFuzzer names corpus files).
fn write_seed(bytes: &[u8]) {
    use sha2::Digest as _;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/solana");
    std::fs::create_dir_all(&dir).unwrap();
    let name = hex::encode(sha2::Sha256::digest(bytes));
    std::fs::write(dir.join(&name[..40]), bytes).unwrap();
}

/// Regenerates the committed seed corpus of the `solana` fuzz target:
/// `cargo test -p kinko-chain --test solana -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files; run by hand to regenerate fuzz/corpus/solana"]
fn write_fuzz_seeds() {
    let pk = signer().verifying_key().to_bytes();
    // The fuzz body signs with this key.
    assert_eq!(
        hex::encode(pk),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    for name in [
        "mainnet_spl_transfer_checked_3vZ67C.txt",
        "trustwallet_sol_transfer_42.txt",
    ] {
        write_seed(&split_signed(&vector(name)).1);
    }
    write_seed(&sol_transfer(pk, 1_000_000));
    // Unsigned wire transactions (web3.js / solders form), a partially signed one, and a
    // durable-nonce transfer.
    write_seed(&unsigned_tx(
        &split_signed(&vector("trustwallet_sol_transfer_42.txt")).1,
    ));
    write_seed(&unsigned_tx(&sol_transfer(pk, 1_000_000)));
    let mut partial = unsigned_tx(&sol_transfer(pk, 7));
    partial[1] = 1;
    write_seed(&partial);
    write_seed(&unsigned_tx(&nonce_transfer(
        pk,
        [0x55; 32],
        [8; 32],
        recipient(),
        1_000,
        [1, 0, 2],
    )));
    let budget = program("ComputeBudget111111111111111111111111111111");
    let token = program("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
    let mut limit = vec![2u8];
    limit.extend_from_slice(&300_000u32.to_le_bytes());
    let mut price = vec![3u8];
    price.extend_from_slice(&10_000u64.to_le_bytes());
    write_seed(&message(
        true,
        [1, 0, 3],
        &[pk, recipient(), SYSTEM, budget, [0x99; 32]],
        [9; 32],
        &[
            Ix {
                program: 3,
                accounts: vec![],
                data: limit,
            },
            Ix {
                program: 3,
                accounts: vec![],
                data: price,
            },
            Ix {
                program: 2,
                accounts: vec![0, 1],
                data: transfer_data(1_500_000_000),
            },
            Ix {
                program: 4,
                accounts: vec![0, 5],
                data: vec![0xab, 1, 2],
            },
        ],
        &[Lookup {
            table: [5; 32],
            writable: vec![1],
            readonly: vec![0, 1],
        }],
    ));
    write_seed(&message(
        false,
        [1, 0, 2],
        &[pk, [0x11; 32], [0x13; 32], [0x12; 32], token],
        [1; 32],
        &[Ix {
            program: 4,
            accounts: vec![1, 3, 2, 0],
            data: transfer_checked_data(5, 6),
        }],
        &[],
    ));
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest::proptest! {
    /// Any single-byte change of a valid message decodes to an intent or a typed error, and an
    /// intent always carries the exact payload as the message to sign.
    #[test]
    fn mutated_messages_never_panic(pos in 0usize..200, byte in 0u8..=255) {
        let pk = signer().verifying_key().to_bytes();
        let mut msg = sol_transfer(pk, 1_000);
        let at = pos % msg.len();
        msg[at] = byte;
        let net = Network::new("mainnet-beta").unwrap();
        let tokens = TokenRegistry::new();
        if let Ok(intent) = decode(Chain::Solana, &msg, &ctx(&net, &pk, &tokens)) {
            let SigningInput::Ed25519 { message, .. } = &intent.to_sign[0] else {
                panic!("expected Ed25519")
            };
            proptest::prop_assert_eq!(message, &hex::encode(&msg));
        }
    }

    /// Any single-byte change of an unsigned transaction decodes to an intent only when the
    /// change is in the message: the count and the zero slots stay as they were, and the
    /// message to sign is the bytes after the slot.
    #[test]
    fn mutated_unsigned_transactions_never_panic(pos in 0usize..300, byte in 0u8..=255) {
        let pk = signer().verifying_key().to_bytes();
        let mut tx = unsigned_tx(&sol_transfer(pk, 1_000));
        let at = pos % tx.len();
        tx[at] = byte;
        let net = Network::new("mainnet-beta").unwrap();
        let tokens = TokenRegistry::new();
        if let Ok(intent) = decode(Chain::Solana, &tx, &ctx(&net, &pk, &tokens)) {
            proptest::prop_assert_eq!(tx[0], 1);
            proptest::prop_assert!(tx[1..65].iter().all(|&b| b == 0));
            let SigningInput::Ed25519 { message, .. } = &intent.to_sign[0] else {
                panic!("expected Ed25519")
            };
            proptest::prop_assert_eq!(message, &hex::encode(&tx[65..]));
        }
    }
}
