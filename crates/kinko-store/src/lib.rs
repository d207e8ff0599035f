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

mod db;
pub mod log;
mod migrations;
mod tx;

pub use tx::Tx;

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};

use rusqlite::TransactionBehavior;

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
    /// [`Store::open_existing`] found no store, or one this build would have to migrate.
    #[error("{0}")]
    NotOpenable(String),
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
    /// Writing an export failed, or the store's runtime could not start.
    #[error("{0}")]
    Io(String),
    /// Signing is frozen (checked inside the claim's own transaction).
    #[error("signing is frozen")]
    Frozen,
    /// The policy in force is not the one the step was decided under (another replica
    /// installed one meanwhile). Nothing was changed.
    #[error("the policy in force changed since this step was decided: {0}")]
    PolicyChanged(String),
    /// The policy denies the step with every replica's reservations counted. Nothing was
    /// changed.
    #[error("{0}")]
    Denied(String),
    /// PostgreSQL failed (unreachable, I/O, a constraint). Nothing was changed.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
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
    /// The kinkod replica making the claim (recovery fails only its own, or old ones).
    pub replica: String,
    /// Unix seconds.
    pub now: i64,
}

/// A request left in `signing`: its id, the replica that claimed it, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningHeld {
    /// The request.
    pub request_id: String,
    /// The replica that claimed it (`None` before claims named their replica).
    pub replica: Option<String>,
    /// Unix seconds of the claim.
    pub since: i64,
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

/// The store: Kinko's one durable history — SQLite embedded, or PostgreSQL when several
/// kinkod replicas share one history. One connection behind a mutex (writers are serialized
/// anyway: SQLite by its lock, PostgreSQL by the store's advisory lock, so the log has one
/// sequence), and the audit log's tree in memory beside it.
pub struct Store {
    conn: Mutex<Inner>,
    /// Steps waiting for a group commit (see [`Store::commit`]).
    queue: Mutex<Vec<log::Job>>,
    /// Group commits run, and the steps they carried.
    batches: std::sync::atomic::AtomicU64,
    batched_steps: std::sync::atomic::AtomicU64,
    /// The audit log's tree and newest checkpoint, once [`Store::open_log`] has checked them.
    /// Updated only under `conn`, after a commit.
    view: RwLock<Option<log::View>>,
    /// Told of every record once its commit is durable (kinkod logs one line per record).
    observer: RwLock<Option<log::Observer>>,
}

/// The connection and, once the log is open, what appends to it.
struct Inner {
    db: Db,
    writer: Option<log::Writer>,
}

/// The backend.
enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<db::Pg>),
}

/// The advisory lock every writing transaction of the PostgreSQL backend takes first: one
/// writer at a time across replicas, so the log has one sequence and one tree.
const PG_WRITE_LOCK: i64 = 0x6b69_6e6b_6f00_0001;

impl Db {
    /// Runs `f` in one transaction and commits it if `f` succeeds. A writing transaction takes
    /// the write lock first (SQLite `BEGIN IMMEDIATE`; PostgreSQL the advisory lock).
    fn transaction<T>(
        &mut self,
        write: bool,
        f: impl FnOnce(&dyn db::Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Db::Sqlite(conn) => {
                let tx = conn.transaction_with_behavior(if write {
                    TransactionBehavior::Immediate
                } else {
                    TransactionBehavior::Deferred
                })?;
                let out = f(&*tx)?;
                tx.commit()?;
                Ok(out)
            }
            Db::Postgres(pg) => {
                pg.ensure_connected()?;
                let db::Pg { client, aux, .. } = &mut **pg;
                // A reading transaction is one snapshot (REPEATABLE READ): several queries over
                // the log see the same rows while other replicas append.
                let builder = client.build_transaction();
                let builder = if write {
                    builder
                } else {
                    builder
                        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                        .read_only(true)
                };
                let tx = aux.blocker.block(builder.start())?.map_err(db::pg_err)?;
                let conn = db::PgConn { aux, c: &tx };
                if write {
                    db::Conn::exec(
                        &conn,
                        "SELECT pg_advisory_xact_lock(?1)",
                        &[PG_WRITE_LOCK.into()],
                    )?;
                }
                let out = f(&conn)?;
                aux.blocker.block(tx.commit())?.map_err(db::pg_err)?;
                Ok(out)
            }
        }
    }

    /// Runs `f` outside any explicit transaction (reads).
    fn with<T>(
        &mut self,
        f: impl FnOnce(&dyn db::Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Db::Sqlite(conn) => f(conn),
            Db::Postgres(pg) => {
                pg.ensure_connected()?;
                f(&db::PgConn {
                    aux: &pg.aux,
                    c: &pg.client,
                })
            }
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Where the store lives. Its `Debug` never shows a connection string (it may hold a password).
#[derive(Clone)]
pub enum Location {
    /// An SQLite file (embedded; one kinkod).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database (a libpq-style connection string or URL), shared by replicas.
    Postgres(String),
    /// The same over TLS: the server's certificate must chain to `ca_pem` (PEM certificates)
    /// and name the connection string's host.
    PostgresTls {
        /// The connection string.
        url: String,
        /// The CA certificates (PEM) the server's certificate must chain to.
        ca_pem: Vec<u8>,
    },
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Location::Postgres(_) => f.write_str("Postgres(<connection string>)"),
            Location::PostgresTls { .. } => f.write_str("PostgresTls(<connection string>)"),
        }
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement of the store stays prepared (rusqlite keeps 16 by default; the store
        // has more, and a statement evicted is parsed again on its next use).
        conn.set_prepared_statement_cache_capacity(256);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::apply(&mut conn)?;
        Ok(Store::with_db(Db::Sqlite(conn)))
    }

    /// A consistent copy of the SQLite database at `db` written to `out` (which must not
    /// exist), while kinkod runs: `VACUUM INTO` from a read-only connection reads one snapshot
    /// (WAL readers never block the writer), then the copy is synced and checked with
    /// `PRAGMA integrity_check`. Returns the number of audit records the copy holds.
    pub fn sqlite_backup(db: &Path, out: &Path) -> Result<u64, StoreError> {
        if out.exists() {
            return Err(StoreError::Corrupt(format!(
                "{} exists: a backup never overwrites",
                out.display()
            )));
        }
        let src = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        src.busy_timeout(std::time::Duration::from_secs(30))?;
        let target = out
            .to_str()
            .ok_or_else(|| StoreError::Corrupt(format!("{} is not UTF-8", out.display())))?;
        src.execute("VACUUM INTO ?1", [target])?;
        drop(src);
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", out.display())))?;
        }
        std::fs::File::open(out)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", out.display())))?;
        let copy = rusqlite::Connection::open_with_flags(
            out,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Corrupt(format!(
                "the backup {} does not pass integrity_check: {check}",
                out.display()
            )));
        }
        let records: i64 = copy.query_row("SELECT count(*) FROM log_records", [], |r| r.get(0))?;
        Ok(u64::try_from(records).unwrap_or(0))
    }

    /// Connects to the PostgreSQL database at `url` and applies migrations.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Store::open_postgres_tls(url, None)
    }

    /// [`Store::open_postgres`], over TLS when `ca_pem` is given: the server's certificate must
    /// chain to those CA certificates (PEM) and name the host; the connection fails otherwise.
    /// Without it, a connection string asking for `sslmode=require` is refused (there would be
    /// nothing to verify the server with).
    pub fn open_postgres_tls(url: &str, ca_pem: Option<&[u8]>) -> Result<Store, StoreError> {
        let tls = ca_pem.map(db::tls_config).transpose()?;
        let pg = db::Pg::connect(url, tls)?;
        migrations::apply_postgres(&pg)?;
        Ok(Store::with_db(Db::Postgres(Box::new(pg))))
    }

    /// Every request in `signing`, with the replica that claimed it and when.
    pub fn signing_held(&self) -> Result<Vec<SigningHeld>, StoreError> {
        self.read(|tx| tx.signing_held())
    }

    /// Whether replicas share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.conn()
            .map(|c| matches!(c.db, Db::Postgres(_)))
            .unwrap_or(false)
    }

    /// Runs `f` while no other replica can commit (PostgreSQL: the store's write lock held by
    /// this session; SQLite: one process, nothing to hold): for start-up checks that read the
    /// log and the state in several queries and must see them at one instant.
    /// The outer result is the lock's; the inner one is `f`'s.
    pub fn exclusively<T>(&self, f: impl FnOnce() -> T) -> Result<T, StoreError> {
        let pg = matches!(self.conn()?.db, Db::Postgres(_));
        if !pg {
            return Ok(f());
        }
        let lock = |sql: &str| -> Result<(), StoreError> {
            self.conn()?
                .db
                .with(|c| c.exec(sql, &[PG_WRITE_LOCK.into()]).map(|_| ()))
        };
        lock("SELECT pg_advisory_lock(?1)")?;
        let out = f();
        lock("SELECT pg_advisory_unlock(?1)")?;
        Ok(out)
    }

    /// What in the database's settings could lose a committed transaction — a signed
    /// nonce forgotten after a crash or a failover, and then signed again. Empty when safe.
    ///
    /// PostgreSQL: `fsync` and `full_page_writes` on; `synchronous_commit` at least `on`
    /// (`local` and `off` acknowledge before standbys, or the disk, have the commit); with
    /// standbys attached, `synchronous_standby_names` set (asynchronous standbys lose
    /// acknowledged commits on failover); not a standby itself. SQLite: WAL with
    /// `synchronous=FULL`, which the store sets itself.
    pub fn durability_problems(&self) -> Result<Vec<String>, StoreError> {
        self.conn()?.db.with(|c| {
            let mut problems = Vec::new();
            let setting = |name: &str| -> Result<String, StoreError> {
                c.query_one("SELECT current_setting(?1)", &[name.into()])?.text(0)
            };
            let pg = matches!(
                c.query_opt("SELECT version()", &[]).ok().flatten().map(|r| r.text(0)),
                Some(Ok(v)) if v.starts_with("PostgreSQL")
            );
            if !pg {
                let sync = c.query_one("PRAGMA synchronous", &[])?.int(0)?;
                if sync < 2 {
                    problems.push(format!("SQLite synchronous={sync}, not FULL (2)"));
                }
                return Ok(problems);
            }
            for (name, safe) in [
                ("fsync", &["on"][..]),
                ("full_page_writes", &["on"][..]),
                ("synchronous_commit", &["on", "remote_write", "remote_apply"][..]),
            ] {
                let value = setting(name)?;
                if !safe.contains(&value.as_str()) {
                    problems.push(format!("{name} = {value} (safe: {})", safe.join(", ")));
                }
            }
            if c.query_one("SELECT pg_is_in_recovery()::int::int8", &[])?.int(0)? != 0 {
                problems.push("the server is a standby (in recovery)".into());
            }
            let standbys = c
                // A base backup (pg_basebackup) streams through a WAL sender too, in state
                // `backup`: not a standby.
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_replication WHERE state <> 'backup'",
                    &[],
                )?
                .int(0)?;
            if standbys > 0 && setting("synchronous_standby_names")?.trim().is_empty() {
                problems.push(format!(
                    "{standbys} standby(s) replicate asynchronously (synchronous_standby_names is empty): a failover loses acknowledged commits"
                ));
            }
            Ok(problems)
        })
    }

    /// Opens the store at `location` for reading only, as the operator's and auditor's
    /// commands need (`export-log`, `archive-log`, `installed-policy`, `rebuild`): it must exist
    /// (nothing is created at a mistyped path) and already be at this build's schema (nothing
    /// is migrated: a backup copy stays as it was taken), and every write through it fails
    /// (SQLite opened read-only; PostgreSQL sessions read-only).
    pub fn open_existing(location: &Location) -> Result<Store, StoreError> {
        let stale = |found: i64, supported: i64| {
            if found > supported {
                StoreError::SchemaTooNew { found, supported }
            } else {
                StoreError::NotOpenable(format!(
                    "the store is at schema version {found}, this kinkod's is {supported}: it was written by an earlier kinkod. Start this kinkod on it once (it migrates), or run this command with the kinkod that wrote it"
                ))
            }
        };
        match location {
            Location::Sqlite(path) => {
                if !path.is_file() {
                    return Err(StoreError::NotOpenable(format!(
                        "no store at {}",
                        path.display()
                    )));
                }
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
                if found == 0 {
                    return Err(StoreError::NotOpenable(format!(
                        "{} is not a Kinko store (no schema)",
                        path.display()
                    )));
                }
                if found != migrations::CURRENT {
                    return Err(stale(found, migrations::CURRENT));
                }
                Ok(Store::with_db(Db::Sqlite(conn)))
            }
            Location::Postgres(url) | Location::PostgresTls { url, .. } => {
                let tls = match location {
                    Location::PostgresTls { ca_pem, .. } => Some(db::tls_config(ca_pem)?),
                    _ => None,
                };
                let pg = db::Pg::connect(url, tls)?;
                pg.batch("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")?;
                let found = migrations::postgres_version(&pg)?;
                let supported = migrations::PG_MIGRATIONS.len() as i64;
                match found {
                    None | Some(0) => Err(StoreError::NotOpenable(
                        "the database holds no Kinko store (no kinko_schema)".into(),
                    )),
                    Some(v) if v != supported => Err(stale(v, supported)),
                    Some(_) => Ok(Store::with_db(Db::Postgres(Box::new(pg)))),
                }
            }
        }
    }

    /// Opens the store at `location`.
    pub fn open_at(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres(url) => Store::open_postgres(url),
            Location::PostgresTls { url, ca_pem } => Store::open_postgres_tls(url, Some(ca_pem)),
        }
    }

    fn with_db(db: Db) -> Store {
        Store {
            conn: Mutex::new(Inner { db, writer: None }),
            queue: Mutex::new(Vec::new()),
            batches: std::sync::atomic::AtomicU64::new(0),
            batched_steps: std::sync::atomic::AtomicU64::new(0),
            view: RwLock::new(None),
            observer: RwLock::new(None),
        }
    }

    /// Calls `f` with every record this store appends, once its commit is durable, in order,
    /// on the committing thread (keep it quick: it holds the store).
    pub fn on_committed(&self, f: impl Fn(&log::Appended) + Send + Sync + 'static) {
        if let Ok(mut o) = self.observer.write() {
            *o = Some(std::sync::Arc::new(f));
        }
    }

    fn conn(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Runs `f` in one transaction and commits it, with no audit record. For tests and offline
    /// tools; the daemon changes state only through [`Store::commit`].
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn()?.db.transaction(true, |c| f(&Tx { c }))
    }

    /// Runs `f` on one view of the store (reads).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn()?.db.with(|c| f(&Tx { c }))
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
        self.read(|tx| tx.list_by_state(state))
    }

    /// Up to `limit` requests in `state`, oldest first, after request `after` (keyset paging on
    /// creation time and id, so a page costs the same however many there are).
    pub fn list_by_state_page(
        &self,
        state: RequestState,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Request>, StoreError> {
        self.read(|tx| tx.list_by_state_page(state, after, limit))
    }

    /// How many of `requester`'s requests are pending approval.
    pub fn count_pending(&self, requester: &str) -> Result<u64, StoreError> {
        self.read(|tx| tx.count_pending(requester))
    }

    /// The request holding the claim of `value` for `key_name`: a signed digest when `digest`,
    /// else a replay key.
    pub fn claim_holder(
        &self,
        digest: bool,
        key_name: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        self.read(|tx| tx.claim_holder(digest, key_name, value))
    }

    /// How many of `requester`'s requests created at or after `since` were denied (indexed by
    /// requester and state).
    pub fn count_denied_since(&self, requester: &str, since: i64) -> Result<u64, StoreError> {
        self.read(|tx| tx.count_denied_since(requester, since))
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
        self.read(|tx| tx.reservations_since(key_name, asset, since))
    }

    /// Every reservation at or after `since` (to rebuild the in-memory ledger at start-up).
    pub fn all_reservations_since(&self, since: i64) -> Result<Vec<Reservation>, StoreError> {
        self.read(|tx| tx.all_reservations_since(since))
    }

    /// Every reservation at or after `since`, and the number of the newest reservation, at one
    /// instant (one reading transaction): where a velocity ledger in memory starts from.
    pub fn reservations_since_with_last(
        &self,
        since: i64,
    ) -> Result<(Vec<Reservation>, i64), StoreError> {
        self.conn()?.db.transaction(false, |c| {
            let tx = Tx { c };
            Ok((tx.all_reservations_since(since)?, tx.last_reservation_id()?))
        })
    }

    /// Reservations committed after the one numbered `after` (see [`Tx::reservations_after`]).
    pub fn reservations_after(&self, after: i64) -> Result<Vec<(i64, Reservation)>, StoreError> {
        self.read(|tx| tx.reservations_after(after))
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
        self.read(|tx| tx.open_governance(kind))
    }

    /// Every governance request of a kind waiting out its delay, oldest first.
    pub fn waiting_governance(&self, kind: GovernanceKind) -> Result<Vec<Governance>, StoreError> {
        self.read(|tx| tx.waiting_governance(kind))
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
        self.read(|tx| tx.installed_policy())
    }

    /// Every policy installed, oldest first (the bootstrap policy, then each governance
    /// installation).
    pub fn installed_policies(&self) -> Result<Vec<InstalledPolicy>, StoreError> {
        self.read(|tx| tx.installed_policies())
    }

    /// Installs a policy. For a proposal, atomically: its governance request becomes
    /// `effective`, and every other open install proposal is `superseded` (its approvals were
    /// signed under a policy no longer in force).
    pub fn install_policy(&self, p: &InstalledPolicy) -> Result<(), StoreError> {
        self.write(|tx| tx.install_policy(p))
    }

    /// Every request's id and state (for the start-time check against the log).
    pub fn all_request_states(&self) -> Result<Vec<(String, RequestState)>, StoreError> {
        self.read(|tx| tx.all_request_states())
    }

    /// Every stored verdict: withdrawal approvals first, then governance votes.
    pub fn all_verdicts(&self) -> Result<Vec<StoredVerdict>, StoreError> {
        self.read(|tx| tx.all_verdicts())
    }

    /// Every claim of a replay key or digest.
    pub fn all_claims(&self) -> Result<Vec<StoredClaim>, StoreError> {
        self.read(|tx| tx.all_claims())
    }

    /// Requests pending approval created before `before` (unix seconds), oldest first.
    pub fn pending_created_before(&self, before: i64) -> Result<Vec<String>, StoreError> {
        self.read(|tx| tx.pending_created_before(before))
    }

    /// How many requests are in each state (for metrics).
    pub fn count_by_state(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|tx| tx.count_by_state())
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

/// Test support: throwaway PostgreSQL databases on the cluster `scripts/pg-cluster.sh` starts
/// (its connection string in `KINKO_TEST_PG_URL`).
#[doc(hidden)]
pub mod testing {
    use crate::StoreError;

    /// The test cluster's connection string, if one was started.
    pub fn postgres_url() -> Option<String> {
        std::env::var("KINKO_TEST_PG_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
    }

    /// Creates database `name` on the cluster at `base` and returns its connection string.
    pub fn create_database(base: &str, name: &str) -> Result<String, StoreError> {
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Io(format!("bad database name {name:?}")));
        }
        let pg = crate::db::Pg::connect(base, None)?;
        pg.batch(&format!("CREATE DATABASE {name}"))?;
        let mut parts: Vec<String> = base
            .split_whitespace()
            .filter(|p| !p.starts_with("dbname="))
            .map(str::to_string)
            .collect();
        parts.push(format!("dbname={name}"));
        Ok(parts.join(" "))
    }

    /// Runs SQL on the database at `url` (test set-up: settings, edits behind kinkod).
    pub fn sql(url: &str, statements: &str) -> Result<(), StoreError> {
        crate::db::Pg::connect(url, None)?.batch(statements)
    }

    /// A PostgreSQL cluster of one test's own (`scripts/pg-cluster.sh start DIR`, with `env`
    /// for the script), stopped when dropped: for tests that stop, restart or cut off the server
    /// itself, or need it configured otherwise than the suite's shared cluster.
    #[derive(Debug)]
    pub struct Cluster {
        dir: std::path::PathBuf,
        /// Its connection string (database `postgres`).
        pub url: String,
    }

    /// `scripts/pg-cluster.sh`, found upwards from the running test's package (cargo sets
    /// `CARGO_MANIFEST_DIR` for the tests it runs) or the working directory. Found at run time:
    /// a path compiled in (`env!`) would put the build directory into every kinkod binary's
    /// code and make builds in different places differ (docs/supply-chain.md).
    fn cluster_script() -> Result<std::path::PathBuf, StoreError> {
        let starts = [
            std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from),
            std::env::current_dir().ok(),
        ];
        starts
            .iter()
            .flatten()
            .flat_map(|start| start.ancestors())
            .map(|dir| dir.join("scripts/pg-cluster.sh"))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                StoreError::Io(
                    "scripts/pg-cluster.sh not found above CARGO_MANIFEST_DIR or the working directory"
                        .into(),
                )
            })
    }

    impl Cluster {
        /// Starts a cluster in `dir` (a new directory).
        pub fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Result<Cluster, StoreError> {
            let out = std::process::Command::new(cluster_script()?)
                .arg("start")
                .arg(dir)
                .envs(env.iter().copied())
                .output()
                .map_err(|e| StoreError::Io(format!("pg-cluster.sh: {e}")))?;
            if !out.status.success() {
                return Err(StoreError::Io(format!(
                    "pg-cluster.sh start failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            Ok(Cluster {
                dir: dir.to_path_buf(),
                url: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            })
        }

        /// `pg-cluster.sh stop` or `resume` on this cluster.
        pub fn run(&self, cmd: &str) -> Result<(), StoreError> {
            let status = std::process::Command::new(cluster_script()?)
                .arg(cmd)
                .arg(&self.dir)
                .status()
                .map_err(|e| StoreError::Io(format!("pg-cluster.sh: {e}")))?;
            if status.success() {
                Ok(())
            } else {
                Err(StoreError::Io(format!("pg-cluster.sh {cmd} failed")))
            }
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            if let Ok(script) = cluster_script() {
                let _ = std::process::Command::new(script)
                    .arg("stop")
                    .arg(&self.dir)
                    .status();
            }
        }
    }

    /// A fresh database for one test (`KINKO_TEST_PG_URL` must be set).
    pub fn fresh_database(tag: &str) -> Result<String, StoreError> {
        let base = postgres_url().ok_or_else(|| {
            StoreError::Io("KINKO_TEST_PG_URL is not set (scripts/pg-cluster.sh start DIR)".into())
        })?;
        // Unique within the process (a counter: two threads can read the same clock value) and
        // across processes (the pid) and runs (the clock).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "t_{}_{}_{n}_{nanos}",
            tag.to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id()
        );
        create_database(&base, &name)
    }
}

#[cfg(test)]
mod tests;
