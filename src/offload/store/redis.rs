use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::encoding::{decode_headers, encode_headers, from_epoch_millis, millis};
use super::{
    BoxFuture, CancelResult, Created, NewTask, StoreError, StoredResponse, TaskOutcome, TaskRecord,
    TaskState, TaskStore,
};
use crate::offload::id::scope_tag;
use crate::offload::{reason, TaskId};

/// A [`TaskStore`] in Redis, shared by every process and Lambda instance that uses it: a
/// poll may land on a process other than the one that created the task.
///
/// It uses the `redis` crate's [`ConnectionManager`]: one multiplexed connection that
/// reconnects by itself after a failure, so a Redis restart needs no restart of the service
/// (`fred` would do too; `redis` is the more widely used client, and its manager is all a
/// store of a few commands a request needs).
///
/// Every transition is one Lua script, so it is atomic: a pending task becomes succeeded,
/// failed or cancelled exactly once, and a cancel racing a completion has one winner.
/// Leases are counted in Redis server time, so the clocks of the processes do not matter.
/// Terminal records expire by Redis expiry, set at completion; a pending record expires
/// after its lease and TTL, so nothing stays forever.
///
/// ```no_run
/// use tower_serverless::offload::{OffloadLayer, RedisStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.key_prefix("my-app:");
/// let offload = OffloadLayer::new(store);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: Arc<str>,
    max_result_bytes: usize,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("max_result_bytes", &self.max_result_bytes)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`), with commands and connection attempts
    /// bounded to 1 s so that an unreachable Redis fails requests over to the foreground
    /// quickly.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or Redis cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(Self::new(connection))
    }

    /// A store on a connection manager you configured.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: Arc::from("tower-serverless:"),
            max_result_bytes: 6 << 20,
        }
    }

    /// The prefix of every key it writes (default `tower-serverless:`).
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// The largest result it writes (default 6 MiB): a larger one is stored as a failure,
    /// checked before anything is sent.
    pub fn max_result_bytes(mut self, max: usize) -> Self {
        self.max_result_bytes = max;
        self
    }

    /// `<prefix>{<tag>}task:<id>`: the hash tag is the id's partition, shared by its
    /// idempotency key, so every script touches one Redis Cluster hash slot.
    fn task_key(&self, id: TaskId) -> String {
        let [a, b] = id.tag();
        format!("{}{{{a:02x}{b:02x}}}task:{id}", self.prefix)
    }

    /// `<prefix>{<tag>}idem:<owner length>:<owner>:<key>`, in the slot of the tasks that
    /// [`TaskId::random_for`] makes for this scope. The owner's length keeps `a:b` + `c`
    /// apart from `a` + `b:c`; `-` stands for no owner.
    fn idempotency_key(&self, owner: &Option<String>, key: &str) -> String {
        let [a, b] = scope_tag(owner.as_deref(), key);
        match owner {
            None => format!("{}{{{a:02x}{b:02x}}}idem:-:{key}", self.prefix),
            Some(owner) => format!(
                "{}{{{a:02x}{b:02x}}}idem:{}:{owner}:{key}",
                self.prefix,
                owner.len()
            ),
        }
    }

    /// Runs a script on task `id` (and, for a keyed task, its idempotency key, which the
    /// script names when it was not given: a second call then declares it). Every key a
    /// script touches is in `KEYS`, as Redis Cluster asks.
    async fn on_task<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        id: TaskId,
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let task = self.task_key(id);
        let mut idem: Option<Vec<u8>> = None;
        loop {
            let mut invocation = script.key(&task);
            if let Some(idem) = &idem {
                invocation.key(idem.as_slice());
            }
            for arg in args {
                invocation.arg(*arg);
            }
            let value: redis::Value = invocation
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
            if let redis::Value::Array(items) = &value {
                if let [redis::Value::SimpleString(marker), redis::Value::BulkString(name)] =
                    items.as_slice()
                {
                    if marker == "needs-key" && idem.is_none() {
                        idem = Some(name.clone());
                        continue;
                    }
                }
            }
            return redis::from_redis_value(value).map_err(|error| unavailable(error.into()));
        }
    }
}

/// Shared by every script: server time, the lapse of a pending task's lease, and the check
/// that a keyed task's idempotency key was declared.
///
/// Both keys of a task expire together (lease + TTL while pending, TTL from the end once
/// terminal), so an idempotency key exists exactly as long as its task. The lapse of a
/// lease changes the state, not the expiry.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function settle(key, now, lost)
  local state = redis.call('HGET', key, 'state')
  if state == 'pending' then
    local lease = tonumber(redis.call('HGET', key, 'lease'))
    if now >= lease then
      redis.call('HSET', key, 'state', 'failed', 'error', lost, 'finished', lease)
      return 'failed'
    end
  end
  return state
end
local function undeclared()
  local idem = redis.call('HGET', KEYS[1], 'idem')
  if idem and idem ~= KEYS[2] then return {{ok = 'needs-key'}, idem} end
  return nil
end
local function expire(ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
  if KEYS[2] then redis.call('PEXPIRE', KEYS[2], ttl) end
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

// KEYS: task[, idempotency key]. ARGV: id, owner ('' when has_owner is '0'), has_owner,
// lease ms, ttl ms, fingerprint or '', foreground ms. Returns the existing task's id for a
// known key, else ''.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = now_ms()
local lease, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if KEYS[2] then
  local existing = redis.call('GET', KEYS[2])
  if existing then return existing end
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'created', now, 'lease', now + lease, 'ttl', ttl)
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'owner', ARGV[2]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'fingerprint', ARGV[6]) end
redis.call('HSET', KEYS[1], 'foreground', now + tonumber(ARGV[7]))
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('HSET', KEYS[1], 'idem', KEYS[2])
end
expire(lease + ttl)
return ''
",
    )
});

// KEYS: task[, idempotency key]. ARGV: lease ms, worker-lost reason.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local missing = undeclared()
if missing then return missing end
local now = now_ms()
if settle(KEYS[1], now, ARGV[2]) ~= 'pending' then return 0 end
local lease, ttl = tonumber(ARGV[1]), tonumber(redis.call('HGET', KEYS[1], 'ttl'))
redis.call('HSET', KEYS[1], 'lease', now + lease)
expire(lease + ttl)
return 1
",
    )
});

// KEYS: task[, idempotency key]. ARGV: worker-lost reason, state, error, error type,
// has_result, status, headers, body.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local missing = undeclared()
if missing then return missing end
local now = now_ms()
if settle(KEYS[1], now, ARGV[1]) ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished', now)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error_type', ARGV[4]) end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'status', ARGV[6], 'headers', ARGV[7], 'body', ARGV[8])
end
expire(tonumber(redis.call('HGET', KEYS[1], 'ttl')))
return 1
",
    )
});

// KEYS: task[, idempotency key]. ARGV: worker-lost reason, cancelled reason.
static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local missing = undeclared()
if missing then return missing end
local now = now_ms()
local state = settle(KEYS[1], now, ARGV[1])
if not state then return '+notfound' end
if state ~= 'pending' then return state end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'error', ARGV[2], 'finished', now)
expire(tonumber(redis.call('HGET', KEYS[1], 'ttl')))
return '+cancelled'
",
    )
});

// KEYS: task. ARGV: worker-lost reason. The whole record.
static GET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if not settle(KEYS[1], now_ms(), ARGV[1]) then return false end
return redis.call('HGETALL', KEYS[1])
",
    )
});

// KEYS: task. ARGV: worker-lost reason. The record without the stored response.
static STATUS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if not settle(KEYS[1], now_ms(), ARGV[1]) then return false end
local names = {'state', 'created', 'finished', 'error', 'error_type', 'owner', 'fingerprint', 'foreground'}
local values = redis.call('HMGET', KEYS[1], unpack(names))
local fields = {}
for i, name in ipairs(names) do
  if values[i] then
    fields[#fields + 1] = name
    fields[#fields + 1] = values[i]
  end
end
return fields
",
    )
});

fn epoch(ms: &[u8]) -> Option<SystemTime> {
    let ms: u64 = std::str::from_utf8(ms).ok()?.parse().ok()?;
    Some(from_epoch_millis(ms))
}

/// A record from its hash fields; the stored response only when `with_result` (the status
/// script does not fetch it).
fn record(
    id: TaskId,
    mut fields: HashMap<String, Vec<u8>>,
    with_result: bool,
) -> Result<TaskRecord, StoreError> {
    let corrupt = || StoreError::Unavailable(format!("task {id} has a malformed record").into());
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).ok();
    let state = fields
        .remove("state")
        .and_then(text)
        .and_then(|s| TaskState::from_name(&s))
        .ok_or_else(corrupt)?;
    let result = if with_result && state == TaskState::Succeeded {
        let status = fields
            .remove("status")
            .and_then(text)
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(corrupt)?;
        let headers =
            decode_headers(&fields.remove("headers").unwrap_or_default()).ok_or_else(corrupt)?;
        let body = Bytes::from(fields.remove("body").unwrap_or_default());
        Some(Box::new(StoredResponse {
            status,
            headers,
            body,
        }))
    } else {
        None
    };
    Ok(TaskRecord {
        id,
        state,
        created_at: fields
            .get("created")
            .and_then(|ms| epoch(ms))
            .ok_or_else(corrupt)?,
        finished_at: fields.get("finished").and_then(|ms| epoch(ms)),
        error: fields.remove("error").and_then(text),
        error_type: fields.remove("error_type").and_then(text),
        owner: fields.remove("owner").and_then(text),
        fingerprint: fields.remove("fingerprint").and_then(text),
        foreground_until: fields.get("foreground").and_then(|ms| epoch(ms)),
        result,
    })
}

const LOST: &[u8] = reason::WORKER_LOST.as_bytes();

impl RedisStore {
    async fn read(&self, id: TaskId, with_result: bool) -> Result<Option<TaskRecord>, StoreError> {
        let script = if with_result { &*GET } else { &*STATUS };
        let fields: Option<HashMap<String, Vec<u8>>> = script
            .key(self.task_key(id))
            .arg(LOST)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        fields
            .map(|fields| record(id, fields, with_result))
            .transpose()
    }
}

impl TaskStore for RedisStore {
    fn create(&self, task: NewTask) -> BoxFuture<'_, Result<Created, StoreError>> {
        Box::pin(async move {
            let mut invocation = CREATE.key(self.task_key(task.id));
            if let Some(key) = task.idempotency_key.as_deref() {
                if task.id.tag() != scope_tag(task.owner.as_deref(), key) {
                    return Err(StoreError::Unavailable(
                        "a task with an idempotency key needs an id from TaskId::random_for".into(),
                    ));
                }
                invocation.key(self.idempotency_key(&task.owner, key));
            }
            let existing: String = invocation
                .arg(task.id.to_string())
                .arg(task.owner.as_deref().unwrap_or_default())
                .arg(if task.owner.is_some() { "1" } else { "0" })
                .arg(millis(task.lease))
                .arg(millis(task.ttl))
                .arg(task.fingerprint.as_deref().unwrap_or_default())
                .arg(millis(task.foreground))
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
            if existing.is_empty() {
                return Ok(Created::New);
            }
            let existing = existing.parse().map_err(|_| {
                StoreError::Unavailable(format!("idempotency key maps to {existing:?}").into())
            })?;
            Ok(Created::Existing(existing))
        })
    }

    fn renew(&self, id: TaskId, lease: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let lease = millis(lease).to_string();
            let renewed: i64 = self.on_task(&RENEW, id, &[lease.as_bytes(), LOST]).await?;
            Ok(renewed == 1)
        })
    }

    fn finish(&self, id: TaskId, outcome: TaskOutcome) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let (status, headers);
            let args: [&[u8]; 8] = match &outcome {
                TaskOutcome::Succeeded(response) if response.size() <= self.max_result_bytes => {
                    status = response.status.as_u16().to_string();
                    headers = encode_headers(&response.headers);
                    [
                        LOST,
                        b"succeeded",
                        b"",
                        b"",
                        b"1",
                        status.as_bytes(),
                        &headers,
                        &response.body,
                    ]
                }
                TaskOutcome::Succeeded(_) => [
                    LOST,
                    b"failed",
                    reason::NO_ROOM.as_bytes(),
                    b"",
                    b"0",
                    b"",
                    b"",
                    b"",
                ],
                TaskOutcome::Failed { reason, error_type } => [
                    LOST,
                    b"failed",
                    reason.as_bytes(),
                    error_type.as_deref().unwrap_or_default().as_bytes(),
                    b"0",
                    b"",
                    b"",
                    b"",
                ],
            };
            let finished: i64 = self.on_task(&FINISH, id, &args).await?;
            Ok(finished == 1)
        })
    }

    fn get(&self, id: TaskId) -> BoxFuture<'_, Result<Option<TaskRecord>, StoreError>> {
        Box::pin(self.read(id, true))
    }

    fn status(&self, id: TaskId) -> BoxFuture<'_, Result<Option<TaskRecord>, StoreError>> {
        Box::pin(self.read(id, false))
    }

    fn cancel(&self, id: TaskId) -> BoxFuture<'_, Result<CancelResult, StoreError>> {
        Box::pin(async move {
            let result: String = self
                .on_task(&CANCEL, id, &[LOST, reason::CANCELLED.as_bytes()])
                .await?;
            Ok(match result.as_str() {
                // A state name says the task had already finished; `+` marks what this call did.
                "+cancelled" => CancelResult::Cancelled,
                "+notfound" => CancelResult::NotFound,
                other => CancelResult::Finished(TaskState::from_name(other).ok_or_else(|| {
                    StoreError::Unavailable(format!("task {id} has state {other:?}").into())
                })?),
            })
        })
    }
}
