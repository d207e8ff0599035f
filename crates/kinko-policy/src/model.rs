//! The validated policy: domain types whose invariants hold once [`Policy::from_toml`] returned.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ed25519_dalek::VerifyingKey;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use kinko_intent::{Amount, Asset, Chain, IntentKind, Network, TokenRegistry};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Domain tag hashed before the policy file's bytes: `SHA-256("kinko/policy/v1\n" || file)`.
pub const POLICY_HASH_DOMAIN: &[u8] = b"kinko/policy/v1\n";

/// The SHA-256 of a policy file's exact bytes under [`POLICY_HASH_DOMAIN`]: what approvals bind
/// to and what the audit log records.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyHash(pub [u8; 32]);

impl PolicyHash {
    /// Hashes a policy file's bytes (any bytes: the hash does not depend on the file loading).
    pub fn of_file(bytes: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(POLICY_HASH_DOMAIN);
        h.update(bytes);
        PolicyHash(h.finalize().into())
    }
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(PolicyHash(out))
    }
}

impl fmt::Debug for PolicyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyHash({})", self.to_hex())
    }
}

impl fmt::Display for PolicyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for PolicyHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Which asset a velocity series or an asset matcher is about. Token contracts are stored in
/// their comparison form: lowercase for Ethereum, exact otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssetId {
    /// The chain's native asset.
    Native(Chain),
    /// A token, by chain and contract (mint) address.
    Token(Chain, String),
}

impl AssetId {
    /// The asset an intent moves.
    pub fn of_intent_asset(chain: Chain, asset: &Asset) -> Self {
        match asset {
            Asset::Native { .. } => AssetId::Native(chain),
            Asset::Token { contract, .. } => {
                AssetId::Token(chain, normalize_address(chain, contract.as_str()))
            }
        }
    }
}

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssetId::Native(c) => write!(f, "{c}:native"),
            AssetId::Token(c, a) => write!(f, "{c}:{a}"),
        }
    }
}

impl Serialize for AssetId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The comparison form of an address: Ethereum addresses are compared case-insensitively (EIP-55
/// checksums are a display form), so they are lowercased; other chains compare exactly.
pub fn normalize_address(chain: Chain, address: &str) -> String {
    match chain {
        Chain::Ethereum => address.to_ascii_lowercase(),
        Chain::Bitcoin | Chain::Solana => address.to_string(),
    }
}

/// A security officer who approves withdrawals and governance changes.
#[derive(Debug, Clone)]
pub struct Officer {
    /// Unique id; also the principal name the daemon maps the officer's certificate to.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Roles (`approver`, `admin`, `freezer`, …).
    pub roles: Vec<String>,
    /// Group (department) for quorums that need distinct groups.
    pub group: String,
    /// The Ed25519 key that signs the officer's approvals (checked: not a weak key); `None`
    /// for an officer who approves with a passkey.
    pub public_key: Option<VerifyingKey>,
    /// The passkey (WebAuthn ES256 credential) the officer approves with instead
    /// ([`crate::webauthn`]); exactly one of `public_key` and `passkey` is set.
    pub passkey: Option<crate::webauthn::PasskeyKey>,
    /// Line of the officer's table in the policy file.
    pub line: usize,
}

impl Officer {
    /// Whether `approval` is signed by this officer: an Ed25519 signature over its message for
    /// an Ed25519 officer, a verifying WebAuthn assertion over its message for a passkey
    /// officer (never the one for the other).
    pub fn signed(&self, approval: &crate::SignedApproval) -> bool {
        match (&self.public_key, &self.passkey, &approval.passkey) {
            (Some(pk), None, None) => pk
                .verify_strict(
                    &approval.message,
                    &ed25519_dalek::Signature::from_bytes(&approval.signature),
                )
                .is_ok(),
            (None, Some(key), Some(assertion)) => {
                crate::webauthn::verify(key, &approval.message, assertion).is_ok()
            }
            _ => false,
        }
    }

    /// The officer's key as recorded in approval evidence: the 32-byte Ed25519 key, or the
    /// passkey's 65-byte uncompressed P-256 point.
    pub fn key_bytes(&self) -> Vec<u8> {
        match (&self.public_key, &self.passkey) {
            (Some(pk), _) => pk.to_bytes().to_vec(),
            (None, Some(p)) => p.sec1(),
            (None, None) => Vec::new(),
        }
    }

    /// Whether the officer holds at least one of `roles`.
    pub fn has_any_role(&self, roles: &[String]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }
}

/// A system allowed to submit withdrawal requests (e.g. the exchange's withdrawal ledger).
#[derive(Debug, Clone)]
pub struct Requester {
    /// Unique id; the principal name the daemon maps the requester's certificate to.
    pub id: String,
    /// The Ed25519 key that signs the requester's requests.
    pub public_key: VerifyingKey,
    /// The signing keys it may request signatures from; `None`: all keys.
    pub keys: Option<Vec<String>>,
    /// Line in the policy file.
    pub line: usize,
}

/// A signing key in the HSM.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Unique name used by requests.
    pub name: String,
    /// The chain it signs for.
    pub chain: Chain,
    /// The network it signs for.
    pub network: Network,
    /// The HSM object label (`CKA_LABEL`).
    pub hsm_label: String,
    /// The key's public key, pinned by the policy: SEC1 compressed (33 bytes) for secp256k1,
    /// 32 bytes for Ed25519. The daemon refuses to start when the HSM's key differs, and an
    /// officer's client decodes with this key rather than one the daemon reports.
    pub public_key: Option<Vec<u8>>,
    /// Line in the policy file.
    pub line: usize,
}

/// One allowlisted address.
#[derive(Debug, Clone)]
pub struct BookEntry {
    /// The address as written in the file.
    pub address: String,
    /// What it is.
    pub label: String,
    /// When it was added; it counts from `added_at + cool_down` on.
    pub added_at: Timestamp,
    /// Line in the policy file.
    pub line: usize,
}

/// A named allowlist of addresses on one chain.
#[derive(Debug, Clone)]
pub struct AddressBook {
    /// Unique name.
    pub name: String,
    /// The chain of every entry.
    pub chain: Chain,
    /// How long a new entry waits before it counts.
    pub cool_down: SignedDuration,
    /// Entries by comparison form ([`normalize_address`]).
    pub entries: HashMap<String, BookEntry>,
    /// Line in the policy file.
    pub line: usize,
}

/// What an M-of-N approval needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumRequirement {
    /// How many distinct officers must approve (at least 1).
    pub count: u32,
    /// An approving officer must hold at least one of these roles.
    pub roles: Vec<String>,
    /// The counted officers must come from at least this many distinct groups (0 or 1: no
    /// constraint).
    pub distinct_groups: u32,
    /// The longest an approval may be valid (`expires_at − issued_at`).
    #[serde(serialize_with = "ser_duration")]
    pub lifetime: SignedDuration,
    /// Whether one valid reject from an eligible officer blocks the request.
    pub reject_blocks: bool,
}

pub(crate) fn ser_duration<S: Serializer>(d: &SignedDuration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{d:#}"))
}

/// What a matched rule does.
#[derive(Debug, Clone)]
pub enum RuleAction {
    /// Deny, with the reason shown to the requester and the officers.
    Deny(String),
    /// Allow once the quorum approves.
    RequireApprovals(QuorumRequirement),
}

/// A weekly time window in a named time zone; `from` inclusive, `until` exclusive, compared on
/// the local wall clock (so DST changes move the window in UTC, as people expect).
#[derive(Debug, Clone)]
pub struct TimeWindow {
    /// The IANA zone name as written.
    pub zone_name: String,
    /// The zone (from jiff's bundled tzdb).
    pub zone: TimeZone,
    /// Days of the week (local).
    pub days: Vec<Weekday>,
    /// Local start time, inclusive.
    pub from: Time,
    /// Local end time, exclusive.
    pub until: Time,
}

/// A cap on what was already signed with the same key for the same asset in a sliding window
/// `(now − window, now]`.
#[derive(Debug, Clone)]
pub struct VelocityLimit {
    /// The window length.
    pub window: SignedDuration,
    /// Maximum total in base units, including the request being evaluated.
    pub max_total: Option<Amount>,
    /// Maximum number of signatures, including the request being evaluated.
    pub max_count: Option<u64>,
}

/// A policy rule: matchers select it, conditions then must hold, and its action applies.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Position (0-based) in the file.
    pub index: usize,
    /// Line in the policy file.
    pub line: usize,
    /// Matches only these signing keys; `None`: any key.
    pub keys: Option<Vec<String>>,
    /// Matches only this chain.
    pub chain: Option<Chain>,
    /// Matches only this asset (and gives amounts their decimals).
    pub asset: Option<(AssetId, String, u8)>,
    /// Matches only these intent kinds.
    pub kinds: Option<Vec<IntentKind>>,
    /// Every destination must be in this book (past its cool-down); `None`: any destination.
    pub destination_book: Option<String>,
    /// Total out must be at least this (base units).
    pub min_amount: Option<Amount>,
    /// Total out must be at most this (base units).
    pub max_amount: Option<Amount>,
    /// Condition: the intent's worst-case fee (`fee.max`) must be at most this, in base units of
    /// the chain's native asset (wei, satoshi, lamport). Every rule that allows signing has one.
    pub max_fee: Option<Amount>,
    /// Condition: the worst-case fee must be at most this many basis points (1/10,000) of the
    /// total out. Only on rules whose asset is the chain's native asset (the fee's own asset).
    pub max_fee_bps: Option<u32>,
    /// Time windows: the current time must be inside one of them.
    pub windows: Vec<TimeWindow>,
    /// Velocity limits: all must hold.
    pub velocity: Vec<VelocityLimit>,
    /// What the rule does.
    pub action: RuleAction,
    /// A signature under this rule is released only once a checkpoint covering its
    /// `signing_authorized` record has met the witness quorum (kinkod's `[witness]`); if the
    /// witnesses do not cosign in time, the request fails and nothing is signed.
    pub witnessed: bool,
}

/// Who may install a new policy.
#[derive(Debug, Clone)]
pub struct InstallGovernance {
    /// The quorum of the *current* policy that approves a new policy hash.
    pub quorum: QuorumRequirement,
    /// How long after the quorum the new policy takes effect.
    pub time_lock: SignedDuration,
    /// Roles of which one officer can veto during the time-lock (empty: any officer).
    pub veto_roles: Vec<String>,
}

/// Who may freeze signing.
#[derive(Debug, Clone)]
pub struct FreezeGovernance {
    /// One officer with one of these roles freezes.
    pub roles: Vec<String>,
    /// The longest a freeze approval is valid.
    pub lifetime: SignedDuration,
}

/// Who may unfreeze signing.
#[derive(Debug, Clone)]
pub struct UnfreezeGovernance {
    /// The quorum that approves the unfreeze.
    pub quorum: QuorumRequirement,
    /// How long after the quorum the unfreeze takes effect.
    pub delay: SignedDuration,
}

/// Governance: installing policies, freezing and unfreezing.
#[derive(Debug, Clone)]
pub struct Governance {
    /// Installing a new policy.
    pub install: InstallGovernance,
    /// Freezing.
    pub freeze: FreezeGovernance,
    /// Unfreezing.
    pub unfreeze: UnfreezeGovernance,
}

/// A loaded, validated policy. Build it with [`Policy::from_toml`].
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) hash: PolicyHash,
    pub(crate) description: String,
    pub(crate) officers: BTreeMap<String, Officer>,
    pub(crate) requesters: BTreeMap<String, Requester>,
    pub(crate) keys: BTreeMap<String, KeyEntry>,
    pub(crate) tokens: TokenRegistry,
    pub(crate) token_count: usize,
    pub(crate) books: BTreeMap<String, AddressBook>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) governance: Governance,
}

impl Policy {
    /// Address-book entries count from the moment kinkod installed the policy that added them,
    /// never from an earlier `added_at` a proposer wrote (backdating would skip the cool-down).
    /// For a policy installed through governance at `installed_at` after `previous`: an entry
    /// already in `previous` (same book name and chain) keeps its effective time there, or its
    /// text's if later; a new entry counts from `installed_at`, or its text's time if later.
    /// With `previous` unknown (`None`), every entry counts from `installed_at` at the earliest.
    /// The bootstrap policy, installed by the operator at first start, keeps its text's times.
    pub fn settle_added_at(&mut self, previous: Option<&Policy>, installed_at: Timestamp) {
        for (name, book) in self.books.iter_mut() {
            let before = previous
                .and_then(|p| p.books.get(name))
                .filter(|p| p.chain == book.chain);
            for (norm, e) in book.entries.iter_mut() {
                let floor = before
                    .and_then(|p| p.entries.get(norm))
                    .map_or(installed_at, |earlier| earlier.added_at);
                if e.added_at < floor {
                    e.added_at = floor;
                }
            }
        }
    }
}

impl Policy {
    /// The policy hash ([`PolicyHash::of_file`] of the bytes it was loaded from).
    pub fn hash(&self) -> PolicyHash {
        self.hash
    }
    /// The description line.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// An officer by id.
    pub fn officer(&self, id: &str) -> Option<&Officer> {
        self.officers.get(id)
    }
    /// All officers, by id.
    pub fn officers(&self) -> impl Iterator<Item = &Officer> {
        self.officers.values()
    }
    /// A requester by id.
    pub fn requester(&self, id: &str) -> Option<&Requester> {
        self.requesters.get(id)
    }
    /// All requesters, by id.
    pub fn requesters(&self) -> impl Iterator<Item = &Requester> {
        self.requesters.values()
    }
    /// A signing key by name.
    pub fn key(&self, name: &str) -> Option<&KeyEntry> {
        self.keys.get(name)
    }
    /// All signing keys, by name.
    pub fn keys(&self) -> impl Iterator<Item = &KeyEntry> {
        self.keys.values()
    }
    /// The token registry for `kinko-chain`'s decoders.
    pub fn token_registry(&self) -> &TokenRegistry {
        &self.tokens
    }
    /// An address book by name.
    pub fn address_book(&self, name: &str) -> Option<&AddressBook> {
        self.books.get(name)
    }
    /// The rules, top-down.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    /// Governance settings.
    pub fn governance(&self) -> &Governance {
        &self.governance
    }

    /// A short summary for `kinko policy check`.
    pub fn summary(&self) -> String {
        let entries: usize = self.books.values().map(|b| b.entries.len()).sum();
        format!(
            "policy {hash}\n  {desc}\n  {o} officer(s), {r} requester(s), {k} signing key(s), {t} token(s), \
             {b} address book(s) with {entries} entr(ies), {n} rule(s)",
            hash = self.hash,
            desc = self.description,
            o = self.officers.len(),
            r = self.requesters.len(),
            k = self.keys.len(),
            t = self.token_count,
            b = self.books.len(),
            n = self.rules.len(),
        )
    }
}
