//! The auditor's offline verifier.
//!
//! [`verify_dir`] re-checks a log directory without trusting the daemon, its operators, or the
//! files: it recomputes every leaf and the tree, checks every checkpoint's signature by the
//! log key and that each one's root is the root of the records at its size (which makes all
//! checkpoints consistent with each other and with any checkpoint the auditor kept), and
//! re-verifies what each record claims (intent digests, approval signatures, that every
//! signature was authorized once and verifies over the authorized input, that every signature
//! is covered by a signed checkpoint). The policy rules (officers of the policy in force,
//! quorum, the intent the payload decodes to) plug in through [`AuthorizationCheck`].
//!
//! [`prove`] and [`consistency`] produce and check inclusion and consistency proofs.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::path::Path;

use kinko_intent::{Intent, SigningInput};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::log::{CHECKPOINTS_FILE, CheckpointLine, complete_len, io_err, list_segments};
use crate::merkle::{
    CompactRange, Hash, MerkleTree, empty_root, hashes_equal, leaf_hash, verify_consistency,
    verify_inclusion,
};
use crate::note::{Checkpoint, VerifierKey};
use crate::record::{
    Event, GovernanceVote, KeyCreated, PolicyInstalled, PolicyProposed, Record, SigningAuthorized,
    Unfreeze,
};
use crate::tlog_policy::WitnessPolicy;

/// The most findings kept in a report (the first is what matters).
pub const MAX_FINDINGS: usize = 1000;

/// The policy half of authorization re-verification, implemented over kinko-policy (and
/// kinko-chain, to decode the payload): the verifier calls it in log order.
pub trait AuthorizationCheck {
    /// A key was created by `record` (the check remembers its public key, to decode payloads
    /// for it).
    fn key_created(&mut self, record: &Record, event: &KeyCreated) -> Result<(), String> {
        let _ = (record, event);
        Ok(())
    }

    /// Signing was unfrozen by `record`: check that the unfreeze lifted `lifted` (the leaf hash
    /// of the freeze in force; `None` when signing was not frozen) with the unfreeze quorum (and
    /// delay, and no veto) of the policy in force, from the votes logged for it.
    fn unfrozen(
        &mut self,
        record: &Record,
        event: &Unfreeze,
        lifted: Option<&Hash>,
    ) -> Result<(), String> {
        let _ = (record, event, lifted);
        Ok(())
    }

    /// A policy change was proposed by `record`.
    fn policy_proposed(&mut self, record: &Record, event: &PolicyProposed) -> Result<(), String> {
        let _ = (record, event);
        Ok(())
    }

    /// An officer's governance vote was accepted by `record`: check it was valid when received
    /// (under the policy in force, for an open proposal or the freeze in force `frozen`) and
    /// remember it for the outcome.
    fn governance_vote(
        &mut self,
        record: &Record,
        event: &GovernanceVote,
        frozen: Option<&Hash>,
    ) -> Result<(), String> {
        let _ = (record, event, frozen);
        Ok(())
    }

    /// A policy was installed by `record`: check the installation (the hash of the text, the
    /// install quorum of the previous policy) and make it the policy in force.
    fn policy_installed(&mut self, record: &Record, event: &PolicyInstalled) -> Result<(), String>;

    /// Check the signing authorization `record` under the policy in force: the intent is
    /// allowed for `requester` (the principal of the request's `request_received` record), every
    /// approval is by an officer of that policy over this request and intent, unexpired, and
    /// together they meet its quorum. The verifier has already checked the intent's digest, the
    /// approvals' signatures, the freeze state and the policy hash; the check also decodes the
    /// recorded payload itself and compares the intent.
    fn signing_authorized(
        &mut self,
        record: &Record,
        event: &SigningAuthorized,
        intent: &Intent,
        requester: Option<&str>,
    ) -> Result<(), String>;
}

/// Options of [`verify_dir`].
#[derive(Default)]
pub struct VerifyOptions<'a> {
    /// The expected checkpoint origin; the verifier key's name when `None`.
    pub origin: Option<String>,
    /// Signed checkpoints the auditor kept from earlier audits (or obtained elsewhere): the log
    /// must extend each of them.
    pub trusted_checkpoints: Vec<String>,
    /// The policy check; without it the report says authorization was not re-verified.
    pub authorization: Option<&'a mut dyn AuthorizationCheck>,
    /// The auditor's witness policy (C2SP tlog-policy): every record must be covered by a
    /// checkpoint of the log cosigned by the policy's quorum of witnesses.
    pub witness_policy: Option<&'a WitnessPolicy>,
}

impl fmt::Debug for VerifyOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("origin", &self.origin)
            .field("trusted_checkpoints", &self.trusted_checkpoints.len())
            .field("authorization", &self.authorization.is_some())
            .field("witness_policy", &self.witness_policy.is_some())
            .finish()
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The record concerned, if any.
    pub seq: Option<u64>,
    /// Where (file and line, or checkpoint).
    pub location: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "record {seq} ({}): {}", self.location, self.reason),
            None => write!(f, "{}: {}", self.location, self.reason),
        }
    }
}

/// The result of [`verify_dir`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Records read.
    pub records: u64,
    /// Signed checkpoints in the log that verified.
    pub checkpoints: u64,
    /// `signature_produced` records.
    pub signatures: u64,
    /// `signing_authorized` records.
    pub authorizations: u64,
    /// `policy_installed` records.
    pub policies: u64,
    /// `daemon_started` records: (sequence number, version, SHA-256 of the binary) of each
    /// kinkod build that started on the log, in order.
    pub builds: Vec<(u64, String, String)>,
    /// Officers seen in approvals.
    pub officers: BTreeSet<String>,
    /// The root of all records read.
    pub root: Option<Hash>,
    /// The latest checkpoint of the log that verified.
    pub latest_checkpoint: Option<Checkpoint>,
    /// Whether an [`AuthorizationCheck`] re-verified approvals and quorum.
    pub authorization_checked: bool,
    /// With a witness policy: the largest size of a checkpoint cosigned by its quorum
    /// (`Some(0)`: none).
    pub witnessed_size: Option<u64>,
    /// Failures: the log must not be trusted. The first is the first bad record.
    pub failures: Vec<Finding>,
    /// Observations that are not failures (a torn final line after a crash).
    pub warnings: Vec<Finding>,
}

impl Report {
    /// Whether the log verified.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    fn fail(&mut self, seq: Option<u64>, location: impl Into<String>, reason: impl Into<String>) {
        if self.failures.len() < MAX_FINDINGS {
            self.failures.push(Finding {
                seq,
                location: location.into(),
                reason: reason.into(),
            });
        }
    }

    fn warn(&mut self, seq: Option<u64>, location: impl Into<String>, reason: impl Into<String>) {
        if self.warnings.len() < MAX_FINDINGS {
            self.warnings.push(Finding {
                seq,
                location: location.into(),
                reason: reason.into(),
            });
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "records:        {}", self.records)?;
        writeln!(f, "checkpoints:    {}", self.checkpoints)?;
        if let Some(cp) = &self.latest_checkpoint {
            writeln!(
                f,
                "latest:         size {} root {}",
                cp.size,
                hex::encode(cp.root)
            )?;
        }
        writeln!(f, "signatures:     {}", self.signatures)?;
        writeln!(f, "authorizations: {}", self.authorizations)?;
        writeln!(f, "policies:       {}", self.policies)?;
        for (seq, version, sha) in &self.builds {
            writeln!(
                f,
                "build:          kinkod {version} sha256 {sha} (from record {seq})"
            )?;
        }
        let officers: Vec<&str> = self.officers.iter().map(String::as_str).collect();
        writeln!(
            f,
            "officers:       {} ({})",
            officers.len(),
            officers.join(", ")
        )?;
        if let Some(w) = self.witnessed_size {
            writeln!(
                f,
                "witnessed:      up to size {w} (the witness policy's quorum)"
            )?;
        }
        if !self.authorization_checked {
            writeln!(
                f,
                "authorization:  approvals' officers and quorum NOT re-checked against the policy"
            )?;
        }
        writeln!(
            f,
            "anomalies:      {}",
            self.failures.len() + self.warnings.len()
        )?;
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        for x in &self.failures {
            writeln!(f, "  FAILURE: {x}")?;
        }
        match self.failures.first() {
            None => write!(f, "result:         OK"),
            Some(first) => write!(f, "result:         FAILED at {first}"),
        }
    }
}

/// A checkpoint the records must match at its size.
struct Target {
    size: u64,
    root: Hash,
    label: String,
    from_log: bool,
}

/// What the verifier remembers of an authorization until its signature is produced.
struct Authorized {
    seq: u64,
    key_name: String,
    to_sign: Vec<SigningInput>,
    replay_keys: Vec<String>,
}

/// What a signing input is, for the double-sign check: the prehash for ECDSA, the message for
/// Ed25519.
fn signed_bytes(input: &SigningInput) -> &str {
    match input {
        SigningInput::EcdsaSecp256k1 { digest, .. } => digest,
        SigningInput::Ed25519 { message, .. } => message,
    }
}

/// Verifies the log in `dir` under the log key `key`. Returns `Err` only when the directory
/// cannot be read at all; every problem with its contents is a finding in the [`Report`].
pub fn verify_dir(
    dir: &Path,
    key: &VerifierKey,
    options: VerifyOptions<'_>,
) -> Result<Report, Error> {
    let VerifyOptions {
        origin,
        trusted_checkpoints,
        mut authorization,
        witness_policy,
    } = options;
    let origin = origin.unwrap_or_else(|| key.name().to_string());
    let mut report = Report {
        authorization_checked: authorization.is_some(),
        witnessed_size: witness_policy.map(|_| 0),
        ..Report::default()
    };

    // Checkpoints: the log's own, then the auditor's.
    let mut targets: Vec<Target> = Vec::new();
    let cps_path = dir.join(CHECKPOINTS_FILE);
    let cps_data = match fs::read(&cps_path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.fail(None, CHECKPOINTS_FILE, "no checkpoints file");
            Vec::new()
        }
        Err(e) => return Err(io_err("read", &cps_path, e)),
    };
    let complete = complete_len(&cps_data);
    if complete < cps_data.len() {
        report.warn(
            None,
            CHECKPOINTS_FILE,
            format!(
                "incomplete final line of {} bytes (interrupted write) ignored",
                cps_data.len() - complete
            ),
        );
    }
    let mut prev: Option<(u64, Hash)> = None;
    for (i, line) in cps_data
        .get(..complete)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        let label = format!("{CHECKPOINTS_FILE}:{}", i + 1);
        let mut witnessed = false;
        let cp = serde_json::from_slice::<CheckpointLine>(line)
            .map_err(|e| e.to_string())
            .and_then(|cl| {
                let cp =
                    Checkpoint::open(&cl.note, key, Some(&origin)).map_err(|e| e.to_string())?;
                witnessed = witness_policy.is_some_and(|p| p.verify(&cl.note, key).is_ok());
                Ok(cp)
            });
        let cp = match cp {
            Ok(cp) => cp,
            Err(e) => {
                report.fail(None, label, format!("checkpoint does not verify: {e}"));
                continue;
            }
        };
        if let Some((psize, proot)) = prev {
            if cp.size < psize {
                report.fail(
                    None,
                    label.clone(),
                    format!("checkpoint size {} is smaller than the previous {psize}: the log went back", cp.size),
                );
            } else if cp.size == psize && !hashes_equal(&cp.root, &proot) {
                report.fail(
                    None,
                    label.clone(),
                    format!("two checkpoints of size {psize} with different roots: a fork"),
                );
            }
        }
        prev = Some((cp.size, cp.root));
        report.checkpoints += 1;
        if witnessed {
            report.witnessed_size = report.witnessed_size.map(|w| w.max(cp.size));
        }
        targets.push(Target {
            size: cp.size,
            root: cp.root,
            label,
            from_log: true,
        });
        report.latest_checkpoint = Some(cp);
    }
    for (i, note) in trusted_checkpoints.iter().enumerate() {
        let label = format!("auditor-held checkpoint {}", i + 1);
        match Checkpoint::open(note, key, Some(&origin)) {
            Ok(cp) => targets.push(Target {
                size: cp.size,
                root: cp.root,
                label,
                from_log: false,
            }),
            Err(e) => report.fail(None, label, format!("does not verify: {e}")),
        }
    }
    targets.sort_by_key(|t| t.size);

    // Records.
    let mut range = CompactRange::new();
    let mut next_target = 0usize;
    let mut covered_by_log_checkpoint = 0u64;
    let mut last_ok = 0u64;
    let mut state = SemanticState::default();
    let segments = list_segments(dir)?;
    let count = segments.len();
    if count == 0 {
        report.warn(None, "log", "no segment files");
    }
    for (si, (first, path)) in segments.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if *first != range.size() {
            report.fail(
                Some(range.size()),
                name.clone(),
                format!(
                    "segment starts at record {first} but {} records precede it",
                    range.size()
                ),
            );
        }
        let data = fs::read(path).map_err(|e| io_err("read segment", path, e))?;
        let complete = complete_len(&data);
        if complete < data.len() {
            let msg = format!(
                "incomplete final line of {} bytes (a write interrupted by a crash)",
                data.len() - complete
            );
            if si + 1 == count {
                report.warn(Some(range.size()), name.clone(), msg);
            } else {
                report.fail(Some(range.size()), name.clone(), msg);
            }
        }
        let body = data.get(..complete).unwrap_or_default();
        let lines = body.strip_suffix(b"\n").unwrap_or(body);
        if lines.is_empty() {
            continue;
        }
        for (li, line) in lines.split(|&b| b == b'\n').enumerate() {
            // Match checkpoints at this size before adding the next leaf.
            check_targets(
                &mut report,
                &range,
                &targets,
                &mut next_target,
                &mut covered_by_log_checkpoint,
                &mut last_ok,
            );
            let seq = range.size();
            let location = format!("{name}:{}", li + 1);
            let h = leaf_hash(line);
            range.push(h)?;
            report.records += 1;
            match Record::decode(line) {
                Ok(record) => {
                    let auth: Option<&mut dyn AuthorizationCheck> = match authorization.as_mut() {
                        Some(a) => Some(&mut **a),
                        None => None,
                    };
                    state.check(&mut report, seq, &location, &h, &record, auth);
                }
                Err(e) => report.fail(Some(seq), location, format!("unreadable record: {e}")),
            }
        }
    }
    check_targets(
        &mut report,
        &range,
        &targets,
        &mut next_target,
        &mut covered_by_log_checkpoint,
        &mut last_ok,
    );
    for t in targets.iter().skip(next_target) {
        report.fail(
            None,
            t.label.clone(),
            format!(
                "covers {} records but the log holds only {}: records are missing (truncated log)",
                t.size,
                range.size()
            ),
        );
    }
    if let Some(seq) = state.last_signature_seq
        && seq >= covered_by_log_checkpoint
    {
        report.fail(
            Some(seq),
            "signature_produced",
            format!(
                "signature record not covered by any signed checkpoint (the log's checkpoints cover {covered_by_log_checkpoint} records)"
            ),
        );
    }
    if let Some(w) = report.witnessed_size
        && w < range.size()
    {
        report.fail(
            Some(w),
            CHECKPOINTS_FILE,
            format!(
                "records {w} to {} are not covered by a checkpoint cosigned by the witness quorum (the newest such checkpoint has size {w}); fetch again once the witnesses caught up (`kinko audit fetch --witnessed`)",
                range.size().saturating_sub(1)
            ),
        );
    }
    for (request, a) in &state.authorized {
        report.warn(
            Some(a.seq),
            "signing_authorized",
            format!("request {request} was authorized but no signature was recorded"),
        );
    }
    report.signatures = state.signatures;
    report.authorizations = state.authorizations;
    report.policies = state.policies;
    report.builds = std::mem::take(&mut state.builds);
    report.officers = state.officers;
    report.root = Some(range.root());
    Ok(report)
}

fn check_targets(
    report: &mut Report,
    range: &CompactRange,
    targets: &[Target],
    next: &mut usize,
    covered: &mut u64,
    last_ok: &mut u64,
) {
    while let Some(t) = targets.get(*next) {
        if t.size != range.size() {
            break;
        }
        let root = if t.size == 0 {
            empty_root()
        } else {
            range.root()
        };
        if hashes_equal(&root, &t.root) {
            if t.from_log {
                *covered = (*covered).max(t.size);
            }
            *last_ok = (*last_ok).max(t.size);
        } else {
            report.fail(
                t.size.checked_sub(1),
                t.label.clone(),
                format!(
                    "the first {} records do not hash to this checkpoint's root: a record among {}..={} was altered, removed or reordered, or the history was rewritten",
                    t.size,
                    *last_ok,
                    t.size.saturating_sub(1)
                ),
            );
        }
        *next += 1;
    }
}

#[derive(Default)]
struct SemanticState {
    last_time: u64,
    policy_in_force: Option<Vec<u8>>,
    frozen: bool,
    /// The leaf hash of the freeze in force (the identity an unfreeze must name).
    freeze_id: Option<Hash>,
    /// Per request: the payload's SHA-256 and the requester principal.
    payloads: HashMap<String, ([u8; 32], String)>,
    keys: HashMap<String, Vec<u8>>,
    authorized: HashMap<String, Authorized>,
    signed: BTreeSet<String>,
    cancelled: BTreeSet<String>,
    /// (key, replay key) → the request whose signature consumed it: a nonce, an outpoint, a
    /// Safe nonce, a Solana message or durable nonce is signed at most once per key.
    replay_signed: HashMap<(String, String), String>,
    /// (key, signed digest or message) → the request that signed it.
    digest_signed: HashMap<(String, String), String>,
    last_signature_seq: Option<u64>,
    signatures: u64,
    authorizations: u64,
    policies: u64,
    builds: Vec<(u64, String, String)>,
    officers: BTreeSet<String>,
}

impl SemanticState {
    fn check(
        &mut self,
        report: &mut Report,
        seq: u64,
        location: &str,
        leaf: &Hash,
        record: &Record,
        auth: Option<&mut dyn AuthorizationCheck>,
    ) {
        let mut fail = |reason: String| report.fail(Some(seq), location, reason);
        if record.seq != seq {
            fail(format!(
                "carries sequence number {} at position {seq}: records were removed, inserted or reordered",
                record.seq
            ));
        }
        if record.time_ms < self.last_time {
            fail(format!(
                "time {} is earlier than the previous record's {}",
                record.time_ms, self.last_time
            ));
        }
        self.last_time = self.last_time.max(record.time_ms);
        match &record.event {
            Event::KeyCreated(e) => {
                self.check_approvals(&e.approvals, &mut fail);
                if let Some(a) = auth
                    && let Err(reason) = a.key_created(record, e)
                {
                    fail(format!("key creation does not verify: {reason}"));
                }
                self.keys.insert(e.key_name.clone(), e.public_key.0.clone());
            }
            Event::PolicyInstalled(e) => {
                self.policies += 1;
                self.check_approvals(&e.approvals, &mut fail);
                if let Some(a) = auth
                    && let Err(reason) = a.policy_installed(record, e)
                {
                    fail(format!("policy installation does not verify: {reason}"));
                }
                self.policy_in_force = Some(e.policy_hash.0.clone());
            }
            Event::RequestReceived(e) => {
                if let Some(intent) = &e.intent
                    && let Err(reason) = intent.check()
                {
                    fail(reason);
                }
                self.payloads.insert(
                    e.request_id.clone(),
                    (
                        Sha256::digest(&e.payload.0).into(),
                        record.principal.clone(),
                    ),
                );
            }
            Event::Decision(e) => {
                if self.policy_in_force.as_deref() != Some(&e.policy_hash.0[..]) {
                    fail(format!(
                        "decision under policy {} which is not the policy in force",
                        hex::encode(&e.policy_hash.0)
                    ));
                }
            }
            Event::Approval(e) => {
                self.check_approvals(std::slice::from_ref(&e.approval), &mut fail)
            }
            Event::Rejection(e) => {
                if let Some(s) = &e.signed {
                    self.check_approvals(std::slice::from_ref(s), &mut fail);
                }
            }
            Event::Freeze(e) => {
                if let Some(s) = &e.signed {
                    self.check_approvals(std::slice::from_ref(s), &mut fail);
                }
                self.frozen = true;
                self.freeze_id = Some(*leaf);
            }
            Event::Unfreeze(e) => {
                self.check_approvals(&e.approvals, &mut fail);
                if !self.frozen {
                    fail("unfreeze while signing was not frozen".into());
                }
                if let Some(a) = auth
                    && let Err(reason) = a.unfrozen(record, e, self.freeze_id.as_ref())
                {
                    fail(format!("unfreeze does not verify: {reason}"));
                }
                self.frozen = false;
                self.freeze_id = None;
            }
            Event::Cancelled(e) => {
                if self.authorized.contains_key(&e.request_id)
                    || self.signed.contains(&e.request_id)
                {
                    fail(format!(
                        "request {} cancelled after its signing was authorized",
                        e.request_id
                    ));
                }
                self.cancelled.insert(e.request_id.clone());
            }
            Event::DaemonStarted(e) => {
                if e.binary_sha256.0.len() != 32 {
                    fail(format!(
                        "daemon_started: binary_sha256 has {} bytes, not 32",
                        e.binary_sha256.0.len()
                    ));
                }
                self.builds
                    .push((seq, e.version.clone(), hex::encode(&e.binary_sha256.0)));
            }
            Event::PolicyProposed(e) => {
                if let Some(a) = auth
                    && let Err(reason) = a.policy_proposed(record, e)
                {
                    fail(format!("policy proposal does not verify: {reason}"));
                }
            }
            Event::GovernanceVote(e) => {
                self.check_approvals(std::slice::from_ref(&e.approval), &mut fail);
                if let Some(a) = auth
                    && let Err(reason) = a.governance_vote(record, e, self.freeze_id.as_ref())
                {
                    fail(format!("governance vote does not verify: {reason}"));
                }
            }
            Event::SigningAuthorized(e) => {
                self.authorizations += 1;
                let intent = match e.intent.check() {
                    Ok(i) => Some(i),
                    Err(reason) => {
                        fail(reason);
                        None
                    }
                };
                if self.frozen {
                    fail("signing authorized while signing was frozen".into());
                }
                if self.cancelled.contains(&e.request_id) {
                    fail(format!(
                        "request {} signed after it was cancelled",
                        e.request_id
                    ));
                }
                match &self.policy_in_force {
                    None => fail("signing authorized with no policy installed".into()),
                    Some(p) if p[..] != e.policy_hash.0[..] => fail(format!(
                        "authorized under policy {} but the policy in force is {}",
                        hex::encode(&e.policy_hash.0),
                        hex::encode(p)
                    )),
                    Some(_) => {}
                }
                match self.payloads.get(&e.request_id) {
                    None => fail(format!("no request {} was received", e.request_id)),
                    Some((h, _)) => {
                        let d: [u8; 32] = Sha256::digest(&e.payload.0).into();
                        if *h != d {
                            fail("authorized payload differs from the payload received".into());
                        }
                    }
                }
                self.check_approvals(&e.approvals, &mut fail);
                let requester = self.payloads.get(&e.request_id).map(|(_, p)| p.as_str());
                if let (Some(a), Some(intent)) = (auth, &intent)
                    && let Err(reason) = a.signing_authorized(record, e, intent, requester)
                {
                    fail(format!("authorization does not verify: {reason}"));
                }
                if let Some(intent) = intent {
                    self.authorized.insert(
                        e.request_id.clone(),
                        Authorized {
                            seq,
                            key_name: e.key_name.clone(),
                            to_sign: intent.to_sign,
                            replay_keys: intent.replay_keys,
                        },
                    );
                }
            }
            Event::SignatureProduced(e) => {
                self.signatures += 1;
                self.last_signature_seq = Some(seq);
                let Some(a) = self.authorized.remove(&e.request_id) else {
                    if self.signed.contains(&e.request_id) {
                        fail(format!("request {} signed a second time", e.request_id));
                    } else {
                        fail(format!(
                            "signature for request {} without a signing authorization",
                            e.request_id
                        ));
                    }
                    return;
                };
                self.signed.insert(e.request_id.clone());
                // A double-sign is visible from the log alone: the same replay key (an Ethereum
                // nonce, a Bitcoin outpoint, …) or the same digest signed by two requests.
                for rk in &a.replay_keys {
                    let slot = self
                        .replay_signed
                        .entry((a.key_name.clone(), rk.clone()))
                        .or_insert_with(|| e.request_id.clone());
                    if *slot != e.request_id {
                        let first = slot.clone();
                        fail(format!(
                            "replay key {rk} of key {} signed twice: by request {first} and by request {}",
                            a.key_name, e.request_id
                        ));
                    }
                }
                for input in &a.to_sign {
                    let d = signed_bytes(input).to_string();
                    let slot = self
                        .digest_signed
                        .entry((a.key_name.clone(), d.clone()))
                        .or_insert_with(|| e.request_id.clone());
                    if *slot != e.request_id {
                        let first = slot.clone();
                        fail(format!(
                            "digest {d} of key {} signed twice: by request {first} and by request {}",
                            a.key_name, e.request_id
                        ));
                    }
                }
                if a.key_name != e.key_name {
                    fail(format!(
                        "signed with key {} but key {} was authorized",
                        e.key_name, a.key_name
                    ));
                }
                let mut expected = a.to_sign;
                if expected.len() != e.signatures.len() {
                    fail(format!(
                        "{} signatures for {} authorized signing inputs",
                        e.signatures.len(),
                        expected.len()
                    ));
                }
                let known_key = self.keys.get(&e.key_name);
                for s in &e.signatures {
                    match expected.iter().position(|x| *x == s.input) {
                        Some(i) => {
                            expected.swap_remove(i);
                        }
                        None => {
                            fail("signature over an input the intent did not authorize".into());
                            continue;
                        }
                    }
                    if let Some(k) = known_key {
                        let pk = match &s.input {
                            SigningInput::EcdsaSecp256k1 { public_key, .. }
                            | SigningInput::Ed25519 { public_key, .. } => public_key,
                        };
                        if hex::encode(k) != *pk {
                            fail(format!(
                                "signing input key {pk} is not key {}'s public key",
                                e.key_name
                            ));
                        }
                    }
                    if let Err(reason) = crate::sigs::signing_input_valid(&s.input, &s.signature.0)
                    {
                        fail(reason);
                    }
                }
            }
            Event::Refusal(_) => {}
        }
    }

    fn check_approvals(
        &mut self,
        approvals: &[crate::record::Approval],
        fail: &mut impl FnMut(String),
    ) {
        for a in approvals {
            self.officers.insert(a.officer.clone());
            if !a.signature_valid() {
                fail(format!(
                    "approval signature by officer {} does not verify",
                    a.officer
                ));
            }
        }
    }
}

/// Reads a log directory into a tree, returning it with the verified latest checkpoint.
/// The records are hashed as they are on disk; use [`verify_dir`] to check them.
fn load(dir: &Path, key: &VerifierKey, want: Option<u64>) -> Result<Loaded, Error> {
    let mut tree = MerkleTree::new();
    let mut line_at = None;
    for (first, path) in list_segments(dir)? {
        if first != tree.size() {
            return Err(Error::Corrupt {
                path,
                reason: format!("segment starts at {first}, expected {}", tree.size()),
            });
        }
        let data = fs::read(&path).map_err(|e| io_err("read segment", &path, e))?;
        let body = data.get(..complete_len(&data)).unwrap_or_default();
        let lines = body.strip_suffix(b"\n").unwrap_or(body);
        if lines.is_empty() {
            continue;
        }
        for line in lines.split(|&b| b == b'\n') {
            if want == Some(tree.size()) {
                line_at = Some(String::from_utf8_lossy(line).into_owned());
            }
            tree.append(line);
        }
    }
    let cps_path = dir.join(CHECKPOINTS_FILE);
    let data = fs::read(&cps_path).map_err(|e| io_err("read", &cps_path, e))?;
    let body = data.get(..complete_len(&data)).unwrap_or_default();
    let last = body
        .split(|&b| b == b'\n')
        .rfind(|l| !l.is_empty())
        .ok_or_else(|| Error::CheckpointMismatch("the log has no checkpoint".into()))?;
    let cl: CheckpointLine = serde_json::from_slice(last)
        .map_err(|e| Error::CheckpointMismatch(format!("last checkpoint line: {e}")))?;
    let cp = Checkpoint::open(&cl.note, key, Some(key.name()))?;
    if cp.size > tree.size() || !hashes_equal(&tree.root_at(cp.size)?, &cp.root) {
        return Err(Error::CheckpointMismatch(
            "the records do not match the log's latest checkpoint".into(),
        ));
    }
    Ok(Loaded {
        tree,
        checkpoint: cp,
        note: cl.note,
        line: line_at,
    })
}

struct Loaded {
    tree: MerkleTree,
    checkpoint: Checkpoint,
    note: String,
    line: Option<String>,
}

/// An inclusion proof of one record in a signed checkpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InclusionProof {
    /// The record's sequence number.
    pub seq: u64,
    /// The record line.
    pub line: String,
    /// The signed checkpoint (a signed note).
    pub checkpoint: String,
    /// The audit path (RFC 9162 §2.1.3.1).
    pub proof: Vec<Hash>,
}

impl fmt::Display for InclusionProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "record {}", self.seq)?;
        writeln!(f, "{}", self.line)?;
        writeln!(
            f,
            "leaf hash {}",
            hex::encode(leaf_hash(self.line.as_bytes()))
        )?;
        writeln!(f, "inclusion proof ({} hashes):", self.proof.len())?;
        for h in &self.proof {
            writeln!(f, "  {}", hex::encode(h))?;
        }
        writeln!(f, "checkpoint:")?;
        write!(f, "{}", self.checkpoint)
    }
}

/// Verifies an inclusion proof: the checkpoint is signed by `key` and the record line is at
/// `seq` in the tree it commits to.
pub fn verify_inclusion_proof(key: &VerifierKey, p: &InclusionProof) -> Result<Checkpoint, Error> {
    let cp = Checkpoint::open(&p.checkpoint, key, Some(key.name()))?;
    verify_inclusion(
        p.seq,
        cp.size,
        &leaf_hash(p.line.as_bytes()),
        &p.proof,
        &cp.root,
    )?;
    Ok(cp)
}

impl InclusionProof {
    /// The proof as a self-contained JSON bundle (`kinko audit prove --bundle`): the record
    /// line, its sequence number, the audit path (hex) and the signed checkpoint with whatever
    /// cosignatures it carries. Anyone can check it with the log key and, where witnesses are
    /// required, the witness policy.
    pub fn to_bundle(&self) -> String {
        serde_json::json!({
            "format": BUNDLE_FORMAT,
            "seq": self.seq,
            "record": self.line,
            "proof": self.proof.iter().map(hex::encode).collect::<Vec<_>>(),
            "checkpoint": self.checkpoint,
        })
        .to_string()
    }

    /// Reads a bundle written by [`InclusionProof::to_bundle`] (not verified here).
    pub fn from_bundle(text: &str) -> Result<Self, Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Bundle {
            format: String,
            seq: u64,
            record: String,
            proof: Vec<String>,
            checkpoint: String,
        }
        let bad = |why: String| Error::Record(format!("proof bundle: {why}"));
        let b: Bundle = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if b.format != BUNDLE_FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {BUNDLE_FORMAT:?}",
                b.format
            )));
        }
        if b.proof.len() > 64 {
            return Err(bad("more than 64 proof hashes".into()));
        }
        let proof = b
            .proof
            .iter()
            .map(|h| {
                let mut out = [0u8; crate::merkle::HASH_LEN];
                hex::decode_to_slice(h, &mut out)
                    .map(|()| out)
                    .map_err(|_| bad("a proof hash is not 32 bytes of hex".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InclusionProof {
            seq: b.seq,
            line: b.record,
            checkpoint: b.checkpoint,
            proof,
        })
    }
}

/// The `format` of a proof bundle.
pub const BUNDLE_FORMAT: &str = "kinko-inclusion-proof/v1";

/// Verifies an inclusion proof whose checkpoint must also be cosigned by the quorum of the
/// witness policy `policy`.
pub fn verify_witnessed_inclusion_proof(
    key: &VerifierKey,
    policy: &WitnessPolicy,
    p: &InclusionProof,
) -> Result<Checkpoint, Error> {
    policy.verify(&p.checkpoint, key)?;
    verify_inclusion_proof(key, p)
}

/// Proves that record `seq` of the log in `dir` is included in the newest checkpoint of the
/// log cosigned by the quorum of `policy`; checked before it is returned.
pub fn prove_witnessed(
    dir: &Path,
    key: &VerifierKey,
    seq: u64,
    policy: &WitnessPolicy,
) -> Result<InclusionProof, Error> {
    let loaded = load(dir, key, Some(seq))?;
    let line = loaded.line.ok_or(Error::LeafIndex {
        index: seq,
        size: loaded.tree.size(),
    })?;
    let cps_path = dir.join(CHECKPOINTS_FILE);
    let data = fs::read(&cps_path).map_err(|e| io_err("read", &cps_path, e))?;
    let body = data.get(..complete_len(&data)).unwrap_or_default();
    let mut best: Option<(u64, String)> = None;
    for l in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(cl) = serde_json::from_slice::<CheckpointLine>(l) else {
            continue;
        };
        if let Ok(cp) = policy.verify(&cl.note, key)
            && cp.size > seq
            && cp.size <= loaded.tree.size()
            && hashes_equal(&loaded.tree.root_at(cp.size)?, &cp.root)
            && best.as_ref().is_none_or(|(s, _)| cp.size > *s)
        {
            best = Some((cp.size, cl.note));
        }
    }
    let (size, note) = best.ok_or_else(|| {
        Error::CheckpointMismatch(format!(
            "no checkpoint covering record {seq} is cosigned by the witness quorum"
        ))
    })?;
    let p = InclusionProof {
        seq,
        line,
        checkpoint: note,
        proof: loaded.tree.inclusion_proof(seq, size)?,
    };
    verify_witnessed_inclusion_proof(key, policy, &p)?;
    Ok(p)
}

/// The sequence number of the `signature_produced` record of request `request_id` in the log
/// in `dir`.
pub fn signature_record(dir: &Path, request_id: &str) -> Result<u64, Error> {
    let mut seq = 0u64;
    for (_, path) in list_segments(dir)? {
        let data = fs::read(&path).map_err(|e| io_err("read segment", &path, e))?;
        let body = data.get(..complete_len(&data)).unwrap_or_default();
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(r) = crate::record::Record::decode(line)
                && let crate::record::Event::SignatureProduced(sp) = &r.event
                && sp.request_id == request_id
            {
                return Ok(r.seq);
            }
            seq += 1;
        }
    }
    Err(Error::Record(format!(
        "no signature_produced record for request {request_id:?} among {seq} records"
    )))
}

/// Proves that record `seq` of the log in `dir` is included in the log's latest signed
/// checkpoint; the proof is checked before it is returned.
pub fn prove(dir: &Path, key: &VerifierKey, seq: u64) -> Result<InclusionProof, Error> {
    let loaded = load(dir, key, Some(seq))?;
    let size = loaded.checkpoint.size;
    let line = loaded.line.ok_or(Error::LeafIndex { index: seq, size })?;
    let proof = loaded.tree.inclusion_proof(seq, size)?;
    let p = InclusionProof {
        seq,
        line,
        checkpoint: loaded.note,
        proof,
    };
    verify_inclusion_proof(key, &p)?;
    Ok(p)
}

/// A verified consistency proof between two signed checkpoints.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsistencyProof {
    /// The older checkpoint.
    pub old: Checkpoint,
    /// The newer checkpoint.
    pub new: Checkpoint,
    /// The proof (RFC 9162 §2.1.4.1).
    pub proof: Vec<Hash>,
}

impl fmt::Display for ConsistencyProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checkpoint of {} records (root {}) is a prefix of checkpoint of {} records (root {})",
            self.old.size,
            hex::encode(self.old.root),
            self.new.size,
            hex::encode(self.new.root)
        )?;
        writeln!(f, "consistency proof ({} hashes):", self.proof.len())?;
        for h in &self.proof {
            writeln!(f, "  {}", hex::encode(h))?;
        }
        Ok(())
    }
}

/// Checks a consistency proof between two signed checkpoints (for example one kept from an
/// earlier audit and the latest one), without the log.
pub fn verify_consistency_proof(
    key: &VerifierKey,
    old_note: &str,
    new_note: &str,
    proof: &[Hash],
) -> Result<ConsistencyProof, Error> {
    let old = Checkpoint::open(old_note, key, Some(key.name()))?;
    let new = Checkpoint::open(new_note, key, Some(key.name()))?;
    verify_consistency(old.size, new.size, &old.root, &new.root, proof)?;
    Ok(ConsistencyProof {
        old,
        new,
        proof: proof.to_vec(),
    })
}

/// Proves from the log in `dir` that the signed checkpoint `old_note` is a prefix of the
/// signed checkpoint `new_note`, and checks the proof. Fails when the log's history differs
/// from either checkpoint (a rewritten or forked history).
pub fn consistency(
    dir: &Path,
    key: &VerifierKey,
    old_note: &str,
    new_note: &str,
) -> Result<ConsistencyProof, Error> {
    let old = Checkpoint::open(old_note, key, Some(key.name()))?;
    let new = Checkpoint::open(new_note, key, Some(key.name()))?;
    if old.size > new.size {
        return Err(Error::SizesOutOfOrder {
            old: old.size,
            new: new.size,
        });
    }
    let loaded = load(dir, key, None)?;
    for (label, cp) in [("old", &old), ("new", &new)] {
        let root = loaded.tree.root_at(cp.size).map_err(|_| {
            Error::CheckpointMismatch(format!(
                "the {label} checkpoint covers {} records but the log holds {}",
                cp.size,
                loaded.tree.size()
            ))
        })?;
        if !hashes_equal(&root, &cp.root) {
            return Err(Error::CheckpointMismatch(format!(
                "the log's first {} records do not match the {label} checkpoint: the history was rewritten",
                cp.size
            )));
        }
    }
    let proof = loaded.tree.consistency_proof(old.size, new.size)?;
    verify_consistency_proof(key, old_note, new_note, &proof)
}
