//! What every TaskStore must do, written once and run against each store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tower_serverless::offload::store::{
    CancelResult, Created, NewTask, StoredResponse, TaskOutcome, TaskStore,
};
use tower_serverless::offload::{TaskId, TaskState};

/// A new unkeyed task: a random id, 60 s lease and TTL.
pub fn task() -> NewTask {
    NewTask {
        id: TaskId::random().unwrap(),
        owner: None,
        idempotency_key: None,
        fingerprint: None,
        foreground: Duration::ZERO,
        lease: Duration::from_secs(60),
        ttl: Duration::from_secs(60),
    }
}

/// A task with an idempotency key, its id made for the key's scope as the layer makes it.
pub fn keyed(owner: Option<&str>, key: &str) -> NewTask {
    NewTask {
        id: TaskId::random_for(owner, key).unwrap(),
        owner: owner.map(str::to_owned),
        idempotency_key: Some(key.to_owned()),
        fingerprint: None,
        foreground: Duration::ZERO,
        ..task()
    }
}

fn response() -> StoredResponse {
    let mut headers = HeaderMap::new();
    headers.append("content-type", "application/octet-stream".parse().unwrap());
    headers.append("x-multi", "1".parse().unwrap());
    headers.append("x-multi", "2".parse().unwrap());
    StoredResponse {
        status: StatusCode::CREATED,
        headers,
        body: Bytes::from_static(b"\x00\xff binary \r\n body"),
    }
}

/// Runs every check against `store`.
pub async fn run(store: Arc<dyn TaskStore>) {
    lifecycle(&*store).await;
    transitions_happen_once(&*store).await;
    cancel(&*store).await;
    idempotency(&*store).await;
    failures_and_status_reads(&*store).await;
    lease_lapses_to_worker_lost(&*store).await;
    ttl_expires_finished_tasks(&*store).await;
    cancel_racing_finish_has_one_winner(store.clone()).await;
}

async fn lifecycle(store: &dyn TaskStore) {
    let mut new = task();
    new.owner = Some("alice".into());
    assert_eq!(store.create(new.clone()).await.unwrap(), Created::New);
    let pending = store.get(new.id).await.unwrap().expect("created");
    assert_eq!((pending.id, pending.state), (new.id, TaskState::Pending));
    assert_eq!(pending.owner.as_deref(), Some("alice"));
    assert!(pending.finished_at.is_none() && pending.result.is_none() && pending.error.is_none());
    assert!(store.renew(new.id, Duration::from_secs(60)).await.unwrap());

    assert!(store
        .finish(new.id, TaskOutcome::Succeeded(response()))
        .await
        .unwrap());
    let done = store.get(new.id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(
        done.result.as_deref(),
        Some(&response()),
        "status, headers and body round-trip"
    );
    assert!(done.finished_at.unwrap() >= done.created_at);
    assert!(
        !store.renew(new.id, Duration::from_secs(60)).await.unwrap(),
        "no renewal once done"
    );

    let unknown = TaskId::random().unwrap();
    assert!(store.get(unknown).await.unwrap().is_none());
    assert!(!store
        .finish(unknown, TaskOutcome::failed("x"))
        .await
        .unwrap());
    assert_eq!(store.cancel(unknown).await.unwrap(), CancelResult::NotFound);
}

async fn transitions_happen_once(store: &dyn TaskStore) {
    let new = task();
    store.create(new.clone()).await.unwrap();
    assert!(store
        .finish(new.id, TaskOutcome::failed("the handler failed"))
        .await
        .unwrap());
    assert!(!store
        .finish(new.id, TaskOutcome::Succeeded(response()))
        .await
        .unwrap());
    let failed = store.get(new.id).await.unwrap().unwrap();
    assert_eq!(failed.state, TaskState::Failed);
    assert_eq!(failed.error.as_deref(), Some("the handler failed"));
    assert!(failed.result.is_none());
}

async fn cancel(store: &dyn TaskStore) {
    let new = task();
    store.create(new.clone()).await.unwrap();
    assert_eq!(store.cancel(new.id).await.unwrap(), CancelResult::Cancelled);
    assert_eq!(
        store.get(new.id).await.unwrap().unwrap().state,
        TaskState::Cancelled
    );
    assert!(!store
        .finish(new.id, TaskOutcome::Succeeded(response()))
        .await
        .unwrap());
    assert!(!store.renew(new.id, Duration::from_secs(60)).await.unwrap());
    assert_eq!(
        store.cancel(new.id).await.unwrap(),
        CancelResult::Finished(TaskState::Cancelled)
    );
}

async fn idempotency(store: &dyn TaskStore) {
    let key = format!("key-{}", TaskId::random().unwrap());
    let first = NewTask {
        fingerprint: Some("0123456789abcdef".into()),
        foreground: Duration::from_secs(60),
        ..keyed(Some("a:b"), &key)
    };
    assert_eq!(store.create(first.clone()).await.unwrap(), Created::New);
    let kept = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(kept.fingerprint.as_deref(), Some("0123456789abcdef"));
    let until = kept.foreground_until.expect("kept");
    let ahead = until.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(ahead > Duration::from_secs(50), "{ahead:?}");
    let again = keyed(Some("a:b"), &key);
    assert_eq!(
        store.create(again.clone()).await.unwrap(),
        Created::Existing(first.id)
    );
    assert!(
        store.get(again.id).await.unwrap().is_none(),
        "no second task"
    );

    for owner in [None, Some("a"), Some("b")] {
        let other = keyed(owner, &key);
        assert_eq!(
            store.create(other).await.unwrap(),
            Created::New,
            "owner {owner:?}"
        );
    }
    // A keyed task renews, finishes and cancels like any other.
    assert!(store
        .renew(first.id, Duration::from_secs(60))
        .await
        .unwrap());
    store
        .finish(first.id, TaskOutcome::failed("done"))
        .await
        .unwrap();
    assert_eq!(
        store.create(again).await.unwrap(),
        Created::Existing(first.id),
        "while it exists"
    );
    let cancelled = keyed(None, &format!("cancel-{key}"));
    store.create(cancelled.clone()).await.unwrap();
    assert_eq!(
        store.cancel(cancelled.id).await.unwrap(),
        CancelResult::Cancelled
    );
}

async fn failures_and_status_reads(store: &dyn TaskStore) {
    let escalated = task();
    store.create(escalated.clone()).await.unwrap();
    let outcome = TaskOutcome::Failed {
        reason: tower_serverless::offload::reason::ESCALATED.into(),
        error_type: Some("PaymentDeclined".into()),
    };
    assert!(store.finish(escalated.id, outcome).await.unwrap());
    let record = store.status(escalated.id).await.unwrap().unwrap();
    assert_eq!(record.state, TaskState::Failed);
    assert_eq!(record.error.as_deref(), Some("the work escalated"));
    assert_eq!(record.error_type.as_deref(), Some("PaymentDeclined"));

    let succeeded = task();
    store.create(succeeded.clone()).await.unwrap();
    store
        .finish(succeeded.id, TaskOutcome::Succeeded(response()))
        .await
        .unwrap();
    let polled = store.status(succeeded.id).await.unwrap().unwrap();
    assert_eq!(polled.state, TaskState::Succeeded);
    assert!(polled.result.is_none(), "a status read leaves the body");
    assert!(store
        .get(succeeded.id)
        .await
        .unwrap()
        .unwrap()
        .result
        .is_some());
    assert!(store
        .status(TaskId::random().unwrap())
        .await
        .unwrap()
        .is_none());
}

async fn lease_lapses_to_worker_lost(store: &dyn TaskStore) {
    let mut new = task();
    new.lease = Duration::from_millis(50);
    store.create(new.clone()).await.unwrap();
    // The lease runs on the store's clock (Redis' own), which no test can pause.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let lost = store.get(new.id).await.unwrap().unwrap();
    assert_eq!(lost.state, TaskState::Failed);
    assert_eq!(
        lost.error.as_deref(),
        Some(tower_serverless::offload::reason::WORKER_LOST)
    );
    assert!(!store.renew(new.id, Duration::from_secs(60)).await.unwrap());
    assert!(!store
        .finish(new.id, TaskOutcome::Succeeded(response()))
        .await
        .unwrap());
}

async fn ttl_expires_finished_tasks(store: &dyn TaskStore) {
    // The TTL runs on the store's clock, which no test can pause. It is long enough for
    // the reads before it ends even on a loaded machine (a TTL of 100 ms once lapsed
    // during a DynamoDB Local transaction under CI load).
    const TTL: Duration = Duration::from_secs(1);
    let mut new = task();
    new.ttl = TTL;
    store.create(new.clone()).await.unwrap();
    store
        .finish(new.id, TaskOutcome::Succeeded(response()))
        .await
        .unwrap();
    assert!(store.get(new.id).await.unwrap().is_some());
    let key = format!("expiring-{}", new.id);
    let expiring = NewTask {
        ttl: TTL,
        ..keyed(None, &key)
    };
    store.create(expiring.clone()).await.unwrap();
    store
        .finish(expiring.id, TaskOutcome::failed("done"))
        .await
        .unwrap();
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    assert!(
        store.get(new.id).await.unwrap().is_none(),
        "gone after its TTL"
    );
    // Its idempotency key went with it: the key gives a new task.
    let retry = keyed(None, &key);
    assert_eq!(store.create(retry.clone()).await.unwrap(), Created::New);
    assert_eq!(
        store.create(keyed(None, &key)).await.unwrap(),
        Created::Existing(retry.id)
    );
}

async fn cancel_racing_finish_has_one_winner(store: Arc<dyn TaskStore>) {
    for _ in 0..50 {
        let new = task();
        store.create(new.clone()).await.unwrap();
        let (a, b) = (store.clone(), store.clone());
        let finish = tokio::spawn(async move {
            a.finish(new.id, TaskOutcome::Succeeded(response()))
                .await
                .unwrap()
        });
        let cancel = tokio::spawn(async move { b.cancel(new.id).await.unwrap() });
        let (finished, cancelled) = (finish.await.unwrap(), cancel.await.unwrap());
        let state = store.get(new.id).await.unwrap().unwrap().state;
        match (finished, cancelled) {
            (true, CancelResult::Finished(TaskState::Succeeded)) => {
                assert_eq!(state, TaskState::Succeeded)
            }
            (false, CancelResult::Cancelled) => assert_eq!(state, TaskState::Cancelled),
            other => panic!("two winners or none: {other:?}"),
        }
    }
}
