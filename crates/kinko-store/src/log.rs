//! The audit log, held in the store.
//!
//! Records and signed checkpoints are rows of the store (`log_records`, `log_checkpoints`),
//! appended by [`Store::commit`] in the same transaction as the state change they record: a
//! step's state and its records are durable together or not at all, with one disk sync. The
//! sequence numbers are the rows' keys and the RFC 6962 tree over the records' lines is kept in
//! memory (rebuilt and checked against the newest signed checkpoint by [`Store::open_log`]).
//!
//! What auditors receive does not change: the same canonical lines (docs/audit.md) and the same
//! signed notes, streamed by the daemon or written as files by [`Store::export_log`]; the
//! offline verifier reads those files with the pure crates alone.
//!
//! Rows of the log are never updated or deleted: triggers refuse it (a guard against bugs; an
//! editor of the database file is caught by the checkpoint signature at the next start).

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kinko_audit::merkle::{Hash, MerkleTree, hashes_equal, leaf_hash};
use kinko_audit::note::{Checkpoint, CheckpointSigner, VerifierKey};
use kinko_audit::record::{Event, Record};

use crate::db::{Conn, Row, Val};
use crate::{Store, StoreError, Tx};

/// Settings of the log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogConfig {
    /// The checkpoint origin, which is also the log key's name in signed notes.
    pub origin: String,
    /// A checkpoint is signed at least this often while the log grows.
    pub checkpoint_interval: Duration,
}

impl LogConfig {
    /// A checkpoint at least every 10 s while the log grows.
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            checkpoint_interval: Duration::from_secs(10),
        }
    }
}

/// Where a committed record is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Appended {
    /// The record's sequence number (its leaf index).
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// Its time (`time_ms`: milliseconds since the Unix epoch, never decreasing).
    pub time_ms: u64,
    /// The signed checkpoint committed with it, when its step made one (always for events
    /// that need one: every signature produced).
    pub checkpoint: Option<Arc<str>>,
    /// The record as written (its canonical JSON line).
    pub line: Arc<str>,
}

/// What [`Store::on_committed`] calls.
pub(crate) type Observer = Arc<dyn Fn(&Appended) + Send + Sync>;

/// A [`CheckpointSigner`] with its error type erased, so the store can own any signer.
trait Sign: Send {
    fn sign_erased(&self, msg: &[u8]) -> Result<[u8; 64], String>;
    fn public_key_erased(&self) -> [u8; 32];
}

impl<S: CheckpointSigner> Sign for S {
    fn sign_erased(&self, msg: &[u8]) -> Result<[u8; 64], String> {
        CheckpointSigner::sign(self, msg).map_err(|e| e.to_string())
    }
    fn public_key_erased(&self) -> [u8; 32] {
        CheckpointSigner::public_key(self)
    }
}

/// The checkpoint signer failed.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint signer: {0}")]
pub(crate) struct SignError(String);

impl CheckpointSigner for dyn Sign {
    type Error = SignError;
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignError> {
        self.sign_erased(msg).map_err(SignError)
    }
    fn public_key(&self) -> [u8; 32] {
        self.public_key_erased()
    }
}

/// What appends to the log; lives with the connection, under its mutex.
pub(crate) struct Writer {
    origin: String,
    signer: Box<dyn Sign>,
    interval: Duration,
    last_time_ms: u64,
    last_cp_at: Instant,
}

impl Writer {
    fn sign_note(&self, cp: &Checkpoint) -> Result<String, StoreError> {
        cp.sign(&self.origin, &*self.signer)
            .map_err(StoreError::Log)
    }
}

/// The log as readers see it: the tree over the committed records and the newest checkpoint.
pub(crate) struct View {
    tree: MerkleTree,
    /// The newest signed checkpoint: its size and note.
    latest: Option<(u64, Arc<str>)>,
    /// The newest `policy_installed` record: its sequence number and policy hash.
    last_policy: Option<(u64, Vec<u8>)>,
    key: VerifierKey,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::LogCorrupt(what.into())
}

fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| corrupt("log size out of range"))
}

/// The body of a signed note (before the blank line that starts its signatures).
fn note_body(note: &str) -> Option<&str> {
    note.find("\n\n").map(|i| &note[..=i])
}

/// Records read per query when the whole log is read (start, export).
const PAGE: usize = 4096;

impl Store {
    /// Opens the audit log held in the store: re-reads every record (canonical form, sequence
    /// numbers, leaf hashes), rebuilds the tree, and checks it against every signed checkpoint
    /// (the newest one's signature by `signer`'s key). Refuses a log that does not verify: the
    /// daemon must not start on a history edited, truncated or replaced behind its back. Then
    /// signs a checkpoint covering every record, if the newest does not.
    pub fn open_log<S: CheckpointSigner>(
        &self,
        config: LogConfig,
        signer: S,
    ) -> Result<(), StoreError> {
        let public_key = signer.public_key();
        let key = VerifierKey::new(&config.origin, &public_key).map_err(StoreError::Log)?;
        let mut guard = self.conn()?;
        let (tree, last_policy, last_time_ms, latest) = guard.db.transaction(false, |c| {
            let (tree, last_policy, last_time_ms) = read_records(c)?;
            let latest = check_checkpoints(c, &tree, &key, &config.origin)?;
            Ok((tree, last_policy, last_time_ms, latest))
        })?;
        guard.writer = Some(Writer {
            origin: config.origin,
            signer: Box::new(signer),
            interval: config.checkpoint_interval,
            last_time_ms,
            last_cp_at: Instant::now(),
        });
        let covered = latest.as_ref().is_some_and(|(s, _)| *s == tree.size());
        *self.view.write().map_err(|_| StoreError::Poisoned)? = Some(View {
            tree,
            latest,
            last_policy,
            key,
        });
        drop(guard);
        if !covered {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Runs one lifecycle step: `step` makes its state changes and returns the audit events
    /// they amount to; the events are appended as records by `principal`, and everything
    /// commits in one transaction (one disk sync). If `step` or the append fails, nothing is
    /// changed and nothing is logged. A step whose events need a checkpoint (a signature
    /// produced) commits a signed checkpoint covering them too.
    ///
    /// Group commit: steps that arrive while another commit holds the store wait in a queue,
    /// and the next to get the store runs them all in one transaction — each in a savepoint of
    /// its own, so one step's failure undoes only that step — and commits once. Each caller
    /// gets its own result once that commit is durable (or the commit's error).
    pub fn commit<T: Send + 'static>(
        &self,
        principal: &str,
        step: impl FnOnce(&Tx<'_>) -> Result<(T, Vec<Event>), StoreError> + Send + 'static,
    ) -> Result<(T, Vec<Appended>), StoreError> {
        self.commit_with(principal, step, |_, _, _| Ok(()))
    }

    /// [`Store::commit`], with a last change made once the records are placed (in the same
    /// transaction): for state that names a record, such as a freeze whose identity is its
    /// record's leaf hash.
    pub fn commit_with<T: Send + 'static>(
        &self,
        principal: &str,
        step: impl FnOnce(&Tx<'_>) -> Result<(T, Vec<Event>), StoreError> + Send + 'static,
        after: impl FnOnce(&Tx<'_>, &mut T, &[Appended]) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(T, Vec<Appended>), StoreError> {
        type Slot<T> = Arc<Mutex<Option<Result<(T, Vec<Appended>), StoreError>>>>;
        let slot: Slot<T> = Arc::new(Mutex::new(None));
        let principal = principal.to_string();
        let observer = self.observer.read().ok().and_then(|o| o.clone());
        let job: Job = {
            let slot = Arc::clone(&slot);
            Box::new(move |input: JobInput<'_>| {
                let (c, writer, view) = match input {
                    JobInput::Run(c, writer, view) => (c, writer, view),
                    JobInput::Fail(e) => {
                        if let Ok(mut s) = slot.lock() {
                            *s = Some(Err(e));
                        }
                        return (false, Box::new(|_| {}) as Deliver);
                    }
                };
                let ran = (|| {
                    let tx = Tx { c };
                    let (mut value, events) = step(&tx)?;
                    let (appended, checkpoint, policy) =
                        append(c, writer, view, &principal, events)?;
                    after(&tx, &mut value, &appended)?;
                    Ok((value, appended, checkpoint, policy))
                })();
                match ran {
                    Ok((value, appended, checkpoint, policy)) => {
                        if let Some(cp) = checkpoint {
                            view.latest = Some(cp);
                            writer.last_cp_at = Instant::now();
                        }
                        if policy.is_some() {
                            view.last_policy = policy;
                        }
                        let deliver: Deliver = Box::new(move |committed| {
                            if committed.is_ok()
                                && let Some(o) = &observer
                            {
                                for a in &appended {
                                    o(a);
                                }
                            }
                            if let Ok(mut s) = slot.lock() {
                                *s = Some(committed.map(|()| (value, appended)));
                            }
                        });
                        (true, deliver)
                    }
                    Err(e) => {
                        let deliver: Deliver = Box::new(move |_| {
                            if let Ok(mut s) = slot.lock() {
                                *s = Some(Err(e));
                            }
                        });
                        (false, deliver)
                    }
                }
            })
        };
        self.queue
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .push(job);
        let taken = |slot: &Slot<T>| {
            slot.lock()
                .map_err(|_| StoreError::Poisoned)?
                .take()
                .transpose()
        };
        let mut guard = self.conn()?;
        // Committed by the caller that had the store before this one?
        if let Some(done) = taken(&slot)? {
            return Ok(done);
        }
        let jobs = std::mem::take(&mut *self.queue.lock().map_err(|_| StoreError::Poisoned)?);
        self.run_batch(&mut guard, jobs);
        drop(guard);
        taken(&slot)?.ok_or(StoreError::Poisoned)
    }

    /// Runs queued steps in one transaction, each in a savepoint, commits once, and delivers
    /// every step's result. Holds the store and the view throughout, as one commit always did.
    fn run_batch(&self, inner: &mut crate::Inner, jobs: Vec<Job>) {
        let fail = |jobs: Vec<Job>, e: fn() -> StoreError| {
            for job in jobs {
                let _ = job(JobInput::Fail(e()));
            }
        };
        let Some(writer) = inner.writer.as_mut() else {
            return fail(jobs, || StoreError::LogClosed);
        };
        let Ok(mut view_guard) = self.view.write() else {
            return fail(jobs, || StoreError::Poisoned);
        };
        let Some(view) = view_guard.as_mut() else {
            return fail(jobs, || StoreError::LogClosed);
        };
        let base = (
            view.tree.size(),
            writer.last_time_ms,
            view.latest.clone(),
            view.last_policy.clone(),
            writer.last_cp_at,
        );
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.batched_steps
            .fetch_add(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut delivers = Vec::with_capacity(jobs.len());
        let mut pending = Some(jobs);
        let result = inner.db.transaction(true, |c| {
            // Records other replicas appended since this one last looked come first.
            catch_up(c, writer, view)?;
            for job in pending.take().unwrap_or_default() {
                let before = (
                    view.tree.size(),
                    writer.last_time_ms,
                    view.latest.clone(),
                    view.last_policy.clone(),
                    writer.last_cp_at,
                );
                c.exec("SAVEPOINT kinko_step", &[])?;
                let (good, deliver) = job(JobInput::Run(c, writer, view));
                if good {
                    c.exec("RELEASE SAVEPOINT kinko_step", &[])?;
                } else {
                    // This step only: its statements and its records are undone.
                    c.exec("ROLLBACK TO SAVEPOINT kinko_step", &[])?;
                    c.exec("RELEASE SAVEPOINT kinko_step", &[])?;
                    view.tree.truncate(before.0);
                    writer.last_time_ms = before.1;
                    view.latest = before.2;
                    view.last_policy = before.3;
                    writer.last_cp_at = before.4;
                }
                delivers.push((good, deliver));
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                for (_, deliver) in delivers {
                    deliver(Ok(()));
                }
            }
            Err(e) => {
                // Never begun (or failed before the steps ran): each step gets the error.
                if let Some(jobs) = pending.take() {
                    for job in jobs {
                        let _ = job(JobInput::Fail(again(&e)));
                    }
                }
                // Not committed: the view forgets what this transaction read or appended, and
                // every step that had succeeded gets the commit's error.
                view.tree.truncate(base.0);
                writer.last_time_ms = base.1;
                view.latest = base.2;
                view.last_policy = base.3;
                writer.last_cp_at = base.4;
                for (good, deliver) in delivers {
                    deliver(if good { Err(again(&e)) } else { Ok(()) });
                }
            }
        }
    }

    /// Group commits so far and the steps they carried (steps / commits is the batching).
    pub fn commit_counts(&self) -> (u64, u64) {
        (
            self.batches.load(std::sync::atomic::Ordering::Relaxed),
            self.batched_steps
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Appends records with no state change (refusals, for instance).
    pub fn append(&self, principal: &str, events: Vec<Event>) -> Result<Vec<Appended>, StoreError> {
        self.commit(principal, |_| Ok(((), events))).map(|(_, a)| a)
    }

    /// Signs and commits a checkpoint of every record now (or returns the newest if it is
    /// current).
    pub fn checkpoint(&self) -> Result<Arc<str>, StoreError> {
        let mut guard = self.conn()?;
        let inner = &mut *guard;
        let writer = inner.writer.as_mut().ok_or(StoreError::LogClosed)?;
        let mut view_guard = self.view.write().map_err(|_| StoreError::Poisoned)?;
        let view = view_guard.as_mut().ok_or(StoreError::LogClosed)?;
        let base = view.tree.size();
        let latest = view.latest.clone();
        let last_policy = view.last_policy.clone();
        let result = inner.db.transaction(true, |c| {
            catch_up(c, writer, view)?;
            if let Some((size, note)) = &view.latest
                && *size == view.tree.size()
            {
                return Ok((*size, Arc::clone(note)));
            }
            sign_checkpoint(c, writer, view)
        });
        match result {
            Ok(cp) => {
                let note = Arc::clone(&cp.1);
                view.latest = Some(cp);
                writer.last_cp_at = Instant::now();
                Ok(note)
            }
            Err(e) => {
                view.tree.truncate(base);
                view.latest = latest;
                view.last_policy = last_policy;
                Err(e)
            }
        }
    }

    /// Signs a checkpoint if records were appended since the newest and the checkpoint interval
    /// has passed (the daemon's background tick calls it).
    pub fn checkpoint_if_due(&self) -> Result<(), StoreError> {
        let due = {
            let guard = self.conn()?;
            let view = self.view.read().map_err(|_| StoreError::Poisoned)?;
            match (guard.writer.as_ref(), view.as_ref()) {
                (Some(w), Some(v)) => {
                    w.last_cp_at.elapsed() >= w.interval
                        && v.latest.as_ref().map(|(s, _)| *s) != Some(v.tree.size())
                }
                _ => false,
            }
        };
        if due {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn with_view<T>(
        &self,
        f: impl FnOnce(&View) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let view = self.view.read().map_err(|_| StoreError::Poisoned)?;
        f(view.as_ref().ok_or(StoreError::LogClosed)?)
    }

    /// The log's verifier key (`name+id+key`).
    pub fn verifier_key(&self) -> Result<VerifierKey, StoreError> {
        self.with_view(|v| Ok(v.key.clone()))
    }

    /// The number of committed records this process has seen.
    pub fn log_size(&self) -> u64 {
        self.with_view(|v| Ok(v.tree.size())).unwrap_or(0)
    }

    /// The newest signed checkpoint (a signed note).
    pub fn latest_checkpoint(&self) -> Option<Arc<str>> {
        self.with_view(|v| Ok(v.latest.as_ref().map(|(_, n)| Arc::clone(n))))
            .ok()
            .flatten()
    }

    /// The newest signed checkpoint with its tree size.
    pub fn latest_checkpoint_sized(&self) -> Option<(u64, Arc<str>)> {
        self.with_view(|v| Ok(v.latest.as_ref().map(|(s, n)| (*s, Arc::clone(n)))))
            .ok()
            .flatten()
    }

    /// The newest `policy_installed` record: its sequence number and the installed policy's
    /// hash.
    pub fn last_policy_installed(&self) -> Option<(u64, Vec<u8>)> {
        self.with_view(|v| Ok(v.last_policy.clone())).ok().flatten()
    }

    /// The inclusion proof of record `seq` in the tree of `size` records.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        self.with_view(|v| v.tree.inclusion_proof(seq, size).map_err(StoreError::Log))
    }

    /// The consistency proof between the trees of `old` and `new` records.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        self.with_view(|v| v.tree.consistency_proof(old, new).map_err(StoreError::Log))
    }

    /// The root of the tree of the first `size` records.
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        self.with_view(|v| v.tree.root_at(size).map_err(StoreError::Log))
    }

    /// Up to `max` record lines from sequence number `from`, in order (committed records only).
    pub fn read_log_lines(&self, from: u64, max: usize) -> Result<Vec<String>, StoreError> {
        self.conn()?.db.with(|c| read_lines(c, from, max))
    }

    /// Keeps witness cosignatures of the checkpoint of `size`: each the witness's key (its
    /// vkey) and its cosignature line (`— name base64\n`). One already kept for that size and
    /// witness stays as it is. The caller has verified them.
    pub fn add_cosignatures(
        &self,
        size: u64,
        lines: &[(String, String)],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut guard = self.conn()?;
        guard.db.transaction(true, |c| {
            for (witness, line) in lines {
                c.exec(
                    "INSERT INTO log_cosignatures (size, witness, line) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                    &[
                        to_i64(size)?.into(),
                        witness.as_str().into(),
                        line.as_str().into(),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The checkpoint of `size` with every cosignature kept for it appended (a signed note
    /// with the log's signature line, then the witnesses'); `None` if there is no checkpoint of
    /// that size.
    pub fn cosigned_checkpoint(&self, size: u64) -> Result<Option<String>, StoreError> {
        self.conn()?.db.with(|c| {
            let Some(row) = c.query_opt(
                "SELECT note FROM log_checkpoints WHERE size = ?1",
                &[to_i64(size)?.into()],
            )?
            else {
                return Ok(None);
            };
            let mut note = row.text(0)?;
            for r in c.query(
                "SELECT line FROM log_cosignatures WHERE size = ?1 ORDER BY witness",
                &[to_i64(size)?.into()],
            )? {
                note.push_str(&r.text(0)?);
            }
            Ok(Some(note))
        })
    }

    /// The sizes of checkpoints with cosignatures, newest first, at most `max`.
    pub fn cosigned_sizes(&self, max: usize) -> Result<Vec<u64>, StoreError> {
        self.conn()?.db.with(|c| {
            c.query(
                "SELECT DISTINCT size FROM log_cosignatures ORDER BY size DESC LIMIT ?1",
                &[to_i64(max as u64)?.into()],
            )?
            .iter()
            .map(|r| u64::try_from(r.int(0)?).map_err(|_| corrupt("negative size")))
            .collect()
        })
    }

    /// The largest checkpoint size each witness (by key) has cosigned, as kept here.
    pub fn witnessed_sizes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.conn()?.db.with(|c| {
            c.query(
                "SELECT witness, MAX(size) FROM log_cosignatures GROUP BY witness",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.text(0)?,
                    u64::try_from(r.int(1)?).map_err(|_| corrupt("negative size"))?,
                ))
            })
            .collect()
        })
    }

    /// Every signed checkpoint note, oldest first.
    pub fn checkpoint_notes(&self) -> Result<Vec<String>, StoreError> {
        self.conn()?.db.with(|c| {
            c.query("SELECT note FROM log_checkpoints ORDER BY size", &[])?
                .iter()
                .map(|r| r.text(0))
                .collect()
        })
    }

    /// Writes the log as the documented files into `dir` (which must not hold a log yet): one
    /// segment `segment-00000000000000000000.jsonl` with every record, and `checkpoints.jsonl`
    /// with every signed checkpoint, oldest first. Reads without the log key: this is how an
    /// operator hands the history to an auditor with the daemon stopped. Returns the number of
    /// records and of checkpoints written.
    pub fn export_log(&self, dir: &Path) -> Result<(u64, u64), StoreError> {
        let io = |what: &str, e: std::io::Error| StoreError::Io(format!("{what}: {e}"));
        std::fs::create_dir_all(dir).map_err(|e| io("create directory", e))?;
        let segment = dir.join(kinko_audit::log::segment_name(0));
        let checkpoints = dir.join(kinko_audit::log::CHECKPOINTS_FILE);
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .map_err(|e| io(&p.display().to_string(), e))
        };
        let mut seg = std::io::BufWriter::new(open(&segment)?);
        let mut cps = std::io::BufWriter::new(open(&checkpoints)?);
        // One read transaction: records and checkpoints from one state of the log.
        let mut guard = self.conn()?;
        let (records, count) = guard.db.transaction(false, |c| {
            let mut records = 0u64;
            loop {
                let lines = read_lines(c, records, PAGE)?;
                if lines.is_empty() {
                    break;
                }
                for line in lines {
                    seg.write_all(line.as_bytes())
                        .and_then(|()| seg.write_all(b"\n"))
                        .map_err(|e| io("write segment", e))?;
                    records += 1;
                }
            }
            let mut count = 0u64;
            for line in checkpoint_lines(c)? {
                cps.write_all(&line)
                    .and_then(|()| cps.write_all(b"\n"))
                    .map_err(|e| io("write checkpoints", e))?;
                count += 1;
            }
            Ok((records, count))
        })?;
        drop(guard);
        for (w, what) in [(seg, "segment"), (cps, "checkpoints")] {
            w.into_inner()
                .map_err(|e| io(what, e.into_error()))?
                .sync_all()
                .map_err(|e| io(what, e))?;
        }
        Ok((records, count))
    }

    /// Archives the log incrementally into `dir` (the documented layout, for write-once
    /// storage): the records not archived yet go into a new segment file
    /// `segment-<first seq>.jsonl`, and `checkpoints.jsonl` is replaced by every checkpoint
    /// (with its cosignatures). Segments already in `dir` are never rewritten; each of their
    /// records is first compared with the store's, and any difference (an archive of another
    /// log, or a store rewritten since) is refused. Files are written to a temporary name,
    /// synced, then renamed. Returns the records archived now and in all.
    pub fn archive_log(&self, dir: &Path) -> Result<(u64, u64), StoreError> {
        let io = |what: &str, e: std::io::Error| StoreError::Io(format!("{what}: {e}"));
        std::fs::create_dir_all(dir).map_err(|e| io("create directory", e))?;
        // The segments already archived, in order, and their records.
        let mut segments: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| io(&dir.display().to_string(), e))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let first = name
                    .strip_prefix("segment-")?
                    .strip_suffix(".jsonl")?
                    .parse::<u64>()
                    .ok()?;
                Some((first, e.path()))
            })
            .collect();
        segments.sort();
        let mut archived: Vec<String> = Vec::new();
        for (first, path) in &segments {
            if *first != archived.len() as u64 {
                return Err(corrupt(format!(
                    "{} starts at record {first}, but the segments before it hold {}",
                    path.display(),
                    archived.len()
                )));
            }
            let text =
                std::fs::read_to_string(path).map_err(|e| io(&path.display().to_string(), e))?;
            if !text.is_empty() && !text.ends_with('\n') {
                return Err(corrupt(format!("{} ends in a torn line", path.display())));
            }
            archived.extend(text.lines().map(str::to_string));
        }
        let already = archived.len() as u64;
        let mut guard = self.conn()?;
        let (new_lines, cps) = guard.db.transaction(false, |c| {
            // The archive must be this store's log, record for record.
            let mut at = 0u64;
            while at < already {
                let lines = read_lines(c, at, PAGE)?;
                if lines.is_empty() {
                    return Err(corrupt(format!(
                        "the archive holds {already} records but the store's log only {at}: it is not this store's log, or the store lost records"
                    )));
                }
                for line in lines {
                    if at < already && archived.get(at as usize) != Some(&line) {
                        return Err(corrupt(format!(
                            "record {at} in the archive differs from the store's: it is not this log, or one of them was rewritten"
                        )));
                    }
                    at += 1;
                }
            }
            let mut new_lines = Vec::new();
            let mut from = already;
            loop {
                let lines = read_lines(c, from, PAGE)?;
                if lines.is_empty() {
                    break;
                }
                from += lines.len() as u64;
                new_lines.extend(lines);
            }
            Ok((new_lines, checkpoint_lines(c)?))
        })?;
        drop(guard);
        let write_atomically = |path: &Path, lines: &mut dyn Iterator<Item = Vec<u8>>| {
            let tmp = path.with_extension("tmp");
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&tmp).map_err(|e| io(&tmp.display().to_string(), e))?,
            );
            for l in lines {
                f.write_all(&l)
                    .and_then(|()| f.write_all(b"\n"))
                    .map_err(|e| io(&tmp.display().to_string(), e))?;
            }
            f.into_inner()
                .map_err(|e| io(&tmp.display().to_string(), e.into_error()))?
                .sync_all()
                .map_err(|e| io(&tmp.display().to_string(), e))?;
            std::fs::rename(&tmp, path).map_err(|e| io(&path.display().to_string(), e))?;
            Ok::<(), StoreError>(())
        };
        let count = new_lines.len() as u64;
        if count > 0 {
            let seg = dir.join(kinko_audit::log::segment_name(already));
            write_atomically(&seg, &mut new_lines.into_iter().map(String::into_bytes))?;
        }
        write_atomically(
            &dir.join(kinko_audit::log::CHECKPOINTS_FILE),
            &mut cps.into_iter(),
        )?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&dir.display().to_string(), e))?;
        Ok((count, already + count))
    }

    /// Imports a log kept in files by an earlier kinkod: its record lines in order and its
    /// signed checkpoint notes, as they are, in one transaction. The store's log must be empty
    /// and the log not open; [`Store::open_log`] then verifies everything as for any history.
    pub fn import_log(&self, lines: &[String], notes: &[String]) -> Result<(u64, u64), StoreError> {
        let mut guard = self.conn()?;
        if guard.writer.is_some() {
            return Err(corrupt("the log is open; import with kinkod stopped"));
        }
        guard.db.transaction(true, |c| {
            let held = c
                .query_one("SELECT COUNT(*) FROM log_records", &[])?
                .int(0)?;
            if held > 0 {
                return Err(corrupt(format!(
                    "the store's log already holds {held} records; import only into an empty log"
                )));
            }
            for (seq, line) in lines.iter().enumerate() {
                let record = Record::decode(line.as_bytes())
                    .map_err(|e| corrupt(format!("record {seq}: {e}")))?;
                c.exec(
                    "INSERT INTO log_records (seq, time_ms, leaf_hash, line) VALUES (?1, ?2, ?3, ?4)",
                    &[
                        to_i64(seq as u64)?.into(),
                        to_i64(record.time_ms)?.into(),
                        leaf_hash(line.as_bytes()).as_slice().into(),
                        line.into(),
                    ],
                )?;
            }
            for note in notes {
                let cp = note_body(note)
                    .and_then(|b| Checkpoint::parse_text(b).ok())
                    .ok_or_else(|| corrupt("a checkpoint line is not a signed note"))?;
                c.exec(
                    "INSERT INTO log_checkpoints (size, note) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    &[to_i64(cp.size)?.into(), note.into()],
                )?;
            }
            Ok((lines.len() as u64, notes.len() as u64))
        })
    }
}

/// Brings the view up to date with records and checkpoints other replicas committed (inside a
/// writing transaction, so nothing is appended meanwhile): each record is re-checked as at
/// start and its leaf joins the tree; the newest checkpoint must cover the tree.
/// Delivers a step's result once its batch's commit is known (`Ok(())`: durable).
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// What a queued step is given: the batch's transaction, or the error that keeps it from
/// running.
pub(crate) enum JobInput<'a> {
    Run(&'a dyn Conn, &'a mut Writer, &'a mut View),
    Fail(StoreError),
}

/// A queued step: runs in the batch's transaction and says whether it succeeded, returning how
/// to deliver its result.
pub(crate) type Job = Box<dyn for<'a> FnOnce(JobInput<'a>) -> (bool, Deliver) + Send>;

/// The batch's error, for each of its steps (store errors are not `Clone`): the same kind
/// where it can be, the text otherwise.
fn again(e: &StoreError) -> StoreError {
    match e {
        StoreError::Postgres(m) => StoreError::Postgres(m.clone()),
        StoreError::Io(m) => StoreError::Io(m.clone()),
        StoreError::LogClosed => StoreError::LogClosed,
        StoreError::Poisoned => StoreError::Poisoned,
        other => StoreError::Io(format!("the commit of this step's batch failed: {other}")),
    }
}

fn catch_up(c: &dyn Conn, writer: &mut Writer, view: &mut View) -> Result<(), StoreError> {
    loop {
        let from = view.tree.size();
        let rows = c.query(
            "SELECT seq, time_ms, leaf_hash, line FROM log_records WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            &[to_i64(from)?.into(), Val::Int(PAGE as i64)],
        )?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let (hash, record) = check_row(row, view.tree.size(), writer.last_time_ms)?;
            writer.last_time_ms = record.time_ms;
            if let Event::PolicyInstalled(p) = &record.event {
                view.last_policy = Some((record.seq, p.policy_hash.0.clone()));
            }
            view.tree.push_leaf_hash(hash);
        }
    }
    let newest = c.query_opt(
        "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
        &[],
    )?;
    if let Some(row) = newest {
        let size = u64::try_from(row.int(0)?).map_err(|_| corrupt("negative checkpoint size"))?;
        if view.latest.as_ref().is_none_or(|(s, _)| *s < size) {
            let note = row.text(1)?;
            let cp = Checkpoint::open(&note, &view.key, Some(&writer.origin)).map_err(|e| {
                corrupt(format!(
                    "a checkpoint another replica committed does not verify: {e}"
                ))
            })?;
            let root = view.tree.root_at(cp.size).map_err(StoreError::Log)?;
            if cp.size != size || !hashes_equal(&root, &cp.root) {
                return Err(corrupt(format!(
                    "the checkpoint of size {size} another replica committed does not match the log"
                )));
            }
            view.latest = Some((size, Arc::from(note)));
        }
    }
    Ok(())
}

/// Appends `events` as records in `c` (the tree grows in `view`; the caller truncates it if
/// the transaction does not commit), and a signed checkpoint when one is needed or due.
#[allow(clippy::type_complexity)]
fn append(
    c: &dyn Conn,
    writer: &mut Writer,
    view: &mut View,
    principal: &str,
    events: Vec<Event>,
) -> Result<
    (
        Vec<Appended>,
        Option<(u64, Arc<str>)>,
        Option<(u64, Vec<u8>)>,
    ),
    StoreError,
> {
    let mut out = Vec::with_capacity(events.len());
    let mut needs_checkpoint = false;
    let mut policy = None;
    for event in events {
        needs_checkpoint |= event.needs_checkpoint();
        let seq = view.tree.size();
        if let Event::PolicyInstalled(p) = &event {
            policy = Some((seq, p.policy_hash.0.clone()));
        }
        // Record times never decrease, whatever the clock does.
        let time_ms = now_ms().max(writer.last_time_ms);
        writer.last_time_ms = time_ms;
        let line = Record {
            seq,
            time_ms,
            principal: principal.to_string(),
            event,
        }
        .encode()
        .map_err(StoreError::Log)?;
        let line = String::from_utf8(line).map_err(|e| corrupt(e.to_string()))?;
        let hash = leaf_hash(line.as_bytes());
        let shared: Arc<str> = Arc::from(line.as_str());
        c.exec(
            "INSERT INTO log_records (seq, time_ms, leaf_hash, line) VALUES (?1, ?2, ?3, ?4)",
            &[
                to_i64(seq)?.into(),
                to_i64(time_ms)?.into(),
                hash.as_slice().into(),
                line.into(),
            ],
        )?;
        view.tree.push_leaf_hash(hash);
        out.push(Appended {
            seq,
            leaf_hash: hash,
            time_ms,
            checkpoint: None,
            line: shared,
        });
    }
    let due = writer.last_cp_at.elapsed() >= writer.interval;
    let checkpoint = if !out.is_empty() && (needs_checkpoint || due) {
        let cp = sign_checkpoint(c, writer, view)?;
        for a in &mut out {
            a.checkpoint = Some(Arc::clone(&cp.1));
        }
        Some(cp)
    } else {
        None
    };
    Ok((out, checkpoint, policy))
}

/// Signs a checkpoint of the tree in `view` and inserts it in `c`.
fn sign_checkpoint(
    c: &dyn Conn,
    writer: &Writer,
    view: &View,
) -> Result<(u64, Arc<str>), StoreError> {
    let cp = Checkpoint {
        origin: writer.origin.clone(),
        size: view.tree.size(),
        root: view.tree.root(),
        extensions: Vec::new(),
    };
    let note = writer.sign_note(&cp)?;
    c.exec(
        "INSERT INTO log_checkpoints (size, note) VALUES (?1, ?2)",
        &[to_i64(cp.size)?.into(), note.as_str().into()],
    )?;
    Ok((cp.size, Arc::from(note)))
}

/// Checks one record row (as at start): the expected sequence number, the canonical line, the
/// time column and the leaf-hash column; returns its leaf hash and record.
fn check_row(row: &Row, expected: u64, last_time: u64) -> Result<(Hash, Record), StoreError> {
    let seq = row.int(0)?;
    if u64::try_from(seq).ok() != Some(expected) {
        return Err(corrupt(format!(
            "record {expected} is missing (the next row is record {seq})"
        )));
    }
    let time_ms = row.int(1)?;
    let stored_hash = row.blob(2)?;
    let line = row.text(3)?;
    let record =
        Record::decode(line.as_bytes()).map_err(|e| corrupt(format!("record {expected}: {e}")))?;
    if record.seq != expected {
        return Err(corrupt(format!(
            "record {expected} carries sequence number {}",
            record.seq
        )));
    }
    if u64::try_from(time_ms).ok() != Some(record.time_ms) {
        return Err(corrupt(format!(
            "record {expected}: its time column differs from its line"
        )));
    }
    if record.time_ms < last_time {
        return Err(corrupt(format!(
            "record {expected} is older than the one before"
        )));
    }
    let hash = leaf_hash(line.as_bytes());
    if !hashes_equal(&hash, stored_hash.as_slice().try_into().unwrap_or(&[0; 32])) {
        return Err(corrupt(format!(
            "record {expected}: its leaf hash column differs from its line"
        )));
    }
    Ok((hash, record))
}

/// Reads and checks every record: the tree, the newest `policy_installed` and the last time.
#[allow(clippy::type_complexity)]
fn read_records(c: &dyn Conn) -> Result<(MerkleTree, Option<(u64, Vec<u8>)>, u64), StoreError> {
    let mut tree = MerkleTree::new();
    let mut last_policy = None;
    let mut last_time = 0u64;
    loop {
        let rows = c.query(
            "SELECT seq, time_ms, leaf_hash, line FROM log_records WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            &[to_i64(tree.size())?.into(), Val::Int(PAGE as i64)],
        )?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let (hash, record) = check_row(row, tree.size(), last_time)?;
            last_time = record.time_ms;
            if let Event::PolicyInstalled(p) = &record.event {
                last_policy = Some((record.seq, p.policy_hash.0.clone()));
            }
            tree.push_leaf_hash(hash);
        }
    }
    // A record deleted from the middle leaves rows past the gap.
    let beyond = c
        .query_one(
            "SELECT COUNT(*) FROM log_records WHERE seq >= ?1",
            &[to_i64(tree.size())?.into()],
        )?
        .int(0)?;
    if beyond > 0 {
        return Err(corrupt(format!(
            "record {} is missing ({beyond} records follow the gap)",
            tree.size()
        )));
    }
    Ok((tree, last_policy, last_time))
}

/// Checks every stored checkpoint against the tree (the newest one's signature too) and
/// returns the newest.
fn check_checkpoints(
    c: &dyn Conn,
    tree: &MerkleTree,
    key: &VerifierKey,
    origin: &str,
) -> Result<Option<(u64, Arc<str>)>, StoreError> {
    let rows: Vec<(i64, String)> = c
        .query("SELECT size, note FROM log_checkpoints ORDER BY size", &[])?
        .iter()
        .map(|r| Ok((r.int(0)?, r.text(1)?)))
        .collect::<Result<_, StoreError>>()?;
    let held = tree.size();
    let Some((_, newest)) = rows.last() else {
        if held > 0 {
            return Err(corrupt(format!(
                "it holds {held} records but no signed checkpoint"
            )));
        }
        return Ok(None);
    };
    let opened = Checkpoint::open(newest, key, Some(origin)).map_err(|e| {
        corrupt(format!(
            "the newest checkpoint does not verify with the log key: {e}"
        ))
    })?;
    for (size, note) in &rows {
        let cp = if std::ptr::eq(note, newest) {
            opened.clone()
        } else {
            note_body(note)
                .and_then(|b| Checkpoint::parse_text(b).ok())
                .ok_or_else(|| corrupt(format!("checkpoint at size {size} is not a signed note")))?
        };
        if u64::try_from(*size).ok() != Some(cp.size) {
            return Err(corrupt(format!(
                "checkpoint row {size} holds a checkpoint of size {}",
                cp.size
            )));
        }
        if cp.size > held {
            return Err(corrupt(format!(
                "it holds {held} records but a checkpoint of {} was signed",
                cp.size
            )));
        }
        let root = tree.root_at(cp.size).map_err(StoreError::Log)?;
        if !hashes_equal(&root, &cp.root) {
            return Err(corrupt(format!(
                "its first {} records do not hash to the root of the checkpoint signed at that size",
                cp.size
            )));
        }
    }
    Ok(Some((opened.size, Arc::from(newest.as_str()))))
}

/// Every signed checkpoint, oldest first, as the lines of the documented `checkpoints.jsonl`:
/// each note with the witnesses' cosignatures kept for it appended (docs/witness.md), in
/// canonical JSON `{"note": ...}`.
fn checkpoint_lines(c: &dyn Conn) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut cosigs: std::collections::HashMap<i64, String> = Default::default();
    for r in c.query(
        "SELECT size, line FROM log_cosignatures ORDER BY size, witness",
        &[],
    )? {
        cosigs.entry(r.int(0)?).or_default().push_str(&r.text(1)?);
    }
    let mut out = Vec::new();
    for r in c.query("SELECT size, note FROM log_checkpoints ORDER BY size", &[])? {
        let mut note = r.text(1)?;
        if let Some(lines) = cosigs.get(&r.int(0)?) {
            note.push_str(lines);
        }
        out.push(
            kinko_intent::to_canonical_json(&serde_json::json!({ "note": note }))
                .map_err(|e| corrupt(format!("checkpoint line: {e}")))?,
        );
    }
    Ok(out)
}

fn read_lines(c: &dyn Conn, from: u64, max: usize) -> Result<Vec<String>, StoreError> {
    c.query(
        "SELECT line FROM log_records WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
        &[
            to_i64(from)?.into(),
            Val::Int(i64::try_from(max).unwrap_or(i64::MAX)),
        ],
    )?
    .iter()
    .map(|r| r.text(0))
    .collect()
}
