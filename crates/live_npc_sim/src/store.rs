//! Session resumption: handles, the conversation state they restore, and which connection
//! currently owns each session.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::brain::Memory;

/// Most handles kept at once; the oldest are forgotten first.
const MAX_HANDLES: usize = 1024;

/// What a handle restores.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    /// The session's model (`models/...`); a resumed session must keep it.
    pub model: String,
    /// The conversation.
    pub memory: Memory,
}

struct Entry {
    session: u64,
    snapshot: Arc<Snapshot>,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    handles: HashMap<String, Entry>,
    order: VecDeque<String>,
    /// session id → connection currently serving it.
    owners: HashMap<u64, u64>,
    next_session: u64,
    counter: u64,
    /// session id → function calls issued so far, across its connections (call ids stay
    /// unique, and a result for a call made before a drop is recognised after resuming).
    calls: HashMap<u64, u64>,
    /// session id → when it started and whether it has had video (session-length limits).
    started: HashMap<u64, (Instant, bool)>,
}

/// Why a session cannot be resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResumeError {
    /// Unknown or expired handle (1008 `BidiGenerateContent session not found`).
    NotFound,
    /// The session's previous connection is still open (1011).
    Busy,
}

/// All sessions of one simulator.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    ttl: Duration,
}

impl Store {
    pub fn new(ttl: Duration) -> Store {
        Store { inner: Mutex::new(Inner::default()), ttl }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave this map inconsistent: every update is one insert/remove.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new session owned by `conn`.
    pub fn open(&self, conn: u64) -> u64 {
        let mut inner = self.lock();
        inner.next_session += 1;
        let id = inner.next_session;
        inner.owners.insert(id, conn);
        if inner.started.len() >= MAX_HANDLES * 4
            && let Some(oldest) = inner.started.keys().min().copied()
        {
            inner.started.remove(&oldest);
        }
        inner.started.insert(id, (Instant::now(), false));
        id
    }

    /// When `session` started and whether it has had video (now and no video if unknown).
    pub fn session_info(&self, session: u64) -> (Instant, bool) {
        self.lock().started.get(&session).copied().unwrap_or_else(|| (Instant::now(), false))
    }

    /// `session` has had video.
    pub fn saw_video(&self, session: u64) {
        if let Some(entry) = self.lock().started.get_mut(&session) {
            entry.1 = true;
        }
    }

    /// `session` is over (its length limit): its handles are forgotten.
    pub fn end_session(&self, session: u64) {
        let mut inner = self.lock();
        inner.handles.retain(|_, e| e.session != session);
        let Inner { order, handles, .. } = &mut *inner;
        order.retain(|h| handles.contains_key(h));
        inner.started.remove(&session);
    }

    /// Takes over the session of `handle` for `conn`.
    pub fn resume(&self, handle: &str, conn: u64, now: Instant) -> Result<(u64, Arc<Snapshot>), ResumeError> {
        let mut inner = self.lock();
        let entry = inner.handles.get(handle).filter(|e| e.expires > now).ok_or(ResumeError::NotFound)?;
        let (session, snapshot) = (entry.session, entry.snapshot.clone());
        if inner.owners.get(&session).is_some_and(|&c| c != conn) {
            return Err(ResumeError::Busy);
        }
        inner.owners.insert(session, conn);
        Ok((session, snapshot))
    }

    /// Whether `handle`'s session is being served by a connection other than `conn`.
    pub fn is_busy(&self, handle: &str, conn: u64) -> bool {
        let inner = self.lock();
        inner.handles.get(handle).and_then(|e| inner.owners.get(&e.session)).is_some_and(|&c| c != conn)
    }

    /// Issues a new handle restoring `snapshot`.
    pub fn issue(&self, session: u64, snapshot: Snapshot, now: Instant) -> String {
        let mut inner = self.lock();
        inner.counter += 1;
        let mut raw = Vec::with_capacity(24);
        raw.extend_from_slice(&session.to_be_bytes());
        raw.extend_from_slice(&inner.counter.to_be_bytes());
        raw.extend_from_slice(&fastrand::u64(..).to_be_bytes());
        let handle = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        while inner.order.len() >= MAX_HANDLES {
            if let Some(old) = inner.order.pop_front() {
                inner.handles.remove(&old);
            }
        }
        let entry = Entry { session, snapshot: Arc::new(snapshot), expires: now + self.ttl };
        inner.handles.insert(handle.clone(), entry);
        inner.order.push_back(handle.clone());
        handle
    }

    /// Counts a new function call of `session`; returns its number (for the id `fc-N`).
    pub fn note_call(&self, session: u64) -> u64 {
        let mut inner = self.lock();
        if inner.calls.len() >= MAX_HANDLES * 4 && !inner.calls.contains_key(&session) {
            // Forget the oldest session's count; its handles are long gone by now.
            if let Some(oldest) = inner.calls.keys().min().copied() {
                inner.calls.remove(&oldest);
            }
        }
        let n = inner.calls.entry(session).or_insert(0);
        *n += 1;
        *n
    }

    /// Function calls `session` has issued so far.
    pub fn calls_issued(&self, session: u64) -> u64 {
        self.lock().calls.get(&session).copied().unwrap_or(0)
    }

    /// `conn` no longer serves `session`.
    pub fn release(&self, session: u64, conn: u64) {
        let mut inner = self.lock();
        if inner.owners.get(&session) == Some(&conn) {
            inner.owners.remove(&session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot { model: "models/x".into(), memory: Memory::default() }
    }

    #[test]
    fn lifecycle() {
        let store = Store::new(Duration::from_secs(60));
        let now = Instant::now();
        let s = store.open(1);
        let h = store.issue(s, snap(), now);
        assert_eq!(store.resume(&h, 2, now).map(|r| r.0), Err(ResumeError::Busy));
        assert!(store.is_busy(&h, 2));
        store.release(s, 1);
        assert_eq!(store.resume(&h, 2, now).map(|r| r.0), Ok(s));
        assert_eq!(store.resume("nope", 3, now).map(|r| r.0), Err(ResumeError::NotFound));
        store.release(s, 2);
        let later = now + Duration::from_secs(61);
        assert_eq!(store.resume(&h, 3, later).map(|r| r.0), Err(ResumeError::NotFound));
    }
}
