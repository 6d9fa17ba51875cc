//! Crash helpers: kill the server without warning and start it again on the same data
//! dir, as a power cut or an OOM kill followed by a restart by systemd would.

use std::process::ExitStatus;

use super::TestServer;

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

    /// Starts the server again on the same data dir after it exited, without the
    /// environment variables named in `unset` (such as `FAILPOINTS`).
    pub async fn relaunch_without(&mut self, unset: &[&str]) {
        self.options
            .env
            .retain(|(name, _)| !unset.contains(&name.as_str()));
        self.launch().await;
    }
}
