//! bitcoin decoding (being written).

use crate::{DecodeContext, Finalized, ProducedSignature};
use kinko_intent::Intent;

/// Why a bitcoin payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BitcoinError {
    /// Not supported yet.
    #[error("bitcoin decoding is not available in this build")]
    Unsupported,
}

/// Decodes a bitcoin payload.
pub fn decode(_payload: &[u8], _ctx: &DecodeContext<'_>) -> Result<Intent, BitcoinError> {
    Err(BitcoinError::Unsupported)
}

/// Finalizes a bitcoin payload.
pub fn finalize(
    _payload: &[u8],
    _ctx: &DecodeContext<'_>,
    _signatures: &[ProducedSignature],
) -> Result<Finalized, BitcoinError> {
    Err(BitcoinError::Unsupported)
}
