//! `kinko console`: the officer's approval console in the browser, served by the officer's own
//! Kinko on localhost (docs/console.md).
//!
//! The page and its script are embedded in this binary (never fetched from the daemon or a CDN)
//! and served with a strict Content-Security-Policy and Subresource Integrity hashes. Every
//! request is fetched *raw* from kinkod with the officer's client certificate and decoded here,
//! by this process's kinko-chain, with the signing keys pinned in the officer's own copy of the
//! policy; the officer's policy is evaluated here too (address-book names, cool-downs, fee caps).
//! The page only shows what this process decoded. The approval message — the same
//! domain-separated message the CLI signs — is built here, and its SHA-256 is the WebAuthn
//! challenge the officer's passkey signs; the assertion goes to kinkod as the approval.
//!
//! Guards: the API needs the per-launch token printed at start (other local pages cannot call
//! it), a `Host` of this console (no DNS rebinding) and, for changes, this console's `Origin`;
//! the session ends after `--idle-timeout` without a call; the approve button is disabled, and
//! the API refuses, unless this console's digest and the daemon's agree.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Args;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use kinko_policy::webauthn::{Assertion, PasskeyKey};
use kinko_policy::{ApprovalMessage, Policy, Subject, Verdict};
use kinko_proto::v1 as pb;
use pb::approval_service_client::ApprovalServiceClient;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::client::Connect;

const INDEX: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

/// The Content-Security-Policy of every answer: this origin only, no inline script or style,
/// no frames, no forms, no plugins.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The most a page may send.
const MAX_BODY: usize = 16 * 1024;

/// Arguments of `kinko console`.
#[derive(Debug, Args)]
pub(crate) struct ConsoleArgs {
    #[command(flatten)]
    connect: Connect,
    /// The officer id (defaults to --as).
    #[arg(long)]
    officer: Option<String>,
    /// The officer's own copy of the policy in force: its signing keys decode the payloads, its
    /// hash is what approvals bind, its passkey entry is the officer's credential.
    #[arg(long)]
    policy: PathBuf,
    /// Where to serve the console (a loopback address).
    #[arg(long, default_value = "127.0.0.1:7390")]
    listen: SocketAddr,
    /// How long an approval stays valid, in seconds.
    #[arg(long, default_value_t = 3600)]
    valid_for: i64,
    /// The session ends after this many seconds without a call from the page.
    #[arg(long, default_value_t = 600)]
    idle_timeout: u64,
}

struct Console {
    officer: String,
    policy: Policy,
    policy_text: String,
    connect: Connect,
    origin: String,
    hosts: Vec<String>,
    token: String,
    idle: Duration,
    last_use: Mutex<Instant>,
    valid_for: i64,
    /// The approval messages this console built, by (request id, verdict): only these are sent.
    issued: Mutex<HashMap<(String, bool), Vec<u8>>>,
    /// The governance messages this console built (freeze, unfreeze, policy install), by
    /// message: their subject ids. Only these are sent.
    issued_governance: Mutex<HashMap<Vec<u8>, String>>,
}

fn sri(data: &str) -> String {
    format!(
        "sha256-{}",
        STANDARD.encode(Sha256::digest(data.as_bytes()))
    )
}

fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (k, v) in [
        ("content-type", content_type),
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    answer(
        status,
        "application/json",
        json!({ "error": message }).to_string(),
    )
}

fn ok_json(v: serde_json::Value) -> Response<Full<Bytes>> {
    answer(StatusCode::OK, "application/json", v.to_string())
}

impl Console {
    /// The request comes from this console's page: its host, and for the API its token (and
    /// for changes its origin), within the idle time.
    fn admit(
        &self,
        req: &Request<Incoming>,
        api: bool,
        change: bool,
    ) -> Result<(), (StatusCode, &'static str)> {
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.hosts.iter().any(|h| h == host) {
            return Err((StatusCode::FORBIDDEN, "not this console's host"));
        }
        if !api {
            return Ok(());
        }
        let token = req
            .headers()
            .get("x-kinko-token")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(token.as_bytes(), self.token.as_bytes()) {
            return Err((
                StatusCode::UNAUTHORIZED,
                "no valid session token: open the address kinko console printed",
            ));
        }
        if change {
            let origin = req
                .headers()
                .get(hyper::header::ORIGIN)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if origin != self.origin {
                return Err((StatusCode::FORBIDDEN, "not this console's origin"));
            }
        }
        let mut last = self
            .last_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() > self.idle {
            return Err((
                StatusCode::UNAUTHORIZED,
                "the session ended after being idle: start kinko console again",
            ));
        }
        *last = Instant::now();
        Ok(())
    }

    /// The page's assertion (base64url fields) over `message`, verified here under the
    /// officer's passkey before anything is sent.
    fn checked_assertion(
        &self,
        message: &[u8],
        authenticator_data: &str,
        client_data_json: &str,
        signature: &str,
    ) -> Result<Assertion, String> {
        let b = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| "bad base64url".to_string())
        };
        let assertion = Assertion {
            authenticator_data: b(authenticator_data)?,
            client_data_json: b(client_data_json)?,
            signature: b(signature)?,
        };
        let key = self
            .passkey()
            .ok_or("your policy lists no passkey for you")?;
        kinko_policy::webauthn::verify(key, message, &assertion)
            .map_err(|e| format!("the passkey's answer does not verify here: {e}"))?;
        Ok(assertion)
    }

    fn passkey(&self) -> Option<&PasskeyKey> {
        self.policy
            .officer(&self.officer)
            .and_then(|o| o.passkey.as_ref())
    }

    fn message(
        &self,
        req: &pb::Request,
        digest: kinko_intent::IntentDigest,
        verdict: Verdict,
    ) -> Result<Vec<u8>, String> {
        let now = jiff::Timestamp::now().as_second();
        let msg = ApprovalMessage {
            policy_hash: self.policy.hash(),
            subject: Subject::Withdrawal {
                request_id: req.request_id.clone(),
                intent_digest: digest,
            },
            officer_id: self.officer.clone(),
            verdict,
            issued_at: now,
            expires_at: now.checked_add(self.valid_for).ok_or("expiry overflows")?,
        };
        let bytes = msg.to_bytes().map_err(|e| e.to_string())?;
        self.issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                (req.request_id.clone(), verdict == Verdict::Approve),
                bytes.clone(),
            );
        Ok(bytes)
    }

    /// One pending request as the page shows it, decoded and evaluated here.
    fn view(&self, req: &pb::Request) -> serde_json::Value {
        let mut warnings = Vec::new();
        let decoded = crate::officer::decode_locally(&self.policy, req, None);
        let (intent, digest) = match decoded {
            Ok(d) => d,
            Err(e) => {
                return json!({
                    "id": req.request_id, "summary": "cannot be decoded here", "fields": [],
                    "warnings": [format!("This console cannot decode the request: {e}")],
                    "text": "", "checks": [], "rule": "-", "agree": false,
                    "digest": "-", "daemon_digest": hex::encode(&req.intent_digest),
                });
            }
        };
        let agree = crate::officer::daemon_agrees(req, &intent, &digest).unwrap_or(false);
        if !agree {
            warnings.push(format!(
                "The daemon's intent or digest differs from what this console decoded from the payload ({} here, {} from the daemon). Do not approve: something between the pipeline and you altered the request or its display.",
                digest,
                hex::encode(&req.intent_digest)
            ));
        }
        let ledger = kinko_policy::VelocityLedger::new();
        let decision = kinko_policy::evaluate(
            &self.policy,
            &intent,
            &kinko_policy::Context {
                now: jiff::Timestamp::now(),
                requester: &req.requester,
                key: &req.key_name,
                frozen: false,
                history: &ledger,
            },
        );
        if let kinko_policy::Outcome::Deny { reason, .. } = &decision.outcome {
            warnings.push(format!(
                "Your copy of the policy denies this request: {reason}"
            ));
        }
        use kinko_intent::IntentKind as K;
        match intent.kind {
            K::ContractCall | K::SafeDelegateCall | K::SafeSelfCall => warnings
                .push("A contract call: the transaction runs code, not just a transfer.".into()),
            K::TokenApprove => warnings
                .push("A token approval: it lets the spender move your tokens later.".into()),
            _ => {}
        }
        if let kinko_intent::Asset::Token {
            symbol: None,
            contract,
            ..
        } = &intent.asset
        {
            warnings.push(format!(
                "An unknown token ({contract}): not in your policy's token list, amounts have no decimals."
            ));
        }
        let saw = |cond: &str| {
            decision
                .checks
                .iter()
                .rfind(|c| c.condition == cond)
                .map(|c| c.saw.clone())
        };
        let mut fields = vec![
            (
                "Key".to_string(),
                format!("{} ({})", req.key_name, intent.chain),
            ),
            (
                "Requester".to_string(),
                format!("{} (reference {:?})", req.requester, req.reference),
            ),
            ("Asset".to_string(), intent.asset.display_symbol()),
        ];
        for (label, cond) in [
            ("Amount", "amount"),
            ("Destination", "destination"),
            ("Worst-case fee", "fee"),
        ] {
            if let Some(v) = saw(cond) {
                fields.push((label.to_string(), v));
            }
        }
        let checks: Vec<_> = decision
            .checks
            .iter()
            .map(|c| json!({ "condition": c.condition, "saw": c.saw, "passed": c.passed }))
            .collect();
        let mut messages = json!({});
        for (verdict, name) in [(Verdict::Approve, "approve"), (Verdict::Reject, "reject")] {
            if let Ok(m) = self.message(req, digest, verdict) {
                messages[name] = json!({
                    "message": hex::encode(&m),
                    "challenge": URL_SAFE_NO_PAD.encode(kinko_policy::webauthn::challenge(&m)),
                });
            }
        }
        json!({
            "id": req.request_id,
            "summary": format!("{} {}", intent.kind, intent.asset.display_symbol()),
            "fields": fields,
            "warnings": warnings,
            "text": intent.render(),
            "checks": checks,
            "rule": decision.rule.as_ref().map(|r| r.name.clone()).unwrap_or_else(|| "none".into()),
            "agree": agree,
            "digest": digest.to_string(),
            "daemon_digest": hex::encode(&req.intent_digest),
            "approve": messages["approve"],
            "reject": messages["reject"],
        })
    }

    /// A governance message for `subject` and `verdict`, kept as issued; with its challenge.
    fn governance_message(
        &self,
        subject: Subject,
        verdict: Verdict,
    ) -> Result<serde_json::Value, String> {
        let now = jiff::Timestamp::now().as_second();
        let id = subject.request_id().to_string();
        let msg = ApprovalMessage {
            policy_hash: self.policy.hash(),
            subject,
            officer_id: self.officer.clone(),
            verdict,
            issued_at: now,
            expires_at: now
                .checked_add(self.valid_for.min(1800))
                .ok_or("expiry overflows")?,
        };
        let bytes = msg.to_bytes().map_err(|e| e.to_string())?;
        self.issued_governance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(bytes.clone(), id);
        Ok(json!({
            "message": hex::encode(&bytes),
            "challenge": URL_SAFE_NO_PAD.encode(kinko_policy::webauthn::challenge(&bytes)),
        }))
    }

    /// The freeze state, with the messages for the actions it allows.
    async fn freeze_view(&self) -> Result<serde_json::Value, String> {
        let mut c =
            pb::admin_service_client::AdminServiceClient::new(self.connect.channel().await?);
        let f = c
            .get_freeze_state(pb::ListKeysRequest {})
            .await
            .map_err(crate::client::show_status)?
            .into_inner();
        let mut v = json!({
            "frozen": f.frozen,
            "frozen_by": f.frozen_by,
            "reason": f.reason,
            "unfreeze_approvals": f.unfreeze_approvals,
        });
        if !f.frozen {
            v["freeze"] = self.governance_message(
                Subject::Freeze {
                    request_id: crate::governance::random_id("freeze")?,
                },
                Verdict::Approve,
            )?;
        } else if let Ok(freeze_id) = <[u8; 32]>::try_from(f.freeze_id.as_slice()) {
            let request_id = if f.unfreeze_request_id.is_empty() {
                crate::governance::random_id("unfreeze")?
            } else {
                f.unfreeze_request_id.clone()
            };
            let subject = Subject::Unfreeze {
                request_id,
                freeze_id: kinko_policy::FreezeId(freeze_id),
            };
            v["unfreeze"] = self.governance_message(subject.clone(), Verdict::Approve)?;
            if !f.unfreeze_request_id.is_empty() {
                v["veto_unfreeze"] = self.governance_message(subject, Verdict::Reject)?;
            }
        }
        Ok(v)
    }

    /// A policy proposal as the officer reviews it: checked against the officer's policy in
    /// force, hashed here, and shown as a diff against the officer's own copy.
    async fn proposal(&self, id: &str) -> Result<serde_json::Value, String> {
        let mut c =
            pb::admin_service_client::AdminServiceClient::new(self.connect.channel().await?);
        let p = c
            .get_policy_proposal(pb::ProposalId {
                proposal_id: id.to_string(),
            })
            .await
            .map_err(crate::client::show_status)?
            .into_inner();
        if p.proposal_id != id {
            return Err(format!(
                "asked for proposal {id} but the daemon answered with {}",
                p.proposal_id
            ));
        }
        let new_hash = crate::policy::check_proposal(&p, &self.policy, p.policy_text.as_bytes())?;
        let new = Policy::from_toml(p.policy_text.as_bytes()).map_err(|e| e.to_string())?;
        let diff =
            crate::policy::change_summary(&self.policy, &self.policy_text, &new, &p.policy_text);
        let subject = Subject::InstallPolicy {
            request_id: p.proposal_id.clone(),
            new_policy_hash: new_hash,
        };
        Ok(json!({
            "id": p.proposal_id,
            "state": p.state,
            "proposed_by": p.proposed_by,
            "approvals": format!("{} of {}", p.approvals_counted, p.approvals_required),
            "policy_hash": new_hash.to_hex(),
            "diff": diff,
            "approve": self.governance_message(subject.clone(), Verdict::Approve)?,
            "veto": self.governance_message(subject, Verdict::Reject)?,
        }))
    }

    /// Sends a governance vote the page's passkey signed over a message this console built.
    async fn governance(&self, body: &[u8]) -> Result<serde_json::Value, String> {
        let (v, message) = PageVote::parse(body)?;
        let subject_id = self
            .issued_governance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&message)
            .cloned()
            .ok_or("this console did not prepare that message: reload the page")?;
        let msg = ApprovalMessage::from_bytes(&message).map_err(|e| e.to_string())?;
        let assertion = self.checked_assertion(
            &message,
            &v.authenticator_data,
            &v.client_data_json,
            &v.signature,
        )?;
        let approval = pb::GovernanceApproval {
            subject_id,
            officer_id: self.officer.clone(),
            message,
            signature: assertion.to_bytes(),
        };
        let mut c =
            pb::admin_service_client::AdminServiceClient::new(self.connect.channel().await?);
        let text = match msg.subject {
            Subject::Freeze { .. } => {
                let f = c
                    .freeze(approval)
                    .await
                    .map_err(crate::client::show_status)?
                    .into_inner();
                if f.frozen {
                    "signing is frozen".to_string()
                } else {
                    "not frozen".to_string()
                }
            }
            Subject::Unfreeze { .. } => {
                let f = c
                    .unfreeze(approval)
                    .await
                    .map_err(crate::client::show_status)?
                    .into_inner();
                format!(
                    "unfreeze: {} approval(s){}",
                    f.unfreeze_approvals,
                    if f.frozen {
                        ", still frozen"
                    } else {
                        ", not frozen"
                    }
                )
            }
            Subject::InstallPolicy { .. } => {
                let p = c
                    .approve_policy(approval)
                    .await
                    .map_err(crate::client::show_status)?
                    .into_inner();
                format!(
                    "proposal {}: {} of {} approvals, {}",
                    p.proposal_id, p.approvals_counted, p.approvals_required, p.state
                )
            }
            Subject::Withdrawal { .. } => return Err("not a governance message".into()),
        };
        Ok(json!({ "state": text }))
    }

    async fn pending(&self) -> Result<serde_json::Value, String> {
        let mut client = ApprovalServiceClient::new(self.connect.channel().await?);
        let list = client
            .list_pending(pb::ListPendingRequest {
                limit: 100,
                after_request_id: String::new(),
            })
            .await
            .map_err(crate::client::show_status)?
            .into_inner();
        let mut requests = Vec::new();
        for summary in list.requests {
            // The full request, with its raw payload.
            let req = client
                .get_request(pb::RequestId {
                    request_id: summary.request_id.clone(),
                })
                .await
                .map_err(crate::client::show_status)?
                .into_inner();
            requests.push(self.view(&req));
        }
        Ok(json!({
            "officer": self.officer,
            "policy_hash": self.policy.hash().to_hex(),
            "server": self.connect.server,
            "rp_id": "localhost",
            "passkey": self.passkey().map(|p| json!({
                "rp_id": p.rp_id,
                "credential_id": URL_SAFE_NO_PAD.encode(&p.credential_id),
            })),
            "requests": requests,
            // The freeze state comes from the admin service; without it the withdrawals still show.
            "freeze": self.freeze_view().await.unwrap_or_else(|e| json!({ "error": e })),
        }))
    }

    async fn vote(&self, body: &[u8], verdict: Verdict) -> Result<serde_json::Value, String> {
        let (v, message) = PageVote::parse(body)?;
        let request_id = v.request_id.clone().ok_or("bad request: no request_id")?;
        let issued = self
            .issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(request_id.clone(), verdict == Verdict::Approve))
            .cloned();
        if issued.as_deref() != Some(message.as_slice()) {
            return Err("this console did not prepare that message: reload the page".into());
        }
        let assertion = self.checked_assertion(
            &message,
            &v.authenticator_data,
            &v.client_data_json,
            &v.signature,
        )?;
        let mut client = ApprovalServiceClient::new(self.connect.channel().await?);
        if verdict == Verdict::Approve {
            // Decode again right before sending: the approval goes out only while this console's
            // decode and the daemon's digest agree.
            let req = client
                .get_request(pb::RequestId {
                    request_id: request_id.clone(),
                })
                .await
                .map_err(crate::client::show_status)?
                .into_inner();
            let (intent, digest) = crate::officer::decode_locally(&self.policy, &req, None)?;
            if !crate::officer::daemon_agrees(&req, &intent, &digest)? {
                return Err(
                    "the daemon's intent differs from this console's decode: NOT approved".into(),
                );
            }
        }
        let m = pb::SignedApproval {
            request_id,
            officer_id: self.officer.clone(),
            message,
            signature: assertion.to_bytes(),
        };
        let r = match verdict {
            Verdict::Approve => client.approve(m).await,
            Verdict::Reject => client.reject(m).await,
        }
        .map_err(crate::client::show_status)?
        .into_inner();
        let state = pb::RequestState::try_from(r.state)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("REQUEST_STATE_")
                    .to_lowercase()
            })
            .unwrap_or_else(|_| r.state.to_string());
        Ok(json!({ "state": state }))
    }

    fn enrolled(&self, body: &[u8]) -> Result<serde_json::Value, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Enrolled {
            credential_id: String,
            spki: String,
        }
        let e: Enrolled = serde_json::from_slice(body).map_err(|e| format!("bad request: {e}"))?;
        let spki = URL_SAFE_NO_PAD.decode(&e.spki).map_err(|_| "bad spki")?;
        let point = p256_point_of_spki(&spki)
            .ok_or("the passkey is not an ES256 (P-256) credential; Kinko needs ES256")?;
        PasskeyKey::parse_public_key(point).map_err(|e| e.to_string())?;
        let id = URL_SAFE_NO_PAD
            .decode(&e.credential_id)
            .map_err(|_| "bad credential id")?;
        Ok(json!({
            "policy_line": format!(
                "passkey = {{ public_key = \"{}\", rp_id = \"localhost\", origins = [\"{}\"], credential_id = \"{}\" }}",
                hex::encode(point),
                self.origin,
                kinko_policy::webauthn::base64url(&id)
            ),
        }))
    }
}

/// The 65-byte point of a DER SubjectPublicKeyInfo of an uncompressed P-256 key (what the
/// browser's `getPublicKey()` returns for ES256): the fixed 26-byte prefix, then the point.
fn p256_point_of_spki(spki: &[u8]) -> Option<&[u8]> {
    const PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let point = spki.strip_prefix(PREFIX.as_slice())?;
    (point.len() == 65 && point.first() == Some(&0x04)).then_some(point)
}

/// A vote the page sends: the message this console prepared (hex) and the passkey's
/// assertion over it (base64url fields); withdrawals name their request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageVote {
    #[serde(default)]
    request_id: Option<String>,
    message: String,
    authenticator_data: String,
    client_data_json: String,
    signature: String,
}

impl PageVote {
    fn parse(body: &[u8]) -> Result<(PageVote, Vec<u8>), String> {
        let v: PageVote = serde_json::from_slice(body).map_err(|e| format!("bad request: {e}"))?;
        let message = hex::decode(&v.message).map_err(|_| "bad message")?;
        Ok((v, message))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(
    c: Arc<Console>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let is_api = path.starts_with("/api/");
    let change = method == Method::POST;
    if let Err((status, why)) = c.admit(&req, is_api, change) {
        return Ok(error(status, why));
    }
    let body = if change {
        match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, "request too large")),
        }
    } else {
        Bytes::new()
    };
    let result = match (method, path.as_str()) {
        (Method::GET, "/") => {
            let page = INDEX
                .replace("{{JS_SRI}}", &sri(APP_JS))
                .replace("{{CSS_SRI}}", &sri(APP_CSS));
            return Ok(answer(StatusCode::OK, "text/html; charset=utf-8", page));
        }
        (Method::GET, "/app.js") => {
            return Ok(answer(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                APP_JS,
            ));
        }
        (Method::GET, "/app.css") => {
            return Ok(answer(StatusCode::OK, "text/css; charset=utf-8", APP_CSS));
        }
        (Method::GET, "/api/pending") => c.pending().await,
        (Method::POST, "/api/approve") => c.vote(&body, Verdict::Approve).await,
        (Method::POST, "/api/reject") => c.vote(&body, Verdict::Reject).await,
        (Method::POST, "/api/enrolled") => c.enrolled(&body),
        (Method::POST, "/api/governance") => c.governance(&body).await,
        (Method::POST, "/api/proposal") => {
            #[derive(Deserialize)]
            struct Id {
                id: String,
            }
            match serde_json::from_slice::<Id>(&body) {
                Ok(i) => c.proposal(&i.id).await,
                Err(e) => Err(format!("bad request: {e}")),
            }
        }
        _ => return Ok(error(StatusCode::NOT_FOUND, "no such page")),
    };
    Ok(match result {
        Ok(v) => ok_json(v),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e),
    })
}

/// `kinko console`.
pub(crate) async fn run(args: ConsoleArgs) -> Result<(), String> {
    if !args.listen.ip().is_loopback() {
        return Err("the console serves on a loopback address only (it holds your session)".into());
    }
    let officer = args
        .officer
        .clone()
        .or_else(|| args.connect.as_principal.clone())
        .ok_or("give --officer (your officer id)")?;
    let (policy, policy_bytes) = crate::policy_file::read_policy(&args.policy)?;
    if policy.officer(&officer).is_none() {
        return Err(format!("officer {officer:?} is not in your policy"));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", args.listen))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| format!("randomness: {e}"))?;
    let token = URL_SAFE_NO_PAD.encode(raw);
    let origin = format!("http://localhost:{port}");
    let console = Arc::new(Console {
        officer,
        policy,
        policy_text: String::from_utf8_lossy(&policy_bytes).into_owned(),
        connect: args.connect,
        hosts: vec![format!("localhost:{port}"), format!("127.0.0.1:{port}")],
        origin: origin.clone(),
        token: token.clone(),
        idle: Duration::from_secs(args.idle_timeout.max(1)),
        last_use: Mutex::new(Instant::now()),
        valid_for: args.valid_for.clamp(1, 400 * 24 * 3600),
        issued: Mutex::new(HashMap::new()),
        issued_governance: Mutex::new(HashMap::new()),
    });
    // One line for whoever started it (the browser tests read the address from it).
    println!("kinko console: open {origin}/?t={token}");
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kinko console: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let c = Arc::clone(&console);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&c), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(Duration::from_secs(300), conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_page_pins_its_assets_and_has_no_inline_script_or_third_party() {
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
        assert!(!APP_JS.contains("http://") && !APP_JS.contains("https://"));
        assert!(!APP_JS.contains("innerHTML") && !APP_JS.contains("eval("));
        assert_eq!(
            sri("abc"),
            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn an_es256_spki_yields_its_point_and_nothing_else_does() {
        let sk = p256::ecdsa::SigningKey::from_bytes(&[5u8; 32].into()).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(point.as_bytes());
        assert_eq!(p256_point_of_spki(&spki), Some(point.as_bytes()));
        spki[12] ^= 1; // another algorithm
        assert_eq!(p256_point_of_spki(&spki), None);
        assert_eq!(p256_point_of_spki(&[0x30, 0x2a]), None);
    }
}
