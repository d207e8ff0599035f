//! The two backends under one small interface: a statement with `?N` placeholders and
//! [`Val`] parameters, executed or queried on SQLite (rusqlite) or PostgreSQL (tokio-postgres),
//! rows read back as [`Row`]s of [`Val`]s. Every statement of the store is written once against
//! [`Conn`]; the only SQL that differs between the two is the schema (`migrations`).
//!
//! Integer columns are 64-bit on both (`INTEGER` in SQLite, `BIGINT` in PostgreSQL); booleans
//! are stored as 0/1 integers; text is `TEXT`; bytes are `BLOB` / `BYTEA`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::StoreError;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&[u8]> for Val {
    fn from(v: &[u8]) -> Self {
        Val::Blob(v.to_vec())
    }
}
impl From<&Vec<u8>> for Val {
    fn from(v: &Vec<u8>) -> Self {
        Val::Blob(v.clone())
    }
}
impl From<&[u8; 32]> for Val {
    fn from(v: &[u8; 32]) -> Self {
        Val::Blob(v.to_vec())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// One row of a query.
#[derive(Debug)]
pub(crate) struct Row(Vec<Val>);

fn wrong(i: usize, want: &str, got: &Val) -> StoreError {
    StoreError::Corrupt(format!("column {i}: expected {want}, found {got:?}"))
}

impl Row {
    fn at(&self, i: usize) -> Result<&Val, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {i}")))
    }
    pub(crate) fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.at(i)? {
            Val::Int(v) => Ok(*v),
            other => Err(wrong(i, "an integer", other)),
        }
    }
    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            other => Err(wrong(i, "an integer or null", other)),
        }
    }
    pub(crate) fn boolean(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }
    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.at(i)? {
            Val::Text(v) => Ok(v.clone()),
            other => Err(wrong(i, "text", other)),
        }
    }
    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Text(v) => Ok(Some(v.clone())),
            other => Err(wrong(i, "text or null", other)),
        }
    }
    pub(crate) fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.at(i)? {
            Val::Blob(v) => Ok(v.clone()),
            other => Err(wrong(i, "bytes", other)),
        }
    }
    pub(crate) fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Blob(v) => Ok(Some(v.clone())),
            other => Err(wrong(i, "bytes or null", other)),
        }
    }
    /// A text column parsed into its type.
    pub(crate) fn parsed<T>(&self, i: usize) -> Result<T, StoreError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let text = self.text(i)?;
        text.parse()
            .map_err(|e: T::Err| StoreError::Corrupt(format!("column {i}: {text:?}: {e}")))
    }
    /// A 32-byte hash column.
    pub(crate) fn hash32(&self, i: usize) -> Result<[u8; 32], StoreError> {
        let bytes = self.blob(i)?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            StoreError::Corrupt(format!(
                "column {i}: a hash of {} bytes, not 32",
                bytes.len()
            ))
        })
    }
}

/// Runs statements: one connection inside one transaction (or none, for migrations).
pub(crate) trait Conn {
    /// Executes a statement; returns the number of rows changed.
    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, StoreError>;
    /// Runs a query; returns every row.
    fn query(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError>;
    /// Runs a query; returns its first row, if any.
    fn query_opt(&self, sql: &str, params: &[Val]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    /// Runs a query expected to return exactly one row.
    fn query_one(&self, sql: &str, params: &[Val]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Corrupt("a query returned no row".into()))
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite

impl rusqlite::types::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Val::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

fn sqlite_row(row: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match row.get_ref(i)? {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(v) => Val::Int(v),
            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Val::Blob(b.to_vec()),
            ValueRef::Real(_) => {
                return Err(rusqlite::Error::InvalidColumnType(
                    i,
                    "a real number".into(),
                    rusqlite::types::Type::Real,
                ));
            }
        });
    }
    Ok(Row(out))
}

impl Conn for rusqlite::Connection {
    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.execute(rusqlite::params_from_iter(params.iter()))?;
        Ok(n as u64)
    }
    fn query(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
            sqlite_row(r, n)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// `?N` placeholders as PostgreSQL's `$N` (no statement of the store has a `?` elsewhere).
pub(crate) fn pg_sql(sql: &str) -> String {
    sql.replace('?', "$")
}

impl tokio_postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::{IsNull, Type};
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Val::Text(v) => v.to_sql(ty, out),
            Val::Blob(v) => v.to_sql(ty, out),
        }
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        use tokio_postgres::types::Type;
        matches!(
            *ty,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::TEXT | Type::VARCHAR | Type::BYTEA
        )
    }
    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for Val {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        Ok(match *ty {
            Type::INT2 => Val::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::INT4 => Val::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT8 => Val::Int(i64::from_sql(ty, raw)?),
            Type::BOOL => Val::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::BYTEA => Val::Blob(Vec::<u8>::from_sql(ty, raw)?),
            _ => Val::Text(String::from_sql(ty, raw)?),
        })
    }
    fn from_sql_null(
        _: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Val::Null)
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        use tokio_postgres::types::Type;
        matches!(
            *ty,
            Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::BOOL
                | Type::BYTEA
                | Type::TEXT
                | Type::VARCHAR
                | Type::NAME
        )
    }
}

/// How long one call to PostgreSQL (a statement, a commit, connecting) may wait for its
/// answer. A partitioned network or a hung server otherwise holds a request — and the store's
/// mutex — forever; past this the call fails closed (nothing signed) and the connection is
/// dropped, so the next call connects again. Longer than [`PG_IDLE_IN_TRANSACTION`]: a replica
/// waiting for the write lock that a partitioned replica's session holds gets it once the
/// server has ended that session.
pub(crate) const PG_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Set on every session: the server ends a session left idle inside a transaction this long (a
/// replica cut off mid-transaction), which releases the write lock it held.
pub(crate) const PG_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(4);

/// Settings of every session. Besides [`PG_IDLE_IN_TRANSACTION`]: the server probes an idle
/// client after 5 s and gives up after 3 unanswered probes 2 s apart, or after 10 s of unacknowledged
/// data, so a partitioned replica's session (and the start-up lock it may hold) ends.
fn session_settings() -> String {
    format!(
        "SET idle_in_transaction_session_timeout = {}; \
         SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
         SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000",
        PG_IDLE_IN_TRANSACTION.as_millis()
    )
}

/// A TLS client configuration that trusts only the CA certificates in `ca_pem` (the server's
/// certificate must chain to one of them and name the host), with no client certificate.
pub(crate) fn tls_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: String| StoreError::Postgres(format!("the CA for TLS to PostgreSQL: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the PEM file".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Drives tokio-postgres futures to completion from the store's synchronous API, on the
/// store's own runtime (which also runs the connection task): from a blocking thread or a
/// thread outside any runtime directly, from a multi-threaded runtime's worker through
/// `block_in_place`. Every call is bounded by [`PG_ANSWER_TIMEOUT`].
pub(crate) struct Blocker {
    rt: Option<tokio::runtime::Runtime>,
    /// A call went unanswered: the connection may be half-way through anything, so it is not
    /// used again.
    lost: AtomicBool,
}

impl Blocker {
    pub(crate) fn new() -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kinko-store-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("store runtime: {e}")))?;
        Ok(Self {
            rt: Some(rt),
            lost: AtomicBool::new(false),
        })
    }

    /// Whether a call went unanswered (the connection must be made again).
    pub(crate) fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub(crate) fn handle(&self) -> Result<&tokio::runtime::Handle, StoreError> {
        self.rt
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .ok_or(StoreError::Poisoned)
    }

    pub(crate) fn block<F: Future>(&self, f: F) -> Result<F::Output, StoreError> {
        if self.lost() {
            return Err(StoreError::Postgres(
                "the connection to PostgreSQL was dropped after an unanswered call".into(),
            ));
        }
        let handle = self.handle()?;
        let bounded = async { tokio::time::timeout(PG_ANSWER_TIMEOUT, f).await };
        let out = match tokio::runtime::Handle::try_current() {
            Ok(current)
                if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(|| handle.block_on(bounded))
            }
            Ok(_) => {
                return Err(StoreError::Io(
                    "the PostgreSQL store needs a multi-threaded runtime (or none)".into(),
                ));
            }
            Err(_) => handle.block_on(bounded),
        };
        out.map_err(|_| {
            self.lost.store(true, Ordering::SeqCst);
            StoreError::Postgres(format!(
                "PostgreSQL did not answer within {} s (server down or network partitioned); \
                 the outcome of this call is unknown to this replica, which connects again",
                PG_ANSWER_TIMEOUT.as_secs()
            ))
        })
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        // Never blocks (dropping a runtime inside another's context would panic).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A PostgreSQL connection: the client, and what drives it (kept apart so that a transaction
/// can borrow the client while statements are prepared through `aux`).
pub(crate) struct Pg {
    pub(crate) client: tokio_postgres::Client,
    pub(crate) aux: PgAux,
    url: String,
    /// TLS to the server, verified against the configured CA (None: no TLS).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// After a failed attempt to connect again, calls fail at once until then: while the
    /// database is unreachable each call would otherwise wait out a connect timeout, one after
    /// another behind the store's mutex.
    retry_after: Option<std::time::Instant>,
}

/// How long after a failed attempt to connect the next one is made.
pub(crate) const PG_RECONNECT_PAUSE: Duration = Duration::from_secs(2);

/// How long connecting may take unless the connection string says (`connect_timeout`): a
/// database on the same network answers in milliseconds.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The runtime that drives the connection, and the prepared statements.
pub(crate) struct PgAux {
    pub(crate) blocker: Blocker,
    statements: Mutex<HashMap<String, tokio_postgres::Statement>>,
}

pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres(match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    })
}

impl Pg {
    /// Connects: over TLS verified against the configured CA when `tls` is given, else in the
    /// clear (a local socket or a trusted network only; see docs/ha.md).
    pub(crate) fn connect(
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, StoreError> {
        use tokio_postgres::config::SslMode;
        let mut config: tokio_postgres::Config = url.parse().map_err(pg_err)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(PG_CONNECT_TIMEOUT);
        }
        let blocker = Blocker::new()?;
        let handle = blocker.handle()?.clone();
        let client = match &tls {
            Some(tls) => {
                if config.get_ssl_mode() == SslMode::Disable {
                    return Err(StoreError::Postgres(
                        "the connection string says sslmode=disable, but a CA for TLS to PostgreSQL is configured".into(),
                    ));
                }
                // Never falls back to the clear (`prefer` would).
                config.ssl_mode(SslMode::Require);
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, connection) =
                    blocker.block(config.connect(connector))?.map_err(pg_err)?;
                handle.spawn(async move {
                    let _ = connection.await;
                });
                client
            }
            None => {
                if config.get_ssl_mode() == SslMode::Require {
                    return Err(StoreError::Postgres(
                        "the connection string says sslmode=require, but no CA is configured to verify the server with ([store] postgres_ca)".into(),
                    ));
                }
                let (client, connection) = blocker
                    .block(config.connect(tokio_postgres::NoTls))?
                    .map_err(pg_err)?;
                // The connection runs on the store's runtime; when it ends, calls fail with its
                // error.
                handle.spawn(async move {
                    let _ = connection.await;
                });
                client
            }
        };
        blocker
            .block(client.batch_execute(&session_settings()))?
            .map_err(pg_err)?;
        Ok(Self {
            client,
            aux: PgAux {
                blocker,
                statements: Mutex::new(HashMap::new()),
            },
            url: url.to_string(),
            tls,
            retry_after: None,
        })
    }

    /// Connects again if the connection was lost (PostgreSQL restarted, the network broke):
    /// the call that finds it lost fails, and the next one reconnects — kinkod recovers without
    /// a restart of its own. Fails (and stays disconnected) while the server is unreachable.
    pub(crate) fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if !self.client.is_closed() && !self.aux.blocker.lost() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        if self.retry_after.is_some_and(|t| now < t) {
            return Err(StoreError::Postgres(
                "PostgreSQL is unreachable (the last attempt to connect failed under 2 s ago)"
                    .into(),
            ));
        }
        match Pg::connect(&self.url, self.tls.clone()) {
            Ok(pg) => {
                *self = pg;
                Ok(())
            }
            Err(e) => {
                // From the failure, not the attempt: a connect that timed out must not leave
                // the next call to wait out another one at once.
                self.retry_after = Some(std::time::Instant::now() + PG_RECONNECT_PAUSE);
                Err(e)
            }
        }
    }

    /// Runs SQL with no parameters and no results (schema, settings).
    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.aux
            .blocker
            .block(self.client.batch_execute(sql))?
            .map_err(pg_err)
    }
}

impl PgAux {
    fn statement(
        &self,
        c: &impl tokio_postgres::GenericClient,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(s) = self
            .statements
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .get(sql)
        {
            return Ok(s.clone());
        }
        let s = self
            .blocker
            .block(c.prepare(&pg_sql(sql)))?
            .map_err(pg_err)?;
        self.statements
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// A PostgreSQL transaction (or the bare client) as a [`Conn`].
pub(crate) struct PgConn<'a, C: tokio_postgres::GenericClient + Sync> {
    pub(crate) aux: &'a PgAux,
    pub(crate) c: &'a C,
}

fn refs(params: &[Val]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

impl<C: tokio_postgres::GenericClient + Sync> Conn for PgConn<'_, C> {
    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        let stmt = self.aux.statement(self.c, sql)?;
        self.aux
            .blocker
            .block(self.c.execute(&stmt, &refs(params)))?
            .map_err(pg_err)
    }
    fn query(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let stmt = self.aux.statement(self.c, sql)?;
        let rows = self
            .aux
            .blocker
            .block(self.c.query(&stmt, &refs(params)))?
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.try_get::<_, Val>(i).map_err(pg_err))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
            })
            .collect()
    }
}
