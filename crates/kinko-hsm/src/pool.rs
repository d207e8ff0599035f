//! The session pool: sessions opened once and reused, one login per token, PKCS#11 calls run
//! on tokio's blocking threads so they never stall the async runtime.
//!
//! Each of the `pool_size` sessions is driven by a dedicated worker thread that takes the next
//! job from a shared queue as soon as it finishes one: under load a session never sits idle
//! waiting for a task to be woken and a blocking thread to be scheduled (with `spawn_blocking`
//! those hand-offs left SoftHSM2's sessions idle for a quarter of the time).
//!
//! A session the token invalidated (`CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`,
//! `CKR_USER_NOT_LOGGED_IN`, `CKR_DEVICE_REMOVED`, `CKR_TOKEN_NOT_PRESENT`, …) is discarded and
//! a fresh one opened, logging in again when the token dropped the login, up to
//! [`MAX_ATTEMPTS`] times; then the caller gets [`HsmError::TokenUnavailable`]. A wrong PIN is
//! never retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cryptoki::context::{Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;

use crate::error::{HsmError, from_cryptoki, is_session_lost, is_stale_handle};

/// Attempts per operation when the token invalidates sessions.
pub const MAX_ATTEMPTS: u32 = 3;

/// Pause before attempt `n` (1-based) after a lost session.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(25 * u64::from(attempt) * u64::from(attempt))
}

pub(crate) struct Pool {
    pub(crate) ctx: Pkcs11,
    slot: Mutex<Slot>,
    pub(crate) label: String,
    pin: SecretString,
    sessions: Mutex<Sessions>,
    /// Signalled when a session goes back to the pool or is closed.
    freed: Condvar,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    pub(crate) size: usize,
    /// Incremented each time the token lost our sessions; object handles found before may be
    /// stale (or, worse, reused for another object) and are looked up again.
    generation: AtomicU64,
}

/// What an operation reports when it fails: either a PKCS#11 error (which may mean the session
/// was lost) or a final error that must not be retried.
pub(crate) enum OpError {
    Ck(CkError),
    Final(HsmError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Ck(e)
    }
}

impl From<HsmError> for OpError {
    fn from(e: HsmError) -> Self {
        OpError::Final(e)
    }
}

impl Pool {
    /// Opens the first session and logs in; fails fast on a wrong PIN.
    pub(crate) fn open(
        ctx: Pkcs11,
        slot: Slot,
        label: String,
        pin: SecretString,
        size: usize,
    ) -> Result<Pool, HsmError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let pool = Pool {
            ctx,
            slot: Mutex::new(slot),
            label,
            pin,
            sessions: Mutex::new(Sessions {
                idle: Vec::with_capacity(size),
                open: 0,
            }),
            freed: Condvar::new(),
            jobs: Mutex::new(tx),
            size,
            generation: AtomicU64::new(0),
        };
        let first = pool.take()?;
        pool.put(first);
        // The workers hold only the queue; they exit when the pool (the only sender) is dropped.
        let rx = Arc::new(Mutex::new(rx));
        // One worker per session. (Twice as many, so that a session could serve the next job
        // while its last signature is checked, measured slower: the extra workers park on the
        // session condvar and every hand-off pays a wake-up again.)
        for i in 0..size {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("kinko-hsm-{i}"))
                .spawn(move || worker(&rx))
                .map_err(|e| HsmError::Worker(format!("cannot start an HSM worker thread: {e}")))?;
        }
        Ok(pool)
    }

    /// The slot the token was last seen in.
    pub(crate) fn slot(&self) -> Result<Slot, HsmError> {
        self.slot.lock().map(|s| *s).map_err(|_| poisoned())
    }

    /// Opens a read-write session, logging the user in if the token has no login. When the slot
    /// is gone (token re-inserted, module re-initialized), the token is found again by label.
    fn new_session(&self) -> Result<Session, HsmError> {
        let mut slot = self.slot()?;
        let opened = match self.ctx.open_rw_session(slot) {
            Err(CkError::Pkcs11(
                RvError::SlotIdInvalid | RvError::TokenNotPresent | RvError::TokenNotRecognized,
                _,
            )) => {
                slot = crate::find_token(&self.ctx, &self.label)?;
                *self.slot.lock().map_err(|_| poisoned())? = slot;
                tracing::info!(token = %self.label, slot = slot.id(), "token found again");
                self.ctx.open_rw_session(slot)
            }
            other => other,
        };
        let session = opened.map_err(|e| match e {
            CkError::Pkcs11(rv, function) => HsmError::TokenUnavailable {
                function,
                rv,
                attempts: 1,
            },
            other => from_cryptoki(other),
        })?;
        let logged_in = matches!(
            session.get_session_info().map(|i| i.session_state()),
            Ok(SessionState::RwUser | SessionState::RoUser)
        );
        if !logged_in {
            match session.login(UserType::User, Some(&self.pin)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                    return Err(HsmError::PinIncorrect {
                        label: self.label.clone(),
                    });
                }
                Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                    return Err(HsmError::PinLocked {
                        label: self.label.clone(),
                    });
                }
                Err(e) => return Err(from_cryptoki(e)),
            }
        }
        Ok(session)
    }

    /// A session: an idle one, a new one while fewer than `size` are open, or else the next one
    /// given back. Never more than `size` sessions are open.
    fn take(&self) -> Result<Session, HsmError> {
        let mut st = self.sessions.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(s) = st.idle.pop() {
                return Ok(s);
            }
            if st.open < self.size {
                st.open += 1;
                drop(st);
                return self.new_session().inspect_err(|_| self.forget_one());
            }
            st = self.freed.wait(st).map_err(|_| poisoned())?;
        }
    }

    fn put(&self, s: Session) {
        if let Ok(mut st) = self.sessions.lock() {
            st.idle.push(s);
        }
        self.freed.notify_one();
    }

    /// How many sessions are open (idle or in use).
    pub(crate) fn open_sessions(&self) -> usize {
        self.sessions.lock().map(|st| st.open).unwrap_or(0)
    }

    /// A taken session was dropped (lost, or failed to open).
    fn forget_one(&self) {
        if let Ok(mut st) = self.sessions.lock() {
            st.open = st.open.saturating_sub(1);
        }
        self.freed.notify_one();
    }

    /// The current session generation (see the field).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Drops every idle session (after the token invalidated them all, they are useless).
    fn discard_idle(&self) {
        if let Ok(mut st) = self.sessions.lock() {
            st.open = st.open.saturating_sub(st.idle.len());
            st.idle.clear();
        }
        self.freed.notify_all();
    }

    /// Runs `op` on a pooled session, on the current thread, retrying on lost sessions.
    pub(crate) fn run_blocking<T>(
        &self,
        op: &mut dyn FnMut(&Session) -> Result<T, OpError>,
    ) -> Result<T, HsmError> {
        let mut last: Option<(Function, RvError)> = None;
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                std::thread::sleep(backoff(attempt - 1));
            }
            let session = match self.take() {
                Ok(s) => s,
                Err(HsmError::TokenUnavailable { function, rv, .. }) => {
                    last = Some((function, rv));
                    continue;
                }
                Err(e) => return Err(e),
            };
            match op(&session) {
                Ok(v) => {
                    self.put(session);
                    return Ok(v);
                }
                Err(OpError::Ck(e)) if is_session_lost(&e) => {
                    tracing::warn!(token = %self.label, attempt, error = %e, "PKCS#11 session lost; reopening");
                    if let CkError::Pkcs11(rv, function) = e {
                        last = Some((function, rv));
                    }
                    // The other idle sessions are most likely gone too (token reset, logout).
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    self.discard_idle();
                    drop(session);
                    self.forget_one();
                }
                Err(OpError::Ck(e)) if is_stale_handle(&e) => {
                    tracing::warn!(token = %self.label, attempt, error = %e, "stale object handle; looking the key up again");
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    if let CkError::Pkcs11(rv, function) = e {
                        last = Some((function, rv));
                    }
                    self.put(session);
                }
                Err(OpError::Ck(e)) => {
                    self.put(session);
                    return Err(from_cryptoki(e));
                }
                Err(OpError::Final(e)) => {
                    self.put(session);
                    return Err(e);
                }
            }
        }
        let (function, rv) = last.unwrap_or((Function::OpenSession, RvError::GeneralError));
        Err(HsmError::TokenUnavailable {
            function,
            rv,
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Runs `op` on a pooled session from async code: queues it for the session workers and
    /// waits for the result without blocking the runtime.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, op: F) -> Result<T, HsmError>
    where
        T: Send + 'static,
        F: FnMut(&Session) -> Result<T, OpError> + Send + 'static,
    {
        self.run_then(op, Ok).await
    }

    /// Like [`Pool::run`], then `after` on the result, on the same worker but after the session
    /// went back to the pool (so the session can serve the next job meanwhile).
    pub(crate) async fn run_then<T, V, F, A>(
        self: &Arc<Self>,
        mut op: F,
        after: A,
    ) -> Result<V, HsmError>
    where
        T: Send + 'static,
        V: Send + 'static,
        F: FnMut(&Session) -> Result<T, OpError> + Send + 'static,
        A: FnOnce(T) -> Result<V, HsmError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pool = Arc::clone(self);
        let job: Job = Box::new(move || {
            let result = pool.run_blocking(&mut op).and_then(after);
            // Let go of the pool (and of `op`, which may hold it too) before answering: once
            // answered, the caller may drop its last handle and exit, and the pool must then be
            // dropped, closing its sessions, by the caller — not here while the process finalizes
            // the module (SoftHSM2 crashed at exit in `C_CloseSession` racing `C_Finalize`).
            drop(op);
            drop(pool);
            // The caller may have gone away (cancelled); the result is then dropped.
            let _ = tx.send(result);
        });
        self.jobs
            .lock()
            .map_err(|_| poisoned())?
            .send(job)
            .map_err(|_| HsmError::Worker("the HSM workers have stopped".into()))?;
        rx.await
            .map_err(|_| HsmError::Worker("an HSM worker stopped before answering".into()))?
    }
}

/// The sessions not in use, and how many are open in all.
struct Sessions {
    idle: Vec<Session>,
    open: usize,
}

/// A queued PKCS#11 operation.
type Job = Box<dyn FnOnce() + Send>;

/// A session worker: runs queued jobs one after another until the queue closes.
fn worker(rx: &Mutex<std::sync::mpsc::Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

fn poisoned() -> HsmError {
    HsmError::Worker("session pool lock poisoned".into())
}
