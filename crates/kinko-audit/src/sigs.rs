//! Signature checks the verifier performs on recorded evidence.

use ed25519_dalek::{Signature, VerifyingKey};
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;

use kinko_intent::SigningInput;

/// Strict Ed25519 (RFC 8032) verification of `sig` over `msg` under `pk`; false on any
/// malformed input.
pub(crate) fn ed25519_valid(pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let (Ok(pk), Ok(sig)) = (<[u8; 32]>::try_from(pk), <[u8; 64]>::try_from(sig)) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    key.verify_strict(msg, &Signature::from_bytes(&sig)).is_ok()
}

/// ECDSA secp256k1 verification of `sig` (`r || s`, low-s) over the 32-byte `digest` under the
/// SEC1 public key `pk`.
pub(crate) fn secp256k1_valid(pk: &[u8], digest: &[u8], sig: &[u8]) -> bool {
    if digest.len() != 32 {
        return false;
    }
    let Ok(key) = k256::ecdsa::VerifyingKey::from_sec1_bytes(pk) else {
        return false;
    };
    let Ok(sig) = k256::ecdsa::Signature::from_slice(sig) else {
        return false;
    };
    if sig.normalize_s() != sig {
        // High-s signatures are malleable copies; Ethereum and Bitcoin refuse them.
        return false;
    }
    key.verify_prehash(digest, &sig).is_ok()
}

/// Checks that `sig` is a valid signature for the signing input, in its scheme.
pub(crate) fn signing_input_valid(input: &SigningInput, sig: &[u8]) -> Result<(), String> {
    match input {
        SigningInput::EcdsaSecp256k1 {
            digest, public_key, ..
        } => {
            let d = hex::decode(digest).map_err(|_| "signing input digest is not hex")?;
            let pk = hex::decode(public_key).map_err(|_| "signing input key is not hex")?;
            if secp256k1_valid(&pk, &d, sig) {
                Ok(())
            } else {
                Err(format!(
                    "secp256k1 signature does not verify over digest {digest} under {public_key}"
                ))
            }
        }
        SigningInput::Ed25519 {
            message,
            public_key,
            ..
        } => {
            let m = hex::decode(message).map_err(|_| "signing input message is not hex")?;
            let pk = hex::decode(public_key).map_err(|_| "signing input key is not hex")?;
            if ed25519_valid(&pk, &m, sig) {
                Ok(())
            } else {
                Err(format!(
                    "Ed25519 signature does not verify over the message under {public_key}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k256::ecdsa::signature::hazmat::PrehashSigner as _;

    #[test]
    fn secp256k1_accepts_low_s_and_refuses_high_s_and_other_digests() {
        let sk = k256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let pk = sk.verifying_key().to_sec1_point(true).as_bytes().to_vec();
        let digest = [0x42u8; 32];
        let sig: k256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
        let bytes = sig.to_bytes();
        assert!(secp256k1_valid(&pk, &digest, &bytes));
        assert!(!secp256k1_valid(&pk, &[0x43; 32], &bytes));
        assert!(!secp256k1_valid(&pk, &digest[..31], &bytes));
        // (r, n - s) verifies mathematically but is the malleated twin: refused.
        let (r, s) = sig.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert!(!secp256k1_valid(&pk, &digest, &high.to_bytes()));
        assert!(!secp256k1_valid(&pk[1..], &digest, &bytes));
    }

    #[test]
    fn ed25519_refuses_malformed_inputs() {
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let pk = sk.verifying_key().to_bytes();
        let sig = sk.sign(b"m").to_bytes();
        assert!(ed25519_valid(&pk, b"m", &sig));
        assert!(!ed25519_valid(&pk, b"n", &sig));
        assert!(!ed25519_valid(&pk[..31], b"m", &sig));
        assert!(!ed25519_valid(&pk, b"m", &sig[..63]));
    }
}
