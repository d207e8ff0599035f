//! Versioned schema migrations, recorded in `PRAGMA user_version`. Each step runs in one
//! transaction; a database newer than this build is refused rather than guessed at.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;
use crate::db::{Conn as _, Pg, PgConn};

/// The migrations, in order; `user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE requests (
        id TEXT PRIMARY KEY NOT NULL,
        requester TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        key_name TEXT NOT NULL,
        chain TEXT NOT NULL,
        network TEXT NOT NULL,
        payload BLOB NOT NULL,
        reference TEXT NOT NULL,
        requester_signature BLOB NOT NULL,
        intent_json TEXT NOT NULL,
        intent_digest BLOB NOT NULL,
        policy_hash BLOB NOT NULL,
        decision_json TEXT NOT NULL,
        state TEXT NOT NULL,
        final_reason TEXT,
        signed_transaction BLOB,
        transaction_id TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (requester, idempotency_key)
    ) STRICT;
    CREATE INDEX requests_by_state ON requests (state, created_at);
    CREATE TABLE approvals (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL REFERENCES requests (id),
        officer_id TEXT NOT NULL,
        approve INTEGER NOT NULL,
        message BLOB NOT NULL,
        signature BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        UNIQUE (request_id, officer_id)
    ) STRICT;
    CREATE TABLE replay_keys (
        key_name TEXT NOT NULL,
        replay_key TEXT NOT NULL,
        request_id TEXT NOT NULL REFERENCES requests (id),
        at INTEGER NOT NULL,
        PRIMARY KEY (key_name, replay_key)
    ) STRICT;
    CREATE TABLE signed_digests (
        key_name TEXT NOT NULL,
        digest TEXT NOT NULL,
        request_id TEXT NOT NULL REFERENCES requests (id),
        at INTEGER NOT NULL,
        PRIMARY KEY (key_name, digest)
    ) STRICT;
    CREATE TABLE reservations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key_name TEXT NOT NULL,
        asset TEXT NOT NULL,
        amount TEXT NOT NULL,
        at INTEGER NOT NULL,
        request_id TEXT NOT NULL REFERENCES requests (id)
    ) STRICT;
    CREATE INDEX reservations_by_key_asset_time ON reservations (key_name, asset, at);
    CREATE TABLE freeze (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        frozen INTEGER NOT NULL,
        frozen_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        since INTEGER NOT NULL
    ) STRICT;",
    // 2: governance requests (freeze, unfreeze, policy installs) and their signed approvals.
    "CREATE TABLE governance (
        id TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        quorum_reached_at INTEGER,
        state TEXT NOT NULL
    ) STRICT;
    CREATE TABLE governance_approvals (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        governance_id TEXT NOT NULL REFERENCES governance (id),
        officer_id TEXT NOT NULL,
        message BLOB NOT NULL,
        signature BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        UNIQUE (governance_id, officer_id)
    ) STRICT;",
    // 3: counting a requester's pending requests without a scan.
    "CREATE INDEX requests_by_requester_state ON requests (requester, state);",
    // 4: policies proposed and installed through governance; finding the open unfreeze.
    "CREATE TABLE policy_proposals (
        id TEXT PRIMARY KEY NOT NULL REFERENCES governance (id),
        policy_hash BLOB NOT NULL,
        policy_text TEXT NOT NULL,
        base_policy_hash BLOB NOT NULL,
        proposed_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE installed_policies (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        policy_hash BLOB NOT NULL,
        policy_text TEXT NOT NULL,
        proposal_id TEXT,
        installed_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX governance_by_kind_state ON governance (kind, state);",
    // 5: the newest checkpoint the daemon signed, kept apart from the log to catch a log
    // truncated or replaced behind its back.
    "CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        size INTEGER NOT NULL,
        root BLOB NOT NULL
    ) STRICT;",
    // 6: the freeze's identity (its audit record's leaf hash), which an unfreeze must name.
    "ALTER TABLE freeze ADD COLUMN freeze_id BLOB NOT NULL DEFAULT x'';",
    // 7: the audit log itself: records and signed checkpoints, appended in the same transaction
    // as the state change they record. Append-only: updates and deletes are refused.
    "CREATE TABLE log_records (
        seq INTEGER PRIMARY KEY CHECK (seq >= 0),
        time_ms INTEGER NOT NULL,
        leaf_hash BLOB NOT NULL CHECK (length(leaf_hash) = 32),
        line TEXT NOT NULL
    ) STRICT;
    CREATE TABLE log_checkpoints (
        size INTEGER PRIMARY KEY CHECK (size >= 0),
        note TEXT NOT NULL
    ) STRICT;
    CREATE TRIGGER log_records_append_only_update BEFORE UPDATE ON log_records
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER log_records_append_only_delete BEFORE DELETE ON log_records
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER log_checkpoints_append_only_update BEFORE UPDATE ON log_checkpoints
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER log_checkpoints_append_only_delete BEFORE DELETE ON log_checkpoints
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    DROP TABLE audit_anchor;",
    // 8: the replica that claimed a request for signing (recovery fails only its own).
    "ALTER TABLE requests ADD COLUMN claimed_by TEXT;",
    // 9: counting a requester's requests denied in the last day from the index alone (with
    // (requester, state) only, every denied request ever stored was read at each submission).
    "CREATE INDEX requests_by_requester_state_created ON requests (requester, state, created_at);
    DROP INDEX requests_by_requester_state;",
    // 10: witness cosignatures of checkpoints (C2SP tlog-cosignature lines), one per checkpoint
    // size and witness key. Kept, never changed: a cosignature is evidence.
    "CREATE TABLE log_cosignatures (
        size INTEGER NOT NULL CHECK (size >= 0),
        witness TEXT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (size, witness)
    ) STRICT;
    CREATE TRIGGER log_cosignatures_append_only_update BEFORE UPDATE ON log_cosignatures
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER log_cosignatures_append_only_delete BEFORE DELETE ON log_cosignatures
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
];

/// The schema version this build writes.
pub(crate) const CURRENT: i64 = MIGRATIONS.len() as i64;

pub(crate) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > CURRENT {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: CURRENT,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The PostgreSQL schema, in versions recorded in `kinko_schema`. Version 1 is the SQLite
/// schema at its version 7 (the two backends hold the same tables; integers are BIGINT, bytes
/// BYTEA).
pub(crate) const PG_MIGRATIONS: &[&str] = &[
    // 1: everything, the audit log included.
    "CREATE TABLE requests (
        id TEXT PRIMARY KEY NOT NULL,
        requester TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        key_name TEXT NOT NULL,
        chain TEXT NOT NULL,
        network TEXT NOT NULL,
        payload BYTEA NOT NULL,
        reference TEXT NOT NULL,
        requester_signature BYTEA NOT NULL,
        intent_json TEXT NOT NULL,
        intent_digest BYTEA NOT NULL,
        policy_hash BYTEA NOT NULL,
        decision_json TEXT NOT NULL,
        state TEXT NOT NULL,
        final_reason TEXT,
        signed_transaction BYTEA,
        transaction_id TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        UNIQUE (requester, idempotency_key)
    );
    CREATE INDEX requests_by_state ON requests (state, created_at);
    CREATE INDEX requests_by_requester_state ON requests (requester, state);
    CREATE TABLE approvals (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES requests (id),
        officer_id TEXT NOT NULL,
        approve BIGINT NOT NULL,
        message BYTEA NOT NULL,
        signature BYTEA NOT NULL,
        received_at BIGINT NOT NULL,
        UNIQUE (request_id, officer_id)
    );
    CREATE TABLE replay_keys (
        key_name TEXT NOT NULL,
        replay_key TEXT NOT NULL,
        request_id TEXT NOT NULL REFERENCES requests (id),
        at BIGINT NOT NULL,
        PRIMARY KEY (key_name, replay_key)
    );
    CREATE TABLE signed_digests (
        key_name TEXT NOT NULL,
        digest TEXT NOT NULL,
        request_id TEXT NOT NULL REFERENCES requests (id),
        at BIGINT NOT NULL,
        PRIMARY KEY (key_name, digest)
    );
    CREATE TABLE reservations (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key_name TEXT NOT NULL,
        asset TEXT NOT NULL,
        amount TEXT NOT NULL,
        at BIGINT NOT NULL,
        request_id TEXT NOT NULL REFERENCES requests (id)
    );
    CREATE INDEX reservations_by_key_asset_time ON reservations (key_name, asset, at);
    CREATE TABLE \"freeze\" (
        id BIGINT PRIMARY KEY CHECK (id = 1),
        frozen BIGINT NOT NULL,
        frozen_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        since BIGINT NOT NULL,
        freeze_id BYTEA NOT NULL DEFAULT ''::bytea
    );
    CREATE TABLE governance (
        id TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        quorum_reached_at BIGINT,
        state TEXT NOT NULL
    );
    CREATE INDEX governance_by_kind_state ON governance (kind, state);
    CREATE TABLE governance_approvals (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        governance_id TEXT NOT NULL REFERENCES governance (id),
        officer_id TEXT NOT NULL,
        message BYTEA NOT NULL,
        signature BYTEA NOT NULL,
        received_at BIGINT NOT NULL,
        UNIQUE (governance_id, officer_id)
    );
    CREATE TABLE policy_proposals (
        id TEXT PRIMARY KEY NOT NULL REFERENCES governance (id),
        policy_hash BYTEA NOT NULL,
        policy_text TEXT NOT NULL,
        base_policy_hash BYTEA NOT NULL,
        proposed_by TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE installed_policies (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        policy_hash BYTEA NOT NULL,
        policy_text TEXT NOT NULL,
        proposal_id TEXT,
        installed_at BIGINT NOT NULL
    );
    CREATE TABLE log_records (
        seq BIGINT PRIMARY KEY CHECK (seq >= 0),
        time_ms BIGINT NOT NULL,
        leaf_hash BYTEA NOT NULL CHECK (length(leaf_hash) = 32),
        line TEXT NOT NULL
    );
    CREATE TABLE log_checkpoints (
        size BIGINT PRIMARY KEY CHECK (size >= 0),
        note TEXT NOT NULL
    );
    CREATE FUNCTION kinko_append_only() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END
    $body$;
    CREATE TRIGGER log_records_append_only BEFORE UPDATE OR DELETE ON log_records
        FOR EACH ROW EXECUTE FUNCTION kinko_append_only();
    CREATE TRIGGER log_records_no_truncate BEFORE TRUNCATE ON log_records
        FOR EACH STATEMENT EXECUTE FUNCTION kinko_append_only();
    CREATE TRIGGER log_checkpoints_append_only BEFORE UPDATE OR DELETE ON log_checkpoints
        FOR EACH ROW EXECUTE FUNCTION kinko_append_only();
    CREATE TRIGGER log_checkpoints_no_truncate BEFORE TRUNCATE ON log_checkpoints
        FOR EACH STATEMENT EXECUTE FUNCTION kinko_append_only();",
    // 2: the replica that claimed a request for signing (recovery fails only its own).
    "ALTER TABLE requests ADD COLUMN claimed_by TEXT",
    // 3: as SQLite's 9 (a requester's denied requests of the last day, from the index).
    "CREATE INDEX requests_by_requester_state_created ON requests (requester, state, created_at);
    DROP INDEX requests_by_requester_state",
    // 4: as SQLite's 10 (witness cosignatures of checkpoints).
    "CREATE TABLE log_cosignatures (
        size BIGINT NOT NULL CHECK (size >= 0),
        witness TEXT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (size, witness)
    );
    CREATE TRIGGER log_cosignatures_append_only BEFORE UPDATE OR DELETE ON log_cosignatures
        FOR EACH ROW EXECUTE FUNCTION kinko_append_only();
    CREATE TRIGGER log_cosignatures_no_truncate BEFORE TRUNCATE ON log_cosignatures
        FOR EACH STATEMENT EXECUTE FUNCTION kinko_append_only()",
];

/// The PostgreSQL schema version recorded in `kinko_schema`, or `None` without that table.
/// Reads only.
pub(crate) fn postgres_version(pg: &Pg) -> Result<Option<i64>, StoreError> {
    let conn = PgConn {
        aux: &pg.aux,
        c: &pg.client,
    };
    let exists = conn
        .query_opt(
            "SELECT (to_regclass('kinko_schema') IS NOT NULL)::int::bigint",
            &[],
        )?
        .map(|r| r.int(0))
        .transpose()?;
    if exists != Some(1) {
        return Ok(None);
    }
    Ok(Some(
        conn.query_opt("SELECT version FROM kinko_schema", &[])?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0),
    ))
}

/// The session-level advisory lock replicas take while migrating, one at a time.
const PG_MIGRATION_LOCK: i64 = 0x6b69_6e6b_6f00_0002;

/// Applies the PostgreSQL migrations not applied yet (several replicas starting at once
/// migrate one after the other); refuses a schema newer than this build.
pub(crate) fn apply_postgres(pg: &Pg) -> Result<(), StoreError> {
    pg.batch(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))?;
    let result = (|| {
        pg.batch("CREATE TABLE IF NOT EXISTS kinko_schema (version BIGINT NOT NULL)")?;
        let conn = PgConn {
            aux: &pg.aux,
            c: &pg.client,
        };
        let found = conn
            .query_opt("SELECT version FROM kinko_schema", &[])?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        let supported = PG_MIGRATIONS.len() as i64;
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        for (i, sql) in PG_MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(found).unwrap_or(0))
        {
            pg.batch(&format!(
                "BEGIN; {sql}; DELETE FROM kinko_schema; INSERT INTO kinko_schema (version) VALUES ({}); COMMIT;",
                i + 1
            ))?;
        }
        Ok(())
    })();
    let unlocked = pg.batch(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"));
    result.and(unlocked)
}
