//! Query rules and named pools against real MySQL: the shared topology's
//! second replica (r2) sits in a named pool; rules route reads to it by
//! table, pattern and user; a reject rule refuses `DELETE FROM t` with the
//! rule's name and nothing reaches a backend; `SHOW CAUSEWAY RULES` counts
//! matches; a reload without the rules sends those reads back to the
//! general pool; a `watermark_query` pool serves a causal read only once
//! the watermark holds the read's token. `causeway check-config` refuses
//! the bad rule cases with file, line and key.

#[path = "support/mod.rs"]
mod support;

use causeway::proxy::Proxy;
use causeway_config::Config;
use mysql_async::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Base config with r1 in the general pool and r2 in pool `pool` (with
/// `r2_extra` lines), plus a `reporter` user (backend user app).
fn config(pool: &str, r2_extra: &str, tail: &str) -> String {
    config_from(
        &support::config_text(support::topology()),
        pool,
        r2_extra,
        tail,
    )
}

/// [`config`] from another base text (the external proxy's).
fn config_from(base: &str, pool: &str, r2_extra: &str, tail: &str) -> String {
    let topo = support::topology();
    let cut = base.find("[[replicas]]").expect("replicas in base config");
    let mut s = base[..cut].to_string();
    s.push_str(
        "[[users]]\nname = \"reporter\"\npassword = \"reppw\"\nbackend_user = \"app\"\nbackend_password = \"apppw\"\n",
    );
    let (r1, r2) = (&topo.replicas()[0], &topo.replicas()[1]);
    s.push_str(&format!(
        "[[replicas]]\nname = \"{}\"\naddress = \"{}\"\n",
        r1.name(),
        r1.addr()
    ));
    s.push_str(&format!(
        "[[replicas]]\nname = \"{}\"\naddress = \"{}\"\npool = \"{pool}\"\n{r2_extra}\n",
        r2.name(),
        r2.addr()
    ));
    s.push_str("[routing]\nread_balance = \"statement\"\n");
    s.push_str(tail);
    s
}

fn rules_for(db: &str) -> String {
    format!(
        r#"
[[rules]]
name = "no_full_delete"
match_pattern = '(?i)^\s*delete\s+from\s+\S+\s*;?\s*$'
route = "reject"

[[rules]]
name = "daily"
match_tables = ["{db}.report_daily"]
route = "pool:reporting"

[[rules]]
name = "weekly"
match_pattern = '(?i)^\s*select .* from \S*report_weekly'
route = "pool:reporting"
consistency = "eventual"

[[rules]]
name = "reporter"
match_users = ["reporter"]
route = "pool:reporting"
"#
    )
}

fn r1_id() -> u32 {
    support::topology().replicas()[0].server_id()
}
fn r2_id() -> u32 {
    support::topology().replicas()[1].server_id()
}
fn r2_name() -> String {
    support::topology().replicas()[1].name().to_string()
}

async fn setup_schema(db: &str) {
    let mut d = support::direct_conn().await;
    d.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    for t in ["report_daily", "report_weekly", "t"] {
        d.query_drop(format!("CREATE TABLE {db}.{t} (id INT PRIMARY KEY, v INT)"))
            .await
            .unwrap();
        d.query_drop(format!(
            "INSERT INTO {db}.{t} VALUES (1, 1), (2, 2), (3, 3)"
        ))
        .await
        .unwrap();
    }
    support::sync_replicas().await;
}

async fn last_route(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap()
}

/// `n` reads of `sql` (whose first column is @@server_id): the server ids.
async fn ids_of(c: &mut mysql_async::Conn, sql: &str, n: usize) -> Vec<u32> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let id: u32 = c.query_first(sql).await.unwrap().unwrap();
        v.push(id);
    }
    v
}

async fn primary_count(db: &str, t: &str) -> i64 {
    let mut d = support::direct_conn().await;
    d.query_first(format!("SELECT COUNT(*) FROM {db}.{t}"))
        .await
        .unwrap()
        .unwrap()
}

/// match_users: every free read of `reporter` goes to the pool, but its
/// writes and reads inside a transaction go to the primary. Returns the
/// reporter's session.
async fn reporter_reads_go_to_the_pool(p: &support::TestProxy, db: &str) -> mysql_async::Conn {
    // match_users: every free read of the user goes to the pool
    let mut rep = mysql_async::Conn::new(support::opts(p.port(), "reporter", "reppw", Some(db)))
        .await
        .unwrap();
    let ids = ids_of(&mut rep, "SELECT @@server_id", 10).await;
    assert!(ids.iter().all(|&id| id == r2_id()), "{ids:?}");
    // ... but a write never goes to a replica pool because of a rule
    rep.query_drop("INSERT INTO t VALUES (10, 10)")
        .await
        .unwrap();
    assert_eq!(last_route(&mut rep).await, "primary");
    assert_eq!(primary_count(db, "t").await, 4);
    // the pool honours the token: the reporter reads its own write there
    let n: i64 = rep
        .query_first("SELECT COUNT(*) FROM t WHERE id = 10")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
    assert!(last_route(&mut rep)
        .await
        .starts_with(&format!("replica:{}", r2_name())));
    // ... nor a read inside a transaction
    rep.query_drop("BEGIN").await.unwrap();
    let id: u32 = rep
        .query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    rep.query_drop("COMMIT").await.unwrap();
    assert_eq!(id, support::topology().primary().server_id());
    rep
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_route_to_a_named_pool_and_reject() {
    let db = support::unique_db("rules");
    setup_schema(&db).await;
    let rules = rules_for(&db);
    let text = config("reporting", "", &rules);
    let p = support::start_proxy_with(|_| text).await;
    let mut app = mysql_async::Conn::new(support::opts(p.port(), "app", "apppw", Some(&db)))
        .await
        .unwrap();

    // a replica in a named pool takes no general reads
    let general = ids_of(
        &mut app,
        "/* causeway consistency=eventual */ SELECT @@server_id",
        40,
    )
    .await;
    assert!(general.iter().all(|&id| id == r1_id()), "{general:?}");
    assert!(!general.contains(&r2_id()));

    // match_tables (unqualified, resolved with the session database)
    let ids = ids_of(&mut app, "SELECT @@server_id FROM report_daily LIMIT 1", 10).await;
    assert!(ids.iter().all(|&id| id == r2_id()), "{ids:?}");
    assert_eq!(last_route(&mut app).await, format!("replica:{}", r2_name()));
    // ... and qualified, from another default database
    let mut other = mysql_async::Conn::new(support::opts(p.port(), "app", "apppw", None))
        .await
        .unwrap();
    let id: u32 = other
        .query_first(format!("SELECT @@server_id FROM {db}.report_daily LIMIT 1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, r2_id());
    // a table the rule does not name stays in the general pool
    let ids = ids_of(
        &mut app,
        "/* causeway consistency=eventual */ SELECT @@server_id FROM t LIMIT 1",
        10,
    )
    .await;
    assert!(ids.iter().all(|&id| id == r1_id()), "{ids:?}");

    // match_pattern
    let ids = ids_of(
        &mut app,
        &format!("select @@server_id from {db}.report_weekly limit 1"),
        10,
    )
    .await;
    assert!(ids.iter().all(|&id| id == r2_id()), "{ids:?}");

    // prepared statements follow the rules too
    let id: u32 = app
        .exec_first("SELECT @@server_id FROM report_daily WHERE id = ?", (1,))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, r2_id());

    let mut rep = reporter_reads_go_to_the_pool(&p, &db).await;

    // a reject rule refuses DELETE without WHERE; the table is intact
    for c in [&mut app, &mut rep] {
        let e = c.query_drop("DELETE FROM t").await.unwrap_err();
        let mysql_async::Error::Server(se) = e else {
            panic!("expected a server error, got {e:?}")
        };
        assert_eq!((se.code, se.state.as_str()), (1290, "HY000"));
        assert!(se.message.contains("'no_full_delete'"), "{}", se.message);
    }
    let e = app.exec_drop("DELETE FROM t", ()).await.unwrap_err();
    assert!(e.to_string().contains("no_full_delete"), "{e}");
    assert_eq!(primary_count(&db, "t").await, 4);
    // the connection lives on, and a DELETE with WHERE is not refused
    app.query_drop("DELETE FROM t WHERE id = 10").await.unwrap();
    assert_eq!(primary_count(&db, "t").await, 3);

    // SHOW CAUSEWAY RULES (admin) lists the match counts
    let mut admin = mysql_async::Conn::new(p.opts("admin", "adminpw"))
        .await
        .unwrap();
    let rows: Vec<mysql_async::Row> = admin.query("SHOW CAUSEWAY RULES").await.unwrap();
    let counts: Vec<(String, String, u64)> = rows
        .into_iter()
        .map(|r| {
            let name: String = r.get("name").unwrap();
            let route: String = r.get("route").unwrap();
            let matches: u64 = r.get("matches").unwrap();
            (name, route, matches)
        })
        .collect();
    let get = |n: &str| counts.iter().find(|c| c.0 == n).unwrap().2;
    assert_eq!(counts.len(), 4);
    assert_eq!(counts[1].1, "pool:reporting");
    assert_eq!(get("no_full_delete"), 3);
    assert_eq!(get("daily"), 12);
    assert_eq!(get("weekly"), 10);
    // the 10 reads, plus what the driver itself reads at connect
    assert!((11..=13).contains(&get("reporter")), "{counts:?}");
    // not for other users
    let e = app.query_drop("SHOW CAUSEWAY RULES").await.unwrap_err();
    assert!(
        e.to_string().contains("1227") || e.to_string().contains("admin"),
        "{e}"
    );

    let mut d = support::direct_conn().await;
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("causeway-rules-{tag}-{}.toml", std::process::id()))
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_without_rules_sends_reads_back_to_the_general_pool() {
    let db = support::unique_db("rules_reload");
    setup_schema(&db).await;
    let path = temp_path("reload");
    write(&path, &config("reporting", "", &rules_for(&db)));
    let proxy = Proxy::new(Config::from_file(&path).unwrap()).unwrap();
    let listener = proxy.bind().await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(Arc::clone(&proxy).serve(listener));
    let mut c = mysql_async::Conn::new(support::opts(port, "app", "apppw", Some(&db)))
        .await
        .unwrap();
    let read = "/* causeway consistency=eventual */ SELECT @@server_id FROM report_daily LIMIT 1";
    let ids = ids_of(&mut c, read, 10).await;
    assert!(ids.iter().all(|&id| id == r2_id()), "{ids:?}");

    // the same file without [[rules]]: r2 keeps its pool, so takes nothing
    write(&path, &config("reporting", "", ""));
    let summary = proxy.reload_from(&path).unwrap();
    assert!(summary.generation >= 2);
    let ids = ids_of(&mut c, read, 20).await;
    assert!(ids.iter().all(|&id| id == r1_id()), "{ids:?}");
    let mut admin = mysql_async::Conn::new(support::opts(port, "admin", "adminpw", None))
        .await
        .unwrap();
    let rows: Vec<mysql_async::Row> = admin.query("SHOW CAUSEWAY RULES").await.unwrap();
    assert!(rows.is_empty());
    // the DELETE is no longer refused either
    c.query_drop("DELETE FROM t").await.unwrap();
    assert_eq!(primary_count(&db, "t").await, 0);

    // and back in the general pool, r2 takes general reads again
    let back = config("default", "", "");
    write(&path, &back);
    proxy.reload_from(&path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = ids_of(
            &mut c,
            "/* causeway consistency=eventual */ SELECT @@server_id",
            10,
        )
        .await;
        if ids.contains(&r2_id()) && ids.contains(&r1_id()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "r2 never took general reads: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.shutdown();
    std::fs::remove_file(&path).ok();
    let mut d = support::direct_conn().await;
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// The read model (here replicated to r2 to stand in for a CDC-fed store,
/// with one row, so a read of it returns the serving server's id) and its
/// watermark row at the primary's executed set now, which the monitor
/// account may read.
async fn read_model_schema(d: &mut mysql_async::Conn, db: &str) {
    d.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    d.query_drop(format!(
        "CREATE TABLE {db}.watermark (id INT PRIMARY KEY, gtid_set TEXT)"
    ))
    .await
    .unwrap();
    d.query_drop(format!(
        "CREATE TABLE {db}.orders (id INT PRIMARY KEY, total INT)"
    ))
    .await
    .unwrap();
    d.query_drop(format!(
        "CREATE TABLE {db}.orders_view (id INT PRIMARY KEY, total INT)"
    ))
    .await
    .unwrap();
    d.query_drop(format!("INSERT INTO {db}.orders_view VALUES (1, 0)"))
        .await
        .unwrap();
    let before: String = d
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .unwrap()
        .unwrap();
    d.query_drop(format!("INSERT INTO {db}.watermark VALUES (1, '{before}')"))
        .await
        .unwrap();
    // the monitor account reads the watermark (the grant replicates)
    let mut root = support::root_conn().await;
    root.query_drop(format!("GRANT SELECT ON {db}.watermark TO 'monitor'@'%'"))
        .await
        .unwrap();
    support::sync_replicas().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_pool_serves_a_causal_read_only_once_the_watermark_has_the_token() {
    let db = support::unique_db("rules_cqrs");
    let mut d = support::direct_conn().await;
    read_model_schema(&mut d, &db).await;

    let tail = format!(
        r#"
[[pools]]
name = "readmodel"
watermark_query = "SELECT gtid_set FROM {db}.watermark WHERE id = 1"
on_timeout = "error"

[[rules]]
name = "orders_view"
match_tables = ["{db}.orders_view"]
route = "pool:readmodel"
"#
    );
    // the watermark trails the primary by design: a generous lag budget
    let text = config("readmodel", "max_lag_ms = 600000", &tail);
    let p = support::start_proxy_with(|_| text).await;
    let mut c = mysql_async::Conn::new(support::opts(p.port(), "app", "apppw", Some(&db)))
        .await
        .unwrap();
    // an eventual read is served by the pool whatever the watermark says
    let id: u32 = c
        .query_first("/* causeway consistency=eventual */ SELECT @@server_id FROM orders_view")
        .await
        .unwrap()
        .expect("orders_view has a row");
    assert_eq!(last_route(&mut c).await, format!("replica:{}", r2_name()));
    assert_eq!(id, r2_id());

    // a write through causeway gives the session its token
    c.query_drop("INSERT INTO orders VALUES (1, 100)")
        .await
        .unwrap();
    let token: String = c
        .query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap();
    assert!(!token.is_empty());
    support::sync_replicas().await;

    // the watermark lacks the token: not served by the pool, error
    let started = Instant::now();
    let e = c
        .query_drop("SELECT @@server_id FROM orders_view")
        .await
        .unwrap_err();
    let mysql_async::Error::Server(se) = e else {
        panic!("expected a server error, got {e:?}")
    };
    assert_eq!(
        (se.code, se.state.as_str()),
        (1105, "HY000"),
        "{}",
        se.message
    );
    assert!(se.message.contains("pool 'readmodel'"), "{}", se.message);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        c.query_first::<u32, _>("SELECT 1").await.unwrap(),
        Some(1),
        "the connection lives on"
    );

    // the CDC pipeline catches up: the watermark now holds the token
    d.query_drop(format!(
        "UPDATE {db}.watermark SET gtid_set = '{token}' WHERE id = 1"
    ))
    .await
    .unwrap();
    support::sync_replicas().await;
    c.query_drop("SET @@causeway.wait_timeout_ms = 20000")
        .await
        .unwrap();
    let id: Option<u32> = c
        .query_first("SELECT @@server_id FROM orders_view")
        .await
        .unwrap();
    assert_eq!(id, Some(r2_id()), "served by r2, which has the row");
    let route = last_route(&mut c).await;
    assert!(
        route.starts_with(&format!("replica:{}", r2_name())),
        "{route}"
    );

    drop(p);
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// `GET /metrics` from the admin endpoint at `port`: the body.
async fn metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

/// The value of the sample line starting with `prefix`, 0 when absent.
fn sample(body: &str, prefix: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binary_counts_matches_and_sighup_drops_the_rules() {
    let db = support::unique_db("rules_ext");
    setup_schema(&db).await;
    let admin_port = support::external::free_port();
    let rules = rules_for(&db);
    let with_admin = move |base: String, tail: &str| {
        config_from(&base, "reporting", "", tail).replace(
            "[admin]\nenabled = false",
            &format!("[admin]\nenabled = true\nlisten = \"127.0.0.1:{admin_port}\""),
        )
    };
    let mut base = String::new();
    let p = support::external::ExternalProxy::start(|t| {
        base = t.clone();
        with_admin(t, &rules)
    })
    .await;
    let mut c = mysql_async::Conn::new(support::opts(p.port, "app", "apppw", Some(&db)))
        .await
        .unwrap();
    let read = "/* causeway consistency=eventual */ SELECT @@server_id FROM report_daily LIMIT 1";
    let ids = ids_of(&mut c, read, 7).await;
    assert!(ids.iter().all(|&id| id == r2_id()), "{ids:?}");
    let body = metrics(admin_port).await;
    assert_eq!(
        sample(&body, "causeway_rule_matches_total{rule=\"daily\"}"),
        7.0,
        "{body}"
    );

    // SIGHUP with the rules gone: the reads go back to the general pool
    std::fs::write(&p.config_path, with_admin(base, "")).unwrap();
    p.reload();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = ids_of(&mut c, read, 5).await;
        if ids.iter().all(|&id| id == r1_id()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still routed by the rule: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = ids_of(&mut c, read, 20).await;
    assert!(ids.iter().all(|&id| id == r1_id()), "{ids:?}");
    assert!(p.log().contains("reload"), "{}", p.log());
    p.assert_no_panic();
    let mut d = support::direct_conn().await;
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[test]
fn check_config_refuses_bad_rules_with_file_line_and_key() {
    let bin = env!("CARGO_BIN_EXE_causeway");
    let base = "[[users]]\nname = \"a\"\npassword = \"\"\n[primary]\nname = \"p\"\naddress = \"127.0.0.1:3306\"\n[monitor]\nuser = \"m\"\n";
    let cases = [
        (
            "[[rules]]\nname = \"x\"\nroute = \"pool:nope\"\n",
            ":11: rules[0].route: unknown pool 'nope'",
        ),
        (
            "[[rules]]\nname = \"x\"\nmatch_pattern = '(unclosed'\n",
            ":11: rules[0].match_pattern: invalid regex",
        ),
        (
            "[[rules]]\nname = \"x\"\n[[rules]]\nname = \"x\"\n",
            ":12: rules[1].name: duplicate rule name 'x'",
        ),
    ];
    let dir = std::env::temp_dir().join(format!("cw-rules-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (extra, want)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad{i}.toml"));
        std::fs::write(&f, format!("{base}{extra}")).unwrap();
        let out = Command::new(bin)
            .args(["check-config", f.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("bad{i}.toml{want}")),
            "{err} lacks {want}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
