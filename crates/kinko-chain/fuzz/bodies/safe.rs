//! Fuzz body for the Safe{Wallet} SafeTx typed-data decoder, shared by the `safe` cargo-fuzz target
//! and the corpus test (`tests/safe_fuzz_corpus.rs`), so the normal test run replays the
//! committed corpus.

use kinko_chain::safe::{decode, finalize};
use kinko_chain::{DecodeContext, Network, ProducedSignature, TokenRegistry};

/// The compressed public key of the secret key `0x01…01` (32 bytes).
pub(crate) const FUZZ_PUBKEY: &str =
    "031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f";

/// Decodes `data` as SafeTx typed-data JSON for chain ids 1 and 8453, and
/// finalizes it with a placeholder signature: any outcome but a panic, an intent that cannot be
/// encoded, or an accepted placeholder signature is a failure.
pub(crate) fn run(data: &[u8]) {
    let Ok(key) = hex::decode(FUZZ_PUBKEY) else {
        return;
    };
    let tokens = TokenRegistry::new();
    for name in ["1", "8453"] {
        let Ok(network) = Network::new(name) else {
            return;
        };
        let ctx = DecodeContext {
            network: &network,
            public_key: &key,
            tokens: &tokens,
        };
        if let Ok(intent) = decode(data, &ctx) {
            assert!(intent.digest().is_ok());
            assert_eq!(intent.to_sign.len(), 1);
            let sig = ProducedSignature::EcdsaSecp256k1 {
                rs: [1; 64],
                recovery_id: 0,
            };
            assert!(finalize(data, &ctx, &[sig]).is_err());
        }
    }
}
