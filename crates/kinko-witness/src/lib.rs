//! A witness for transparency logs ([C2SP tlog-witness]), and the client a log uses to ask one.
//!
//! The witness keeps, per log it knows (origin and verifier key), the latest checkpoint it
//! cosigned. An `add-checkpoint` request is decided by [`kinko_audit::witness::check`] against
//! that checkpoint and, if consistent, cosigned ([C2SP tlog-cosignature], `cosignature/v1`) and
//! stored as the new latest — the read, the check and the write in one SQLite transaction, so
//! two concurrent requests can never both extend the same checkpoint, and a cosignature is only
//! ever answered once its checkpoint is durable.
//!
//! [C2SP tlog-witness]: https://c2sp.org/tlog-witness
//! [C2SP tlog-cosignature]: https://c2sp.org/tlog-cosignature
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod server;
mod state;

pub use state::{Answer, Witness, WitnessError};
