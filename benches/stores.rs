//! Store latency: create, finish and status read of one task, per store, measured in one run
//! (criterion medians): `MemoryStore`, `RedisStore` on a real `redis-server`, and
//! `DynamoDbStore` on DynamoDB Local, each started on a free loopback port by the test
//! harness (`bash .ci/run` installs both servers).
//!
//! `cargo bench -p tower-serverless-benches --bench stores --features redis,dynamodb`
//!
//! DynamoDB Local is one JVM on sqlite, not DynamoDB: its figures say what the store costs on
//! this machine, not what DynamoDB's service answers in (single-digit milliseconds).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, StatusCode};
use tower_serverless::offload::store::{NewTask, StoredResponse, TaskOutcome};
use tower_serverless::offload::{MemoryStore, RedisStore, TaskId, TaskStore};

/// A task whose lease outlives the measurement: tasks created first stay pending.
fn task() -> NewTask {
    NewTask {
        lease: Duration::from_secs(600),
        ttl: Duration::from_secs(600),
        ..common::conformance::task()
    }
}

/// A small JSON result, as the demo's jobs return.
fn result() -> TaskOutcome {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    TaskOutcome::Succeeded(StoredResponse {
        status: StatusCode::OK,
        headers,
        body: Bytes::from_static(br#"{"job":"done","slept_ms":3000}"#),
    })
}

/// Creates `iters` tasks first when `pending` (not timed), then times `op` on each.
async fn timed<F, Fut>(store: &Arc<dyn TaskStore>, iters: u64, pending: bool, op: F) -> Duration
where
    F: Fn(Arc<dyn TaskStore>, TaskId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ids = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        let new = task();
        if pending {
            store.create(new.clone()).await.unwrap();
        }
        ids.push(new.id);
    }
    let started = Instant::now();
    for id in ids {
        op(store.clone(), id).await;
    }
    started.elapsed()
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (redis, dynamodb) = rt.block_on(async {
        let redis = common::redis_server::RedisServer::start().await;
        let dynamodb = common::dynamodb_local::DynamoDbLocal::start().await;
        (redis, dynamodb)
    });
    let under_test: Vec<(&str, Arc<dyn TaskStore>)> = rt.block_on(async {
        vec![
            (
                "MemoryStore",
                // Every task the bench creates stays: room for all of them.
                Arc::new(
                    MemoryStore::new()
                        .max_tasks(10_000_000)
                        .unwrap()
                        .max_bytes(usize::MAX),
                ) as Arc<dyn TaskStore>,
            ),
            (
                "RedisStore",
                Arc::new(RedisStore::connect(&redis.url()).await.unwrap()),
            ),
            (
                "DynamoDbStore on DynamoDB Local",
                Arc::new(dynamodb.store("tasks").await),
            ),
        ]
    });

    let mut group = c.benchmark_group("stores");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    for (name, store) in &under_test {
        group.bench_function(format!("{name}/create"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    timed(&store, iters, false, |store, _| async move {
                        store.create(task()).await.unwrap();
                    })
                    .await
                }
            })
        });
        group.bench_function(format!("{name}/create with an idempotency key"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    timed(&store, iters, false, |store, id| async move {
                        let key = format!("POST /orders {id}");
                        let keyed = NewTask {
                            id: TaskId::random_for(None, &key).unwrap(),
                            idempotency_key: Some(key),
                            ..task()
                        };
                        store.create(keyed).await.unwrap();
                    })
                    .await
                }
            })
        });
        group.bench_function(format!("{name}/finish"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    timed(&store, iters, true, |store, id| async move {
                        assert!(store.finish(id, result()).await.unwrap());
                    })
                    .await
                }
            })
        });
        group.bench_function(format!("{name}/status"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    timed(&store, iters, true, |store, id| async move {
                        assert!(store.status(id).await.unwrap().is_some());
                    })
                    .await
                }
            })
        });
    }
    group.finish();
    drop((redis, dynamodb));
}

criterion_group!(benches, stores);
criterion_main!(benches);
