//! A Redis (Debian's `redis-server`) or Valkey (`valkey-server`, on PATH or
//! in the MySQL sid chroot) server for one test, on a free port, started
//! like the MySQL servers (tied to the test process: it dies with it) and
//! killed when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `redis-server` on PATH (`apt-get install redis-server`).
    Redis,
    /// `valkey-server` on PATH, else in the chroot at
    /// `$CAUSEWAY_MYSQL_ROOT` (default `/var/tmp/causeway/sid-root`).
    Valkey,
}

/// A running server.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn command(kind: Kind, port: u16) -> Command {
    let args = [
        "--port".to_string(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        "".into(),
        "--appendonly".into(),
        "no".into(),
        "--protected-mode".into(),
        "no".into(),
        "--dir".into(),
        "/tmp".into(),
    ];
    match kind {
        Kind::Redis => {
            assert!(
                on_path("redis-server"),
                "redis-server not found: apt-get install -y redis-server (integration/test.sh does)"
            );
            let mut c = Command::new("redis-server");
            c.args(args);
            c
        }
        Kind::Valkey if on_path("valkey-server") => {
            let mut c = Command::new("valkey-server");
            c.args(args);
            c
        }
        Kind::Valkey => {
            let root = std::env::var("CAUSEWAY_MYSQL_ROOT")
                .unwrap_or_else(|_| causeway_sandbox::dist::DEFAULT_CHROOT.to_string());
            assert!(
                std::path::Path::new(&root)
                    .join("usr/bin/valkey-server")
                    .exists(),
                "valkey-server not found on PATH nor in {root} (integration/test.sh installs it)"
            );
            let mut c = Command::new("chroot");
            c.arg(root).arg("/usr/bin/valkey-server").args(args);
            c
        }
    }
}

/// Whether a PING on `port` answers PONG.
fn pong(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl RedisServer {
    /// Starts a server of `kind` and waits (bounded) until it answers.
    pub fn start(kind: Kind) -> RedisServer {
        let port = free_port();
        let mut cmd = command(kind, port);
        cmd.stdout(std::process::Stdio::null());
        let child = causeway_sandbox::process::spawn_tied(cmd).expect("start the server");
        let mut s = RedisServer {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pong(port) {
            if let Some(c) = s.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("{kind:?} server exited at start: {st}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?} server never answered PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: a hung Redis.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running").id();
        // SIGSTOP / SIGCONT on Linux
        let sig = if frozen { 19 } else { 18 };
        assert!(causeway_sandbox::process::signal(pid, sig));
    }

    /// Runs one command (inline protocol) and returns the raw reply.
    pub fn raw(&self, cmd: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The number of keys (DBSIZE).
    pub fn dbsize(&self) -> u64 {
        let r = self.raw("DBSIZE");
        r.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("DBSIZE answered {r:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
