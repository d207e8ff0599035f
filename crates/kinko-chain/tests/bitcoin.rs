//! Bitcoin PSBT decoding and finalizing: BIP-174 and BIP-143 vectors, a round trip verified by
//! libsecp256k1, and one test per refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::hashes::Hash as _;
use bitcoin::psbt::{Psbt, PsbtSighashType};
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    Address, Amount as BtcAmount, CompressedPublicKey, NetworkKind, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Txid, Witness, absolute, transaction,
};
use k256::ecdsa::SigningKey;
use kinko_chain::bitcoin::{BitcoinError, parse_psbt};
use kinko_chain::{ChainError, DecodeContext, ProducedSignature, decode, finalize};
use kinko_intent::{Amount, Chain, FeeDetail, IntentKind, Network, SigningInput, TokenRegistry};

/// BIP-143 "Native P2WPKH" example: the private key of the P2WPKH input (input 1).
const BIP143_PRIVKEY: &str = "619c335025c7f4012e556c2a58b2506e30b8511b53ade95ea316fd8c3286feb9";
const BIP143_PUBKEY: &str = "025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357";
const BIP143_UNSIGNED_TX: &str = "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac11000000";
const BIP143_SIGHASH_1: &str = "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670";
/// The BIP's signature for input 1 (DER + SIGHASH_ALL byte); RFC 6979 makes it reproducible.
const BIP143_SIG_1: &str = "304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a0220573a954c4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee01";

/// A test key (not from any standard; any scalar works).
const TEST_PRIVKEY: &str = "0101010101010101010101010101010101010101010101010101010101010101";

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/bitcoin")
}

fn read_vectors(name: &str) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(vectors_dir().join(name)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (n, h) = l.split_once(' ').unwrap();
            (n.to_string(), hex::decode(h.trim()).unwrap())
        })
        .collect()
}

struct Key {
    sk: SigningKey,
    pk: CompressedPublicKey,
    sec1: Vec<u8>,
}

fn key(secret_hex: &str) -> Key {
    let sk = SigningKey::from_slice(&hex::decode(secret_hex).unwrap()).unwrap();
    let sec1 = sk.verifying_key().to_sec1_point(true).as_bytes().to_vec();
    let pk = CompressedPublicKey::from_slice(&sec1).unwrap();
    Key { sk, pk, sec1 }
}

fn p2wpkh(pk: &CompressedPublicKey) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&pk.wpubkey_hash())
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

fn outpoint(n: u8, vout: u32) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([n; 32]),
        vout,
    }
}

/// A PSBT spending `inputs` (outpoint, sats) of `k`'s P2WPKH to `outputs`.
fn psbt_for(k: &Key, inputs: &[(OutPoint, u64)], outputs: &[(ScriptBuf, u64)]) -> Psbt {
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: inputs
            .iter()
            .map(|(op, _)| TxIn {
                previous_output: *op,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs
            .iter()
            .map(|(s, v)| TxOut {
                value: BtcAmount::from_sat(*v),
                script_pubkey: s.clone(),
            })
            .collect(),
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    for (input, (_, v)) in psbt.inputs.iter_mut().zip(inputs) {
        input.witness_utxo = Some(TxOut {
            value: BtcAmount::from_sat(*v),
            script_pubkey: p2wpkh(&k.pk),
        });
    }
    psbt
}

/// A third party's P2WPKH script (key 0x02…).
fn other_script() -> ScriptBuf {
    p2wpkh(&key("0202020202020202020202020202020202020202020202020202020202020202").pk)
}

fn standard_psbt(k: &Key) -> Psbt {
    psbt_for(
        k,
        &[(outpoint(1, 0), 50_000), (outpoint(2, 3), 70_000)],
        &[(other_script(), 100_000), (p2wpkh(&k.pk), 19_000)],
    )
}

fn bitcoin_err(r: Result<impl std::fmt::Debug, ChainError>) -> BitcoinError {
    match r {
        Err(ChainError::Bitcoin(e)) => e,
        other => panic!("expected a Bitcoin error, got {other:?}"),
    }
}

fn sign_all(k: &Key, to_sign: &[SigningInput]) -> Vec<ProducedSignature> {
    to_sign
        .iter()
        .map(|s| {
            let SigningInput::EcdsaSecp256k1 { digest, .. } = s else {
                panic!("expected ECDSA input")
            };
            let (sig, rid) = k.sk.sign_prehash_recoverable(&hex::decode(digest).unwrap());
            let mut rs = [0u8; 64];
            rs.copy_from_slice(sig.to_bytes().as_slice());
            ProducedSignature::EcdsaSecp256k1 {
                rs,
                recovery_id: rid.to_byte(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// BIP-174 vectors
// ---------------------------------------------------------------------------------------------

/// Every invalid PSBT of BIP-174's test vectors is refused as malformed, with a typed error.
#[test]
fn bip174_invalid_vectors_are_refused() {
    let vectors = read_vectors("bip174_invalid.txt");
    assert_eq!(vectors.len(), 19);
    let k = key(TEST_PRIVKEY);
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    for (name, bytes) in vectors {
        assert!(parse_psbt(&bytes).is_err(), "{name} parsed");
        match bitcoin_err(decode(Chain::Bitcoin, &bytes, &ctx(&net, &k.sec1, &tokens))) {
            BitcoinError::Psbt(_) => {}
            other => panic!("{name}: expected a malformed-PSBT error, got {other:?}"),
        }
    }
}

/// Every valid PSBT of BIP-174's test vectors parses; Kinko then refuses it for its own rules
/// (the inputs are not the signing key's P2WPKH outputs), never as malformed.
#[test]
fn bip174_valid_vectors_parse() {
    let vectors = read_vectors("bip174_valid.txt");
    assert_eq!(vectors.len(), 6);
    let k = key(TEST_PRIVKEY);
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    for (name, bytes) in vectors {
        parse_psbt(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let err = bitcoin_err(decode(Chain::Bitcoin, &bytes, &ctx(&net, &k.sec1, &tokens)));
        assert!(
            !matches!(err, BitcoinError::Psbt(_) | BitcoinError::TrailingBytes(_)),
            "{name}: refused as malformed: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// BIP-143
// ---------------------------------------------------------------------------------------------

/// The BIP-143 "Native P2WPKH" transaction as a PSBT. Input 1 is the BIP's P2WPKH input
/// (6 BTC); input 0 (a P2PK input in the BIP) is given the same key's P2WPKH script so that the
/// whole PSBT is Kinko's to sign. A BIP-143 sighash commits to the spent input's own amount and
/// script only, so input 1's sighash is the BIP's.
fn bip143_psbt() -> (Key, Psbt) {
    let k = key(BIP143_PRIVKEY);
    assert_eq!(hex::encode(&k.sec1), BIP143_PUBKEY);
    let tx: Transaction =
        bitcoin::consensus::deserialize(&hex::decode(BIP143_UNSIGNED_TX).unwrap()).unwrap();
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    let script = ScriptBuf::from_hex("00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1").unwrap();
    assert_eq!(script, p2wpkh(&k.pk));
    psbt.inputs[0].witness_utxo = Some(TxOut {
        value: BtcAmount::from_sat(625_000_000),
        script_pubkey: script.clone(),
    });
    psbt.inputs[1].witness_utxo = Some(TxOut {
        value: BtcAmount::from_sat(600_000_000),
        script_pubkey: script,
    });
    (k, psbt)
}

#[test]
fn bip143_native_p2wpkh_sighash_and_signature() {
    let (k, psbt) = bip143_psbt();
    let bytes = psbt.serialize();
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &k.sec1, &tokens);
    let intent = decode(Chain::Bitcoin, &bytes, &c).unwrap();
    assert_eq!(intent.to_sign.len(), 2);
    assert_eq!(
        intent.to_sign[1],
        SigningInput::EcdsaSecp256k1 {
            digest: BIP143_SIGHASH_1.to_string(),
            public_key: BIP143_PUBKEY.to_string(),
            index: 1,
        }
    );
    // Outputs as in the BIP: 1.1234 and 2.2345 BTC to two P2PKH scripts.
    assert_eq!(intent.transfers.len(), 2);
    assert_eq!(intent.transfers[0].amount, Amount::from_u64(112_340_000));
    assert_eq!(intent.transfers[1].amount, Amount::from_u64(223_450_000));
    assert!(intent.transfers.iter().all(|t| !t.change));
    assert_eq!(
        intent.fee.max,
        Amount::from_u64(625_000_000 + 600_000_000 - 112_340_000 - 223_450_000)
    );

    // Signing with RFC 6979 reproduces the BIP's signature for input 1.
    let sigs = sign_all(&k, &intent.to_sign);
    let fin = finalize(Chain::Bitcoin, &bytes, &c, &sigs).unwrap();
    let tx: Transaction = bitcoin::consensus::deserialize(&fin.signed).unwrap();
    let w: Vec<&[u8]> = tx.input[1].witness.iter().collect();
    assert_eq!(hex::encode(w[0]), BIP143_SIG_1);
    assert_eq!(hex::encode(w[1]), BIP143_PUBKEY);
}

/// The worked example of `docs/intents.md`: the committed PSBT (base64) decodes to exactly the
/// committed canonical intent, whose digest is `SHA-256("kinko/intent/v1\n" || json)` — the
/// digest file was checked with Python's `hashlib`, independently of this crate.
#[test]
fn worked_example_of_the_docs() {
    use base64::Engine as _;
    let dir = vectors_dir();
    let b64 = std::fs::read_to_string(dir.join("bip143_example.psbt.base64")).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    // It is the BIP-143 PSBT built above.
    assert_eq!(bytes, bip143_psbt().1.serialize());
    let canonical = std::fs::read(dir.join("bip143_example.intent.canonical.json")).unwrap();
    let digest = std::fs::read_to_string(dir.join("bip143_example.intent.digest")).unwrap();
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    let pk = hex::decode(BIP143_PUBKEY).unwrap();
    let intent = decode(Chain::Bitcoin, &bytes, &ctx(&net, &pk, &tokens)).unwrap();
    assert_eq!(intent.canonical_bytes().unwrap(), canonical);
    assert_eq!(intent.digest().unwrap().to_hex(), digest.trim());
}

// ---------------------------------------------------------------------------------------------
// A real mainnet transaction
// ---------------------------------------------------------------------------------------------

/// Mainnet transaction 5d6bf535… (see the vector file): its witnesses stripped and its spent
/// amounts added as `witness_utxo` give a PSBT whose intent shows the known sender, recipient,
/// amount and fee; the on-chain signatures verify (libsecp256k1) against Kinko's sighashes, and
/// finalizing with them rebuilds exactly the on-chain bytes and txid.
#[test]
fn mainnet_p2wpkh_transaction() {
    let text = std::fs::read_to_string(vectors_dir().join("mainnet_p2wpkh_5d6bf535.txt")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap()
    };
    let signed = hex::decode(field("signed_tx ")).unwrap();
    let values: Vec<u64> = field("input_values ")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let onchain: Transaction = bitcoin::consensus::deserialize(&signed).unwrap();
    assert_eq!(
        onchain.compute_txid().to_string(),
        "5d6bf53576a54be4d92cd8abf58d28ecc9ea7956eaf970d24d6bfcb9fcfe9855"
    );

    // The key and signatures as they appear in the witnesses.
    let witness_key = onchain.input[0].witness.nth(1).unwrap().to_vec();
    let pk = CompressedPublicKey::from_slice(&witness_key).unwrap();
    let mut unsigned = onchain.clone();
    for txin in &mut unsigned.input {
        txin.witness = Witness::new();
    }
    let mut psbt = Psbt::from_unsigned_tx(unsigned).unwrap();
    for (input, v) in psbt.inputs.iter_mut().zip(&values) {
        input.witness_utxo = Some(TxOut {
            value: BtcAmount::from_sat(*v),
            script_pubkey: p2wpkh(&pk),
        });
    }
    let bytes = psbt.serialize();
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &witness_key, &tokens);
    let intent = decode(Chain::Bitcoin, &bytes, &c).unwrap();
    assert_eq!(
        intent.signer.as_str(),
        "bc1qvrt7ukvhvmdny0a3j9k8l8jasx92lrqm30t2u2"
    );
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(
        intent.transfers[0].to.as_str(),
        "bc1q2dsdlq3343vk29runkgv4yc292hmq53jedfjmp"
    );
    assert_eq!(intent.transfers[0].amount, Amount::from_u64(28_035));
    assert!(!intent.transfers[0].change);
    assert_eq!(intent.fee.max, Amount::from_u64(7_097));
    // Both on-chain signatures are 72 bytes with the sighash byte: the estimate is exact.
    assert!(matches!(
        intent.fee.detail,
        FeeDetail::Bitcoin { vsize: 178, .. }
    ));

    // The on-chain signatures verify against Kinko's digests, and re-finalize to the same bytes.
    let secp = Secp256k1::verification_only();
    let mut sigs = Vec::new();
    for (txin, to_sign) in onchain.input.iter().zip(&intent.to_sign) {
        let SigningInput::EcdsaSecp256k1 { digest, .. } = to_sign else {
            panic!("expected ECDSA")
        };
        let sig = bitcoin::ecdsa::Signature::from_slice(txin.witness.nth(0).unwrap()).unwrap();
        let msg = Message::from_digest(hex::decode(digest).unwrap().try_into().unwrap());
        secp.verify_ecdsa(&msg, &sig.signature, &pk.0).unwrap();
        sigs.push(ProducedSignature::EcdsaSecp256k1 {
            rs: sig.signature.serialize_compact(),
            recovery_id: 0,
        });
    }
    let fin = finalize(Chain::Bitcoin, &bytes, &c, &sigs).unwrap();
    assert_eq!(fin.signed, signed);
    assert_eq!(
        fin.id,
        "5d6bf53576a54be4d92cd8abf58d28ecc9ea7956eaf970d24d6bfcb9fcfe9855"
    );
}

/// A real mainnet PSBT with an OP_RETURN memo (see the vector file) is refused at the memo.
#[test]
fn mainnet_op_return_psbt_is_refused() {
    let text =
        std::fs::read_to_string(vectors_dir().join("mainnet_op_return_634a416e.txt")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| hex::decode(v.trim()).unwrap()))
            .unwrap()
    };
    let (key, psbt) = (field("key "), field("psbt "));
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    let err = bitcoin_err(decode(Chain::Bitcoin, &psbt, &ctx(&net, &key, &tokens)));
    assert!(
        matches!(err, BitcoinError::UnsupportedOutputScript { index: 1, .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------------------------

/// decode → sign with k256 in software → finalize → verify every witness signature with
/// libsecp256k1 (the `bitcoin` crate's `secp256k1`) against the BIP-143 sighash recomputed with
/// `SighashCache` from the *extracted* transaction and the known prevouts.
#[test]
fn round_trip_verified_by_libsecp256k1() {
    let k = key(TEST_PRIVKEY);
    let psbt = standard_psbt(&k);
    let prevouts: Vec<TxOut> = psbt
        .inputs
        .iter()
        .map(|i| i.witness_utxo.clone().unwrap())
        .collect();
    let bytes = psbt.serialize();
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &k.sec1, &tokens);
    let intent = decode(Chain::Bitcoin, &bytes, &c).unwrap();

    // The intent.
    assert_eq!(intent.kind, IntentKind::Transfer);
    assert_eq!(
        intent.signer.as_str(),
        Address::p2wpkh(&k.pk, bitcoin::Network::Bitcoin).to_string()
    );
    assert!(intent.signer.as_str().starts_with("bc1q"));
    assert_eq!(intent.transfers.len(), 2);
    assert_eq!(intent.transfers[0].amount, Amount::from_u64(100_000));
    assert!(!intent.transfers[0].change);
    assert_eq!(
        intent.transfers[0].to.as_str(),
        Address::from_script(&other_script(), bitcoin::Network::Bitcoin)
            .unwrap()
            .to_string()
    );
    assert!(intent.transfers[1].change);
    assert_eq!(intent.transfers[1].to, intent.signer);
    assert_eq!(intent.fee.max, Amount::from_u64(1_000));
    assert_eq!(
        intent.replay_keys,
        vec![
            format!("outpoint:{}:0", Txid::from_byte_array([1; 32])),
            format!("outpoint:{}:3", Txid::from_byte_array([2; 32])),
        ]
    );

    let sigs = sign_all(&k, &intent.to_sign);
    let fin = finalize(Chain::Bitcoin, &bytes, &c, &sigs).unwrap();

    // Independent path: parse the broadcast bytes, recompute the sighashes, verify.
    let tx: Transaction = bitcoin::consensus::deserialize(&fin.signed).unwrap();
    assert_eq!(fin.id, tx.compute_txid().to_string());
    let secp = Secp256k1::verification_only();
    let mut cache = SighashCache::new(&tx);
    for (i, (txin, prevout)) in tx.input.iter().zip(&prevouts).enumerate() {
        assert!(txin.script_sig.is_empty());
        let items: Vec<&[u8]> = txin.witness.iter().collect();
        assert_eq!(items.len(), 2);
        let sig = bitcoin::ecdsa::Signature::from_slice(items[0]).unwrap();
        assert_eq!(sig.sighash_type, EcdsaSighashType::All);
        let pk = bitcoin::PublicKey::from_slice(items[1]).unwrap();
        assert_eq!(
            ScriptBuf::new_p2wpkh(&pk.wpubkey_hash().unwrap()),
            prevout.script_pubkey
        );
        let sighash = cache
            .p2wpkh_signature_hash(
                i,
                &prevout.script_pubkey,
                prevout.value,
                EcdsaSighashType::All,
            )
            .unwrap();
        let msg = Message::from_digest(sighash.to_byte_array());
        // libsecp256k1 refuses high-S signatures: this also checks the low-S normalization.
        secp.verify_ecdsa(&msg, &sig.signature, &pk.inner).unwrap();
    }

    // The size estimate is an upper bound, off by at most one vbyte per input (71- vs 72-byte
    // signatures weigh a quarter vbyte each).
    let FeeDetail::Bitcoin { vsize, sat_per_kvb } = intent.fee.detail else {
        panic!("expected Bitcoin fee detail")
    };
    let actual = tx.vsize() as u64;
    assert!(vsize >= actual && vsize - actual <= tx.input.len() as u64);
    assert_eq!(sat_per_kvb, 1_000 * 1000 / vsize);
}

/// The same PSBT renders addresses of the configured network.
#[test]
fn addresses_follow_the_configured_network() {
    let k = key(TEST_PRIVKEY);
    let bytes = standard_psbt(&k).serialize();
    let tokens = TokenRegistry::new();
    for (name, prefix) in [
        ("bitcoin", "bc1q"),
        ("testnet", "tb1q"),
        ("testnet4", "tb1q"),
        ("signet", "tb1q"),
        ("regtest", "bcrt1q"),
    ] {
        let net = Network::new(name).unwrap();
        let intent = decode(Chain::Bitcoin, &bytes, &ctx(&net, &k.sec1, &tokens)).unwrap();
        assert!(intent.signer.as_str().starts_with(prefix), "{name}");
        assert!(
            intent
                .transfers
                .iter()
                .all(|t| t.to.as_str().starts_with(prefix))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

fn refuse(k: &Key, psbt: &Psbt) -> BitcoinError {
    refuse_bytes(k, &psbt.serialize(), "bitcoin")
}

fn refuse_bytes(k: &Key, bytes: &[u8], network: &str) -> BitcoinError {
    let net = Network::new(network).unwrap();
    let tokens = TokenRegistry::new();
    bitcoin_err(decode(Chain::Bitcoin, bytes, &ctx(&net, &k.sec1, &tokens)))
}

#[test]
fn refuses_missing_witness_utxo() {
    let k = key(TEST_PRIVKEY);
    let mut psbt = standard_psbt(&k);
    psbt.inputs[1].witness_utxo = None;
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::MissingWitnessUtxo { index: 1 }
    ));
}

#[test]
fn refuses_sighash_other_than_all() {
    let k = key(TEST_PRIVKEY);
    for ty in [
        EcdsaSighashType::None,
        EcdsaSighashType::Single,
        EcdsaSighashType::AllPlusAnyoneCanPay,
    ] {
        let mut psbt = standard_psbt(&k);
        psbt.inputs[0].sighash_type = Some(PsbtSighashType::from(ty));
        match refuse(&k, &psbt) {
            BitcoinError::SighashNotAll { index: 0, sighash } => assert_eq!(sighash, ty.to_u32()),
            other => panic!("{other:?}"),
        }
    }
    // An explicit SIGHASH_ALL is accepted.
    let mut psbt = standard_psbt(&k);
    psbt.inputs[0].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::All));
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    decode(
        Chain::Bitcoin,
        &psbt.serialize(),
        &ctx(&net, &k.sec1, &tokens),
    )
    .unwrap();
}

#[test]
fn refuses_taproot_inputs_and_says_why() {
    let k = key(TEST_PRIVKEY);
    // A P2TR witness_utxo.
    let mut psbt = standard_psbt(&k);
    let secp = Secp256k1::verification_only();
    let (xonly, _) = k.pk.0.x_only_public_key();
    let p2tr = ScriptBuf::new_p2tr(&secp, xonly, None);
    psbt.inputs[0].witness_utxo = Some(TxOut {
        value: BtcAmount::from_sat(50_000),
        script_pubkey: p2tr,
    });
    let err = refuse(&k, &psbt);
    assert!(matches!(err, BitcoinError::TaprootInput { index: 0 }));
    assert!(err.to_string().contains("BIP-340"), "{err}");
    // Taproot fields on an otherwise P2WPKH input.
    let mut psbt = standard_psbt(&k);
    psbt.inputs[1].tap_internal_key = Some(xonly);
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::TaprootInput { index: 1 }
    ));
}

#[test]
fn refuses_wrong_network() {
    let k = key(TEST_PRIVKEY);
    // A testnet extended key in a PSBT decoded for mainnet.
    let mut psbt = standard_psbt(&k);
    let secp = Secp256k1::new();
    let xpriv = Xpriv::new_master(NetworkKind::Test, &[7u8; 32]).unwrap();
    let xpub = Xpub::from_priv(&secp, &xpriv);
    psbt.xpub
        .insert(xpub, (xpriv.fingerprint(&secp), "m".parse().unwrap()));
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::WrongNetwork { .. }
    ));
    // The same PSBT is fine on testnet.
    let net = Network::new("testnet").unwrap();
    let tokens = TokenRegistry::new();
    decode(
        Chain::Bitcoin,
        &psbt.serialize(),
        &ctx(&net, &k.sec1, &tokens),
    )
    .unwrap();
    // An unknown network name.
    assert!(matches!(
        refuse_bytes(&k, &standard_psbt(&k).serialize(), "mainnet"),
        BitcoinError::UnknownNetwork(_)
    ));
}

#[test]
fn refuses_inputs_not_of_the_key() {
    let k = key(TEST_PRIVKEY);
    let mut psbt = standard_psbt(&k);
    psbt.inputs[1].witness_utxo.as_mut().unwrap().script_pubkey = other_script();
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::ForeignInput { index: 1 }
    ));
    // Wrapped (P2SH-P2WPKH) or script spends are not native P2WPKH.
    let mut psbt = standard_psbt(&k);
    psbt.inputs[0].redeem_script = Some(p2wpkh(&k.pk));
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::UnexpectedInputField { index: 0, .. }
    ));
}

#[test]
fn refuses_outputs_exceeding_inputs() {
    let k = key(TEST_PRIVKEY);
    let psbt = psbt_for(&k, &[(outpoint(1, 0), 10_000)], &[(other_script(), 10_001)]);
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::OutputsExceedInputs {
            inputs: 10_000,
            outputs: 10_001
        }
    ));
}

#[test]
fn refuses_amounts_over_max_money() {
    let k = key(TEST_PRIVKEY);
    let psbt = psbt_for(
        &k,
        &[(outpoint(1, 0), 21_000_000 * 100_000_000 + 1)],
        &[(other_script(), 1)],
    );
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::AmountOutOfRange { .. }
    ));
}

#[test]
fn refuses_mismatched_non_witness_utxo() {
    let k = key(TEST_PRIVKEY);
    // A previous transaction whose output 0 is the witness_utxo, spent at its real txid…
    let prev = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![],
        output: vec![TxOut {
            value: BtcAmount::from_sat(50_000),
            script_pubkey: p2wpkh(&k.pk),
        }],
    };
    let op = OutPoint {
        txid: prev.compute_txid(),
        vout: 0,
    };
    let mut psbt = psbt_for(&k, &[(op, 50_000)], &[(other_script(), 49_000)]);
    psbt.inputs[0].non_witness_utxo = Some(prev.clone());
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    decode(
        Chain::Bitcoin,
        &psbt.serialize(),
        &ctx(&net, &k.sec1, &tokens),
    )
    .unwrap();
    // …but a witness_utxo claiming a smaller amount than the real output is refused.
    psbt.inputs[0].witness_utxo.as_mut().unwrap().value = BtcAmount::from_sat(49_500);
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::NonWitnessUtxoMismatch { index: 0 }
    ));
}

#[test]
fn refuses_unaddressable_outputs() {
    let k = key(TEST_PRIVKEY);
    let op_return = ScriptBuf::new_op_return([1u8, 2, 3]);
    let psbt = psbt_for(&k, &[(outpoint(1, 0), 10_000)], &[(op_return, 0)]);
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::UnsupportedOutputScript { index: 0, .. }
    ));
}

#[test]
fn refuses_uncompressed_and_invalid_keys() {
    let k = key(TEST_PRIVKEY);
    let bytes = standard_psbt(&k).serialize();
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    let uncompressed =
        k.sk.verifying_key()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec();
    assert!(matches!(
        bitcoin_err(decode(
            Chain::Bitcoin,
            &bytes,
            &ctx(&net, &uncompressed, &tokens)
        )),
        BitcoinError::UncompressedPublicKey
    ));
    let garbage = [2u8; 33];
    let r = decode(Chain::Bitcoin, &bytes, &ctx(&net, &garbage, &tokens));
    let is_invalid_key = matches!(
        r,
        Err(ChainError::Bitcoin(
            BitcoinError::InvalidPublicKey(_) | BitcoinError::ForeignInput { .. }
        ))
    );
    assert!(is_invalid_key, "{r:?}");
}

#[test]
fn refuses_trailing_bytes_duplicates_and_finalized_inputs() {
    let k = key(TEST_PRIVKEY);
    let mut bytes = standard_psbt(&k).serialize();
    bytes.push(0);
    assert!(matches!(
        refuse_bytes(&k, &bytes, "bitcoin"),
        BitcoinError::TrailingBytes(1)
    ));

    let psbt = psbt_for(
        &k,
        &[(outpoint(1, 0), 10_000), (outpoint(1, 0), 10_000)],
        &[(other_script(), 1_000)],
    );
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::DuplicateInput { index: 1 }
    ));

    let mut psbt = standard_psbt(&k);
    psbt.inputs[0].final_script_witness = Some(Witness::from_slice(&[[1u8; 72].as_slice()]));
    assert!(matches!(
        refuse(&k, &psbt),
        BitcoinError::AlreadyFinalized { index: 0 }
    ));
}

#[test]
fn finalize_refuses_bad_signatures() {
    let k = key(TEST_PRIVKEY);
    let bytes = standard_psbt(&k).serialize();
    let net = Network::new("bitcoin").unwrap();
    let tokens = TokenRegistry::new();
    let c = ctx(&net, &k.sec1, &tokens);
    let intent = decode(Chain::Bitcoin, &bytes, &c).unwrap();
    let mut sigs = sign_all(&k, &intent.to_sign);

    // Too few.
    assert!(matches!(
        bitcoin_err(finalize(Chain::Bitcoin, &bytes, &c, &sigs[..1])),
        BitcoinError::SignatureCount {
            expected: 2,
            got: 1
        }
    ));
    // Swapped: each signature is over the other input's sighash.
    sigs.swap(0, 1);
    assert!(matches!(
        bitcoin_err(finalize(Chain::Bitcoin, &bytes, &c, &sigs)),
        BitcoinError::InvalidSignature { index: 0 }
    ));
    // Wrong scheme.
    let ed = vec![ProducedSignature::Ed25519([0; 64]); 2];
    assert!(matches!(
        bitcoin_err(finalize(Chain::Bitcoin, &bytes, &c, &ed)),
        BitcoinError::WrongSignatureScheme { index: 0 }
    ));
}

// ---------------------------------------------------------------------------------------------
// Fuzz seeds
// ---------------------------------------------------------------------------------------------

/// Writes a seed file named by the SHA-256 of its content (as libFuzzer names corpus files).
fn write_seed(dir: &str, bytes: &[u8]) {
    use sha2::Digest as _;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let name = hex::encode(sha2::Sha256::digest(bytes));
    std::fs::write(dir.join(&name[..40]), bytes).unwrap();
}

/// Regenerates the committed seed corpus of the `bitcoin` fuzz target:
/// `cargo test -p kinko-chain --test bitcoin -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files; run by hand to regenerate fuzz/corpus/bitcoin"]
fn write_fuzz_seeds() {
    let k = key(TEST_PRIVKEY);
    // The fuzz body signs with this key.
    assert_eq!(
        hex::encode(&k.sec1),
        "031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f"
    );
    for name in ["bip174_invalid.txt", "bip174_valid.txt"] {
        for (_, bytes) in read_vectors(name) {
            write_seed("bitcoin", &bytes);
        }
    }
    write_seed("bitcoin", &bip143_psbt().1.serialize());
    let psbt = standard_psbt(&k);
    write_seed("bitcoin", &psbt.serialize());
    let mut p = psbt.clone();
    p.inputs[0].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::All));
    write_seed("bitcoin", &p.serialize());
    let mut p = psbt.clone();
    let secp = Secp256k1::new();
    let xpriv = Xpriv::new_master(NetworkKind::Main, &[7u8; 32]).unwrap();
    p.xpub.insert(
        Xpub::from_priv(&secp, &xpriv),
        (xpriv.fingerprint(&secp), "m/84'/0'/0'".parse().unwrap()),
    );
    write_seed("bitcoin", &p.serialize());
    let p = psbt_for(
        &k,
        &[(outpoint(1, 0), 10_000)],
        &[
            (ScriptBuf::new_op_return([1u8, 2, 3]), 0),
            (other_script(), 9_000),
        ],
    );
    write_seed("bitcoin", &p.serialize());
    let prev = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![],
        output: vec![TxOut {
            value: BtcAmount::from_sat(50_000),
            script_pubkey: p2wpkh(&k.pk),
        }],
    };
    let op = OutPoint {
        txid: prev.compute_txid(),
        vout: 0,
    };
    let mut p = psbt_for(&k, &[(op, 50_000)], &[(other_script(), 49_000)]);
    p.inputs[0].non_witness_utxo = Some(prev);
    write_seed("bitcoin", &p.serialize());
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest::proptest! {
    /// Any single-byte change of a valid PSBT decodes to an intent or a typed error; an intent
    /// always has one digest per input and fee = inputs − outputs.
    #[test]
    fn mutated_psbts_never_panic(pos in 0usize..400, byte in 0u8..=255) {
        let k = key(TEST_PRIVKEY);
        let mut bytes = standard_psbt(&k).serialize();
        let at = pos % bytes.len();
        bytes[at] = byte;
        let net = Network::new("bitcoin").unwrap();
        let tokens = TokenRegistry::new();
        if let Ok(intent) = decode(Chain::Bitcoin, &bytes, &ctx(&net, &k.sec1, &tokens)) {
            let psbt = parse_psbt(&bytes).unwrap();
            proptest::prop_assert_eq!(intent.to_sign.len(), psbt.unsigned_tx.input.len());
            let ins: u64 = psbt.inputs.iter().map(|i| i.witness_utxo.as_ref().unwrap().value.to_sat()).sum();
            let outs: u64 = psbt.unsigned_tx.output.iter().map(|o| o.value.to_sat()).sum();
            proptest::prop_assert_eq!(intent.fee.max, Amount::from_u64(ins - outs));
        }
    }
}
