//! A real `redis-server` on a free loopback port, started and stopped by the test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// In cluster mode: one node that serves every hash slot, which checks that each
    /// script's keys hash to one slot as a real cluster does.
    cluster: bool,
    /// With a folder, every write goes to an append-only file there, so a restart keeps
    /// the data, as a production Redis does.
    dir: Option<std::path::PathBuf>,
}

/// How long a server may take to start on a loaded machine.
const STARTUP: Duration = Duration::from_secs(30);

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server whose data survives [`stop`](Self::stop) and [`restart`](Self::restart).
    pub async fn start_persistent() -> Self {
        let port = super::free_port();
        let dir = std::env::temp_dir().join(format!(
            "tower-serverless-redis-{port}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_with(Some(dir)).await
    }

    /// A one-node Redis Cluster that serves all 16,384 slots.
    pub async fn start_cluster() -> Self {
        let port = super::free_port();
        let dir = std::env::temp_dir().join(format!(
            "tower-serverless-redis-cluster-{port}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            child: None,
            cluster: true,
            dir: Some(dir),
        };
        server.restart().await;
        let client = redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query_async(&mut connection)
            .await
            .unwrap();
        // The node takes its slots at once; `cluster_state:ok` follows within its start-up.
        let started = std::time::Instant::now();
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut connection)
                .await
                .unwrap();
            if info.contains("cluster_state:ok") {
                return server;
            }
            assert!(
                started.elapsed() < STARTUP,
                "the cluster never became ok: {info}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn start_with(dir: Option<std::path::PathBuf>) -> Self {
        let mut server = Self {
            port: super::free_port(),
            child: None,
            cluster: false,
            dir,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port) and waits until it accepts connections.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::env::temp_dir().join(format!("tower-serverless-redis-{}.log", self.port));
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"]);
        match &self.dir {
            Some(dir) if self.cluster => command
                .args(["--appendonly", "no", "--cluster-enabled", "yes", "--dir"])
                .arg(dir),
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (bash .ci/run installs it)");
        self.child = Some(child);
        // The binary is installed, not built here: this wait is start-up only. Nothing
        // signals readiness but the port itself.
        let started = std::time::Instant::now();
        while started.elapsed() < STARTUP {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "redis-server exited ({status}) before listening on port {}; its log:\n{}",
                    self.port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "redis-server did not listen on port {} within {STARTUP:?}",
            self.port
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

#[cfg(feature = "axum")]
impl super::shared_store::SharedStore for RedisServer {
    async fn connect(&self) -> std::sync::Arc<dyn tower_serverless::offload::TaskStore> {
        let store = tower_serverless::offload::RedisStore::connect(&self.url())
            .await
            .unwrap()
            .key_prefix("test:");
        std::sync::Arc::new(store)
    }

    fn stop(&mut self) {
        RedisServer::stop(self);
    }

    async fn restart(&mut self) {
        RedisServer::restart(self).await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
