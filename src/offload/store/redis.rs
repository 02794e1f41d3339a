use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{
    BoxFuture, CancelResult, Created, NewTask, StoreError, StoredResponse, TaskOutcome, TaskRecord,
    TaskState, TaskStore,
};
use crate::offload::TaskId;

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

    fn task_key(&self, id: TaskId) -> String {
        format!("{}task:{id}", self.prefix)
    }

    fn idempotency_key(&self, owner: &Option<String>, key: &str) -> String {
        // The owner's length keeps `a:b` + `c` apart from `a` + `b:c`.
        match owner {
            None => format!("{}idem:-:{key}", self.prefix),
            Some(owner) => format!("{}idem:{}:{owner}:{key}", self.prefix, owner.len()),
        }
    }
}

/// Shared by every script: server time, and the lapse of a pending task's lease.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function expire(key, ttl)
  redis.call('PEXPIRE', key, ttl)
  local idem = redis.call('HGET', key, 'idem')
  if idem then redis.call('PEXPIRE', idem, ttl) end
end
local function settle(key, now)
  local state = redis.call('HGET', key, 'state')
  if state == 'pending' then
    local lease = tonumber(redis.call('HGET', key, 'lease'))
    if now >= lease then
      redis.call('HSET', key, 'state', 'failed', 'error', 'worker lost', 'finished', lease)
      expire(key, tonumber(redis.call('HGET', key, 'ttl')))
      return 'failed'
    end
  end
  return state
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

// KEYS: task, idempotency key or ''. ARGV: id, owner ('' when has_owner is '0'), has_owner,
// lease ms, ttl ms, task key prefix.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = now_ms()
local lease, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing and settle(ARGV[6] .. existing, now) then return existing end
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'created', now, 'lease', now + lease, 'ttl', ttl)
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'owner', ARGV[2]) end
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', lease + ttl)
  redis.call('HSET', KEYS[1], 'idem', KEYS[2])
end
redis.call('PEXPIRE', KEYS[1], lease + ttl)
return ''
",
    )
});

// KEYS: task. ARGV: lease ms.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = now_ms()
if settle(KEYS[1], now) ~= 'pending' then return 0 end
local lease, ttl = tonumber(ARGV[1]), tonumber(redis.call('HGET', KEYS[1], 'ttl'))
redis.call('HSET', KEYS[1], 'lease', now + lease)
expire(KEYS[1], lease + ttl)
return 1
",
    )
});

// KEYS: task. ARGV: state, error, has_result, status, headers, body.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = now_ms()
if settle(KEYS[1], now) ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished', now)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[2]) end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'status', ARGV[4], 'headers', ARGV[5], 'body', ARGV[6])
end
expire(KEYS[1], tonumber(redis.call('HGET', KEYS[1], 'ttl')))
return 1
",
    )
});

// KEYS: task.
static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = now_ms()
local state = settle(KEYS[1], now)
if not state then return '+notfound' end
if state ~= 'pending' then return state end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'error', 'cancelled by the client', 'finished', now)
expire(KEYS[1], tonumber(redis.call('HGET', KEYS[1], 'ttl')))
return '+cancelled'
",
    )
});

// KEYS: task.
static GET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if not settle(KEYS[1], now_ms()) then return false end
return redis.call('HGETALL', KEYS[1])
",
    )
});

/// Headers as `name NUL value LF` lines: neither byte may appear in a name or a value.
fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

fn decode_headers(bytes: &[u8]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    for line in bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
        let split = line.iter().position(|b| *b == 0)?;
        let name = HeaderName::from_bytes(&line[..split]).ok()?;
        let value = HeaderValue::from_bytes(&line[split + 1..]).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

fn epoch(ms: &[u8]) -> Option<SystemTime> {
    let ms: u64 = std::str::from_utf8(ms).ok()?.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn record(id: TaskId, mut fields: HashMap<String, Vec<u8>>) -> Result<TaskRecord, StoreError> {
    let corrupt = || StoreError::Unavailable(format!("task {id} has a malformed record").into());
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).ok();
    let state = fields
        .remove("state")
        .and_then(text)
        .and_then(|s| TaskState::from_name(&s))
        .ok_or_else(corrupt)?;
    let result = if state == TaskState::Succeeded {
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
        owner: fields.remove("owner").and_then(text),
        result,
    })
}

impl TaskStore for RedisStore {
    fn create(&self, task: NewTask) -> BoxFuture<'_, Result<Created, StoreError>> {
        Box::pin(async move {
            let idempotency = task
                .idempotency_key
                .as_deref()
                .map(|key| self.idempotency_key(&task.owner, key))
                .unwrap_or_default();
            let existing: String = CREATE
                .key(self.task_key(task.id))
                .key(idempotency)
                .arg(task.id.to_string())
                .arg(task.owner.as_deref().unwrap_or_default())
                .arg(if task.owner.is_some() { "1" } else { "0" })
                .arg(millis(task.lease))
                .arg(millis(task.ttl))
                .arg(format!("{}task:", self.prefix))
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
            let renewed: i64 = RENEW
                .key(self.task_key(id))
                .arg(millis(lease))
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
            Ok(renewed == 1)
        })
    }

    fn finish(&self, id: TaskId, outcome: TaskOutcome) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut invocation = FINISH.key(self.task_key(id));
            match &outcome {
                TaskOutcome::Succeeded(response) if response.size() <= self.max_result_bytes => {
                    invocation
                        .arg("succeeded")
                        .arg("")
                        .arg("1")
                        .arg(response.status.as_u16())
                        .arg(encode_headers(&response.headers))
                        .arg(response.body.as_ref());
                }
                TaskOutcome::Succeeded(_) => {
                    invocation
                        .arg("failed")
                        .arg("the result did not fit in the task store")
                        .arg("0");
                }
                TaskOutcome::Failed(error) => {
                    invocation.arg("failed").arg(error.as_str()).arg("0");
                }
            }
            let finished: i64 = invocation
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
            Ok(finished == 1)
        })
    }

    fn get(&self, id: TaskId) -> BoxFuture<'_, Result<Option<TaskRecord>, StoreError>> {
        Box::pin(async move {
            let fields: Option<HashMap<String, Vec<u8>>> = GET
                .key(self.task_key(id))
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
            fields.map(|fields| record(id, fields)).transpose()
        })
    }

    fn cancel(&self, id: TaskId) -> BoxFuture<'_, Result<CancelResult, StoreError>> {
        Box::pin(async move {
            let result: String = CANCEL
                .key(self.task_key(id))
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("two words\tand tab"));
        headers.append("set-cookie", HeaderValue::from_bytes(b"v=\xff").unwrap());
        assert_eq!(decode_headers(&encode_headers(&headers)), Some(headers));
        assert_eq!(decode_headers(b"no-separator\n"), None);
        assert_eq!(decode_headers(b""), Some(HeaderMap::new()));
    }
}
