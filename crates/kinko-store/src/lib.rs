//! `kinko-store`: Kinko's durable state in one SQLite file.
//!
//! What lives here: withdrawal requests and their lifecycle state, officers' signed approvals
//! (stored as the signed bytes, never as an "approved" flag — the daemon re-verifies them from
//! their signatures before signing), velocity reservations, the replay guards (nonces,
//! outpoints, signed digests) that stop a key from signing two different transactions that
//! consume the same resource, and the freeze state.
//!
//! Durability: WAL journal, `synchronous=FULL` (a commit is on disk when it returns), foreign
//! keys on, versioned migrations in `PRAGMA user_version`. Every multi-row change is one
//! `BEGIN IMMEDIATE` transaction, so a crash leaves either all of it or none.
//!
//! The API is synchronous; the daemon calls it from blocking threads.

#![forbid(unsafe_code)]

pub mod log;
mod migrations;

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Errors of the store. Each is either the caller's mistake (a conflict it must resolve) or a
/// storage failure (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (disk full, I/O error, corruption). Nothing was changed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer Kinko (schema version too high).
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// Version on disk.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// No request with this id.
    #[error("no request {0}")]
    NotFound(String),
    /// The idempotency key was used before for a different payload.
    #[error(
        "idempotency key {key:?} was already used by request {existing} for a different payload"
    )]
    IdempotencyConflict {
        /// The idempotency key.
        key: String,
        /// The request that owns it.
        existing: String,
    },
    /// The request is not in a state that allows this transition.
    #[error("request {id} is {actual}, expected one of {expected:?}")]
    WrongState {
        /// The request id.
        id: String,
        /// Its current state.
        actual: RequestState,
        /// The states the transition needs.
        expected: Vec<RequestState>,
    },
    /// The officer already submitted a verdict on this request.
    #[error("officer {officer} already decided on request {request}")]
    DuplicateApproval {
        /// The request id.
        request: String,
        /// The officer id.
        officer: String,
    },
    /// A replay guard (nonce, outpoint, digest) is already held by another request of the key.
    #[error("{what} {value} of key {key} is already used by request {other}")]
    ReplayConflict {
        /// What kind of guard (`replay key` or `digest`).
        what: &'static str,
        /// The key name.
        key: String,
        /// The guard value.
        value: String,
        /// The request that holds it.
        other: String,
    },
    /// A stored value could not be read back (corrupt row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The connection lock was poisoned by a panic in another thread.
    #[error("store lock poisoned")]
    Poisoned,
    /// A record or checkpoint could not be made (encoding, size, or the log key's signature).
    #[error("audit log: {0}")]
    Log(kinko_audit::Error),
    /// The audit log in the store does not verify (edited, truncated or replaced).
    #[error("the audit log in the store does not verify: {0}")]
    LogCorrupt(String),
    /// A step was committed before [`Store::open_log`].
    #[error("the audit log is not open")]
    LogClosed,
    /// Writing an export failed.
    #[error("{0}")]
    Io(String),
}

/// Lifecycle states (see docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestState {
    /// Decoded and recorded; being evaluated.
    Received,
    /// Denied by policy. Final.
    Denied,
    /// Waiting for approvals.
    PendingApproval,
    /// Quorum reached.
    Approved,
    /// Signing authorized and logged; the HSM is (or was, before a crash) being asked.
    Signing,
    /// Signed. Final.
    Signed,
    /// Rejected by an officer. Final.
    Rejected,
    /// Expired. Final.
    Expired,
    /// Cancelled by the requester. Final.
    Cancelled,
    /// Signing failed after authorization. Final.
    Failed,
}

impl RequestState {
    /// Every state.
    pub const ALL: [RequestState; 10] = [
        RequestState::Received,
        RequestState::Denied,
        RequestState::PendingApproval,
        RequestState::Approved,
        RequestState::Signing,
        RequestState::Signed,
        RequestState::Rejected,
        RequestState::Expired,
        RequestState::Cancelled,
        RequestState::Failed,
    ];
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Received => "received",
            RequestState::Denied => "denied",
            RequestState::PendingApproval => "pending_approval",
            RequestState::Approved => "approved",
            RequestState::Signing => "signing",
            RequestState::Signed => "signed",
            RequestState::Rejected => "rejected",
            RequestState::Expired => "expired",
            RequestState::Cancelled => "cancelled",
            RequestState::Failed => "failed",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<RequestState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
    /// Whether no transition leaves this state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestState::Denied
                | RequestState::Signed
                | RequestState::Rejected
                | RequestState::Expired
                | RequestState::Cancelled
                | RequestState::Failed
        )
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request as submitted, before the store assigns anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    /// Unique id (the daemon makes it).
    pub id: String,
    /// The requester's principal.
    pub requester: String,
    /// Scoped to the requester.
    pub idempotency_key: String,
    /// The signing key's name in the policy.
    pub key_name: String,
    /// `ethereum`, `bitcoin`, `solana`.
    pub chain: kinko_intent::Chain,
    /// The network.
    pub network: String,
    /// The unsigned payload.
    pub payload: Vec<u8>,
    /// Free-text reference from the requester.
    pub reference: String,
    /// The requester system's signature over payload and reference.
    pub requester_signature: Vec<u8>,
    /// Canonical intent JSON.
    pub intent_json: String,
    /// The intent digest.
    pub intent_digest: [u8; 32],
    /// Hash of the policy that evaluated it.
    pub policy_hash: [u8; 32],
    /// The decision, as JSON.
    pub decision_json: String,
    /// Initial state (`Denied` or `PendingApproval`, or `Received`).
    pub state: RequestState,
    /// Reason when final at once (denial).
    pub final_reason: Option<String>,
    /// Unix seconds.
    pub now: i64,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request as submitted.
    pub new: NewRequest,
    /// Current state.
    pub state: RequestState,
    /// Why it is final.
    pub final_reason: Option<String>,
    /// The signed transaction once signed.
    pub signed_transaction: Option<Vec<u8>>,
    /// Its id (hash, txid, signature).
    pub transaction_id: Option<String>,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

/// Whether [`Store::insert_request`] created the request or found it by idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new request.
    Created(Request),
    /// The same requester already submitted the same payload under this idempotency key.
    Existing(Request),
}

/// An officer's verdict, stored as the exact signed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApproval {
    /// The request.
    pub request_id: String,
    /// The officer.
    pub officer_id: String,
    /// True for approve, false for reject.
    pub approve: bool,
    /// The canonical approval message the officer signed.
    pub message: Vec<u8>,
    /// The Ed25519 signature.
    pub signature: Vec<u8>,
    /// Unix seconds when received.
    pub received_at: i64,
}

/// A velocity reservation: an amount of an asset committed by a key at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The key name.
    pub key_name: String,
    /// The asset id (e.g. `ethereum:native`, `ethereum:0xa0b8…`).
    pub asset: String,
    /// The amount in base units (stored as a decimal).
    pub amount: kinko_intent::Amount,
    /// Unix seconds.
    pub at: i64,
    /// The request.
    pub request_id: String,
}

/// What the signing step claims atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningClaim {
    /// The request.
    pub request_id: String,
    /// The key.
    pub key_name: String,
    /// One-time resources (nonces, outpoints) the transaction consumes.
    pub replay_keys: Vec<String>,
    /// Digests (hex) that will be signed.
    pub digests: Vec<String>,
    /// Velocity reservations.
    pub reservations: Vec<Reservation>,
    /// Unix seconds.
    pub now: i64,
}

/// The freeze switch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FreezeState {
    /// Whether signing is frozen.
    pub frozen: bool,
    /// Who froze it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub since: i64,
    /// The freeze's identity: the leaf hash of its `freeze` audit record (what an unfreeze
    /// approval must name). Empty when not frozen.
    pub freeze_id: Vec<u8>,
}

/// A governance request (freeze, unfreeze, policy install) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governance {
    /// Its id (chosen by the officers' clients, bound into their signed approvals).
    pub id: String,
    /// What it changes.
    pub kind: GovernanceKind,
    /// Unix seconds of the first approval.
    pub created_at: i64,
    /// Unix seconds when the daemon first saw its quorum satisfied (starts the delay).
    pub quorum_reached_at: Option<i64>,
    /// Where it stands.
    pub state: GovernanceState,
}

/// What a governance request changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GovernanceKind {
    /// Lifts the freeze in force.
    Unfreeze,
    /// Installs a proposed policy.
    InstallPolicy,
}

/// Where a governance request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GovernanceState {
    /// Collecting votes.
    Pending,
    /// Quorum reached; waiting out the delay.
    Waiting,
    /// A valid veto blocks it (for now).
    Vetoed,
    /// It took effect; it never acts again.
    Effective,
    /// Another change made it moot (a new freeze, another policy); it never acts again.
    Superseded,
}

macro_rules! sql_enum {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            /// Its name in the database and in messages.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),+ }
            }
            /// The value named `s`.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(<$t>::$v),)+ _ => None }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                <$t>::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} {s:?}", stringify!($t)).into(),
                    )
                })
            }
        }
    };
}

sql_enum!(GovernanceKind { Unfreeze => "unfreeze", InstallPolicy => "install_policy" });
sql_enum!(GovernanceState {
    Pending => "pending",
    Waiting => "waiting",
    Vetoed => "vetoed",
    Effective => "effective",
    Superseded => "superseded",
});

impl GovernanceState {
    /// Whether it can still act (pending or waiting).
    pub fn is_open(self) -> bool {
        matches!(self, GovernanceState::Pending | GovernanceState::Waiting)
    }
}

/// A policy proposed through governance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProposal {
    /// The governance request id.
    pub id: String,
    /// Hash of the proposed policy file.
    pub policy_hash: Vec<u8>,
    /// The proposed file.
    pub policy_text: String,
    /// Hash of the policy in force when it was proposed (approvals are signed under it).
    pub base_policy_hash: Vec<u8>,
    /// The admin principal who proposed it.
    pub proposed_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A policy as installed (the newest one is in force).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPolicy {
    /// Hash of the policy file.
    pub policy_hash: Vec<u8>,
    /// The file.
    pub policy_text: String,
    /// The proposal that installed it; `None` for the initial policy.
    pub proposal_id: Option<String>,
    /// Unix seconds.
    pub installed_at: i64,
}

/// A stored verdict (for the start-time check against the log).
#[derive(Debug, Clone)]
pub struct StoredVerdict {
    /// A governance vote (else a withdrawal approval or rejection).
    pub governance: bool,
    /// The request (or governance request) id.
    pub request_id: String,
    /// The officer.
    pub officer_id: String,
    /// The signed message bytes.
    pub message: Vec<u8>,
}

/// A stored claim of a replay key or a digest.
#[derive(Debug, Clone)]
pub struct StoredClaim {
    /// A signed digest (else a replay key: nonce, outpoint, blockhash).
    pub digest: bool,
    /// The signing key.
    pub key_name: String,
    /// The claimed value.
    pub value: String,
    /// The request holding it.
    pub request_id: String,
}

/// The store: Kinko's one durable history. One connection behind a mutex (SQLite serializes
/// writers anyway, and Kinko's write rate is bounded by the HSM), and the audit log's tree in
/// memory beside it.
pub struct Store {
    conn: Mutex<Inner>,
    /// The audit log's tree and newest checkpoint, once [`Store::open_log`] has checked them.
    /// Updated only under `conn`, after a commit.
    view: RwLock<Option<log::View>>,
}

/// The connection and, once the log is open, what appends to it.
struct Inner {
    conn: Connection,
    writer: Option<log::Writer>,
}

impl std::ops::Deref for Inner {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Inner {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// One transaction of the store. A lifecycle step makes its state changes through it inside
/// [`Store::commit`], which appends the step's audit records in the same transaction: the
/// change and its records are durable together, or neither is. This is the interface a second
/// backend implements.
pub struct Tx<'a> {
    conn: &'a Connection,
}

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

const REQUEST_COLUMNS: &str = "id, requester, idempotency_key, key_name, chain, network, payload, reference, \
     requester_signature, intent_json, intent_digest, policy_hash, decision_json, state, final_reason, \
     signed_transaction, transaction_id, created_at, updated_at";

fn row_to_request(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Request, StoreError>> {
    let state: String = row.get(13)?;
    let Some(state) = RequestState::parse(&state) else {
        return Ok(Err(StoreError::Corrupt(format!("unknown state {state:?}"))));
    };
    let final_reason: Option<String> = row.get(14)?;
    Ok(Ok(Request {
        new: NewRequest {
            id: row.get(0)?,
            requester: row.get(1)?,
            idempotency_key: row.get(2)?,
            key_name: row.get(3)?,
            chain: parsed(row, 4)?,
            network: row.get(5)?,
            payload: row.get(6)?,
            reference: row.get(7)?,
            requester_signature: row.get(8)?,
            intent_json: row.get(9)?,
            intent_digest: hash32(row, 10)?,
            policy_hash: hash32(row, 11)?,
            decision_json: row.get(12)?,
            state,
            final_reason: final_reason.clone(),
            now: row.get(17)?,
        },
        state,
        final_reason,
        signed_transaction: row.get(15)?,
        transaction_id: row.get(16)?,
        updated_at: row.get(18)?,
    }))
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::apply(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(Inner { conn, writer: None }),
            view: RwLock::new(None),
        })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Runs `f` in one transaction and commits it, with no audit record. For reads that must
    /// see one state, tests and offline tools; the daemon changes state only through
    /// [`Store::commit`].
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&Tx { conn: &tx })?;
        tx.commit()?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.conn()?;
        f(&Tx { conn: &conn })
    }

    /// Inserts a request, or returns the existing one when the same requester reuses an
    /// idempotency key for the same payload. The same key with a different payload is refused.
    pub fn insert_request(&self, new: &NewRequest) -> Result<Inserted, StoreError> {
        self.write(|tx| tx.insert_request(new))
    }

    /// Reads a request.
    pub fn get_request(&self, id: &str) -> Result<Request, StoreError> {
        self.read(|tx| tx.get_request(id))
    }

    /// Requests in `state`, oldest first.
    pub fn list_by_state(&self, state: RequestState) -> Result<Vec<Request>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![state.as_str()], row_to_request)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    /// Up to `limit` requests in `state`, oldest first, after request `after` (keyset paging on
    /// creation time and id, so a page costs the same however many there are).
    pub fn list_by_state_page(
        &self,
        state: RequestState,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Request>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = ?1
             AND (?2 IS NULL OR (created_at, id) > (SELECT created_at, id FROM requests WHERE id = ?2))
             ORDER BY created_at, id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![state.as_str(), after, limit], row_to_request)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    /// How many of `requester`'s requests are pending approval.
    pub fn count_pending(&self, requester: &str) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM requests WHERE requester = ?1 AND state = 'pending_approval'",
            params![requester],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The request holding the claim of `value` for `key_name`: a signed digest when `digest`,
    /// else a replay key.
    pub fn claim_holder(
        &self,
        digest: bool,
        key_name: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let conn = self.conn()?;
        let sql = if digest {
            "SELECT request_id FROM signed_digests WHERE key_name = ?1 AND digest = ?2"
        } else {
            "SELECT request_id FROM replay_keys WHERE key_name = ?1 AND replay_key = ?2"
        };
        Ok(conn
            .query_row(sql, params![key_name, value], |r| r.get(0))
            .optional()?)
    }

    /// How many of `requester`'s requests created at or after `since` were denied (indexed by
    /// requester and state).
    pub fn count_denied_since(&self, requester: &str, since: i64) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM requests WHERE requester = ?1 AND state = 'denied' AND created_at >= ?2",
            params![requester, since],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Moves a request from one of `from` to `to`, atomically (compare and set).
    pub fn transition(
        &self,
        id: &str,
        from: &[RequestState],
        to: RequestState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Request, StoreError> {
        self.write(|tx| tx.transition(id, from, to, reason, now))
    }

    /// Stores an officer's signed verdict. One verdict per officer per request. The request must
    /// be pending approval.
    pub fn add_approval(&self, a: &StoredApproval) -> Result<(), StoreError> {
        self.write(|tx| tx.add_approval(a))
    }

    /// Stores an officer's signed verdict in place of one of theirs that no longer counts
    /// (expired, or given under a policy no longer in force): an approval that stopped counting
    /// never keeps its officer from deciding again. The request must be pending approval.
    pub fn replace_approval(&self, a: &StoredApproval) -> Result<(), StoreError> {
        self.write(|tx| tx.replace_approval(a))
    }

    /// The verdicts on a request, in the order received.
    pub fn approvals(&self, request_id: &str) -> Result<Vec<StoredApproval>, StoreError> {
        self.read(|tx| tx.approvals(request_id))
    }

    /// Claims everything signing needs, atomically: the request moves from `PendingApproval` (or `Approved`) to
    /// `Signing`, its replay keys and digests are bound to it (refused when another request of
    /// the same key holds one), and its velocity reservations are recorded. After a crash, a
    /// request found in `Signing` was authorized and possibly signed: the daemon completes or
    /// fails it explicitly, and never signs a conflicting request in the meantime.
    pub fn claim_signing(&self, claim: &SigningClaim) -> Result<(), StoreError> {
        self.write(|tx| tx.claim_signing(claim))
    }

    /// Records the signed transaction: `Signing` → `Signed`.
    pub fn record_signed(
        &self,
        id: &str,
        signed_transaction: &[u8],
        transaction_id: &str,
        now: i64,
    ) -> Result<Request, StoreError> {
        self.write(|tx| tx.record_signed(id, signed_transaction, transaction_id, now))
    }

    /// Velocity reservations of `key_name` for `asset` at or after `since`, oldest first.
    pub fn reservations_since(
        &self,
        key_name: &str,
        asset: &str,
        since: i64,
    ) -> Result<Vec<Reservation>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT key_name, asset, amount, at, request_id FROM reservations WHERE key_name = ?1 AND asset = ?2 AND at >= ?3 ORDER BY at, id",
        )?;
        let rows = stmt.query_map(params![key_name, asset, since], reservation_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every reservation at or after `since` (to rebuild the in-memory ledger at start-up).
    pub fn all_reservations_since(&self, since: i64) -> Result<Vec<Reservation>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT key_name, asset, amount, at, request_id FROM reservations WHERE at >= ?1 ORDER BY at, id",
        )?;
        let rows = stmt.query_map(params![since], reservation_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds an officer's signed approval (or veto) to a governance request, creating the request
    /// on first use. One per officer; a request of another kind under the same id is refused.
    pub fn add_governance_approval(
        &self,
        id: &str,
        kind: GovernanceKind,
        a: &StoredApproval,
    ) -> Result<Governance, StoreError> {
        self.write(|tx| tx.add_governance_approval(id, kind, a))
    }

    /// A governance request.
    pub fn governance(&self, id: &str) -> Result<Option<Governance>, StoreError> {
        self.read(|tx| tx.governance(id))
    }

    /// The signed approvals of a governance request, in the order received.
    pub fn governance_approvals(&self, id: &str) -> Result<Vec<StoredApproval>, StoreError> {
        self.read(|tx| tx.governance_approvals(id))
    }

    /// Records the state of a governance request; the first time its quorum is seen, the
    /// instant is kept (never moved later).
    pub fn set_governance_state(
        &self,
        id: &str,
        state: GovernanceState,
        quorum_reached_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.write(|tx| tx.set_governance_state(id, state, quorum_reached_at))
    }

    /// The newest open (`pending` or `waiting`) governance request of a kind.
    pub fn open_governance(&self, kind: GovernanceKind) -> Result<Option<Governance>, StoreError> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT id, kind, created_at, quorum_reached_at, state FROM governance
                 WHERE kind = ?1 AND state IN ('pending', 'waiting') ORDER BY created_at DESC, id LIMIT 1",
                params![kind],
                governance_row,
            )
            .optional()?)
    }

    /// Every governance request of a kind waiting out its delay, oldest first.
    pub fn waiting_governance(&self, kind: GovernanceKind) -> Result<Vec<Governance>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, kind, created_at, quorum_reached_at, state FROM governance
             WHERE kind = ?1 AND state = 'waiting' ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map(params![kind], governance_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a policy proposal and opens its governance request (kind `install_policy`).
    pub fn insert_policy_proposal(&self, p: &PolicyProposal) -> Result<(), StoreError> {
        self.write(|tx| tx.insert_policy_proposal(p))
    }

    /// A policy proposal.
    pub fn policy_proposal(&self, id: &str) -> Result<Option<PolicyProposal>, StoreError> {
        self.read(|tx| tx.policy_proposal(id))
    }

    /// The policy in force: the newest installed one (`None` before the first start).
    pub fn installed_policy(&self) -> Result<Option<InstalledPolicy>, StoreError> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT policy_hash, policy_text, proposal_id, installed_at FROM installed_policies ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok(InstalledPolicy {
                        policy_hash: r.get(0)?,
                        policy_text: r.get(1)?,
                        proposal_id: r.get(2)?,
                        installed_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every policy installed, oldest first (the bootstrap policy, then each governance
    /// installation).
    pub fn installed_policies(&self) -> Result<Vec<InstalledPolicy>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT policy_hash, policy_text, proposal_id, installed_at FROM installed_policies ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(InstalledPolicy {
                policy_hash: r.get(0)?,
                policy_text: r.get(1)?,
                proposal_id: r.get(2)?,
                installed_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Installs a policy. For a proposal, atomically: its governance request becomes
    /// `effective`, and every other open install proposal is `superseded` (its approvals were
    /// signed under a policy no longer in force).
    pub fn install_policy(&self, p: &InstalledPolicy) -> Result<(), StoreError> {
        self.write(|tx| tx.install_policy(p))
    }

    /// Every request's id and state (for the start-time check against the log).
    pub fn all_request_states(&self) -> Result<Vec<(String, RequestState)>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT id, state FROM requests")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, state) = row?;
            let state = RequestState::parse(&state).ok_or_else(|| {
                StoreError::Corrupt(format!("request {id}: unknown state {state:?}"))
            })?;
            out.push((id, state));
        }
        Ok(out)
    }

    /// Every stored verdict: withdrawal approvals first, then governance votes.
    pub fn all_verdicts(&self) -> Result<Vec<StoredVerdict>, StoreError> {
        let conn = self.conn()?;
        let mut out = Vec::new();
        for (governance, sql) in [
            (
                false,
                "SELECT request_id, officer_id, message FROM approvals",
            ),
            (
                true,
                "SELECT governance_id, officer_id, message FROM governance_approvals",
            ),
        ] {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredVerdict {
                    governance,
                    request_id: r.get(0)?,
                    officer_id: r.get(1)?,
                    message: r.get(2)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// Every claim of a replay key or digest.
    pub fn all_claims(&self) -> Result<Vec<StoredClaim>, StoreError> {
        let conn = self.conn()?;
        let mut out = Vec::new();
        for (digest, sql) in [
            (
                false,
                "SELECT key_name, replay_key, request_id FROM replay_keys",
            ),
            (
                true,
                "SELECT key_name, digest, request_id FROM signed_digests",
            ),
        ] {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredClaim {
                    digest,
                    key_name: r.get(0)?,
                    value: r.get(1)?,
                    request_id: r.get(2)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// Requests pending approval created before `before` (unix seconds), oldest first.
    pub fn pending_created_before(&self, before: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id FROM requests WHERE state = ?1 AND created_at < ?2 ORDER BY created_at LIMIT 1000",
        )?;
        let rows = stmt.query_map(
            params![RequestState::PendingApproval.as_str(), before],
            |r| r.get(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many requests are in each state (for metrics).
    pub fn count_by_state(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM requests GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            r.map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
                .map_err(StoreError::from)
        })
        .collect()
    }

    /// The freeze switch.
    pub fn freeze_state(&self) -> Result<FreezeState, StoreError> {
        self.read(|tx| tx.freeze_state())
    }

    /// Sets the freeze switch. Any unfreeze request still open is for an earlier freeze (or
    /// lifted this one) and can never act again: it becomes `superseded` in the same commit.
    pub fn set_freeze(&self, state: &FreezeState) -> Result<(), StoreError> {
        self.write(|tx| tx.set_freeze(state))
    }
}

impl Tx<'_> {
    /// Whether a request with this id is stored.
    pub fn request_exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM requests WHERE id = ?1", params![id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// Records a request's policy decision (for a rebuild from the log, where the decision is
    /// its own record): the policy hash, the explanation and, when denied, the final state.
    pub fn set_decision(
        &self,
        id: &str,
        policy_hash: &[u8],
        decision_json: &str,
        denied: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        check_state(self.conn, id, &[RequestState::PendingApproval])?;
        self.conn.execute(
            "UPDATE requests SET policy_hash = ?2, decision_json = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, policy_hash, decision_json, now],
        )?;
        if denied {
            self.conn.execute(
                "UPDATE requests SET state = 'denied', final_reason = 'denied by the policy (see its decision record)' WHERE id = ?1",
                params![id],
            )?;
        }
        Ok(())
    }

    /// Inserts a request, or returns the existing one when the same requester reuses an
    /// idempotency key for the same payload. The same key with a different payload is refused.
    pub fn insert_request(&self, new: &NewRequest) -> Result<Inserted, StoreError> {
        let tx = self.conn;
        let existing = tx
            .query_row(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE requester = ?1 AND idempotency_key = ?2"
                ),
                params![new.requester, new.idempotency_key],
                row_to_request,
            )
            .optional()?
            .transpose()?;
        if let Some(existing) = existing {
            return if existing.new.payload == new.payload
                && existing.new.key_name == new.key_name
                && existing.new.reference == new.reference
            {
                Ok(Inserted::Existing(existing))
            } else {
                Err(StoreError::IdempotencyConflict {
                    key: new.idempotency_key.clone(),
                    existing: existing.new.id,
                })
            };
        }
        tx.execute(
            &format!("INSERT INTO requests ({REQUEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, NULL, NULL, ?16, ?16)"),
            params![
                new.id,
                new.requester,
                new.idempotency_key,
                new.key_name,
                new.chain.as_str(),
                new.network,
                new.payload,
                new.reference,
                new.requester_signature,
                new.intent_json,
                &new.intent_digest[..],
                &new.policy_hash[..],
                new.decision_json,
                new.state.as_str(),
                new.final_reason,
                new.now,
            ],
        )?;
        Ok(Inserted::Created(self.get_request(&new.id)?))
    }

    /// Moves a request from one of `from` to `to`, atomically (compare and set).
    pub fn transition(
        &self,
        id: &str,
        from: &[RequestState],
        to: RequestState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Request, StoreError> {
        {
            let tx = self.conn;
            check_state(tx, id, from)?;
            tx.execute(
                "UPDATE requests SET state = ?2, final_reason = COALESCE(?3, final_reason), updated_at = ?4 WHERE id = ?1",
                params![id, to.as_str(), reason, now],
            )?;
        }
        self.get_request(id)
    }

    /// Stores an officer's signed verdict. One verdict per officer per request. The request must
    /// be pending approval.
    pub fn add_approval(&self, a: &StoredApproval) -> Result<(), StoreError> {
        let tx = self.conn;
        check_state(tx, &a.request_id, &[RequestState::PendingApproval])?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO approvals (request_id, officer_id, approve, message, signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![a.request_id, a.officer_id, a.approve, a.message, a.signature, a.received_at],
        )?;
        if inserted == 0 {
            return Err(StoreError::DuplicateApproval {
                request: a.request_id.clone(),
                officer: a.officer_id.clone(),
            });
        }
        Ok(())
    }

    /// Stores an officer's signed verdict in place of one of theirs that no longer counts
    /// (expired, or given under a policy no longer in force): an approval that stopped counting
    /// never keeps its officer from deciding again. The request must be pending approval.
    pub fn replace_approval(&self, a: &StoredApproval) -> Result<(), StoreError> {
        let tx = self.conn;
        check_state(tx, &a.request_id, &[RequestState::PendingApproval])?;
        tx.execute(
            "DELETE FROM approvals WHERE request_id = ?1 AND officer_id = ?2",
            params![a.request_id, a.officer_id],
        )?;
        tx.execute(
            "INSERT INTO approvals (request_id, officer_id, approve, message, signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![a.request_id, a.officer_id, a.approve, a.message, a.signature, a.received_at],
        )?;
        Ok(())
    }

    /// Claims everything signing needs, atomically: the request moves from `PendingApproval` (or `Approved`) to
    /// `Signing`, its replay keys and digests are bound to it (refused when another request of
    /// the same key holds one), and its velocity reservations are recorded. After a crash, a
    /// request found in `Signing` was authorized and possibly signed: the daemon completes or
    /// fails it explicitly, and never signs a conflicting request in the meantime.
    pub fn claim_signing(&self, claim: &SigningClaim) -> Result<(), StoreError> {
        let tx = self.conn;
        check_state(
            tx,
            &claim.request_id,
            &[RequestState::PendingApproval, RequestState::Approved],
        )?;
        for (what, table, column, values) in [
            (
                "replay key",
                "replay_keys",
                "replay_key",
                &claim.replay_keys,
            ),
            ("digest", "signed_digests", "digest", &claim.digests),
        ] {
            for v in values {
                let other: Option<String> = tx
                    .query_row(
                        &format!(
                            "SELECT request_id FROM {table} WHERE key_name = ?1 AND {column} = ?2"
                        ),
                        params![claim.key_name, v],
                        |r| r.get(0),
                    )
                    .optional()?;
                match other {
                    Some(other) if other != claim.request_id => {
                        return Err(StoreError::ReplayConflict {
                            what,
                            key: claim.key_name.clone(),
                            value: v.clone(),
                            other,
                        });
                    }
                    Some(_) => {}
                    None => {
                        tx.execute(
                            &format!("INSERT INTO {table} (key_name, {column}, request_id, at) VALUES (?1, ?2, ?3, ?4)"),
                            params![claim.key_name, v, claim.request_id, claim.now],
                        )?;
                    }
                }
            }
        }
        for r in &claim.reservations {
            tx.execute(
                "INSERT INTO reservations (key_name, asset, amount, at, request_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.key_name, r.asset, r.amount.to_string(), r.at, r.request_id],
            )?;
        }
        tx.execute(
            "UPDATE requests SET state = 'signing', updated_at = ?2 WHERE id = ?1",
            params![claim.request_id, claim.now],
        )?;
        Ok(())
    }

    /// Records the signed transaction: `Signing` → `Signed`.
    pub fn record_signed(
        &self,
        id: &str,
        signed_transaction: &[u8],
        transaction_id: &str,
        now: i64,
    ) -> Result<Request, StoreError> {
        {
            let tx = self.conn;
            check_state(tx, id, &[RequestState::Signing])?;
            tx.execute(
                "UPDATE requests SET state = 'signed', signed_transaction = ?2, transaction_id = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, signed_transaction, transaction_id, now],
            )?;
        }
        self.get_request(id)
    }

    /// Adds an officer's signed approval (or veto) to a governance request, creating the request
    /// on first use. One per officer; a request of another kind under the same id is refused.
    pub fn add_governance_approval(
        &self,
        id: &str,
        kind: GovernanceKind,
        a: &StoredApproval,
    ) -> Result<Governance, StoreError> {
        {
            let tx = self.conn;
            tx.execute(
                "INSERT OR IGNORE INTO governance (id, kind, created_at, quorum_reached_at, state) VALUES (?1, ?2, ?3, NULL, 'pending')",
                params![id, kind, a.received_at],
            )?;
            let existing: GovernanceKind = tx.query_row(
                "SELECT kind FROM governance WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )?;
            if existing != kind {
                return Err(StoreError::Corrupt(format!(
                    "governance request {id} is a {existing} request, not {kind}"
                )));
            }
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO governance_approvals (governance_id, officer_id, message, signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, a.officer_id, a.message, a.signature, a.received_at],
            )?;
            if inserted == 0 {
                return Err(StoreError::DuplicateApproval {
                    request: id.to_string(),
                    officer: a.officer_id.clone(),
                });
            }
        }
        self.governance(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// Records the state of a governance request; the first time its quorum is seen, the
    /// instant is kept (never moved later).
    pub fn set_governance_state(
        &self,
        id: &str,
        state: GovernanceState,
        quorum_reached_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let conn = self.conn;
        conn.execute(
            "UPDATE governance SET state = ?2, quorum_reached_at = COALESCE(quorum_reached_at, ?3) WHERE id = ?1 AND state IN ('pending', 'waiting')",
            params![id, state, quorum_reached_at],
        )?;
        Ok(())
    }

    /// Records a policy proposal and opens its governance request (kind `install_policy`).
    pub fn insert_policy_proposal(&self, p: &PolicyProposal) -> Result<(), StoreError> {
        let tx = self.conn;
        tx.execute(
            "INSERT INTO governance (id, kind, created_at, quorum_reached_at, state) VALUES (?1, 'install_policy', ?2, NULL, 'pending')",
            params![p.id, p.created_at],
        )?;
        tx.execute(
            "INSERT INTO policy_proposals (id, policy_hash, policy_text, base_policy_hash, proposed_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![p.id, p.policy_hash, p.policy_text, p.base_policy_hash, p.proposed_by, p.created_at],
        )?;
        Ok(())
    }

    /// Installs a policy. For a proposal, atomically: its governance request becomes
    /// `effective`, and every other open install proposal is `superseded` (its approvals were
    /// signed under a policy no longer in force).
    pub fn install_policy(&self, p: &InstalledPolicy) -> Result<(), StoreError> {
        let tx = self.conn;
        tx.execute(
            "INSERT INTO installed_policies (policy_hash, policy_text, proposal_id, installed_at) VALUES (?1, ?2, ?3, ?4)",
            params![p.policy_hash, p.policy_text, p.proposal_id, p.installed_at],
        )?;
        if let Some(id) = &p.proposal_id {
            tx.execute(
                "UPDATE governance SET state = 'effective' WHERE id = ?1",
                params![id],
            )?;
            tx.execute(
                "UPDATE governance SET state = 'superseded' WHERE kind = 'install_policy' AND id != ?1 AND state IN ('pending', 'waiting')",
                params![id],
            )?;
        }
        Ok(())
    }

    /// Sets the freeze switch. Any unfreeze request still open is for an earlier freeze (or
    /// lifted this one) and can never act again: it becomes `superseded` in the same commit.
    pub fn set_freeze(&self, state: &FreezeState) -> Result<(), StoreError> {
        let tx = self.conn;
        tx.execute(
            "INSERT INTO freeze (id, frozen, frozen_by, reason, since, freeze_id) VALUES (1, ?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET frozen = excluded.frozen, frozen_by = excluded.frozen_by, reason = excluded.reason, since = excluded.since, freeze_id = excluded.freeze_id",
            params![state.frozen, state.by, state.reason, state.since, state.freeze_id],
        )?;
        tx.execute(
            "UPDATE governance SET state = 'superseded' WHERE kind = 'unfreeze' AND state IN ('pending', 'waiting')",
            [],
        )?;
        Ok(())
    }

    /// Reads a request.
    pub fn get_request(&self, id: &str) -> Result<Request, StoreError> {
        let conn = self.conn;
        conn.query_row(
            &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
            params![id],
            row_to_request,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?
    }

    /// The verdicts on a request, in the order received.
    pub fn approvals(&self, request_id: &str) -> Result<Vec<StoredApproval>, StoreError> {
        let conn = self.conn;
        let mut stmt = conn.prepare(
            "SELECT request_id, officer_id, approve, message, signature, received_at FROM approvals WHERE request_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![request_id], |r| {
            Ok(StoredApproval {
                request_id: r.get(0)?,
                officer_id: r.get(1)?,
                approve: r.get(2)?,
                message: r.get(3)?,
                signature: r.get(4)?,
                received_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A governance request.
    pub fn governance(&self, id: &str) -> Result<Option<Governance>, StoreError> {
        let conn = self.conn;
        Ok(conn
            .query_row(
                "SELECT id, kind, created_at, quorum_reached_at, state FROM governance WHERE id = ?1",
                params![id],
                governance_row,
            )
            .optional()?)
    }

    /// The signed approvals of a governance request, in the order received.
    pub fn governance_approvals(&self, id: &str) -> Result<Vec<StoredApproval>, StoreError> {
        let conn = self.conn;
        let mut stmt = conn.prepare(
            "SELECT governance_id, officer_id, message, signature, received_at FROM governance_approvals WHERE governance_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![id], |r| {
            Ok(StoredApproval {
                request_id: r.get(0)?,
                officer_id: r.get(1)?,
                approve: true,
                message: r.get(2)?,
                signature: r.get(3)?,
                received_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The freeze switch.
    pub fn freeze_state(&self) -> Result<FreezeState, StoreError> {
        let conn = self.conn;
        Ok(conn
            .query_row(
                "SELECT frozen, frozen_by, reason, since, freeze_id FROM freeze WHERE id = 1",
                [],
                |r| {
                    Ok(FreezeState {
                        frozen: r.get(0)?,
                        by: r.get(1)?,
                        reason: r.get(2)?,
                        since: r.get(3)?,
                        freeze_id: r.get(4)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// A policy proposal.
    pub fn policy_proposal(&self, id: &str) -> Result<Option<PolicyProposal>, StoreError> {
        let conn = self.conn;
        Ok(conn
            .query_row(
                "SELECT id, policy_hash, policy_text, base_policy_hash, proposed_by, created_at FROM policy_proposals WHERE id = ?1",
                params![id],
                |r| {
                    Ok(PolicyProposal {
                        id: r.get(0)?,
                        policy_hash: r.get(1)?,
                        policy_text: r.get(2)?,
                        base_policy_hash: r.get(3)?,
                        proposed_by: r.get(4)?,
                        created_at: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }
}

fn governance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Governance> {
    Ok(Governance {
        id: r.get(0)?,
        kind: r.get(1)?,
        created_at: r.get(2)?,
        quorum_reached_at: r.get(3)?,
        state: r.get(4)?,
    })
}

fn reservation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Reservation> {
    Ok(Reservation {
        key_name: r.get(0)?,
        asset: r.get(1)?,
        amount: parsed(r, 2)?,
        at: r.get(3)?,
        request_id: r.get(4)?,
    })
}

/// A text column parsed into its type (an unparsable value is a conversion error, not a
/// default).
fn parsed<T>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("{text:?}: {e}").into(),
        )
    })
}

/// A 32-byte hash column.
fn hash32(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<[u8; 32]> {
    let bytes: Vec<u8> = row.get(idx)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Blob,
            format!("a hash of {} bytes, not 32", bytes.len()).into(),
        )
    })
}

fn check_state(
    tx: &Connection,
    id: &str,
    expected: &[RequestState],
) -> Result<RequestState, StoreError> {
    let state: Option<String> = tx
        .query_row(
            "SELECT state FROM requests WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    let state = state.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    let actual = RequestState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))?;
    if expected.contains(&actual) {
        Ok(actual)
    } else {
        Err(StoreError::WrongState {
            id: id.to_string(),
            actual,
            expected: expected.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests;
