//! The append-only audit log on disk, with group commit.
//!
//! A log directory holds:
//!
//! * `segment-<first seq, 20 digits>.jsonl`: records, one canonical JSON line each
//!   ([`crate::record`]), in sequence order; a new segment starts when the current one exceeds
//!   [`LogConfig::segment_max_bytes`];
//! * `checkpoints.jsonl`: every signed checkpoint, one `{"note":"<signed note>"}` line each;
//! * `LOCK`: held (advisory lock) by the process that has the log open.
//!
//! # Durability and group commit
//!
//! [`AuditLog::append`] returns only after the record is written and `fdatasync`ed. One writer
//! thread owns the files: it takes every append waiting in its queue as one batch, writes the
//! batch, syncs once, appends the leaves to the tree and, when the batch holds an event that
//! needs one ([`crate::record::Event::needs_checkpoint`]: every signature produced), signs ONE
//! checkpoint for the whole batch and syncs it, then wakes every waiter. Concurrent appends thus
//! share one sync and one HSM signature. A checkpoint is also made at least every
//! [`LogConfig::checkpoint_interval`] while the log grows.
//!
//! If a write or sync fails the writer stops: the file's state is unknown, so every later
//! append fails with [`Error::WriterStopped`] until the log is reopened (and re-verified).
//!
//! # Recovery
//!
//! [`AuditLog::open`] reads every segment and re-checks every line (canonical form, sequence
//! numbers), rebuilding the tree. Bytes after the last newline of the last segment are a torn
//! write (a crash during an append that never returned): they are truncated, and nothing else
//! is — any other damage refuses to open. The rebuilt tree must then match the last signed
//! checkpoint (signature by the log key, root at its size): the daemon must not start on a log
//! that was edited, truncated or replaced.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::merkle::{Hash, MerkleTree, hashes_equal, leaf_hash};
use crate::note::{Checkpoint, CheckpointSigner, VerifierKey};
use crate::record::{Event, MAX_RECORD_LEN, Record, RecordPrefix};

/// The checkpoints file name.
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";
/// The lock file name.
pub const LOCK_FILE: &str = "LOCK";
const SEGMENT_PREFIX: &str = "segment-";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// How long the writer waits for the rest of a group before syncing (a sync takes
/// milliseconds on disks that honour it).
const LINGER: Duration = Duration::from_micros(500);

/// The longest line of the checkpoints file.
const MAX_CHECKPOINT_LINE: usize = crate::note::MAX_NOTE_LEN * 2;

/// Settings of a log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogConfig {
    /// The checkpoint origin, which is also the log key's name in signed notes.
    pub origin: String,
    /// A new segment file starts once the current one reaches this size.
    pub segment_max_bytes: u64,
    /// A checkpoint is signed at least this often while the log grows.
    pub checkpoint_interval: Duration,
    /// The most appends written in one batch.
    pub max_batch: usize,
}

impl LogConfig {
    /// Defaults: 64 MiB segments, a checkpoint at least every 10 s, batches of up to 4096.
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            segment_max_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(10),
            max_batch: 4096,
        }
    }
}

/// A line of the checkpoints file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointLine {
    pub(crate) note: String,
}

/// What an append returns once the record is durable.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Appended {
    /// The record's sequence number (its leaf index).
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// The signed checkpoint covering it, when its batch was checkpointed (always for events
    /// that need one).
    pub checkpoint: Option<Arc<str>>,
}

/// Segment files of a directory, sorted by first sequence number.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let rd = fs::read_dir(dir).map_err(|e| io_err("read directory", dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        else {
            continue;
        };
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Corrupt {
                path: entry.path(),
                reason: "segment file name must carry a 20-digit sequence number".into(),
            });
        }
        let first: u64 = digits.parse().map_err(|_| Error::Corrupt {
            path: entry.path(),
            reason: "segment sequence number out of range".into(),
        })?;
        out.push((first, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// The file name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}")
}

pub(crate) fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The length of the complete lines of `data` (up to and including its last newline).
pub(crate) fn complete_len(data: &[u8]) -> usize {
    data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync directory", dir, e))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Truncates a torn tail (bytes after the last newline) of `path`; returns the bytes kept.
fn truncate_torn_tail(path: &Path, data: &mut Vec<u8>) -> Result<(), Error> {
    let keep = complete_len(data);
    if keep < data.len() {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_err("open for truncation", path, e))?;
        f.set_len(keep as u64)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err("truncate torn tail", path, e))?;
        data.truncate(keep);
    }
    Ok(())
}

struct Shared {
    tree: RwLock<MerkleTree>,
    latest: RwLock<Option<(Checkpoint, Arc<str>)>>,
    index: RwLock<ReadIndex>,
    /// The newest `policy_installed` record: its sequence number and policy hash.
    last_policy: RwLock<Option<(u64, Vec<u8>)>>,
}

/// Records between two entries of the read index.
const INDEX_STRIDE: u64 = 1024;

/// Where to start reading: the segments, and the byte offset of every
/// [`INDEX_STRIDE`]-th record and of each segment's first record.
#[derive(Default)]
struct ReadIndex {
    segments: Vec<PathBuf>,
    // (seq, segment index, byte offset), in seq order.
    entries: Vec<(u64, usize, u64)>,
}

impl ReadIndex {
    fn note(&mut self, seq: u64, offset: u64, segment_start: bool) {
        if seq.is_multiple_of(INDEX_STRIDE) || segment_start {
            let seg = self.segments.len().saturating_sub(1);
            self.entries.push((seq, seg, offset));
        }
    }
}

enum Msg {
    Append {
        /// The record's canonical encoding up to its sequence number (encoded by the caller's
        /// thread, so the writer only splices in `seq` and `time_ms`).
        prefix: Vec<u8>,
        needs_checkpoint: bool,
        reply: mpsc::SyncSender<Result<Appended, Error>>,
    },
    Checkpoint {
        reply: mpsc::SyncSender<Result<Arc<str>, Error>>,
    },
}

/// An open audit log. Appends may come from any number of threads.
pub struct AuditLog {
    tx: Option<mpsc::Sender<Msg>>,
    worker: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    key: VerifierKey,
    dir: PathBuf,
    // Held for the lifetime of the log: the advisory lock.
    _lock: File,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, recovering from a torn tail and checking the log
    /// against its last signed checkpoint, then makes sure a signed checkpoint covers every
    /// record. Refuses to open a log that does not verify.
    pub fn open<S: CheckpointSigner>(
        dir: &Path,
        config: LogConfig,
        signer: S,
    ) -> Result<Self, Error> {
        let key = VerifierKey::new(&config.origin, &signer.public_key())?;
        fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("open lock", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked(dir.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path, e)),
        }

        // Rebuild the tree from the segments.
        let mut tree = MerkleTree::new();
        let mut last_time = 0u64;
        let segments = list_segments(dir)?;
        let count = segments.len();
        let mut current: Option<(PathBuf, u64)> = None;
        let mut index = ReadIndex::default();
        let mut last_policy = None;
        for (i, (first, path)) in segments.into_iter().enumerate() {
            index.segments.push(path.clone());
            if first != tree.size() {
                return Err(Error::Corrupt {
                    path,
                    reason: format!("segment starts at record {first}, expected {}", tree.size()),
                });
            }
            let mut data = fs::read(&path).map_err(|e| io_err("read segment", &path, e))?;
            if i + 1 == count {
                truncate_torn_tail(&path, &mut data)?;
            } else if complete_len(&data) != data.len() {
                return Err(Error::Corrupt {
                    path,
                    reason: "incomplete record at the end of a segment that is not the last".into(),
                });
            }
            let mut offset = 0u64;
            for (li, line) in data.split(|&b| b == b'\n').enumerate() {
                let line_offset = offset;
                offset = offset.saturating_add(line.len() as u64 + 1);
                if line.is_empty() {
                    // Only the empty slice after the final newline: an empty line in the
                    // middle is a corrupt record, caught below by its position.
                    continue;
                }
                let seq = tree.size();
                index.note(seq, line_offset, li == 0);
                let record = Record::decode(line).map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    reason: format!("record {seq}: {e}"),
                })?;
                if record.seq != seq {
                    return Err(Error::Corrupt {
                        path,
                        reason: format!("record {seq} carries sequence number {}", record.seq),
                    });
                }
                last_time = last_time.max(record.time_ms);
                if let Event::PolicyInstalled(p) = &record.event {
                    last_policy = Some((seq, p.policy_hash.0.clone()));
                }
                tree.push_leaf_hash(leaf_hash(line));
            }
            // An empty line anywhere shows up as a missing newline-terminated record.
            if data.windows(2).any(|w| w == b"\n\n") || data.first() == Some(&b'\n') {
                return Err(Error::Corrupt {
                    path,
                    reason: "empty line in segment".into(),
                });
            }
            current = Some((path, data.len() as u64));
        }

        // Check against the last signed checkpoint.
        let cps_path = dir.join(CHECKPOINTS_FILE);
        let mut latest = None;
        if cps_path.exists() {
            let mut data = fs::read(&cps_path).map_err(|e| io_err("read", &cps_path, e))?;
            truncate_torn_tail(&cps_path, &mut data)?;
            if let Some(line) = data.split(|&b| b == b'\n').rfind(|l| !l.is_empty()) {
                if line.len() > MAX_CHECKPOINT_LINE {
                    return Err(Error::CheckpointMismatch(
                        "last checkpoint line is too long".into(),
                    ));
                }
                let cl: CheckpointLine = serde_json::from_slice(line)
                    .map_err(|e| Error::CheckpointMismatch(format!("last checkpoint line: {e}")))?;
                let cp = Checkpoint::open(&cl.note, &key, Some(&config.origin))
                    .map_err(|e| Error::CheckpointMismatch(format!("last checkpoint: {e}")))?;
                if cp.size > tree.size() {
                    return Err(Error::CheckpointMismatch(format!(
                        "the last signed checkpoint covers {} records but the log holds only {}",
                        cp.size,
                        tree.size()
                    )));
                }
                let root = tree.root_at(cp.size)?;
                if !hashes_equal(&root, &cp.root) {
                    return Err(Error::CheckpointMismatch(format!(
                        "the first {} records do not hash to the root of the last signed checkpoint",
                        cp.size
                    )));
                }
                latest = Some((cp, Arc::<str>::from(cl.note)));
            }
        } else if tree.size() > 0 {
            return Err(Error::CheckpointMismatch(
                "the log has records but no checkpoints file".into(),
            ));
        }

        // Open the files for appending.
        let (seg_path, seg_len) = match current {
            Some(c) => c,
            None => {
                let path = dir.join(segment_name(0));
                index.segments.push(path.clone());
                (path, 0)
            }
        };
        let segment = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&seg_path)
            .map_err(|e| io_err("open segment", &seg_path, e))?;
        let cps = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cps_path)
            .map_err(|e| io_err("open", &cps_path, e))?;
        sync_dir(dir)?;

        let last_cp_size = latest.as_ref().map(|(c, _)| c.size);
        let shared = Arc::new(Shared {
            tree: RwLock::new(tree),
            latest: RwLock::new(latest),
            index: RwLock::new(index),
            last_policy: RwLock::new(last_policy),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            config,
            signer,
            segment,
            seg_path,
            seg_len,
            cps,
            cps_path,
            shared: Arc::clone(&shared),
            last_time,
            last_cp_size,
            last_cp_at: Instant::now(),
            failed: false,
        };
        let worker = std::thread::Builder::new()
            .name("kinko-audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err("spawn writer thread", dir, e))?;
        let log = Self {
            tx: Some(tx),
            worker: Some(worker),
            shared,
            key,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        // Cover every record (and the empty log) by a signed checkpoint before serving.
        log.checkpoint()?;
        Ok(log)
    }

    /// Appends a record for `event` caused by `principal`; returns once it is durable (and, if
    /// the event needs one, covered by a durable signed checkpoint).
    ///
    /// On `Err` the caller must act as if nothing was recorded (for `signing_authorized`: do not
    /// sign; for `signature_produced`: do not release the signature). The record may still be in
    /// the log — a failed checkpoint signature leaves a durable record that the next checkpoint
    /// covers — which an auditor sees as an authorization or signature that was never used.
    pub fn append(&self, principal: &str, event: Event) -> Result<Appended, Error> {
        let prefix = RecordPrefix::encode(principal, &event)?;
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Msg::Append {
            prefix: prefix.into_bytes(),
            needs_checkpoint: event.needs_checkpoint(),
            reply,
        })?;
        let appended = rx.recv().map_err(|_| Error::WriterStopped)??;
        if let Event::PolicyInstalled(p) = &event
            && let Ok(mut last) = self.shared.last_policy.write()
        {
            *last = Some((appended.seq, p.policy_hash.0.clone()));
        }
        Ok(appended)
    }

    /// Appends several records in this order, queued together so that they share one disk sync
    /// when the writer takes them in one batch; returns once all are durable. Each record
    /// succeeds or fails as with [`AuditLog::append`]; the first failure is returned.
    pub fn append_all(&self, principal: &str, events: Vec<Event>) -> Result<Vec<Appended>, Error> {
        let mut waiting = Vec::with_capacity(events.len());
        for event in events {
            let prefix = RecordPrefix::encode(principal, &event)?;
            let (reply, rx) = mpsc::sync_channel(1);
            self.send(Msg::Append {
                prefix: prefix.into_bytes(),
                needs_checkpoint: event.needs_checkpoint(),
                reply,
            })?;
            waiting.push((rx, event));
        }
        let mut out = Vec::with_capacity(waiting.len());
        let mut first_err = None;
        for (rx, event) in waiting {
            match rx.recv().map_err(|_| Error::WriterStopped).and_then(|r| r) {
                Ok(appended) => {
                    if let Event::PolicyInstalled(p) = &event
                        && let Ok(mut last) = self.shared.last_policy.write()
                    {
                        *last = Some((appended.seq, p.policy_hash.0.clone()));
                    }
                    out.push(appended);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The newest `policy_installed` record in the log: its sequence number and the installed
    /// policy's hash. The daemon checks at start that the policy it is about to enforce is this
    /// one, so a policy changed behind the log (file and database edited) is refused.
    pub fn last_policy_installed(&self) -> Option<(u64, Vec<u8>)> {
        self.shared.last_policy.read().ok().and_then(|l| l.clone())
    }

    /// Signs a checkpoint of the current tree now (or returns the latest if it is current).
    pub fn checkpoint(&self) -> Result<Arc<str>, Error> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Msg::Checkpoint { reply })?;
        rx.recv().map_err(|_| Error::WriterStopped)?
    }

    fn send(&self, msg: Msg) -> Result<(), Error> {
        self.tx
            .as_ref()
            .ok_or(Error::WriterStopped)?
            .send(msg)
            .map_err(|_| Error::WriterStopped)
    }

    /// The log's verifier key (`name+id+key`).
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.key
    }

    /// The number of durable records.
    pub fn size(&self) -> u64 {
        self.shared.tree.read().map(|t| t.size()).unwrap_or(0)
    }

    /// The latest signed checkpoint (a signed note).
    pub fn latest_checkpoint(&self) -> Option<Arc<str>> {
        self.shared
            .latest
            .read()
            .ok()
            .and_then(|l| l.as_ref().map(|(_, n)| Arc::clone(n)))
    }

    /// The inclusion proof of record `seq` in the tree of `size` records.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, Error> {
        self.shared
            .tree
            .read()
            .map_err(|_| Error::WriterStopped)?
            .inclusion_proof(seq, size)
    }

    /// The consistency proof between the trees of `old` and `new` records.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        self.shared
            .tree
            .read()
            .map_err(|_| Error::WriterStopped)?
            .consistency_proof(old, new)
    }

    /// The root of the tree of the first `size` records.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        self.shared
            .tree
            .read()
            .map_err(|_| Error::WriterStopped)?
            .root_at(size)
    }

    /// Up to `max` record lines from sequence number `from` (for streaming to auditors).
    /// Starts reading at most 1024 records before `from` (a sparse index of offsets).
    pub fn read_lines(&self, from: u64, max: usize) -> Result<Vec<String>, Error> {
        use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
        let size = self.size();
        let (segments, (mut seq, mut seg, offset)) = {
            let index = self.shared.index.read().map_err(|_| Error::WriterStopped)?;
            let at = index.entries.partition_point(|(s, _, _)| *s <= from);
            let Some(entry) = at.checked_sub(1).and_then(|i| index.entries.get(i)) else {
                return Ok(Vec::new());
            };
            (index.segments.clone(), *entry)
        };
        let mut out = Vec::new();
        let mut offset = offset;
        while seq < size && out.len() < max {
            let Some(path) = segments.get(seg) else { break };
            let mut file = File::open(path).map_err(|e| io_err("open segment", path, e))?;
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| io_err("seek segment", path, e))?;
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader
                    .by_ref()
                    .take(MAX_RECORD_LEN as u64 + 1)
                    .read_until(b'\n', &mut line)
                    .map_err(|e| io_err("read segment", path, e))?;
                if n == 0 || line.last() != Some(&b'\n') || seq >= size || out.len() >= max {
                    break;
                }
                line.pop();
                if seq >= from {
                    out.push(String::from_utf8_lossy(&line).into_owned());
                }
                seq += 1;
            }
            seg += 1;
            offset = 0;
        }
        Ok(out)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

struct Writer<S> {
    dir: PathBuf,
    config: LogConfig,
    signer: S,
    segment: File,
    seg_path: PathBuf,
    seg_len: u64,
    cps: File,
    cps_path: PathBuf,
    shared: Arc<Shared>,
    last_time: u64,
    last_cp_size: Option<u64>,
    last_cp_at: Instant,
    failed: bool,
}

/// A copy of an error for each waiter of a batch (I/O errors keep their kind and message).
fn copy_err(e: &Error) -> Error {
    match e {
        Error::Io { op, path, source } => Error::Io {
            op,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Signer(s) => Error::Signer(s.clone()),
        Error::SignerBadSignature => Error::SignerBadSignature,
        Error::Overflow => Error::Overflow,
        Error::Recoverable(inner) => Error::Recoverable(Box::new(copy_err(inner))),
        _ => Error::WriterStopped,
    }
}

impl<S: CheckpointSigner> Writer<S> {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let tick = self.config.checkpoint_interval.min(Duration::from_secs(1));
        let mut last_batch = 1usize;
        loop {
            let first = match rx.recv_timeout(tick) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    if self.periodic_due() {
                        // A failure is retried on the next tick; appends that need a
                        // checkpoint report their own failures.
                        let _ = self.checkpoint();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let max = self.config.max_batch.max(1);
            let mut batch = vec![first];
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            // Group commit: the waiters of the previous batch were all woken together and
            // are submitting again. Linger briefly (far less than one sync) until as many as
            // last time have arrived, so they share this sync instead of the next one.
            let expected = last_batch.min(max);
            let started = Instant::now();
            while batch.len() < expected {
                let Some(left) = LINGER.checked_sub(started.elapsed()) else {
                    break;
                };
                match rx.recv_timeout(left) {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            last_batch = batch.len();
            self.process(batch);
        }
    }

    fn periodic_due(&self) -> bool {
        if self.failed {
            return false;
        }
        let size = self.shared.tree.read().map(|t| t.size()).unwrap_or(0);
        self.last_cp_size.is_none_or(|s| s < size)
            && self.last_cp_at.elapsed() >= self.config.checkpoint_interval
    }

    fn process(&mut self, batch: Vec<Msg>) {
        type AppendReply = mpsc::SyncSender<Result<Appended, Error>>;
        let mut accepted: Vec<(AppendReply, u64, Hash, bool)> = Vec::new();
        let mut lens: Vec<u64> = Vec::new();
        let mut forced: Vec<mpsc::SyncSender<Result<Arc<str>, Error>>> = Vec::new();
        let mut buf = Vec::new();
        let mut leaves = Vec::new();
        let size0 = self.shared.tree.read().map(|t| t.size()).unwrap_or(0);
        let mut time = self.last_time.max(now_ms());
        for msg in batch {
            match msg {
                Msg::Checkpoint { reply } => forced.push(reply),
                Msg::Append {
                    prefix,
                    needs_checkpoint: needs,
                    reply,
                } => {
                    if self.failed {
                        let _ = reply.send(Err(Error::WriterStopped));
                        continue;
                    }
                    let Some(seq) = size0.checked_add(accepted.len() as u64) else {
                        let _ = reply.send(Err(Error::Overflow));
                        continue;
                    };
                    time = time.max(now_ms());
                    match RecordPrefix::from_bytes(prefix).finish(seq, time) {
                        Ok(line) if line.len() <= MAX_RECORD_LEN => {
                            let h = leaf_hash(&line);
                            buf.extend_from_slice(&line);
                            buf.push(b'\n');
                            lens.push(line.len() as u64 + 1);
                            leaves.push(h);
                            accepted.push((reply, seq, h, needs));
                        }
                        Ok(line) => {
                            let _ = reply.send(Err(Error::RecordTooLarge {
                                len: line.len(),
                                max: MAX_RECORD_LEN,
                            }));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
            }
        }
        if !buf.is_empty() {
            let (rotated, start) = match self.write_records(size0, &buf) {
                Ok(r) => r,
                Err(e) => {
                    // Only a write cut off cleanly at the previous end leaves the log usable.
                    if !matches!(e, Error::Recoverable(_)) {
                        self.failed = true;
                    }
                    for (reply, ..) in accepted {
                        let _ = reply.send(Err(copy_err(&e)));
                    }
                    for reply in forced {
                        let _ = reply.send(Err(copy_err(&e)));
                    }
                    return;
                }
            };
            if let Ok(mut index) = self.shared.index.write() {
                if rotated {
                    index.segments.push(self.seg_path.clone());
                }
                let mut offset = start;
                for (i, len) in lens.iter().enumerate() {
                    index.note(size0 + i as u64, offset, rotated && i == 0);
                    offset = offset.saturating_add(*len);
                }
            }
            self.last_time = time;
            if let Ok(mut tree) = self.shared.tree.write() {
                for h in leaves {
                    tree.push_leaf_hash(h);
                }
            }
        }
        let need_cp = !forced.is_empty()
            || accepted.iter().any(|(_, _, _, needs)| *needs)
            || self.periodic_due();
        let cp = if need_cp && !self.failed {
            Some(self.checkpoint())
        } else if need_cp {
            Some(Err(Error::WriterStopped))
        } else {
            None
        };
        for (reply, seq, leaf_hash, needs) in accepted {
            let result = match &cp {
                Some(Ok(note)) => Ok(Appended {
                    seq,
                    leaf_hash,
                    checkpoint: Some(Arc::clone(note)),
                }),
                Some(Err(e)) if needs => Err(copy_err(e)),
                _ => Ok(Appended {
                    seq,
                    leaf_hash,
                    checkpoint: None,
                }),
            };
            let _ = reply.send(result);
        }
        for reply in forced {
            let _ = reply.send(match &cp {
                Some(Ok(note)) => Ok(Arc::clone(note)),
                Some(Err(e)) => Err(copy_err(e)),
                None => Err(Error::WriterStopped),
            });
        }
    }

    /// Writes and syncs a batch; returns whether a new segment was started and the batch's
    /// offset in its segment.
    fn write_records(&mut self, first_seq: u64, buf: &[u8]) -> Result<(bool, u64), Error> {
        let mut rotated = false;
        if self.seg_len > 0
            && self.seg_len.saturating_add(buf.len() as u64) > self.config.segment_max_bytes
        {
            let path = self.dir.join(segment_name(first_seq));
            let f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_err("create segment", &path, e))?;
            sync_dir(&self.dir)?;
            self.segment = f;
            self.seg_path = path;
            self.seg_len = 0;
            rotated = true;
        }
        let start = self.seg_len;
        if let Err(e) = self.segment.write_all(buf) {
            // A short write (a full disk): cut the partial batch off so the segment ends on a
            // record boundary, and the log stays usable once space returns. If that fails too,
            // the caller stops the writer.
            let err = io_err("write", &self.seg_path, e);
            self.rollback_segment(start)?;
            return Err(Error::Recoverable(Box::new(err)));
        }
        // A failed fdatasync leaves the page cache in an unknown state: never recoverable.
        self.segment
            .sync_data()
            .map_err(|e| io_err("fdatasync", &self.seg_path, e))?;
        self.seg_len = self.seg_len.saturating_add(buf.len() as u64);
        Ok((rotated, start))
    }

    fn rollback_segment(&mut self, len: u64) -> Result<(), Error> {
        self.segment
            .set_len(len)
            .map_err(|e| io_err("truncate", &self.seg_path, e))?;
        self.segment
            .sync_data()
            .map_err(|e| io_err("fdatasync", &self.seg_path, e))
    }

    fn checkpoint(&mut self) -> Result<Arc<str>, Error> {
        let (size, root) = {
            let tree = self.shared.tree.read().map_err(|_| Error::WriterStopped)?;
            (tree.size(), tree.root())
        };
        if let Ok(latest) = self.shared.latest.read()
            && let Some((cp, note)) = latest.as_ref()
            && cp.size == size
        {
            return Ok(Arc::clone(note));
        }
        let cp = Checkpoint {
            origin: self.config.origin.clone(),
            size,
            root,
            extensions: Vec::new(),
        };
        let note = cp.sign(&self.config.origin, &self.signer)?;
        let value = serde_json::to_value(CheckpointLine { note: note.clone() })
            .map_err(|e| Error::Record(e.to_string()))?;
        let mut line =
            kinko_intent::to_canonical_json(&value).map_err(|e| Error::Record(e.to_string()))?;
        line.push(b'\n');
        let before = self
            .cps
            .metadata()
            .map_err(|e| io_err("stat", &self.cps_path, e))?
            .len();
        if let Err(e) = self.cps.write_all(&line) {
            let err = io_err("write", &self.cps_path, e);
            let rolled_back = self
                .cps
                .set_len(before)
                .and_then(|()| self.cps.sync_data())
                .is_ok();
            if !rolled_back {
                self.failed = true;
                return Err(err);
            }
            return Err(Error::Recoverable(Box::new(err)));
        }
        if let Err(e) = self.cps.sync_data() {
            self.failed = true;
            return Err(io_err("fdatasync", &self.cps_path, e));
        }
        let note: Arc<str> = Arc::from(note);
        if let Ok(mut latest) = self.shared.latest.write() {
            *latest = Some((cp, Arc::clone(&note)));
        }
        self.last_cp_size = Some(size);
        self.last_cp_at = Instant::now();
        Ok(note)
    }
}
