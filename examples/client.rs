//! A client of the demo: `POST /jobs/{ms}` through `FollowLayer` and
//! `PropagateDeadlineLayer` over hyper's client, printing the final body.
//!
//! ```sh
//! cargo run --example demo                     # in one shell
//! cargo run --example client -- 5000           # in another: waits, then prints the job
//! SERVER=http://127.0.0.1:3000 cargo run --example client
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_serverless::client::{FollowLayer, PropagateDeadlineLayer};
use tower_serverless::deadline::DeadlineSource;
use tower_serverless::Deadline;

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let server = std::env::var("SERVER").unwrap_or_else(|_| "http://127.0.0.1:3000".to_owned());
    let ms: u64 = match std::env::args().nth(1) {
        Some(ms) => ms
            .parse()
            .map_err(|_| format!("not milliseconds: {ms:?}"))?,
        None => 3000,
    };
    let client = ServiceBuilder::new()
        .layer(FollowLayer::new())
        .layer(PropagateDeadlineLayer::grpc_timeout())
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let request = Request::post(format!("{server}/jobs/{ms}")).body(Full::default())?;
    // The whole call, polls included, has a minute.
    let deadline = Deadline::after(Duration::from_secs(60), DeadlineSource::Custom("client"));
    let response = deadline.scope(client.oneshot(request)).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("{status} {}", String::from_utf8_lossy(&body));
    Ok(())
}
