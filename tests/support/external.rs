//! The `causeway` binary as a separate process in front of the shared
//! topology, for tests that judge the proxy from outside as an operator
//! would: its memory high-water mark (`VmHWM` from /proc), its log (no
//! `panicked`), whether it is still alive, and whether a control client is
//! served in time while an attack runs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `causeway` process; killed on drop.
pub struct ExternalProxy {
    /// MySQL port.
    pub port: u16,
    /// The config file it was started with (rewrite it and [`Self::reload`]).
    pub config_path: PathBuf,
    log_path: PathBuf,
    dir: PathBuf,
    child: Child,
}

impl ExternalProxy {
    /// Starts the binary with the shared test config after `tweak` edits it
    /// (`listen` is already set to a free port; the admin HTTP endpoint is
    /// off). Returns once a client can log in (bounded, 20 s).
    pub async fn start(tweak: impl FnOnce(String) -> String) -> ExternalProxy {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "cw-ext-{}-{}",
            std::process::id(),
            super::unique_db("p")
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let text = super::config_text(super::topology()).replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        let config_path = dir.join("causeway.toml");
        std::fs::write(&config_path, tweak(text)).expect("write config");
        let log_path = dir.join("causeway.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["--config", config_path.to_str().expect("utf-8 path")])
            .env("CAUSEWAY_LOG", "info")
            // tracing writes to stdout, panics to stderr: keep both
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn causeway");
        let p = ExternalProxy {
            port,
            config_path,
            log_path,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = mysql_async::Conn::new(p.opts("app", "apppw")).await {
                use mysql_async::prelude::Queryable;
                if c.query_drop("SELECT 1").await.is_ok() {
                    let _ = c.disconnect().await;
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "causeway never served a client; log:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// mysql_async options for `user` through this proxy.
    pub fn opts(&self, user: &str, password: &str) -> mysql_async::Opts {
        super::opts(self.port, user, password, None)
    }

    /// A `/proc/<pid>/status` field in KiB (`VmHWM`, `VmRSS`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} missing in /proc status"))
    }

    /// Peak resident memory so far, KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Panics if the process exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("causeway exited ({status}); log:\n{}", self.log());
        }
    }

    /// Panics if the log mentions a panic.
    pub fn assert_no_panic(&self) {
        let log = self.log();
        assert!(
            !log.contains("panicked"),
            "causeway log mentions a panic:\n{log}"
        );
    }

    /// A control client logs in and runs `SELECT 1` within `limit`, or the
    /// test fails. Returns how long it took.
    pub async fn assert_served_within(&self, limit: Duration) -> Duration {
        use mysql_async::prelude::Queryable;
        let started = Instant::now();
        let run = async {
            let mut c = mysql_async::Conn::new(self.opts("app", "apppw")).await?;
            let v: Option<i64> = c.query_first("SELECT 1").await?;
            c.disconnect().await?;
            Ok::<_, mysql_async::Error>(v)
        };
        match tokio::time::timeout(limit, run).await {
            Ok(Ok(Some(1))) => started.elapsed(),
            Ok(other) => panic!("control client failed: {other:?}"),
            Err(_) => panic!("control client not served within {limit:?}"),
        }
    }

    /// The checks every hostile-client test ends with: alive, a control
    /// client served within 1 s, peak memory under `idle_hwm_kib + 64 MiB`,
    /// no panic in the log.
    pub async fn assert_healthy_after_attack(&mut self, idle_hwm_kib: u64) {
        self.assert_alive();
        self.assert_served_within(Duration::from_secs(1)).await;
        let hwm = self.vm_hwm_kib();
        assert!(
            hwm <= idle_hwm_kib + 64 * 1024,
            "VmHWM {hwm} KiB exceeds idle {idle_hwm_kib} KiB + 64 MiB"
        );
        self.assert_no_panic();
    }

    /// Sends SIGHUP (reload the config file).
    pub fn reload(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(ok.success());
    }
}

impl Drop for ExternalProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
