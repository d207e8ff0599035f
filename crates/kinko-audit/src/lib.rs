//! Kinko's verifiable audit log.
//!
//! * [`record`]: the typed events, one canonical JSON object per line;
//! * [`merkle`]: the RFC 6962 / RFC 9162 Merkle tree over the lines, with inclusion and
//!   consistency proofs;
//! * [`note`]: C2SP `tlog-checkpoint` checkpoints signed as C2SP `signed-note`s with Ed25519,
//!   through the [`note::CheckpointSigner`] trait (the daemon plugs its HSM key in);
//! * [`log`]: the append-only, group-committed, fsync'd log on disk;
//! * [`verify`]: the auditor's offline verifier ([`verify::verify_dir`], [`verify::prove`],
//!   [`verify::consistency`]), with the policy check of [`policy_check`] plugged in.
//!
//! See `docs/audit.md` for the formats and the auditor's procedure.

#![forbid(unsafe_code)]

pub mod cosignature;
mod error;
pub mod log;
pub mod merkle;
pub mod note;
pub mod policy_check;
pub mod record;
mod sigs;
pub mod tlog_policy;
pub mod verify;
pub mod witness;

pub use error::Error;
