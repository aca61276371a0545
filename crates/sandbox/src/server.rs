//! One sandbox mysqld: option file, process lifecycle, readiness, connections.
//!
//! A [`Server`] owns `<topology dir>/<name>/` (datadir `data/`, `my.cnf`,
//! `error.log`, `stdout.log`). The process is forked via
//! [`crate::process::spawn_tied`], so it dies with the test process, and it is
//! SIGKILLed when the `Server` is dropped.

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::dist::MysqlDist;
use crate::flavor::Flavor;
use crate::process::{self, ProcessError};
use crate::template::{self, TemplateError};
use crate::users;

/// Errors managing one server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Filesystem error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Template problem.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Could not fork mysqld.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// No free port could be found.
    #[error("no free TCP port on 127.0.0.1: {0}")]
    NoFreePort(#[source] std::io::Error),
    /// mysqld could not bind its port (someone else took it).
    #[error("{name}: port {port} already in use; error log tail:\n{log}")]
    PortInUse {
        /// Server name.
        name: String,
        /// The port.
        port: u16,
        /// Error log tail.
        log: String,
    },
    /// mysqld exited while starting.
    #[error("{name} (port {port}) exited during startup ({status}); error log tail:\n{log}")]
    Exited {
        /// Server name.
        name: String,
        /// The port.
        port: u16,
        /// Exit status.
        status: String,
        /// Error log tail.
        log: String,
    },
    /// mysqld did not accept connections in time.
    #[error(
        "{name} (port {port}) not accepting connections after {timeout:?} \
         (last error: {last}); error log tail:\n{log}"
    )]
    Timeout {
        /// Server name.
        name: String,
        /// The port.
        port: u16,
        /// The bound.
        timeout: Duration,
        /// Last connection error.
        last: String,
        /// Error log tail.
        log: String,
    },
    /// mysqld did not shut down in time (it was then killed).
    #[error("{name}: clean shutdown took longer than {timeout:?}; killed")]
    StopTimeout {
        /// Server name.
        name: String,
        /// The bound.
        timeout: Duration,
    },
    /// A query failed.
    #[error("{name}: {source}")]
    Mysql {
        /// Server name.
        name: String,
        /// The driver error.
        #[source]
        source: mysql_async::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.to_path_buf();
    move |source| ServerError::Io { what, path, source }
}

/// How long a clean shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a first start retries on a port collision.
const PORT_ATTEMPTS: usize = 8;

/// Shrinks performance_schema and caches: ~540 MB -> ~340 MB RSS per idle
/// mysqld 9.7. The replication tables are unaffected.
const LOW_MEMORY: &[&str] = &[
    "loose-performance-schema-digests-size=1000",
    "loose-performance-schema-events-statements-history-long-size=100",
    "loose-performance-schema-events-stages-history-long-size=100",
    "loose-performance-schema-events-waits-history-long-size=100",
    "loose-performance-schema-events-transactions-history-long-size=100",
    "loose-performance-schema-max-digest-length=256",
    "loose-performance-schema-max-sql-text-length=1024",
    "loose-performance-schema-max-table-instances=1000",
    "loose-performance-schema-max-table-handles=1000",
    "loose-performance-schema-max-file-instances=1000",
    "loose-performance-schema-accounts-size=100",
    "loose-performance-schema-hosts-size=100",
    "loose-performance-schema-users-size=100",
    "innodb-log-buffer-size=4M",
    "table-open-cache=400",
];

/// Ports handed out to live servers of this process.
static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn reserve_port() -> Result<u16, ServerError> {
    let mut ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let set = ports.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").map_err(ServerError::NoFreePort)?;
        let port = l.local_addr().map_err(ServerError::NoFreePort)?.port();
        if set.insert(port) {
            return Ok(port);
        }
    }
    Err(ServerError::NoFreePort(std::io::Error::other(
        "bind(0) kept returning ports already in use by this process",
    )))
}

fn release_port(port: u16) {
    let mut ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = ports.as_mut() {
        set.remove(&port);
    }
}

/// What a server is created with.
#[derive(Debug, Clone)]
pub(crate) struct ServerSpec {
    pub name: String,
    pub server_id: u32,
    /// Extra `[mysqld]` lines.
    pub extra: Vec<String>,
    pub ready_timeout: Duration,
}

/// A sandbox mysqld. Methods take `&self`; the process handle is internal.
#[derive(Debug)]
pub struct Server {
    spec: ServerSpec,
    port: AtomicU16,
    dir: PathBuf,
    dist: Arc<MysqlDist>,
    child: Mutex<Option<Child>>,
}

impl Server {
    /// Copies the template into `<parent>/<name>`, picks a port and writes
    /// the option file. Blocking (runs `cp`).
    pub(crate) fn create(
        dist: Arc<MysqlDist>,
        template: &Path,
        parent: &Path,
        spec: ServerSpec,
    ) -> Result<Server, ServerError> {
        let dir = parent.join(&spec.name);
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        template::copy_template(template, &dir.join("data"))?;
        let server = Server {
            port: AtomicU16::new(reserve_port()?),
            spec,
            dir,
            dist,
            child: Mutex::new(None),
        };
        server.write_config()?;
        Ok(server)
    }

    /// Appends a `[mysqld]` option line (e.g. `read-only=ON`) to the
    /// server's option file; it applies from the next [`Server::start`].
    pub fn add_option(&self, line: &str) -> Result<(), ServerError> {
        use std::io::Write;
        let path = self.config_path();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        writeln!(f, "{line}").map_err(io_err("writing", &path))
    }

    fn write_config(&self) -> Result<(), ServerError> {
        let inner = |p: PathBuf| self.dist.inner_path(&p).display().to_string();
        let mut c = String::from("[mysqld]\n");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            c.push_str("user=root\n");
        }
        let port = self.port();
        if self.dist.flavor() == Flavor::Mariadb {
            let lines = crate::mariadb::config_lines(
                &inner(self.datadir()),
                &inner(self.dir.clone()),
                port,
                self.spec.server_id,
            );
            for line in lines.iter().chain(self.spec.extra.iter()) {
                c.push_str(line);
                c.push('\n');
            }
            let path = self.config_path();
            return fs::write(&path, c).map_err(io_err("writing", &path));
        }
        for line in [
            format!("datadir={}", inner(self.datadir())),
            format!("socket={}", inner(self.datadir().join("mysqld.sock"))),
            format!("pid-file={}", inner(self.dir.join("mysqld.pid"))),
            format!("log-error={}", inner(self.error_log())),
            format!("port={port}"),
            "bind-address=127.0.0.1".into(),
            "mysqlx=OFF".into(),
            format!("server-id={}", self.spec.server_id),
            "report-host=127.0.0.1".into(),
            format!("report-port={port}"),
            "gtid-mode=ON".into(),
            "enforce-gtid-consistency=ON".into(),
            "log-bin=binlog".into(),
            "relay-log=relay-bin".into(),
            "log-replica-updates=ON".into(),
            "relay-log-recovery=ON".into(),
            "skip-name-resolve".into(),
            "secure-file-priv=".into(),
            "max_allowed_packet=1G".into(),
            "innodb-redo-log-capacity=32M".into(),
            "innodb-buffer-pool-size=64M".into(),
            "innodb-flush-log-at-trx-commit=2".into(),
            "innodb-doublewrite=OFF".into(),
            "sync-binlog=0".into(),
            "performance-schema=ON".into(),
        ]
        .into_iter()
        .chain(LOW_MEMORY.iter().map(|s| s.to_string()))
        {
            c.push_str(&line);
            c.push('\n');
        }
        for line in &self.spec.extra {
            c.push_str(line);
            c.push('\n');
        }
        let path = self.config_path();
        fs::write(&path, c).map_err(io_err("writing", &path))
    }

    /// "primary", "r1", "r2", ...
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The configured `server_id`.
    pub fn server_id(&self) -> u32 {
        self.spec.server_id
    }

    /// Host path of the datadir.
    pub fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Host path of this server's directory (datadir, option file, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Host path of the option file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }

    /// Host path of the mysqld error log.
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// The last `lines` lines of the error log.
    pub fn error_log_tail(&self, lines: usize) -> String {
        process::tail(&self.error_log(), lines)
    }

    /// The process id of the running mysqld, if any.
    pub fn pid(&self) -> Option<u32> {
        let mut g = self.child.lock().unwrap_or_else(|e| e.into_inner());
        reap(&mut g);
        g.as_ref().map(|c| c.id())
    }

    /// Whether mysqld is running (it may still be starting).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Connection options for `user`/`password` over TCP.
    pub fn opts_for(&self, user: &str, password: &str) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port())
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .into()
    }

    /// Connection options for root.
    pub fn opts(&self) -> mysql_async::Opts {
        self.opts_for(users::ROOT_USER, users::ROOT_PASSWORD)
    }

    /// `mysql://root@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mysql://{}@{}", users::ROOT_USER, self.addr())
    }

    /// A new pool of root connections (create it inside the runtime using it).
    pub fn pool(&self) -> mysql_async::Pool {
        mysql_async::Pool::new(self.opts())
    }

    /// A new root connection.
    pub async fn conn(&self) -> Result<mysql_async::Conn, ServerError> {
        mysql_async::Conn::new(self.opts())
            .await
            .map_err(|source| self.mysql_err(source))
    }

    pub(crate) fn mysql_err(&self, source: mysql_async::Error) -> ServerError {
        ServerError::Mysql {
            name: self.spec.name.clone(),
            source,
        }
    }

    /// MySQL or MariaDB.
    pub fn flavor(&self) -> Flavor {
        self.dist.flavor()
    }

    /// The `mysql` CLI preset with `-h127.0.0.1 -P<port> -uroot --protocol=TCP`.
    pub fn mysql_cli(&self) -> Command {
        let mut c = self.dist.mysql_client_command();
        c.arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg("-h127.0.0.1")
            .arg(format!("-P{}", self.port()))
            .arg(format!("-u{}", users::ROOT_USER));
        c
    }

    /// First start: retries with a new port if mysqld cannot bind.
    pub(crate) async fn start_initial(&self) -> Result<(), ServerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start().await {
                Err(ServerError::PortInUse { .. }) if attempt < PORT_ATTEMPTS => {
                    let old = self.port();
                    let new = reserve_port()?;
                    self.port.store(new, Ordering::Relaxed);
                    release_port(old);
                    tracing::debug!(server = %self.name(), old, new, "port taken; retrying");
                    self.write_config()?;
                }
                other => return other,
            }
        }
    }

    /// Starts mysqld on the existing datadir and port and waits until it
    /// accepts connections. No-op if it is already running.
    pub async fn start(&self) -> Result<(), ServerError> {
        if self.is_running() {
            return Ok(());
        }
        let log_offset = fs::metadata(self.error_log()).map(|m| m.len()).unwrap_or(0);
        let stdout_path = self.dir.join("stdout.log");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdout_path)
            .map_err(io_err("opening", &stdout_path))?;
        let err = out.try_clone().map_err(io_err("opening", &stdout_path))?;
        let mut cmd = self.dist.mysqld_command();
        cmd.arg(format!(
            "--defaults-file={}",
            self.dist.inner_path(&self.config_path()).display()
        ))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
        let child = process::spawn_tied(cmd)?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        match self.wait_ready(log_offset).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    fn log_since(&self, offset: u64) -> String {
        let bytes = fs::read(self.error_log()).unwrap_or_default();
        let start = (offset as usize).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes[start..]).to_string();
        let lines: Vec<&str> = text.lines().collect();
        let mut tail = lines[lines.len().saturating_sub(30)..].join("\n");
        let stdout = process::tail(&self.dir.join("stdout.log"), 10);
        if !stdout.trim().is_empty() {
            tail.push_str("\n--- stdout/stderr ---\n");
            tail.push_str(&stdout);
        }
        tail
    }

    async fn wait_ready(&self, log_offset: u64) -> Result<(), ServerError> {
        let timeout = self.spec.ready_timeout;
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            let exited = {
                let mut g = self.child.lock().unwrap_or_else(|e| e.into_inner());
                match g.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => {
                        *g = None;
                        Some(status.to_string())
                    }
                    None => Some("not running".to_string()),
                    _ => None,
                }
            };
            if let Some(status) = exited {
                let log = self.log_since(log_offset);
                if log.contains("Bind on TCP/IP port") || log.contains("Address already in use") {
                    return Err(ServerError::PortInUse {
                        name: self.spec.name.clone(),
                        port: self.port(),
                        log,
                    });
                }
                return Err(ServerError::Exited {
                    name: self.spec.name.clone(),
                    port: self.port(),
                    status,
                    log,
                });
            }
            let attempt =
                tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(self.opts()))
                    .await;
            match attempt {
                Ok(Ok(mut conn)) => {
                    let ping = conn.query_drop("SELECT 1").await;
                    let _ = conn.disconnect().await;
                    match ping {
                        Ok(()) => return Ok(()),
                        Err(e) => last = e.to_string(),
                    }
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "connect timed out".into(),
            }
            if Instant::now() >= deadline {
                return Err(ServerError::Timeout {
                    name: self.spec.name.clone(),
                    port: self.port(),
                    timeout,
                    last,
                    log: self.log_since(log_offset),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clean shutdown (SIGTERM, wait up to 60 s, then SIGKILL). No-op if stopped.
    pub async fn stop(&self) -> Result<(), ServerError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        process::signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !self.is_running() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        Err(ServerError::StopTimeout {
            name: self.spec.name.clone(),
            timeout: STOP_TIMEOUT,
        })
    }

    /// SIGKILL and reap. No-op if not running.
    pub fn kill(&self) {
        let mut g = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = g.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn reap(child: &mut Option<Child>) {
    if let Some(c) = child.as_mut() {
        if !matches!(c.try_wait(), Ok(None)) {
            *child = None;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        release_port(self.port());
    }
}
