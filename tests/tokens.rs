//! GTID consistency tokens against a real GTID topology whose replicas are
//! paused and resumed: a causal read never returns stale data; eventual
//! reads do (so the checks can fail). Tests here change replication, so
//! they run one at a time.

#[path = "support/mod.rs"]
mod support;

use causeway_gtid::GtidSet;
use mysql_async::prelude::*;
use std::sync::Arc;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

async fn replicas_sql(sql: &str) {
    for r in support::topology().replicas() {
        r.conn().await.unwrap().query_drop(sql).await.unwrap();
    }
}

/// Delays the replicas' appliers by an hour: replication threads keep
/// running (the monitor keeps them eligible within a large lag budget) but
/// nothing new is applied.
async fn delay_replicas(seconds: u32) {
    replicas_sql("STOP REPLICA SQL_THREAD").await;
    replicas_sql(&format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {seconds}"
    ))
    .await;
    replicas_sql("START REPLICA SQL_THREAD").await;
}

async fn proxy_with_large_lag_budget() -> support::TestProxy {
    // The monitor is refused (wrong password): it fails open, so the
    // delayed replicas stay eligible with unknown GTID sets and every causal
    // read takes the in-flight wait. The monitor has its own tests.
    support::start_proxy_with(|t| {
        t.replace(
            "password = \"monitorpw\"",
            "password = \"not-the-password\"",
        ) + "[routing]\nmax_lag_ms = 600000\nlag_hysteresis_ms = 1000\n"
    })
    .await
}

/// The primary's `gtid_executed`, read directly.
async fn primary_executed(direct: &mut mysql_async::Conn) -> GtidSet {
    let s: String = direct
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .unwrap()
        .unwrap();
    GtidSet::parse(&s).unwrap()
}

async fn route(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap()
}

async fn setup(proxy: &support::TestProxy, db: &str) -> mysql_async::Conn {
    // a failed test may have left appliers stopped or delayed
    replicas_sql("START REPLICA SQL_THREAD").await;
    delay_replicas(0).await;
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TABLE kv (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    support::sync_replicas().await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_after_write_is_the_primary_executed_set() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("tok");
    let proxy = support::start_proxy().await;
    let mut c = setup(&proxy, &db).await;
    let mut direct = support::direct_conn().await;
    let before = primary_executed(&mut direct).await;
    c.query_drop("INSERT INTO kv VALUES (1, 1)").await.unwrap();
    let token: String = c
        .query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap();
    let token = GtidSet::parse(&token).unwrap();
    let executed = primary_executed(&mut direct).await;
    assert!(!token.is_empty());
    assert!(executed.contains(&token), "token ⊆ primary's executed set");
    // the write's own GTID: what the primary executed during the INSERT
    // (tests here run one at a time, so nothing else wrote meanwhile)
    let own = executed.difference(&before);
    assert_eq!(own.count(), 1, "the INSERT is one new transaction: {own}");
    assert!(
        token.contains(&own),
        "the INSERT's own GTID {own} is in the token {token}"
    );
    let uuid: String = direct
        .query_first("SELECT @@server_uuid")
        .await
        .unwrap()
        .unwrap();
    assert!(
        own.to_string().starts_with(&uuid),
        "the new GTID {own} is the primary's ({uuid})"
    );
    // a malformed token is refused and leaves the session unchanged
    let e = c
        .query_drop("SET @@causeway.token = 'zzz:1-'")
        .await
        .unwrap_err();
    let mysql_async::Error::Server(e) = e else {
        panic!("server error expected")
    };
    assert_eq!((e.code, e.state.as_str()), (1231, "42000"));
    assert!(e.message.contains("zzz"), "{}", e.message);
    let again: String = c
        .query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(GtidSet::parse(&again).unwrap(), token);
    c.query_drop("SET @@causeway.token = ''").await.unwrap();
    let cleared: String = c
        .query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared, "");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causal_reads_never_stale_fall_back_or_fail_when_replicas_are_delayed() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("pause");
    let proxy = proxy_with_large_lag_budget().await;
    let mut c = setup(&proxy, &db).await;
    c.query_drop("SET @@causeway.wait_timeout_ms = 200")
        .await
        .unwrap();
    replicas_sql("STOP REPLICA SQL_THREAD").await;
    c.query_drop("INSERT INTO kv VALUES (1, 10)").await.unwrap();
    let v: Option<i32> = c.query_first("SELECT v FROM kv WHERE k = 1").await.unwrap();
    assert_eq!(v, Some(10), "read-your-write while replicas are delayed");
    assert_eq!(route(&mut c).await, "primary:fallback");
    // the token travels: another connection (another app server) passes it
    let token: String = c
        .query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap();
    let mut other = proxy.conn().await;
    other.query_drop(format!("USE {db}")).await.unwrap();
    let stale: Option<i32> = other
        .query_first("/* causeway consistency=eventual */ SELECT v FROM kv WHERE k = 1")
        .await
        .unwrap();
    assert_eq!(
        stale, None,
        "eventual read on a paused replica is stale (the check can fail)"
    );
    assert!(route(&mut other).await.starts_with("replica:"));
    let v: Option<i32> = other
        .query_first(format!(
            "/* causeway token={token} */ SELECT v FROM kv WHERE k = 1"
        ))
        .await
        .unwrap();
    assert_eq!(v, Some(10), "token in a leading comment");
    other
        .query_drop(format!("SET @@causeway.token = '{token}'"))
        .await
        .unwrap();
    other
        .query_drop("SET @@causeway.on_timeout = 'error', @@causeway.wait_timeout_ms = 100")
        .await
        .unwrap();
    let r = other.query_drop("SELECT v FROM kv WHERE k = 1").await;
    let e = match r {
        Err(e) => e,
        Ok(()) => panic!(
            "expected a timeout error, ran on {}; views {:?}",
            route(&mut other).await,
            proxy
                .proxy
                .topology
                .load()
                .replicas
                .iter()
                .map(|r| r.state.view.load_full())
                .collect::<Vec<_>>()
        ),
    };
    let mysql_async::Error::Server(e) = e else {
        panic!("server error expected")
    };
    assert!(
        e.message.contains(&token[..36]) && e.message.contains("100 ms"),
        "{}",
        e.message
    );
    // strong always reads the primary
    other
        .query_drop("SET @@causeway.consistency = 'strong'")
        .await
        .unwrap();
    let v: Option<i32> = other
        .query_first("SELECT v FROM kv WHERE k = 1")
        .await
        .unwrap();
    assert_eq!((v, route(&mut other).await.as_str()), (Some(10), "primary"));
    // resumed replicas serve causal reads again, after waiting if needed
    delay_replicas(0).await;
    c.query_drop("SET @@causeway.wait_timeout_ms = 10000")
        .await
        .unwrap();
    let v: Option<i32> = c.query_first("SELECT v FROM kv WHERE k = 1").await.unwrap();
    assert_eq!(v, Some(10));
    assert!(
        route(&mut c).await.starts_with("replica:"),
        "served by a replica once caught up"
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_packet_carries_the_token_for_session_track_clients() {
    use causeway::protocol::messages::{gtids_from_state_data, track};
    use support::raw::RawLogin;
    let _g = SERIAL.lock().await;
    let db = support::unique_db("track");
    let proxy = support::start_proxy().await;
    let _c = setup(&proxy, &db).await;
    let mut direct = support::direct_conn().await;
    let before = primary_executed(&mut direct).await;
    let mut raw = RawLogin {
        db: Some(&db),
        limit: std::time::Duration::from_secs(5),
        ..RawLogin::app(proxy.addr.to_string())
    }
    .connect()
    .await;
    let ok = raw
        .query_ok("INSERT INTO kv VALUES (5, 5)")
        .await
        .unwrap()
        .unwrap();
    let gtids: Vec<String> = ok
        .state_entries()
        .filter(|(t, _)| *t == track::GTIDS)
        .filter_map(|(_, d)| {
            gtids_from_state_data(d).map(|g| String::from_utf8_lossy(g).into_owned())
        })
        .collect();
    assert_eq!(gtids.len(), 1, "one SESSION_TRACK_GTIDS entry");
    let in_ok = GtidSet::parse(&gtids[0]).unwrap();
    let executed = primary_executed(&mut direct).await;
    assert!(executed.contains(&in_ok));
    assert!(!in_ok.is_empty());
    // the OK names the INSERT's own new GTID, not only older ones
    let own = executed.difference(&before);
    assert_eq!(own.count(), 1, "the INSERT is one new transaction: {own}");
    assert!(
        in_ok.contains(&own),
        "the INSERT's own GTID {own} is in the OK's set {in_ok}"
    );
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

/// The consistency checker: write→read pairs over 8 sessions while the
/// replicas' appliers are paused and resumed; some reads pass the token to a
/// second connection. Every causal read must see its write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_checker_under_paused_and_resumed_replication() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("check");
    let proxy = Arc::new(support::start_proxy().await);
    let _c = setup(&proxy, &db).await;
    let pairs_per_session = 150;
    let toggler = tokio::spawn(async move {
        for i in 0..20 {
            let sql = if i % 2 == 0 {
                "STOP REPLICA SQL_THREAD"
            } else {
                "START REPLICA SQL_THREAD"
            };
            replicas_sql(sql).await;
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
        replicas_sql("START REPLICA SQL_THREAD").await;
    });
    let mut tasks = Vec::new();
    for s in 0..8 {
        let proxy = Arc::clone(&proxy);
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut w = proxy.conn().await;
            let mut r = proxy.conn().await;
            for c in [&mut w, &mut r] {
                c.query_drop(format!("USE {db}")).await.unwrap();
                c.query_drop("SET @@causeway.wait_timeout_ms = 50")
                    .await
                    .unwrap();
            }
            let mut routes: std::collections::HashMap<String, u32> = Default::default();
            for i in 0..pairs_per_session {
                let k = s * 100_000 + i;
                w.exec_drop("INSERT INTO kv VALUES (?, ?)", (k, i))
                    .await
                    .unwrap();
                let reader = if i % 3 == 0 {
                    let t: String = w
                        .query_first("SELECT @@causeway.token")
                        .await
                        .unwrap()
                        .unwrap();
                    r.query_drop(format!("SET @@causeway.token = '{t}'"))
                        .await
                        .unwrap();
                    &mut r
                } else {
                    &mut w
                };
                let v: Option<i32> = reader
                    .exec_first("SELECT v FROM kv WHERE k = ?", (k,))
                    .await
                    .unwrap();
                assert_eq!(v, Some(i), "stale causal read of key {k}");
                let rt = route(reader).await;
                let kind = rt.split(':').next().unwrap().to_string()
                    + if rt.ends_with(":waited") {
                        ":waited"
                    } else if rt.ends_with(":fallback") {
                        ":fallback"
                    } else {
                        ""
                    };
                *routes.entry(kind).or_default() += 1;
            }
            routes
        }));
    }
    let mut total: std::collections::HashMap<String, u32> = Default::default();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    toggler.await.unwrap();
    let n: u32 = total.values().sum();
    assert_eq!(n, 8 * pairs_per_session as u32);
    println!("causal reads by route: {total:?}");
    assert!(
        total.keys().any(|k| k.starts_with("replica")),
        "replicas served some reads: {total:?}"
    );
    let mut d = support::direct_conn().await;
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
