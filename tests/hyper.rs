//! The layers under a real hyper server on loopback, reached by a real hyper client.
#![cfg(feature = "axum")]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::Layer;
use tower_serverless::EscalateLayer;

/// Serves the demo routes behind EscalateLayer in its failing mode with hyper, HTTP/1.1 or
/// HTTP/2 as the client speaks.
async fn serve_escalating() -> SocketAddr {
    let service = EscalateLayer::new()
        .status_spec("503")
        .unwrap()
        .layer(app::routes());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            });
        }
    });
    addr
}

/// One request on a new connection.
async fn request(addr: SocketAddr, path: &str) -> Result<(StatusCode, Bytes), hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

#[tokio::test]
async fn escalation_closes_the_connection_without_a_response() {
    common::quiet_panics();
    let addr = serve_escalating().await;

    for path in ["/fail", "/panic", "/status/503"] {
        let error = request(addr, path).await.unwrap_err();
        assert!(error.is_incomplete_message(), "{path}: {error:?}");
        // The server is still there: a new connection is served.
        let (status, body) = request(addr, "/hello").await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    }

    let (status, _) = request(addr, "/status/502").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

/// Under HTTP/2 a connection carries many requests: hyper resets the stream of the one that
/// escalated (`RST_STREAM` with `INTERNAL_ERROR`), and the connection serves the others.
#[tokio::test]
async fn under_http2_an_escalation_resets_its_stream_only() {
    common::quiet_panics();
    let addr = serve_escalating().await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let get = |path: &str| {
        Request::get(format!("http://{addr}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    for path in ["/fail", "/panic"] {
        let error = sender.send_request(get(path)).await.unwrap_err();
        let reason = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<h2::Error>())
            .and_then(h2::Error::reason);
        assert_eq!(
            reason,
            Some(h2::Reason::INTERNAL_ERROR),
            "{path}: {error:?}"
        );
        // The same connection answers the next request.
        sender.ready().await.unwrap();
        let hello = sender.send_request(get("/hello")).await.unwrap();
        let status = hello.status();
        let body = hello.into_body().collect().await.unwrap().to_bytes();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    }
}

/// Behind the Lambda Web Adapter, the adapter's headers give the same deadlines as the
/// Lambda runner computes from the event.
#[tokio::test]
async fn lambda_web_adapter_headers_set_the_deadline() {
    use std::time::{SystemTime, UNIX_EPOCH};
    use tower_serverless::deadline::{self, FrontDoors};
    use tower_serverless::DeadlineLayer;

    let remaining = tower::service_fn(|_: Request<hyper::body::Incoming>| async {
        let remaining = deadline::current().unwrap().remaining().as_millis();
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
            Bytes::from(remaining.to_string()),
        )))
    });
    let layer = DeadlineLayer::inherit().lambda_web_adapter(FrontDoors::new());
    let addr = common::serve_hyper(layer.layer(remaining)).await;
    let client = common::HttpClient::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ask = |headers: Vec<(&'static str, String)>| {
        let client = client.clone();
        async move {
            let mut request = Request::get(format!("http://{addr}/"));
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let answer = client
                .send(request.body(http_body_util::Full::default()).unwrap())
                .await;
            answer.text().parse::<u64>().unwrap()
        }
    };
    let rest = format!(r#"{{"requestTimeEpoch":{},"stage":"prod"}}"#, now - 20_000);
    let lambda = format!(r#"{{"request_id":"r","deadline":{}}}"#, now + 100_000);
    // A REST request that arrived 20 s ago: 29 - 20 - 1 = 8 s.
    let ms = ask(vec![("x-amzn-request-context", rest)]).await;
    assert!((7_000..=8_000).contains(&ms), "REST {ms}");
    // An HTTP API with payload format 1.0 sends a REST-shaped context; its route key as
    // `resourceId` tells it: 30 - 20 - 1 = 9 s.
    let v1 = format!(
        r#"{{"requestTimeEpoch":{},"resourceId":"ANY /{{proxy+}}","stage":"$default"}}"#,
        now - 20_000
    );
    let ms = ask(vec![("x-amzn-request-context", v1)]).await;
    assert!((8_001..=9_000).contains(&ms), "HTTP API payload 1.0 {ms}");
    // An HTTP API request: 30 - 1 = 29 s, earlier than the function's 99 s.
    let http =
        format!(r#"{{"timeEpoch":{now},"domainName":"x.execute-api.us-east-1.amazonaws.com"}}"#);
    let ms = ask(vec![
        ("x-amzn-request-context", http),
        ("x-amzn-lambda-context", lambda.clone()),
    ])
    .await;
    assert!((28_000..=29_000).contains(&ms), "HTTP API {ms}");
    // A function URL has no cap: the function's deadline minus the margin, 99 s.
    let url = format!(r#"{{"timeEpoch":{now},"domainName":"abc.lambda-url.us-east-1.on.aws"}}"#);
    let ms = ask(vec![
        ("x-amzn-request-context", url.clone()),
        ("x-amzn-lambda-context", lambda.clone()),
    ])
    .await;
    assert!((98_000..=99_000).contains(&ms), "function URL {ms}");
    // The same behind CloudFront, which the adapter passes on as the event's header:
    // CloudFront's 30 s origin response timeout, minus the margin.
    let ms = ask(vec![
        ("x-amzn-request-context", url.clone()),
        ("x-amzn-lambda-context", lambda.clone()),
        (
            "x-amz-cf-id",
            "rEZ41zHijmTaPJrLdiavv7oU8giHtH8HQXvabc2QPAly".to_owned(),
        ),
    ])
    .await;
    assert!(
        (28_000..=29_000).contains(&ms),
        "function URL behind CloudFront {ms}"
    );
    // Malformed JSON or values are ignored: no zero budget, no panic.
    for bad in [
        "{",
        "[]",
        "null",
        r#"{"requestTimeEpoch":"soon","deadline":-5}"#,
    ] {
        let ms = ask(vec![
            ("x-amzn-request-context", bad.to_owned()),
            ("x-amzn-lambda-context", bad.to_owned()),
        ])
        .await;
        assert!(ms > 3_600_000, "{bad:?}: {ms}");
    }
}
