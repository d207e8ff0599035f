//! Versioned schema migrations, recorded in `PRAGMA user_version`. Each step runs in one
//! transaction; a database newer than this build is refused rather than guessed at.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

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
