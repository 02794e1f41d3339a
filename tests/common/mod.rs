//! Hosts for the integration tests: real servers on loopback, a real HTTP client, and a
//! Lambda Runtime API that the real `lambda_runtime` client talks to.
#![allow(dead_code, unreachable_pub)] // each test binary uses a part of it

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

pub mod conformance;
#[cfg(feature = "dynamodb")]
pub mod dynamodb_local;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "lambda")]
pub mod runtime_api;
#[cfg(all(feature = "axum", any(feature = "redis", feature = "dynamodb")))]
pub mod shared_store;

/// A listener on a free loopback port whose accept queue holds the bursts of connections
/// the concurrency tests open at once.
pub fn listener() -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(4096).unwrap()
}

/// A loopback port that was free a moment ago, for a server started as a separate process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `router` with `axum::serve` on a free loopback port.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A response with its body collected.
#[derive(Debug)]
pub struct Collected {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Collected {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }

    /// The body, asserted to be problem details (RFC 9457) of this response's status with
    /// `detail`: the members every error of the layers has.
    #[allow(dead_code)] // not every test binary reads errors
    pub fn problem(&self, detail: &str) -> serde_json::Value {
        assert_eq!(self.header("content-type"), "application/problem+json");
        let body = self.json();
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], self.status.canonical_reason().unwrap());
        assert_eq!(body["status"], self.status.as_u16());
        assert_eq!(body["detail"], detail);
        body
    }
}

/// The status JSON, from `offload`'s status endpoint, of the task a `202` named.
pub async fn status_of(
    offload: &tower_serverless::OffloadLayer,
    accepted: &Response<impl Sized>,
) -> serde_json::Value {
    use tower::ServiceExt;
    assert_eq!(accepted.status(), http::StatusCode::ACCEPTED);
    let url = accepted.headers()["location"].to_str().unwrap().to_owned();
    let status = offload
        .status_service()
        .oneshot(Request::get(url).body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    collect(status).await.json()
}

/// A real hyper client.
#[derive(Clone)]
pub struct HttpClient(Client<HttpConnector, Full<Bytes>>);

impl HttpClient {
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Collected {
        let response = self.0.request(request).await.unwrap();
        collect(response).await
    }

    /// The status of the answer to `request`, without reading its body.
    pub async fn head_of(&self, request: Request<Full<Bytes>>) -> http::StatusCode {
        self.0.request(request).await.unwrap().status()
    }

    pub async fn get(&self, url: &str) -> Collected {
        self.send(Request::get(url).body(Full::default()).unwrap())
            .await
    }
}

pub async fn collect<B>(response: Response<B>) -> Collected
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    Collected {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Ends the process's panic output noise for panics the tests provoke on purpose (their
/// messages say "on purpose"); every other panic is reported as usual.
pub fn quiet_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or_default();
        if !message.contains("on purpose") {
            report(info);
        }
    }));
}

/// Serves a tower service with a real hyper server on a free loopback port.
pub async fn serve_hyper<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A `POST path` route whose work waits until the sender says `true`: the test decides when
/// detached work ends, without timing.
pub fn gated(path: &str) -> (tokio::sync::watch::Sender<bool>, Router) {
    let (gate, opened) = tokio::sync::watch::channel(false);
    let route = axum::routing::post(move || {
        let mut opened = opened.clone();
        async move {
            let _ = opened.wait_for(|open| *open).await;
            (http::StatusCode::CREATED, "released")
        }
    });
    (gate, Router::new().route(path, route))
}

/// A `POST /report/{bytes}` route: a binary report of that many bytes, made in 300 ms.
pub fn report() -> Router {
    let route = axum::routing::post(
        |axum::extract::Path(bytes): axum::extract::Path<usize>| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let binary = [(http::header::CONTENT_TYPE, "application/octet-stream")];
            (binary, vec![7u8; bytes])
        },
    );
    Router::new().route("/report/{bytes}", route)
}

/// A `GET /broken` route whose body fails after its first chunk, `partial `, with an error
/// whose text is for the logs only: `the database password is hunter2 (failing on purpose)`.
pub fn broken() -> Router {
    let route = axum::routing::get(|| async {
        let (mut sender, body) = http_body_util::Channel::<Bytes, std::io::Error>::new(1);
        tokio::spawn(async move {
            let _ = sender.send_data(Bytes::from_static(b"partial ")).await;
            tokio::task::yield_now().await;
            sender.abort(std::io::Error::other(
                "the database password is hunter2 (failing on purpose)",
            ));
        });
        axum::body::Body::new(body)
    });
    Router::new().route("/broken", route)
}

/// A `POST path` route whose work never ends; the receiver completes (with an error) when
/// the work's future is dropped.
pub fn forever(path: &str) -> (tokio::sync::oneshot::Receiver<()>, Router) {
    let (guard, dropped) = tokio::sync::oneshot::channel::<()>();
    let guard = std::sync::Arc::new(std::sync::Mutex::new(Some(guard)));
    let route = axum::routing::post(move || {
        let guard = guard.lock().unwrap().take();
        async move {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            drop(guard);
        }
    });
    (dropped, Router::new().route(path, route))
}

/// Sends `n` concurrent `POST /gated` (a [`gated`] route) to `addr` behind `offload`, and
/// checks what a user would: `n` distinct tasks, all pending at once, and once the gate
/// opens every one of them succeeded.
pub async fn concurrent_offloads(
    n: usize,
    offload: &tower_serverless::OffloadLayer,
    addr: SocketAddr,
    gate: tokio::sync::watch::Sender<bool>,
) {
    let client = HttpClient::new();
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let request = Request::post(format!("http://{addr}/gated"))
                    .body(Full::default())
                    .unwrap();
                // A request answered in the foreground would wait for the gate: fail instead.
                let accepted = tokio::time::timeout(Duration::from_secs(120), client.send(request))
                    .await
                    .expect("a 202 for every request, none answered in the foreground");
                assert_eq!(
                    accepted.status,
                    http::StatusCode::ACCEPTED,
                    "{}",
                    accepted.text()
                );
                accepted.header("location").to_owned()
            })
        })
        .collect();
    let mut urls = Vec::new();
    for request in requests {
        urls.push(request.await.unwrap());
    }
    assert_eq!(offload.detached().len(), n, "all pending at once");
    gate.send(true).unwrap();
    offload.detached().wait_idle().await;
    let distinct: std::collections::HashSet<_> = urls.iter().collect();
    assert_eq!(distinct.len(), n);
    for url in &urls {
        let status = client.get(&format!("http://{addr}{url}")).await;
        assert_eq!(
            status.status,
            http::StatusCode::SEE_OTHER,
            "{url}: {}",
            status.text()
        );
    }
}

/// Captures what a `tracing` subscriber writes.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Makes this the process's `tracing` subscriber, for tests whose events come from
    /// other threads.
    pub fn install_global(&self) {
        tracing::subscriber::set_global_default(self.subscriber()).unwrap();
    }

    /// Makes this the `tracing` subscriber of this thread until the guard drops: for a
    /// current-thread runtime's test, whose tasks all run here.
    #[allow(dead_code)] // not every test binary captures a thread's logs
    pub fn install_on_thread(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(self.subscriber())
    }

    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
