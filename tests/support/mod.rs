//! Shared test support: one real MySQL topology per test binary (a GTID
//! primary and two replicas from `causeway-sandbox`), and in-process causeway
//! proxies bound to `127.0.0.1:0` in front of it. Tests create their own
//! schemas with unique names, so they run in parallel.
#![allow(dead_code)]

use causeway::proxy::Proxy;
use causeway_config::Config;
use causeway_sandbox::{Options, Topology};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// The topology shared by every test of this binary. Its mysqld processes
/// die with the test process.
pub fn topology() -> &'static Topology {
    static TOPO: OnceLock<Topology> = OnceLock::new();
    TOPO.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut opts = Options::default();
            opts.extra_mysqld_options.extend([
                "max_connections=2000".to_string(),
                "local_infile=ON".to_string(),
            ]);
            rt.block_on(Topology::start(opts))
                .unwrap_or_else(|e| panic!("starting the MySQL topology: {e}"))
        })
        .join()
        .expect("topology thread")
    })
}

/// A unique name for a test's schema.
pub fn unique_db(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Config text for a proxy in front of `topo`.
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
name = "nopw"
password = ""
[[users]]
name = "native"
password = "nativepw"
backend_user = "app"
backend_password = "apppw"
auth_plugin = "mysql_native_password"
[[users]]
name = "root"
password = ""
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
# tests sharing one topology make servers writable or kill them: their
# proxies must not follow each other's fault injections (tests of follow
# mode, tests/writer_failover.rs, own their topology)
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
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The proxy itself.
    pub proxy: Arc<Proxy>,
}

impl TestProxy {
    /// Port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// mysql_async options for `user`/`password` through the proxy.
    pub fn opts(&self, user: &str, password: &str) -> mysql_async::Opts {
        opts(self.addr.port(), user, password, None)
    }

    /// A connection as `app` through the proxy.
    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(self.opts("app", "apppw"))
            .await
            .expect("connect through causeway")
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.proxy.shutdown();
    }
}

/// mysql_async options for a port.
pub fn opts(port: u16, user: &str, password: &str, db: Option<&str>) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(db)
        .prefer_socket(false)
        .into()
}

/// Starts a proxy in front of the shared topology, after `tweak` edits its
/// config text.
pub async fn start_proxy_with(tweak: impl FnOnce(String) -> String) -> TestProxy {
    let text = tweak(config_text(topology()));
    let config = Config::from_str_named(&text, "test.toml").expect("test config");
    let proxy = Proxy::new(config).expect("proxy");
    let listener = proxy.bind().await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(Arc::clone(&proxy).serve(listener));
    TestProxy { addr, proxy }
}

/// Starts a proxy in front of the shared topology.
pub async fn start_proxy() -> TestProxy {
    start_proxy_with(|t| t).await
}

/// A direct connection to the primary as `app`.
pub async fn direct_conn() -> mysql_async::Conn {
    mysql_async::Conn::new(opts(topology().primary().port(), "app", "apppw", None))
        .await
        .expect("direct connect")
}
/// root on the primary (CREATE USER, GRANT).
pub async fn root_conn() -> mysql_async::Conn {
    mysql_async::Conn::new(opts(topology().primary().port(), "root", "", None))
        .await
        .expect("root connect")
}

pub mod cache;
pub mod delay;
pub mod dump;
pub mod external;
pub mod raw;
pub mod redis;

/// Waits (bounded) until every replica has applied everything the primary
/// has executed, so direct setup statements are visible on replicas.
pub async fn sync_replicas() {
    topology()
        .wait_replicated(std::time::Duration::from_secs(30))
        .await
        .expect("replicas caught up");
}
