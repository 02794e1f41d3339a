//! A real `redis-server` on a free loopback port, started and stopped by the test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// With a folder, every write goes to an append-only file there, so a restart keeps
    /// the data, as a production Redis does.
    dir: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server whose data survives [`stop`](Self::stop) and [`restart`](Self::restart).
    pub async fn start_persistent() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "tower-serverless-redis-{port}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_with(Some(dir)).await
    }

    async fn start_with(dir: Option<std::path::PathBuf>) -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
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
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"]);
        match &self.dir {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (bash .ci/run installs it)");
        self.child = Some(child);
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            // Nothing signals readiness but the port itself.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not listen on port {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
