//! Fuzz body for the Bitcoin PSBT decoder, shared by the `bitcoin` cargo-fuzz target and the
//! corpus test (`tests/fuzz_corpus.rs`), so the normal test run replays the committed corpus.

use kinko_chain::{
    Chain, DecodeContext, Network, ProducedSignature, TokenRegistry, decode, finalize,
};

/// The compressed public key of the secret key `0x01…01` (32 bytes): the key the seed PSBTs
/// pay from, so that mutations reach the checks past "input not of the key".
pub(crate) const FUZZ_PUBKEY: &str =
    "031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f";

/// Decodes `data` as a PSBT for every network and finalizes it with placeholder signatures:
/// any outcome but a panic is a pass.
pub(crate) fn run(data: &[u8]) {
    let Ok(key) = hex::decode(FUZZ_PUBKEY) else {
        return;
    };
    let tokens = TokenRegistry::new();
    for name in ["bitcoin", "regtest"] {
        let Ok(network) = Network::new(name) else {
            return;
        };
        let ctx = DecodeContext {
            network: &network,
            public_key: &key,
            tokens: &tokens,
        };
        if let Ok(intent) = decode(Chain::Bitcoin, data, &ctx) {
            // The canonical encoding must succeed for every intent a decoder returns.
            assert!(intent.digest().is_ok());
            let sigs = vec![
                ProducedSignature::EcdsaSecp256k1 {
                    rs: [1; 64],
                    recovery_id: 0,
                };
                intent.to_sign.len()
            ];
            assert!(finalize(Chain::Bitcoin, data, &ctx, &sigs).is_err());
        }
    }
}
