//! Software verification of every HSM signature before it leaves the process.
//!
//! A faulty or compromised-by-bug HSM must never hand an invalid signature to a chain. ECDSA
//! signatures are normalized to low-S (BIP-62 / EIP-2), and the recovery id is read off the point
//! R that the verification equation computes anyway: R = u1·G + u2·Q, r = R.x mod n, and the
//! recovery id is the parity of R.y. No second elliptic-curve operation is needed.

use k256::elliptic_curve::ops::{MulByGeneratorVartime, Reduce};
use k256::elliptic_curve::point::AffineCoordinates;
use k256::{FieldBytes, ProjectivePoint, Scalar};

/// A verified secp256k1 ECDSA signature, normalized to low-S, with its recovery id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcdsaSignature {
    /// `r || s`, 32 bytes each, big-endian, with `s ≤ n/2`.
    pub rs: [u8; 64],
    /// The parity of R.y (0 or 1): Ethereum's `y_parity`, `v − 27`.
    pub recovery_id: u8,
}

impl EcdsaSignature {
    /// `r`.
    pub fn r(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.rs[..32]);
        out
    }
    /// `s` (low).
    pub fn s(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.rs[32..]);
        out
    }
}

/// Verifies `raw` (r || s from `CKM_ECDSA`) over `prehash` under `q`, normalizes it to low-S and
/// derives the recovery id. Returns why it failed otherwise.
pub(crate) fn finish_ecdsa(
    q: &ProjectivePoint,
    prehash: &[u8; 32],
    raw: &[u8],
) -> Result<EcdsaSignature, String> {
    let sig = k256::ecdsa::Signature::from_slice(raw).map_err(|_| {
        format!(
            "not a 64-byte r||s with 0 < r, s < n (got {} bytes)",
            raw.len()
        )
    })?;
    let sig = sig.normalize_s();
    let (r, s) = sig.split_scalars();
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*prehash));
    let s_inv = Option::<Scalar>::from(s.invert_vartime()).ok_or("s is not invertible")?;
    let u1 = z * s_inv;
    let u2 = *r * s_inv;
    let big_r = ProjectivePoint::mul_by_generator_and_mul_add_vartime(&u1, &u2, q).to_affine();
    let x = big_r.x();
    let r_bytes: FieldBytes = r.to_bytes();
    if <Scalar as Reduce<FieldBytes>>::reduce(&x) != *r {
        return Err("ECDSA verification equation does not hold".into());
    }
    if x != r_bytes {
        // R.x ≥ n: recovery ids 2/3 (probability about 2^-128). Ethereum cannot express them.
        return Err("R.x exceeds the group order; recovery id unrepresentable".into());
    }
    let mut rs = [0u8; 64];
    rs.copy_from_slice(&sig.to_bytes());
    Ok(EcdsaSignature {
        rs,
        recovery_id: u8::from(bool::from(big_r.y_is_odd())),
    })
}

/// Verifies an Ed25519 signature strictly (RFC 8032 with the small-order checks of
/// `verify_strict`).
pub(crate) fn finish_ed25519(
    vk: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    raw: &[u8],
) -> Result<[u8; 64], String> {
    let bytes: [u8; 64] = raw
        .try_into()
        .map_err(|_| format!("expected 64 bytes, got {}", raw.len()))?;
    let sig = ed25519_dalek::Signature::from_bytes(&bytes);
    vk.verify_strict(message, &sig)
        .map_err(|_| "Ed25519 verification failed".to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k256::ecdsa::{RecoveryId, SigningKey, VerifyingKey};
    use k256::elliptic_curve::scalar::IsHigh;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&FieldBytes::from([seed; 32])).unwrap()
    }

    #[test]
    fn recovery_id_matches_k256_recovery_for_high_and_low_s() {
        for i in 0u8..64 {
            let sk = key(i.wrapping_add(1));
            let q = ProjectivePoint::from(*sk.verifying_key().as_affine());
            let prehash = [i; 32];
            let (sig, _) = sk.sign_prehash_recoverable(&prehash);
            // Present both the low-S and the high-S form, as an HSM may return either.
            let (r, s) = sig.split_scalars();
            let high =
                k256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
            for raw in [sig.to_bytes().to_vec(), high.to_bytes().to_vec()] {
                let out = finish_ecdsa(&q, &prehash, &raw).unwrap();
                let norm = k256::ecdsa::Signature::from_slice(&out.rs).unwrap();
                assert!(!bool::from(norm.s().is_high()));
                let recid = RecoveryId::from_byte(out.recovery_id).unwrap();
                let recovered = VerifyingKey::recover_from_prehash(&prehash, &norm, recid).unwrap();
                assert_eq!(&recovered, sk.verifying_key());
            }
        }
    }

    #[test]
    fn bad_ecdsa_signatures_are_refused() {
        let sk = key(7);
        let q = ProjectivePoint::from(*sk.verifying_key().as_affine());
        let (sig, _) = sk.sign_prehash_recoverable(&[1; 32]);
        assert!(finish_ecdsa(&q, &[2; 32], &sig.to_bytes()).is_err());
        let mut raw = sig.to_bytes().to_vec();
        raw[40] ^= 1;
        assert!(finish_ecdsa(&q, &[1; 32], &raw).is_err());
        assert!(finish_ecdsa(&q, &[1; 32], &[0u8; 64]).is_err());
        assert!(finish_ecdsa(&q, &[1; 32], &raw[..63]).is_err());
        let other = ProjectivePoint::from(*key(8).verifying_key().as_affine());
        assert!(finish_ecdsa(&other, &[1; 32], &sig.to_bytes()).is_err());
    }

    /// RFC 8032 section 7.1, TEST 2 (one-byte message 0x72).
    #[test]
    fn ed25519_rfc8032_test_2() {
        let pk: [u8; 32] =
            hex_lit("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
        let sig = hex_lit::<64>(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        );
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
        assert_eq!(finish_ed25519(&vk, &[0x72], &sig).unwrap(), sig);
        assert!(finish_ed25519(&vk, &[0x73], &sig).is_err());
        assert!(finish_ed25519(&vk, &[0x72], &sig[..63]).is_err());
    }

    fn hex_lit<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
