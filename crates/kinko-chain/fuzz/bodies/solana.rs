//! Fuzz body for the Solana decoder (bare messages and unsigned wire transactions), shared by the `solana` cargo-fuzz target and the
//! corpus test (`tests/fuzz_corpus.rs`), so the normal test run replays the committed corpus.

use kinko_chain::{
    Chain, DecodeContext, Network, ProducedSignature, TokenRegistry, decode, finalize,
};

/// RFC 8032 section 7.1 TEST 1 public key: the fee payer of the seed messages.
pub(crate) const FUZZ_PUBKEY: &str =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// Decodes `data` as a Solana payload and finalizes it with a placeholder signature: any
/// outcome but a panic is a pass.
pub(crate) fn run(data: &[u8]) {
    let Ok(key) = hex::decode(FUZZ_PUBKEY) else {
        return;
    };
    let tokens = TokenRegistry::new();
    let Ok(network) = Network::new("mainnet-beta") else {
        return;
    };
    let ctx = DecodeContext {
        network: &network,
        public_key: &key,
        tokens: &tokens,
    };
    if let Ok(intent) = decode(Chain::Solana, data, &ctx) {
        assert!(intent.digest().is_ok());
        let sig = [ProducedSignature::Ed25519([0; 64])];
        assert!(finalize(Chain::Solana, data, &ctx, &sig).is_err());
    }
    // Also with the message's own first account key (legacy at 4..36, v0 at 5..37; in an
    // unsigned one-signature transaction, after `0x01` and a 64-byte slot, at 69..101 or
    // 70..102) as the signing key, so that arbitrary inputs reach the instruction decoding.
    for candidate in [
        data.get(4..36),
        data.get(5..37),
        data.get(69..101),
        data.get(70..102),
    ]
    .into_iter()
    .flatten()
    {
        let ctx = DecodeContext {
            network: &network,
            public_key: candidate,
            tokens: &tokens,
        };
        if let Ok(intent) = decode(Chain::Solana, data, &ctx) {
            assert!(intent.digest().is_ok());
        }
    }
}
