//! Zones and sticky keys against real MySQL (a primary and replicas r1 in
//! zone "a", r2 in zone "b"; this instance in zone "b"):
//!
//! 1. every eventual read goes to the zone-b replica r2 (counted `local`);
//!    with r2 over the lag budget, reads go to the zone-a replica r1
//!    (counted `cross`), never the primary; when r2 is back, reads return;
//! 2. a causal read whose token only r1 (zone a) has, while r2 is held back,
//!    is served on r1 at once (no wait, no fallback);
//! 3. one sticky key on 6 connections across 2 instances reads one replica,
//!    the one weighted rendezvous over the key predicts; 12 keys use both
//!    replicas; the comment form routes one statement; an over-long key is
//!    refused with 1231 and the connection lives on.
//!
//! The tests stop or delay replication threads, so they take turns (`TURN`).

#[path = "support/mod.rs"]
mod support;

use causeway::balance::{score, sticky_id};
use causeway::proxy::Proxy;
use mysql_async::prelude::*;
use std::time::{Duration, Instant};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Config text: fast monitor, r1 in zone "a", r2 in zone "b", then `routing`.
fn config(routing: &str) -> String {
    let topo = support::topology();
    let base = support::config_text(topo);
    let head = base.split("[[replicas]]").next().unwrap().to_string();
    let mut s = head.replace(
        "[monitor]\n",
        "[monitor]\ninterval_ms = 200\nconnect_timeout_ms = 500\n",
    );
    for (r, zone) in topo.replicas().iter().zip(["a", "b"]) {
        s.push_str(&format!(
            "[[replicas]]\nname = \"{}\"\naddress = \"{}\"\nweight = 1\nzone = \"{zone}\"\n",
            r.name(),
            r.addr()
        ));
    }
    s + routing
}

async fn wait_view(proxy: &Proxy, replica: usize, eligible: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topo = proxy.topology.load_full();
        let r = &topo.replicas[replica];
        let v = r.state.view.load();
        if v.eligible == eligible && (!eligible || (v.replicating && v.measured_at.is_some())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica {replica} never became eligible={eligible}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), r.state.changed.notified()).await;
    }
}

/// `causeway_zone_reads_total{zone=which}` from the process recorder.
fn zone_reads(which: &str) -> f64 {
    let text = causeway::admin::install_recorder().render();
    let prefix = format!("causeway_zone_reads_total{{zone=\"{which}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn server_id(c: &mut mysql_async::Conn, sql: &str) -> u32 {
    c.query_first(sql).await.expect("read").expect("a row")
}

fn sids() -> [u32; 2] {
    let r = support::topology().replicas();
    [r[0].server_id(), r[1].server_id()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_reads_stay_in_zone_and_cross_zones_before_the_primary() {
    let _turn = TURN.lock().await;
    causeway::admin::install_recorder();
    let sid = sids();
    let routing = "[routing]\nzone = \"b\"\nconsistency = \"eventual\"\nmax_lag_ms = 500\nlag_hysteresis_ms = 100\n";
    let tp = support::start_proxy_with(|_| config(routing)).await;
    wait_view(&tp.proxy, 0, true).await;
    wait_view(&tp.proxy, 1, true).await;
    let mut conns = Vec::new();
    for _ in 0..10 {
        conns.push(tp.conn().await);
    }
    // 1. every read on the local replica r2
    let (local0, cross0) = (zone_reads("local"), zone_reads("cross"));
    for c in conns.iter_mut() {
        for _ in 0..3 {
            assert_eq!(server_id(c, "SELECT @@server_id").await, sid[1]);
        }
    }
    assert!(zone_reads("local") - local0 >= 30.0);
    assert_eq!(zone_reads("cross"), cross0);

    // 2. r2 over the lag budget: reads go to r1 in zone a, not the primary
    let mut r2 = support::topology().replicas()[1].conn().await.unwrap();
    r2.query_drop("STOP REPLICA SQL_THREAD").await.unwrap();
    let db = support::unique_db("zones");
    let mut p = support::direct_conn().await;
    p.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    wait_view(&tp.proxy, 1, false).await;
    let cross1 = zone_reads("cross");
    for c in conns.iter_mut() {
        for _ in 0..3 {
            assert_eq!(server_id(c, "SELECT @@server_id").await, sid[0]);
        }
    }
    assert!(zone_reads("cross") - cross1 >= 30.0);

    // 3. r2 back: reads return to it
    r2.query_drop("START REPLICA SQL_THREAD").await.unwrap();
    wait_view(&tp.proxy, 1, true).await;
    for c in conns.iter_mut() {
        assert_eq!(server_id(c, "SELECT @@server_id").await, sid[1]);
    }
    p.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causal_read_goes_to_the_remote_replica_that_has_the_token() {
    let _turn = TURN.lock().await;
    let sid = sids();
    let routing = "[routing]\nzone = \"b\"\nconsistency = \"causal\"\nmax_lag_ms = 600000\nwait_timeout_ms = 10000\n";
    let tp = support::start_proxy_with(|_| config(routing)).await;
    // r2 (local) keeps replicating but applies nothing new
    let mut r2 = support::topology().replicas()[1].conn().await.unwrap();
    r2.query_drop("STOP REPLICA SQL_THREAD").await.unwrap();
    r2.query_drop("CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 3600")
        .await
        .unwrap();
    r2.query_drop("START REPLICA SQL_THREAD").await.unwrap();
    wait_view(&tp.proxy, 0, true).await;
    wait_view(&tp.proxy, 1, true).await;

    let db = support::unique_db("zonecausal");
    let mut c = tp.conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.t (a INT)"))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO {db}.t VALUES (42)"))
        .await
        .unwrap();
    let token: String = c
        .query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap();
    let token = causeway_gtid::GtidSet::parse(&token).unwrap();
    // until the monitor has seen r1 apply it (r2 never will meanwhile)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topo = tp.proxy.topology.load_full();
        if topo.replicas[0]
            .state
            .view
            .load()
            .gtid_executed
            .contains(&token)
        {
            break;
        }
        assert!(Instant::now() < deadline, "r1 never applied the token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t0 = Instant::now();
    let row: (u32, i32) = c
        .query_first(format!("SELECT @@server_id, a FROM {db}.t"))
        .await
        .unwrap()
        .unwrap();
    let took = t0.elapsed();
    let route: String = c
        .query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, (sid[0], 42), "served on zone-a r1 with the write");
    assert_eq!(
        route,
        format!("replica:{}", support::topology().replicas()[0].name())
    );
    assert!(took < Duration::from_secs(2), "waited {took:?}");

    r2.query_drop("STOP REPLICA SQL_THREAD").await.unwrap();
    r2.query_drop("CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 0")
        .await
        .unwrap();
    r2.query_drop("START REPLICA SQL_THREAD").await.unwrap();
    support::sync_replicas().await;
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// The replica index weighted rendezvous over `key` predicts at 1:1.
fn predicted(key: &str) -> usize {
    let id = sticky_id(key);
    let names: Vec<String> = support::topology()
        .replicas()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    usize::from(score(id, &names[1], 1) > score(id, &names[0], 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keys_pick_one_replica_across_connections_and_instances() {
    let _turn = TURN.lock().await;
    let sid = sids();
    // no zone on this instance: both replicas are candidates
    let routing = "[routing]\nconsistency = \"eventual\"\n";
    let a = support::start_proxy_with(|_| config(routing)).await;
    let b = support::start_proxy_with(|_| config(routing)).await;
    for tp in [&a, &b] {
        wait_view(&tp.proxy, 0, true).await;
        wait_view(&tp.proxy, 1, true).await;
    }
    // one key, 6 connections over 2 instances: one replica, the predicted one
    let want = sid[predicted("user-7")];
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..6 {
        let mut c = if i % 2 == 0 {
            a.conn().await
        } else {
            b.conn().await
        };
        c.query_drop("SET @@causeway.sticky_key = 'user-7'")
            .await
            .unwrap();
        for _ in 0..3 {
            seen.insert(server_id(&mut c, "SELECT @@server_id").await);
        }
        let key: String = c
            .query_first("SELECT @@causeway.sticky_key")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key, "user-7");
    }
    assert_eq!(seen, [want].into(), "user-7 read on one replica");

    // 12 keys: each on its predicted replica, both replicas used
    let mut used = std::collections::BTreeSet::new();
    let mut c = a.conn().await;
    for k in 0..12 {
        let key = format!("customer-{k}");
        c.query_drop(format!("SET @@causeway.sticky_key = '{key}'"))
            .await
            .unwrap();
        let got = server_id(&mut c, "SELECT @@server_id").await;
        assert_eq!(got, sid[predicted(&key)], "{key}");
        used.insert(got);
    }
    assert_eq!(used.len(), 2, "12 keys use both replicas");

    // the comment form, one statement, on a session without a key, for a
    // key of each replica; the session key is untouched by it
    let mut c = b.conn().await;
    let keys: Vec<String> = (0..12).map(|k| format!("customer-{k}")).collect();
    for (r, want) in sid.iter().enumerate() {
        let key = keys.iter().find(|k| predicted(k) == r).unwrap();
        for _ in 0..3 {
            let sql = format!("/* causeway sticky_key={key} */ SELECT @@server_id");
            assert_eq!(server_id(&mut c, &sql).await, *want, "{key}");
        }
    }
    let key: Option<String> = c
        .query_first("SELECT @@causeway.sticky_key")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key, None);

    // bounded: 1231 / 42000, and the connection lives on
    let long = "k".repeat(257);
    for sql in [
        format!("SET @@causeway.sticky_key = '{long}'"),
        format!("/* causeway sticky_key={long} */ SELECT 1"),
    ] {
        match c.query_drop(&sql).await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!((e.code, e.state.as_str()), (1231, "42000"), "{e:?}");
                assert!(e.message.contains("at most 256 bytes"), "{}", e.message);
            }
            other => panic!("expected 1231, got {other:?}"),
        }
    }
    let one: u32 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}
