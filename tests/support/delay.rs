//! Holding the replicas back, for token hand-off tests that must be able to
//! fail: `SOURCE_DELAY` keeps the replicas' threads running (so the monitor
//! keeps them eligible within a large lag budget) while nothing new is
//! applied. A causal read must then wait or fall back, and an eventual read
//! reads stale. [`release_when_waiting`] lets them catch up only once a
//! causal read has waited on one of them for 2 s (`WAIT_FOR_EXECUTED_GTID_SET`
//! in the replica's own processlist, `TIME >= 2`), so that read must end
//! `:waited`; reads with a wait timeout under a second never trigger it.

use super::topology;
use mysql_async::prelude::*;
use std::time::{Duration, Instant};

/// Config tweak: a fast monitor and a lag budget (10 min) that a replica
/// delayed for the length of a test stays within.
pub fn lag_budget(t: String) -> String {
    t.replacen(
        "[monitor]\n",
        "[monitor]\ninterval_ms = 200\nconnect_timeout_ms = 1000\n",
        1,
    ) + "\n[routing]\nmax_lag_ms = 600000\n"
}

/// Runs `sql` on every replica as root.
async fn on_replicas(sql: &str) {
    for r in topology().replicas() {
        let mut c = r.conn().await.expect("replica root connection");
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", r.name()));
    }
}

/// Sets every replica's `SOURCE_DELAY`, restarting its applier.
pub async fn delay_replicas(seconds: u32) {
    on_replicas("STOP REPLICA SQL_THREAD").await;
    on_replicas(&format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {seconds}"
    ))
    .await;
    on_replicas("START REPLICA SQL_THREAD").await;
}

/// Holds the replicas back (`SOURCE_DELAY` of an hour) and waits until the
/// monitor behind `proxy` sees both replicating and eligible again.
pub async fn hold_replicas(proxy: &causeway::proxy::Proxy) {
    delay_replicas(3600).await;
    wait_eligible(proxy).await;
}

/// Lets the replicas apply everything again and waits until they have.
pub async fn release_replicas() {
    delay_replicas(0).await;
    super::sync_replicas().await;
}

/// Waits (bounded) until every replica is eligible in `proxy`'s view.
pub async fn wait_eligible(proxy: &causeway::proxy::Proxy) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topo = proxy.topology.load_full();
        let views: Vec<_> = topo
            .replicas
            .iter()
            .map(|r| r.state.view.load_full())
            .collect();
        // a measured view, not the default one a new proxy starts with
        if views
            .iter()
            .all(|v| v.eligible && v.replicating && v.measured_at.is_some())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas not eligible again: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replicas whose processlist shows a `WAIT_FOR_EXECUTED_GTID_SET` that has
/// run for at least 2 s.
pub async fn replicas_waiting() -> Vec<String> {
    let mut names = Vec::new();
    for r in topology().replicas() {
        let mut c = r.conn().await.expect("replica root connection");
        let n: Option<u64> = c
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE 'SELECT WAIT_FOR_EXECUTED_GTID_SET(%' AND TIME >= 2",
            )
            .await
            .expect("processlist");
        if n.is_some_and(|n| n > 0) {
            names.push(r.name().to_string());
        }
    }
    names
}

/// Polls (bounded by `limit`) until a causal read has waited 2 s on a
/// replica, then releases the replicas; returns the replicas that had it.
pub async fn release_when_waiting(limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let waiting = replicas_waiting().await;
        if !waiting.is_empty() {
            delay_replicas(0).await;
            return waiting;
        }
        assert!(
            Instant::now() < deadline,
            "no causal read waited on a replica within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
