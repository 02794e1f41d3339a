//! RedisStore through real servers and a real redis-server: tasks shared between
//! processes, an outage and the recovery after it, and load.
#![cfg(all(feature = "redis", feature = "axum"))]

mod common;

use common::redis_server::RedisServer;
use common::shared_store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_on_one_process_is_polled_and_replayed_on_another() {
    let redis = RedisServer::start().await;
    shared_store::a_task_created_on_one_process_is_polled_and_replayed_on_another(&redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_another_process_stops_the_work_at_its_next_renewal() {
    let redis = RedisServer::start().await;
    shared_store::a_cancel_on_another_process_stops_the_work_at_its_next_renewal(&redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_falls_back_to_the_foreground_and_the_service_recovers() {
    let mut redis = RedisServer::start_persistent().await;
    shared_store::an_outage_falls_back_to_the_foreground_and_the_service_recovers(&mut redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_offloads_all_reach_a_terminal_state() {
    let redis = RedisServer::start().await;
    shared_store::a_thousand_concurrent_offloads_all_reach_a_terminal_state(&redis).await;
}
