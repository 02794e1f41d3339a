//! The layers under a real hyper server on loopback, reached by a real hyper client.
#![cfg(feature = "axum")]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::Layer;
use tower_serverless::EscalateLayer;

/// Serves the demo routes behind EscalateLayer in its failing mode with hyper.
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
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
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
