//! Officer approvals: the canonical approval message, its Ed25519 signature, and quorum
//! evaluation.
//!
//! # Approval message encoding (`kinko/approval/v1`)
//!
//! All integers big-endian; `str` is a 1-byte length (1..=128) followed by that many bytes of
//! printable ASCII (0x21..=0x7e).
//!
//! | field | bytes |
//! |---|---|
//! | domain tag `"kinko/approval/v1\n"` | 18 |
//! | policy hash (the policy the approval is given under) | 32 |
//! | subject tag: 1 withdrawal, 2 install policy, 3 freeze, 4 unfreeze | 1 |
//! | request id (`str`) | 2..=129 |
//! | subject digest: intent digest (1), new policy hash (2), 32 zero bytes (3), the lifted freeze's id (4) | 32 |
//! | officer id (`str`) | 2..=129 |
//! | verdict: 1 approve, 2 reject | 1 |
//! | issued at, unix seconds (`i64`) | 8 |
//! | expires at, unix seconds (`i64`) | 8 |
//!
//! The officer signs exactly these bytes with Ed25519 (RFC 8032, pure); Kinko verifies with
//! `verify_strict` (no small-order keys or `R`, canonical `S`). Decoding is strict: unknown tags,
//! non-zero padding digests, bad strings or trailing bytes are refused, so one message has one
//! encoding.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signer as _, SigningKey};
use jiff::Timestamp;
use kinko_intent::IntentDigest;
use serde::Serialize;

use crate::error::PolicyError;
use crate::model::{Policy, PolicyHash, QuorumRequirement};

/// Domain tag that starts every approval message.
pub const APPROVAL_DOMAIN: &[u8] = b"kinko/approval/v1\n";
/// How far in the future an approval's `issued_at` may be and still count (clock skew between
/// the officer's machine and the signer), in seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;
/// The longest request id or officer id in an approval message.
pub const MAX_ID_LEN: usize = 128;
/// The most approvals one quorum evaluation looks at (more is refused as malformed input).
pub const MAX_APPROVALS: usize = 1024;

/// What is being approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Subject {
    /// A withdrawal request: its id and the digest of the intent the officer decoded.
    Withdrawal {
        /// The daemon's request id.
        request_id: String,
        /// The intent digest the officer's own client computed.
        intent_digest: IntentDigest,
    },
    /// Installing a new policy (approved under the current policy's hash).
    InstallPolicy {
        /// The governance request id.
        request_id: String,
        /// The hash of the policy file to install.
        new_policy_hash: PolicyHash,
    },
    /// Freezing all signing.
    Freeze {
        /// The governance request id.
        request_id: String,
    },
    /// Lifting one freeze: the one whose audit record has leaf hash `freeze_id` (the freeze's
    /// identity as the log knows it). An approval to lift one freeze never lifts another.
    Unfreeze {
        /// The governance request id.
        request_id: String,
        /// The RFC 6962 leaf hash of the `freeze` record this unfreeze lifts.
        freeze_id: FreezeId,
    },
}

/// A freeze's identity: the RFC 6962 leaf hash of its `freeze` audit record. Unique per freeze
/// (the record carries its sequence number and time), and checkable by an auditor from the log.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FreezeId(pub [u8; 32]);

impl FreezeId {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(FreezeId(out))
    }
}

impl std::fmt::Debug for FreezeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FreezeId({})", self.to_hex())
    }
}

impl std::fmt::Display for FreezeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for FreezeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl Subject {
    fn tag(&self) -> u8 {
        match self {
            Subject::Withdrawal { .. } => 1,
            Subject::InstallPolicy { .. } => 2,
            Subject::Freeze { .. } => 3,
            Subject::Unfreeze { .. } => 4,
        }
    }
    /// The request id.
    pub fn request_id(&self) -> &str {
        match self {
            Subject::Withdrawal { request_id, .. }
            | Subject::InstallPolicy { request_id, .. }
            | Subject::Freeze { request_id }
            | Subject::Unfreeze { request_id, .. } => request_id,
        }
    }
    fn digest(&self) -> [u8; 32] {
        match self {
            Subject::Withdrawal { intent_digest, .. } => intent_digest.0,
            Subject::InstallPolicy {
                new_policy_hash, ..
            } => new_policy_hash.0,
            Subject::Unfreeze { freeze_id, .. } => freeze_id.0,
            Subject::Freeze { .. } => [0; 32],
        }
    }
    fn kind_name(&self) -> &'static str {
        match self {
            Subject::Withdrawal { .. } => "withdrawal",
            Subject::InstallPolicy { .. } => "install_policy",
            Subject::Freeze { .. } => "freeze",
            Subject::Unfreeze { .. } => "unfreeze",
        }
    }
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Counts toward the quorum.
    Approve,
    /// Blocks the request where the policy says so (and vetoes governance changes).
    Reject,
}

/// The message an officer signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalMessage {
    /// The hash of the policy under which the approval is given.
    pub policy_hash: PolicyHash,
    /// What is approved.
    pub subject: Subject,
    /// Who approves (an officer id of that policy).
    pub officer_id: String,
    /// Approve or reject.
    pub verdict: Verdict,
    /// When the officer signed, unix seconds.
    pub issued_at: i64,
    /// When the approval stops counting (exclusive), unix seconds.
    pub expires_at: i64,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn malformed(reason: impl Into<String>) -> PolicyError {
    PolicyError::Malformed {
        what: "approval message",
        reason: reason.into(),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &str) -> Result<(), PolicyError> {
    if !valid_id(s) {
        return Err(malformed(format!(
            "{what} must be 1..={MAX_ID_LEN} printable ASCII characters"
        )));
    }
    // valid_id bounds the length to 128, which fits in a byte.
    out.push(u8::try_from(s.len()).map_err(|_| malformed("id too long"))?);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A strict reader over a byte slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }
    fn err(&self, reason: &str) -> PolicyError {
        PolicyError::Malformed {
            what: self.what,
            reason: reason.to_string(),
        }
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], PolicyError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], PolicyError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, PolicyError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn i64(&mut self) -> Result<i64, PolicyError> {
        Ok(i64::from_be_bytes(self.array::<8>()?))
    }
    pub(crate) fn str(&mut self) -> Result<String, PolicyError> {
        let n = usize::from(self.u8()?);
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| self.err("id is not ASCII"))?;
        if !valid_id(s) {
            return Err(self.err("id must be 1..=128 printable ASCII characters"));
        }
        Ok(s.to_string())
    }
    pub(crate) fn finish(self) -> Result<(), PolicyError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

impl ApprovalMessage {
    /// The canonical bytes (see the module documentation).
    pub fn to_bytes(&self) -> Result<Vec<u8>, PolicyError> {
        let mut out = Vec::with_capacity(18 + 32 + 1 + 129 + 32 + 129 + 1 + 16);
        out.extend_from_slice(APPROVAL_DOMAIN);
        out.extend_from_slice(&self.policy_hash.0);
        out.push(self.subject.tag());
        put_str(&mut out, self.subject.request_id(), "request id")?;
        out.extend_from_slice(&self.subject.digest());
        put_str(&mut out, &self.officer_id, "officer id")?;
        out.push(match self.verdict {
            Verdict::Approve => 1,
            Verdict::Reject => 2,
        });
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        Ok(out)
    }

    /// Decodes canonical bytes strictly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut r = Reader::new(bytes, "approval message");
        if r.take(APPROVAL_DOMAIN.len())? != APPROVAL_DOMAIN {
            return Err(malformed("wrong domain tag"));
        }
        let policy_hash = PolicyHash(r.array()?);
        let tag = r.u8()?;
        let request_id = r.str()?;
        let digest: [u8; 32] = r.array()?;
        let subject = match tag {
            1 => Subject::Withdrawal {
                request_id,
                intent_digest: IntentDigest(digest),
            },
            2 => Subject::InstallPolicy {
                request_id,
                new_policy_hash: PolicyHash(digest),
            },
            3 if digest != [0; 32] => {
                return Err(malformed("freeze digest must be zero"));
            }
            4 if digest == [0; 32] => {
                return Err(malformed("an unfreeze must name the freeze it lifts"));
            }
            3 => Subject::Freeze { request_id },
            4 => Subject::Unfreeze {
                request_id,
                freeze_id: FreezeId(digest),
            },
            _ => return Err(malformed("unknown subject tag")),
        };
        let officer_id = r.str()?;
        let verdict = match r.u8()? {
            1 => Verdict::Approve,
            2 => Verdict::Reject,
            _ => return Err(malformed("unknown verdict")),
        };
        let issued_at = r.i64()?;
        let expires_at = r.i64()?;
        r.finish()?;
        Ok(ApprovalMessage {
            policy_hash,
            subject,
            officer_id,
            verdict,
            issued_at,
            expires_at,
        })
    }
}

/// An approval as stored and transmitted: the exact message bytes and the officer's signature.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedApproval {
    /// The canonical message bytes.
    pub message: Vec<u8>,
    /// The Ed25519 signature over `message` (all zeroes for a passkey approval).
    pub signature: [u8; 64],
    /// For an officer with a passkey: the WebAuthn assertion whose challenge is SHA-256 of
    /// `message` ([`crate::webauthn`]).
    pub passkey: Option<crate::webauthn::Assertion>,
}

impl std::fmt::Debug for SignedApproval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedApproval")
            .field("message", &hex::encode(&self.message))
            .field("signature", &hex::encode(self.signature))
            .field("passkey", &self.passkey)
            .finish()
    }
}

impl SignedApproval {
    /// An approval from its message and the bytes carried as its signature: 64 bytes are an
    /// Ed25519 signature; an encoded WebAuthn assertion ([`crate::webauthn::Assertion::to_bytes`])
    /// is a passkey approval.
    pub fn from_parts(message: Vec<u8>, signature: &[u8]) -> Result<Self, PolicyError> {
        if let Ok(sig) = <[u8; 64]>::try_from(signature) {
            return Ok(SignedApproval {
                message,
                signature: sig,
                passkey: None,
            });
        }
        let assertion = crate::webauthn::Assertion::from_bytes(signature).map_err(|e| {
            PolicyError::Malformed {
                what: "approval signature",
                reason: format!("neither 64 bytes (Ed25519) nor a passkey assertion: {e}"),
            }
        })?;
        Ok(SignedApproval {
            message,
            signature: [0; 64],
            passkey: Some(assertion),
        })
    }

    /// The bytes carried as the signature (see [`SignedApproval::from_parts`]).
    pub fn signature_bytes(&self) -> Vec<u8> {
        match &self.passkey {
            Some(a) => a.to_bytes(),
            None => self.signature.to_vec(),
        }
    }

    /// Signs a message with an officer's key (what the officer's CLI does).
    pub fn sign(message: &ApprovalMessage, key: &SigningKey) -> Result<Self, PolicyError> {
        let bytes = message.to_bytes()?;
        let signature = key.sign(&bytes).to_bytes();
        Ok(SignedApproval {
            message: bytes,
            signature,
            passkey: None,
        })
    }
}

/// Why an approval did not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotCounted {
    /// The message bytes do not decode.
    Malformed {
        /// The decoding error.
        detail: String,
    },
    /// The officer id is not in the policy.
    UnknownOfficer,
    /// The signature does not verify strictly under the officer's key.
    BadSignature,
    /// Given under another policy.
    WrongPolicy {
        /// The policy hash in the approval.
        saw: PolicyHash,
    },
    /// About another kind of subject (e.g. a freeze approval offered for a withdrawal).
    WrongSubjectKind {
        /// The subject kind in the approval.
        saw: String,
    },
    /// About another request.
    WrongRequest {
        /// The request id in the approval.
        saw: String,
    },
    /// Over another intent digest or new-policy hash.
    WrongDigest {
        /// The digest in the approval, hex.
        saw: String,
    },
    /// The officer is the requester of this request.
    IsRequester,
    /// The officer holds none of the required roles.
    MissingRole,
    /// `issued_at` is later than now plus the allowed clock skew.
    NotYetValid {
        /// `issued_at`.
        issued_at: i64,
    },
    /// `expires_at` is not later than now.
    Expired {
        /// `expires_at`.
        expires_at: i64,
    },
    /// `expires_at − issued_at` is not positive or exceeds the rule's approval lifetime.
    BadLifetime {
        /// `expires_at − issued_at`, seconds (saturated).
        seconds: i64,
    },
    /// Another valid approval of the same officer already counted.
    Duplicate,
    /// A valid reject that this rule does not treat as blocking.
    RejectNotBlocking,
    /// The same officer also rejected; the reject wins.
    OfficerAlsoRejected,
}

/// An approval that counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counted {
    /// Index in the input list.
    pub index: usize,
    /// The officer.
    pub officer_id: String,
    /// The officer's group.
    pub group: String,
    /// Issued at, unix seconds.
    pub issued_at: i64,
    /// Expires at, unix seconds.
    pub expires_at: i64,
}

/// An approval that did not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ignored {
    /// Index in the input list.
    pub index: usize,
    /// The officer id the message claims (empty when it does not decode).
    pub officer_id: String,
    /// Why.
    #[serde(flatten)]
    pub why: NotCounted,
}

/// Where the quorum stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum QuorumState {
    /// Enough distinct, eligible officers approved, from enough groups, and nobody blocked.
    Satisfied,
    /// More approvals are needed.
    Pending {
        /// How many more officers are needed.
        missing_officers: u32,
        /// How many more distinct groups are needed.
        missing_groups: u32,
    },
    /// An eligible officer rejected and the rule says a reject blocks.
    Blocked {
        /// The officers who rejected.
        by: Vec<String>,
    },
}

/// The quorum evaluation, explaining itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumResult {
    /// The outcome.
    pub state: QuorumState,
    /// What was required.
    pub required: QuorumRequirement,
    /// The approvals that counted, one per officer.
    pub counted: Vec<Counted>,
    /// The distinct groups of the counted officers.
    pub groups: Vec<String>,
    /// Valid rejects from eligible officers.
    pub rejected_by: Vec<String>,
    /// Everything that did not count, with the reason.
    pub ignored: Vec<Ignored>,
    /// The instant the evaluation was made for, unix seconds.
    pub at: i64,
}

impl QuorumResult {
    /// Whether the quorum is satisfied.
    pub fn is_satisfied(&self) -> bool {
        self.state == QuorumState::Satisfied
    }

    /// A multi-line explanation.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let r = &self.required;
        let _ = writeln!(
            s,
            "quorum: {} of officers with roles {:?}{}, approvals valid at most {:#}",
            r.count,
            r.roles,
            if r.distinct_groups > 1 {
                format!(" from {} distinct groups", r.distinct_groups)
            } else {
                String::new()
            },
            r.lifetime
        );
        let _ = match &self.state {
            QuorumState::Satisfied => writeln!(s, "state: satisfied"),
            QuorumState::Pending {
                missing_officers,
                missing_groups,
            } => writeln!(
                s,
                "state: pending ({missing_officers} more officer(s), {missing_groups} more group(s))"
            ),
            QuorumState::Blocked { by } => writeln!(s, "state: blocked by reject from {by:?}"),
        };
        for c in &self.counted {
            let _ = writeln!(s, "  counted  #{} {} ({})", c.index, c.officer_id, c.group);
        }
        for i in &self.ignored {
            let _ = writeln!(s, "  ignored  #{} {:?}: {:?}", i.index, i.officer_id, i.why);
        }
        s
    }
}

/// Whether the approval is valid in itself at `now` for `expected` under `policy` — signature,
/// binding, time, lifetime — ignoring roles, the requester and duplicates.
pub(crate) fn check_one(
    policy: &Policy,
    expected: &Subject,
    lifetime_secs: i64,
    approval: &SignedApproval,
    now: i64,
) -> Result<ApprovalMessage, (String, NotCounted)> {
    let msg = ApprovalMessage::from_bytes(&approval.message).map_err(|e| {
        (
            String::new(),
            NotCounted::Malformed {
                detail: e.to_string(),
            },
        )
    })?;
    let who = msg.officer_id.clone();
    let fail = |why| Err((who.clone(), why));
    let Some(officer) = policy.officer(&msg.officer_id) else {
        return fail(NotCounted::UnknownOfficer);
    };
    if !officer.signed(approval) {
        return fail(NotCounted::BadSignature);
    }
    if msg.policy_hash != policy.hash() {
        return fail(NotCounted::WrongPolicy {
            saw: msg.policy_hash,
        });
    }
    if msg.subject.tag() != expected.tag() {
        return fail(NotCounted::WrongSubjectKind {
            saw: msg.subject.kind_name().to_string(),
        });
    }
    if msg.subject.request_id() != expected.request_id() {
        return fail(NotCounted::WrongRequest {
            saw: msg.subject.request_id().to_string(),
        });
    }
    if msg.subject.digest() != expected.digest() {
        return fail(NotCounted::WrongDigest {
            saw: hex::encode(msg.subject.digest()),
        });
    }
    let life = msg.expires_at.saturating_sub(msg.issued_at);
    if life <= 0 || life > lifetime_secs {
        return fail(NotCounted::BadLifetime { seconds: life });
    }
    if msg.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return fail(NotCounted::NotYetValid {
            issued_at: msg.issued_at,
        });
    }
    if msg.expires_at <= now {
        return fail(NotCounted::Expired {
            expires_at: msg.expires_at,
        });
    }
    Ok(msg)
}

/// Evaluates a quorum: which approvals count toward `requirement` for `expected` under `policy`
/// at time `at`.
///
/// An approval counts only if it decodes; names an officer of `policy`; verifies strictly under
/// that officer's key; binds `policy`'s hash, the expected subject kind, request id and digest;
/// has `0 < expires_at − issued_at ≤ lifetime`, `issued_at ≤ at + MAX_CLOCK_SKEW_SECS` and
/// `at < expires_at`; comes from an officer who holds one of the roles and is not `requester`;
/// and is the first such approval of that officer. A valid reject from an eligible officer blocks
/// when `reject_blocks` is set. Every input appears in `counted` or `ignored`, or (for blocking
/// rejects) in `rejected_by`.
pub fn evaluate_quorum(
    policy: &Policy,
    requirement: &QuorumRequirement,
    expected: &Subject,
    requester: Option<&str>,
    approvals: &[SignedApproval],
    at: Timestamp,
) -> QuorumResult {
    let now = at.as_second();
    let lifetime_secs = requirement.lifetime.as_secs();
    let mut counted: Vec<Counted> = Vec::new();
    let mut ignored = Vec::new();
    let mut rejected: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (index, a) in approvals.iter().enumerate() {
        if index >= MAX_APPROVALS {
            ignored.push(Ignored {
                index,
                officer_id: String::new(),
                why: NotCounted::Malformed {
                    detail: format!("more than {MAX_APPROVALS} approvals"),
                },
            });
            continue;
        }
        let msg = match check_one(policy, expected, lifetime_secs, a, now) {
            Ok(m) => m,
            Err((officer_id, why)) => {
                ignored.push(Ignored {
                    index,
                    officer_id,
                    why,
                });
                continue;
            }
        };
        let Some(officer) = policy.officer(&msg.officer_id) else {
            ignored.push(Ignored {
                index,
                officer_id: msg.officer_id,
                why: NotCounted::UnknownOfficer,
            });
            continue;
        };
        let why = if requester == Some(officer.id.as_str()) {
            Some(NotCounted::IsRequester)
        } else if !officer.has_any_role(&requirement.roles) {
            Some(NotCounted::MissingRole)
        } else {
            None
        };
        if let Some(why) = why {
            ignored.push(Ignored {
                index,
                officer_id: msg.officer_id,
                why,
            });
            continue;
        }
        match msg.verdict {
            Verdict::Reject if requirement.reject_blocks => {
                rejected.insert(officer.id.clone());
            }
            Verdict::Reject => ignored.push(Ignored {
                index,
                officer_id: msg.officer_id,
                why: NotCounted::RejectNotBlocking,
            }),
            Verdict::Approve => {
                if seen.insert(officer.id.clone()) {
                    counted.push(Counted {
                        index,
                        officer_id: officer.id.clone(),
                        group: officer.group.clone(),
                        issued_at: msg.issued_at,
                        expires_at: msg.expires_at,
                    });
                } else {
                    ignored.push(Ignored {
                        index,
                        officer_id: msg.officer_id,
                        why: NotCounted::Duplicate,
                    });
                }
            }
        }
    }
    // An officer who both approved and rejected is treated as rejecting: drop the approval.
    if !rejected.is_empty() {
        let (keep, drop): (Vec<_>, Vec<_>) = counted
            .into_iter()
            .partition(|c| !rejected.contains(&c.officer_id));
        counted = keep;
        for c in drop {
            ignored.push(Ignored {
                index: c.index,
                officer_id: c.officer_id,
                why: NotCounted::OfficerAlsoRejected,
            });
        }
    }
    let groups: BTreeMap<&str, ()> = counted.iter().map(|c| (c.group.as_str(), ())).collect();
    let groups: Vec<String> = groups.keys().map(|g| (*g).to_string()).collect();
    let n = u32::try_from(counted.len()).unwrap_or(u32::MAX);
    let g = u32::try_from(groups.len()).unwrap_or(u32::MAX);
    let state = if !rejected.is_empty() {
        QuorumState::Blocked {
            by: rejected.iter().cloned().collect(),
        }
    } else if n >= requirement.count && g >= requirement.distinct_groups {
        QuorumState::Satisfied
    } else {
        QuorumState::Pending {
            missing_officers: requirement.count.saturating_sub(n),
            missing_groups: requirement.distinct_groups.saturating_sub(g),
        }
    };
    ignored.sort_by_key(|i| i.index);
    QuorumResult {
        state,
        required: requirement.clone(),
        counted,
        groups,
        rejected_by: rejected.into_iter().collect(),
        ignored,
        at: now,
    }
}
