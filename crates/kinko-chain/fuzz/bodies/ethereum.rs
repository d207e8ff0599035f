//! Fuzz body for the Ethereum transaction decoder, shared by the `ethereum` cargo-fuzz target
//! and the corpus test (`tests/ethereum_fuzz_corpus.rs`), so the normal test run replays the
//! committed corpus.

use kinko_chain::ethereum::{decode, finalize};
use kinko_chain::{DecodeContext, Network, ProducedSignature, TokenRegistry};

/// The compressed public key of the secret key `0x01…01` (32 bytes).
pub(crate) const FUZZ_PUBKEY: &str =
    "031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f";

/// Decodes `data` as an unsigned Ethereum transaction for chain ids 1 and 11155111, and
/// finalizes it with a placeholder signature: any outcome but a panic, an intent that cannot be
/// encoded, an accepted placeholder signature or an error without a message is a failure.
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
    for name in ["1", "11155111"] {
        let Ok(network) = Network::new(name) else {
            panic!("network {name} is not valid");
        };
        let ctx = DecodeContext {
            network: &network,
            public_key: &key,
            tokens: &tokens,
        };
        match decode(data, &ctx) {
            Ok(intent) => {
                decoded = true;
                assert!(intent.digest().is_ok());
                assert_eq!(intent.to_sign.len(), 1);
                let sig = ProducedSignature::EcdsaSecp256k1 {
                    rs: [1; 64],
                    recovery_id: 0,
                };
                assert!(finalize(data, &ctx, &[sig]).is_err());
            }
            Err(e) => assert!(!e.to_string().trim().is_empty(), "no message: {e:?}"),
        }
    }
    decoded
}
