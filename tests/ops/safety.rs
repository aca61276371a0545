//! The monitor's split-brain checks on real MySQL, judged on the real
//! binary: a replica made writable (`read_only` and `super_read_only` off)
//! is warned about once, shown in SHOW CAUSEWAY BACKENDS, /api/backends and
//! `causeway_backend_read_only`, and cleared when restored; a replica whose
//! source is not the configured primary is flagged the same way
//! (`causeway_backend_source_mismatch`).

use mysql_async::prelude::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::admin_api::by_name;
use crate::admin_hostile::external_with_admin;
use crate::http::{gauge, get, json};
use crate::support::{self, external::ExternalProxy};

fn fast_monitor(t: String) -> String {
    t.replacen(
        "password = \"monitorpw\"",
        "password = \"monitorpw\"\ninterval_ms = 100",
        1,
    )
}

/// SHOW CAUSEWAY BACKENDS through `p` as admin: name → (read_only, source_mismatch).
async fn show_backends(p: &ExternalProxy) -> Vec<(String, Option<String>, Option<String>)> {
    let mut c = mysql_async::Conn::new(p.opts("admin", "adminpw"))
        .await
        .expect("admin login");
    let rows: Vec<mysql_async::Row> = c.query("SHOW CAUSEWAY BACKENDS").await.unwrap();
    let cols: Vec<String> = rows[0]
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    let at = |n: &str| cols.iter().position(|c| c == n).expect(n);
    let (ro, sm) = (at("read_only"), at("source_mismatch"));
    rows.iter()
        .map(|r| {
            (
                r.get::<String, _>(0).unwrap(),
                r.get::<Option<String>, _>(ro).unwrap(),
                r.get::<Option<String>, _>(sm).unwrap(),
            )
        })
        .collect()
}

async fn until(what: &str, p: &ExternalProxy, mut cond: impl FnMut(&str) -> bool) {
    let start = Instant::now();
    while !cond(&p.log()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} not logged in 20 s:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn replica_root(i: usize) -> mysql_async::Conn {
    let port = support::topology().replicas()[i].port();
    mysql_async::Conn::new(support::opts(port, "root", "", None))
        .await
        .expect("root on the replica")
}

async fn metrics(admin: SocketAddr) -> String {
    let (status, _, body) = get(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writable_replica_is_flagged_once_and_cleared() {
    let (p, admin) = external_with_admin(fast_monitor).await;
    crate::admin_api::backends_until(admin, "r2 read-only", |l| {
        l.len() == 3 && by_name(l, "r2")["read_only"] == true
    })
    .await;
    assert_eq!(
        gauge(&metrics(admin).await, "causeway_backend_read_only", "r2"),
        Some(1.0)
    );
    let mut r2 = replica_root(1).await;
    let (ro, sro): (i64, i64) = r2
        .query_first("SELECT @@GLOBAL.read_only, @@GLOBAL.super_read_only")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ro, 1, "the sandbox replica starts read_only");
    r2.query_drop("SET GLOBAL super_read_only = OFF")
        .await
        .unwrap();
    r2.query_drop("SET GLOBAL read_only = OFF").await.unwrap();
    // observe everything, then restore, then judge
    let seen = crate::admin_api::backends_until(admin, "r2 writable", |l| {
        by_name(l, "r2")["writable_replica"] == true
    })
    .await;
    let text = metrics(admin).await;
    let shown = show_backends(&p).await;
    until("the writable warning", &p, |l| {
        l.contains("replica is writable")
    })
    .await;
    r2.query_drop(format!("SET GLOBAL read_only = {ro}"))
        .await
        .unwrap();
    r2.query_drop(format!("SET GLOBAL super_read_only = {sro}"))
        .await
        .unwrap();
    until("the all-clear", &p, |l| {
        l.contains("replica is read-only again")
    })
    .await;
    let after = crate::admin_api::backends_until(admin, "r2 read-only again", |l| {
        by_name(l, "r2")["read_only"] == true
    })
    .await;

    assert_eq!(by_name(&seen, "r2")["read_only"], false);
    assert_eq!(by_name(&seen, "r1")["writable_replica"], false);
    assert_eq!(
        gauge(&text, "causeway_backend_read_only", "r2"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(gauge(&text, "causeway_backend_read_only", "r1"), Some(1.0));
    assert_eq!(
        gauge(&text, "causeway_backend_read_only", "primary"),
        Some(0.0)
    );
    let row = shown.iter().find(|r| r.0 == "r2").unwrap();
    assert_eq!(row.1.as_deref(), Some("0"), "{shown:?}");
    let row = shown.iter().find(|r| r.0 == "r1").unwrap();
    assert_eq!(row.1.as_deref(), Some("1"), "{shown:?}");
    assert_eq!(by_name(&after, "r2")["writable_replica"], false);
    let log = p.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("replica is writable"))
        .count();
    assert_eq!(warnings, 1, "one warning per transition:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("replica is writable") && l.contains("r2") && l.contains("WARN")),
        "{log}"
    );
    p.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_of_another_source_is_flagged() {
    // The configured "primary" is really replica r1; r2 replicates from the
    // real primary, so its source is not the configured primary.
    let topo = support::topology();
    let (real, r1, r2) = (
        topo.primary().addr(),
        topo.replicas()[0].addr(),
        topo.replicas()[1].addr(),
    );
    let (p, admin) = external_with_admin(|t| {
        let t = fast_monitor(t)
            .replacen(
                &format!("name = \"primary\"\naddress = \"{real}\""),
                &format!("name = \"fakeprimary\"\naddress = \"{r1}\""),
                1,
            )
            .replacen(
                &format!("[[replicas]]\nname = \"r1\"\naddress = \"{r1}\"\nweight = 1\n"),
                "",
                1,
            );
        assert!(
            t.contains("fakeprimary") && !t.contains("name = \"r1\""),
            "{t}"
        );
        t
    })
    .await;
    let list = crate::admin_api::backends_until(admin, "r2 mismatch", |l| {
        l.len() == 2 && by_name(l, "r2")["source_mismatch"] == true
    })
    .await;
    let mut direct = support::direct_conn().await;
    let real_uuid: String = direct
        .query_first("SELECT @@server_uuid")
        .await
        .unwrap()
        .unwrap();
    let b = by_name(&list, "r2");
    assert_eq!(b["source_uuids"], serde_json::json!([real_uuid]), "{b}");
    let fake = by_name(&list, "fakeprimary");
    assert_ne!(fake["server_uuid"], real_uuid.as_str());
    assert_eq!(fake["source_mismatch"], serde_json::Value::Null);
    let text = metrics(admin).await;
    assert_eq!(
        gauge(&text, "causeway_backend_source_mismatch", "r2"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        gauge(&text, "causeway_backend_source_mismatch", "fakeprimary"),
        None
    );
    let shown = show_backends(&p).await;
    let row = shown.iter().find(|r| r.0 == "r2").unwrap();
    assert_eq!(row.2.as_deref(), Some("1"), "{shown:?}");
    let row = shown.iter().find(|r| r.0 == "fakeprimary").unwrap();
    assert_eq!(row.2, None, "{shown:?}");
    until("the foreign-source warning", &p, |l| {
        l.contains("not the configured primary")
    })
    .await;
    let log = p.log();
    let n = log
        .lines()
        .filter(|l| l.contains("not the configured primary"))
        .count();
    assert_eq!(n, 1, "{log}");
    p.assert_no_panic();

    // the same replica behind the real primary is not flagged
    let proxy = json(admin, "/api/config").await;
    assert_eq!(proxy["primary"]["address"], r1.as_str());
    let (_tp, admin2) = crate::admin_api::start_admin_proxy(|t| t).await;
    let list = crate::admin_api::backends_until(admin2, "r2 matches", |l| {
        l.len() == 3 && by_name(l, "r2")["source_mismatch"] == false
    })
    .await;
    assert_eq!(
        by_name(&list, "r2")["source_uuids"],
        serde_json::json!([real_uuid])
    );
    let _ = r2;
}
