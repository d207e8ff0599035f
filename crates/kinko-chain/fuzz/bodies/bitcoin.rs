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
/// any outcome but a panic, an intent that cannot be encoded, an accepted placeholder
/// signature or an error without a message is a pass.
#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// [`run`], saying whether `data` decoded on any network; every refusal must be a typed error
/// with a message.
pub(crate) fn check(data: &[u8]) -> bool {
    let Ok(key) = hex::decode(FUZZ_PUBKEY) else {
        panic!("the fuzz public key is not hex");
    };
    let mut decoded = false;
    let tokens = TokenRegistry::new();
    for name in ["bitcoin", "regtest"] {
        let Ok(network) = Network::new(name) else {
            panic!("network {name} is not valid");
        };
        let ctx = DecodeContext {
            network: &network,
            public_key: &key,
            tokens: &tokens,
        };
        match decode(Chain::Bitcoin, data, &ctx) {
            Ok(intent) => {
                decoded = true;
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
            Err(e) => assert!(!e.to_string().trim().is_empty(), "no message: {e:?}"),
        }
    }
    decoded
}
