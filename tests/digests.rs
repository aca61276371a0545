//! Per-digest statistics and the decision log against real MySQL:
//! statements that differ only in literals, case and spacing are one
//! digest, counted on the tier that really ran them (checked on the
//! servers' own performance_schema); IN lists fold; an UPDATE counts on
//! the primary; no literal reaches `digest_text` or the log;
//! `/api/digests` serves the rows of `SHOW CAUSEWAY DIGESTS`; with
//! `sample = 1.0` the log has one line per statement; `max_digests` bounds
//! the rows and the memory of the real binary; `RESET` empties; a log
//! nobody reads drops lines and never blocks a session.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `SHOW CAUSEWAY DIGESTS` columns used here.
const DIGEST: usize = 0;
const TEXT: usize = 1;
const USER: usize = 2;
const SCHEMA: usize = 3;
const COUNT: usize = 4;
const REPLICA: usize = 6;
const PRIMARY: usize = 7;
const ROWS_SENT: usize = 15;
const ROWS_AFFECTED: usize = 16;

type Row = Vec<Option<String>>;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cw-digests-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Admin endpoint on, `[digests]`/`[decision_log]` sections appended.
fn with_sections(extra: String) -> impl FnOnce(String) -> String {
    move |t| {
        t.replacen(
            "[admin]\nenabled = false",
            "[admin]\nenabled = true\nlisten = \"127.0.0.1:0\"",
            1,
        ) + &extra
    }
}

async fn start(extra: String) -> (support::TestProxy, SocketAddr) {
    let tp = support::start_proxy_with(with_sections(extra)).await;
    let admin = tp.proxy.serve_admin().await.unwrap().unwrap();
    (tp, admin)
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("admin answers in time")
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

async fn show(admin: &mut mysql_async::Conn) -> Vec<Row> {
    let rows: Vec<mysql_async::Row> = admin.query("SHOW CAUSEWAY DIGESTS").await.unwrap();
    rows.into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<Option<String>, _>(i).unwrap())
                .collect()
        })
        .collect()
}

fn col(r: &Row, i: usize) -> &str {
    r[i].as_deref().unwrap_or("")
}

fn num(r: &Row, i: usize) -> u64 {
    col(r, i).parse().unwrap()
}

/// The rows of `user` in `db` whose text is `text`.
fn rows_of<'a>(rows: &'a [Row], db: &str, text: &str) -> Vec<&'a Row> {
    rows.iter()
        .filter(|r| col(r, USER) == "app" && col(r, SCHEMA) == db && col(r, TEXT) == text)
        .collect()
}

/// Statements of `db` matching `like` that each server ran, from its own
/// performance_schema digest summary.
async fn server_counts(db: &str, like: &str) -> (u64, u64) {
    let q = format!(
        "SELECT CAST(COALESCE(SUM(COUNT_STAR), 0) AS UNSIGNED) \
         FROM performance_schema.events_statements_summary_by_digest \
         WHERE SCHEMA_NAME = '{db}' AND DIGEST_TEXT LIKE '{like}'"
    );
    let topo = support::topology();
    let mut p = topo.primary().conn().await.unwrap();
    let primary: u64 = p.query_first(&q).await.unwrap().unwrap();
    let mut replicas = 0;
    for r in topo.replicas() {
        let mut c = r.conn().await.unwrap();
        let n: u64 = c.query_first(&q).await.unwrap().unwrap();
        replicas += n;
    }
    (primary, replicas)
}

async fn setup_db(prefix: &str) -> String {
    let db = support::unique_db(prefix);
    let mut d = support::direct_conn().await;
    d.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    d.query_drop(format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)"))
        .await
        .unwrap();
    d.query_drop(format!(
        "INSERT INTO {db}.t VALUES (1,10),(2,20),(3,30),(4,40),(5,50)"
    ))
    .await
    .unwrap();
    support::sync_replicas().await;
    db
}

/// Waits (bounded) until the proxy's monitor finds every backend eligible.
async fn all_eligible(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http_get(admin, "/api/backends").await;
        let v: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        if v.len() == 3 && v.iter().all(|b| b["eligible"] == true) {
            return;
        }
        assert!(Instant::now() < deadline, "backends never eligible: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Parsed JSON lines of the log at `path`.
fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_fold_count_by_tier_and_match_the_log() {
    let dir = temp_dir("fold");
    let log = dir.join("decisions.jsonl");
    let extra = format!(
        "[routing]\nconsistency = \"eventual\"\n[decision_log]\npath = \"{}\"\nsample = 1.0\n",
        log.display()
    );
    let (tp, admin_addr) = start(extra).await;
    let db = setup_db("dg_fold").await;
    all_eligible(admin_addr).await;
    let mut app = mysql_async::Conn::new(support::opts(tp.port(), "app", "apppw", Some(&db)))
        .await
        .unwrap();
    // 20 point selects differing in literals, keyword case and spacing
    for i in 0..20 {
        let sql = match i % 4 {
            0 => format!("SELECT v FROM t WHERE id = {}", i % 5 + 1),
            1 => format!("select v from t where id={}", i % 5 + 1),
            2 => format!("SELECT  v\n  FROM t\tWHERE id =   {}  ", i % 5 + 1),
            _ => format!("Select v From t Where id = {} -- c{i}", i % 5 + 1),
        };
        let v: Option<i64> = app.query_first(sql).await.unwrap();
        assert_eq!(v, Some(i64::from(i % 5 + 1) * 10));
    }
    // IN lists of different lengths, with a literal that must not leak
    for list in ["1", "1, 2", "1,2,3,4", "'zzsecret', 5"] {
        let _: Vec<i64> = app
            .query(format!("SELECT v FROM t WHERE id IN ({list})"))
            .await
            .unwrap();
    }
    app.query_drop("UPDATE t SET v = v + 1 WHERE id = 3")
        .await
        .unwrap();
    // an account statement: logged (sample = 1.0), its password not
    let _ = app
        .query_drop(format!(
            "CREATE USER 'zz_{db}'@'%' IDENTIFIED BY 'zzpassword9'"
        ))
        .await;

    let mut admin = mysql_async::Conn::new(tp.opts("admin", "adminpw"))
        .await
        .unwrap();
    let rows = show(&mut admin).await;
    let point = rows_of(&rows, &db, "SELECT v FROM t WHERE id = ?");
    assert_eq!(point.len(), 1, "one digest for 20 point selects: {rows:?}");
    assert_eq!(num(point[0], COUNT), 20);
    assert_eq!(num(point[0], REPLICA), 20);
    assert_eq!(num(point[0], PRIMARY), 0);
    let inl = rows_of(&rows, &db, "SELECT v FROM t WHERE id IN (...)");
    assert_eq!(inl.len(), 1, "IN lists fold: {rows:?}");
    assert_eq!(num(inl[0], COUNT), 4);
    let upd = rows_of(&rows, &db, "UPDATE t SET v = v + ? WHERE id = ?");
    assert_eq!(upd.len(), 1, "{rows:?}");
    assert_eq!((num(upd[0], COUNT), num(upd[0], PRIMARY)), (1, 1));
    assert_eq!(num(upd[0], ROWS_AFFECTED), 1);
    for r in &rows {
        assert!(!col(r, TEXT).contains("zzsecret"), "a literal in {r:?}");
    }
    // ground truth: the servers ran the 20 point selects on replicas only
    let (p, r) = server_counts(&db, "SELECT `v` FROM `t` WHERE `id` = ?").await;
    assert_eq!((p, r), (0, 20), "point selects on primary / replicas");
    let (p, _) = server_counts(&db, "UPDATE `t` SET `v` = `v` + ? WHERE `id` = ?").await;
    assert_eq!(p, 1, "the UPDATE ran on the primary");

    // /api/digests serves the same rows (by digest, user, schema)
    let (status, body) = http_get(admin_addr, "/api/digests?order=count&limit=1000").await;
    assert_eq!(status, 200, "{body}");
    let api: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let rows = show(&mut admin).await;
    assert_eq!(api.len(), rows.len());
    let key = |d: &str, u: &str, s: &str| format!("{d}/{u}/{s}");
    let by_key: BTreeMap<String, &serde_json::Value> = api
        .iter()
        .map(|j| {
            let s = j["schema"].as_str().unwrap_or("");
            (
                key(
                    j["digest"].as_str().unwrap(),
                    j["user"].as_str().unwrap(),
                    s,
                ),
                j,
            )
        })
        .collect();
    for r in rows.iter().filter(|r| col(r, SCHEMA) == db) {
        let j = by_key[&key(col(r, DIGEST), col(r, USER), col(r, SCHEMA))];
        assert_eq!(j["digest_text"].as_str().unwrap(), col(r, TEXT));
        assert_eq!(j["count"].as_u64().unwrap(), num(r, COUNT));
        assert_eq!(j["replica"].as_u64().unwrap(), num(r, REPLICA));
        assert_eq!(j["primary"].as_u64().unwrap(), num(r, PRIMARY));
    }
    let counts: Vec<u64> = api.iter().map(|j| j["count"].as_u64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "sorted by count");
    let (status, _) = http_get(admin_addr, "/api/digests?order=nope").await;
    assert_eq!(status, 400);
    let (_, body) = http_get(admin_addr, "/api/digests?limit=1").await;
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&body)
            .unwrap()
            .len(),
        1
    );

    // Prometheus: the top digests' histograms and tier counts, the reasons
    let (_, metrics) = http_get(admin_addr, "/metrics").await;
    let point_digest = col(point[0], DIGEST).to_string();
    let series = |name: &str, extra: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(&point_digest) && l.contains(extra))
            .filter(|l| l.contains(&format!("schema=\"{db}\"")))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(
        series("causeway_digest_statements_total{", "tier=\"replica\""),
        20.0
    );
    assert_eq!(
        series("causeway_digest_statements_total{", "tier=\"primary\""),
        0.0
    );
    assert_eq!(series("causeway_digest_latency_seconds_count{", ""), 20.0);
    assert_eq!(
        series("causeway_digest_latency_seconds_bucket{", "le=\"+Inf\""),
        20.0
    );
    assert!(metrics.contains("causeway_routing_reasons_total{reason=\"eventual\"}"));

    // the log: one line per statement of this schema, tier and reason set
    let statements: u64 = rows
        .iter()
        .filter(|r| col(r, USER) == "app" && col(r, SCHEMA) == db)
        .map(|r| num(r, COUNT))
        .sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mine = loop {
        let lines: Vec<_> = log_lines(&log)
            .into_iter()
            .filter(|l| l["schema"] == db.as_str() && l["user"] == "app")
            .collect();
        if lines.len() as u64 >= statements || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(mine.len() as u64, statements, "one line per statement");
    let point_lines: Vec<_> = mine
        .iter()
        .filter(|l| l["digest_text"] == "SELECT v FROM t WHERE id = ?")
        .collect();
    assert_eq!(point_lines.len(), 20);
    for l in &point_lines {
        assert_eq!(l["tier"], "replica", "{l}");
        assert_eq!(l["reason"], "eventual", "{l}");
        assert!(l["backend"].as_str().unwrap().starts_with('r'), "{l}");
        assert_eq!(l["rows"], 1, "{l}");
    }
    let upd_line = mine
        .iter()
        .find(|l| l["digest_text"] == "UPDATE t SET v = v + ? WHERE id = ?")
        .expect("the UPDATE is logged");
    assert_eq!(upd_line["tier"], "primary");
    assert_eq!(upd_line["reason"], "write");
    assert_eq!(upd_line["affected"], 1);
    let create = mine
        .iter()
        .find(|l| l["digest_text"] == "CREATE USER ? @ ? IDENTIFIED BY ?")
        .expect("the CREATE USER is logged");
    assert_eq!(create["tier"], "primary", "{create}");
    let raw = std::fs::read_to_string(&log).unwrap();
    assert!(!raw.contains("zzpassword9"), "a password reached the log");
    assert!(!raw.contains("zzsecret"), "a literal reached the log");
    assert!(!raw.contains("apppw"), "a password reached the log");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_empties_and_only_admins_see_digests() {
    let (tp, _) = start(String::new()).await;
    let mut app = tp.conn().await;
    app.query_drop("SELECT 1 + 1").await.unwrap();
    let mut admin = mysql_async::Conn::new(tp.opts("admin", "adminpw"))
        .await
        .unwrap();
    assert!(show(&mut admin)
        .await
        .iter()
        .any(|r| col(r, TEXT) == "SELECT ? + ?"));
    for sql in ["SHOW CAUSEWAY DIGESTS", "RESET CAUSEWAY DIGESTS"] {
        match app.query_drop(sql).await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!((e.code, e.state.as_str()), (1227, "42000"), "{sql}")
            }
            other => panic!("{sql}: expected 1227, got {other:?}"),
        }
    }
    // the connection lives on after the refusal
    let v: Option<i64> = app.query_first("SELECT 2 + 2").await.unwrap();
    assert_eq!(v, Some(4));
    admin.query_drop("RESET CAUSEWAY DIGESTS").await.unwrap();
    assert_eq!(show(&mut admin).await.len(), 0, "RESET empties the table");
}

const SHORT: &str = "SELECT {i} AS c{i}";
/// A statement shape with an 80-byte digest text.
const LONG: &str =
    "SELECT id, k, c, pad FROM sbtest_{i} WHERE id BETWEEN {i} AND {i} ORDER BY c LIMIT 7";

/// Runs `shape` for i in `from..to` (each i its own digest) over `conns`,
/// spread round robin; gives the connections back.
async fn run(
    conns: Vec<mysql_async::Conn>,
    from: usize,
    to: usize,
    shape: &'static str,
) -> Vec<mysql_async::Conn> {
    let n = conns.len();
    let mut tasks = Vec::new();
    for (k, mut c) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in (from + k..to).step_by(n) {
                // an unknown table is an error reply: recorded all the same
                let _ = c.query_drop(shape.replace("{i}", &i.to_string())).await;
            }
            c
        }));
    }
    let mut back = Vec::new();
    for t in tasks {
        back.push(t.await.unwrap());
    }
    back
}

/// 20,000 distinct statements with 80-byte digest texts through the
/// real binary: the process grows by under 2 KiB per digest kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_digest_is_small() {
    use support::external::ExternalProxy;
    let proxy = ExternalProxy::start(|t| {
        t + "[routing]\nconsistency = \"eventual\"\n[digests]\nmax_digests = 50000\n"
    })
    .await;
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(
            mysql_async::Conn::new(proxy.opts("app", "apppw"))
                .await
                .unwrap(),
        );
    }
    // the same digest over and over: pools and buffers warm
    let conns = run(conns, 0, 400, "SELECT 1 FROM dual WHERE 0 = {i}").await;
    let before = proxy.status_kib("VmRSS");
    let _conns = run(conns, 0, 20_000, LONG).await;
    let after = proxy.status_kib("VmRSS");
    let per = (after.saturating_sub(before) * 1024) / 20_000;
    eprintln!("VmRSS {before} KiB -> {after} KiB for 20000 digests: {per} bytes per digest");
    let mut admin = mysql_async::Conn::new(proxy.opts("admin", "adminpw"))
        .await
        .unwrap();
    let rows = show(&mut admin).await;
    let long = rows
        .iter()
        .filter(|r| col(r, TEXT).starts_with("SELECT id, k, c, pad FROM sbtest_"))
        .count();
    assert_eq!(long, 20_000, "every digest is kept");
    assert!(per < 2048, "{per} bytes per digest");
}

/// 20,000 distinct statements through the real binary with `max_digests =
/// 1000`: at most 1000 rows, and the process grows by less than 32 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_digests_bounds_rows_and_memory() {
    use support::external::ExternalProxy;
    let proxy = ExternalProxy::start(|t| {
        t + "[routing]\nconsistency = \"eventual\"\n[digests]\nmax_digests = 1000\n"
    })
    .await;
    proxy.assert_served_within(Duration::from_secs(10)).await;
    let mut admin = mysql_async::Conn::new(proxy.opts("admin", "adminpw"))
        .await
        .unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(
            mysql_async::Conn::new(proxy.opts("app", "apppw"))
                .await
                .unwrap(),
        );
    }
    // warm up: pools, buffers, and a full store of 1000 digests
    let conns = run(conns, 0, 1000, SHORT).await;
    let rss_full = proxy.status_kib("VmRSS");
    let start = Instant::now();
    let mut conns = run(conns, 1000, 21_000, SHORT).await;
    // the most recent statement (the connections ran in parallel)
    conns[0].query_drop("SELECT 7 AS c_last").await.unwrap();
    let elapsed = start.elapsed();
    let rss_after = proxy.status_kib("VmRSS");
    let hwm = proxy.vm_hwm_kib();
    let rows = show(&mut admin).await;
    eprintln!(
        "20000 distinct statements in {elapsed:?}; VmRSS {rss_full} KiB at 1000 digests, \
         {rss_after} KiB after, VmHWM {hwm} KiB; {} rows",
        rows.len()
    );
    assert!(rows.len() <= 1000, "{} rows", rows.len());
    assert!(
        rows.len() >= 900,
        "the newest digests are kept: {} rows",
        rows.len()
    );
    // the newest statement is kept (least recently used ones went)
    assert!(rows.iter().any(|r| col(r, TEXT) == "SELECT ? AS c_last"));
    assert!(!rows.iter().any(|r| col(r, TEXT) == "SELECT ? AS c1000"));
    let grown = rss_after.saturating_sub(rss_full);
    assert!(grown < 32 * 1024, "VmRSS grew {grown} KiB");
}

/// A decision log whose reader never comes (a FIFO): lines are dropped and
/// counted, and sessions never wait for the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_log_drops_lines_and_never_blocks() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("decisions.fifo");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    let extra = format!(
        "[decision_log]\npath = \"{}\"\nsample = 1.0\nbuffer_lines = 16\n",
        fifo.display()
    );
    let (tp, admin_addr) = start(extra).await;
    let mut app = tp.conn().await;
    let mut slowest = Duration::ZERO;
    for i in 0..300 {
        let t = Instant::now();
        let v: Option<i64> = tokio::time::timeout(
            Duration::from_secs(5),
            app.query_first(format!("SELECT {i} + 1")),
        )
        .await
        .expect("a session never waits for the log")
        .unwrap();
        assert_eq!(v, Some(i + 1));
        slowest = slowest.max(t.elapsed());
    }
    eprintln!("slowest statement with a blocked log: {slowest:?}");
    let dropped = tp.proxy.shared().decisions.as_ref().unwrap().dropped();
    assert!(dropped >= 300 - 16 - 1, "{dropped} lines dropped");
    let (_, metrics) = http_get(admin_addr, "/metrics").await;
    let counted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("causeway_decision_log_dropped_total "))
        .expect("the dropped counter is exported")
        .trim()
        .parse()
        .unwrap();
    assert!(counted >= dropped as f64, "{counted} < {dropped}");
    // let the writer go (it is blocked opening the FIFO for writing)
    let _ = std::fs::File::open(&fifo);
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGHUP reopens the log: after logrotate moved the file away, new lines
/// go to a new file at the configured path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reopens_the_log() {
    use support::external::ExternalProxy;
    let dir = temp_dir("hup");
    let log = dir.join("decisions.jsonl");
    let rotated = dir.join("decisions.jsonl.1");
    let text = format!(
        "[decision_log]\npath = \"{}\"\nsample = 1.0\n",
        log.display()
    );
    let proxy = ExternalProxy::start(|t| t + &text).await;
    let mut app = mysql_async::Conn::new(proxy.opts("app", "apppw"))
        .await
        .unwrap();
    let until = |path: PathBuf, what: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = log_lines(&path);
            if lines.iter().any(|l| l["digest_text"] == what) {
                return lines;
            }
            assert!(Instant::now() < deadline, "{what} never logged in {path:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    app.query_drop("SELECT 1 AS before_rotation").await.unwrap();
    until(log.clone(), "SELECT ? AS before_rotation").await;
    std::fs::rename(&log, &rotated).unwrap();
    proxy.reload();
    // the reopen happens at the next line; poll with fresh statements
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        app.query_drop("SELECT 1 AS after_rotation").await.unwrap();
        assert!(Instant::now() < deadline, "the log was never reopened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until(log.clone(), "SELECT ? AS after_rotation").await;
    let old = log_lines(&rotated);
    assert!(old
        .iter()
        .any(|l| l["digest_text"] == "SELECT ? AS before_rotation"));
    std::fs::remove_dir_all(&dir).ok();
}

/// A cache rule's reads log `cache_hit`, or `cache_bypass:<why>` when the
/// cache did not serve them, and the reasons are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_outcomes_are_logged_with_their_reason() {
    let dir = temp_dir("bypass");
    let log = dir.join("decisions.jsonl");
    let db = setup_db("dg_bypass").await;
    let extra = format!(
        "[routing]\nconsistency = \"eventual\"\n[decision_log]\npath = \"{}\"\nsample = 1.0\n\
         [cache]\nenabled = true\ninvalidation = \"ttl\"\n\
         [[rules]]\nname = \"t_cache\"\nmatch_tables = [\"{db}.t\"]\ncache_ttl_ms = 60000\n",
        log.display()
    );
    let (tp, admin_addr) = start(extra).await;
    all_eligible(admin_addr).await;
    let mut app = mysql_async::Conn::new(support::opts(tp.port(), "app", "apppw", Some(&db)))
        .await
        .unwrap();
    // (statement, reason expected in its log line)
    let cases = [
        // a miss, stored: the rule that matched it
        ("SELECT v FROM t WHERE id = 2", "rule:t_cache"),
        ("SELECT v FROM t WHERE id = 2", "cache_hit"),
        (
            "/* causeway cache=off */ SELECT v FROM t WHERE id = 2",
            "cache_bypass:comment",
        ),
        (
            "SELECT v + 0 * RAND() FROM t WHERE id = 2",
            "cache_bypass:uncacheable",
        ),
    ];
    for (sql, _) in &cases {
        let v: Option<i64> = app.query_first(*sql).await.unwrap();
        assert_eq!(v, Some(20), "{sql}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mine = loop {
        let lines: Vec<_> = log_lines(&log)
            .into_iter()
            .filter(|l| l["schema"] == db.as_str() && l["user"] == "app")
            .filter(|l| l["digest_text"].as_str().unwrap().contains("FROM t "))
            .collect();
        if lines.len() >= cases.len() || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reasons: Vec<&str> = mine.iter().map(|l| l["reason"].as_str().unwrap()).collect();
    let expected: Vec<&str> = cases.iter().map(|(_, r)| *r).collect();
    assert_eq!(reasons, expected, "{mine:?}");
    assert_eq!(mine[1]["tier"], "cache");
    assert_eq!(mine[2]["tier"], "replica");
    let (_, metrics) = http_get(admin_addr, "/metrics").await;
    assert!(
        metrics.contains("causeway_routing_reasons_total{reason=\"cache_bypass:comment\"}"),
        "the bypass reason is counted"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// COM_STMT_EXECUTE is digested from the prepared text: five executions
/// with different parameters are one row, counted on replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_executions_are_digested() {
    let (tp, admin_addr) = start("[routing]\nconsistency = \"eventual\"\n".to_string()).await;
    let db = setup_db("dg_prep").await;
    all_eligible(admin_addr).await;
    let mut app = mysql_async::Conn::new(support::opts(tp.port(), "app", "apppw", Some(&db)))
        .await
        .unwrap();
    // ground truth: the server that answered each execution
    let primary_id: u32 = {
        let topo = support::topology();
        let mut p = topo.primary().conn().await.unwrap();
        p.query_first("SELECT @@server_id").await.unwrap().unwrap()
    };
    for id in 1..=5i64 {
        let row: Option<(i64, u32)> = app
            .exec_first("SELECT v, @@server_id FROM t WHERE id = ?", (id,))
            .await
            .unwrap();
        let (v, sid) = row.unwrap();
        assert_eq!(v, id * 10);
        assert_ne!(sid, primary_id, "execution {id} ran on the primary");
    }
    let mut admin = mysql_async::Conn::new(tp.opts("admin", "adminpw"))
        .await
        .unwrap();
    let rows = show(&mut admin).await;
    let point = rows_of(&rows, &db, "SELECT v, @@server_id FROM t WHERE id = ?");
    assert_eq!(point.len(), 1, "{rows:?}");
    assert_eq!((num(point[0], COUNT), num(point[0], REPLICA)), (5, 5));
    assert_eq!(num(point[0], ROWS_SENT), 5);
}
