use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use lambda_extension::{service_fn, Extension, NextEvent};
use lambda_http::lambda_runtime::{self, Diagnostic};
use lambda_http::{IntoResponse, Request, Service};
use tower::Layer;

use super::layer::{Invocations, LambdaLayer, TrackLayer};
use crate::deadline::DEFAULT_MARGIN;
use crate::offload::{DetachedTasks, OffloadLayer};

/// Runs `service` under `lambda_http`, holding each invocation open until the work that
/// `offload` detached during it is done. See the [module docs](super).
///
/// # Errors
///
/// When the extension cannot register or the runtime fails, as `lambda_http::run` does.
pub async fn run<S, R, E>(service: S, offload: &OffloadLayer) -> Result<(), lambda_http::Error>
where
    S: Service<Request, Response = R, Error = E>,
    S::Future: Send + 'static,
    R: IntoResponse,
    E: fmt::Debug + Into<Diagnostic>,
{
    Runner::new()
        .wait_for(offload.detached())
        .run(service)
        .await
}

/// [`run`] with its settings: the margin, and every [`DetachedTasks`] to wait for.
#[derive(Clone, Debug)]
#[must_use]
pub struct Runner {
    margin: Duration,
    detached: Vec<DetachedTasks>,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl Runner {
    /// A runner with a 1 s margin that waits for no detached task yet.
    pub fn new() -> Self {
        Self {
            margin: DEFAULT_MARGIN,
            detached: Vec::new(),
        }
    }

    /// The margin kept below the gateway's cap and the function's deadline (default 1 s).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Also waits for these detached tasks (from [`OffloadLayer::detached`]).
    pub fn wait_for(mut self, detached: DetachedTasks) -> Self {
        self.detached.push(detached);
        self
    }

    /// Registers the extension, then runs `service` under `lambda_http` with
    /// [`LambdaLayer`] outermost.
    ///
    /// # Errors
    ///
    /// When the extension cannot register or the runtime fails.
    pub async fn run<S, R, E>(self, service: S) -> Result<(), lambda_http::Error>
    where
        S: Service<Request, Response = R, Error = E>,
        S::Future: Send + 'static,
        R: IntoResponse,
        E: fmt::Debug + Into<Diagnostic>,
    {
        let invocations = Invocations::default();
        let waiting = invocations.clone();
        let detached = self.detached;
        let processor = service_fn(move |event: lambda_extension::LambdaEvent| {
            let (invocations, detached) = (waiting.clone(), detached.clone());
            async move {
                if let NextEvent::Invoke(invoke) = event.next {
                    hold(
                        &invocations,
                        &detached,
                        &invoke.request_id,
                        invoke.deadline_ms,
                    )
                    .await;
                }
                Ok::<(), lambda_extension::Error>(())
            }
        });
        // Registered during init, before the runtime asks for its first invocation.
        let extension = Extension::new()
            .with_events(&["INVOKE"])
            .with_events_processor(processor)
            .with_extension_name("tower-serverless")
            .register()
            .await?;
        let service = LambdaLayer::new().margin(self.margin).layer(service);
        // `lambda_http::run`, with the tracking outermost: an invocation is finished once
        // its response or error is posted, whatever the handler did.
        let runtime = lambda_runtime::Runtime::new(lambda_http::Adapter::from(service))
            .layer(lambda_runtime::layers::TracingLayer::new())
            .layer(TrackLayer(invocations));
        tokio::try_join!(runtime.run(), extension.run())?;
        Ok(())
    }
}

/// Holds the invocation until its response or error is posted and no detached task runs,
/// and never
/// past the function's deadline.
async fn hold(
    invocations: &Invocations,
    detached: &[DetachedTasks],
    request_id: &str,
    deadline_ms: u64,
) {
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let done = async {
        invocations.finished(request_id).await;
        for tasks in detached {
            tasks.wait_idle().await;
        }
    };
    if tokio::time::timeout(left, done).await.is_err() {
        tracing::warn!(target: "tower_serverless::lambda", request_id, "released the invocation at the function's deadline with work still running");
    }
}
