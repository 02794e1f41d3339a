use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use bytes::Bytes;
use http::StatusCode;

use super::encoding::{decode_headers, encode_headers, epoch_millis, from_epoch_millis, millis};
use super::{
    BoxFuture, CancelResult, Created, NewTask, StoreError, StoredResponse, TaskOutcome, TaskRecord,
    TaskState, TaskStore,
};
use crate::offload::{reason, ConfigError, TaskId};

type Item = HashMap<String, AttributeValue>;

/// The most a DynamoDB item may hold: 400 KB, counting attribute names and values.
const ITEM_LIMIT: usize = 400 * 1024;

/// A [`TaskStore`] in a DynamoDB table: shared by every Lambda environment and process that
/// uses the table, with no server or VPC to run, and access scoped by IAM.
///
/// # The table
///
/// One string partition key named `pk`, no sort key, and DynamoDB's time to live on the
/// number attribute `expires_at` (epoch seconds). Several services can share a table with
/// different [`key_prefix`](Self::key_prefix)es. With the AWS CLI:
///
/// ```text
/// aws dynamodb create-table --table-name tasks \
///     --attribute-definitions AttributeName=pk,AttributeType=S \
///     --key-schema AttributeName=pk,KeyType=HASH \
///     --billing-mode PAY_PER_REQUEST
/// aws dynamodb update-time-to-live --table-name tasks \
///     --time-to-live-specification Enabled=true,AttributeName=expires_at
/// ```
///
/// or in a SAM / CloudFormation template:
///
/// ```yaml
/// TasksTable:
///   Type: AWS::DynamoDB::Table
///   Properties:
///     BillingMode: PAY_PER_REQUEST
///     AttributeDefinitions: [{ AttributeName: pk, AttributeType: S }]
///     KeySchema: [{ AttributeName: pk, KeyType: HASH }]
///     TimeToLiveSpecification: { AttributeName: expires_at, Enabled: true }
/// ```
///
/// The store needs `dynamodb:GetItem`, `dynamodb:PutItem` and `dynamodb:UpdateItem` on the
/// table (`TransactWriteItems` is authorised through the actions of its parts);
/// [`create_table`](Self::create_table), for local development, also needs
/// `dynamodb:CreateTable` and `dynamodb:UpdateTimeToLive`. The store never creates a table
/// by itself.
///
/// # How it keeps tasks
///
/// - A task is one item, `<prefix>task#<id>`. An `Idempotency-Key` is a second item,
///   `<prefix>idem#<owner length>:<owner>:<key>`, that names its task; both are written by
///   one `TransactWriteItems`, each only if absent, so one key gives one task whatever
///   processes race for it.
/// - Every transition is one conditional write: finish, fail and cancel only from
///   `pending` with a live lease, renewal likewise (a keyed task's renewal extends its key
///   in the same transaction). A cancel racing a completion has one winner.
/// - Expiry: every item carries `expires_at` for DynamoDB's time to live, and every read
///   treats an item past its expiry as absent, since the deletion can lag by up to 48
///   hours. A key whose task has expired is taken over by the next request with it.
/// - Leases run on the clock of the process that writes them: a task whose worker stopped
///   renewing reads as failed ("worker lost") once its lease has passed on the reader's
///   clock. Clocks may differ by up to a third of the lease (20 s for the default 60 s
///   lease, the worker renews every third) without a live task reading as lost; Lambda's
///   and EC2's clocks are synchronised far closer.
///
/// # Size
///
/// An item holds at most 400 KB, so a result of more than
/// [`MAX_RESULT_BYTES`](Self::MAX_RESULT_BYTES) (392 KiB: status, headers plus two bytes
/// each, and body) fails its task with [`reason::NO_ROOM`] before anything is written;
/// the rest of the item is left for its other attributes. A result that fits that limit
/// but not the item (a very long owner) is caught by DynamoDB, which rejects the whole
/// write; the task then fails the same way. Set
/// [`OffloadLayer::max_result_bytes`](crate::offload::OffloadLayer::max_result_bytes) to
/// the same figure to stop reading such bodies early.
///
/// # Failures
///
/// Throttling, network errors, timeouts and a missing table are
/// [`StoreError::Unavailable`]s that name the cause (and never reach clients): slow
/// requests are then answered in the foreground, status reads get `503`, and completions
/// are retried. A client without timeouts of its own gets 1 s per attempt and 3 s per
/// operation, so that an unreachable DynamoDB fails over to the foreground quickly.
///
/// # Example
///
/// ```no_run
/// use tower_serverless::offload::{DynamoDbStore, OffloadLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// # let config = aws_sdk_dynamodb::Config::builder().build();
/// let client = aws_sdk_dynamodb::Client::from_conf(config.into());
/// let store = DynamoDbStore::new(client, "tasks").key_prefix("orders:");
/// let offload = OffloadLayer::new(store).max_result_bytes(DynamoDbStore::MAX_RESULT_BYTES);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: Arc<str>,
    prefix: Arc<str>,
    max_result_bytes: usize,
}

impl fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbStore")
            .field("table", &self.table)
            .field("prefix", &self.prefix)
            .field("max_result_bytes", &self.max_result_bytes)
            .finish_non_exhaustive()
    }
}

impl DynamoDbStore {
    /// The largest result it stores: 392 KiB, the item's 400 KB less room for the task's
    /// other attributes.
    pub const MAX_RESULT_BYTES: usize = ITEM_LIMIT - 8 * 1024;

    /// A store in `table`, through `client`. A client configured without timeouts gets
    /// 1 s per attempt and 3 s per operation.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let config = client.config();
        let client = match config.timeout_config() {
            Some(timeouts)
                if timeouts.operation_timeout().is_some()
                    || timeouts.operation_attempt_timeout().is_some() =>
            {
                client
            }
            timeouts => {
                let mut builder =
                    timeouts.map_or_else(TimeoutConfig::builder, |timeouts| timeouts.to_builder());
                builder = builder
                    .operation_attempt_timeout(Duration::from_secs(1))
                    .operation_timeout(Duration::from_secs(3));
                Client::from_conf(config.to_builder().timeout_config(builder.build()).build())
            }
        };
        Self {
            client,
            table: Arc::from(table.into()),
            prefix: Arc::from("tower-serverless:"),
            max_result_bytes: Self::MAX_RESULT_BYTES,
        }
    }

    /// The prefix of every key it writes (default `tower-serverless:`).
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// The largest result it writes (default and most
    /// [`MAX_RESULT_BYTES`](Self::MAX_RESULT_BYTES)): a larger one is stored as a failure,
    /// checked before anything is sent.
    ///
    /// # Errors
    ///
    /// When `max` is above [`MAX_RESULT_BYTES`](Self::MAX_RESULT_BYTES), which no item
    /// could hold.
    pub fn max_result_bytes(mut self, max: usize) -> Result<Self, ConfigError> {
        if max > Self::MAX_RESULT_BYTES {
            return Err(ConfigError(
                "DynamoDbStore::max_result_bytes is above what a DynamoDB item holds (MAX_RESULT_BYTES)",
            ));
        }
        self.max_result_bytes = max;
        Ok(self)
    }

    /// Creates the table, with its key and time to live, when it does not exist; for local
    /// development and tests (DynamoDB Local). Production tables belong in your
    /// infrastructure code: see [the table](Self#the-table).
    ///
    /// # Errors
    ///
    /// When DynamoDB cannot be reached or refuses.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let created = self
            .client
            .create_table()
            .table_name(&*self.table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(PK)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|error| self.failed("describe the table", error))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(PK)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|error| self.failed("describe the table", error))?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(error) if error.code() == Some("ResourceInUseException") => return Ok(()),
            Err(error) => return Err(self.unavailable("create the table", error)),
        }
        self.client
            .update_time_to_live()
            .table_name(&*self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(EXPIRES_AT)
                    .build()
                    .map_err(|error| self.failed("describe the time to live", error))?,
            )
            .send()
            .await
            .map_err(|error| self.unavailable("enable the time to live", error))?;
        Ok(())
    }

    fn task_key(&self, id: TaskId) -> AttributeValue {
        AttributeValue::S(format!("{}task#{id}", self.prefix))
    }

    /// The owner's length keeps `a:b` + `c` apart from `a` + `b:c`; `-` stands for no owner.
    fn idempotency_key(&self, owner: Option<&str>, key: &str) -> AttributeValue {
        AttributeValue::S(match owner {
            None => format!("{}idem#-:{key}", self.prefix),
            Some(owner) => format!("{}idem#{}:{owner}:{key}", self.prefix, owner.len()),
        })
    }

    /// A store error that names the table, what was being done and why it failed.
    fn unavailable<E, R>(&self, doing: &str, error: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let table = &self.table;
        let cause = match (&error, error.code()) {
            (_, Some("ResourceNotFoundException")) => {
                format!("the table {table:?} does not exist or is not active")
            }
            (
                _,
                Some(
                    "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded",
                ),
            ) => format!("DynamoDB throttled requests to {table:?}"),
            (_, Some("AccessDeniedException" | "UnrecognizedClientException")) => {
                format!("DynamoDB refused access to {table:?}")
            }
            (SdkError::TimeoutError(_), _) => "DynamoDB did not answer in time".to_owned(),
            (SdkError::DispatchFailure(_), _) => "DynamoDB could not be reached".to_owned(),
            (_, Some(code)) => format!("DynamoDB answered {code}"),
            _ => "the DynamoDB request failed".to_owned(),
        };
        StoreError::Unavailable(
            format!(
                "could not {doing} in DynamoDB: {cause} ({})",
                DisplayErrorContext(&error)
            )
            .into(),
        )
    }

    fn failed(&self, doing: &str, error: impl fmt::Display) -> StoreError {
        StoreError::Unavailable(
            format!(
                "could not {doing} in DynamoDB table {:?}: {error}",
                self.table
            )
            .into(),
        )
    }
}

// Attribute names. Expressions name them as `#name`, since DynamoDB reserves many words
// (`state`, `status`, `ttl`...).
const PK: &str = "pk";
const STATE: &str = "state";
const CREATED: &str = "created";
const LEASE: &str = "lease";
/// How long the record is kept once terminal, in milliseconds and in (rounded up) seconds.
const KEEP: &str = "keep";
const KEEP_S: &str = "keep_s";
/// When the record expires for readers, in milliseconds since the epoch.
const GONE: &str = "gone";
/// The same instant in seconds (rounded up), for DynamoDB's time to live.
const EXPIRES_AT: &str = "expires_at";
const FINISHED: &str = "finished";
const ERROR: &str = "error";
const ERROR_TYPE: &str = "error_type";
const OWNER: &str = "owner";
const FINGERPRINT: &str = "fingerprint";
const FOREGROUND: &str = "foreground";
/// On a task: its idempotency key's item. On a key: its task's id.
const IDEM: &str = "idem";
const TASK: &str = "task";
const STATUS: &str = "status";
const HEADERS: &str = "headers";
const BODY: &str = "body";

/// Every `#name` an expression uses, for `ExpressionAttributeNames` (which must hold no
/// name the expressions leave unused).
fn names(expressions: &[&str]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for expression in expressions {
        for (start, _) in expression.match_indices('#') {
            let name: String = expression[start + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(format!("#{name}"), name);
        }
    }
    names
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn text(s: &str) -> AttributeValue {
    AttributeValue::S(s.to_owned())
}

/// Whole seconds since the epoch, rounded up: the time to live never comes before `ms`.
fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// Whether a `ValidationException`'s message says the item would be too large (DynamoDB
/// gives no code of its own for it). Other validation errors speak of sizes too, a key's or
/// an expression's: those are the store's own faults, not a result that does not fit.
fn refused_for_size(message: &str) -> bool {
    message.starts_with("Item size") && message.contains("exceeded the maximum allowed size")
}

fn now_millis() -> u64 {
    epoch_millis(SystemTime::now())
}

fn read_number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn read_text(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

/// A pending task is live until its lease passes; an item of any state until `gone`.
const LIVE_AND_PENDING: &str = "#state = :pending AND #lease > :now AND #gone > :now";

/// What a live item says of its task: `None` when it has expired (whatever DynamoDB's time
/// to live has done yet); a pending task whose lease has passed reads as failed.
fn record(id: TaskId, mut item: Item, now: u64) -> Result<Option<TaskRecord>, StoreError> {
    let corrupt = || StoreError::Unavailable(format!("task {id} has a malformed record").into());
    if read_number(&item, GONE).ok_or_else(corrupt)? <= now {
        return Ok(None);
    }
    let mut state = read_text(&item, STATE)
        .and_then(|state| TaskState::from_name(&state))
        .ok_or_else(corrupt)?;
    let mut finished = read_number(&item, FINISHED);
    let mut error = read_text(&item, ERROR);
    let lease = read_number(&item, LEASE).ok_or_else(corrupt)?;
    if state == TaskState::Pending && lease <= now {
        state = TaskState::Failed;
        finished = Some(lease);
        error = Some(reason::WORKER_LOST.to_owned());
    }
    let result = match (state, item.remove(STATUS)) {
        (TaskState::Succeeded, Some(status)) => {
            let status = status
                .as_n()
                .ok()
                .and_then(|status| status.parse::<u16>().ok())
                .and_then(|status| StatusCode::from_u16(status).ok())
                .ok_or_else(corrupt)?;
            let bytes = |value: Option<AttributeValue>| match value {
                Some(AttributeValue::B(blob)) => Some(blob.into_inner()),
                None => Some(Vec::new()),
                Some(_) => None,
            };
            let headers = bytes(item.remove(HEADERS))
                .and_then(|headers| decode_headers(&headers))
                .ok_or_else(corrupt)?;
            let body = Bytes::from(bytes(item.remove(BODY)).ok_or_else(corrupt)?);
            Some(Box::new(StoredResponse {
                status,
                headers,
                body,
            }))
        }
        _ => None,
    };
    Ok(Some(TaskRecord {
        id,
        state,
        created_at: from_epoch_millis(read_number(&item, CREATED).ok_or_else(corrupt)?),
        finished_at: finished.map(from_epoch_millis),
        error,
        error_type: read_text(&item, ERROR_TYPE),
        owner: read_text(&item, OWNER),
        fingerprint: read_text(&item, FINGERPRINT),
        foreground_until: read_number(&item, FOREGROUND).map(from_epoch_millis),
        result,
    }))
}

impl DynamoDbStore {
    async fn read(&self, id: TaskId, with_result: bool) -> Result<Option<TaskRecord>, StoreError> {
        let mut request = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key(PK, self.task_key(id))
            .consistent_read(true);
        if !with_result {
            let projection = "#state, #created, #lease, #gone, #finished, #error, #error_type, \
                 #owner, #fingerprint, #foreground";
            request = request
                .projection_expression(projection)
                .set_expression_attribute_names(Some(names(&[projection])));
        }
        let item = request
            .send()
            .await
            .map_err(|error| self.unavailable("read a task", error))?
            .item;
        match item {
            Some(item) => record(id, item, now_millis()),
            None => Ok(None),
        }
    }

    /// The task a key's item names, if it is live: `Ok(Err(stale))` for a key whose task
    /// has expired, which the caller may take over.
    async fn live_task_of(&self, key_item: &Item) -> Result<Result<TaskId, String>, StoreError> {
        let Some(task) = read_text(key_item, TASK) else {
            return Ok(Err(String::new()));
        };
        let Ok(id) = task.parse::<TaskId>() else {
            return Ok(Err(task));
        };
        Ok(match self.read(id, false).await? {
            Some(_) => Ok(id),
            None => Err(task),
        })
    }

    async fn create_keyed(
        &self,
        task: &NewTask,
        key: &str,
        mut item: Item,
    ) -> Result<Created, StoreError> {
        let key_item = self.idempotency_key(task.owner.as_deref(), key);
        item.insert(IDEM.to_owned(), key_item.clone());
        let put_task = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(#pk)")
            .set_expression_attribute_names(Some(names(&["#pk"])))
            .build()
            .map_err(|error| self.failed("describe a task", error))?;
        // A key names its task; it lives at least as long (renewals extend both).
        let mut key_fields: Item = HashMap::from([
            (PK.to_owned(), key_item.clone()),
            (TASK.to_owned(), text(&task.id.to_string())),
        ]);
        key_fields.insert(EXPIRES_AT.to_owned(), item[EXPIRES_AT].clone());
        // A key whose task expired is replaced, only if it still names that task.
        let mut stale: Option<String> = None;
        for _ in 0..4 {
            let (condition, values) = match &stale {
                None => ("attribute_not_exists(#pk)", None),
                Some(old) => (
                    "attribute_not_exists(#pk) OR #task = :stale",
                    Some(HashMap::from([(":stale".to_owned(), text(old))])),
                ),
            };
            let put_key = Put::builder()
                .table_name(&*self.table)
                .set_item(Some(key_fields.clone()))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names(&[condition])))
                .set_expression_attribute_values(values)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|error| self.failed("describe an idempotency key", error))?;
            let written = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_task.clone()).build())
                .transact_items(TransactWriteItem::builder().put(put_key).build())
                .send()
                .await;
            let error = match written {
                Ok(_) => return Ok(Created::New),
                Err(error) => error,
            };
            let reasons = match error.as_service_error() {
                Some(cancelled) if cancelled.is_transaction_canceled_exception() => {
                    match cancelled {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                            cancelled.cancellation_reasons().to_vec()
                        }
                        _ => Vec::new(),
                    }
                }
                _ => return Err(self.unavailable("create a task", error)),
            };
            let code = |index: usize| reasons.get(index).and_then(|reason| reason.code());
            if code(0) == Some("ConditionalCheckFailed") {
                return Err(self.failed("create a task", format!("task {} exists", task.id)));
            }
            match code(1) {
                Some("ConditionalCheckFailed") => {}
                // Another request with the key is writing it now: look again.
                Some("TransactionConflict") => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                _ => return Err(self.unavailable("create a task", error)),
            }
            // DynamoDB returns the key's item with the refusal; a store that does not is
            // asked.
            let existing = match reasons[1].item() {
                Some(existing) => existing.clone(),
                None => {
                    let read = self
                        .client
                        .get_item()
                        .table_name(&*self.table)
                        .key(PK, key_item.clone())
                        .consistent_read(true)
                        .send()
                        .await
                        .map_err(|error| self.unavailable("read an idempotency key", error))?;
                    match read.item {
                        Some(existing) => existing,
                        None => continue,
                    }
                }
            };
            match self.live_task_of(&existing).await? {
                Ok(id) => return Ok(Created::Existing(id)),
                Err(old) => stale = Some(old),
            }
        }
        Err(self.failed(
            "create a task",
            "its idempotency key changed hands four times in a row",
        ))
    }
}

/// What a conditional update did.
enum Updated {
    Done,
    /// The condition failed; the item as it was, if there is one.
    Refused(Option<Item>),
    /// DynamoDB rejected the update as too large for an item.
    TooLarge,
}

impl DynamoDbStore {
    /// One conditional `UpdateItem` on task `id`.
    async fn update(
        &self,
        doing: &str,
        id: TaskId,
        expression: &str,
        condition: &str,
        values: Item,
    ) -> Result<Updated, StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key(PK, self.task_key(id))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(&[expression, condition])))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match updated {
            Ok(_) => Ok(Updated::Done),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(Updated::Refused(refused.item().cloned()))
                }
                Some(rejected)
                    if rejected.code() == Some("ValidationException")
                        && rejected.message().is_some_and(refused_for_size) =>
                {
                    Ok(Updated::TooLarge)
                }
                _ => Err(self.unavailable(doing, error)),
            },
        }
    }

    /// Moves a pending task to a terminal state: `fields` are the attributes to set beside
    /// the state, the end and the expiry (`#name` = `:name` each).
    async fn settle(
        &self,
        doing: &str,
        id: TaskId,
        state: TaskState,
        fields: Vec<(&'static str, AttributeValue)>,
    ) -> Result<Updated, StoreError> {
        let now = now_millis();
        let mut expression = String::from(
            "SET #state = :state, #finished = :now, #gone = #keep + :now, \
             #expires_at = #keep_s + :now_s",
        );
        let mut values = HashMap::from([
            (":state".to_owned(), text(state.as_str())),
            (":pending".to_owned(), text(TaskState::Pending.as_str())),
            (":now".to_owned(), number(now)),
            (":now_s".to_owned(), number(seconds(now))),
        ]);
        for (name, value) in fields {
            expression.push_str(&format!(", #{name} = :{name}"));
            values.insert(format!(":{name}"), value);
        }
        self.update(doing, id, &expression, LIVE_AND_PENDING, values)
            .await
    }

    /// Extends a keyed task's lease and its key's expiry together.
    async fn renew_keyed(
        &self,
        id: TaskId,
        key_item: AttributeValue,
        expression: &str,
        mut values: Item,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let condition = format!("{LIVE_AND_PENDING} AND #idem = :idem");
        values.insert(":idem".to_owned(), key_item.clone());
        let task = Update::builder()
            .table_name(&*self.table)
            .key(PK, self.task_key(id))
            .update_expression(expression)
            .condition_expression(&condition)
            .set_expression_attribute_names(Some(names(&[expression, &condition])))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|error| self.failed("describe a renewal", error))?;
        let key_condition = "#task = :task";
        let key = Update::builder()
            .table_name(&*self.table)
            .key(PK, key_item)
            .update_expression("SET #expires_at = :expires_at")
            .condition_expression(key_condition)
            .set_expression_attribute_names(Some(names(&["#expires_at", key_condition])))
            .set_expression_attribute_values(Some(HashMap::from([
                (":expires_at".to_owned(), number(expires_at)),
                (":task".to_owned(), text(&id.to_string())),
            ])))
            .build()
            .map_err(|error| self.failed("describe a renewal", error))?;
        let renewed = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(task).build())
            .transact_items(TransactWriteItem::builder().update(key).build())
            .send()
            .await;
        match renewed {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|error| error.is_transaction_canceled_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(self.unavailable("renew a task", error)),
        }
    }
}

impl TaskStore for DynamoDbStore {
    fn create(&self, task: NewTask) -> BoxFuture<'_, Result<Created, StoreError>> {
        Box::pin(async move {
            let now = now_millis();
            let (lease, keep) = (millis(task.lease), millis(task.ttl));
            let gone = now + lease + keep;
            let mut item: Item = HashMap::from([
                (PK.to_owned(), self.task_key(task.id)),
                (STATE.to_owned(), text(TaskState::Pending.as_str())),
                (CREATED.to_owned(), number(now)),
                (LEASE.to_owned(), number(now + lease)),
                (KEEP.to_owned(), number(keep)),
                (KEEP_S.to_owned(), number(seconds(keep))),
                (GONE.to_owned(), number(gone)),
                (EXPIRES_AT.to_owned(), number(seconds(gone))),
                (FOREGROUND.to_owned(), number(now + millis(task.foreground))),
            ]);
            if let Some(owner) = &task.owner {
                item.insert(OWNER.to_owned(), text(owner));
            }
            if let Some(fingerprint) = &task.fingerprint {
                item.insert(FINGERPRINT.to_owned(), text(fingerprint));
            }
            if let Some(key) = task.idempotency_key.as_deref() {
                return self.create_keyed(&task, key, item).await;
            }
            let condition = "attribute_not_exists(#pk)";
            let put = self
                .client
                .put_item()
                .table_name(&*self.table)
                .set_item(Some(item))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names(&[condition])))
                .send()
                .await;
            match put {
                Ok(_) => Ok(Created::New),
                Err(error) => match error.as_service_error() {
                    Some(exists) if exists.is_conditional_check_failed_exception() => {
                        Err(self.failed("create a task", format!("task {} exists", task.id)))
                    }
                    _ => Err(self.unavailable("create a task", error)),
                },
            }
        })
    }

    fn renew(&self, id: TaskId, lease: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let now = now_millis();
            let until = now + millis(lease);
            let expression = "SET #lease = :lease, #gone = #keep + :lease, \
                              #expires_at = #keep_s + :lease_s";
            let values = HashMap::from([
                (":pending".to_owned(), text(TaskState::Pending.as_str())),
                (":now".to_owned(), number(now)),
                (":lease".to_owned(), number(until)),
                (":lease_s".to_owned(), number(seconds(until))),
            ]);
            // An unkeyed task renews in one write; a keyed one is refused here, and its
            // item tells its key, which the transaction extends too.
            let condition = format!("{LIVE_AND_PENDING} AND attribute_not_exists(#idem)");
            match self
                .update("renew a task", id, expression, &condition, values.clone())
                .await?
            {
                Updated::Done => Ok(true),
                Updated::Refused(Some(item)) => {
                    let pending = record(id, item.clone(), now)?
                        .is_some_and(|record| record.state == TaskState::Pending);
                    match (pending, item.get(IDEM)) {
                        (true, Some(key_item)) => {
                            let keep_s = read_number(&item, KEEP_S).unwrap_or_default();
                            let expires_at = keep_s + seconds(until);
                            self.renew_keyed(id, key_item.clone(), expression, values, expires_at)
                                .await
                        }
                        _ => Ok(false),
                    }
                }
                Updated::Refused(None) | Updated::TooLarge => Ok(false),
            }
        })
    }

    fn finish(&self, id: TaskId, outcome: TaskOutcome) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let no_room = || vec![(ERROR, text(reason::NO_ROOM))];
            let (state, fields) = match outcome {
                TaskOutcome::Succeeded(response) => {
                    let headers = encode_headers(&response.headers);
                    if headers.len() + response.body.len() > self.max_result_bytes {
                        (TaskState::Failed, no_room())
                    } else {
                        (
                            TaskState::Succeeded,
                            vec![
                                (STATUS, number(response.status.as_u16().into())),
                                (HEADERS, AttributeValue::B(Blob::new(headers))),
                                (BODY, AttributeValue::B(Blob::new(response.body.to_vec()))),
                            ],
                        )
                    }
                }
                TaskOutcome::Failed { reason, error_type } => {
                    let mut fields = vec![(ERROR, text(&reason))];
                    if let Some(error_type) = error_type {
                        fields.push((ERROR_TYPE, text(&error_type)));
                    }
                    (TaskState::Failed, fields)
                }
            };
            let mut settled = self.settle("finish a task", id, state, fields).await?;
            if let Updated::TooLarge = settled {
                settled = self
                    .settle("finish a task", id, TaskState::Failed, no_room())
                    .await?;
            }
            Ok(matches!(settled, Updated::Done))
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
            let cancelled = self
                .settle(
                    "cancel a task",
                    id,
                    TaskState::Cancelled,
                    vec![(ERROR, text(reason::CANCELLED))],
                )
                .await?;
            Ok(match cancelled {
                Updated::Done => CancelResult::Cancelled,
                Updated::Refused(Some(item)) => match record(id, item, now_millis())? {
                    Some(record) => CancelResult::Finished(record.state),
                    None => CancelResult::NotFound,
                },
                Updated::Refused(None) | Updated::TooLarge => CancelResult::NotFound,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_item_too_large_is_refused_for_size() {
        let table = [
            // PutItem and UpdateItem, from DynamoDB and DynamoDB Local.
            ("Item size has exceeded the maximum allowed size", true),
            (
                "Item size to update has exceeded the maximum allowed size",
                true,
            ),
            // Other validation errors that speak of a size are store errors, not results.
            (
                "One or more parameter values were invalid: Size of hashkey has exceeded \
                 the maximum size limit of 2048 bytes",
                false,
            ),
            (
                "Invalid UpdateExpression: Expression size has exceeded the maximum allowed size",
                false,
            ),
            ("The provided key element does not match the schema", false),
        ];
        for (message, want) in table {
            assert_eq!(refused_for_size(message), want, "{message}");
        }
    }
}
