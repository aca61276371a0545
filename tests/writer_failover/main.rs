//! Failover against real MySQL, each test on a topology of its own: the
//! primary's death blocks no read (logins with a default database, causal
//! reads), the writer is followed without a reload (`[failover] mode =
//! "follow"`), a split brain is fenced, a token naming writes that died with
//! the old primary is refused at once, the old primary rejoins as a replica,
//! and static mode still needs a reload.

#[path = "../support/mod.rs"]
mod support;

mod follow;
mod primary_down;
mod tokens;

use causeway::failover::Writers;
use causeway::proxy::Proxy;
use causeway_config::Config;
use causeway_sandbox::{Options, Server, Topology};
use mysql_async::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn start_topology() -> Arc<Topology> {
    let mut opts = Options::default();
    opts.extra_mysqld_options
        .push("max_connections=1000".into());
    Arc::new(Topology::start(opts).await.unwrap())
}

/// A proxy in front of `topo`: monitor every 100 ms, `extra` appended.
async fn own_proxy(topo: &Topology, extra: &str) -> (Arc<Proxy>, u16) {
    let text = followed(support::config_text(topo)).replace(
        "[monitor]\n",
        "[monitor]\ninterval_ms = 100\nconnect_timeout_ms = 300\n",
    ) + extra;
    let config = Config::from_str_named(&text, "writer_failover.toml").unwrap();
    let proxy = Proxy::new(config).unwrap();
    let listener = proxy.bind().await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(Arc::clone(&proxy).serve(listener));
    (proxy, port)
}

/// Config text without the shared tests' `[failover] mode = "static"`: the
/// default (follow) unless `extra` says otherwise.
fn followed(text: String) -> String {
    let shared = "[failover]\nmode = \"static\"\n";
    assert!(text.contains(shared));
    text.replace(shared, "")
}

/// Polls `cond` on the proxy's current snapshot until it holds (bounded).
async fn until(proxy: &Proxy, what: &str, cond: impl Fn(&causeway::topology::Topology) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cond(&proxy.topology.load()) {
            return;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every backend measured, replicas eligible.
async fn settled(proxy: &Proxy) {
    until(proxy, "every backend measured and eligible", |t| {
        t.backends().all(|b| {
            let v = b.state.view.load();
            v.measured_at.is_some() && v.eligible && v.server_uuid.is_some()
        })
    })
    .await;
}

async fn client(port: u16, db: Option<&str>) -> mysql_async::Conn {
    mysql_async::Conn::new(support::opts(port, "app", "apppw", db))
        .await
        .unwrap()
}

async fn last_route(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap()
}

async fn token(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap()
}

async fn root(s: &Server) -> mysql_async::Conn {
    s.conn().await.unwrap()
}

/// The proxy's writer status, polled until `cond` holds (bounded).
async fn status_until(proxy: &Proxy, what: &str, cond: impl Fn(&Writers) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cond(&proxy.failover.status().writers) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never: {what} (status {:?})",
            proxy.failover.status().writers
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn server_err(e: mysql_async::Error) -> mysql_async::ServerError {
    match e {
        mysql_async::Error::Server(e) => e,
        other => panic!("server error expected, got {other}"),
    }
}

/// `SELECT v FROM <db>.t WHERE k = ?` on a server directly.
async fn direct_v(s: &Server, db: &str, k: i64) -> Option<i64> {
    let mut c = root(s).await;
    c.query_first(format!("SELECT v FROM {db}.t WHERE k = {k}"))
        .await
        .unwrap()
}

/// One schema with a table `t (k INT PRIMARY KEY, v INT)`, replicated.
async fn schema(topo: &Topology, port: u16, db: &str) {
    let mut c = client(port, None).await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.t (k INT PRIMARY KEY, v INT)"))
        .await
        .unwrap();
    topo.wait_replicated(Duration::from_secs(30)).await.unwrap();
}

async fn direct_count(s: &Server, db: &str) -> i64 {
    let mut c = root(s).await;
    c.query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .unwrap()
        .unwrap()
}

/// `config_text` with `[primary]` and the replica named `name` swapped.
fn config_with_primary(topo: &Topology, name: &str) -> String {
    let r = topo.replicas().iter().find(|r| r.name() == name).unwrap();
    let p = topo.primary();
    let text = followed(support::config_text(topo));
    let old_p = format!("name = \"primary\"\naddress = \"{}\"", p.addr());
    let old_r = format!("name = \"{name}\"\naddress = \"{}\"", r.addr());
    text.replace(&old_p, "@P@")
        .replace(&old_r, &old_p)
        .replace("@P@", &old_r)
}
