//! Scale: many idle clients against the real `causeway` binary.
//!
//! Logs in `SCALE_IDLE_CLIENTS` clients (10,000 by default) over raw
//! sockets, lets them sit, and judges the proxy from outside: its resident
//! memory per idle client (`VmRSS` from /proc, after minus before, ≤ 32 KiB),
//! that idle clients hold no backend connection (the pool is lazy in
//! `transaction` mode: the servers' own processlists show no more
//! connections from the proxy than before), and that every client still
//! answers its own query afterwards, checked by value. The test raises its
//! own `RLIMIT_NOFILE` (the proxy inherits it).

mod support;

use causeway::protocol::{handshake, PacketConn};
use mysql_async::prelude::Queryable;
use mysql_common::constants::CapabilityFlags;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::external::ExternalProxy;
use support::raw;

/// Idle clients logged in (override with `SCALE_IDLE_CLIENTS`).
fn clients() -> usize {
    std::env::var("SCALE_IDLE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Raises the soft fd limit to the hard one; returns the new soft limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(got, 0, "getrlimit");
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(set, 0, "setrlimit");
    lim.rlim_cur
}

/// Connections the proxy's backend user holds on every server now
/// (`app` connections in the processlists, this test's own excluded).
async fn backend_app_connections() -> u64 {
    let topo = support::topology();
    let mut total = 0;
    let ports =
        std::iter::once(topo.primary().port()).chain(topo.replicas().iter().map(|r| r.port()));
    for port in ports {
        let mut c = mysql_async::Conn::new(support::opts(port, "root", "", None))
            .await
            .expect("root on a server");
        let n: Option<u64> = c
            .query_first(
                "SELECT COUNT(*) FROM information_schema.processlist \
                 WHERE USER = 'app'",
            )
            .await
            .expect("processlist");
        total += n.expect("a count");
        c.disconnect().await.expect("disconnect");
    }
    total
}

/// Capabilities the idle clients ask for: what causeway offers minus
/// query attributes (plain COM_QUERY payloads), compression and
/// `CLIENT_NO_SCHEMA` (MySQL 9 warns about it on every statement, and in
/// `transaction` pool mode a statement with warnings keeps its backend
/// connection for `SHOW WARNINGS`: no client sharing would be left).
fn client_caps() -> CapabilityFlags {
    handshake::server_capabilities()
        - CapabilityFlags::CLIENT_QUERY_ATTRIBUTES
        - CapabilityFlags::CLIENT_COMPRESS
        - CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM
        - CapabilityFlags::CLIENT_NO_SCHEMA
}

/// Logs in as `app` over a raw socket (caching_sha2 fast path).
async fn login(port: u16) -> PacketConn {
    let mut c = PacketConn::new(raw::connect(port).await);
    let greet = c.read_packet().await.expect("greeting");
    let hello = handshake::parse_server_hello(&greet.payload).expect("greeting parses");
    let resp = handshake::scramble(&hello.plugin, &hello.nonce, "apppw").expect("plugin");
    let login = handshake::client_hello(client_caps(), 255, "app", &resp, None, &hello.plugin);
    let mut seq = 1;
    c.send(&mut seq, &login).await.expect("send login");
    loop {
        let p = c.read_packet().await.expect("login reply");
        match p.payload.first() {
            Some(0x00) => return c,
            Some(0x01) => continue,
            other => panic!("login refused: {other:?}"),
        }
    }
}

/// Reads one packet (within 20 s) whose sequence id must be `*seq`.
async fn read_seq(c: &mut PacketConn, seq: &mut u8) -> Vec<u8> {
    let (got, p) = raw::read_within(c, Duration::from_secs(20)).await;
    assert_eq!(got, *seq, "sequence id");
    *seq = seq.wrapping_add(1);
    p
}

/// Runs `SELECT <n>` on a raw client and returns the one value of its one
/// row, checking the framing (sequence ids counting up from 1).
async fn select_value(c: &mut PacketConn, n: usize) -> String {
    raw::queue_query(c, &format!("SELECT {n}"));
    c.flush().await.expect("send query");
    let mut seq = 1u8;
    let count = read_seq(c, &mut seq).await;
    assert_eq!(count, vec![1], "one column: {count:?}");
    let _coldef = read_seq(c, &mut seq).await;
    let mut row = read_seq(c, &mut seq).await;
    if row.first() == Some(&0xFE) && row.len() < 9 {
        // classic EOF after the column definitions
        row = read_seq(c, &mut seq).await;
    }
    let end = read_seq(c, &mut seq).await;
    assert_eq!(end.first(), Some(&0xFE), "terminator after one row");
    let len = usize::from(*row.first().expect("row"));
    String::from_utf8(row[1..1 + len].to_vec()).expect("utf-8 value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_clients_cost_little_and_all_answer() {
    let n = clients();
    let limit = raise_nofile();
    assert!(
        limit as usize >= n + 1024,
        "RLIMIT_NOFILE hard limit {limit} is too low for {n} clients"
    );
    let proxy = ExternalProxy::start(|t| {
        t.replace(
            "connect_timeout_ms = 5000",
            &format!("connect_timeout_ms = 5000\nmax_connections = {}", n + 100),
        )
    })
    .await;
    // one served client first: the baseline includes the pools' first
    // connections and the runtime's warm-up
    proxy.assert_served_within(Duration::from_secs(5)).await;
    let backends_before = backend_app_connections().await;
    let rss_before = proxy.status_kib("VmRSS");

    let started = Instant::now();
    let port = proxy.port;
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut logins = Vec::with_capacity(n);
    for _ in 0..n {
        let gate = Arc::clone(&gate);
        logins.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await.expect("gate");
            login(port).await
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for l in logins {
        conns.push(l.await.expect("login task"));
    }
    let login_time = started.elapsed();

    // the proxy's RSS settles once every session parked on its read
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = proxy.status_kib("VmRSS");
    let per_client = (rss_idle.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;
    let backends_idle = backend_app_connections().await;
    eprintln!(
        "{n} idle clients: logins {login_time:?}, VmRSS {rss_before} -> {rss_idle} KiB, \
         {per_client:.0} B per idle client, backend app connections {backends_before} -> {backends_idle}"
    );
    assert!(
        per_client <= 32.0 * 1024.0,
        "{per_client:.0} B per idle client exceeds 32 KiB"
    );
    assert!(
        backends_idle <= backends_before,
        "idle clients opened backend connections: {backends_before} -> {backends_idle}"
    );

    // every client answers its own query, checked by value, and stays
    // connected; 256 at a time (a free read does not wait for a pool slot,
    // so the pools must be shared between statements for this to pass)
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, mut c) in conns.into_iter().enumerate() {
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await.expect("gate");
            let v = select_value(&mut c, i + 1_000_000).await;
            (i, v, c)
        }));
    }
    let mut answered = Vec::with_capacity(n);
    for t in tasks {
        let (i, v, c) = t.await.expect("query task");
        assert_eq!(
            v,
            (i + 1_000_000).to_string(),
            "client {i} got another value"
        );
        answered.push(c);
    }
    let backends_after = backend_app_connections().await;
    eprintln!(
        "{} clients answered in {:?}; backend app connections {backends_after}",
        answered.len(),
        started.elapsed()
    );
    assert_eq!(answered.len(), n);
    // shared: far fewer backend connections than clients that ran a query
    assert!(
        backends_after <= 3 * 256,
        "{backends_after} backend connections for {n} clients"
    );
    proxy.assert_no_panic();
}
