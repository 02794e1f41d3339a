//! The demo's routes served by hyper on `PORT` (default 8080), for the AWS Lambda Web
//! Adapter.
//!
//! Each request's deadline comes from the headers the adapter forwards
//! (`x-amzn-request-context`, `x-amzn-lambda-context`): the front door's arrival plus its cap
//! (`REST_TIMEOUT_MS` for a REST API whose timeout was raised, `CLOUDFRONT_TIMEOUT_MS` for a
//! CloudFront distribution in front whose origin response timeout was) and the function's deadline,
//! as under the Lambda runner; `DEADLINE_MS` shortens it.
//!
//! Two ways to fail the invocation, chosen with env `ESCALATION`:
//! - `close` (default): an escalation closes the connection without an answer; the adapter
//!   reports the invocation as failed;
//! - `status`: an escalation answers `500` with `{"errorType", "errorMessage"}`; run the
//!   adapter with `AWS_LWA_ERROR_STATUS_CODES=500`.
//!
//! ```sh
//! PORT=8080 cargo run --example behind_web_adapter
//! curl -i localhost:8080/fail    # curl: (52) Empty reply from server
//! ```

mod app;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::{BoxError, Layer, Service};
use tower_serverless::EscalateLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let settings = app::Settings::from_env()?;
    let offload = settings.offload_layer().await?;
    // The deadlines of the front door and the function, from the headers the adapter
    // forwards (it overwrites any a client sent).
    let app = app::layered(settings.adapter_deadline_layer()?, &offload);
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    match std::env::var("ESCALATION").as_deref() {
        Ok("status") => serve(listener, app.layer(EscalateLayer::new().infallible())).await,
        Ok("close") | Err(_) => serve(listener, EscalateLayer::new().layer(app)).await,
        Ok(other) => Err(format!("ESCALATION must be close or status, not {other:?}").into()),
    }
}

async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    service: S,
) -> Result<(), Box<dyn std::error::Error>>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            // An escalation ends the connection with an error: that is the point.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
