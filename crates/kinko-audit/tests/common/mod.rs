//! Shared test fixtures: a log signer, officers and an HSM key held in software (these are the
//! signer trait's software implementation and real keys, not mocks of the HSM), and a
//! withdrawal flow written the way the daemon writes it.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::Signer as _;
use k256::ecdsa::signature::hazmat::PrehashSigner as _;
use sha2::{Digest, Sha256};

use kinko_audit::log::{AuditLog, LogConfig};
use kinko_audit::note::{CheckpointSigner, SoftwareSigner, VerifierKey};
use kinko_audit::record::*;
use kinko_intent::{Chain, Intent, Network, SigningInput, TokenRegistry};
use kinko_policy::{ApprovalMessage, PolicyHash, SignedApproval, Subject, Verdict};

pub const ORIGIN: &str = "kinko.test/audit";
pub const KEY_NAME: &str = "eth-hot-1";

pub fn log_signer() -> SoftwareSigner {
    SoftwareSigner::from_seed(&[1; 32])
}

pub fn log_key() -> VerifierKey {
    VerifierKey::new(ORIGIN, &log_signer().public_key()).unwrap()
}

pub fn config() -> LogConfig {
    let mut c = LogConfig::new(ORIGIN);
    c.checkpoint_interval = Duration::from_secs(3600);
    c
}

pub fn open(dir: &Path) -> AuditLog {
    AuditLog::open(dir, config(), log_signer()).unwrap()
}

pub fn officer_key(i: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x40 + i; 32])
}

pub fn officer_name(i: u8) -> String {
    format!("officer-{i}")
}

pub fn approval(i: u8, message: &[u8]) -> Approval {
    let k = officer_key(i);
    Approval {
        officer: officer_name(i),
        public_key: k.verifying_key().to_bytes().to_vec().into(),
        message: message.to_vec().into(),
        signature: k.sign(message).to_bytes().to_vec().into(),
    }
}

pub fn hsm_key() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap()
}

pub fn hsm_public_key() -> Vec<u8> {
    hsm_key()
        .verifying_key()
        .to_sec1_point(true)
        .as_bytes()
        .to_vec()
}

pub const POLICY_TEXT: &str =
    "officers = [\"officer-1\", \"officer-2\", \"officer-3\"]\nquorum = 2\n";

pub fn policy_hash() -> Vec<u8> {
    Sha256::digest(POLICY_TEXT.as_bytes()).to_vec()
}

/// RLP of an unsigned legacy EIP-155 transaction, as in the EIP-155 example (20 gwei, 21000
/// gas, 1 ETH to 0x3535…35, chain id 1) with nonce `nonce`: the payload a requester submits.
pub fn payload(nonce: u64) -> Vec<u8> {
    fn int(v: u64) -> Vec<u8> {
        let b: Vec<u8> = v
            .to_be_bytes()
            .into_iter()
            .skip_while(|&x| x == 0)
            .collect();
        match b.as_slice() {
            [] => vec![0x80],
            [x] if *x < 0x80 => b.clone(),
            _ => [vec![0x80 + b.len() as u8], b].concat(),
        }
    }
    let mut items = Vec::new();
    items.extend(int(nonce));
    items.extend(int(20_000_000_000));
    items.extend(int(21_000));
    items.push(0x94);
    items.extend([0x35; 20]);
    items.extend(int(1_000_000_000_000_000_000));
    items.push(0x80); // empty data
    items.extend(int(1)); // chain id
    items.extend([0x80, 0x80]);
    assert!(items.len() < 56);
    [vec![0xc0 + items.len() as u8], items].concat()
}

/// The intent kinko-chain decodes from `payload(nonce)` for the HSM key on mainnet.
pub fn intent(nonce: u64) -> Intent {
    decode(&payload(nonce))
}

/// The intent kinko-chain decodes from an Ethereum `payload` for the HSM key on mainnet.
pub fn decode(payload: &[u8]) -> Intent {
    let network = Network::new("1").unwrap();
    let tokens = TokenRegistry::new();
    let ctx = kinko_chain::DecodeContext {
        network: &network,
        public_key: &hsm_public_key(),
        tokens: &tokens,
    };
    kinko_chain::decode(Chain::Ethereum, payload, &ctx).unwrap()
}

pub fn bootstrap_events() -> Vec<Event> {
    vec![
        Event::PolicyInstalled(PolicyInstalled {
            policy_hash: policy_hash().into(),
            policy_text: POLICY_TEXT.into(),
            approvals: vec![],
        }),
        Event::KeyCreated(KeyCreated {
            key_name: KEY_NAME.into(),
            chain: Chain::Ethereum,
            public_key: hsm_public_key().into(),
            address: "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F".into(),
            approvals: vec![
                approval(1, b"create eth-hot-1"),
                approval(2, b"create eth-hot-1"),
            ],
        }),
    ]
}

/// The approval message an officer signs in these tests: request id and intent digest.
pub fn approval_message(request_id: &str, intent: &IntentRecord) -> Vec<u8> {
    format!("approve {request_id} {}", intent.digest).into_bytes()
}

/// The events of one approved and signed withdrawal, approved by `officers`.
pub fn withdrawal_events(n: u64, officers: &[u8]) -> Vec<Event> {
    withdrawal_events_as(&format!("req-{n}"), n, payload(n), officers)
}

/// [`payload`] with another value (wei): another transaction with the same nonce.
pub fn payload_with_value(nonce: u64, wei: u64) -> Vec<u8> {
    let p = payload(nonce);
    let one_eth = 1_000_000_000_000_000_000u64.to_be_bytes();
    let at = p.windows(8).position(|w| w == one_eth).unwrap();
    let mut out = p.clone();
    out[at..at + 8].copy_from_slice(&wei.to_be_bytes());
    out
}

/// The events of request `request_id` for `payload`, approved by `officers` and signed.
pub fn withdrawal_events_as(
    request_id: &str,
    n: u64,
    payload: Vec<u8>,
    officers: &[u8],
) -> Vec<Event> {
    let request_id = request_id.to_string();
    let intent = decode(&payload);
    let ir = IntentRecord::of(&intent).unwrap();
    let msg = approval_message(&request_id, &ir);
    let approvals: Vec<Approval> = officers.iter().map(|&i| approval(i, &msg)).collect();
    let SigningInput::EcdsaSecp256k1 { digest, .. } = &intent.to_sign[0] else {
        unreachable!()
    };
    let sig: k256::ecdsa::Signature = hsm_key()
        .sign_prehash(&hex::decode(digest).unwrap())
        .unwrap();
    let mut events = vec![
        Event::RequestReceived(RequestReceived {
            request_id: request_id.clone(),
            key_name: KEY_NAME.into(),
            chain: Chain::Ethereum,
            payload: payload.clone().into(),
            idempotency_key: format!("idem-{n}"),
            reference: format!("withdrawal {n}"),
            requester_signature: None,
            intent: Some(ir.clone()),
        }),
        Event::Decision(Decision {
            request_id: request_id.clone(),
            policy_hash: policy_hash().into(),
            outcome: Outcome::NeedsApproval,
            rules: vec!["large-withdrawal".into()],
            explanation: "needs 2 of 3 officers".into(),
        }),
    ];
    for a in &approvals {
        events.push(Event::Approval(ApprovalRecorded {
            request_id: request_id.clone(),
            approval: a.clone(),
        }));
    }
    events.push(Event::SigningAuthorized(SigningAuthorized {
        request_id: request_id.clone(),
        key_name: KEY_NAME.into(),
        payload: payload.into(),
        intent: ir,
        policy_hash: policy_hash().into(),
        approvals,
    }));
    events.push(Event::SignatureProduced(SignatureProduced {
        request_id,
        key_name: KEY_NAME.into(),
        signatures: vec![ProducedSignature {
            input: intent.to_sign[0].clone(),
            signature: sig.to_bytes().to_vec().into(),
        }],
        signed_payload: None,
        transaction_id: None,
    }));
    events
}

/// Writes the bootstrap and `n` withdrawals approved by officers 1 and 2.
pub fn populate(log: &AuditLog, n: u64) {
    for e in bootstrap_events() {
        log.append("kinkod", e).unwrap();
    }
    for i in 0..n {
        for e in withdrawal_events(i, &[1, 2]) {
            log.append("requester", e).unwrap();
        }
    }
}

/// The segment files' paths, sorted.
pub fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("segment-")
        })
        .collect();
    v.sort();
    v
}

// ---- Fixtures under a real kinko-policy policy ----

/// A policy whose officers are the fixture's officers `ids`; 2 approvers for ETH transfers up
/// to 10 ETH; installs need 2 admins and wait 1 h.
pub fn policy_text(ids: &[u8], version: &str) -> String {
    let mut s = format!("version = 1\ndescription = \"audit test policy {version}\"\n\n");
    for &i in ids {
        s += &format!(
            "[[officers]]\nid = \"{}\"\nname = \"Officer {i}\"\nroles = [\"approver\", \"admin\", \"freezer\"]\ngroup = \"g{i}\"\npublic_key = \"{}\"\n\n",
            officer_name(i),
            hex::encode(officer_key(i).verifying_key().to_bytes())
        );
    }
    s += &format!(
        "[[requesters]]\nid = \"requester\"\npublic_key = \"{}\"\nkeys = [\"{KEY_NAME}\"]\n\n",
        hex::encode(officer_key(30).verifying_key().to_bytes())
    );
    s += &format!(
        "[[keys]]\nname = \"{KEY_NAME}\"\nchain = \"ethereum\"\nnetwork = \"1\"\nhsm_label = \"k\"\n\n"
    );
    s += "[[rules]]
name = \"eth-transfer\"
chain = \"ethereum\"
asset = \"ETH\"
kinds = [\"transfer\"]
max_amount = \"10\"
max_fee = \"0.01\"
approvals = { count = 2, roles = [\"approver\"], lifetime = \"4h\" }

";
    s += "[governance.install]
quorum = { count = 2, roles = [\"admin\"], lifetime = \"72h\" }
time_lock = \"0s\"
veto_roles = []

";
    s += "[governance.freeze]\nroles = [\"freezer\"]\nlifetime = \"1h\"\n\n";
    s += "[governance.unfreeze]\nquorum = { count = 2, roles = [\"admin\"], lifetime = \"24h\" }\ndelay = \"0s\"\n";
    s
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn signed_approval(i: u8, policy: &str, subject: Subject, issued_ago: i64) -> Approval {
    let msg = ApprovalMessage {
        policy_hash: PolicyHash::of_file(policy.as_bytes()),
        subject,
        officer_id: officer_name(i),
        verdict: Verdict::Approve,
        issued_at: now_secs() - issued_ago,
        expires_at: now_secs() - issued_ago + 3 * 3600,
    };
    let s = SignedApproval::sign(&msg, &officer_key(i)).unwrap();
    Approval {
        officer: officer_name(i),
        public_key: officer_key(i).verifying_key().to_bytes().to_vec().into(),
        message: s.message.into(),
        signature: s.signature.to_vec().into(),
    }
}

pub fn install(policy: &str, previous: Option<&str>, approvers: &[u8]) -> Event {
    let hash = PolicyHash::of_file(policy.as_bytes());
    let approvals = previous.map_or(vec![], |prev| {
        approvers
            .iter()
            .map(|&i| {
                let subject = Subject::InstallPolicy {
                    request_id: "gov-1".into(),
                    new_policy_hash: hash,
                };
                signed_approval(i, prev, subject, 2 * 3600)
            })
            .collect()
    });
    Event::PolicyInstalled(PolicyInstalled {
        policy_hash: hash.0.to_vec().into(),
        policy_text: policy.into(),
        approvals,
    })
}

/// A policy installation as the daemon logs it: the proposal (by `proposer`), each officer's
/// vote under `previous`, then the installation carrying the votes as evidence.
pub fn governed_install(policy: &str, previous: &str, approvers: &[u8]) -> Vec<Event> {
    let hash = PolicyHash::of_file(policy.as_bytes());
    let Event::PolicyInstalled(mut installed) = install(policy, Some(previous), approvers) else {
        unreachable!()
    };
    let mut out = vec![Event::PolicyProposed(PolicyProposed {
        request_id: "gov-1".into(),
        policy_hash: hash.0.to_vec().into(),
        base_policy_hash: PolicyHash::of_file(previous.as_bytes()).0.to_vec().into(),
        proposer: "admin".into(),
    })];
    // Votes are checked as received: issued now.
    installed.approvals = approvers
        .iter()
        .map(|&i| {
            let subject = Subject::InstallPolicy {
                request_id: "gov-1".into(),
                new_policy_hash: hash,
            };
            signed_approval(i, previous, subject, 0)
        })
        .collect();
    for a in &installed.approvals {
        out.push(Event::GovernanceVote(GovernanceVote {
            request_id: "gov-1".into(),
            approval: a.clone(),
        }));
    }
    out.push(Event::PolicyInstalled(installed));
    out
}

/// Votes by `officers` to lift the freeze whose record has leaf hash `freeze_id`, as the daemon
/// logs them, and the unfreeze carrying them as evidence.
pub fn governed_unfreeze(policy: &str, freeze_id: [u8; 32], officers: &[u8]) -> Vec<Event> {
    let approvals: Vec<Approval> = officers
        .iter()
        .map(|&i| {
            let subject = Subject::Unfreeze {
                request_id: "gov-u".into(),
                freeze_id: kinko_policy::FreezeId(freeze_id),
            };
            signed_approval(i, policy, subject, 0)
        })
        .collect();
    let mut out: Vec<Event> = approvals
        .iter()
        .map(|a| {
            Event::GovernanceVote(GovernanceVote {
                request_id: "gov-u".into(),
                approval: a.clone(),
            })
        })
        .collect();
    out.push(Event::Unfreeze(Unfreeze {
        reason: "investigated".into(),
        approvals,
    }));
    out
}

/// A withdrawal approved under `policy` by `officers`, recorded as the daemon records it.
pub fn withdrawal(n: u64, policy: &str, officers: &[u8]) -> Vec<Event> {
    let hash = PolicyHash::of_file(policy.as_bytes()).0.to_vec();
    let mut base = withdrawal_events(n, &[]);
    let produced = base.pop().unwrap();
    let Some(Event::SigningAuthorized(mut auth)) = base.pop() else {
        unreachable!()
    };
    let ir: IntentRecord = auth.intent.clone();
    let approvals: Vec<Approval> = officers
        .iter()
        .map(|&i| {
            let subject = Subject::Withdrawal {
                request_id: auth.request_id.clone(),
                intent_digest: ir.digest,
            };
            signed_approval(i, policy, subject, 60)
        })
        .collect();
    for e in &mut base {
        if let Event::Decision(d) = e {
            d.policy_hash = hash.clone().into();
        }
    }
    for a in &approvals {
        base.push(Event::Approval(ApprovalRecorded {
            request_id: auth.request_id.clone(),
            approval: a.clone(),
        }));
    }
    auth.policy_hash = hash.into();
    auth.approvals = approvals;
    base.push(Event::SigningAuthorized(auth));
    base.push(produced);
    base
}
