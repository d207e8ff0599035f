//! safe decoding (being written).

use crate::{DecodeContext, Finalized, ProducedSignature};
use kinko_intent::Intent;

/// Why a safe payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SafeError {
    /// Not supported yet.
    #[error("safe decoding is not available in this build")]
    Unsupported,
}

/// Decodes a safe payload.
pub fn decode(_payload: &[u8], _ctx: &DecodeContext<'_>) -> Result<Intent, SafeError> {
    Err(SafeError::Unsupported)
}

/// Finalizes a safe payload.
pub fn finalize(
    _payload: &[u8],
    _ctx: &DecodeContext<'_>,
    _signatures: &[ProducedSignature],
) -> Result<Finalized, SafeError> {
    Err(SafeError::Unsupported)
}

/// Whether the payload is JSON typed data (starts with `{` after whitespace) rather than
/// transaction bytes.
pub fn looks_like_typed_data(payload: &[u8]) -> bool {
    payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}
