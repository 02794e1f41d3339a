//! DynamoDbStore through real servers and DynamoDB Local: tasks shared between
//! processes, an outage and the recovery after it, and load.
#![cfg(all(feature = "dynamodb", feature = "axum"))]

mod common;

use common::dynamodb_local::DynamoDbLocal;
use common::shared_store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_on_one_process_is_polled_and_replayed_on_another() {
    let dynamodb = DynamoDbLocal::start().await;
    shared_store::a_task_created_on_one_process_is_polled_and_replayed_on_another(&dynamodb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_another_process_stops_the_work_at_its_next_renewal() {
    let dynamodb = DynamoDbLocal::start().await;
    shared_store::a_cancel_on_another_process_stops_the_work_at_its_next_renewal(&dynamodb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_falls_back_to_the_foreground_and_the_service_recovers() {
    let mut dynamodb = DynamoDbLocal::start_persistent().await;
    shared_store::an_outage_falls_back_to_the_foreground_and_the_service_recovers(&mut dynamodb)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_offloads_all_reach_a_terminal_state() {
    let dynamodb = DynamoDbLocal::start().await;
    shared_store::a_thousand_concurrent_offloads_all_reach_a_terminal_state(&dynamodb).await;
}

// What is DynamoDB's own: the item limit, a missing table, the time to live, the key item.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tower_serverless::offload::store::{
    Created, NewTask, StoreError, StoredResponse, TaskOutcome, TaskStore,
};
use tower_serverless::offload::{reason, DynamoDbStore, TaskId, TaskState};

fn task(owner: Option<String>) -> NewTask {
    NewTask {
        id: TaskId::random().unwrap(),
        owner,
        idempotency_key: None,
        fingerprint: None,
        foreground: Duration::ZERO,
        lease: Duration::from_secs(60),
        ttl: Duration::from_secs(60),
    }
}

fn body_of(len: usize) -> StoredResponse {
    StoredResponse {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from(vec![b'x'; len]),
    }
}

/// What an unavailable store says of the cause (the log's text, never a client's).
fn unavailable(error: StoreError) -> String {
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    std::error::Error::source(&error).unwrap().to_string()
}

/// The raw item under `pk`, as DynamoDB holds it.
async fn raw(
    dynamodb: &DynamoDbLocal,
    pk: String,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    dynamodb
        .client()
        .get_item()
        .table_name(common::dynamodb_local::TABLE)
        .key("pk", AttributeValue::S(pk))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

fn number(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> u64 {
    item[name].as_n().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_that_do_not_fit_an_item_fail_their_task_and_nothing_partial_is_written() {
    let dynamodb = DynamoDbLocal::start().await;
    let store = dynamodb.store(common::dynamodb_local::TABLE).await;
    assert!(store
        .clone()
        .max_result_bytes(DynamoDbStore::MAX_RESULT_BYTES + 1)
        .is_err());

    // Past the store's limit: failed before anything is sent.
    let small = store.clone().max_result_bytes(1000).unwrap();
    let new = task(None);
    small.create(new.clone()).await.unwrap();
    assert!(small
        .finish(new.id, TaskOutcome::Succeeded(body_of(1001)))
        .await
        .unwrap());
    let record = small.get(new.id).await.unwrap().unwrap();
    assert_eq!(record.state, TaskState::Failed);
    assert_eq!(record.error.as_deref(), Some(reason::NO_ROOM));
    assert!(record.result.is_none());

    // Within the limit, but not within the item with a 100 KB owner: DynamoDB refuses the
    // whole write, and the task fails the same way.
    let new = task(Some("o".repeat(100 * 1024)));
    store.create(new.clone()).await.unwrap();
    let fits_the_limit = body_of(DynamoDbStore::MAX_RESULT_BYTES);
    assert!(store
        .finish(new.id, TaskOutcome::Succeeded(fits_the_limit))
        .await
        .unwrap());
    let record = store.get(new.id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.error.as_deref()),
        (TaskState::Failed, Some(reason::NO_ROOM))
    );
    let item = raw(&dynamodb, format!("tower-serverless:task#{}", new.id))
        .await
        .unwrap();
    assert!(!item.contains_key("body"), "no partial item");

    // The largest result fits with an ordinary record.
    let new = task(Some("alice".into()));
    store.create(new.clone()).await.unwrap();
    let largest = body_of(DynamoDbStore::MAX_RESULT_BYTES);
    assert!(store
        .finish(new.id, TaskOutcome::Succeeded(largest.clone()))
        .await
        .unwrap());
    assert_eq!(
        store.get(new.id).await.unwrap().unwrap().result.as_deref(),
        Some(&largest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_a_store_error_that_names_it() {
    let dynamodb = DynamoDbLocal::start().await;
    let store = DynamoDbStore::new(dynamodb.client(), "no-such-table");
    let message = unavailable(store.create(task(None)).await.unwrap_err());
    assert!(
        message.contains("\"no-such-table\" does not exist"),
        "{message}"
    );
    assert!(store.get(TaskId::random().unwrap()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_carry_their_time_to_live_and_a_key_lives_as_long_as_its_task() {
    let dynamodb = DynamoDbLocal::start().await;
    let store = dynamodb.store(common::dynamodb_local::TABLE).await;
    let ttl = dynamodb
        .client()
        .describe_time_to_live()
        .table_name(common::dynamodb_local::TABLE)
        .send()
        .await
        .unwrap();
    let spec = ttl.time_to_live_description.unwrap();
    assert_eq!(spec.attribute_name.as_deref(), Some("expires_at"));

    let key = "POST /orders k-1";
    let new = NewTask {
        id: TaskId::random_for(None, key).unwrap(),
        idempotency_key: Some(key.into()),
        lease: Duration::from_secs(60),
        ttl: Duration::from_secs(600),
        ..task(None)
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(store.create(new.clone()).await.unwrap(), Created::New);
    let task_pk = format!("tower-serverless:task#{}", new.id);
    let key_pk = format!("tower-serverless:idem#-:{key}");
    let item = raw(&dynamodb, task_pk.clone()).await.unwrap();
    let expires_at = number(&item, "expires_at");
    assert!(
        (now + 660..=now + 662).contains(&expires_at),
        "epoch seconds of lease + TTL: {expires_at}, now {now}"
    );
    let key_item = raw(&dynamodb, key_pk.clone()).await.unwrap();
    assert_eq!(key_item["task"].as_s().unwrap(), &new.id.to_string());
    assert_eq!(number(&key_item, "expires_at"), expires_at);

    // A renewal extends the key with its task, in one transaction.
    assert!(store.renew(new.id, Duration::from_secs(120)).await.unwrap());
    let renewed = number(&raw(&dynamodb, task_pk).await.unwrap(), "expires_at");
    assert!(renewed >= expires_at + 60, "{renewed} after {expires_at}");
    assert_eq!(
        number(&raw(&dynamodb, key_pk).await.unwrap(), "expires_at"),
        renewed
    );
}

/// DynamoDB Local never throttles: a loopback server answers every request as DynamoDB does
/// when a table's throughput is exceeded, and counts them. The store's client makes 3
/// attempts.
async fn throttled_store() -> (
    DynamoDbStore,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition};
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let throttling = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/x-amz-json-1.0")],
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, throttling).await.unwrap() });
    // The SDK gates retries by a token bucket shared by every client of one retry partition
    // in the process (by default, one per service): the throttled tests would drain it for
    // each other, and a client of a drained bucket makes no retries. Each gets its own.
    static PARTITIONS: AtomicUsize = AtomicUsize::new(0);
    let partition = format!("throttled-{}", PARTITIONS.fetch_add(1, Ordering::SeqCst));
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .retry_partition(RetryPartition::new(partition))
        .build();
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "tasks");
    (store, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_request_is_retried_and_then_a_store_error_that_says_so() {
    let (store, requests) = throttled_store().await;
    let message = unavailable(store.create(task(None)).await.unwrap_err());
    assert!(
        message.contains("DynamoDB throttled requests to \"tasks\""),
        "{message}"
    );
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "the client's retries were made"
    );
}

/// Through the offload layer, a throttled table is an unavailable store: slow work is
/// answered in the foreground, a keyed request and a status read are `503` with
/// `Retry-After`, and none of DynamoDB's text reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_table_is_answered_like_an_outage() {
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tower_serverless::OffloadLayer;

    let (store, _) = throttled_store().await;
    let offload = OffloadLayer::new(store).after(Duration::from_millis(10));
    let app = axum::Router::new()
        .route(
            "/work",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (StatusCode::CREATED, "worked")
            }),
        )
        .layer(offload.clone())
        .merge(offload.status_router());
    let send = |request: http::Request<axum::body::Body>| {
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec());
            (parts, text.unwrap())
        }
    };
    let post = |key: Option<&str>| {
        let mut request = http::Request::post("/work");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.body(axum::body::Body::empty()).unwrap()
    };

    let (foreground, text) = send(post(None)).await;
    assert_eq!(
        (foreground.status, text.as_str()),
        (StatusCode::CREATED, "worked")
    );

    let unavailable = [
        send(post(Some("order-1"))).await,
        send(
            http::Request::get(format!("/tasks/{}", TaskId::random().unwrap()))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await,
    ];
    for (parts, text) in unavailable {
        assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(parts.headers.contains_key("retry-after"), "{parts:?}");
        let text = text.to_lowercase();
        assert!(
            ["throttl", "dynamodb", "provisioned", "tasks\""]
                .iter()
                .all(|internal| !text.contains(internal)),
            "internal text leaked: {text}"
        );
    }
}

/// DynamoDB gives the key's item back with a refused transaction; a DynamoDB-compatible
/// service that does not is asked for it. A proxy in front of DynamoDB Local takes the items
/// out of the refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_without_the_keys_item_is_answered_by_reading_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::body::Body;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let dynamodb = DynamoDbLocal::start().await;
    dynamodb.store(common::dynamodb_local::TABLE).await;
    let upstream = dynamodb.endpoint();
    let stripped = Arc::new(AtomicUsize::new(0));
    let counted = stripped.clone();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let proxy = axum::Router::new().fallback(move |request: http::Request<Body>| {
        let (client, upstream, counted) = (client.clone(), upstream.clone(), counted.clone());
        async move {
            let (mut parts, body) = request.into_parts();
            let refusable = parts.headers.get("x-amz-target")
                == Some(&"DynamoDB_20120810.TransactWriteItems".parse().unwrap());
            parts.uri = format!("{upstream}{}", parts.uri.path()).parse().unwrap();
            let body = body.collect().await.unwrap().to_bytes();
            let request = http::Request::from_parts(parts, Full::new(body));
            let (mut parts, body) = client.request(request).await.unwrap().into_parts();
            let mut body = body.collect().await.unwrap().to_bytes();
            if refusable && parts.status == StatusCode::BAD_REQUEST {
                let mut error: serde_json::Value = serde_json::from_slice(&body).unwrap();
                for reason in error["CancellationReasons"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    if reason.as_object_mut().unwrap().remove("Item").is_some() {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                }
                body = Bytes::from(error.to_string());
                parts.headers.remove("content-length");
                parts.headers.remove("x-amz-crc32");
            }
            http::Response::from_parts(parts, Body::from(body))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, proxy).await.unwrap() });
    let client = aws_sdk_dynamodb::Client::from_conf(
        dynamodb
            .client()
            .config()
            .to_builder()
            .endpoint_url(endpoint)
            .build(),
    );
    let store = DynamoDbStore::new(client, common::dynamodb_local::TABLE);

    let first = common::conformance::keyed(None, "order-1");
    assert!(matches!(
        store.create(first.clone()).await.unwrap(),
        Created::New
    ));
    let again = common::conformance::keyed(None, "order-1");
    match store.create(again).await.unwrap() {
        Created::Existing(id) => assert_eq!(id, first.id),
        Created::New => panic!("the key's task was created twice"),
    }
    assert_eq!(
        stripped.load(Ordering::SeqCst),
        1,
        "the refusal reached the store without the key's item"
    );
}
