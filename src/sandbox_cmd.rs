//! `causeway sandbox`: a complete playground in one command.
//!
//! Starts a throwaway MySQL GTID primary with replicas (`causeway-sandbox`:
//! mysqld from `$CAUSEWAY_MYSQLD`, `PATH`, or a Debian sid root built on the
//! first run), builds a causeway [`Config`] pointing at them, runs the proxy
//! in this process, prints how to connect, and on Ctrl-C stops the proxy and
//! the servers (their datadirs are removed).
//!
//! [`start`] does the setup and returns a [`SandboxHandle`] (tests connect
//! through it); [`run`] is `start` + wait for Ctrl-C + [`SandboxHandle::stop`].
//!
//! Accounts (created by the sandbox on every server, mapped by the config):
//!
//! | client login | backend login | notes |
//! |---|---|---|
//! | `app` / `apppw` | `app` / `apppw` | the application user |
//! | `admin` / `adminpw` | `root` / (empty) | `admin = true`: `SHOW CAUSEWAY BACKENDS` |
//!
//! The replica monitor logs in as `monitor` / `monitorpw`.
//!
//! TLS is on by default (`--no-tls` turns it off): a throwaway CA and a
//! server certificate for `localhost` and 127.0.0.1 are generated under the
//! topology's directory (removed with it), `[tls]` offers them to clients
//! (the printed command line verifies them with `--ssl-mode=VERIFY_IDENTITY
//! --ssl-ca=...`), and `[backend_tls] mode = "verify_ca"` checks the servers
//! against MySQL's own auto-generated `ca.pem` files.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_config::{Config, ConfigError};
use causeway_sandbox::template::{self, TemplateError};
use causeway_sandbox::{
    dist, CertError, CertFiles, DistError, Flavor, MysqlDist, Options, Topology, TopologyError,
};

use crate::proxy::{Proxy, ProxyError};

/// Default MySQL-protocol listen address of the sandbox proxy.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6033";
/// Default HTTP admin (metrics) listen address of the sandbox proxy.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:6080";

/// Errors of `causeway sandbox`.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No usable MySQL could be found or built.
    #[error("locating MySQL: {0}")]
    Dist(#[from] DistError),
    /// The template datadir could not be initialised.
    #[error("initialising the MySQL template datadir: {0}")]
    Template(#[from] TemplateError),
    /// The servers or replication did not come up.
    #[error("starting the MySQL servers: {0}")]
    Topology(#[from] TopologyError),
    /// The generated configuration was refused (a bug, or a bad listen address).
    #[error("sandbox configuration: {0}")]
    Config(#[from] ConfigError),
    /// The proxy could not start (e.g. the listen port is taken: use --listen).
    #[error("starting causeway: {0}")]
    Proxy(#[from] ProxyError),
    /// The options are unusable.
    #[error("invalid sandbox option: {0}")]
    Option(String),
    /// An I/O error (listener address, signal handler).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificates could not be generated.
    #[error("generating TLS certificates: {0}")]
    Certs(#[from] CertError),
    /// A background task panicked or was cancelled.
    #[error("sandbox task failed: {0}")]
    Task(String),
}

/// Options of `causeway sandbox`.
#[derive(Debug, Clone)]
pub struct SandboxOpts {
    /// MySQL-protocol listen address of the proxy ([`DEFAULT_LISTEN`]).
    pub listen: String,
    /// HTTP admin listen address (`/metrics`); `None` disables the endpoint.
    pub admin_listen: Option<String>,
    /// Number of GTID replicas (default 2).
    pub replicas: usize,
    /// Print progress lines for slow steps on stderr (default true).
    pub progress: bool,
    /// Offer TLS to clients with a generated certificate and verify the
    /// servers' certificates (default true; MariaDB sandboxes have no
    /// server certificates, so only the client side is TLS there).
    pub tls: bool,
    /// MySQL (default) or MariaDB (`--flavor mariadb`).
    pub flavor: Flavor,
}

impl Default for SandboxOpts {
    fn default() -> Self {
        SandboxOpts {
            listen: DEFAULT_LISTEN.to_string(),
            admin_listen: Some(DEFAULT_ADMIN_LISTEN.to_string()),
            replicas: 2,
            progress: true,
            tls: true,
            flavor: Flavor::Mysql,
        }
    }
}

/// A running sandbox: MySQL servers plus an in-process causeway in front.
/// Dropping it stops the proxy and removes the servers; [`SandboxHandle::stop`]
/// also waits for the listener to close.
#[derive(Debug)]
pub struct SandboxHandle {
    proxy: Arc<Proxy>,
    serve: Option<tokio::task::JoinHandle<()>>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    config: Config,
    tls: Option<CertFiles>,
    // Dropped last: kills every mysqld and removes the datadirs.
    topology: Topology,
}

impl SandboxHandle {
    /// Where the HTTP admin endpoint listens, when enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Where MySQL clients connect (the bound address, real port even for `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MySQL servers behind the proxy.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The running proxy.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// The configuration the proxy runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The generated certificates, when TLS is on.
    pub fn tls(&self) -> Option<&CertFiles> {
        self.tls.as_ref()
    }

    /// The `--ssl-ca` path the sandbox's own (possibly chrooted) `mysql`
    /// client sees, when TLS is on.
    pub fn ssl_ca(&self) -> Option<String> {
        let ca = &self.tls.as_ref()?.ca;
        let inner = self.topology.dist().inner_path(ca);
        Some(inner.to_string_lossy().into_owned())
    }

    /// A `mysql://` DSN for the `app` user through the proxy.
    pub fn dsn(&self) -> String {
        format!("mysql://app:apppw@{}/", self.addr)
    }

    /// The `mysql` command line (the sandbox's own client) for the `app` user
    /// through the proxy, shell-quoted.
    pub fn mysql_command_line(&self) -> String {
        let cmd = self.topology.dist().mysql_client_command();
        let mut words: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|w| shell_quote(&w.to_string_lossy()))
            .collect();
        words.extend([
            "--protocol=TCP".to_string(),
            format!("-h{}", self.addr.ip()),
            format!("-P{}", self.addr.port()),
            "-uapp".to_string(),
            "-papppw".to_string(),
        ]);
        if let Some(ca) = self.ssl_ca() {
            words.push(match self.topology.dist().flavor() {
                Flavor::Mysql => "--ssl-mode=VERIFY_IDENTITY".to_string(),
                Flavor::Mariadb => "--ssl-verify-server-cert".to_string(),
            });
            words.push(shell_quote(&format!("--ssl-ca={ca}")));
        }
        words.join(" ")
    }

    /// The text printed once the sandbox is ready: how to connect, the
    /// servers, where metrics are, how to pass a token.
    pub fn instructions(&self) -> String {
        let mut s = String::new();
        let topo = &self.topology;
        s.push_str(&format!(
            "\ncauseway sandbox is ready ({} {}, primary + {} GTID replica(s)).\n\n",
            match topo.dist().flavor() {
                Flavor::Mysql => "MySQL",
                Flavor::Mariadb => "MariaDB",
            },
            topo.dist().version(),
            topo.replicas().len()
        ));
        s.push_str("Connect through causeway:\n");
        s.push_str(&format!("  {}\n", self.mysql_command_line()));
        s.push_str(&format!("  DSN:   {}\n", self.dsn()));
        s.push_str(
            "  admin: -uadmin -padminpw  (SHOW CAUSEWAY BACKENDS; logs in to MySQL as root)\n",
        );
        if let Some(files) = &self.tls {
            s.push_str(&format!(
                "TLS:   CA certificate {} (clients: --ssl-ca=<that file>; \
                 certificate for localhost and 127.0.0.1)\n",
                files.ca.display()
            ));
        }
        if let Some(admin) = self.admin_addr {
            s.push_str(&format!(
                "Metrics: http://{admin}/metrics  (also /healthz, /readyz)\n"
            ));
        }
        s.push_str("\nServers (direct, bypassing causeway):\n");
        for srv in topo.servers() {
            s.push_str(&format!(
                "  {:<8} {}  datadir {}\n",
                srv.name(),
                srv.addr(),
                srv.datadir().display()
            ));
        }
        s.push_str(
            "\nTry a consistency token:\n  \
             CREATE DATABASE demo; CREATE TABLE demo.t (id INT PRIMARY KEY);\n  \
             INSERT INTO demo.t VALUES (1); SELECT @@causeway.token;\n  \
             -- in another session: SET @@causeway.token = '<token>'; SELECT * FROM demo.t;\n  \
             SELECT @@causeway.last_route;\n",
        );
        s.push_str("\nPress Ctrl-C to stop causeway and remove the servers.\n");
        s
    }

    /// Stops the proxy (listener and sessions), waits briefly for the
    /// listener to close, then kills the servers and removes their datadirs.
    pub async fn stop(mut self) {
        self.proxy.shutdown();
        if let Some(serve) = self.serve.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
        }
        // `self` drops here: Topology's Drop kills mysqld and removes dirs.
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.proxy.shutdown();
    }
}

/// Single-quotes `w` for a POSIX shell when it contains anything unusual.
fn shell_quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// Prints "  <what> ..." and, when done, the elapsed time.
struct Step {
    on: bool,
    started: Instant,
}

impl Step {
    fn begin(on: bool, what: &str) -> Step {
        if on {
            eprintln!("==> {what} ...");
        }
        Step {
            on,
            started: Instant::now(),
        }
    }

    fn done(self) {
        if self.on {
            eprintln!("    done in {:.1} s", self.started.elapsed().as_secs_f64());
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SandboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SandboxError::Task(e.to_string()))
}

/// Whether [`MysqlDist::locate_flavor`] will have to build the MariaDB
/// root (nothing in `$CAUSEWAY_MARIADBD`, `PATH` or the default root).
fn must_build_mariadb_root() -> bool {
    if std::env::var_os("CAUSEWAY_MARIADBD").is_some() {
        return false;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("mariadbd").is_file()))
        .unwrap_or(false);
    let root = std::env::var_os("CAUSEWAY_MARIADB_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| causeway_sandbox::flavor::DEFAULT_MARIADB_CHROOT.into());
    !on_path && !root.join("usr/sbin/mariadbd").is_file()
}

/// Whether [`MysqlDist::locate`] will have to build the Debian sid root
/// (nothing in `$CAUSEWAY_MYSQLD`, `PATH` or the default root).
fn must_build_root() -> bool {
    if std::env::var_os("CAUSEWAY_MYSQLD").is_some() {
        return false;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("mysqld").is_file()))
        .unwrap_or(false);
    if on_path {
        return false;
    }
    let root = std::env::var_os("CAUSEWAY_MYSQL_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dist::DEFAULT_CHROOT.into());
    !root.join("usr/sbin/mysqld").is_file()
}

/// Generates the client-side certificate and the bundle of the servers'
/// own CAs under the topology's directory.
fn make_certs(topo: &Topology) -> Result<CertFiles, SandboxError> {
    let dir = topo.dir().join("tls");
    let files = causeway_sandbox::certs::generate(&dir)?;
    if topo.dist().flavor() == Flavor::Mariadb {
        // Debian's MariaDB makes no certificates: only clients get TLS
        return Ok(files);
    }
    let mut bundle = Vec::new();
    for s in topo.servers() {
        let ca = s.datadir().join("ca.pem");
        bundle.extend(std::fs::read(&ca).map_err(|source| SandboxError::Io {
            what: "reading a server's ca.pem",
            source,
        })?);
    }
    std::fs::write(dir.join("mysql-ca.pem"), bundle).map_err(|source| SandboxError::Io {
        what: "writing the servers' CA bundle",
        source,
    })?;
    Ok(files)
}

/// The `[tls]` and `[backend_tls]` sections for generated certificates.
pub fn tls_text(files: &CertFiles) -> String {
    let bundle = files.ca.with_file_name("mysql-ca.pem");
    format!(
        "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[backend_tls]\nmode = \"verify_ca\"\nca = \"{}\"\n",
        files.cert.display(),
        files.key.display(),
        bundle.display()
    )
}

/// The `[tls]` section alone (clients only: MariaDB sandboxes have no
/// server certificates to verify).
pub fn client_tls_text(files: &CertFiles) -> String {
    format!(
        "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        files.cert.display(),
        files.key.display()
    )
}

/// The causeway configuration (TOML) for a topology.
pub fn config_text(topo: &Topology, listen: &str, admin_listen: Option<&str>) -> String {
    let mut s = format!(
        r#"# Generated by `causeway sandbox`.
[server]
listen = "{listen}"
connect_timeout_ms = 5000
shutdown_drain_ms = 2000

[admin]
enabled = {}
listen = "{}"

[[users]]
name = "app"
password = "apppw"

[[users]]
name = "admin"
password = "adminpw"
admin = true
backend_user = "root"
backend_password = ""

[primary]
name = "{}"
address = "{}"

[monitor]
user = "monitor"
password = "monitorpw"

[failover]
mode = "follow"
"#,
        admin_listen.is_some(),
        admin_listen.unwrap_or(DEFAULT_ADMIN_LISTEN),
        topo.primary().name(),
        topo.primary().addr(),
    );
    for r in topo.replicas() {
        s.push_str(&format!(
            "\n[[replicas]]\nname = \"{}\"\naddress = \"{}\"\nweight = 1\n",
            r.name(),
            r.addr()
        ));
    }
    s
}

/// Starts the servers and the proxy; returns once clients can connect.
pub async fn start(opts: SandboxOpts) -> Result<SandboxHandle, SandboxError> {
    if opts.replicas > 16 {
        return Err(SandboxError::Option(format!(
            "--replicas {} (at most 16)",
            opts.replicas
        )));
    }
    let p = opts.progress;

    let flavor = opts.flavor;
    let step = match flavor {
        Flavor::Mysql if must_build_root() => Step::begin(
            p,
            "building the MySQL root (Debian sid + MySQL with debootstrap; first run only, about a minute)",
        ),
        Flavor::Mariadb if must_build_mariadb_root() => Step::begin(
            p,
            "building the MariaDB root (Debian bookworm + MariaDB 10.11 with debootstrap; first run only)",
        ),
        _ => Step::begin(p, &format!("locating {flavor}")),
    };
    let mysql = blocking(move || MysqlDist::shared_flavor(flavor)).await??;
    step.done();
    if p {
        eprintln!("    mysqld {} ({})", mysql.version(), describe(&mysql));
    }

    if !template::template_path(&mysql).is_dir() {
        let step = Step::begin(p, "initialising the template datadir (once per machine)");
        let d = Arc::clone(&mysql);
        blocking(move || template::ensure_template(&d)).await??;
        step.done();
    }

    let step = Step::begin(
        p,
        &format!(
            "starting {flavor}: a GTID primary and {} replica(s)",
            opts.replicas
        ),
    );
    let mut topo_opts = Options::with_replicas(opts.replicas);
    topo_opts.dist = Some(mysql);
    let topology = Topology::start(topo_opts).await?;
    step.done();

    let mut text = config_text(&topology, &opts.listen, opts.admin_listen.as_deref());
    let tls = if opts.tls {
        let files = make_certs(&topology)?;
        if flavor == Flavor::Mariadb {
            text.push_str(&client_tls_text(&files));
        } else {
            text.push_str(&tls_text(&files));
        }
        Some(files)
    } else {
        None
    };
    let config = Config::from_str_named(&text, "<sandbox>")?;
    let step = Step::begin(p, &format!("starting causeway on {}", opts.listen));
    let proxy = Proxy::new(config.clone())?;
    let listener = proxy.bind().await?;
    let addr = listener.local_addr().map_err(|source| SandboxError::Io {
        what: "reading the listener address",
        source,
    })?;
    let serve = tokio::spawn(Arc::clone(&proxy).serve(listener));
    let admin_addr = proxy.serve_admin().await?;
    step.done();

    Ok(SandboxHandle {
        proxy,
        serve: Some(serve),
        addr,
        admin_addr,
        config,
        tls,
        topology,
    })
}

fn describe(d: &MysqlDist) -> String {
    match d.root() {
        Some(root) => format!("Debian root {}", root.display()),
        None => d
            .mysqld_path()
            .parent()
            .unwrap_or(Path::new("/"))
            .display()
            .to_string(),
    }
}

/// `causeway sandbox`: [`start`], print [`SandboxHandle::instructions`],
/// wait for Ctrl-C, then [`SandboxHandle::stop`].
pub async fn run(opts: SandboxOpts) -> Result<(), SandboxError> {
    let handle = start(opts).await?;
    println!("{}", handle.instructions());
    let waited = tokio::signal::ctrl_c().await;
    eprintln!("==> stopping causeway and the MySQL servers ...");
    handle.stop().await;
    waited.map_err(|source| SandboxError::Io {
        what: "waiting for Ctrl-C",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("/usr/bin/mysql"), "/usr/bin/mysql");
        assert_eq!(shell_quote("-P6033"), "-P6033");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn defaults() {
        let o = SandboxOpts::default();
        assert_eq!(o.listen, "127.0.0.1:6033");
        assert_eq!(o.admin_listen.as_deref(), Some("127.0.0.1:6080"));
        assert_eq!(o.replicas, 2);
        assert!(o.tls);
    }
}
