//! A real `nats-server` on a loopback port for tests (`nats-server` from the Debian package).
//!
//! Missing binary: the test prints SKIP and passes, unless `FLEVUM_REQUIRE_NATS=1` (CI), where
//! it fails. Public so the root binary's tests can use the same helper.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nats-server, killed on drop.
pub struct NatsServer {
    /// The server process.
    child: Child,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// JetStream storage folder, if started with JetStream.
    pub store: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server (with JetStream storage in `store` if given), or None (after printing
    /// SKIP) when the binary is missing and NATS is not required.
    pub fn start(test: &str, store: Option<PathBuf>) -> Option<NatsServer> {
        let port = free_port();
        Self::start_on(test, port, store)
    }

    /// Starts a server on a given port (to restart one where it was).
    pub fn start_on(test: &str, port: u16, store: Option<PathBuf>) -> Option<NatsServer> {
        let bin = std::env::var("FLEVUM_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let mut cmd = Command::new(&bin);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(dir) = &store {
            cmd.arg("-js").arg("-sd").arg(dir);
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("FLEVUM_REQUIRE_NATS").as_deref() != Ok("1"),
                    "FLEVUM_REQUIRE_NATS=1 but {bin} cannot start: {e}"
                );
                eprintln!("SKIP {test}: {bin} not available ({e})");
                return None;
            }
        };
        let mut server = NatsServer { child, port, store };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Someone else's listener on the port would also accept: ours must still be running.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            matches!(server.child.try_wait(), Ok(None)),
            "nats-server on port {port} exited (port taken?)"
        );
        Some(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port that was free a moment ago and that no other test of this process got from
/// here (tests run in parallel threads: the kernel may hand a port just released to the next
/// caller, and two servers on one port make one test talk to the other's server).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(14222);
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
    14222
}
