//! `kinko policy check|explain|show|propose|status|approve`.
//!
//! `check` and `explain` run offline on the officer's machine with kinko-policy and
//! kinko-chain, the code the daemon runs. `approve` signs the installation of a proposed
//! policy only when the proposal's text, the officer's own reviewed file and the proposal's
//! hash all agree, under the hash of the officer's own copy of the policy in force.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kinko_chain::DecodeContext;
use kinko_intent::Intent;
use kinko_policy::{Decision, EmptyHistory, Policy, PolicyHash, RuleAction, Subject, Verdict};
use kinko_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use serde::Serialize;

use crate::client::{Connect, clean, show_status};
use crate::governance::{Signer, fmt_unix, sign_governance};
use crate::policy_file::{read_policy, read_policy_bytes};

/// Exit code when a policy is invalid or an intent is denied or undecodable.
const EXIT_REFUSED: u8 = 2;
/// Exit code for unreadable input or bad arguments.
const EXIT_USAGE: u8 = 1;

/// Policy commands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Load and validate a policy file; print its hash and a summary.
    ///
    /// Exit status: 0 valid; 2 invalid (every problem is printed with its line);
    /// 1 unreadable file.
    #[command(verbatim_doc_comment)]
    Check {
        /// The policy file (TOML).
        file: PathBuf,
    },
    /// Decode a payload locally and explain the policy's decision on it.
    ///
    /// The payload is decoded with the signing key's network and the public key the policy
    /// pins, then evaluated as the daemon would with no velocity history and no freeze.
    ///
    /// Exit status: 0 allowed (with the approvals it needs); 2 denied, or refused by the
    /// decoder; 1 unreadable input or bad arguments.
    #[command(verbatim_doc_comment)]
    Explain(ExplainArgs),
    /// Print the policy in force on the daemon (its hash and text).
    Show {
        #[command(flatten)]
        connect: Connect,
        /// Write the policy text to this file (never overwritten) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Propose a new policy file (role admin). Nothing changes until officers approve it and
    /// its time-lock passes.
    Propose {
        #[command(flatten)]
        connect: Connect,
        /// The proposed policy file.
        file: PathBuf,
    },
    /// Show a policy proposal and where it stands.
    Status {
        #[command(flatten)]
        connect: Connect,
        /// The proposal id.
        id: String,
    },
    /// Approve (or veto) a policy proposal, after checking it is the file you reviewed.
    ///
    /// Refuses unless the hash of the proposal's text, the hash of your --new file and the
    /// proposal's hash are all equal, and the daemon's policy in force is your --policy.
    /// Shows what changes, asks for confirmation, then signs InstallPolicy under the hash of
    /// your --policy.
    #[command(verbatim_doc_comment)]
    Approve(ApproveArgs),
}

/// Arguments of `kinko policy explain`.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// The policy file.
    #[arg(long)]
    policy: PathBuf,
    /// The signing key's name in the policy.
    #[arg(long)]
    key: String,
    /// The requester id (default: the policy's only requester).
    #[arg(long)]
    requester: Option<String>,
    /// Evaluate at this time (RFC 3339, e.g. 2026-06-04T09:00:00Z) instead of now.
    #[arg(long)]
    at: Option<String>,
    /// The payload file holds hex text (otherwise: JSON text as is, hex text decoded, anything
    /// else raw bytes — as `kinko request submit` reads it). `-` reads standard input.
    #[arg(long)]
    hex: bool,
    /// Print the intent and the decision as JSON.
    #[arg(long)]
    json: bool,
    /// The unsigned payload.
    payload: PathBuf,
}

/// Arguments of `kinko policy approve`.
#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    #[command(flatten)]
    signer: Signer,
    /// The proposal id.
    id: String,
    /// The proposed policy file as you reviewed it.
    #[arg(long = "new")]
    new_file: PathBuf,
    /// Veto the proposal (a signed reject) instead of approving it.
    #[arg(long)]
    veto: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

/// Runs a policy command.
pub(crate) fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Check { file } => exit(check(&file).map(|s| {
            print!("{s}");
        })),
        PolicyCommand::Explain(args) => exit(explain(&args).and_then(|(out, denied)| {
            print!("{out}");
            if denied {
                Err((EXIT_REFUSED, "denied by the policy".into()))
            } else {
                Ok(())
            }
        })),
        PolicyCommand::Show { connect, out } => crate::block_on(show(connect, out)),
        PolicyCommand::Propose { connect, file } => crate::block_on(propose(connect, file)),
        PolicyCommand::Status { connect, id } => crate::block_on(status(connect, id)),
        PolicyCommand::Approve(args) => crate::block_on(approve(args)),
    }
}

fn exit(r: Result<(), (u8, String)>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("kinko policy: {msg}");
            ExitCode::from(code)
        }
    }
}

/// `kinko policy check`: the summary, or the loader's errors (each with its line).
fn check(file: &Path) -> Result<String, (u8, String)> {
    let bytes = read_policy_bytes(file).map_err(|e| (EXIT_USAGE, e))?;
    let policy = Policy::from_toml(&bytes)
        .map_err(|e| (EXIT_REFUSED, format!("{}: {e}", file.display())))?;
    Ok(summary(&policy))
}

/// A summary of a policy for people: hash, keys, officers, requesters, rules, governance.
pub(crate) fn summary(p: &Policy) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", p.summary());
    let _ = writeln!(s, "keys:");
    for k in p.keys() {
        let pin = match &k.public_key {
            Some(pk) => format!("public key pinned {}", hex::encode(pk)),
            None => "public key NOT pinned (officers' clients cannot decode for it)".into(),
        };
        let _ = writeln!(
            s,
            "  {} ({} {}, hsm label {}): {pin}",
            k.name, k.chain, k.network, k.hsm_label
        );
    }
    let _ = writeln!(s, "officers:");
    for o in p.officers() {
        let _ = writeln!(
            s,
            "  {} ({}), group {}, roles {}",
            o.id,
            o.name,
            o.group,
            o.roles.join(", ")
        );
    }
    let _ = writeln!(s, "requesters:");
    for r in p.requesters() {
        let keys = r
            .keys
            .as_ref()
            .map_or_else(|| "all keys".to_string(), |k| k.join(", "));
        let _ = writeln!(s, "  {}: {keys}", r.id);
    }
    let _ = writeln!(s, "rules (first match decides; none matching denies):");
    for r in p.rules() {
        let action = match &r.action {
            RuleAction::Deny(reason) => format!("deny: {reason}"),
            RuleAction::RequireApprovals(q) => quorum_text(q),
        };
        let _ = writeln!(s, "  {} (line {}): {action}", r.name, r.line);
    }
    let g = p.governance();
    let _ = writeln!(
        s,
        "governance: install {}, time-lock {:#}; freeze by one of [{}]; unfreeze {}, delay {:#}",
        quorum_text(&g.install.quorum),
        g.install.time_lock,
        g.freeze.roles.join(", "),
        quorum_text(&g.unfreeze.quorum),
        g.unfreeze.delay
    );
    s
}

fn quorum_text(q: &kinko_policy::QuorumRequirement) -> String {
    let mut t = format!("{} approval(s) from [{}]", q.count, q.roles.join(", "));
    if q.distinct_groups > 1 {
        let _ = write!(t, " in {} distinct groups", q.distinct_groups);
    }
    t
}

/// What `kinko policy explain --json` prints.
#[derive(Serialize)]
struct ExplainOutput<'a> {
    intent: &'a Intent,
    intent_digest: String,
    decision: &'a Decision,
}

/// `kinko policy explain`: the output and whether the intent is denied.
fn explain(a: &ExplainArgs) -> Result<(String, bool), (u8, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    let (policy, _) = read_policy(&a.policy).map_err(usage)?;
    let key = policy
        .key(&a.key)
        .ok_or_else(|| usage(format!("the policy has no signing key {:?}", a.key)))?;
    let public_key = key.public_key.as_deref().ok_or_else(|| {
        usage(format!(
            "the policy does not pin the public key of {:?}: add public_key to its [[keys]] entry",
            a.key
        ))
    })?;
    let requester = match &a.requester {
        Some(r) => r.clone(),
        None => {
            let mut all = policy.requesters();
            match (all.next(), all.next()) {
                (Some(only), None) => only.id.clone(),
                _ => {
                    return Err(usage(
                        "give --requester (the policy does not have exactly one requester)".into(),
                    ));
                }
            }
        }
    };
    let now = match &a.at {
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .map_err(|e| usage(format!("--at {t:?}: {e}")))?,
        None => jiff::Timestamp::now(),
    };
    let raw = if a.payload.as_os_str() == "-" {
        crate::request::read_limited(std::io::stdin(), "standard input")
    } else {
        std::fs::File::open(&a.payload)
            .map_err(|e| format!("{}: {e}", a.payload.display()))
            .and_then(|f| crate::request::read_limited(f, &a.payload.display().to_string()))
    }
    .map_err(usage)?;
    let payload = if a.hex {
        let text = std::str::from_utf8(&raw)
            .map_err(|_| usage("--hex: the payload file is not text".into()))?
            .trim();
        hex::decode(text.strip_prefix("0x").unwrap_or(text))
            .map_err(|e| usage(format!("--hex: {e}")))?
    } else {
        crate::request::payload_from_bytes(raw).map_err(usage)?
    };
    let ctx = DecodeContext {
        network: &key.network,
        public_key,
        tokens: policy.token_registry(),
    };
    let intent = kinko_chain::decode(key.chain, &payload, &ctx).map_err(|e| {
        (
            EXIT_REFUSED,
            format!("the decoder refuses the payload: {e}"),
        )
    })?;
    let digest = intent
        .digest()
        .map_err(|e| usage(format!("cannot encode the intent: {e}")))?;
    let decision = kinko_policy::evaluate(
        &policy,
        &intent,
        &kinko_policy::Context {
            now,
            requester: &requester,
            key: &a.key,
            frozen: false,
            history: &EmptyHistory,
        },
    );
    let out = if a.json {
        let mut j = serde_json::to_string_pretty(&ExplainOutput {
            intent: &intent,
            intent_digest: digest.to_hex(),
            decision: &decision,
        })
        .map_err(|e| usage(e.to_string()))?;
        j.push('\n');
        j
    } else {
        format!(
            "{}intent digest {digest}\nrequester {requester}, key {}; no velocity history, not frozen\n{}",
            intent.render(),
            a.key,
            decision.to_text()
        )
    };
    Ok((out, decision.is_denied()))
}

/// The hash of a policy text, loading it (an invalid text is refused).
fn hash_of(text: &[u8], what: &str) -> Result<PolicyHash, String> {
    Policy::from_toml(text)
        .map(|p| p.hash())
        .map_err(|e| format!("{what}: {e}"))
}

fn print_proposal(p: &pb::PolicyProposal) {
    println!("proposal {}  {}", clean(&p.proposal_id), clean(&p.state));
    println!("  new policy      {}", hex::encode(&p.policy_hash));
    println!("  in force now    {}", hex::encode(&p.current_policy_hash));
    println!("  proposed by     {}", clean(&p.proposed_by));
    println!(
        "  approvals       {} of {}",
        p.approvals_counted, p.approvals_required
    );
    println!("  effective at    {}", fmt_unix(p.effective_at_unix));
    if !p.status_json.is_empty() {
        println!("  status          {}", clean(&p.status_json));
    }
}

async fn show(connect: Connect, out: Option<PathBuf>) -> Result<(), String> {
    let mut c = AdminServiceClient::new(connect.channel().await?);
    let info = c
        .get_policy(pb::GetPolicyRequest {})
        .await
        .map_err(show_status)?
        .into_inner();
    let computed = PolicyHash::of_file(info.policy_text.as_bytes());
    if computed.0.as_slice() != info.policy_hash.as_slice() {
        return Err(format!(
            "the daemon says the policy in force is {}, but the text it sent hashes to {computed}",
            hex::encode(&info.policy_hash)
        ));
    }
    let installed = if info.proposal_id.is_empty() {
        "the initial policy".to_string()
    } else {
        format!(
            "installed {} by proposal {}",
            fmt_unix(info.installed_at_unix),
            clean(&info.proposal_id)
        )
    };
    match out {
        Some(path) => {
            crate::officer_key::write_new_private(&path, info.policy_text.as_bytes())
                .map_err(|e| e.to_string())?;
            println!(
                "policy {computed} ({installed}) written to {}",
                path.display()
            );
        }
        None => {
            eprintln!("policy {computed} ({installed})");
            print!("{}", clean(&info.policy_text));
        }
    }
    Ok(())
}

async fn propose(connect: Connect, file: PathBuf) -> Result<(), String> {
    let bytes = read_policy_bytes(&file)?;
    let local = hash_of(&bytes, &file.display().to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", file.display()))?;
    let mut c = AdminServiceClient::new(connect.channel().await?);
    let p = c
        .propose_policy(pb::ProposePolicyRequest { policy_text: text })
        .await
        .map_err(show_status)?
        .into_inner();
    print_proposal(&p);
    if p.policy_hash.as_slice() != local.0.as_slice() {
        return Err(format!(
            "the daemon recorded hash {} but your file is {local}",
            hex::encode(&p.policy_hash)
        ));
    }
    Ok(())
}

async fn status(connect: Connect, id: String) -> Result<(), String> {
    let mut c = AdminServiceClient::new(connect.channel().await?);
    let p = c
        .get_policy_proposal(pb::ProposalId { proposal_id: id })
        .await
        .map_err(show_status)?
        .into_inner();
    print_proposal(&p);
    Ok(())
}

/// What the officer is shown before approving: both summaries and a line diff.
pub(crate) fn change_summary(
    current: &Policy,
    current_text: &str,
    new: &Policy,
    new_text: &str,
) -> String {
    let diff = similar::TextDiff::from_lines(current_text, new_text);
    format!(
        "--- policy in force (your --policy)\n{}\n+++ proposed policy (your --new)\n{}\nchanges, line by line:\n{}",
        summary(current),
        summary(new),
        diff.unified_diff()
            .context_radius(3)
            .header("policy in force", "proposed policy")
    )
}

/// Checks a proposal against the officer's files: the proposal's text, the reviewed file and
/// the proposal's hash agree, and the policy in force is the officer's.
pub(crate) fn check_proposal(
    p: &pb::PolicyProposal,
    current: &Policy,
    new_bytes: &[u8],
) -> Result<PolicyHash, String> {
    let from_text = hash_of(p.policy_text.as_bytes(), "the proposal's policy text")?;
    let reviewed = hash_of(new_bytes, "your --new file")?;
    if from_text.0.as_slice() != p.policy_hash.as_slice() {
        return Err(format!(
            "the proposal claims hash {} but its text hashes to {from_text}: NOT signing",
            hex::encode(&p.policy_hash)
        ));
    }
    if reviewed != from_text {
        return Err(format!(
            "the proposal ({from_text}) is not the file you reviewed ({reviewed}): NOT signing"
        ));
    }
    if p.current_policy_hash.as_slice() != current.hash().0.as_slice() {
        return Err(format!(
            "the daemon's policy in force is {}, your --policy is {}: NOT signing",
            hex::encode(&p.current_policy_hash),
            current.hash()
        ));
    }
    Ok(reviewed)
}

async fn approve(a: ApproveArgs) -> Result<(), String> {
    let officer = a.signer.officer()?;
    let (current, current_bytes) = read_policy(&a.signer.policy)?;
    let new_bytes = read_policy_bytes(&a.new_file)?;
    let key = a.signer.key.load()?;
    let mut c = AdminServiceClient::new(a.signer.connect.channel().await?);
    let p = c
        .get_policy_proposal(pb::ProposalId {
            proposal_id: a.id.clone(),
        })
        .await
        .map_err(show_status)?
        .into_inner();
    if p.proposal_id != a.id {
        return Err(format!(
            "asked for proposal {} but the daemon answered with {}",
            a.id, p.proposal_id
        ));
    }
    let new_hash = check_proposal(&p, &current, &new_bytes)?;
    let new = Policy::from_toml(&new_bytes).map_err(|e| e.to_string())?;
    print!(
        "{}",
        change_summary(
            &current,
            &String::from_utf8_lossy(&current_bytes),
            &new,
            &String::from_utf8_lossy(&new_bytes)
        )
    );
    print_proposal(&p);
    let (word, verdict) = if a.veto {
        ("VETO", Verdict::Reject)
    } else {
        ("APPROVE", Verdict::Approve)
    };
    if !a.yes {
        print!("{word} installing policy {new_hash} as {officer}? type yes: ");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "yes" {
            return Err("not confirmed; nothing signed".into());
        }
    }
    let approval = sign_governance(
        &current,
        Subject::InstallPolicy {
            request_id: p.proposal_id.clone(),
            new_policy_hash: new_hash,
        },
        &officer,
        verdict,
        a.signer.valid_for,
        &key,
    )?;
    let r = c
        .approve_policy(approval)
        .await
        .map_err(show_status)?
        .into_inner();
    print_proposal(&r);
    Ok(())
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
