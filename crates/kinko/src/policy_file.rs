//! Reading the officer's own copy of a policy file (bounded), for the `policy`, governance and
//! `officer` commands. A leaf module.

use std::io::Read as _;
use std::path::Path;

use kinko_policy::{MAX_POLICY_BYTES, Policy};

/// Reads a policy file (at most [`MAX_POLICY_BYTES`]) and loads it.
pub(crate) fn read_policy(path: &Path) -> Result<(Policy, Vec<u8>), String> {
    let bytes = read_policy_bytes(path)?;
    let policy = Policy::from_toml(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((policy, bytes))
}

/// Reads a policy file's bytes, at most [`MAX_POLICY_BYTES`].
pub(crate) fn read_policy_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(
                u64::try_from(MAX_POLICY_BYTES)
                    .unwrap_or(u64::MAX)
                    .saturating_add(1),
            )
            .read_to_end(&mut bytes)
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(format!(
            "{}: larger than the {MAX_POLICY_BYTES}-byte limit of a policy",
            path.display()
        ));
    }
    Ok(bytes)
}
