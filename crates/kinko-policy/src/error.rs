//! The crate's error type and load diagnostics.

use std::fmt;

use serde::Serialize;

/// One problem found while loading a policy file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// 1-based line number in the policy file.
    pub line: usize,
    /// 1-based column (in characters) in that line.
    pub column: usize,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Every problem found in a policy file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Errors of the policy crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy file is not valid: every problem found, each with its line.
    #[error("the policy file is invalid ({n} problem(s)):\n{0}", n = .0.0.len())]
    Invalid(Diagnostics),
    /// The policy file is larger than [`crate::MAX_POLICY_BYTES`].
    #[error("the policy file is {0} bytes; the limit is {max} bytes", max = crate::MAX_POLICY_BYTES)]
    TooLarge(usize),
    /// An approval, request or governance message could not be encoded or decoded.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which message (`approval message`, `request signature message`).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A signature is not 64 bytes of a valid Ed25519 signature, or fails strict verification.
    #[error("the {0} signature does not verify")]
    BadSignature(&'static str),
    /// A request names a requester the policy does not list.
    #[error("requester {0:?} is not listed in the policy")]
    UnknownRequester(String),
    /// The policy denies the intent (see [`crate::Decision`] for the explanation).
    #[error("denied by policy ({code:?}): {reason}")]
    Denied {
        /// Stable code.
        code: crate::DenyCode,
        /// Why.
        reason: String,
    },
    /// The approvals do not satisfy the quorum; the text explains which counted and why others
    /// did not.
    #[error("the approval quorum is not satisfied:\n{0}")]
    QuorumNotSatisfied(String),
    /// A velocity series would exceed 2^256 − 1 base units in total.
    #[error("velocity history total overflows 256 bits for key {key:?}, asset {asset}")]
    VelocityOverflow {
        /// The signing key name.
        key: String,
        /// The asset.
        asset: String,
    },
    /// A velocity series holds more entries than [`crate::velocity::MAX_ENTRIES_PER_SERIES`].
    #[error("velocity history for key {key:?}, asset {asset} is full")]
    VelocityFull {
        /// The signing key name.
        key: String,
        /// The asset.
        asset: String,
    },
}
