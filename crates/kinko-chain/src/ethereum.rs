//! ethereum decoding (being written).

use crate::{DecodeContext, Finalized, ProducedSignature};
use kinko_intent::Intent;

/// Why a ethereum payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EthereumError {
    /// Not supported yet.
    #[error("ethereum decoding is not available in this build")]
    Unsupported,
}

/// Decodes a ethereum payload.
pub fn decode(_payload: &[u8], _ctx: &DecodeContext<'_>) -> Result<Intent, EthereumError> {
    Err(EthereumError::Unsupported)
}

/// Finalizes a ethereum payload.
pub fn finalize(
    _payload: &[u8],
    _ctx: &DecodeContext<'_>,
    _signatures: &[ProducedSignature],
) -> Result<Finalized, EthereumError> {
    Err(EthereumError::Unsupported)
}
