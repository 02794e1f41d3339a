//! The TaskStore conformance suite against every store.

mod common;

use std::sync::Arc;

use tower_serverless::offload::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    common::conformance::run(Arc::new(MemoryStore::new())).await;
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
