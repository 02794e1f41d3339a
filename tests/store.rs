//! The TaskStore conformance suite against every store.

mod common;

use std::sync::Arc;

use tower_serverless::offload::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    common::conformance::run(Arc::new(MemoryStore::new())).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_conforms() {
    let server = common::dynamodb_local::DynamoDbLocal::start().await;
    common::conformance::run(Arc::new(server.store("tasks").await)).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let server = common::redis_server::RedisServer::start().await;
    let store = tower_serverless::offload::RedisStore::connect(&server.url())
        .await
        .unwrap();
    common::conformance::run(Arc::new(store)).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms_on_a_cluster_node() {
    let server = common::redis_server::RedisServer::start_cluster().await;
    // The node refuses a script whose keys span slots: the check below is real.
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let spanning: redis::RedisResult<()> = redis::Script::new("return 1")
        .key("{a}x")
        .key("{b}y")
        .invoke_async(&mut raw)
        .await;
    let error = spanning.unwrap_err().to_string();
    assert!(error.contains("same slot"), "{error}");

    let store = tower_serverless::offload::RedisStore::connect(&server.url())
        .await
        .unwrap();
    common::conformance::run(Arc::new(store)).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store_writes_under_its_prefix_and_caps_results_before_writing() {
    use std::time::Duration;

    use bytes::Bytes;
    use tower_serverless::offload::store::{NewTask, StoredResponse, TaskOutcome, TaskStore};
    use tower_serverless::offload::{RedisStore, TaskId, TaskState};

    let server = common::redis_server::RedisServer::start().await;
    let store = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .key_prefix("billing:")
        .max_result_bytes(10);
    let new = |id| NewTask {
        id,
        owner: None,
        idempotency_key: None,
        fingerprint: None,
        foreground: Duration::ZERO,
        lease: Duration::from_secs(60),
        ttl: Duration::from_secs(60),
    };
    let result = |n| StoredResponse {
        status: http::StatusCode::OK,
        headers: http::HeaderMap::new(),
        body: Bytes::from(vec![b'x'; n]),
    };
    let (small, large) = (TaskId::random().unwrap(), TaskId::random().unwrap());
    store.create(new(small)).await.unwrap();
    store.create(new(large)).await.unwrap();
    store
        .finish(small, TaskOutcome::Succeeded(result(10)))
        .await
        .unwrap();
    store
        .finish(large, TaskOutcome::Succeeded(result(11)))
        .await
        .unwrap();

    let kept = store.get(small).await.unwrap().unwrap();
    assert_eq!(kept.result.unwrap().body.len(), 10);
    let refused = store.get(large).await.unwrap().unwrap();
    assert_eq!(refused.state, TaskState::Failed);
    assert_eq!(
        refused.error.as_deref(),
        Some("the result did not fit in the task store")
    );

    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let tag = |id: TaskId| id.to_string()[..4].to_owned();
    let small_key = format!("billing:{{{}}}task:{small}", tag(small));
    assert!(keys.contains(&small_key), "{keys:?}");
    assert!(
        keys.iter().all(|key| key.starts_with("billing:")),
        "{keys:?}"
    );
    let body: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(format!("billing:{{{}}}task:{large}", tag(large)))
        .arg("body")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(body, None, "the oversized body was never written");
}
