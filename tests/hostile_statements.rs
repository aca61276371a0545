//! Hostile statements from logged-in clients against the real `causeway`
//! binary on real MySQL (issue #10 cases 3 and 7): unterminated strings
//! ending in a multi-byte character (once a worker panic that leaked a
//! connection slot), KILL in every form MySQL would run it (owner-checked or
//! refused, never executed on a shared backend account), the caps on the
//! SET replay list and on prepared statements, and error messages that
//! would echo 100 KB of client text. Every test ends with the proxy alive,
//! a control client served within 1 s, VmHWM under idle + 64 MiB and no
//! `panicked` in the log.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};
use std::time::{Duration, Instant};
use support::external::ExternalProxy;

/// Two causeway users sharing one backend account (`app`).
const SHARED_USERS: &str = r#"[[users]]
name = "alice"
password = "alicepw"
backend_user = "app"
backend_password = "apppw"
[[users]]
name = "mallory"
password = "mallorypw"
backend_user = "app"
backend_password = "apppw"
[primary]"#;

fn server_error(r: Result<(), mysql_async::Error>, what: &str) -> (u16, String) {
    match r {
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        Err(other) => panic!("{what}: expected a server error, got {other}"),
        Ok(()) => panic!("{what}: expected an error, got success"),
    }
}

async fn prep_error(c: &mut Conn, sql: &str) -> (u16, String) {
    server_error(c.prep(sql).await.map(drop), sql)
}

async fn conn(p: &ExternalProxy, user: &str, pw: &str) -> Conn {
    Conn::new(p.opts(user, pw)).await.expect("login")
}

async fn alive(c: &mut Conn) {
    let one: Option<i64> = c.query_first("SELECT 1").await.expect("session lives on");
    assert_eq!(one, Some(1));
}

const CASE_3: [&str; 5] = [
    "USE 'é",
    "USE '😀",
    "SET autocommit = 'é",
    "SET autocommit = \"é",
    "SET autocommit = '€",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unterminated_multibyte_statements_get_errors_and_free_their_slots() {
    let mut p =
        ExternalProxy::start(|c| c.replace("[server]\n", "[server]\nmax_connections = 5\n")).await;
    let idle = p.vm_hwm_kib();
    // each statement on its own connection, as COM_QUERY and as
    // COM_STMT_PREPARE, then the connection is closed: 10 sessions in all,
    // twice max_connections
    for sql in CASE_3 {
        let mut c = conn(&p, "app", "apppw").await;
        let (code, msg) = server_error(c.query_drop(sql).await, sql);
        assert_eq!(code, 1064, "{sql}: {msg}");
        alive(&mut c).await;
        c.disconnect().await.unwrap();
        let mut c = conn(&p, "app", "apppw").await;
        let (code, msg) = prep_error(&mut c, sql).await;
        assert_eq!(code, 1064, "{sql}: {msg}");
        alive(&mut c).await;
        c.disconnect().await.unwrap();
    }
    // slots were freed: more sequential logins than max_connections
    for i in 0..8 {
        let mut c = Conn::new(p.opts("app", "apppw"))
            .await
            .unwrap_or_else(|e| panic!("login {i} after the attack: {e}"));
        alive(&mut c).await;
        c.disconnect().await.unwrap();
    }
    println!("VmHWM: idle {idle} KiB, after {} KiB", p.vm_hwm_kib());
    p.assert_healthy_after_attack(idle).await;
}

/// The backend thread id `c`'s primary connection runs on (`SELECT
/// CONNECTION_ID()` alone is answered by causeway with its own id).
async fn backend_thread(c: &mut Conn) -> u64 {
    c.query_first("SELECT CONNECTION_ID() + 0")
        .await
        .unwrap()
        .expect("an id")
}

async fn primary_has_thread(id: u64) -> bool {
    let mut root = support::topology().primary().conn().await.unwrap();
    let n: Option<i64> = root
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?",
            (id,),
        )
        .await
        .unwrap();
    n == Some(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_is_owner_checked_or_refused_in_every_form() {
    // the victim keeps its backend connection (and thread) for its session
    let mut p = ExternalProxy::start(|c| {
        c.replace("[primary]", SHARED_USERS)
            .replace("[server]\n", "[server]\npool_mode = \"session\"\n")
    })
    .await;
    let idle = p.vm_hwm_kib();
    let mut victim = conn(&p, "alice", "alicepw").await;
    let victim_id = victim.id();
    let thread = backend_thread(&mut victim).await;
    assert!(primary_has_thread(thread).await);
    let mut mallory = conn(&p, "mallory", "mallorypw").await;

    // the proxy's own KILL: another user's session is refused (1095)
    for sql in [
        format!("KILL {victim_id}"),
        format!("KILL QUERY {victim_id}"),
        format!("/* c */ KILL CONNECTION {victim_id};"),
    ] {
        let (code, msg) = server_error(mallory.query_drop(&sql).await, &sql);
        assert_eq!(code, 1095, "{sql}: {msg}");
    }
    // forms that would run on the backend with the shared account: refused
    let hidden = [
        format!("/*!KILL {thread}*/"),
        format!("/*!80000 KILL {thread}*/"),
        format!("/*!80000 KILL QUERY {thread} */"),
        format!("SELECT 1; KILL {thread}"),
        format!("SELECT 1;/*!KILL CONNECTION {thread}*/"),
        format!("SELECT '\\\\'; KILL {thread}; -- '"),
        format!("SELECT '\\'; KILL {thread}; -- '"),
        format!("PREPARE s FROM 'KILL {thread}'"),
        format!("DO 1; PREPARE s FROM \"KILL {thread}\""),
    ];
    for sql in &hidden {
        let (code, msg) = server_error(mallory.query_drop(sql).await, sql);
        assert_eq!(code, 1235, "{sql}: {msg}");
        assert!(msg.contains("KILL"), "{msg}");
    }
    for sql in [
        format!("KILL {thread}"),
        format!("/*!KILL {thread}*/"),
        format!("KILL QUERY {victim_id}"),
    ] {
        let (code, msg) = prep_error(&mut mallory, &sql).await;
        assert_eq!(code, 1235, "{sql}: {msg}");
    }
    alive(&mut mallory).await;
    // the victim's session and its backend connection survived everything
    assert_eq!(backend_thread(&mut victim).await, thread);
    assert!(primary_has_thread(thread).await);
    // the owner may still kill its own query (the proxy's KILL)
    victim
        .query_drop(format!("KILL QUERY {victim_id}"))
        .await
        .unwrap();
    alive(&mut victim).await;
    println!("VmHWM: idle {idle} KiB, after {} KiB", p.vm_hwm_kib());
    p.assert_healthy_after_attack(idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_replay_list_replaces_and_is_capped() {
    let mut p = ExternalProxy::start(|c| c).await;
    let idle = p.vm_hwm_kib();
    let mut c = conn(&p, "app", "apppw").await;
    // literal SETs of the same variables replace each other: no growth
    for i in 1..=1000u32 {
        c.query_drop(format!("SET SESSION wait_timeout = {}", 1000 + i))
            .await
            .unwrap();
        c.query_drop("SET sql_mode = 'ANSI_QUOTES'").await.unwrap();
    }
    // SETs whose values are expressions are kept, one entry each: 2 + 254
    for _ in 0..254 {
        c.query_drop("SET SESSION net_write_timeout = @@net_write_timeout + 1")
            .await
            .unwrap();
    }
    let (code, msg) = server_error(
        c.query_drop("SET SESSION net_write_timeout = 7 + 0").await,
        "SET beyond the cap",
    );
    assert_eq!(code, 1105, "{msg}");
    assert!(msg.contains("256 statements"), "{msg}");
    // refused before it ran; the session lives on and a new backend
    // connection (the replica for this read) gets the whole list replayed
    let (wt, nwt, mode): (u32, u32, String) = c
        .query_first("SELECT @@wait_timeout, @@net_write_timeout, @@sql_mode")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((wt, mode.as_str()), (2000, "ANSI_QUOTES"));
    assert_eq!(nwt, 60 + 254, "net_write_timeout (default 60) + 254");
    let route: Option<String> = c.query_first("SELECT @@causeway.last_route").await.unwrap();
    assert!(route.unwrap_or_default().starts_with("replica:"));
    // at the cap other statements still run (a SET that the later
    // expression entries might read cannot replace anything: refused too)
    c.query_drop("SET @u = 1").await.unwrap();
    let (code, _) = server_error(c.query_drop("SET sql_mode = ''").await, "SET at the cap");
    assert_eq!(code, 1105);
    alive(&mut c).await;
    println!("VmHWM: idle {idle} KiB, after {} KiB", p.vm_hwm_kib());
    p.assert_healthy_after_attack(idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_are_capped_at_16382() {
    // the backends' own global limit must not be what stops us
    for s in support::topology().servers() {
        let mut root = s.conn().await.unwrap();
        root.query_drop("SET GLOBAL max_prepared_stmt_count = 100000")
            .await
            .unwrap();
    }
    let mut p = ExternalProxy::start(|c| c).await;
    let idle = p.vm_hwm_kib();
    let opts: Opts = OptsBuilder::from_opts(p.opts("app", "apppw"))
        .stmt_cache_size(0)
        .into();
    let mut c = Conn::new(opts).await.unwrap();
    let started = Instant::now();
    let mut first = None;
    for i in 0..16382u32 {
        let st = c.prep(format!("SELECT {i}")).await.unwrap();
        first.get_or_insert(st);
    }
    let took = started.elapsed();
    println!("16382 prepares through causeway took {took:?}");
    let (code, msg) = prep_error(&mut c, "SELECT 'one too many'").await;
    assert_eq!(code, 1461, "{msg}");
    assert_eq!(
        msg,
        "Can't create more than max_prepared_stmt_count statements (current value: 16382)"
    );
    alive(&mut c).await;
    // closing one makes room again
    c.close(first.unwrap()).await.unwrap();
    let st = c.prep("SELECT 'room again'").await.unwrap();
    let v: Option<String> = c.exec_first(&st, ()).await.unwrap();
    assert_eq!(v.as_deref(), Some("room again"));
    c.disconnect().await.unwrap();

    // the text the proxy keeps per session is bounded too (16 MiB)
    let opts: Opts = OptsBuilder::from_opts(p.opts("app", "apppw"))
        .stmt_cache_size(0)
        .into();
    let mut c = Conn::new(opts).await.unwrap();
    let pad = "x".repeat((1 << 20) - 64 - 18);
    let mut held = 0;
    let err = loop {
        let sql = format!("SELECT {held:4} /* {pad} */");
        assert_eq!(sql.len(), (1 << 20) - 64);
        match c.prep(&sql).await {
            Ok(_) => held += 1,
            Err(e) => break server_error(Err(e), "big prepare"),
        }
        assert!(held <= 16, "the byte cap never applied");
    };
    assert_eq!(held, 16);
    assert_eq!(err.0, 1461, "{}", err.1);
    assert!(err.1.contains("16777216 bytes"), "{}", err.1);
    alive(&mut c).await;
    c.disconnect().await.unwrap();
    println!("VmHWM: idle {idle} KiB, after {} KiB", p.vm_hwm_kib());
    p.assert_healthy_after_attack(idle).await;
    assert!(took < Duration::from_secs(300), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_never_echo_more_than_512_bytes() {
    let mut p = ExternalProxy::start(|c| c).await;
    let idle = p.vm_hwm_kib();
    let mut c = conn(&p, "app", "apppw").await;
    let big = "é".repeat(50_000); // 100 KB
    for sql in [
        format!("SET @@causeway.consistency = '{big}'"),
        format!("SET @@causeway.token = '{big}'"),
        format!("SELECT @@causeway.x{}", "y".repeat(100_000)),
        format!("/* causeway consistency={big} */ SELECT 1"),
        format!("KILL {big}"),
        format!("SELECT * FROM `{big}`"),
        format!("SELECT '{big}' FROM no_such_table_anywhere"),
    ] {
        let head: String = sql.chars().take(40).collect();
        let (code, msg) = server_error(c.query_drop(&sql).await, &head);
        let shown: String = msg.chars().take(60).collect();
        assert!(
            msg.len() <= 512,
            "{head}: {code}: {} bytes: {shown}",
            msg.len()
        );
        alive(&mut c).await;
    }
    println!("VmHWM: idle {idle} KiB, after {} KiB", p.vm_hwm_kib());
    p.assert_healthy_after_attack(idle).await;
}
