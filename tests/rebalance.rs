//! Long-lived sessions follow the topology, and causal sessions never read
//! backwards, against real MySQL (a primary and replicas r1, r2):
//!
//! 1. 16 long-lived sessions split exactly by weight at 1:1 (8/8), each
//!    staying on its replica (exact weights, `crate::balance::ledger`);
//! 2. when r1 leaves (applier stopped, lag) exactly its sessions move to r2
//!    (`left`), and after it catches up it gets its 8 back within 3 s, with
//!    exactly 8 moves counted as `returned`;
//! 3. after a reload to weights 3:1 the sessions split 12/4, with exactly
//!    the 4 needed moves counted as `reweighted`;
//! 4. 8 causal sessions (half `read_balance = "session"`, half
//!    `"statement"`) read a counter incremented every 5 ms for 20 s while
//!    r1's applier is stopped and restarted every 1.5 s: no session ever sees
//!    it decrease, and no read fails.
//!
//! The tests stop replication threads, so they take turns (`TURN`).

#[path = "support/mod.rs"]
mod support;

use causeway::proxy::Proxy;
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Config text: fast monitor, the given routing section, r1's weight.
fn config(routing: &str, r1_weight: u32) -> String {
    support::config_text(support::topology())
        .replacen("weight = 1", &format!("weight = {r1_weight}"), 1)
        .replace(
            "[monitor]\n",
            "[monitor]\ninterval_ms = 200\nconnect_timeout_ms = 300\n",
        )
        + routing
}

async fn wait_view(proxy: &Proxy, replica: usize, eligible: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topo = proxy.topology.load_full();
        let r = &topo.replicas[replica];
        if r.state.view.load().eligible == eligible {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica {replica} never became eligible={eligible}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), r.state.changed.notified()).await;
    }
}

/// `causeway_session_moves_total` by reason, from the process recorder.
fn moves() -> BTreeMap<String, f64> {
    let text = causeway::admin::install_recorder().render();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("causeway_session_moves_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap();
        let reason = labels
            .split(',')
            .find_map(|l| l.strip_prefix("reason=\""))
            .unwrap()
            .trim_end_matches('"');
        *out.entry(reason.to_string()).or_insert(0.0) += value.trim().parse::<f64>().unwrap();
    }
    out
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, reason: &str) -> f64 {
    after.get(reason).copied().unwrap_or(0.0) - before.get(reason).copied().unwrap_or(0.0)
}

/// One read per session: the server id each one landed on.
async fn round(conns: &mut [mysql_async::Conn]) -> Vec<u32> {
    let mut out = Vec::with_capacity(conns.len());
    for c in conns.iter_mut() {
        let sid: u32 = c
            .query_first("SELECT @@server_id")
            .await
            .expect("read")
            .expect("a row");
        out.push(sid);
    }
    out
}

/// Sessions on `of` in one round.
fn on(sids: &[u32], of: u32) -> usize {
    sids.iter().filter(|&&s| s == of).count()
}

/// Polls rounds (a pause between them, so the monitor's probes land between
/// a session's reads) until `want` sessions read on `of` and the next round
/// lands every session where the last did; returns that round and how long
/// it took, or panics after `limit`.
async fn until_split(
    conns: &mut [mysql_async::Conn],
    of: u32,
    want: usize,
    limit: Duration,
) -> (Vec<u32>, Duration) {
    let t0 = Instant::now();
    loop {
        let got = round(conns).await;
        if on(&got, of) == want && round(conns).await == got {
            return (got, t0.elapsed());
        }
        assert!(
            t0.elapsed() < limit,
            "not {want} sessions on server {of} after {limit:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn share(sids: &[u32], of: u32) -> f64 {
    sids.iter().filter(|&&s| s == of).count() as f64 / sids.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_sessions_follow_eligibility_and_weights() {
    let _turn = TURN.lock().await;
    causeway::admin::install_recorder();
    let topo = support::topology();
    let sid = [
        topo.replicas()[0].server_id(),
        topo.replicas()[1].server_id(),
    ];
    let routing =
        "[routing]\nmax_lag_ms = 500\nlag_hysteresis_ms = 100\nread_balance = \"session\"\n";
    let tp = support::start_proxy_with(|_| config(routing, 1)).await;
    wait_view(&tp.proxy, 0, true).await;
    wait_view(&tp.proxy, 1, true).await;
    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(tp.conn().await);
    }

    // 1. at 1:1 the sessions split 8/8 and stay on their replicas
    let even = round(&mut conns).await;
    assert_eq!(on(&even, sid[0]), 8, "{even:?}");
    for _ in 0..10 {
        assert_eq!(
            round(&mut conns).await,
            even,
            "sessions stay on their replicas"
        );
    }

    // 2. r1's applier stops while the primary writes: r1 leaves (its
    // sessions go to r2), then catches up and gets 8 back within 3 s
    let before = moves();
    let mut r1c = topo.replicas()[0].conn().await.unwrap();
    r1c.query_drop("STOP REPLICA SQL_THREAD").await.unwrap();
    let db = support::unique_db("rebal");
    let mut p = support::direct_conn().await;
    p.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    p.query_drop(format!("CREATE TABLE {db}.t (a INT)"))
        .await
        .unwrap();
    wait_view(&tp.proxy, 0, false).await;
    for _ in 0..5 {
        p.query_drop(format!("INSERT INTO {db}.t VALUES (1)"))
            .await
            .unwrap();
        let got = round(&mut conns).await;
        assert!(
            got.iter().all(|&s| s == sid[1]),
            "a read reached the excluded r1: {got:?}"
        );
    }
    r1c.query_drop("START REPLICA SQL_THREAD").await.unwrap();
    let (_, back) = until_split(&mut conns, sid[0], 8, Duration::from_secs(3)).await;
    let after = moves();
    assert_eq!(
        delta(&before, &after, "left"),
        8.0,
        "{before:?} → {after:?}"
    );
    assert_eq!(
        delta(&before, &after, "returned"),
        8.0,
        "{before:?} → {after:?}"
    );
    assert_eq!(delta(&before, &after, "reweighted"), 0.0);
    assert_eq!(delta(&before, &after, "added"), 0.0);
    eprintln!("r1 got its sessions back {back:?} after START REPLICA");

    // 3. reload to 3:1: 12/4, and only the 4 sessions needed move
    let path = std::env::temp_dir().join(format!("{db}.toml"));
    std::fs::write(&path, config(routing, 3)).unwrap();
    let before = moves();
    tp.proxy.reload_from(&path).expect("reload to 3:1");
    until_split(&mut conns, sid[0], 12, Duration::from_secs(3)).await;
    let mut reads = Vec::new();
    for _ in 0..10 {
        reads.extend(round(&mut conns).await);
    }
    assert_eq!(share(&reads, sid[0]), 0.75);
    let after = moves();
    assert_eq!(
        delta(&before, &after, "reweighted"),
        4.0,
        "{before:?} → {after:?}"
    );
    assert_eq!(delta(&before, &after, "left"), 0.0);
    let _ = std::fs::remove_file(&path);
    p.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// What one reader saw.
struct Seen {
    reads: u64,
    servers: std::collections::BTreeSet<u32>,
    last: i64,
    /// Consecutive reads answered by two different replicas.
    switches: u32,
}

/// Session `i` through `port` reads the counter until `stop`, asserting it
/// never goes backwards, and counts its switches between `replicas`.
async fn monotonic_reader(
    i: usize,
    port: u16,
    db: String,
    stop: Arc<AtomicBool>,
    replicas: [u32; 2],
) -> Seen {
    let mut c = mysql_async::Conn::new(support::opts(port, "app", "apppw", None))
        .await
        .unwrap();
    let (mut last, mut reads, mut switches) = (0i64, 0u64, 0u32);
    let mut last_replica = None;
    let mut servers = std::collections::BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let row: Option<(i64, u32)> = c
            .query_first(format!("SELECT v, @@server_id FROM {db}.c WHERE id = 1"))
            .await
            .unwrap_or_else(|e| panic!("session {i}: read failed: {e}"));
        let (v, sid) = row.expect("the counter row");
        assert!(
            v >= last,
            "session {i} read backwards: {v} after {last} (server {sid})"
        );
        last = v;
        reads += 1;
        servers.insert(sid);
        if replicas.contains(&sid) {
            if last_replica.is_some_and(|r| r != sid) {
                switches += 1;
            }
            last_replica = Some(sid);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Seen {
        reads,
        servers,
        last,
        switches,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causal_sessions_never_read_backwards_while_an_applier_flaps() {
    let _turn = TURN.lock().await;
    let topo = support::topology();
    let db = support::unique_db("mono");
    let mut p = support::direct_conn().await;
    p.query_drop(format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.c (id INT PRIMARY KEY, v BIGINT NOT NULL); INSERT INTO {db}.c VALUES (1, 0)"
    ))
    .await
    .unwrap();
    support::sync_replicas().await;
    let mut proxies = Vec::new();
    for mode in ["session", "statement"] {
        let routing = format!("[routing]\nconsistency = \"causal\"\nread_balance = \"{mode}\"\n");
        let tp = support::start_proxy_with(|_| config(&routing, 1)).await;
        wait_view(&tp.proxy, 0, true).await;
        wait_view(&tp.proxy, 1, true).await;
        proxies.push(tp);
    }
    let run = Duration::from_secs(20);
    let stop = Arc::new(AtomicBool::new(false));

    let writer = {
        let (stop, db) = (Arc::clone(&stop), db.clone());
        tokio::spawn(async move {
            let mut w = support::direct_conn().await;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                w.query_drop(format!("UPDATE {db}.c SET v = v + 1 WHERE id = 1"))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let flapper = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut r1 = topo.replicas()[0].conn().await.unwrap();
            let mut flaps = 0u32;
            while !stop.load(Ordering::Relaxed) {
                r1.query_drop("STOP REPLICA SQL_THREAD").await.unwrap();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                r1.query_drop("START REPLICA SQL_THREAD").await.unwrap();
                flaps += 1;
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            flaps
        })
    };
    let replicas = [
        topo.replicas()[0].server_id(),
        topo.replicas()[1].server_id(),
    ];
    let mut readers = Vec::new();
    for i in 0..8 {
        let port = proxies[i % 2].port();
        let (stop, db) = (Arc::clone(&stop), db.clone());
        readers.push(tokio::spawn(monotonic_reader(i, port, db, stop, replicas)));
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    let flaps = flapper.await.unwrap();
    let mut total = 0;
    let mut servers = std::collections::BTreeSet::new();
    // switches per reader: even readers use read_balance = "session"
    let mut switches = Vec::new();
    for (i, r) in readers.into_iter().enumerate() {
        let seen = r.await.expect("a reader failed");
        assert!(seen.last > 0, "a session never saw a write");
        // a session homed on r1 must have left it while r1 fell behind
        if i % 2 == 0 && seen.servers.contains(&replicas[0]) {
            assert!(
                seen.switches > 0,
                "session {i} read r1 and never switched replica: {:?}",
                seen.servers
            );
        }
        total += seen.reads;
        servers.extend(seen.servers);
        switches.push(seen.switches);
    }
    eprintln!(
        "{writes} writes, {flaps} applier restarts, {total} reads on servers {servers:?}; \
         replica switches per session {switches:?}"
    );
    assert!(writes > 1_000, "{writes} writes");
    assert!(flaps >= 5, "{flaps} applier restarts");
    assert!(total > 2_000, "{total} reads");
    // the check above means something only if sessions moved between
    // replicas while r1 fell behind and caught up
    assert!(
        switches.iter().any(|&n| n > 0),
        "no session switched replica: {switches:?}"
    );
    assert!(
        replicas.iter().all(|r| servers.contains(r)),
        "both replicas served reads: {servers:?}"
    );
    let mut r1 = topo.replicas()[0].conn().await.unwrap();
    r1.query_drop("START REPLICA SQL_THREAD").await.unwrap();
    p.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
