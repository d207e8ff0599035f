//! `kinko approve|reject ID`: the officer's side. The CLI fetches the raw payload, decodes it
//! *locally* with kinko-chain, prints what it decoded, and signs the approval over the digest it
//! computed itself — so a daemon or proxy that shows one thing and asks for another is caught.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use kinko_intent::{Intent, IntentDigest, Network};
use kinko_policy::{ApprovalMessage, Policy, SignedApproval, Subject, Verdict};
use kinko_proto::v1 as pb;
use pb::approval_service_client::ApprovalServiceClient;

use crate::client::{Connect, show_status};
use crate::officer_key::OfficerKeyArgs;

/// Arguments of approve and reject.
#[derive(Debug, Args)]
pub(crate) struct Vote {
    #[command(flatten)]
    connect: Connect,
    /// The request id.
    id: String,
    /// The officer id (defaults to --as).
    #[arg(long)]
    officer: Option<String>,
    #[command(flatten)]
    key: OfficerKeyArgs,
    /// The officer's own copy of the policy in force (its hash is what the approval binds).
    #[arg(long)]
    policy: PathBuf,
    /// How long the approval stays valid, in seconds.
    #[arg(long, default_value_t = 3600)]
    valid_for: i64,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

/// The longest approval validity the CLI signs, in seconds (400 days).
const MAX_VALID_FOR: i64 = 400 * 24 * 3600;

/// Decodes the request's raw payload here, with the network and the public key of the officer's
/// own policy (never a key the daemon reports), after checking the request was evaluated under
/// that policy — or, for a request that was pending when a new policy was installed, that the
/// policy now in force (`in_force`, as the daemon reports it) is the officer's: an approval
/// binds the officer's policy hash and counts only under that policy, so approving a request
/// submitted under the previous one is re-deciding it under the new one. Returns the intent and
/// the digest this client computed.
pub(crate) fn decode_locally(
    policy: &Policy,
    req: &pb::Request,
    in_force: Option<&[u8]>,
) -> Result<(Intent, IntentDigest), String> {
    if req.policy_hash != policy.hash().0 && in_force != Some(policy.hash().0.as_slice()) {
        return Err(format!(
            "the request was evaluated under policy {}, but your policy file is {} and is not the policy in force: refusing to sign",
            hex::encode(&req.policy_hash),
            policy.hash().to_hex()
        ));
    }
    let signing_key = policy
        .key(&req.key_name)
        .ok_or_else(|| format!("your policy has no signing key {:?}", req.key_name))?;
    // A daemon that decoded with another key would show another signer.
    let public_key = signing_key.public_key.as_deref().ok_or_else(|| {
        format!(
            "your policy does not pin the public key of signing key {:?}: add its public_key to the policy before approving",
            req.key_name
        )
    })?;
    let network: &Network = &signing_key.network;
    let ctx = kinko_chain::DecodeContext {
        network,
        public_key,
        tokens: policy.token_registry(),
    };
    let mine = kinko_chain::decode(signing_key.chain, &req.payload, &ctx)
        .map_err(|e| format!("decoding the payload locally: {e}"))?;
    let digest = mine.digest().map_err(|e| e.to_string())?;
    Ok((mine, digest))
}

/// Whether the daemon's intent and digest are exactly what this client decoded.
pub(crate) fn daemon_agrees(
    req: &pb::Request,
    mine: &Intent,
    digest: &IntentDigest,
) -> Result<bool, String> {
    let claimed: Intent =
        serde_json::from_str(&req.intent_json).map_err(|e| format!("daemon's intent: {e}"))?;
    Ok(digest.0.as_slice() == req.intent_digest.as_slice() && *mine == claimed)
}

pub(crate) async fn run(v: Vote, verdict: Verdict) -> Result<(), String> {
    let officer = v
        .officer
        .clone()
        .or_else(|| v.connect.as_principal.clone())
        .ok_or("give --officer (your officer id)")?;
    let (policy, _) = crate::policy_file::read_policy(&v.policy)?;
    let key = v.key.load()?;
    let listed = policy
        .officer(&officer)
        .ok_or_else(|| format!("officer {officer:?} is not in your policy"))?;
    if listed.public_key != Some(key.verifying_key()) {
        return Err(format!(
            "your officer key is not the key your policy lists for {officer:?}: nothing signed"
        ));
    }
    let mut client = ApprovalServiceClient::new(v.connect.channel().await?);
    let req = client
        .get_request(pb::RequestId {
            request_id: v.id.clone(),
        })
        .await
        .map_err(show_status)?
        .into_inner();
    // A request submitted before the policy in force was installed is approved under the new
    // policy (the one the approval binds): ask which policy is in force.
    let in_force = if req.policy_hash != policy.hash().0 {
        let p = pb::admin_service_client::AdminServiceClient::new(v.connect.channel().await?)
            .get_policy(pb::GetPolicyRequest {})
            .await
            .map_err(show_status)?
            .into_inner();
        if p.policy_hash == policy.hash().0 {
            println!(
                "note: the request was evaluated under policy {}; the policy in force is yours ({}), and your approval counts under it",
                hex::encode(&req.policy_hash),
                policy.hash().to_hex()
            );
        }
        Some(p.policy_hash)
    } else {
        None
    };
    let (mine, digest) = decode_locally(&policy, &req, in_force.as_deref())?;
    println!(
        "request {} from {} ({:?})",
        req.request_id, req.requester, req.reference
    );
    print!("{}", mine.render());
    println!("intent digest (computed here) {digest}");
    if !daemon_agrees(&req, &mine, &digest)? {
        return Err("the daemon's intent differs from what this client decoded from the payload: NOT signing".into());
    }
    let word = if verdict == Verdict::Approve {
        "APPROVE"
    } else {
        "REJECT"
    };
    if !v.yes {
        print!("{word} this request as {officer}? type yes: ");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "yes" {
            return Err("not confirmed; nothing signed".into());
        }
    }
    if !(1..=MAX_VALID_FOR).contains(&v.valid_for) {
        return Err(format!("--valid-for must be 1..={MAX_VALID_FOR} seconds"));
    }
    let now = jiff::Timestamp::now().as_second();
    let expires_at = now
        .checked_add(v.valid_for)
        .ok_or("the expiry time overflows")?;
    let msg = ApprovalMessage {
        policy_hash: policy.hash(),
        subject: Subject::Withdrawal {
            request_id: req.request_id.clone(),
            intent_digest: digest,
        },
        officer_id: officer.clone(),
        verdict,
        issued_at: now,
        expires_at,
    };
    let signed = SignedApproval::sign(&msg, &key).map_err(|e| e.to_string())?;
    let m = pb::SignedApproval {
        request_id: req.request_id,
        officer_id: officer,
        message: signed.message,
        signature: signed.signature.to_vec(),
    };
    let r = match verdict {
        Verdict::Approve => client.approve(m).await,
        Verdict::Reject => client.reject(m).await,
    }
    .map_err(show_status)?
    .into_inner();
    crate::request::print_request(&r);
    Ok(())
}

#[cfg(test)]
#[path = "officer_tests.rs"]
mod tests;
