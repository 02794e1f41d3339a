//! A local server with every layer of the crate on an in-memory store.
//!
//! ```sh
//! cargo run --example demo          # BIND=127.0.0.1:3000 by default
//! curl -i localhost:3000/fail       # 500 {"errorType":"DemoFailure",...}
//! DEADLINE_MS=1000 cargo run --example demo
//! curl -i localhost:3000/sleep/3000 # 504 problem+json after 1 s
//! curl -i -X POST localhost:3000/jobs/5000   # 202 Accepted, Location: /tasks/<id>
//! ```
//!
//! With `--features redis` and `REDIS_URL=redis://127.0.0.1:6379`, tasks live in Redis;
//! with `--features dynamodb`, `TASKS_TABLE=tasks` and
//! `AWS_ENDPOINT_URL=http://127.0.0.1:8000` (DynamoDB Local), in a DynamoDB table the demo
//! creates when it is missing.
//! The README lists the routes and a curl line for each behaviour. Ctrl-C or `SIGTERM`
//! stops it gracefully: detached jobs finish first, for up to 25 s.

mod app;

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let settings = app::Settings::from_env()?;
    // `axum::serve` needs `Error = Infallible`: escalations become a designated status with
    // a JSON body, as the Lambda Web Adapter's `AWS_LWA_ERROR_STATUS_CODES` expects.
    let offload = settings.offload_layer().await?;
    let app = app::serve_app(&settings, &offload);

    let listener = tokio::net::TcpListener::bind(&bind).await?;
    eprintln!("demo listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // Detached work finishes before the process ends, for 25 s at most (inside the 30 s
    // that Docker, ECS and Kubernetes give after `SIGTERM`); what still runs then is
    // stored as failed ("the server shut down").
    let stopped = offload.detached().shutdown(Duration::from_secs(25)).await;
    eprintln!("demo shut down; detached tasks stopped unfinished: {stopped}");
    Ok(())
}

/// Ctrl-C, or `SIGTERM` as a container's runtime sends it (`docker stop`, ECS, Kubernetes).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        eprintln!("SIGTERM cannot be listened for; Ctrl-C still stops the demo gracefully");
    }
    let _ = tokio::signal::ctrl_c().await;
}
