//! `kinko request submit|show|watch|cancel`: the withdrawal pipeline's side.

use std::path::PathBuf;

use clap::Subcommand;
use kinko_intent::Chain;
use kinko_policy::request::RequestToSign;
use kinko_proto::v1 as pb;
use pb::withdrawal_service_client::WithdrawalServiceClient;

use crate::client::{Connect, clean, read_ed25519_seed, show_status};

/// Requester commands.
#[derive(Debug, Subcommand)]
pub(crate) enum RequestCommand {
    /// Submit an unsigned payload for signing, signed with the requester system's key.
    Submit {
        #[command(flatten)]
        connect: Connect,
        /// The signing key's name in the policy.
        #[arg(long)]
        key: String,
        /// ethereum, bitcoin or solana.
        #[arg(long)]
        chain: Chain,
        /// The unsigned payload: hex (with or without 0x) or a file of raw bytes; `-` for stdin.
        #[arg(long)]
        payload: String,
        /// Same key, same request: safe to retry.
        #[arg(long)]
        idempotency_key: String,
        /// Free-text reference (e.g. the ledger's withdrawal id).
        #[arg(long, default_value = "")]
        reference: String,
        /// The requester's Ed25519 seed file (hex, mode 600).
        #[arg(long)]
        requester_key: PathBuf,
        /// The requester id in the policy (defaults to --as).
        #[arg(long)]
        requester: Option<String>,
        /// Print the request as one JSON object (docs/operations.md, "The kinko CLI").
        #[arg(long)]
        json: bool,
    },
    /// Show a request.
    Show {
        #[command(flatten)]
        connect: Connect,
        /// The request id.
        id: String,
        /// Print the request as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Follow a request until it is final.
    Watch {
        #[command(flatten)]
        connect: Connect,
        /// The request id.
        id: String,
        /// Print each state as one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending request.
    Cancel {
        #[command(flatten)]
        connect: Connect,
        /// The request id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the request as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Reads a payload argument: hex text, or a file (hex text or raw bytes), or stdin.
pub(crate) fn read_payload(arg: &str) -> Result<Vec<u8>, String> {
    let raw = if arg == "-" {
        read_limited(std::io::stdin(), "standard input")?
    } else if std::path::Path::new(arg).exists() {
        let f = std::fs::File::open(arg).map_err(|e| format!("{arg}: {e}"))?;
        read_limited(f, arg)?
    } else {
        arg.as_bytes().to_vec()
    };
    payload_from_bytes(raw)
}

/// Reads at most [`crate::intent::MAX_INPUT_LEN`] bytes.
pub(crate) fn read_limited(r: impl std::io::Read, what: &str) -> Result<Vec<u8>, String> {
    let limit = crate::intent::MAX_INPUT_LEN;
    let mut b = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            r,
            u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1),
        ),
        &mut b,
    )
    .map_err(|e| format!("{what}: {e}"))?;
    if b.len() > limit {
        return Err(format!("{what}: larger than {limit} bytes"));
    }
    Ok(b)
}

/// A payload from what was read: JSON text (EIP-712) as is, hex text (with or without 0x)
/// decoded, anything else as raw bytes.
pub(crate) fn payload_from_bytes(raw: Vec<u8>) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(&raw).ok().map(str::trim);
    match text {
        Some(t) if t.starts_with('{') => Ok(t.as_bytes().to_vec()),
        Some(t) => {
            let t = t.strip_prefix("0x").unwrap_or(t);
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()) {
                hex::decode(t).map_err(|e| format!("payload hex: {e}"))
            } else {
                Ok(raw)
            }
        }
        None => Ok(raw),
    }
}

/// A request as one JSON object, for scripts. The field names are stable: `request_id`,
/// `state` (lowercase: `received`, `pending_approval`, `approved`, `signing`, `signed`,
/// `denied`, `rejected`, `expired`, `cancelled`, `failed`), `key`, `network`, `requester`,
/// `reference`, `intent` (the decoded intent), `intent_digest` and `policy_hash` (hex), `rule`,
/// `approvals_required`, `approvals` (`officer`, `verdict`, `counts`, `note`), `reason`,
/// `transaction_id`, `signed_transaction` (0x-hex; empty until signed).
pub(crate) fn request_json(r: &pb::Request) -> serde_json::Value {
    let state = pb::RequestState::try_from(r.state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("REQUEST_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into());
    let intent: serde_json::Value =
        serde_json::from_str(&r.intent_json).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "request_id": r.request_id,
        "state": state,
        "key": r.key_name,
        "network": r.network,
        "requester": r.requester,
        "reference": r.reference,
        "intent": intent,
        "intent_digest": hex::encode(&r.intent_digest),
        "policy_hash": hex::encode(&r.policy_hash),
        "rule": r.decision.as_ref().map(|d| d.rule.clone()),
        "approvals_required": r.decision.as_ref().map(|d| d.approvals_required),
        "approvals": r.approvals.iter().map(|a| serde_json::json!({
            "officer": a.officer_id,
            "verdict": if a.verdict == pb::Verdict::Approve as i32 { "approve" } else { "reject" },
            "counts": a.counts,
            "note": a.note,
        })).collect::<Vec<_>>(),
        "reason": r.final_reason,
        "transaction_id": r.transaction_id,
        "signed_transaction": if r.signed_transaction.is_empty() {
            String::new()
        } else {
            format!("0x{}", hex::encode(&r.signed_transaction))
        },
    })
}

/// Prints a request as text, or as one JSON line.
fn show(r: &pb::Request, json: bool) {
    if json {
        println!("{}", request_json(r));
    } else {
        print_request(r);
    }
}

pub(crate) fn print_request(r: &pb::Request) {
    let state = pb::RequestState::try_from(r.state)
        .map(|s| s.as_str_name())
        .unwrap_or("?");
    println!(
        "request {}  {}",
        clean(&r.request_id),
        state.trim_start_matches("REQUEST_STATE_")
    );
    println!(
        "key {} ({}), requester {}, reference {:?}",
        clean(&r.key_name),
        clean(&r.network),
        clean(&r.requester),
        r.reference
    );
    print!("{}", clean(&r.intent_text));
    println!("intent digest {}", hex::encode(&r.intent_digest));
    if let Some(d) = &r.decision {
        println!(
            "policy rule {:?}, approvals required {}",
            clean(&d.rule),
            d.approvals_required
        );
    }
    for a in &r.approvals {
        let v = if a.verdict == pb::Verdict::Approve as i32 {
            "approved"
        } else {
            "rejected"
        };
        // Only what counts is said to count.
        if a.counts {
            println!("  {} {v} (counts)", clean(&a.officer_id));
        } else if a.note.is_empty() {
            // The request is no longer pending: nothing is counted any more.
            println!("  {} {v}", clean(&a.officer_id));
        } else {
            println!(
                "  {} {v}, does NOT count: {}",
                clean(&a.officer_id),
                clean(&a.note)
            );
        }
    }
    if !r.final_reason.is_empty() {
        println!("reason: {}", clean(&r.final_reason));
    }
    if !r.signed_transaction.is_empty() {
        println!("transaction id {}", clean(&r.transaction_id));
        println!(
            "signed transaction 0x{}",
            hex::encode(&r.signed_transaction)
        );
    }
}

/// Exit status of `request submit` and `request watch` when the request ended, or is, without
/// a signature (denied, rejected, expired, cancelled, failed): scripts must not read it as done.
pub(crate) const EXIT_NOT_SIGNED: u8 = 3;

/// Whether a request is final without a signature.
fn ended_unsigned(r: &pb::Request) -> bool {
    use pb::RequestState as S;
    matches!(
        S::try_from(r.state),
        Ok(S::Denied | S::Rejected | S::Expired | S::Cancelled | S::Failed)
    )
}

/// The exit status for a request's state after `submit` or `watch`.
fn outcome(r: &pb::Request) -> std::process::ExitCode {
    if ended_unsigned(r) {
        eprintln!(
            "kinko: request {} ended without a signature{}",
            clean(&r.request_id),
            if r.final_reason.is_empty() {
                String::new()
            } else {
                format!(": {}", clean(&r.final_reason))
            }
        );
        std::process::ExitCode::from(EXIT_NOT_SIGNED)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

pub(crate) async fn run(cmd: RequestCommand) -> Result<std::process::ExitCode, String> {
    match cmd {
        RequestCommand::Submit {
            connect,
            key,
            chain,
            payload,
            idempotency_key,
            reference,
            requester_key,
            requester,
            json,
        } => {
            let payload = read_payload(&payload)?;
            let requester = requester
                .or_else(|| connect.as_principal.clone())
                .ok_or("give --requester (the requester id in the policy)")?;
            let signing = read_ed25519_seed(&requester_key)?;
            let sig = RequestToSign {
                requester_id: &requester,
                key_name: &key,
                chain,
                idempotency_key: &idempotency_key,
                reference: &reference,
                payload: &payload,
            }
            .sign(&signing)
            .map_err(|e| e.to_string())?;
            let chain = match chain {
                Chain::Ethereum => pb::Chain::Ethereum,
                Chain::Bitcoin => pb::Chain::Bitcoin,
                Chain::Solana => pb::Chain::Solana,
            };
            let mut c = WithdrawalServiceClient::new(connect.channel().await?);
            let r = c
                .submit_withdrawal(pb::SubmitWithdrawalRequest {
                    key_name: key,
                    chain: chain as i32,
                    payload,
                    idempotency_key,
                    reference,
                    requester_signature: sig.to_vec(),
                })
                .await
                .map_err(show_status)?
                .into_inner();
            show(&r, json);
            Ok(outcome(&r))
        }
        RequestCommand::Show { connect, id, json } => {
            let mut c = WithdrawalServiceClient::new(connect.channel().await?);
            let r = c
                .get_request(pb::RequestId { request_id: id })
                .await
                .map_err(show_status)?
                .into_inner();
            show(&r, json);
            Ok(std::process::ExitCode::SUCCESS)
        }
        RequestCommand::Watch { connect, id, json } => {
            let mut c = WithdrawalServiceClient::new(connect.channel().await?);
            let mut s = c
                .watch_request(pb::RequestId { request_id: id })
                .await
                .map_err(show_status)?
                .into_inner();
            let mut last = None;
            while let Some(ev) = s.message().await.map_err(show_status)? {
                if let Some(r) = ev.request {
                    show(&r, json);
                    if !json {
                        println!();
                    }
                    last = Some(r);
                }
            }
            Ok(last.map_or(std::process::ExitCode::SUCCESS, |r| outcome(&r)))
        }
        RequestCommand::Cancel {
            connect,
            id,
            reason,
            json,
        } => {
            let mut c = WithdrawalServiceClient::new(connect.channel().await?);
            let r = c
                .cancel_request(pb::CancelRequestRequest {
                    request_id: id,
                    reason,
                })
                .await
                .map_err(show_status)?
                .into_inner();
            show(&r, json);
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// `kinko requester …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RequesterCommand {
    /// Make a new requester Ed25519 key for the withdrawal pipeline.
    ///
    /// Writes FILE (64 hex digits, mode 600, never overwrites) and prints the public key, as
    /// the policy's [[requesters]] public_key takes it. The pipeline signs every submission
    /// with it (`kinko request submit --requester-key FILE`); keep it in the pipeline's secret
    /// store, and replace it through governance if it leaks.
    #[command(verbatim_doc_comment)]
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a requester key file.
    PublicKey {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
}

/// Runs a requester key command.
pub(crate) fn run_requester(cmd: RequesterCommand) -> Result<(), String> {
    match cmd {
        RequesterCommand::Keygen { out } => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut *seed).map_err(|e| e.to_string())?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let text = zeroize::Zeroizing::new(hex::encode(*seed) + "\n");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .map_err(|e| format!("{}: {e}", out.display()))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("{}: {e}", out.display()))?;
            let pk = hex::encode(key.verifying_key().to_bytes());
            eprintln!(
                "kinko: wrote {} (mode 600). In the policy's [[requesters]]:\n  public_key = \"{pk}\"",
                out.display()
            );
            println!("{pk}");
            Ok(())
        }
        RequesterCommand::PublicKey { key } => {
            let k = crate::client::read_ed25519_seed(&key)?;
            println!("{}", hex::encode(k.verifying_key().to_bytes()));
            Ok(())
        }
    }
}
