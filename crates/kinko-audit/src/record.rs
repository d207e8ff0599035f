//! The audit records: typed events, one canonical JSON object per line.
//!
//! A record is `{"event":{"type":"<kind>",...},"principal":"...","seq":N,"time_ms":T}` written
//! as canonical JSON ([`kinko_intent::to_canonical_json`]: keys sorted by UTF-8 bytes, no
//! whitespace, integers only), so the same record always has the same bytes and a reader can
//! re-encode a line to check it. Byte strings are lowercase hex. The Merkle leaf of a record is
//! `SHA-256(0x00 || line)`, the line without its newline ([`crate::merkle::leaf_hash`]).
//!
//! Every record carries what an auditor needs to re-verify it without the daemon: intents as
//! their canonical bytes and digest, the policy hash in force, each approval as the exact
//! message the officer signed with the officer's key and signature, the raw payload, and each
//! HSM signature with the signing input it covers and the public key.

use serde::{Deserialize, Serialize};

use kinko_intent::{Chain, Intent, IntentDigest, SigningInput, to_canonical_json};

use crate::Error;

/// The longest record line accepted, in bytes (a policy text or a large payload fits).
pub const MAX_RECORD_LEN: usize = 1 << 20;

/// Bytes written as lowercase hex.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexBytes(pub Vec<u8>);

impl std::fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(&self.0))
    }
}

impl From<Vec<u8>> for HexBytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for HexBytes {
    fn from(v: &[u8]) -> Self {
        Self(v.to_vec())
    }
}

impl Serialize for HexBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom("hex must be lowercase"));
        }
        hex::decode(s.as_bytes())
            .map(HexBytes)
            .map_err(|_| serde::de::Error::custom("invalid hex"))
    }
}

/// An officer's approval as evidence: the exact message bytes the officer signed (the approval
/// message defined by kinko-policy, in its canonical encoding), the officer's id and public
/// key, and the signature. For an officer with a passkey the key is the 65-byte uncompressed
/// P-256 point and the signature the whole WebAuthn assertion (`kinko_policy::webauthn`:
/// authenticatorData, clientDataJSON and the ECDSA signature, encoded after `WA1\n`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The officer's id in the policy.
    pub officer: String,
    /// The officer's Ed25519 public key (32 bytes), or passkey P-256 point (65 bytes).
    pub public_key: HexBytes,
    /// The signed message bytes.
    pub message: HexBytes,
    /// The Ed25519 signature over `message` (64 bytes), or the encoded WebAuthn assertion.
    pub signature: HexBytes,
}

impl Approval {
    /// Whether the signature verifies over the message under the public key: strict Ed25519,
    /// or for a passkey the assertion's ECDSA signature, its challenge (SHA-256 of the message)
    /// and its user-present and user-verified flags. The relying party and origin are the
    /// officer's in the policy: checking them, and that the officer and key belong to the policy
    /// in force, is the policy check's job.
    pub fn signature_valid(&self) -> bool {
        if self.public_key.0.len() == 32 {
            return crate::sigs::ed25519_valid(
                &self.public_key.0,
                &self.message.0,
                &self.signature.0,
            );
        }
        let (Ok(public_key), Ok(a)) = (
            kinko_policy::webauthn::PasskeyKey::parse_public_key(&self.public_key.0),
            kinko_policy::webauthn::Assertion::from_bytes(&self.signature.0),
        ) else {
            return false;
        };
        kinko_policy::webauthn::verify_signature_and_challenge(&public_key, &self.message.0, &a)
            .is_ok()
    }
}

/// An intent as recorded: its canonical bytes (as a string: canonical JSON is UTF-8) and its
/// digest, so an auditor can recompute one from the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentRecord {
    /// The intent's canonical JSON (kinko-intent).
    pub canonical: String,
    /// `SHA-256("kinko/intent/v1\n" || canonical)`.
    pub digest: IntentDigest,
}

impl IntentRecord {
    /// Records `intent`.
    pub fn of(intent: &Intent) -> Result<Self, Error> {
        let bytes = intent
            .canonical_bytes()
            .map_err(|e| Error::Record(e.to_string()))?;
        let canonical = String::from_utf8(bytes).map_err(|e| Error::Record(e.to_string()))?;
        let digest = IntentDigest::of_canonical_bytes(canonical.as_bytes());
        Ok(Self { canonical, digest })
    }

    /// Parses the intent back and checks that its canonical encoding and digest are exactly
    /// the recorded ones.
    pub fn check(&self) -> Result<Intent, String> {
        let intent: Intent = serde_json::from_str(&self.canonical)
            .map_err(|e| format!("recorded intent does not parse: {e}"))?;
        let again = intent
            .canonical_bytes()
            .map_err(|e| format!("recorded intent does not re-encode: {e}"))?;
        if again != self.canonical.as_bytes() {
            return Err("recorded intent is not in canonical form".into());
        }
        if IntentDigest::of_canonical_bytes(&again) != self.digest {
            return Err(format!(
                "recorded intent digest {} is not the digest of the recorded intent {}",
                self.digest,
                IntentDigest::of_canonical_bytes(&again)
            ));
        }
        Ok(intent)
    }
}

/// The policy's decision on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed without approvals.
    Allow,
    /// Needs officers' approvals.
    NeedsApproval,
    /// Denied.
    Deny,
}

/// A key was created in the HSM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCreated {
    /// The key's name.
    pub key_name: String,
    /// The chain it signs for.
    pub chain: Chain,
    /// Its public key (SEC1 compressed for secp256k1, 32 bytes for Ed25519).
    pub public_key: HexBytes,
    /// Its address on the chain.
    pub address: String,
    /// The admin approvals that authorized it.
    pub approvals: Vec<Approval>,
}

/// A policy was installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInstalled {
    /// The policy's hash as kinko-policy defines it.
    pub policy_hash: HexBytes,
    /// The whole policy text.
    pub policy_text: String,
    /// The approvals that installed it (empty for the bootstrap policy).
    pub approvals: Vec<Approval>,
}

/// A withdrawal request reached the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestReceived {
    /// The request id.
    pub request_id: String,
    /// The key asked for.
    pub key_name: String,
    /// The chain.
    pub chain: Chain,
    /// The raw unsigned payload.
    pub payload: HexBytes,
    /// The requester's idempotency key.
    pub idempotency_key: String,
    /// The requester's free-text reference.
    pub reference: String,
    /// The requester system's signature over payload and reference, if any.
    pub requester_signature: Option<HexBytes>,
    /// The decoded intent (absent when decoding failed).
    pub intent: Option<IntentRecord>,
}

/// The policy decided on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// The request id.
    pub request_id: String,
    /// The hash of the policy that decided.
    pub policy_hash: HexBytes,
    /// The outcome.
    pub outcome: Outcome,
    /// The rules that matched, in order.
    pub rules: Vec<String>,
    /// The explanation shown to people.
    pub explanation: String,
}

/// An officer approved a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRecorded {
    /// The request id.
    pub request_id: String,
    /// The signed approval.
    pub approval: Approval,
}

/// An officer rejected a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// The request id.
    pub request_id: String,
    /// The officer's id.
    pub officer: String,
    /// Why.
    pub reason: String,
    /// The officer's signed rejection message, if signed.
    pub signed: Option<Approval>,
}

/// Signing was frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    /// Why.
    pub reason: String,
    /// The officer's signed freeze message, if signed.
    pub signed: Option<Approval>,
}

/// A policy change was proposed. The proposer (the record's principal, repeated here) never
/// counts toward the proposal's install quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyProposed {
    /// The governance request id officers approve.
    pub request_id: String,
    /// The hash of the proposed policy file.
    pub policy_hash: HexBytes,
    /// The hash of the policy in force when it was proposed (the one that decides it).
    pub base_policy_hash: HexBytes,
    /// Who proposed it.
    pub proposer: String,
}

/// An officer's governance vote (an approval or a veto of a policy installation or an
/// unfreeze) was checked and accepted. Every vote that can affect an outcome is here, so the
/// outcome can be re-derived from the log alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceVote {
    /// The governance request id.
    pub request_id: String,
    /// The signed vote (its message names the subject, verdict and policy).
    pub approval: Approval,
}

/// A requester cancelled its pending request; it is never signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancelled {
    /// The request id.
    pub request_id: String,
    /// The requester's reason.
    pub reason: String,
}

/// A kinkod build started on this log: recorded when the running binary differs from the last
/// one recorded, so that every later signature is attributable to the build that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonStarted {
    /// The version kinkod reports (`kinkod --version`).
    pub version: String,
    /// SHA-256 of the kinkod executable, as `sha256sum` prints it and the release's
    /// SHA256SUMS lists it.
    pub binary_sha256: HexBytes,
    /// The replica that started it.
    pub replica: String,
}

/// Signing was unfrozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unfreeze {
    /// Why.
    pub reason: String,
    /// The quorum's signed approvals.
    pub approvals: Vec<Approval>,
}

/// Everything checked: the daemon is about to ask the HSM to sign. Written durably before the
/// HSM is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningAuthorized {
    /// The request id.
    pub request_id: String,
    /// The signing key's name.
    pub key_name: String,
    /// The raw unsigned payload the intent was decoded from.
    pub payload: HexBytes,
    /// The intent decoded from the payload; its `to_sign` lists what the HSM will sign.
    pub intent: IntentRecord,
    /// The hash of the policy in force that authorized it.
    pub policy_hash: HexBytes,
    /// The approvals counted toward the quorum.
    pub approvals: Vec<Approval>,
}

/// One signature the HSM produced, with the input it signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducedSignature {
    /// What was signed (scheme, digest or message, public key), as in the intent.
    pub input: SigningInput,
    /// The signature: `r || s` (64 bytes) for ECDSA, `R || S` (64 bytes) for Ed25519.
    pub signature: HexBytes,
}

/// The HSM signed, and the signatures verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureProduced {
    /// The request id.
    pub request_id: String,
    /// The signing key's name.
    pub key_name: String,
    /// The signatures, one per signing input of the intent.
    pub signatures: Vec<ProducedSignature>,
    /// The signed transaction returned to the requester, if assembled.
    pub signed_payload: Option<HexBytes>,
    /// Its transaction id as the chain's explorers show it (absent in records written before
    /// it was logged). With `signed_payload`, what a restart restores when the daemon stopped
    /// after this record was durable but before its database recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

/// A refusal that reached the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// The request id, when there is one.
    pub request_id: Option<String>,
    /// The stable reason code.
    pub code: String,
    /// The message.
    pub message: String,
}

/// An audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A key was created.
    KeyCreated(KeyCreated),
    /// A policy was installed.
    PolicyInstalled(PolicyInstalled),
    /// A request was received.
    RequestReceived(RequestReceived),
    /// The policy decided.
    Decision(Decision),
    /// An officer approved.
    Approval(ApprovalRecorded),
    /// An officer rejected.
    Rejection(Rejection),
    /// Signing was frozen.
    Freeze(Freeze),
    /// Signing was unfrozen.
    Unfreeze(Unfreeze),
    /// Signing was authorized.
    SigningAuthorized(SigningAuthorized),
    /// A signature was produced.
    SignatureProduced(SignatureProduced),
    /// A refusal.
    Refusal(Refusal),
    /// A policy change was proposed.
    PolicyProposed(PolicyProposed),
    /// A governance vote was accepted.
    GovernanceVote(GovernanceVote),
    /// A request was cancelled.
    #[serde(rename = "request_cancelled")]
    Cancelled(Cancelled),
    /// A kinkod build started.
    DaemonStarted(DaemonStarted),
}

impl Event {
    /// The event's type name as written in the record.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::KeyCreated(_) => "key_created",
            Event::PolicyInstalled(_) => "policy_installed",
            Event::RequestReceived(_) => "request_received",
            Event::Decision(_) => "decision",
            Event::Approval(_) => "approval",
            Event::Rejection(_) => "rejection",
            Event::Freeze(_) => "freeze",
            Event::Unfreeze(_) => "unfreeze",
            Event::SigningAuthorized(_) => "signing_authorized",
            Event::SignatureProduced(_) => "signature_produced",
            Event::Refusal(_) => "refusal",
            Event::PolicyProposed(_) => "policy_proposed",
            Event::GovernanceVote(_) => "governance_vote",
            Event::Cancelled(_) => "request_cancelled",
            Event::DaemonStarted(_) => "daemon_started",
        }
    }

    /// Whether the append must not return before a signed checkpoint covers the record: every
    /// signature produced, and every change to keys, policy or freeze state.
    pub fn needs_checkpoint(&self) -> bool {
        matches!(
            self,
            Event::SignatureProduced(_)
                | Event::PolicyInstalled(_)
                | Event::KeyCreated(_)
                | Event::Freeze(_)
                | Event::Unfreeze(_)
        )
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The sequence number: the record's index in the log and its leaf index in the tree.
    pub seq: u64,
    /// When the log wrote it, in milliseconds since the Unix epoch (UTC); never decreasing.
    pub time_ms: u64,
    /// Who caused it (the authenticated principal, or `kinkod` for the daemon itself).
    pub principal: String,
    /// What happened.
    pub event: Event,
}

impl Record {
    /// The canonical line (without the newline).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let value = serde_json::to_value(self).map_err(|e| Error::Record(e.to_string()))?;
        let line = to_canonical_json(&value).map_err(|e| Error::Record(e.to_string()))?;
        if line.len() > MAX_RECORD_LEN {
            return Err(Error::RecordTooLarge {
                len: line.len(),
                max: MAX_RECORD_LEN,
            });
        }
        Ok(line)
    }

    /// Decodes a line (without its newline) and checks it is exactly the canonical encoding
    /// of the record it holds.
    pub fn decode(line: &[u8]) -> Result<Self, Error> {
        if line.len() > MAX_RECORD_LEN {
            return Err(Error::RecordTooLarge {
                len: line.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let record: Record =
            serde_json::from_slice(line).map_err(|e| Error::Record(e.to_string()))?;
        let again = record.encode()?;
        if again != line {
            return Err(Error::Record("line is not in canonical form".into()));
        }
        Ok(record)
    }
}

/// A record's canonical line up to its sequence number: `{"event":…,"principal":…,"seq":`.
///
/// The keys of a record sort as `event`, `principal`, `seq`, `time_ms`, so the canonical line
/// is this prefix, the sequence number, `,"time_ms":`, the time and `}`. The log encodes the
/// prefix on the appending thread and the writer splices in the two numbers it assigns; tests
/// check the result is byte for byte [`Record::encode`].
#[derive(Debug, Clone)]
pub(crate) struct RecordPrefix(Vec<u8>);

impl RecordPrefix {
    /// Encodes the prefix of the record of `event` by `principal`.
    pub(crate) fn encode(principal: &str, event: &Event) -> Result<Self, Error> {
        let value = serde_json::to_value(event).map_err(|e| Error::Record(e.to_string()))?;
        let event_json = to_canonical_json(&value).map_err(|e| Error::Record(e.to_string()))?;
        let principal_json = to_canonical_json(&serde_json::Value::String(principal.into()))
            .map_err(|e| Error::Record(e.to_string()))?;
        let mut out = Vec::with_capacity(event_json.len() + principal_json.len() + 64);
        out.extend_from_slice(b"{\"event\":");
        out.extend_from_slice(&event_json);
        out.extend_from_slice(b",\"principal\":");
        out.extend_from_slice(&principal_json);
        out.extend_from_slice(b",\"seq\":");
        // Room for the two numbers (at most 20 digits each) and the rest.
        let len = out.len().saturating_add(60);
        if len > MAX_RECORD_LEN {
            return Err(Error::RecordTooLarge {
                len,
                max: MAX_RECORD_LEN,
            });
        }
        Ok(Self(out))
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The full canonical line for sequence number `seq` and time `time_ms`.
    pub(crate) fn finish(mut self, seq: u64, time_ms: u64) -> Result<Vec<u8>, Error> {
        use std::io::Write as _;
        write!(self.0, "{seq},\"time_ms\":{time_ms}}}")
            .map_err(|e| Error::Record(e.to_string()))?;
        Ok(self.0)
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
