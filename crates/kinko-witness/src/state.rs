//! The witness's decision and its durable state.

use std::path::Path;
use std::sync::Mutex;

use kinko_audit::cosignature::{CosignerKey, cosign};
use kinko_audit::merkle::Hash;
use kinko_audit::note::SoftwareSigner;
use kinko_audit::witness::{KnownLog, Refusal, check, parse_add_checkpoint};

/// The witness could not run (its database or key), as opposed to refusing a request.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The state database failed.
    #[error("witness state {0}")]
    Db(#[from] rusqlite::Error),
    /// Cosigning failed.
    #[error("cosigning: {0}")]
    Cosign(#[from] kinko_audit::Error),
    /// A stored row is not what this witness writes.
    #[error("witness state is corrupt: {0}")]
    Corrupt(String),
}

/// An answer to an `add-checkpoint` request: the HTTP status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body: cosignature lines on 200, the latest size on 409, a reason otherwise.
    pub body: String,
}

/// A witness: its name and cosigning key, the logs it knows, and its state.
pub struct Witness {
    name: String,
    key: CosignerKey,
    signer: SoftwareSigner,
    logs: Vec<KnownLog>,
    db: Mutex<rusqlite::Connection>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("key", &self.key.to_string())
            .field("logs", &self.logs.len())
            .finish_non_exhaustive()
    }
}

impl Witness {
    /// Opens (creating if missing) the state database at `path`.
    pub fn open(
        name: &str,
        signer: SoftwareSigner,
        logs: Vec<KnownLog>,
        path: &Path,
    ) -> Result<Self, WitnessError> {
        use kinko_audit::note::CheckpointSigner as _;
        let key = CosignerKey::new(name, &signer.public_key())?;
        let db = rusqlite::Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // A cosignature is answered only once its checkpoint survives a power cut.
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS latest (
                origin TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                root BLOB NOT NULL,
                note TEXT NOT NULL,
                cosigned_at INTEGER NOT NULL
            ) STRICT;",
        )?;
        Ok(Self {
            name: name.to_string(),
            key,
            signer,
            logs,
            db: Mutex::new(db),
        })
    }

    /// The witness's cosigner key (its vkey, to give to logs and verifiers).
    pub fn key(&self) -> &CosignerKey {
        &self.key
    }

    /// The latest checkpoint cosigned for `origin`: its size and the signed note as received.
    pub fn latest(&self, origin: &str) -> Result<Option<(u64, String)>, WitnessError> {
        let db = self
            .db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let row = db
            .query_row(
                "SELECT size, note FROM latest WHERE origin = ?1",
                [origin],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        row.map(|(s, n)| {
            u64::try_from(s)
                .map(|s| (s, n))
                .map_err(|_| WitnessError::Corrupt("negative size".into()))
        })
        .transpose()
    }

    /// Decides an `add-checkpoint` request body at `now` (POSIX seconds); an `Err` is the
    /// witness's own failure (answer 500), not a refusal.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<Answer, WitnessError> {
        let req = match parse_add_checkpoint(body) {
            Ok(r) => r,
            Err(refusal) => return Ok(refused(&refusal)),
        };
        let mut db = self
            .db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // IMMEDIATE: the write lock from the read on, so no other writer (another process on
        // the same file included) slips in between the check and the write.
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut stored: Option<Result<(u64, Hash), WitnessError>> = None;
        let decision = check(&req, &self.logs, |log| {
            let row = tx
                .query_row(
                    "SELECT size, root FROM latest WHERE origin = ?1",
                    [&log.origin],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                });
            match row {
                Ok(Some((size, root))) => {
                    let r = u64::try_from(size)
                        .ok()
                        .zip(Hash::try_from(root.as_slice()).ok())
                        .ok_or_else(|| WitnessError::Corrupt(format!("row of {}", log.origin)));
                    let out = r.as_ref().ok().copied();
                    stored = Some(r);
                    out
                }
                Ok(None) => None,
                Err(e) => {
                    stored = Some(Err(e.into()));
                    // Refused below: the caller sees the database error, not a decision.
                    Some((u64::MAX, [0; 32]))
                }
            }
        });
        if let Some(Err(e)) = stored {
            return Err(e);
        }
        let cp = match decision {
            Ok(cp) => cp,
            Err(refusal) => return Ok(refused(&refusal)),
        };
        let body_text = cp.to_text();
        let line = cosign(&body_text, &self.name, &self.signer, now)?;
        tx.execute(
            "INSERT INTO latest (origin, size, root, note, cosigned_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (origin) DO UPDATE SET size = ?2, root = ?3, note = ?4, cosigned_at = ?5",
            rusqlite::params![
                cp.origin,
                i64::try_from(cp.size).map_err(|_| WitnessError::Corrupt("size".into()))?,
                cp.root.to_vec(),
                req.note,
                i64::try_from(now).map_err(|_| WitnessError::Corrupt("time".into()))?,
            ],
        )?;
        tx.commit()?;
        tracing::info!(origin = cp.origin, size = cp.size, "cosigned");
        Ok(Answer {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: line,
        })
    }
}

fn refused(r: &Refusal) -> Answer {
    let (body, content_type) = r.body();
    tracing::info!(status = r.status(), reason = %r, "refused");
    Answer {
        status: r.status(),
        content_type,
        body,
    }
}
