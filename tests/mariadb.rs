//! causeway in front of real MariaDB 10.11 (a GTID primary and two
//! replicas): routing basics, MariaDB tokens (`domain-server-seq`) after
//! writes, causal reads with `MASTER_GTID_WAIT` while appliers stop and
//! start, tokens across instances, future tokens, mixed flavours, the
//! sandbox command (edges in `mariadb_edges.rs`, failures in
//! `mariadb_failures.rs`). Skipped only with `CAUSEWAY_MARIADB=0`.

#[path = "mariadb/support.rs"]
mod support;

use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_basics_on_mariadb() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    let p = start_proxy().await;
    let db = unique_db("mdb_route");
    let mut c = p.conn().await;
    // DDL and writes: the primary (server_id 1)
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)"))
        .await
        .unwrap();
    assert_eq!(route(&mut c).await, "primary");
    let before = seq0(&primary_pos().await);
    c.query_drop(format!("INSERT INTO {db}.t VALUES (1, 10)"))
        .await
        .unwrap();
    assert_eq!(route(&mut c).await, "primary");
    // the token after a write is the write's own GTID (server id not kept):
    // past the primary's position before it, within the one after it (the
    // other tests of this binary write to the same primary meanwhile)
    let tok = token(&mut c).await;
    let pos = primary_pos().await;
    assert!(
        before < seq0(&tok) && seq0(&tok) <= seq0(&pos),
        "token {tok} vs primary {before} before, {pos} after"
    );
    assert!(tok.starts_with("0-0-"), "{tok}");
    // a read right after the write: a replica holding the token, never stale
    let row: Option<(i64, u32)> = c
        .query_first(format!("SELECT v, @@server_id FROM {db}.t WHERE id = 1"))
        .await
        .unwrap();
    let (v, sid) = row.unwrap();
    assert_eq!(v, 10);
    let r = route(&mut c).await;
    assert!(
        (r.starts_with("replica:") && sid != 1) || (r.starts_with("primary") && sid == 1),
        "route {r} server_id {sid}"
    );
    // reads go to replicas once they hold the token
    topology()
        .wait_replicated(Duration::from_secs(30))
        .await
        .unwrap();
    let mut replica_reads = 0;
    for _ in 0..10 {
        let sid: Option<u32> = c
            .query_first(format!("SELECT @@server_id FROM {db}.t WHERE id = 1"))
            .await
            .unwrap();
        if sid.unwrap() != 1 {
            replica_reads += 1;
            assert!(route(&mut c).await.starts_with("replica:r"));
        }
    }
    assert_eq!(
        replica_reads, 10,
        "reads with a satisfied token go to replicas"
    );
    // prepared statements: a write on the primary, a read on a replica
    c.exec_drop(format!("INSERT INTO {db}.t VALUES (?, ?)"), (2, 20))
        .await
        .unwrap();
    assert_eq!(route(&mut c).await, "primary");
    let v: Option<i64> = c
        .exec_first(format!("SELECT v FROM {db}.t WHERE id = ?"), (2,))
        .await
        .unwrap();
    assert_eq!(v, Some(20), "a prepared read sees the prepared write");
    // a transaction stays on the primary and sees its own write
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop(format!("INSERT INTO {db}.t VALUES (3, 30)"))
        .await
        .unwrap();
    let row: Option<(i64, u32)> = c
        .query_first(format!("SELECT COUNT(*), @@server_id FROM {db}.t"))
        .await
        .unwrap();
    assert_eq!(row, Some((3, 1)), "inside the transaction: the primary");
    c.query_drop("COMMIT").await.unwrap();
    let after = token(&mut c).await;
    assert_eq!(
        seq0(&after),
        seq0(&primary_pos().await),
        "the COMMIT's GTID"
    );
    c.disconnect().await.unwrap();
}

/// Stops the SQL thread of replica `i` for `ms`, then starts it again.
async fn pause_applier(i: usize, ms: u64) {
    let r = &topology().replicas()[i];
    let mut c = root(r).await;
    c.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    c.query_drop("START SLAVE SQL_THREAD").await.unwrap();
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_checker_zero_stale_with_appliers_stopped_and_started() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    let p = start_proxy_with(|t| {
        t.replace("[failover]", "[routing]\nwait_timeout_ms = 400\n[failover]")
    })
    .await;
    let db = unique_db("mdb_check");
    setup(&db).await;
    let stop = Arc::new(AtomicBool::new(false));
    // appliers stopped and started under the load, alternately
    let chaos = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                pause_applier(i % 2, 250).await;
                i += 1;
            }
            i
        })
    };
    let (tx, rx) = async_channel();
    let writes = 150u32;
    let writer = {
        let opts = p.opts();
        let db = db.clone();
        tokio::spawn(async move {
            let mut w = mysql_async::Conn::new(opts).await.unwrap();
            for id in 0..writes {
                w.query_drop(format!("INSERT INTO {db}.t VALUES ({id}, {id})"))
                    .await
                    .unwrap();
                let tok: String = w
                    .query_first("SELECT @@causeway.token")
                    .await
                    .unwrap()
                    .unwrap();
                tx.send((id, tok)).await.unwrap();
            }
        })
    };
    let stale = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let routes = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    for _ in 0..3 {
        let (rx, opts, db) = (rx.clone(), p.opts(), db.clone());
        let (stale, routes) = (Arc::clone(&stale), Arc::clone(&routes));
        readers.push(tokio::spawn(async move {
            // a fresh connection per read: nothing but the token links them
            while let Ok((id, tok)) = rx.recv().await {
                let mut r = mysql_async::Conn::new(opts.clone()).await.unwrap();
                r.query_drop(format!("SET @@causeway.token = '{tok}'"))
                    .await
                    .unwrap();
                let n: Option<i64> = r
                    .query_first(format!("SELECT COUNT(*) FROM {db}.t WHERE id = {id}"))
                    .await
                    .unwrap();
                if n != Some(1) {
                    stale.fetch_add(1, Ordering::Relaxed);
                }
                let route = route(&mut r).await;
                let kind = route
                    .split(':')
                    .map(|s| {
                        if s.starts_with('r') && s.len() == 2 {
                            "rN"
                        } else {
                            s
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(":");
                *routes.lock().unwrap().entry(kind).or_insert(0u32) += 1;
                r.disconnect().await.unwrap();
            }
        }));
    }
    writer.await.unwrap();
    drop(rx);
    for r in readers {
        r.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let pauses = chaos.await.unwrap();
    let routes = routes.lock().unwrap().clone();
    let stale = stale.load(Ordering::Relaxed);
    eprintln!("token checker on MariaDB: {writes} reads, {stale} stale, {pauses} applier pauses, routes {routes:?}");
    assert_eq!(stale, 0, "stale reads: {routes:?}");
    let total: u32 = routes.values().sum();
    assert_eq!(total, writes);
    assert!(pauses >= 2, "the appliers were stopped under the load");
    // the test exercised the replica paths, not only the primary
    let replica: u32 = routes
        .iter()
        .filter(|(k, _)| k.starts_with("replica"))
        .map(|(_, v)| *v)
        .sum();
    assert!(replica > 0, "no read was served by a replica: {routes:?}");
    on_replicas("START SLAVE").await;
}

/// A tiny MPMC channel over tokio's mpsc + a mutex (no extra dependency).
fn async_channel() -> (Sender, Receiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    (Sender(tx), Receiver(Arc::new(tokio::sync::Mutex::new(rx))))
}
struct Sender(tokio::sync::mpsc::Sender<(u32, String)>);
impl Sender {
    async fn send(&self, v: (u32, String)) -> Result<(), ()> {
        self.0.send(v).await.map_err(|_| ())
    }
}
#[derive(Clone)]
struct Receiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(u32, String)>>>);
impl Receiver {
    async fn recv(&self) -> Result<(u32, String), ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_instance_a_is_honoured_by_instance_b() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    let a = start_proxy().await;
    let b = start_proxy_with(|t| {
        t.replace("[failover]", "[routing]\nwait_timeout_ms = 300\n[failover]")
    })
    .await;
    let db = unique_db("mdb_ab");
    setup(&db).await;
    on_replicas("STOP SLAVE SQL_THREAD").await;
    let mut ca = a.conn().await;
    ca.query_drop(format!("INSERT INTO {db}.t VALUES (1, 1)"))
        .await
        .unwrap();
    let tok = token(&mut ca).await;
    let mut cb = b.conn().await;
    // without the token, B reads a replica that lacks the row
    let n: Option<i64> = cb
        .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .unwrap();
    assert_eq!(
        n,
        Some(0),
        "replicas are stopped: the control read is stale"
    );
    cb.query_drop(format!("SET @@causeway.token = '{tok}'"))
        .await
        .unwrap();
    let n: Option<i64> = cb
        .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .unwrap();
    assert_eq!(n, Some(1), "B honours A's token {tok}");
    assert_eq!(route(&mut cb).await, "primary:fallback");
    // appliers back: the same token is served by a replica, waited or not
    on_replicas("START SLAVE SQL_THREAD").await;
    let n: Option<i64> = cb
        .query_first(format!(
            "/* causeway token={tok} */ SELECT COUNT(*) FROM {db}.t"
        ))
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    assert!(
        route(&mut cb).await.starts_with("replica:"),
        "served by a replica once it has the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_token_waits_then_falls_back_or_errors() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    let p = start_proxy().await;
    let db = unique_db("mdb_future");
    setup(&db).await;
    let future = format!("0-1-{}", seq0(&primary_pos().await) + 1000);
    let mut c = p.conn().await;
    c.query_drop(format!(
        "SET @@causeway.token = '{future}', @@causeway.wait_timeout_ms = 300, \
         @@causeway.on_timeout = 'error'"
    ))
    .await
    .unwrap();
    let t = Instant::now();
    let e = server_err(c.query_drop(format!("SELECT * FROM {db}.t")).await);
    let took = t.elapsed();
    assert_eq!((e.code, e.state.as_str()), (1105, "HY000"), "{}", e.message);
    assert!(
        e.message.contains(&future.replace("0-1-", "0-0-")),
        "{}",
        e.message
    );
    assert!(took >= Duration::from_millis(290), "it waited: {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // on_timeout = primary: the writer is checked too (its binlog position
    // lacks the seq) and the read is refused, never answered stale
    c.query_drop("SET @@causeway.on_timeout = 'primary'")
        .await
        .unwrap();
    let e = server_err(c.query_drop(format!("SELECT * FROM {db}.t")).await);
    assert_eq!(e.code, 1105);
    assert!(e.message.contains("writer"), "{}", e.message);
    // the connection lives on
    c.query_drop("SET @@causeway.token = ''").await.unwrap();
    let n: Option<i64> = c
        .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .unwrap();
    assert_eq!(n, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_flavor_mariadb_serves_clients() {
    use causeway::sandbox_cmd::{self, SandboxOpts};
    if skip() {
        return;
    }
    let _serial = serial().await;
    let handle = sandbox_cmd::start(SandboxOpts {
        listen: "127.0.0.1:0".into(),
        admin_listen: None,
        flavor: causeway_sandbox::Flavor::Mariadb,
        ..SandboxOpts::default()
    })
    .await
    .unwrap_or_else(|e| panic!("sandbox start: {e}"));
    let text = handle.instructions();
    assert!(text.contains("MariaDB 10.11"), "{text}");
    assert!(text.contains("--ssl-verify-server-cert"), "{text}");
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(handle.addr().port())
        .user(Some("app"))
        .pass(Some("apppw"))
        .prefer_socket(false)
        .into();
    let mut c = mysql_async::Conn::new(opts).await.unwrap();
    c.query_drop("CREATE DATABASE demo").await.unwrap();
    c.query_drop("CREATE TABLE demo.t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO demo.t VALUES (1)").await.unwrap();
    let tok = token(&mut c).await;
    assert!(tok.starts_with("0-0-"), "{tok}");
    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM demo.t").await.unwrap();
    assert_eq!(n, Some(1));
    // the printed client command line works (TLS verified against the CA)
    let mut cli = handle.topology().dist().mysql_client_tokio_command();
    let ca = handle.ssl_ca().expect("TLS is on");
    cli.args([
        "--no-defaults",
        "--protocol=TCP",
        "-h127.0.0.1",
        &format!("-P{}", handle.addr().port()),
        "-uapp",
        "-papppw",
        "--ssl-verify-server-cert",
        &format!("--ssl-ca={ca}"),
        "--batch",
        "-e",
        "SELECT COUNT(*) + 41 FROM demo.t",
    ]);
    let out = cli.output().await.expect("running the mariadb client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("42"));
    c.disconnect().await.unwrap();
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_flavours_are_refused() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    // one MySQL server next to the MariaDB primary and replica
    let mysql = causeway_sandbox::Topology::start(causeway_sandbox::Options::with_replicas(0))
        .await
        .expect("a MySQL server");
    let my_addr = mysql.primary().addr();
    let text = config_text(topology()).replace(
        "[[replicas]]\nname = \"r2\"",
        &format!("[[replicas]]\nname = \"my\"\naddress = \"{my_addr}\"\nweight = 1\n[[replicas]]\nname = \"r2\""),
    );
    // the monitor account exists on MySQL too; the MySQL server is never eligible
    let config = causeway_config::Config::from_str_named(&text, "mixed.toml").unwrap();
    let proxy = causeway::proxy::Proxy::new(config).unwrap();
    let listener = proxy.bind().await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(Arc::clone(&proxy).serve(listener));
    let deadline = Instant::now() + Duration::from_secs(20);
    let msg = loop {
        let topo = proxy.shared().topology.load();
        let b = topo.replicas.iter().find(|b| b.name() == "my").unwrap();
        let v = b.state.view.load();
        if let Some(e) = v.last_error.clone().filter(|e| e.contains("mixes")) {
            assert!(!v.eligible);
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "mixed topology not refused: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        msg.contains("'my' runs MySQL but the primary runs MariaDB"),
        "{msg}"
    );
    // reads never reach the MySQL server
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("apppw"))
        .prefer_socket(false)
        .into();
    for _ in 0..10 {
        let mut c = mysql_async::Conn::new(opts.clone()).await.unwrap();
        let v: Option<String> = c.query_first("SELECT VERSION()").await.unwrap();
        assert!(v.unwrap().contains("MariaDB"));
        c.disconnect().await.unwrap();
    }
    proxy.shutdown();
}
