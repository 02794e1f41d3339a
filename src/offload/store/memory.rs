use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{
    BoxFuture, CancelResult, Created, NewTask, StoreError, TaskOutcome, TaskRecord, TaskState,
    TaskStore, WORKER_LOST,
};
use crate::offload::TaskId;

/// A bounded in-process [`TaskStore`]: for one process (one Lambda instance, one container).
///
/// Bounded by the number of tasks and the bytes of stored results. To make room it drops
/// expired records first, then the oldest finished ones; when it is full of pending tasks it
/// refuses new ones ([`StoreError::Full`]) and the request is answered in the foreground.
///
/// ```
/// use tower_serverless::offload::MemoryStore;
///
/// let store = MemoryStore::new().max_tasks(1_000).max_bytes(64 << 20);
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
    tasks: HashMap<TaskId, Entry>,
    keys: HashMap<IdempotencyKey, TaskId>,
    /// Terminal tasks in the order they finished, with their expiry: the eviction order.
    finished: VecDeque<(Instant, TaskId)>,
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
    pub fn max_tasks(mut self, max: usize) -> Self {
        self.max_tasks = max;
        self
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
            if let Some(key) = entry.key {
                self.keys.remove(&key);
            }
        }
    }

    /// Drops the oldest finished task (expired or not); `false` when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((until, id)) = self.finished.pop_front() {
            // Entries of tasks already removed, or re-finished, are stale: skip them.
            if self
                .tasks
                .get(&id)
                .is_some_and(|entry| entry.until == until)
            {
                self.remove(id);
                return true;
            }
        }
        false
    }

    fn purge_expired(&mut self, now: Instant) {
        while self
            .finished
            .front()
            .is_some_and(|(until, _)| *until <= now)
        {
            let (until, id) = self.finished.pop_front().expect("checked above");
            if self
                .tasks
                .get(&id)
                .is_some_and(|entry| entry.until == until)
            {
                self.remove(id);
            }
        }
    }

    /// Moves a pending entry to its terminal state.
    fn terminate(&mut self, id: TaskId, state: TaskState, error: Option<String>, at: Instant) {
        let Some(entry) = self.tasks.get_mut(&id) else {
            return;
        };
        entry.record.state = state;
        entry.record.error = error;
        entry.record.finished_at = Some(SystemTime::now());
        entry.until = at + entry.ttl;
        self.finished.push_back((entry.until, id));
    }

    /// The live entry of `id`: expired records are removed, lapsed leases become failures.
    fn live(&mut self, id: TaskId, now: Instant) -> Option<&mut Entry> {
        let entry = self.tasks.get(&id)?;
        match entry.record.state {
            TaskState::Pending if entry.until <= now => {
                let lapsed = entry.until;
                self.terminate(id, TaskState::Failed, Some(WORKER_LOST.to_owned()), lapsed);
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

impl TaskStore for MemoryStore {
    fn create(&self, task: NewTask) -> BoxFuture<'_, Result<Created, StoreError>> {
        let now = Instant::now();
        let mut state = self.lock();
        state.purge_expired(now);
        let key = task.idempotency_key.map(|key| (task.owner.clone(), key));
        if let Some(existing) = key.as_ref().and_then(|key| state.keys.get(key).copied()) {
            if state.live(existing, now).is_some() {
                return Box::pin(std::future::ready(Ok(Created::Existing(existing))));
            }
        }
        while state.tasks.len() >= self.max_tasks {
            if !state.evict_oldest() {
                return Box::pin(std::future::ready(Err(StoreError::Full)));
            }
        }
        if let Some(key) = &key {
            state.keys.insert(key.clone(), task.id);
        }
        let record = TaskRecord {
            id: task.id,
            state: TaskState::Pending,
            created_at: SystemTime::now(),
            finished_at: None,
            error: None,
            owner: task.owner,
            result: None,
        };
        let entry = Entry {
            record,
            key,
            ttl: task.ttl,
            until: now + task.lease,
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
                entry.until = now + lease;
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
                // A result that cannot fit even in an empty store evicts nothing.
                while size <= self.max_bytes
                    && state.bytes + size > self.max_bytes
                    && state.evict_oldest()
                {}
                if state.bytes + size > self.max_bytes {
                    let error = "the result did not fit in the task store".to_owned();
                    state.terminate(id, TaskState::Failed, Some(error), now);
                } else {
                    state.bytes += size;
                    let entry = state.tasks.get_mut(&id).expect("live above");
                    entry.size = size;
                    entry.record.result = Some(Box::new(response));
                    state.terminate(id, TaskState::Succeeded, None, now);
                }
            }
            TaskOutcome::Failed(error) => state.terminate(id, TaskState::Failed, Some(error), now),
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
                let error = "cancelled by the client".to_owned();
                state.terminate(id, TaskState::Cancelled, Some(error), now);
                CancelResult::Cancelled
            }
            Some(finished) => CancelResult::Finished(finished),
        };
        Box::pin(std::future::ready(Ok(result)))
    }
}
