//! `kinko freeze|unfreeze|freeze-status|keys`: stopping all signing (one officer), lifting the
//! stop (a quorum, then a delay), and the daemon's signing keys.
//!
//! Every governance action is an approval message signed with the officer's own key, under the
//! hash of the officer's own copy of the policy in force (docs/policy.md): the daemon verifies
//! the signature against that policy, so a stolen client certificate alone cannot freeze or
//! unfreeze.

use std::path::PathBuf;

use clap::Args;
use ed25519_dalek::SigningKey;
use kinko_policy::{ApprovalMessage, Policy, SignedApproval, Subject, Verdict};
use kinko_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;

use crate::client::{Connect, clean, show_status};
use crate::officer_key::OfficerKeyArgs;

/// The longest approval validity the CLI signs, in seconds (400 days, the policy's longest
/// duration).
const MAX_VALID_FOR: i64 = 400 * 24 * 3600;

/// What every signed governance command takes: who signs, with which key, under which policy.
#[derive(Debug, Args)]
pub(crate) struct Signer {
    #[command(flatten)]
    pub(crate) connect: Connect,
    #[command(flatten)]
    pub(crate) key: OfficerKeyArgs,
    /// Your own copy of the policy in force: its hash is what the approval binds to.
    #[arg(long)]
    pub(crate) policy: PathBuf,
    /// The officer id (defaults to --as).
    #[arg(long)]
    pub(crate) officer: Option<String>,
    /// How long the signed approval stays valid, in seconds (at most the policy allows).
    #[arg(long, default_value_t = 3600)]
    pub(crate) valid_for: i64,
}

impl Signer {
    /// The officer id.
    pub(crate) fn officer(&self) -> Result<String, String> {
        self.officer
            .clone()
            .or_else(|| self.connect.as_principal.clone())
            .ok_or_else(|| "give --officer (your officer id)".to_string())
    }
}

/// 16 random bytes, hex, after `prefix-`.
pub(crate) fn random_id(prefix: &str) -> Result<String, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("the system random generator failed: {e}"))?;
    Ok(format!("{prefix}-{}", hex::encode(b)))
}

/// Signs `subject` as `officer` under `policy`, valid from now for `valid_for` seconds.
pub(crate) fn sign_governance(
    policy: &Policy,
    subject: Subject,
    officer: &str,
    verdict: Verdict,
    valid_for: i64,
    key: &SigningKey,
) -> Result<pb::GovernanceApproval, String> {
    if !(1..=MAX_VALID_FOR).contains(&valid_for) {
        return Err(format!("--valid-for must be 1..={MAX_VALID_FOR} seconds"));
    }
    let pinned = policy
        .officer(officer)
        .ok_or_else(|| format!("officer {officer:?} is not in your policy"))?;
    if pinned.public_key != Some(key.verifying_key()) {
        return Err(format!(
            "your officer key is not the key your policy lists for {officer:?}: nothing signed"
        ));
    }
    let now = jiff::Timestamp::now().as_second();
    let expires_at = now
        .checked_add(valid_for)
        .ok_or("the expiry time overflows")?;
    let msg = ApprovalMessage {
        policy_hash: policy.hash(),
        subject: subject.clone(),
        officer_id: officer.to_string(),
        verdict,
        issued_at: now,
        expires_at,
    };
    let signed = SignedApproval::sign(&msg, key).map_err(|e| e.to_string())?;
    Ok(pb::GovernanceApproval {
        subject_id: subject.request_id().to_string(),
        officer_id: officer.to_string(),
        message: signed.message,
        signature: signed.signature.to_vec(),
    })
}

/// A unix time for people: RFC 3339, or `-` for 0.
pub(crate) fn fmt_unix(t: i64) -> String {
    if t == 0 {
        return "-".into();
    }
    jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |ts| ts.to_string())
}

/// Prints a freeze state.
pub(crate) fn print_freeze(f: &pb::FreezeState) {
    if f.frozen {
        println!("FROZEN: no signing");
        println!(
            "frozen by {} since {}",
            clean(&f.frozen_by),
            fmt_unix(f.since_unix)
        );
    } else {
        println!("not frozen");
    }
    if !f.reason.is_empty() {
        println!("reason: {}", clean(&f.reason));
    }
    if f.frozen && !f.freeze_id.is_empty() {
        println!(
            "freeze id (leaf hash of its audit record): {}",
            hex::encode(&f.freeze_id)
        );
    }
    if !f.unfreeze_request_id.is_empty() {
        println!(
            "unfreeze request {}: {} approval(s), may take effect at {}",
            clean(&f.unfreeze_request_id),
            f.unfreeze_approvals,
            fmt_unix(f.unfreeze_at_unix)
        );
    }
}

/// `kinko freeze`.
pub(crate) async fn freeze(s: Signer) -> Result<(), String> {
    let officer = s.officer()?;
    let (policy, _) = crate::policy_file::read_policy(&s.policy)?;
    let key = s.key.load()?;
    let subject = Subject::Freeze {
        request_id: random_id("freeze")?,
    };
    let approval = sign_governance(
        &policy,
        subject,
        &officer,
        Verdict::Approve,
        s.valid_for,
        &key,
    )?;
    let mut c = AdminServiceClient::new(s.connect.channel().await?);
    let f = c.freeze(approval).await.map_err(show_status)?.into_inner();
    print_freeze(&f);
    Ok(())
}

/// `kinko unfreeze`: approve (or, with `veto`, reject) the unfreeze request in progress, or
/// start one.
pub(crate) async fn unfreeze(s: Signer, veto: bool) -> Result<(), String> {
    let officer = s.officer()?;
    let (policy, _) = crate::policy_file::read_policy(&s.policy)?;
    let key = s.key.load()?;
    let mut c = AdminServiceClient::new(s.connect.channel().await?);
    let state = c
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .map_err(show_status)?
        .into_inner();
    if !state.frozen {
        print_freeze(&state);
        return Err("signing is not frozen: nothing to unfreeze, nothing signed".into());
    }
    let request_id = if state.unfreeze_request_id.is_empty() {
        if veto {
            return Err("no unfreeze request is in progress: nothing to veto".into());
        }
        random_id("unfreeze")?
    } else {
        state.unfreeze_request_id.clone()
    };
    // The approval lifts this freeze and no other: a later freeze needs a new quorum.
    let freeze_id =
        kinko_policy::FreezeId(state.freeze_id.as_slice().try_into().map_err(|_| {
            format!(
                "the daemon reports a freeze id of {} bytes, not 32; nothing signed",
                state.freeze_id.len()
            )
        })?);
    let verdict = if veto {
        Verdict::Reject
    } else {
        Verdict::Approve
    };
    println!(
        "{} unfreeze request {request_id} (lifting freeze {freeze_id}) as {officer}",
        if veto { "vetoing" } else { "approving" }
    );
    let approval = sign_governance(
        &policy,
        Subject::Unfreeze {
            request_id,
            freeze_id,
        },
        &officer,
        verdict,
        s.valid_for,
        &key,
    )?;
    let f = c
        .unfreeze(approval)
        .await
        .map_err(show_status)?
        .into_inner();
    print_freeze(&f);
    Ok(())
}

/// `kinko freeze-status`.
pub(crate) async fn freeze_status(connect: Connect) -> Result<(), String> {
    let mut c = AdminServiceClient::new(connect.channel().await?);
    let f = c
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .map_err(show_status)?
        .into_inner();
    print_freeze(&f);
    Ok(())
}

/// How a key the daemon lists compares with the officer's policy: the pinned public key, and
/// the address this client derives from it (kinko-chain) against the address the daemon shows.
/// Returns the verdict and whether it is a mismatch.
fn key_verdict(p: &Policy, k: &pb::KeyInfo) -> (String, bool) {
    let Some(entry) = p.key(&k.name) else {
        return ("NOT IN YOUR POLICY".into(), true);
    };
    let Some(pin) = entry.public_key.as_deref() else {
        return ("not pinned by your policy".into(), false);
    };
    if pin != k.public_key.as_slice() {
        return ("PUBLIC KEY DIFFERS FROM YOUR POLICY".into(), true);
    }
    match kinko_chain::address_of(entry.chain, &entry.network.to_string(), pin) {
        Ok(mine) if k.address.is_empty() || mine == k.address => {
            (format!("matches your policy (address {mine})"), false)
        }
        Ok(mine) => (
            format!("ADDRESS DIFFERS: your policy's key is at {mine}"),
            true,
        ),
        Err(e) => (format!("CANNOT DERIVE THE ADDRESS: {e}"), true),
    }
}

/// `kinko keys`: the daemon's signing keys; with `policy`, each compared with the key the
/// policy pins.
pub(crate) async fn keys(connect: Connect, policy: Option<PathBuf>) -> Result<(), String> {
    let policy = match &policy {
        Some(p) => Some(crate::policy_file::read_policy(p)?.0),
        None => None,
    };
    let mut c = AdminServiceClient::new(connect.channel().await?);
    let keys = c
        .list_keys(pb::ListKeysRequest {})
        .await
        .map_err(show_status)?
        .into_inner()
        .keys;
    let mut mismatches = 0usize;
    for k in &keys {
        let chain = pb::Chain::try_from(k.chain)
            .map(|c| c.as_str_name().trim_start_matches("CHAIN_").to_lowercase())
            .unwrap_or_else(|_| "?".into());
        let address = if k.address.is_empty() {
            "-"
        } else {
            k.address.as_str()
        };
        let mut line = clean(&format!(
            "{}  {chain} {}  public key {}  address {address}  hsm {}",
            k.name,
            k.network,
            hex::encode(&k.public_key),
            k.hsm_label
        ));
        if let Some(p) = &policy {
            let (verdict, bad) = key_verdict(p, k);
            if bad {
                mismatches = mismatches.saturating_add(1);
            }
            line.push_str("  ");
            line.push_str(&verdict);
        }
        println!("{line}");
    }
    if mismatches > 0 {
        return Err(format!(
            "{mismatches} key(s) differ from your policy or are missing from it"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "governance_tests.rs"]
mod tests;
