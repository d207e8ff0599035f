//! Signing keys: loading (and, under governance, creating) the keys a policy names, and the
//! rule that no signing key may be the audit log's key.

use super::*;

/// A signing key never shares its HSM label with the audit log's key (it would sign
/// withdrawals with the key that signs the log's checkpoints, or the reverse).
pub(crate) fn check_not_log_key(
    k: &kinko_policy::KeyEntry,
    log_key_label: &str,
) -> Result<(), String> {
    if k.hsm_label == log_key_label {
        return Err(format!(
            "signing key {} uses HSM label {:?}, the audit log key's label; give it its own",
            k.name, k.hsm_label
        ));
    }
    Ok(())
}

/// Reads each signing key the policy names from the HSM, checking any pinned public key; with
/// `create_missing`, generates the keys the HSM does not have yet (returned by name).
pub(crate) async fn load_keys(
    hsm: &Hsm,
    policy: &Policy,
    create_missing: bool,
) -> Result<(HashMap<String, KeyInfo>, Vec<String>), String> {
    let mut keys = HashMap::new();
    let mut created = Vec::new();
    for k in policy.keys() {
        let pk = match hsm.public_key(&k.hsm_label).await {
            Ok(pk) => pk,
            Err(kinko_hsm::HsmError::KeyNotFound(_)) if create_missing => {
                let kind = match k.chain {
                    Chain::Solana => kinko_hsm::KeyKind::Ed25519,
                    Chain::Ethereum | Chain::Bitcoin => kinko_hsm::KeyKind::Secp256k1,
                };
                let pk = hsm.generate_key(&k.hsm_label, kind).await.map_err(|e| {
                    format!("creating key {} (HSM label {}): {e}", k.name, k.hsm_label)
                })?;
                created.push(k.name.clone());
                pk
            }
            Err(e) => {
                return Err(format!(
                    "signing key {} (HSM label {}): {e}",
                    k.name, k.hsm_label
                ));
            }
        };
        let public_key = pk.to_bytes();
        if let Some(pinned) = &k.public_key
            && *pinned != public_key
        {
            return Err(format!(
                "signing key {} (HSM label {}): the HSM holds public key {}, but the policy pins {}; refusing to use a key the officers did not approve",
                k.name,
                k.hsm_label,
                hex::encode(&public_key),
                hex::encode(pinned)
            ));
        }
        let address =
            kinko_chain::address_of(k.chain, k.network.as_str(), &public_key).unwrap_or_default();
        keys.insert(
            k.name.clone(),
            KeyInfo {
                name: k.name.clone(),
                chain: k.chain,
                network: k.network.clone(),
                hsm_label: k.hsm_label.clone(),
                public_key,
                address,
            },
        );
    }
    Ok((keys, created))
}
