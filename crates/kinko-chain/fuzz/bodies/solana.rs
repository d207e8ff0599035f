//! Fuzz body for the Solana decoder (bare messages and unsigned wire transactions), shared by the `solana` cargo-fuzz target and the
//! corpus test (`tests/fuzz_corpus.rs`), so the normal test run replays the committed corpus.

use kinko_chain::{
    Chain, DecodeContext, Network, ProducedSignature, TokenRegistry, decode, finalize,
};

/// RFC 8032 section 7.1 TEST 1 public key: the fee payer of the seed messages.
pub(crate) const FUZZ_PUBKEY: &str =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// Decodes `data` as a Solana payload (a message or an unsigned transaction) and finalizes it with a placeholder signature: any
/// outcome but a panic, an intent that cannot be encoded, an accepted placeholder signature or an
/// error without a message is a pass.
#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// [`run`], saying whether `data` decoded under any of the keys tried; every refusal must be a
/// typed error with a message.
pub(crate) fn check(data: &[u8]) -> bool {
    let Ok(key) = hex::decode(FUZZ_PUBKEY) else {
        panic!("the fuzz public key is not hex");
    };
    let tokens = TokenRegistry::new();
    let Ok(network) = Network::new("mainnet-beta") else {
        panic!("network mainnet-beta is not valid");
    };
    let mut decoded = false;
    let ctx = DecodeContext {
        network: &network,
        public_key: &key,
        tokens: &tokens,
    };
    match decode(Chain::Solana, data, &ctx) {
        Ok(intent) => {
            decoded = true;
            assert!(intent.digest().is_ok());
            let sig = [ProducedSignature::Ed25519([0; 64])];
            assert!(finalize(Chain::Solana, data, &ctx, &sig).is_err());
        }
        Err(e) => assert!(!e.to_string().trim().is_empty(), "no message: {e:?}"),
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
        match decode(Chain::Solana, data, &ctx) {
            Ok(intent) => {
                decoded = true;
                assert!(intent.digest().is_ok());
            }
            Err(e) => assert!(!e.to_string().trim().is_empty(), "no message: {e:?}"),
        }
    }
    decoded
}
