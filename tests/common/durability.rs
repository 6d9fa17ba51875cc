//! Crash helpers: kill the server without warning and start it again on the same data
//! dir, as a power cut or an OOM kill followed by a restart by systemd would.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::{TestServer, START_TIMEOUT};

impl TestServer {
    /// Kills the server with SIGKILL (no shutdown, no final flush) and waits for it to
    /// exit.
    pub async fn kill(&mut self) -> ExitStatus {
        self.stop("KILL").await
    }

    /// Kills the server with SIGKILL and starts it again on the same data dir.
    pub async fn crash_and_restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }

    /// Waits for the server to exit by itself; its exit status.
    pub async fn exited(&mut self) -> ExitStatus {
        let deadline = Instant::now() + START_TIMEOUT;
        let child = self.child.as_mut().expect("server running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "datapool did not exit:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again on the same data dir after it exited, without the
    /// environment variables named in `unset` (such as `FAILPOINTS`).
    pub async fn relaunch_without(&mut self, unset: &[&str]) {
        self.options
            .env
            .retain(|(name, _)| !unset.contains(&name.as_str()));
        self.launch().await;
    }
}
