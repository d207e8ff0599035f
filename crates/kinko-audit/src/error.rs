//! The crate's error type.

use std::path::PathBuf;

/// Errors of the audit log, its proofs, checkpoints and records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tree size beyond the current size was requested.
    #[error("tree size {requested} requested but the tree has {size} leaves")]
    TreeSize {
        /// The size asked for.
        requested: u64,
        /// The tree's size.
        size: u64,
    },
    /// A leaf index outside the tree.
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    LeafIndex {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// Two tree sizes given in the wrong order.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesOutOfOrder {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
    },
    /// An internal invariant of the tree did not hold (a bug, never input-dependent).
    #[error("internal Merkle tree invariant violated")]
    TreeInvariant,
    /// An inclusion or consistency proof does not verify.
    #[error("proof does not verify: {0}")]
    ProofInvalid(&'static str),
    /// A verifier key (`name+hash+base64`) is malformed.
    #[error("malformed verifier key: {0}")]
    VerifierKey(&'static str),
    /// A cosignature is malformed or out of range.
    #[error("malformed cosignature: {0}")]
    Cosignature(&'static str),
    /// A witness policy (C2SP tlog-policy) is malformed.
    #[error("witness policy: {0}")]
    WitnessPolicy(String),
    /// A checkpoint lacks the witness quorum of the policy.
    #[error("checkpoint of size {size} lacks the witness quorum (cosigned by {cosigned})")]
    WitnessQuorum {
        /// The checkpoint's size.
        size: u64,
        /// The policy witnesses that did cosign it.
        cosigned: String,
    },
    /// A signed note is malformed.
    #[error("malformed signed note: {0}")]
    NoteFormat(&'static str),
    /// A signed note carries no valid signature by the expected key.
    #[error("signed note has no valid signature by key {key}")]
    NoteUnsigned {
        /// The expected key's name.
        key: String,
    },
    /// A signature by the expected key name and id does not verify.
    #[error("signature by key {key} does not verify")]
    NoteBadSignature {
        /// The key's name.
        key: String,
    },
    /// A checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    CheckpointFormat(&'static str),
    /// A checkpoint's origin is not the expected one.
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    CheckpointOrigin {
        /// The origin expected.
        expected: String,
        /// The origin found.
        found: String,
    },
    /// The checkpoint signer failed (for the HSM: unavailable, or refused).
    #[error("checkpoint signer failed: {0}")]
    Signer(String),
    /// The signer returned a signature that does not verify under its own public key.
    #[error("checkpoint signer returned a signature that does not verify")]
    SignerBadSignature,
    /// A record could not be encoded or decoded.
    #[error("record encoding: {0}")]
    Record(String),
    /// A record line is longer than [`crate::record::MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An I/O operation on the log failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The log on disk is not a valid log (the daemon must not start on it).
    #[error("audit log at {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The log does not verify against its own last signed checkpoint.
    #[error("audit log does not match its last signed checkpoint: {0}")]
    CheckpointMismatch(String),
    /// Another process holds the log's lock.
    #[error("audit log at {0} is in use by another process")]
    Locked(PathBuf),
    /// The log's writer stopped after an earlier failure (a failed write or fsync leaves the
    /// file in an unknown state: the log refuses further appends until reopened).
    #[error("audit log writer has stopped after an earlier failure")]
    WriterStopped,
    /// A write failed (e.g. the disk is full) and was cut off cleanly: nothing of it is in the
    /// log, and later appends may succeed once the cause is gone.
    #[error("{0} (nothing was written; the log stays usable)")]
    Recoverable(Box<Error>),
    /// A sequence number or size counter would overflow.
    #[error("counter overflow")]
    Overflow,
}
