use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{
    BoxFuture, CancelResult, Created, NewTask, StoreError, TaskOutcome, TaskRecord, TaskState,
    TaskStore,
};
use crate::deadline::later;
use crate::offload::reason;
use crate::offload::{IdMap, TaskId};
use crate::ConfigError;

/// A bounded in-process [`TaskStore`]: for one process (one container, one Lambda Managed
/// Instance). On Lambda with one invocation per environment, polls land on other
/// environments: use a shared store there.
///
/// Bounded by the number of tasks (default 10,000) and the bytes of stored results
/// (default 256 MiB). A finished result is kept until its TTL, whoever else needs room:
/// when the store is full, expired records and lapsed leases are cleared, and if that is
/// not enough it refuses the new task ([`StoreError::Full`], so the request is answered in
/// the foreground) or fails a result that does not fit
/// ([`reason::NO_ROOM`](crate::offload::reason::NO_ROOM)).
///
/// ```
/// use tower_serverless::offload::MemoryStore;
///
/// # fn main() -> Result<(), tower_serverless::ConfigError> {
/// let store = MemoryStore::new().max_tasks(1_000)?.max_bytes(64 << 20);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    max_tasks: usize,
    max_bytes: usize,
}

type IdempotencyKey = (Option<String>, String);

#[derive(Debug, Default)]
struct State {
    tasks: IdMap<Entry>,
    keys: HashMap<IdempotencyKey, TaskId>,
    /// Terminal tasks by expiry: what to clear first.
    expiring: BTreeSet<(Instant, TaskId)>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    record: TaskRecord,
    key: Option<IdempotencyKey>,
    ttl: Duration,
    /// Pending: the end of the lease. Terminal: the expiry.
    until: Instant,
    size: usize,
}

impl MemoryStore {
    /// A store for at most 10,000 tasks and 256 MiB of results.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            max_tasks: 10_000,
            max_bytes: 256 << 20,
        }
    }

    /// The most tasks, pending and finished, it keeps.
    ///
    /// # Errors
    ///
    /// When `max` is 0: such a store could keep no task.
    pub fn max_tasks(mut self, max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError("a MemoryStore must hold at least one task"));
        }
        self.max_tasks = max;
        Ok(self)
    }

    /// The most bytes of stored results it keeps.
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the store, so go on with the data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    fn remove(&mut self, id: TaskId) {
        if let Some(entry) = self.tasks.remove(&id) {
            self.bytes -= entry.size;
            self.expiring.remove(&(entry.until, id));
            if let Some(key) = entry.key {
                self.keys.remove(&key);
            }
        }
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some(&(until, id)) = self.expiring.first() {
            if until > now {
                break;
            }
            self.remove(id);
        }
    }

    /// Settles every pending task whose lease lapsed, then clears what expired: the room a
    /// full store can make without dropping anything a client may still read.
    fn make_room(&mut self, now: Instant) {
        let lapsed: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, entry)| entry.record.state == TaskState::Pending && entry.until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in lapsed {
            self.live(id, now);
        }
        self.purge_expired(now);
    }

    /// Moves a pending entry to its terminal state.
    fn terminate(&mut self, id: TaskId, state: TaskState, failure: Failure, at: Instant) {
        let Some(entry) = self.tasks.get_mut(&id) else {
            return;
        };
        entry.record.state = state;
        (entry.record.error, entry.record.error_type) = failure;
        entry.record.finished_at = Some(SystemTime::now());
        entry.until = later(at, entry.ttl);
        self.expiring.insert((entry.until, id));
    }

    /// The live entry of `id`: expired records are removed, lapsed leases become failures.
    fn live(&mut self, id: TaskId, now: Instant) -> Option<&mut Entry> {
        let entry = self.tasks.get(&id)?;
        match entry.record.state {
            TaskState::Pending if entry.until <= now => {
                let lapsed = entry.until;
                let failure = (Some(reason::WORKER_LOST.to_owned()), None);
                self.terminate(id, TaskState::Failed, failure, lapsed);
                self.live(id, now)
            }
            TaskState::Pending => self.tasks.get_mut(&id),
            _ if entry.until <= now => {
                self.remove(id);
                None
            }
            _ => self.tasks.get_mut(&id),
        }
    }
}

/// The error text and error type a terminal record gets.
type Failure = (Option<String>, Option<String>);

impl TaskStore for MemoryStore {
    fn is_shared(&self) -> bool {
        false
    }

    fn create(&self, task: NewTask) -> BoxFuture<'_, Result<Created, StoreError>> {
        // Both clocks are read before the lock, once each: a burst of offloads contends
        // for it.
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut state = self.lock();
        state.purge_expired(now);
        let key = task.idempotency_key.map(|key| (task.owner.clone(), key));
        if let Some(existing) = key.as_ref().and_then(|key| state.keys.get(key).copied()) {
            if state.live(existing, now).is_some() {
                return Box::pin(std::future::ready(Ok(Created::Existing(existing))));
            }
        }
        if state.tasks.len() >= self.max_tasks {
            state.make_room(now);
            if state.tasks.len() >= self.max_tasks {
                return Box::pin(std::future::ready(Err(StoreError::Full)));
            }
        }
        if let Some(key) = &key {
            state.keys.insert(key.clone(), task.id);
        }
        let record = TaskRecord {
            id: task.id,
            state: TaskState::Pending,
            created_at: wall,
            finished_at: None,
            error: None,
            error_type: None,
            owner: task.owner,
            fingerprint: task.fingerprint,
            foreground_until: wall.checked_add(task.foreground),
            result: None,
        };
        let entry = Entry {
            record,
            key,
            ttl: task.ttl,
            until: later(now, task.lease),
            size: 0,
        };
        state.tasks.insert(task.id, entry);
        Box::pin(std::future::ready(Ok(Created::New)))
    }

    fn renew(&self, id: TaskId, lease: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        let now = Instant::now();
        let mut state = self.lock();
        let renewed = match state.live(id, now) {
            Some(entry) if entry.record.state == TaskState::Pending => {
                entry.until = later(now, lease);
                true
            }
            _ => false,
        };
        Box::pin(std::future::ready(Ok(renewed)))
    }

    fn finish(&self, id: TaskId, outcome: TaskOutcome) -> BoxFuture<'_, Result<bool, StoreError>> {
        let now = Instant::now();
        let mut state = self.lock();
        let pending = state
            .live(id, now)
            .is_some_and(|entry| entry.record.state == TaskState::Pending);
        if !pending {
            return Box::pin(std::future::ready(Ok(false)));
        }
        match outcome {
            TaskOutcome::Succeeded(response) => {
                let size = response.size();
                if state.bytes + size > self.max_bytes {
                    state.make_room(now);
                }
                if state.bytes + size > self.max_bytes {
                    let failure = (Some(reason::NO_ROOM.to_owned()), None);
                    state.terminate(id, TaskState::Failed, failure, now);
                } else {
                    state.bytes += size;
                    let entry = state.tasks.get_mut(&id).expect("live above");
                    entry.size = size;
                    entry.record.result = Some(Box::new(response));
                    state.terminate(id, TaskState::Succeeded, (None, None), now);
                }
            }
            TaskOutcome::Failed { reason, error_type } => {
                let failure = (Some(reason.into_owned()), error_type.map(Cow::into_owned));
                state.terminate(id, TaskState::Failed, failure, now);
            }
        }
        Box::pin(std::future::ready(Ok(true)))
    }

    fn get(&self, id: TaskId) -> BoxFuture<'_, Result<Option<TaskRecord>, StoreError>> {
        let record = self
            .lock()
            .live(id, Instant::now())
            .map(|entry| entry.record.clone());
        Box::pin(std::future::ready(Ok(record)))
    }

    fn cancel(&self, id: TaskId) -> BoxFuture<'_, Result<CancelResult, StoreError>> {
        let now = Instant::now();
        let mut state = self.lock();
        let result = match state.live(id, now).map(|entry| entry.record.state) {
            None => CancelResult::NotFound,
            Some(TaskState::Pending) => {
                let failure = (Some(reason::CANCELLED.to_owned()), None);
                state.terminate(id, TaskState::Cancelled, failure, now);
                CancelResult::Cancelled
            }
            Some(finished) => CancelResult::Finished(finished),
        };
        Box::pin(std::future::ready(Ok(result)))
    }
}
