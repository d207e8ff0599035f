//! solana decoding (being written).

use crate::{DecodeContext, Finalized, ProducedSignature};
use kinko_intent::Intent;

/// Why a solana payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SolanaError {
    /// Not supported yet.
    #[error("solana decoding is not available in this build")]
    Unsupported,
}

/// Decodes a solana payload.
pub fn decode(_payload: &[u8], _ctx: &DecodeContext<'_>) -> Result<Intent, SolanaError> {
    Err(SolanaError::Unsupported)
}

/// Finalizes a solana payload.
pub fn finalize(
    _payload: &[u8],
    _ctx: &DecodeContext<'_>,
    _signatures: &[ProducedSignature],
) -> Result<Finalized, SolanaError> {
    Err(SolanaError::Unsupported)
}
