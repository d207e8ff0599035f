//! Asking witnesses to cosign the log's checkpoints (C2SP tlog-witness), keeping their
//! cosignatures with the checkpoints, and noticing a witness that holds a history this log
//! does not extend.
//!
//! One round at a time: the newest checkpoint goes to every witness of the policy in
//! parallel, each with the consistency proof from the size that witness last cosigned (as far
//! as this kinkod knows; a 409 answer tells it, and the request is made again). Verified
//! cosignatures are kept in the store (`log_cosignatures`); once those of a checkpoint meet the
//! policy's quorum, every record up to its size is *witnessed*.
//!
//! A witness that answers with a size larger than the log, or refuses the log's checkpoint as
//! inconsistent with the one it cosigned (422), has seen a history this log does not extend:
//! the database was restored from an older backup, or someone showed the witness another
//! history under this log's key. kinkod then refuses to start, or, running, stops signing
//! ([`Witnessing::conflict`]) until an operator looks.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kinko_audit::tlog_policy::WitnessPolicy;
use kinko_store::Store;
use kinko_witness::client::{Outcome, add_checkpoint};

/// What this kinkod knows of one witness.
#[derive(Debug, Default, Clone)]
struct Known {
    /// The size of the latest checkpoint it cosigned, as far as known.
    size: Option<u64>,
    /// Requests answered with a cosignature / otherwise (counters for the metrics).
    cosigned: u64,
    failed: u64,
    /// The last failure, for the log and the metrics' help.
    last_error: Option<String>,
}

/// The witnesses of the log and what they cosigned.
pub(crate) struct Witnessing {
    policy: WitnessPolicy,
    timeout: Duration,
    /// How long a `witnessed` signature waits for the quorum.
    pub(crate) wait: Duration,
    known: Mutex<Option<Vec<Known>>>,
    /// One round at a time (witnesses see one request of this log at a time).
    round: tokio::sync::Mutex<()>,
    /// The largest checkpoint size whose cosignatures meet the quorum (0: none yet).
    quorum_size: AtomicU64,
    /// Since when the newest checkpoint has been ahead of the quorum (for the metric).
    behind_since: Mutex<Option<Instant>>,
    /// Set when a witness holds a history this log does not extend.
    conflict: Mutex<Option<String>>,
}

impl std::fmt::Debug for Witnessing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witnessing")
            .field("witnesses", &self.policy.witnesses().len())
            .field("quorum_size", &self.quorum_size.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, kinko_store::StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("store task: {e}")),
    }
}

/// One witness's answer in a round.
enum Answer {
    /// Its verified cosignature line(s).
    Cosigned(String),
    /// Nothing to do now (it already holds a newer checkpoint this log extends).
    Skipped,
    /// A history this log does not extend.
    Conflict(String),
    /// Not reachable, or refused for another reason.
    Failed(String),
}

impl Witnessing {
    /// Reads and checks the witness policy: every witness needs a URL, and the quorum must be
    /// reachable with them.
    pub(crate) fn load(config: &crate::config::WitnessConfig) -> Result<Self, String> {
        let shown = config.policy.display();
        let text = std::fs::read_to_string(&config.policy).map_err(|e| format!("{shown}: {e}"))?;
        let policy = WitnessPolicy::parse(&text).map_err(|e| format!("{shown}: {e}"))?;
        if policy.requires_nothing() {
            return Err(format!(
                "{shown}: `quorum none` witnesses nothing; remove [witness] instead"
            ));
        }
        for w in policy.witnesses() {
            let url = w
                .url
                .as_deref()
                .ok_or_else(|| format!("{shown}: witness {} has no URL to ask it at", w.name))?;
            kinko_witness::client::endpoint(url).map_err(|e| format!("{shown}: {e}"))?;
        }
        Ok(Witnessing {
            policy,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            wait: Duration::from_millis(config.wait_ms),
            known: Mutex::new(None),
            round: tokio::sync::Mutex::new(()),
            quorum_size: AtomicU64::new(0),
            behind_since: Mutex::new(None),
            conflict: Mutex::new(None),
        })
    }

    /// The largest checkpoint size known to meet the quorum.
    pub(crate) fn quorum_size(&self) -> u64 {
        self.quorum_size.load(Ordering::SeqCst)
    }

    /// Why signing is stopped, if a witness holds a history this log does not extend.
    pub(crate) fn conflict(&self) -> Option<String> {
        self.conflict.lock().ok().and_then(|c| c.clone())
    }

    fn set_conflict(&self, why: &str) {
        tracing::error!(
            reason = why,
            "a witness holds a history this log does not extend: signing stops (docs/witness.md)"
        );
        if let Ok(mut c) = self.conflict.lock()
            && c.is_none()
        {
            *c = Some(why.to_string());
        }
    }

    /// Reads, once, what the store kept: the largest size each witness cosigned, and the
    /// newest checkpoint that met the quorum.
    async fn init(&self, store: &Arc<Store>) -> Result<(), String> {
        if self.known.lock().map(|k| k.is_some()).unwrap_or(true) {
            return Ok(());
        }
        let s = Arc::clone(store);
        let sizes = blocking(move || s.witnessed_sizes()).await?;
        let known: Vec<Known> = self
            .policy
            .witnesses()
            .iter()
            .map(|w| Known {
                size: sizes
                    .iter()
                    .find(|(k, _)| *k == w.key.to_string())
                    .map(|(_, s)| *s),
                ..Known::default()
            })
            .collect();
        let s = Arc::clone(store);
        let recent = blocking(move || s.cosigned_sizes(16)).await?;
        for size in recent {
            let s = Arc::clone(store);
            if let Some(note) = blocking(move || s.cosigned_checkpoint(size)).await?
                && self.met(&note)
            {
                self.quorum_size.fetch_max(size, Ordering::SeqCst);
                break;
            }
        }
        if let Ok(mut k) = self.known.lock() {
            *k = Some(known);
        }
        Ok(())
    }

    fn met(&self, note: &str) -> bool {
        let signed = self.policy.cosigners(note);
        self.policy.quorum_met(|i| signed.contains(&i))
    }

    fn known_size(&self, i: usize) -> Option<u64> {
        self.known
            .lock()
            .ok()
            .and_then(|k| k.as_ref().and_then(|k| k.get(i).and_then(|w| w.size)))
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut Known)) {
        if let Ok(mut k) = self.known.lock()
            && let Some(w) = k.as_mut().and_then(|k| k.get_mut(i))
        {
            f(w);
        }
    }

    /// One round: the newest checkpoint to every witness, cosignatures kept, the quorum size
    /// updated. Returns the quorum size after it. An `Err` is a store failure.
    pub(crate) async fn round(&self, store: &Arc<Store>) -> Result<u64, String> {
        self.round_inner(store, false).await
    }

    /// The round at start: every witness is asked, even those whose cosignature of the
    /// newest checkpoint the store already holds — a database restored from a backup holds
    /// the cosignatures of its own time, and only the witnesses know what came after.
    pub(crate) async fn start_round(&self, store: &Arc<Store>) -> Result<u64, String> {
        self.round_inner(store, true).await
    }

    async fn round_inner(&self, store: &Arc<Store>, every_witness: bool) -> Result<u64, String> {
        let _one = self.round.lock().await;
        self.init(store).await?;
        let Some((size, note)) = store.latest_checkpoint_sized() else {
            return Ok(self.quorum_size());
        };
        if !every_witness && self.quorum_size() >= size {
            self.behind(false);
            return Ok(self.quorum_size());
        }
        self.behind(true);
        let note: Arc<str> = note;
        // What this checkpoint already has (an earlier round, another replica): those
        // witnesses are not asked again.
        let s = Arc::clone(store);
        let mut cosigned = blocking(move || s.cosigned_checkpoint(size))
            .await?
            .unwrap_or_else(|| note.to_string());
        let already = if every_witness {
            Vec::new()
        } else {
            self.policy.cosigners(&cosigned)
        };
        let mut asks = tokio::task::JoinSet::new();
        for (i, w) in self.policy.witnesses().iter().enumerate() {
            if already.contains(&i) {
                continue;
            }
            let (url, key, name) = (
                w.url.clone().unwrap_or_default(),
                w.key.clone(),
                w.name.clone(),
            );
            let (store, note, timeout) = (Arc::clone(store), Arc::clone(&note), self.timeout);
            let start = self.known_size(i).unwrap_or(0);
            asks.spawn(async move {
                let answer = ask(&store, &url, &key, &note, size, start, timeout).await;
                (i, name, answer)
            });
        }
        let mut lines = Vec::new();
        while let Some(joined) = asks.join_next().await {
            let Ok((i, name, (answer, learned))) = joined else {
                continue;
            };
            if let Some(s) = learned {
                self.update(i, |k| k.size = Some(s));
            }
            match answer {
                Answer::Cosigned(line) => {
                    self.update(i, |k| {
                        k.size = Some(size);
                        k.cosigned += 1;
                        k.last_error = None;
                    });
                    if let Some(w) = self.policy.witnesses().get(i) {
                        cosigned.push_str(&line);
                        lines.push((w.key.to_string(), line));
                    }
                    if !every_witness && self.met(&cosigned) {
                        // The quorum is there: slower witnesses finish on their own, and are
                        // asked again with the next checkpoint. (At start every answer is
                        // awaited: any one witness may know of a newer history.)
                        asks.detach_all();
                        break;
                    }
                }
                Answer::Skipped => {}
                Answer::Conflict(why) => {
                    self.update(i, |k| k.failed += 1);
                    self.set_conflict(&format!("witness {name}: {why}"));
                }
                Answer::Failed(why) => {
                    tracing::warn!(witness = name, size, error = why, "witness did not cosign");
                    self.update(i, |k| {
                        k.failed += 1;
                        k.last_error = Some(why);
                    });
                }
            }
        }
        let s = Arc::clone(store);
        blocking(move || s.add_cosignatures(size, &lines)).await?;
        if self.met(&cosigned) {
            self.quorum_size.fetch_max(size, Ordering::SeqCst);
        }
        let q = self.quorum_size();
        let newest = store.latest_checkpoint_sized().map(|(s, _)| s).unwrap_or(0);
        self.behind(q < newest);
        Ok(q)
    }

    fn behind(&self, behind: bool) {
        if let Ok(mut b) = self.behind_since.lock() {
            match (behind, b.is_some()) {
                (true, false) => *b = Some(Instant::now()),
                (false, true) => *b = None,
                _ => {}
            }
        }
    }

    /// Waits until a checkpoint covering record `seq` met the quorum, asking the witnesses
    /// again meanwhile, for at most [`Witnessing::wait`].
    pub(crate) async fn until_witnessed(&self, store: &Arc<Store>, seq: u64) -> Result<(), String> {
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(why) = self.conflict() {
                return Err(why);
            }
            let last = match self.round(store).await {
                Ok(q) if q > seq => return Ok(()),
                Ok(q) => format!("the newest checkpoint the quorum cosigned has size {q}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "the witness quorum did not cosign a checkpoint covering record {seq} within {:?} ({last})",
                    self.wait
                ));
            }
            tokio::time::sleep(Duration::from_millis(200).min(self.wait)).await;
        }
    }

    /// The witnessing metrics, in the Prometheus text format.
    pub(crate) fn render(&self, log_size: u64) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let q = self.quorum_size();
        let _ = writeln!(
            out,
            "# HELP kinko_witness_quorum_size The largest checkpoint size whose cosignatures meet the witness quorum.\n# TYPE kinko_witness_quorum_size gauge\nkinko_witness_quorum_size {q}"
        );
        let _ = writeln!(
            out,
            "# HELP kinko_witness_unwitnessed_records Records of the log not yet covered by a checkpoint that met the witness quorum.\n# TYPE kinko_witness_unwitnessed_records gauge\nkinko_witness_unwitnessed_records {}",
            log_size.saturating_sub(q)
        );
        let behind = self
            .behind_since
            .lock()
            .ok()
            .and_then(|b| b.map(|t| t.elapsed().as_secs_f64()))
            .unwrap_or(0.0);
        let _ = writeln!(
            out,
            "# HELP kinko_witness_behind_seconds How long the newest checkpoint has waited for the witness quorum (0: caught up).\n# TYPE kinko_witness_behind_seconds gauge\nkinko_witness_behind_seconds {behind:.3}"
        );
        let _ = writeln!(
            out,
            "# HELP kinko_witness_conflict 1 when a witness holds a history this log does not extend (signing stopped).\n# TYPE kinko_witness_conflict gauge\nkinko_witness_conflict {}",
            u8::from(self.conflict().is_some())
        );
        out.push_str("# HELP kinko_witness_requests_total add-checkpoint requests by witness and outcome.\n# TYPE kinko_witness_requests_total counter\n");
        out.push_str("# HELP kinko_witness_cosigned_size The largest checkpoint size each witness is known to have cosigned.\n# TYPE kinko_witness_cosigned_size gauge\n");
        if let Ok(k) = self.known.lock()
            && let Some(k) = k.as_ref()
        {
            for (w, known) in self.policy.witnesses().iter().zip(k) {
                let name = crate::metrics::escape(&w.name);
                let _ = writeln!(
                    out,
                    "kinko_witness_requests_total{{witness=\"{name}\",outcome=\"cosigned\"}} {}\nkinko_witness_requests_total{{witness=\"{name}\",outcome=\"failed\"}} {}\nkinko_witness_cosigned_size{{witness=\"{name}\"}} {}",
                    known.cosigned,
                    known.failed,
                    known.size.unwrap_or(0)
                );
            }
        }
        out
    }
}

/// Asks one witness to cosign the checkpoint `note` of `size`, starting from the size it is
/// believed to hold (`from`) and adopting the size it answers with on 409 (at most a few
/// times). Returns the answer and the size learned, if any.
async fn ask(
    store: &Arc<Store>,
    url: &str,
    key: &kinko_audit::cosignature::CosignerKey,
    note: &str,
    size: u64,
    from: u64,
    timeout: Duration,
) -> (Answer, Option<u64>) {
    let mut old = from;
    let mut learned = None;
    let (mut note, mut size): (Arc<str>, u64) = (Arc::from(note), size);
    let asked = size;
    for _ in 0..4 {
        if old > size {
            // The witness holds a newer checkpoint than this one. Catch up with the store
            // (another replica may have appended and had it cosigned meanwhile): if the log now
            // reaches that size, ask with its newest checkpoint — the witness then checks it
            // extends the one it holds; if not, the log is behind what was witnessed.
            let s = Arc::clone(store);
            let caught_up = blocking(move || s.checkpoint().map(|n| (s.log_size(), n))).await;
            match caught_up {
                Ok((have, newest)) if have >= old => {
                    (note, size) = (newest, have);
                }
                Ok((have, _)) => {
                    return (
                        Answer::Conflict(format!(
                            "it cosigned a checkpoint of size {old}, but this log holds {have} records: the database is older than what was witnessed (restored from a backup?), or another log signs under this key"
                        )),
                        learned,
                    );
                }
                Err(e) => return (Answer::Failed(e), learned),
            }
        }
        let proof = if old == 0 {
            Ok(Vec::new())
        } else {
            let s = Arc::clone(store);
            blocking(move || s.consistency_proof(old, size)).await
        };
        let proof = match proof {
            Ok(p) => p,
            Err(e) => return (Answer::Failed(format!("consistency proof: {e}")), learned),
        };
        let body = kinko_witness::client::request_body(old, &proof, &note);
        match add_checkpoint(url, body, timeout).await {
            Ok(Outcome::Cosigned(text)) => {
                // Keep only this witness's line(s), and only once they verify.
                let prefix = format!("\u{2014} {} ", key.name());
                let mine: String = text
                    .lines()
                    .filter(|l| l.starts_with(&prefix))
                    .map(|l| format!("{l}\n"))
                    .collect();
                return match key.verify_note(&format!("{note}{mine}")) {
                    Ok(_) if size == asked => (Answer::Cosigned(mine), learned),
                    Ok(_) => {
                        // A newer checkpoint than the round's: kept for its own size.
                        let s = Arc::clone(store);
                        let kept = vec![(key.to_string(), mine)];
                        match blocking(move || s.add_cosignatures(size, &kept)).await {
                            Ok(()) => (Answer::Skipped, Some(size)),
                            Err(e) => (Answer::Failed(e), Some(size)),
                        }
                    }
                    Err(e) => (
                        Answer::Failed(format!("its answer is not a valid cosignature: {e}")),
                        learned,
                    ),
                };
            }
            Ok(Outcome::Conflict(n)) => {
                learned = Some(n);
                if n == old {
                    return (
                        Answer::Failed(format!("409 naming the size {n} that was sent")),
                        learned,
                    );
                }
                old = n;
            }
            Ok(Outcome::Refused(422, why)) => {
                return (
                    Answer::Conflict(format!(
                        "it refused checkpoint {size} as inconsistent with the checkpoint of size {old} it cosigned ({why})"
                    )),
                    learned,
                );
            }
            Ok(Outcome::Refused(status, why)) => {
                return (Answer::Failed(format!("HTTP {status}: {why}")), learned);
            }
            Err(e) => return (Answer::Failed(e.to_string()), learned),
        }
    }
    (
        Answer::Failed("the witness's size kept changing".into()),
        learned,
    )
}
