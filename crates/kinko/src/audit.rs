//! `kinko audit fetch|verify|prove|check-proof|consistency`: the auditor's copy of a Kinko audit log and
//! its offline checks.
//!
//! `fetch` is the only command that talks to the daemon: it copies the records and the latest
//! signed checkpoint into a new directory, in the log's own layout, without checking anything.
//! Everything else runs on the auditor's machine from that copy and the log's verifier key
//! (obtained out of band); nothing trusts the daemon or the HSM. See docs/audit.md for the
//! procedure.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use kinko_audit::log::CHECKPOINTS_FILE;
use kinko_audit::note::Checkpoint;
use kinko_audit::note::VerifierKey;
use kinko_audit::policy_check::PolicyCheck;
use kinko_audit::record::MAX_RECORD_LEN;
use kinko_audit::tlog_policy::WitnessPolicy;
use kinko_audit::verify::{
    InclusionProof, VerifyOptions, consistency, prove, prove_witnessed, signature_record,
    verify_dir, verify_inclusion_proof, verify_witnessed_inclusion_proof,
};
use kinko_proto::v1 as pb;
use pb::audit_service_client::AuditServiceClient;

/// Exit code when the log (or a proof) does not verify.
const EXIT_FAILED: u8 = 2;

/// Exit code for unreadable input or bad arguments.
const EXIT_USAGE: u8 = 1;

/// Largest checkpoint file accepted.
const MAX_CHECKPOINT_FILE: u64 = 64 * 1024;

/// Where `fetch` writes the latest signed checkpoint alone, to keep for later audits
/// (`--checkpoint`) and consistency proofs.
pub(crate) const FETCHED_CHECKPOINT_FILE: &str = "checkpoint.note";

/// Audit commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Copy the audit log from kinkod (role auditor) into a new directory, for `audit verify`.
    ///
    /// Takes the latest signed checkpoint, then streams the records it covers from sequence 0,
    /// and writes them in the log's own layout (segment-00000000000000000000.jsonl and
    /// checkpoints.jsonl), plus checkpoint.note (the signed checkpoint alone, to keep and pass
    /// with --checkpoint to later audits). Nothing is checked here: run `kinko audit verify`.
    /// Refuses a directory that is not empty.
    ///
    /// With --witnessed: the newest checkpoint the witness quorum cosigned (with the
    /// cosignatures) and the records it covers, for `verify --witness-policy`.
    #[command(verbatim_doc_comment)]
    Fetch {
        #[command(flatten)]
        connect: crate::client::Connect,
        /// The directory to write (created if missing; must be empty).
        #[arg(long)]
        out: PathBuf,
        /// Fetch up to the newest checkpoint cosigned by the witness quorum.
        #[arg(long)]
        witnessed: bool,
    },
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
        /// Your witness policy (C2SP tlog-policy): every record must be covered by a
        /// checkpoint cosigned by its quorum of witnesses (docs/witness.md).
        #[arg(long)]
        witness_policy: Option<PathBuf>,
    },
    /// Print record SEQ (or the signature record of --request) with its inclusion proof in
    /// the log's latest signed checkpoint — with --witness-policy, in the newest checkpoint
    /// cosigned by its quorum — and with --bundle write it as a proof bundle for one
    /// withdrawal, which `kinko audit check-proof` verifies alone.
    Prove {
        /// The record's sequence number.
        #[arg(required_unless_present = "request", conflicts_with = "request")]
        seq: Option<u64>,
        /// Prove the `signature_produced` record of this request instead.
        #[arg(long)]
        request: Option<String>,
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// The log's verifier key.
        #[arg(long)]
        log_key: String,
        /// Prove against a checkpoint cosigned by this witness policy's quorum.
        #[arg(long)]
        witness_policy: Option<PathBuf>,
        /// Write the proof bundle (JSON) to this new file.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Verify a proof bundle written by `prove --bundle`: the checkpoint's signature by the
    /// log key, the record's inclusion, and with --witness-policy the witness quorum.
    /// Prints the record. Exit status as for verify.
    CheckProof {
        /// The bundle file.
        bundle: PathBuf,
        /// The log's verifier key.
        #[arg(long)]
        log_key: String,
        /// Require the checkpoint to be cosigned by this witness policy's quorum.
        #[arg(long)]
        witness_policy: Option<PathBuf>,
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
    read_limited(path, MAX_CHECKPOINT_FILE)
}

fn read_limited(path: &Path, max: u64) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > max {
        return Err(format!(
            "{}: too large ({} bytes, at most {max})",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn witness_policy(path: &Path) -> Result<WitnessPolicy, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > kinko_audit::tlog_policy::MAX_POLICY_LEN as u64 {
        return Err(format!(
            "{}: too large for a witness policy",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let p = WitnessPolicy::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if p.requires_nothing() {
        return Err(format!(
            "{}: `quorum none` requires no witness; leave --witness-policy out instead",
            path.display()
        ));
    }
    Ok(p)
}

fn key(s: &str) -> Result<VerifierKey, String> {
    VerifierKey::parse(s.trim()).map_err(|e| format!("--log-key: {e}"))
}

/// Runs an audit command.
pub(crate) fn run(cmd: AuditCommand) -> ExitCode {
    if let AuditCommand::Fetch {
        connect,
        out,
        witnessed,
    } = cmd
    {
        return crate::block_on(fetch(connect, out, witnessed));
    }
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
        AuditCommand::Fetch { .. } => Err(usage("fetch runs on its own".into())),
        AuditCommand::Verify {
            dir,
            log_key,
            checkpoints,
            no_policy_check,
            witness_policy: wp,
        } => {
            let key = key(&log_key).map_err(usage)?;
            let wp = wp
                .as_deref()
                .map(witness_policy)
                .transpose()
                .map_err(usage)?;
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
                witness_policy: wp.as_ref(),
                ..Default::default()
            };
            let report = verify_dir(&dir, &key, options).map_err(|e| usage(e.to_string()))?;
            println!("{report}");
            Ok(report.ok())
        }
        AuditCommand::Prove {
            seq,
            request,
            dir,
            log_key,
            witness_policy: wp,
            bundle,
        } => {
            let key = key(&log_key).map_err(usage)?;
            let wp = wp
                .as_deref()
                .map(witness_policy)
                .transpose()
                .map_err(usage)?;
            let seq = match (seq, request) {
                (Some(s), _) => s,
                (None, Some(r)) => {
                    signature_record(&dir, &r).map_err(|e| (EXIT_FAILED, e.to_string()))?
                }
                (None, None) => return Err(usage("give SEQ or --request".into())),
            };
            let proved = match &wp {
                Some(p) => prove_witnessed(&dir, &key, seq, p),
                None => prove(&dir, &key, seq),
            };
            match proved {
                Ok(p) => {
                    print!("{p}");
                    if let Some(path) = bundle {
                        write_synced(&path, format!("{}\n", p.to_bundle()).as_bytes())
                            .map_err(usage)?;
                        eprintln!("proof bundle written to {}", path.display());
                    }
                    Ok(true)
                }
                Err(e) => Err((EXIT_FAILED, e.to_string())),
            }
        }
        AuditCommand::CheckProof {
            bundle,
            log_key,
            witness_policy: wp,
        } => {
            let key = key(&log_key).map_err(usage)?;
            let wp = wp
                .as_deref()
                .map(witness_policy)
                .transpose()
                .map_err(usage)?;
            let text = read_limited(&bundle, (MAX_RECORD_LEN as u64) * 3 + MAX_CHECKPOINT_FILE)
                .map_err(usage)?;
            let p = InclusionProof::from_bundle(&text).map_err(|e| (EXIT_FAILED, e.to_string()))?;
            let checked = match &wp {
                Some(policy) => verify_witnessed_inclusion_proof(&key, policy, &p),
                None => verify_inclusion_proof(&key, &p),
            };
            match checked {
                Ok(cp) => {
                    println!(
                        "record {} is in the log's checkpoint of size {}{}",
                        p.seq,
                        cp.size,
                        if wp.is_some() {
                            ", cosigned by the witness quorum"
                        } else {
                            ""
                        }
                    );
                    println!("{}", p.line);
                    Ok(true)
                }
                Err(e) => Err((EXIT_FAILED, format!("the proof does not verify: {e}"))),
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

/// Creates `dir` if missing; refuses anything but an empty directory.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!("{shown}: not empty; fetch into a new directory"));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{shown}: {e}"))
        }
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// The size a signed checkpoint claims, read without verifying it (verification is
/// `audit verify`'s job, with the key obtained out of band).
fn claimed_size(note: &str) -> Result<u64, String> {
    let (body, _) = note
        .split_once("\n\n")
        .ok_or("the daemon's checkpoint is not a signed note")?;
    Checkpoint::parse_text(&format!("{body}\n"))
        .map(|cp| cp.size)
        .map_err(|e| format!("the daemon's checkpoint: {e}"))
}

fn create_file(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write_synced(path: &Path, contents: &[u8]) -> Result<(), String> {
    let mut f = create_file(path)?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `kinko audit fetch`.
async fn fetch(
    connect: crate::client::Connect,
    out: PathBuf,
    witnessed: bool,
) -> Result<(), String> {
    prepare_dir(&out)?;
    let mut client = AuditServiceClient::new(connect.channel().await?);
    // The checkpoint first: the records it covers are already in the log, so the stream
    // below always reaches its size.
    let cp = client
        .latest_checkpoint(pb::CheckpointRequest { witnessed })
        .await
        .map_err(crate::client::show_status)?
        .into_inner();
    let size = claimed_size(&cp.signed_note)?;
    let seg_path = out.join(format!("segment-{:020}.jsonl", 0));
    let mut seg = std::io::BufWriter::new(create_file(&seg_path)?);
    let mut stream = client
        .stream_records(pb::StreamRecordsRequest { from_sequence: 0 })
        .await
        .map_err(crate::client::show_status)?
        .into_inner();
    let mut n: u64 = 0;
    let werr = |e: std::io::Error| format!("{}: {e}", seg_path.display());
    while n < size {
        let Some(rec) = stream.message().await.map_err(crate::client::show_status)? else {
            break;
        };
        if rec.sequence != n {
            return Err(format!(
                "the daemon sent record {} where record {n} was expected",
                rec.sequence
            ));
        }
        if rec.json.len() > MAX_RECORD_LEN || rec.json.contains('\n') {
            return Err(format!(
                "record {n} from the daemon is not one line of at most {MAX_RECORD_LEN} bytes"
            ));
        }
        seg.write_all(rec.json.as_bytes()).map_err(werr)?;
        seg.write_all(b"\n").map_err(werr)?;
        n = n.checked_add(1).ok_or("record count overflows")?;
    }
    drop(stream);
    if n < size {
        return Err(format!(
            "the daemon's checkpoint covers {size} records but it sent only {n}"
        ));
    }
    let seg = seg
        .into_inner()
        .map_err(|e| format!("{}: {}", seg_path.display(), e.error()))?;
    seg.sync_all().map_err(werr)?;
    let line = serde_json::json!({ "note": cp.signed_note }).to_string();
    write_synced(&out.join(CHECKPOINTS_FILE), format!("{line}\n").as_bytes())?;
    write_synced(
        &out.join(FETCHED_CHECKPOINT_FILE),
        cp.signed_note.as_bytes(),
    )?;
    std::fs::File::open(&out)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "fetched {n} records and the signed checkpoint covering them into {}",
        out.display()
    );
    println!(
        "not verified yet: run `kinko audit verify {} --log-key <the log key you hold>`; keep {} for --checkpoint next time",
        out.display(),
        out.join(FETCHED_CHECKPOINT_FILE).display()
    );
    Ok(())
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
            witness_policy: None,
        })
    }

    #[test]
    fn verify_prove_and_consistency_on_a_log() {
        let (dir, key) = log("ok");
        assert_eq!(verify(&dir.0, &key, vec![]), Ok(true));
        let prove = |seq| {
            run_inner(AuditCommand::Prove {
                seq: Some(seq),
                request: None,
                dir: dir.0.clone(),
                log_key: key.clone(),
                witness_policy: None,
                bundle: None,
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
    fn fetch_reads_the_size_of_a_signed_checkpoint_and_wants_an_empty_directory() {
        let (dir, _) = log("fetch");
        let cps = std::fs::read_to_string(dir.0.join("checkpoints.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(cps.lines().last().unwrap()).unwrap();
        assert_eq!(claimed_size(last["note"].as_str().unwrap()), Ok(3));
        assert!(claimed_size("kinko.test/audit\n3\n").is_err());
        assert!(claimed_size("kinko.test/audit\nthree\nAAAA\n\n— sig\n").is_err());
        // The log directory is not empty; a new one is created; an empty one is fine.
        assert!(prepare_dir(&dir.0).unwrap_err().contains("not empty"));
        let fresh = dir.0.join("copy/nested");
        prepare_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
        prepare_dir(&fresh).unwrap();
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
