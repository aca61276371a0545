//! One real MariaDB topology per test binary (Debian bookworm's 10.11 from
//! `integration/provide-mariadb.sh`: a GTID primary and two replicas with
//! `MASTER_USE_GTID = slave_pos`) and in-process proxies in front of it.

#![allow(dead_code)]

use causeway::proxy::Proxy;
use causeway_config::Config;
use causeway_sandbox::{Flavor, Options, Topology};
use mysql_async::prelude::Queryable;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// `CAUSEWAY_MARIADB=0` skips these tests (said loudly).
pub fn skip() -> bool {
    if std::env::var("CAUSEWAY_MARIADB").as_deref() == Ok("0") {
        eprintln!("CAUSEWAY_MARIADB=0: skipping the MariaDB tests");
        return true;
    }
    false
}

/// One test at a time per binary: the tests share one topology, and some
/// stop appliers, delay or kill replicas, or compare positions that another
/// test's writes would move.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// The MariaDB topology shared by this binary's tests.
pub fn topology() -> &'static Topology {
    static TOPO: OnceLock<Topology> = OnceLock::new();
    TOPO.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut opts = Options {
                flavor: Flavor::Mariadb,
                ..Options::default()
            };
            opts.extra_mysqld_options
                .push("max_connections=2000".into());
            rt.block_on(Topology::start(opts))
                .unwrap_or_else(|e| panic!("starting the MariaDB topology: {e}"))
        })
        .join()
        .expect("topology thread")
    })
}

/// A unique schema name.
pub fn unique_db(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Config text for a proxy in front of the MariaDB topology.
pub fn config_text(topo: &Topology) -> String {
    let mut s = format!(
        r#"
[server]
listen = "127.0.0.1:0"
connect_timeout_ms = 5000
[admin]
enabled = false
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
name = "primary"
address = "{}"
[monitor]
user = "monitor"
password = "monitorpw"
[failover]
mode = "static"
"#,
        topo.primary().addr()
    );
    for r in topo.replicas() {
        s.push_str(&format!(
            "[[replicas]]\nname = \"{}\"\naddress = \"{}\"\nweight = 1\n",
            r.name(),
            r.addr()
        ));
    }
    s
}

/// A running in-process proxy.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
}

impl TestProxy {
    pub fn opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.addr.port())
            .user(Some("app"))
            .pass(Some("apppw"))
            .prefer_socket(false)
            .into()
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(self.opts())
            .await
            .expect("connect through causeway")
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.proxy.shutdown();
    }
}

/// Starts a proxy after `tweak` edits its config text, and waits until the
/// monitor has measured every server (bounded).
pub async fn start_proxy_with(tweak: impl FnOnce(String) -> String) -> TestProxy {
    let text = tweak(config_text(topology()));
    let config = Config::from_str_named(&text, "mariadb-test.toml").expect("test config");
    let proxy = Proxy::new(config).expect("proxy");
    let listener = proxy.bind().await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(Arc::clone(&proxy).serve(listener));
    let p = TestProxy { addr, proxy };
    wait_measured(&p).await;
    p
}

pub async fn start_proxy() -> TestProxy {
    start_proxy_with(|t| t).await
}

/// Polls until every backend's view was measured and is eligible.
pub async fn wait_measured(p: &TestProxy) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let topo = p.proxy.shared().topology.load();
        let ok = std::iter::once(&topo.primary)
            .chain(topo.replicas.iter())
            .all(|b| {
                let v = b.state.view.load();
                v.measured_at.is_some() && v.eligible && v.reachable
            });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "monitor never measured the MariaDB servers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Root on a server.
pub async fn root(server: &causeway_sandbox::Server) -> mysql_async::Conn {
    server.conn().await.expect("root connect")
}

/// `@@causeway.last_route` of `c`.
pub async fn route(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap()
}

/// `@@causeway.token` of `c`.
pub async fn token(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap()
}

/// The primary's `@@gtid_binlog_pos`.
pub async fn primary_pos() -> String {
    let mut c = root(topology().primary()).await;
    let p: Option<String> = c.query_first("SELECT @@gtid_binlog_pos").await.unwrap();
    c.disconnect().await.unwrap();
    p.unwrap()
}

/// Runs `sql` on every replica as root.
pub async fn on_replicas(sql: &str) {
    for r in topology().replicas() {
        let mut c = root(r).await;
        c.query_drop(sql).await.unwrap();
        c.disconnect().await.unwrap();
    }
}

/// The seq of domain 0 in a `domain-server-seq` position.
pub fn seq0(pos: &str) -> u64 {
    pos.split(',')
        .find_map(|e| {
            let mut p = e.trim().split('-');
            (p.next() == Some("0"))
                .then(|| p.nth(1).and_then(|s| s.parse().ok()))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no domain 0 in {pos:?}"))
}

/// The server error of a statement that must fail.
pub fn server_err(r: Result<(), mysql_async::Error>) -> mysql_async::ServerError {
    match r {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Creates `{db}.t (id, v)` on the primary and waits for the replicas.
pub async fn setup(db: &str) {
    let mut c = root(topology().primary()).await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)"))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    topology()
        .wait_replicated(Duration::from_secs(30))
        .await
        .unwrap();
}
