//! Exact session weights against real MySQL (a primary and replicas r1,
//! r2; `read_balance = "session"`), where each session's reads land read
//! back from the servers themselves (`@@server_id`):
//!
//! 1. 40 sessions at weights 3:1 split 30/10 (±1) as they arrive, without a
//!    move, and each stays on its replica;
//! 2. r1 leaves (applier stopped, writes: over the lag budget): exactly its
//!    sessions move (`left`);
//! 3. r1 returns: 30/10 (±1) again, with at most the least number of moves
//!    that restores it (`returned`);
//! 4. 20 of r1's sessions end: the 20 left split 15/5 (±1), moving at most
//!    the 5 needed (`rebalanced`); 20 new sessions bring 30/10 back with no
//!    move;
//! 5. a reload to 1:1 gives 20/20 (±1) with at most 10 moves
//!    (`reweighted`);
//! 6. 60 sessions connecting and reading at once (counts raced by
//!    compare-and-swap on two worker threads) split 45/15 (±1).
//!
//! The first test stops a replica's applier, so the tests take turns
//! (`TURN`).

#[path = "support/mod.rs"]
mod support;

use causeway::balance::ledger::{needed_moves, Standing};
use causeway::proxy::Proxy;
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Config text: fast monitor, a 500 ms lag budget, r1's weight.
fn config(r1_weight: u32) -> String {
    support::config_text(support::topology())
        .replacen("weight = 1", &format!("weight = {r1_weight}"), 1)
        .replace(
            "[monitor]\n",
            "[monitor]\ninterval_ms = 200\nconnect_timeout_ms = 300\n",
        )
        + "[routing]\nmax_lag_ms = 500\nlag_hysteresis_ms = 100\nread_balance = \"session\"\n"
}

async fn wait_view(proxy: &Proxy, replica: usize, eligible: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topo = proxy.topology.load_full();
        let r = &topo.replicas[replica];
        let v = r.state.view.load();
        // eligible: measured, not the fail-open default of a new proxy
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

/// Moves counted since `before`: per reason and in all.
fn moved(before: &BTreeMap<String, f64>) -> (BTreeMap<String, u64>, u64) {
    let after = moves();
    let mut per = BTreeMap::new();
    for (k, v) in &after {
        let d = (v - before.get(k).copied().unwrap_or(0.0)) as u64;
        if d > 0 {
            per.insert(k.clone(), d);
        }
    }
    let total = per.values().sum();
    (per, total)
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

/// Sessions per replica `[r1, r2]` in one round's server ids (any other
/// server fails the test).
fn split(sids: &[u32], sid: [u32; 2]) -> [u64; 2] {
    let mut out = [0u64; 2];
    for s in sids {
        let i = sid
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("a read ran on server {s}, not a replica: {sids:?}"));
        out[i] += 1;
    }
    out
}

/// Whether each count in `got` lies between the floor and the ceiling of
/// its weighted share of the total (within ±1 of it; exactly it when the
/// share is whole).
fn exact(got: [u64; 2], w: [u32; 2]) -> bool {
    let n = got[0] + got[1];
    let total = u64::from(w[0] + w[1]);
    (0..2).all(|i| {
        let (floor, ceil) = causeway::balance::ledger::bounds(w[i], total, n);
        (floor..=ceil).contains(&got[i])
    })
}

/// Polls rounds until the split is exact for `w`, then checks one more
/// round lands the same (settled); returns the split.
async fn until_exact(conns: &mut [mysql_async::Conn], sid: [u32; 2], w: [u32; 2]) -> [u64; 2] {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = round(conns).await;
        let s = split(&got, sid);
        if exact(s, w) {
            let again = round(conns).await;
            assert_eq!(again, got, "sessions kept moving after the split was exact");
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "split {s:?} never reached {w:?} ±1"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The least number of moves from `have` (sessions per replica, `outside`
/// more on no eligible replica) to weights `w` ±1.
fn needed(have: [u64; 2], w: [u32; 2], eligible: [bool; 2]) -> u64 {
    let mut reps = Vec::new();
    let mut outside = 0;
    for i in 0..2 {
        if eligible[i] {
            reps.push(Standing {
                weight: w[i],
                homed: have[i],
                score: 0.0,
            });
        } else {
            outside += have[i];
        }
    }
    needed_moves(&reps, outside)
}

/// An admin session that never reads (no home of its own): mysql_async
/// reads no settings when both are given.
async fn admin(tp: &support::TestProxy) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::from_opts(tp.opts("admin", "adminpw"))
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28_800));
    mysql_async::Conn::new(opts).await.expect("admin connect")
}

/// The proxy's homed counts `[r1, r2]`, from `SHOW CAUSEWAY BACKENDS`.
async fn homed(admin: &mut mysql_async::Conn) -> [u64; 2] {
    let rows: Vec<mysql_async::Row> = admin.query("SHOW CAUSEWAY BACKENDS").await.unwrap();
    let col = rows[0]
        .columns_ref()
        .iter()
        .position(|c| c.name_str() == "sessions")
        .expect("a sessions column");
    let names: Vec<String> = support::topology()
        .replicas()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    let mut out = [0u64; 2];
    for row in rows {
        let name: String = row.get(0).unwrap();
        let n: String = row.get(col).unwrap();
        if let Some(i) = names.iter().position(|x| *x == name) {
            out[i] = n.parse().unwrap();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_split_exactly_by_weight_with_the_least_moves() {
    let _turn = TURN.lock().await;
    causeway::admin::install_recorder();
    let topo = support::topology();
    let sid = [
        topo.replicas()[0].server_id(),
        topo.replicas()[1].server_id(),
    ];
    let tp = support::start_proxy_with(|_| config(3)).await;
    wait_view(&tp.proxy, 0, true).await;
    wait_view(&tp.proxy, 1, true).await;
    let mut admin = admin(&tp).await;

    // 1. 40 sessions at 3:1: 30/10 ±1, each staying where it is
    let before = moves();
    let mut conns = Vec::new();
    for _ in 0..40 {
        conns.push(tp.conn().await);
    }
    let first = round(&mut conns).await;
    let start = split(&first, sid);
    eprintln!("40 sessions at 3:1: {start:?}");
    assert!(exact(start, [3, 1]), "{start:?}");
    for _ in 0..3 {
        assert_eq!(round(&mut conns).await, first, "sessions stay home");
    }
    let (per, total) = moved(&before);
    assert_eq!(total, 0, "new sessions alone never move anyone: {per:?}");
    assert_eq!(
        homed(&mut admin).await,
        start,
        "the proxy's counts match the reads"
    );

    // 2. r1 leaves: only its sessions move
    let before = moves();
    let mut r1c = topo.replicas()[0].conn().await.unwrap();
    r1c.query_drop("STOP REPLICA SQL_THREAD").await.unwrap();
    let db = support::unique_db("weights");
    let mut p = support::direct_conn().await;
    p.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    p.query_drop(format!("CREATE TABLE {db}.t (a INT)"))
        .await
        .unwrap();
    wait_view(&tp.proxy, 0, false).await;
    let want = needed(start, [3, 1], [false, true]);
    for _ in 0..3 {
        p.query_drop(format!("INSERT INTO {db}.t VALUES (1)"))
            .await
            .unwrap();
        let got = round(&mut conns).await;
        assert_eq!(split(&got, sid), [0, 40], "a read reached the lagging r1");
    }
    let (per, total) = moved(&before);
    eprintln!("r1 left: {total} moves {per:?}, {want} needed");
    assert_eq!(total, want, "{per:?}");
    assert_eq!(per.get("left").copied(), Some(want), "{per:?}");

    // 3. r1 returns: 30/10 ±1 again, with no more moves than needed
    let want = needed([0, 40], [3, 1], [true, true]);
    let before = moves();
    r1c.query_drop("START REPLICA SQL_THREAD").await.unwrap();
    wait_view(&tp.proxy, 0, true).await;
    let back = until_exact(&mut conns, sid, [3, 1]).await;
    let (per, total) = moved(&before);
    eprintln!("r1 returned: {back:?} after {total} moves {per:?}, {want} needed");
    assert!(total <= want, "{total} moves, {want} needed: {per:?}");
    assert_eq!(per.get("returned").copied(), Some(total), "{per:?}");
    assert_eq!(homed(&mut admin).await, back);

    // 4. 20 of r1's sessions end: the rest rebalance to 15/5 ±1
    let last = round(&mut conns).await;
    let mut closed = 0;
    let mut keep = Vec::new();
    for (c, s) in conns.into_iter().zip(&last) {
        if *s == sid[0] && closed < 20 {
            c.disconnect().await.unwrap();
            closed += 1;
        } else {
            keep.push(c);
        }
    }
    let mut conns = keep;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tp.proxy.topology.load().ledger.total() != 20 {
        assert!(Instant::now() < deadline, "closed sessions still counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let have = [back[0] - 20, back[1]];
    let want = needed(have, [3, 1], [true, true]);
    let before = moves();
    let rest = until_exact(&mut conns, sid, [3, 1]).await;
    let (per, total) = moved(&before);
    eprintln!(
        "20 of r1's sessions ended: {have:?} → {rest:?} after {total} moves {per:?}, {want} needed"
    );
    assert!(total <= want, "{total} moves, {want} needed: {per:?}");
    assert_eq!(per.get("rebalanced").copied(), Some(total), "{per:?}");

    // ... and 20 new sessions give 30/10 ±1 again without a move
    let before = moves();
    for _ in 0..20 {
        conns.push(tp.conn().await);
    }
    let got = round(&mut conns).await;
    let full = split(&got, sid);
    eprintln!("20 new sessions: {full:?}");
    assert!(exact(full, [3, 1]), "{full:?}");
    assert_eq!(homed(&mut admin).await, full);
    assert_eq!(moved(&before).1, 0, "{:?}", moved(&before).0);
    assert_eq!(round(&mut conns).await, got);

    // 5. a reload to 1:1: 20/20 ±1, with no more moves than needed
    let want = needed(full, [1, 1], [true, true]);
    let path = std::env::temp_dir().join(format!("{db}.toml"));
    std::fs::write(&path, config(1)).unwrap();
    let before = moves();
    tp.proxy.reload_from(&path).expect("reload to 1:1");
    let even = until_exact(&mut conns, sid, [1, 1]).await;
    let (per, total) = moved(&before);
    eprintln!("reload to 1:1: {full:?} → {even:?} after {total} moves {per:?}, {want} needed");
    assert!(total <= want, "{total} moves, {want} needed: {per:?}");
    assert_eq!(per.get("reweighted").copied(), Some(total), "{per:?}");

    let _ = std::fs::remove_file(&path);
    p.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_arriving_at_once_split_exactly() {
    let _turn = TURN.lock().await;
    let topo = support::topology();
    let sid = [
        topo.replicas()[0].server_id(),
        topo.replicas()[1].server_id(),
    ];
    let tp = support::start_proxy_with(|_| config(3)).await;
    wait_view(&tp.proxy, 0, true).await;
    wait_view(&tp.proxy, 1, true).await;
    let mut admin = admin(&tp).await;
    causeway::admin::install_recorder();
    let before = moves();
    let port = tp.port();
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(support::opts(port, "app", "apppw", None))
                    .await
                    .expect("connect");
                let _: Option<u32> = c.query_first("SELECT @@server_id").await.expect("read");
                c
            })
        })
        .collect();
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await.expect("session task"));
    }
    let got = until_exact(&mut conns, sid, [3, 1]).await;
    let (per, total) = moved(&before);
    eprintln!("60 sessions arriving at once: {got:?} after {total} moves {per:?}");
    assert_eq!(homed(&mut admin).await, got);
    assert_eq!(tp.proxy.topology.load().ledger.total(), 60);
}
