//! `GET /api/backends`, `/api/sessions` and `/api/config` on an in-process
//! proxy: JSON with the topology as the monitor measured it, sessions
//! counted per user and state, the configuration without a password.

use mysql_async::prelude::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http::{get, json};
use crate::support;

pub fn admin_on(text: String) -> String {
    text.replacen(
        "[admin]\nenabled = false",
        "[admin]\nenabled = true\nlisten = \"127.0.0.1:0\"",
        1,
    )
}

pub async fn start_admin_proxy(
    tweak: impl FnOnce(String) -> String,
) -> (support::TestProxy, SocketAddr) {
    let tp = support::start_proxy_with(|t| tweak(admin_on(t))).await;
    let admin = tp
        .proxy
        .serve_admin()
        .await
        .expect("admin endpoint")
        .expect("admin enabled");
    (tp, admin)
}

/// Polls `/api/backends` until `cond` holds for the list (bounded, 20 s).
pub async fn backends_until(
    admin: SocketAddr,
    what: &str,
    cond: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let v = json(admin, "/api/backends").await;
        let list = v.as_array().expect("an array").clone();
        if cond(&list) {
            return list;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "/api/backends not '{what}' in 20 s: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn by_name<'a>(list: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_backends_reports_what_the_monitor_measured() {
    let (_tp, admin) = start_admin_proxy(|t| t).await;
    let mut direct = support::direct_conn().await;
    let uuid: String = direct
        .query_first("SELECT @@server_uuid")
        .await
        .unwrap()
        .unwrap();
    let db = support::unique_db("api");
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    support::sync_replicas().await;
    let list = backends_until(admin, "all measured", |l| {
        l.len() == 3
            && l.iter().all(|b| {
                b["state"] == "up"
                    && !b["server_uuid"].is_null()
                    && b["gtid_executed"]
                        .as_str()
                        .is_some_and(|g| g.contains(&uuid))
            })
            && l.iter()
                .filter(|b| b["role"] == "replica")
                .all(|b| b["source_mismatch"] == false && b["lag_ms"].is_u64())
    })
    .await;
    let names: Vec<&str> = list.iter().filter_map(|b| b["name"].as_str()).collect();
    assert_eq!(names, ["primary", "r1", "r2"]);
    let topo = support::topology();
    let p = by_name(&list, "primary");
    assert_eq!(p["role"], "primary");
    assert_eq!(p["address"], topo.primary().addr());
    assert_eq!(p["read_only"], false);
    assert_eq!(p["source_mismatch"], serde_json::Value::Null);
    // the server_uuid is the primary's own, and the replicas' source
    assert_eq!(p["server_uuid"], uuid.as_str());
    // (r2's read_only is toggled by safety::a_writable_replica_...)
    assert_eq!(
        by_name(&list, "r1")["read_only"],
        true,
        "sandbox replicas are read_only"
    );
    assert_eq!(by_name(&list, "r1")["writable_replica"], false);
    for r in ["r1", "r2"] {
        let b = by_name(&list, r);
        assert_eq!(b["source_uuids"], serde_json::json!([uuid]), "{b}");
    }
    assert_eq!(get(admin, "POST", "/api/backends").await.0, 405);
    assert_eq!(get(admin, "GET", "/api/nope").await.0, 404);
    let (status, head, body) = get(admin, "HEAD", "/api/config").await;
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    assert!(head.contains("Content-Length: "), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_sessions_counts_per_user_and_state() {
    // users of their own so that other tests' sessions do not mix in
    let (tp, admin) = start_admin_proxy(|t| t).await;
    let before = json(admin, "/api/sessions").await;
    assert_eq!(before["sessions"], 0, "{before:#}");
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(tp.conn().await);
    }
    let mut adm = mysql_async::Conn::new(tp.opts("admin", "adminpw"))
        .await
        .unwrap();
    let _: Option<i64> = adm.query_first("SELECT 1").await.unwrap();
    // one app session runs a statement while we look
    let mut sleeper = apps.pop().unwrap();
    let sleep = tokio::spawn(async move {
        let r: Option<i64> = sleeper.query_first("SELECT SLEEP(3)").await.unwrap();
        (r, sleeper)
    });
    let start = Instant::now();
    let v = loop {
        let v = json(admin, "/api/sessions").await;
        let running = v["by_user"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["user"] == "app" && c["state"] == "running" && c["count"] == 1);
        if running {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no running app session seen: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(v["sessions"], 4, "{v:#}");
    assert!(v["clients"].as_u64().unwrap() >= 4, "{v:#}");
    let count = |user: &str, state: &str| {
        v["by_user"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["user"] == user && c["state"] == state)
            .map(|c| c["count"].as_u64().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(count("app", "idle"), 2, "{v:#}");
    assert_eq!(count("app", "running"), 1, "{v:#}");
    assert_eq!(count("admin", "idle"), 1, "{v:#}");
    let (r, sleeper) = sleep.await.unwrap();
    assert_eq!(r, Some(0));
    drop((sleeper, apps, adm));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_config_redacts_every_password() {
    let (tp, admin) = start_admin_proxy(|t| t).await;
    let (status, _, body) = get(admin, "GET", "/api/config").await;
    assert_eq!(status, 200);
    for secret in ["apppw", "adminpw", "monitorpw", "nativepw"] {
        assert!(!body.contains(secret), "{secret} leaked: {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let users = v["users"].as_array().unwrap();
    let app = users.iter().find(|u| u["name"] == "app").unwrap();
    assert_eq!(app["password"], "<redacted>");
    assert_eq!(v["monitor"]["password"], "<redacted>");
    assert_eq!(v["monitor"]["user"], "monitor");
    assert_eq!(
        v["primary"]["address"],
        support::topology().primary().addr()
    );
    assert_eq!(v["replicas"].as_array().unwrap().len(), 2);
    let cfg = tp.proxy.topology.load().config.clone();
    assert_eq!(v["server"]["listen"], cfg.server.listen.as_str());
}
