//! Pipelined backend connections (`[server] pipeline_depth`, issue 28) on
//! real MySQL: with many clients' reads in flight on one backend
//! connection, every client gets exactly its own rows (by value) and its
//! own errors, statements really share connections (the backends' own
//! `CONNECTION_ID()`s), KILL QUERY reaches only its target, clients that
//! vanish mid-reply leak nothing to others, and causal reads after writes
//! are never stale.

mod support;

use mysql_async::prelude::Queryable;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::raw::{queue_query, read_within, RawLogin};

/// A proxy with pipelining at `depth` (stall bound `stall_ms`).
async fn proxy(depth: u32, stall_ms: u64) -> support::TestProxy {
    support::start_proxy_with(|t| {
        t.replace(
            "connect_timeout_ms = 5000",
            &format!(
                "connect_timeout_ms = 5000\npipeline_depth = {depth}\npipeline_stall_ms = {stall_ms}"
            ),
        )
    })
    .await
}

/// The server error of a failed statement.
fn server_error(e: mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.message),
        other => panic!("not a server error: {other}"),
    }
}

/// Runs client `client`'s mix of 100 statements: tagged reads whose value
/// and padding identify the client and statement, and every tenth one an
/// error naming its own tag. Returns the backend connection ids it ran on.
async fn client_mix(opts: mysql_async::Opts, client: u64) -> HashSet<u64> {
    let mut c = mysql_async::Conn::new(opts).await.expect("connect");
    let mut ids = HashSet::new();
    for i in 0..100u64 {
        let tag = client * 1_000_000 + i;
        if i % 10 == 7 {
            let e = c
                .query_drop(format!("SELECT no_such_col_{tag}"))
                .await
                .expect_err("unknown column");
            let (code, msg) = server_error(e);
            assert_eq!(code, 1054, "client {client}: {msg}");
            assert!(
                msg.contains(&format!("no_such_col_{tag}")),
                "client {client} statement {i} got another statement's error: {msg}"
            );
            continue;
        }
        // the padding's length and letter depend on the statement too
        let len = 1 + (tag % 997) as usize;
        let letter = char::from(b'a' + (tag % 26) as u8);
        let row: Option<(u64, u64, String)> = c
            .query_first(format!(
                "SELECT {tag}, @@pseudo_thread_id, REPEAT('{letter}', {len})"
            ))
            .await
            .expect("tagged read");
        let (got, id, pad) = row.expect("one row");
        assert_eq!(got, tag, "client {client} got another statement's row");
        assert_eq!(
            pad,
            letter.to_string().repeat(len),
            "client {client} padding"
        );
        ids.insert(id);
    }
    c.disconnect().await.expect("disconnect");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_get_their_own_rows_and_errors_on_shared_connections() {
    let depth: u32 = std::env::var("PIPE_TEST_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let p = support::start_proxy_with(|t| {
        t.replace(
            "connect_timeout_ms = 5000",
            &format!(
                "connect_timeout_ms = 5000\npipeline_depth = {depth}\npipeline_stall_ms = 2000"
            ),
        )
        .replacen(
            "[admin]\nenabled = false",
            "[admin]\nenabled = true\nlisten = \"127.0.0.1:0\"",
            1,
        )
    })
    .await;
    let admin = p
        .proxy
        .serve_admin()
        .await
        .expect("admin endpoint")
        .expect("admin enabled");
    let opts = p.opts("app", "apppw");
    let mut tasks = Vec::new();
    for client in 0..64 {
        tasks.push(tokio::spawn(client_mix(opts.clone(), client)));
    }
    let mut all = HashSet::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    // 64 concurrent clients ran on few backend connections: one pipe per
    // worker thread and replica, plus ordinary ones for statements that
    // came while a pipe was being opened; without pipelining (depth 1)
    // they use about one each
    eprintln!(
        "64 clients x 90 reads ran on {} backend connections",
        all.len()
    );
    assert!(
        all.len() <= 32,
        "{} backend connections: reads were not pipelined",
        all.len()
    );
    // and several commands were in flight at once on one connection
    let text = metrics(admin).await;
    let (writes, most) = pipeline_depth_seen(&text);
    eprintln!("pipelined writes {writes}, most in flight at once {most}");
    assert!(writes > 100.0, "only {writes} pipelined writes:\n{text}");
    assert!(most >= 2.0, "never more than {most} command in flight");
}

/// The admin endpoint's `/metrics` text.
async fn metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("admin");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("admin answers")
        .expect("read");
    out
}

/// From `causeway_pipeline_depth` (a summary): writes recorded, over all
/// backends, and the largest number of commands in flight at one write.
fn pipeline_depth_seen(text: &str) -> (f64, f64) {
    let mut writes = 0.0;
    let mut most: f64 = 0.0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("causeway_pipeline_depth"))
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = value.parse().unwrap_or(0.0);
        if series.starts_with("causeway_pipeline_depth_count") {
            writes += v;
        } else if series.contains("quantile=\"1\"") {
            most = most.max(v);
        }
    }
    (writes, most)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_query_reaches_only_its_pipelined_target() {
    let p = proxy(64, 10_000).await;
    let mut victim = p.conn().await;
    let victim_id = victim.id();
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let r = victim.query_first::<u64, _>("SELECT SLEEP(3) + 7").await;
        (r, started.elapsed())
    });
    // ground truth: the sleep runs on a replica before the others start
    let deadline = Instant::now() + Duration::from_secs(10);
    'running: loop {
        for r in support::topology().replicas() {
            let mut c = mysql_async::Conn::new(support::opts(r.port(), "root", "", None))
                .await
                .expect("root on a replica");
            let n: Option<u64> = c
                .query_first(
                    "SELECT COUNT(*) FROM information_schema.processlist \
                     WHERE INFO = 'SELECT SLEEP(3) + 7'",
                )
                .await
                .expect("processlist");
            c.disconnect().await.expect("disconnect");
            if n == Some(1) {
                break 'running;
            }
        }
        assert!(Instant::now() < deadline, "the sleep never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // others read on the same pipes (some queue behind the sleep)
    let opts = p.opts("app", "apppw");
    let mut others = Vec::new();
    for client in 100..116 {
        let opts = opts.clone();
        others.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.expect("connect");
            for i in 0..5u64 {
                let tag = client * 1000 + i;
                let v: Option<u64> = c
                    .query_first(format!("SELECT {tag}"))
                    .await
                    .expect("no other client is interrupted");
                assert_eq!(v, Some(tag));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut killer = p.conn().await;
    killer
        .query_drop(format!("KILL QUERY {victim_id}"))
        .await
        .expect("KILL QUERY");
    let (r, took) = sleeper.await.expect("sleeper");
    let (code, msg) = server_error(r.expect_err("the victim is interrupted"));
    assert_eq!(code, 1317, "{msg}");
    assert!(
        took < Duration::from_millis(2500),
        "the victim was answered only after {took:?} (its statement's end)"
    );
    for o in others {
        o.await.expect("other client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_vanishing_mid_reply_leak_nothing() {
    let p = proxy(64, 2000).await;
    let addr = format!("127.0.0.1:{}", p.port());
    // rows that look like OK packets (issue 10), about 1 MB per reply
    let big = "SELECT '', X'000000000000' FROM information_schema.COLUMNS a, \
               information_schema.COLUMNS b LIMIT 100000";
    let mut hostile = Vec::new();
    for h in 0..16 {
        let addr = addr.clone();
        hostile.push(tokio::spawn(async move {
            for _ in 0..3 {
                let mut c = RawLogin::app(addr.clone()).connect().await;
                queue_query(&mut c.io, big);
                c.io.flush().await.expect("send");
                if h % 2 == 0 {
                    // gone mid-reply
                    for _ in 0..10 {
                        read_within(&mut c.io, Duration::from_secs(15)).await;
                    }
                }
                drop(c);
            }
        }));
    }
    let opts = p.opts("app", "apppw");
    let mut good = Vec::new();
    for client in 0..16 {
        good.push(tokio::spawn(client_mix(opts.clone(), 500 + client)));
    }
    for h in hostile {
        h.await.expect("hostile client");
    }
    for g in good {
        g.await.expect("well-behaved client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn causal_reads_after_writes_are_never_stale() {
    let p = proxy(64, 2000).await;
    let db = support::unique_db("pipe_tok");
    let mut setup = support::direct_conn().await;
    setup
        .query_drop(format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, v BIGINT)"
        ))
        .await
        .expect("setup");
    support::sync_replicas().await;
    let opts = support::opts(p.port(), "app", "apppw", Some(&db));
    let mut tasks = Vec::new();
    for s in 0..8u64 {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.expect("connect");
            let mut stale = 0;
            for i in 0..60u64 {
                let id = s * 10_000 + i;
                c.query_drop(format!("INSERT INTO t VALUES ({id}, {})", id * 3))
                    .await
                    .expect("insert");
                // reads of other rows in between keep the pipes busy
                let _: Option<u64> = c
                    .query_first("SELECT COUNT(*) FROM t")
                    .await
                    .expect("count");
                let v: Option<u64> = c
                    .query_first(format!("SELECT v FROM t WHERE id = {id}"))
                    .await
                    .expect("read");
                if v != Some(id * 3) {
                    stale += 1;
                }
            }
            stale
        }));
    }
    let mut stale = 0;
    for t in tasks {
        stale += t.await.expect("session");
    }
    assert_eq!(stale, 0, "causal reads through pipes saw stale rows");
    setup
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .expect("drop");
}
