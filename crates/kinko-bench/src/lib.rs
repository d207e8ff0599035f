//! `kinko-bench`: measures Kinko's whole signing path against the HSM's raw speed, in one run.
//!
//! The binary (`cargo run --release -p kinko-bench -- --help`) starts a real `kinkod` on a fresh
//! SoftHSM2 token and store, measures raw `C_Sign` on that token first, then drives the daemon
//! over gRPC with mutual TLS: requester-signed submissions, officers who decode each payload
//! themselves and sign their approvals, and the second approval that makes the daemon sign.
//! See `docs/benchmarks.md` for the command, the table and what limits throughput.
//!
//! This library holds the parts worth testing on known inputs: latency percentiles and ratios
//! ([`stats`]), the `/proc` readers ([`procfs`]), the rewrite of the development set-up's
//! policy and configuration ([`setup`]), and the targets' verdicts ([`targets`]).

#![forbid(unsafe_code)]

pub mod procfs;
pub mod setup;
pub mod stats;
pub mod targets;

/// Errors of the bench. Each says which stage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `kinkod` failed to set up, start, or answer as expected.
    #[error("kinkod: {0}")]
    Daemon(String),
    /// A gRPC call failed.
    #[error("{step}: gRPC {code:?}: {message}")]
    Rpc {
        /// The step of the withdrawal (submit, get, approve).
        step: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message (and reason code, when kinkod sent one).
        message: String,
    },
    /// The bench policy or configuration could not be written or does not load.
    #[error("configuration: {0}")]
    Config(String),
    /// A payload or approval could not be built, or the daemon's answer was not the expected one.
    #[error("workload: {0}")]
    Workload(String),
    /// A `/proc` file could not be parsed.
    #[error("/proc: {0}")]
    Proc(String),
    /// The raw `C_Sign` baseline failed.
    #[error("raw C_Sign: {0}")]
    Raw(String),
    /// The plot could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
}

impl BenchError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io {
            what: what.into(),
            source,
        }
    }
}
