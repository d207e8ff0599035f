//! `kinko audit verify|prove|consistency`: the auditor's offline checks of a Kinko audit log.
//!
//! Everything here runs on the auditor's machine from a copy of the log directory and the
//! log's verifier key (obtained out of band); nothing talks to the daemon or the HSM. See
//! docs/audit.md for the procedure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use kinko_audit::note::VerifierKey;
use kinko_audit::policy_check::PolicyCheck;
use kinko_audit::verify::{VerifyOptions, consistency, prove, verify_dir};

/// Exit code when the log (or a proof) does not verify.
const EXIT_FAILED: u8 = 2;

/// Exit code for unreadable input or bad arguments.
const EXIT_USAGE: u8 = 1;

/// Largest checkpoint file accepted.
const MAX_CHECKPOINT_FILE: u64 = 64 * 1024;

/// Audit commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify a copy of the audit log: every record, the Merkle tree, every checkpoint's
    /// signature, and that every signature was authorized by a quorum under the policy in
    /// force at the time.
    ///
    /// Prints a summary (records, checkpoints, signatures, policies, officers, anomalies).
    /// Pass every checkpoint you kept from earlier audits with --checkpoint: a truncated or
    /// rewritten history is caught against them.
    ///
    /// Exit status: 0 verified; 2 verification failed (the first bad record is named);
    /// 1 unreadable directory or bad arguments.
    #[command(verbatim_doc_comment)]
    Verify {
        /// The log directory (segment-*.jsonl and checkpoints.jsonl).
        dir: PathBuf,
        /// The log's verifier key, `name+hash+base64`, obtained out of band.
        #[arg(long)]
        log_key: String,
        /// A signed checkpoint file you kept earlier (repeatable).
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
        /// Skip re-verifying approvals and quorum against the recorded policies
        /// (structural and signature checks only).
        #[arg(long)]
        no_policy_check: bool,
    },
    /// Print record SEQ with its inclusion proof in the log's latest signed checkpoint.
    Prove {
        /// The record's sequence number.
        seq: u64,
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// The log's verifier key.
        #[arg(long)]
        log_key: String,
    },
    /// Prove that checkpoint NEW extends checkpoint OLD (two signed checkpoint files you kept),
    /// from the log: fails if the history was rewritten.
    Consistency {
        /// The older signed checkpoint file.
        old: PathBuf,
        /// The newer signed checkpoint file.
        new: PathBuf,
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// The log's verifier key.
        #[arg(long)]
        log_key: String,
    },
}

fn read_checkpoint(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_CHECKPOINT_FILE {
        return Err(format!("{}: too large for a checkpoint", path.display()));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn key(s: &str) -> Result<VerifierKey, String> {
    VerifierKey::parse(s.trim()).map_err(|e| format!("--log-key: {e}"))
}

/// Runs an audit command.
pub(crate) fn run(cmd: AuditCommand) -> ExitCode {
    match run_inner(cmd) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILED),
        Err((code, msg)) => {
            eprintln!("kinko audit: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run_inner(cmd: AuditCommand) -> Result<bool, (u8, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    match cmd {
        AuditCommand::Verify {
            dir,
            log_key,
            checkpoints,
            no_policy_check,
        } => {
            let key = key(&log_key).map_err(usage)?;
            let trusted = checkpoints
                .iter()
                .map(|p| read_checkpoint(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(usage)?;
            let mut check = PolicyCheck::new();
            let options = VerifyOptions {
                trusted_checkpoints: trusted,
                authorization: if no_policy_check {
                    None
                } else {
                    Some(&mut check)
                },
                ..Default::default()
            };
            let report = verify_dir(&dir, &key, options).map_err(|e| usage(e.to_string()))?;
            println!("{report}");
            Ok(report.ok())
        }
        AuditCommand::Prove { seq, dir, log_key } => {
            let key = key(&log_key).map_err(usage)?;
            match prove(&dir, &key, seq) {
                Ok(p) => {
                    print!("{p}");
                    Ok(true)
                }
                Err(e) => Err((EXIT_FAILED, e.to_string())),
            }
        }
        AuditCommand::Consistency {
            old,
            new,
            dir,
            log_key,
        } => {
            let key = key(&log_key).map_err(usage)?;
            let old = read_checkpoint(&old).map_err(usage)?;
            let new = read_checkpoint(&new).map_err(usage)?;
            match consistency(&dir, &key, &old, &new) {
                Ok(p) => {
                    print!("{p}");
                    Ok(true)
                }
                Err(e) => Err((EXIT_FAILED, e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kinko_audit::log::{AuditLog, LogConfig};
    use kinko_audit::note::{CheckpointSigner as _, SoftwareSigner};
    use kinko_audit::record::{Event, Refusal};

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn log(name: &str) -> (TempDir, String) {
        let dir =
            std::env::temp_dir().join(format!("kinko-cli-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let signer = SoftwareSigner::from_seed(&[1; 32]);
        let key = VerifierKey::new("kinko.test/audit", &signer.public_key())
            .unwrap()
            .to_string();
        let log = AuditLog::open(&dir, LogConfig::new("kinko.test/audit"), signer).unwrap();
        for i in 0..3 {
            log.append(
                "kinkod",
                Event::Refusal(Refusal {
                    request_id: Some(format!("r{i}")),
                    code: "DENIED".into(),
                    message: "no rule matched".into(),
                }),
            )
            .unwrap();
        }
        log.checkpoint().unwrap();
        (TempDir(dir), key)
    }

    fn verify(dir: &Path, key: &str, checkpoints: Vec<PathBuf>) -> Result<bool, (u8, String)> {
        run_inner(AuditCommand::Verify {
            dir: dir.to_path_buf(),
            log_key: key.to_string(),
            checkpoints,
            no_policy_check: false,
        })
    }

    #[test]
    fn verify_prove_and_consistency_on_a_log() {
        let (dir, key) = log("ok");
        assert_eq!(verify(&dir.0, &key, vec![]), Ok(true));
        let prove = |seq| {
            run_inner(AuditCommand::Prove {
                seq,
                dir: dir.0.clone(),
                log_key: key.clone(),
            })
        };
        assert_eq!(prove(2), Ok(true));
        assert_eq!(prove(3).unwrap_err().0, EXIT_FAILED);
        // The latest checkpoint, kept by the auditor, is consistent with itself and verifies.
        let cps = std::fs::read_to_string(dir.0.join("checkpoints.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(cps.lines().last().unwrap()).unwrap();
        let kept = dir.0.join("kept.checkpoint");
        std::fs::write(&kept, last["note"].as_str().unwrap()).unwrap();
        assert_eq!(verify(&dir.0, &key, vec![kept.clone()]), Ok(true));
        let c = run_inner(AuditCommand::Consistency {
            old: kept.clone(),
            new: kept,
            dir: dir.0.clone(),
            log_key: key.clone(),
        });
        assert_eq!(c, Ok(true));
    }

    #[test]
    fn a_tampered_log_fails_and_bad_arguments_are_usage_errors() {
        let (dir, key) = log("bad");
        let seg = dir.0.join("segment-00000000000000000000.jsonl");
        let text = std::fs::read_to_string(&seg).unwrap();
        std::fs::write(&seg, text.replacen("r1", "r7", 1)).unwrap();
        assert_eq!(verify(&dir.0, &key, vec![]), Ok(false));
        assert_eq!(
            verify(&dir.0, "not a key", vec![]).unwrap_err().0,
            EXIT_USAGE
        );
        assert_eq!(
            verify(&dir.0, &key, vec![dir.0.join("missing")])
                .unwrap_err()
                .0,
            EXIT_USAGE
        );
    }
}
