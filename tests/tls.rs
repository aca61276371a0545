//! TLS on both sides of causeway, against the real topology.
//!
//! Towards clients (`[tls]`, certificates from rcgen at test time): the
//! `mysql` CLI with `--ssl-mode=REQUIRED`, `VERIFY_CA` and
//! `VERIFY_IDENTITY`, PyMySQL with an `ssl.SSLContext`, node mysql2 with
//! `ssl: { ca }` and sysbench with `--mysql-ssl=on` each verify causeway's
//! certificate and run queries, prepared statements and a 6 MiB result;
//! mysql_async over TLS gets byte-identical COM_QUERY / COM_STMT_EXECUTE
//! replies to a direct connection; `require = true` refuses plaintext with
//! 3159; caching_sha2 full authentication over TLS takes the cleartext
//! password; after new files and SIGHUP a new connection sees the new
//! certificate while an established TLS session goes on.
//!
//! Towards backends (`[backend_tls]`, MySQL's auto-generated ca.pem):
//! `verify_ca` gives TLS on both the replica and the primary route
//! (`Ssl_version`), and a CA that did not sign the servers' certificates
//! refuses the backends with an error naming TLS and the certificate.

#[path = "tls/helpers.rs"]
mod helpers;
#[path = "support/mod.rs"]
mod support;

use helpers::{
    backend_section, mysql_cli, peer_cert, raw_tls, read_packet, run, sha256_hex, tls_opts,
    write_packet, Certs,
};
use mysql_async::prelude::*;
use mysql_async::OptsBuilder;
use std::path::Path;
use std::time::{Duration, Instant};
use support::dump::{self, Reply};

/// 6 MiB: the result every client reads over TLS.
const BIG: usize = 6 * 1024 * 1024;
/// sha256 of BIG times 'x', first 16 hex digits.
const BIG_SHA: &str = "402ba9ffb08fc79f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cli_verifies_the_certificate_in_every_ssl_mode() {
    let certs = Certs::new("cli");
    // require = true: a run that succeeds ran over TLS
    let section = certs.section(true);
    let proxy = support::start_proxy_with(|t| t + &section).await;
    let ca = format!("--ssl-ca={}", certs.inner(&certs.files.ca));
    let sql = format!(
        "SELECT 1 + 1; PREPARE s FROM 'SELECT ? * 2'; SET @a = 21; EXECUTE s USING @a; \
         SELECT SHA2(REPEAT('x', {BIG}), 256) = SHA2(b.v, 256), LENGTH(b.v) \
         FROM (SELECT REPEAT('x', {BIG}) AS v) b; SELECT REPEAT('x', {BIG});"
    );
    for mode in ["REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"] {
        let mut args = vec![format!("--ssl-mode={mode}")];
        if mode != "REQUIRED" {
            args.push(ca.clone());
        }
        let r = mysql_cli(proxy.port(), &args, &sql).await;
        assert!(r.ok, "{mode}: {}", r.stderr);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert!(lines.contains(&"2") && lines.contains(&"42"), "{mode}");
        assert!(lines.contains(&format!("1\t{BIG}").as_str()), "{mode}");
        let big = lines.iter().find(|l| l.len() >= BIG).expect("6 MiB row");
        assert!(big.len() == BIG && big.bytes().all(|b| b == b'x'), "{mode}");
        println!("mysql --ssl-mode={mode}: TLS, queries, prepared, 6 MiB ok");
    }
    // verification is real: a CA that did not sign the certificate fails
    let other = Certs::new("cli-other");
    let args = vec![
        "--ssl-mode=VERIFY_CA".to_string(),
        format!("--ssl-ca={}", other.inner(&other.files.ca)),
    ];
    let r = mysql_cli(proxy.port(), &args, "SELECT 1").await;
    assert!(!r.ok && r.stderr.contains("2026"), "{r:?}");
    // and plaintext is refused (require = true)
    let r = mysql_cli(
        proxy.port(),
        &["--ssl-mode=DISABLED".to_string()],
        "SELECT 1",
    )
    .await;
    assert!(!r.ok && r.stderr.contains("3159"), "{r:?}");
    println!(
        "mysql VERIFY_CA with a foreign CA refused: {}",
        r.stderr.trim()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_with_an_ssl_context() {
    let certs = Certs::new("py");
    let section = certs.section(true);
    let proxy = support::start_proxy_with(|t| t + &section).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/tls.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script)
        .args(["127.0.0.1", &proxy.port().to_string(), "app", "apppw"])
        .arg(&certs.files.ca);
    let r = run(cmd).await;
    assert!(
        !r.stderr.contains("PYMYSQL_MISSING"),
        "PyMySQL is required: `python3 -m pip install pymysql` (integration/test.sh installs it)"
    );
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let sha = sha256_hex(&certs.cert_der());
    for want in [
        "tls: TLSv1.3".to_string(),
        format!("peer sha256: {sha}"),
        "sum: 2".into(),
        "prepared: 42".into(),
        "param: héllo".into(),
        format!("big: {BIG} {BIG_SHA}"),
    ] {
        assert!(r.stdout.lines().any(|l| l == want), "{want}:\n{}", r.stdout);
    }
    println!("{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_mysql2_with_ssl_ca() {
    let certs = Certs::new("node");
    let section = certs.section(true);
    let proxy = support::start_proxy_with(|t| t + &section).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if !dir.join("node_modules/mysql2/package.json").is_file() {
        let mut npm = tokio::process::Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir);
        let r = run(npm).await;
        assert!(r.ok, "`npm ci` in tests/node failed (Node.js and npm are needed: apt-get install -y nodejs npm): {}", r.stderr);
    }
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("mysql2_tls.js"))
        .args(["127.0.0.1", &proxy.port().to_string(), "app", "apppw"])
        .arg(&certs.files.ca);
    let r = run(cmd).await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    for want in [
        "tls: TLSv1.3".to_string(),
        "sum: 2".into(),
        "prepared: 42".into(),
        "param: héllo".into(),
        format!("big: {BIG} {BIG_SHA}"),
    ] {
        assert!(r.stdout.lines().any(|l| l == want), "{want}:\n{}", r.stdout);
    }
    println!("{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_with_mysql_ssl_on() {
    let certs = Certs::new("sysbench");
    let section = certs.section(true);
    let proxy = support::start_proxy_with(|t| t + &section).await;
    let db = support::unique_db("sb_tls");
    let mut direct = support::direct_conn().await;
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    // sysbench 1.0 reads cacert.pem, client-cert.pem and client-key.pem
    // from its working directory
    let dir = certs.files.ca.parent().unwrap().join("sysbench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&certs.files.ca, dir.join("cacert.pem")).unwrap();
    let (cert, key) = certs.ca.server_cert(&["sysbench-client"]).unwrap();
    std::fs::write(dir.join("client-cert.pem"), cert).unwrap();
    std::fs::write(dir.join("client-key.pem"), key).unwrap();
    let sysbench = |phase: &'static str, extra: Vec<String>| {
        let mut cmd = tokio::process::Command::new("sysbench");
        cmd.current_dir(&dir)
            .arg("oltp_read_write")
            .args([
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
                "--mysql-ssl=on",
            ])
            .arg(format!("--mysql-port={}", proxy.port()))
            .args(["--mysql-user=app", "--mysql-password=apppw"])
            .arg(format!("--mysql-db={db}"))
            .args(["--tables=1", "--table-size=200"])
            .args(extra)
            .arg(phase);
        run(cmd)
    };
    let prep = sysbench("prepare", vec![]).await;
    assert!(prep.ok, "{}\n{}", prep.stdout, prep.stderr);
    let r = sysbench("run", vec!["--time=3".into(), "--threads=2".into()]).await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("transactions:"), "{}", r.stdout);
    // the plaintext refusal (require = true) proves sysbench used TLS
    let plain = {
        let mut cmd = tokio::process::Command::new("sysbench");
        cmd.arg("oltp_read_write")
            .args([
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
                "--mysql-ssl=off",
            ])
            .arg(format!("--mysql-port={}", proxy.port()))
            .args(["--mysql-user=app", "--mysql-password=apppw"])
            .arg(format!("--mysql-db={db}"))
            .args(["--tables=1", "--table-size=200", "--time=1", "run"]);
        run(cmd).await
    };
    assert!(!plain.ok && format!("{}{}", plain.stdout, plain.stderr).contains("3159"));
    let line = r.stdout.lines().find(|l| l.contains("transactions:"));
    println!(
        "sysbench --mysql-ssl=on: {}",
        line.unwrap_or_default().trim()
    );
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_async_over_tls_is_byte_identical_to_direct() {
    let certs = Certs::new("fidelity");
    let section = certs.section(true);
    let proxy = support::start_proxy_with(|t| t + &section).await;
    let db = support::unique_db("tls_fid");
    let mut direct = support::direct_conn().await;
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    direct.query_drop(format!("USE {db}")).await.unwrap();
    direct
        .query_drop("CREATE TABLE t (id INT PRIMARY KEY, d DECIMAL(20,6), s VARCHAR(50), b LONGBLOB, dt DATETIME(6), j JSON)")
        .await
        .unwrap();
    let blob: Vec<u8> = (0..BIG + 1).map(|i| (i % 251) as u8).collect();
    direct
        .exec_drop(
            "INSERT INTO t VALUES (1, -12345.678901, 'héllo 🦀', ?, '2024-02-29 23:59:59.5', '{\"a\": [1, null]}'), (2, NULL, NULL, NULL, NULL, NULL)",
            (blob.clone(),),
        )
        .await
        .unwrap();
    support::sync_replicas().await;
    let mut proxied = mysql_async::Conn::new(tls_opts(proxy.port(), &certs.files.ca))
        .await
        .expect("TLS through causeway");
    proxied.query_drop(format!("USE {db}")).await.unwrap();
    let q = "SELECT * FROM t ORDER BY id";
    let a: Reply = dump::text(&mut direct, q).await;
    let b: Reply = dump::text(&mut proxied, q).await;
    assert_eq!(a, b, "COM_QUERY over TLS differs");
    let rows = &b.as_ref().unwrap()[0].rows;
    assert_eq!(rows[0][3], mysql_async::Value::Bytes(blob.clone()));
    let sql = "SELECT id, d, s, b, dt, j, ? AS p FROM t WHERE id >= ? ORDER BY id";
    let params = vec![mysql_async::Value::from("x"), mysql_async::Value::from(1)];
    let a = dump::binary(&mut direct, sql, params.clone()).await;
    let b = dump::binary(&mut proxied, sql, params).await;
    assert_eq!(a, b, "COM_STMT_EXECUTE over TLS differs");
    assert_eq!(b.unwrap()[0].rows.len(), 2);
    // an error passes through unchanged as well
    let a = dump::text(&mut direct, "SELECT * FROM no_such_table").await;
    let b = dump::text(&mut proxied, "SELECT * FROM no_such_table").await;
    assert_eq!(a, b);
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_plaintext_with_3159() {
    let certs = Certs::new("require");
    let section = certs.section(true);
    let proxy = support::start_proxy_with(|t| t + &section).await;
    let e = mysql_async::Conn::new(proxy.opts("app", "apppw"))
        .await
        .expect_err("plaintext must be refused");
    match e {
        mysql_async::Error::Server(s) => {
            assert_eq!((s.code, s.state.as_str()), (3159, "HY000"), "{}", s.message);
            assert!(s.message.contains("insecure transport"), "{}", s.message);
        }
        other => panic!("expected 3159, got {other:?}"),
    }
    // the proxy lives on, and TLS clients are served
    let mut c = mysql_async::Conn::new(tls_opts(proxy.port(), &certs.files.ca))
        .await
        .unwrap();
    let v: Option<i64> = c.query_first("SELECT 7").await.unwrap();
    assert_eq!(v, Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_authentication_over_tls_takes_the_cleartext_password() {
    use causeway::protocol::handshake::{client_hello, CACHING_SHA2};
    let certs = Certs::new("fullauth");
    let section = certs.section(false);
    let proxy = support::start_proxy_with(|t| t + &section).await;
    for (password, accepted) in [("apppw", true), ("wrong", false)] {
        let (mut tls, _) = raw_tls(proxy.port(), &certs.files.ca).await;
        // a scramble that cannot verify: the server asks for full auth
        let hello = client_hello(
            helpers::raw_caps(),
            255,
            "app",
            &[7u8; 32],
            None,
            CACHING_SHA2,
        );
        write_packet(&mut tls, 2, &hello).await;
        let (seq, p) = read_packet(&mut tls).await;
        assert_eq!(p, [0x01, 0x04], "perform_full_authentication expected");
        let mut clear = password.as_bytes().to_vec();
        clear.push(0);
        write_packet(&mut tls, seq + 1, &clear).await;
        let (_, p) = read_packet(&mut tls).await;
        if accepted {
            assert_eq!(p.get(..1), Some(&[0x00][..]), "OK expected: {p:?}");
            write_packet(&mut tls, 0, b"\x03SELECT 1").await;
            let (_, p) = read_packet(&mut tls).await;
            assert_eq!(p, [1], "one column");
        } else {
            assert_eq!(p.get(..1), Some(&[0xFF][..]));
            assert_eq!(u16::from_le_bytes([p[1], p[2]]), 1045);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_verify_ca_gives_tls_on_replica_and_primary_routes() {
    let topo = support::topology();
    let dir = std::env::temp_dir().join(support::unique_db("mysql_ca"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bundle = Vec::new();
    for s in std::iter::once(topo.primary()).chain(topo.replicas()) {
        bundle.extend(std::fs::read(s.datadir().join("ca.pem")).unwrap());
    }
    let ca = dir.join("mysql-ca.pem");
    std::fs::write(&ca, bundle).unwrap();
    let section = backend_section("verify_ca", Some(&ca));
    let proxy = support::start_proxy_with(|t| t + &section).await;
    let mut c = proxy.conn().await;
    let primary_id = topo.primary().server_id();
    // replica route: a plain read, once the monitor has seen the replicas
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        if id != primary_id {
            break;
        }
        assert!(Instant::now() < deadline, "reads never reached a replica");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v: Option<(String, String)> = c
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await
        .unwrap();
    let replica_tls = v.unwrap().1;
    assert!(
        replica_tls.starts_with("TLSv1."),
        "replica: {replica_tls:?}"
    );
    // primary route: inside a read-write transaction
    c.query_drop("START TRANSACTION").await.unwrap();
    let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!(id, primary_id);
    let v: Option<(String, String)> = c
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let primary_tls = v.unwrap().1;
    assert!(
        primary_tls.starts_with("TLSv1."),
        "primary: {primary_tls:?}"
    );
    println!("verify_ca: replica {replica_tls}, primary {primary_tls}");
    // the monitor follows the same mode: its connections are TLS too
    let mut root = topo.primary().conn().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let monitor_tls = loop {
        let n: Option<u64> = root
            .query_first(
                "SELECT COUNT(*) FROM performance_schema.status_by_thread s \
                 JOIN performance_schema.threads t USING (thread_id) \
                 WHERE t.processlist_user = 'monitor' AND s.variable_name = 'Ssl_version' \
                 AND s.variable_value LIKE 'TLSv1.%'",
            )
            .await
            .unwrap();
        if n.unwrap_or(0) > 0 || Instant::now() > deadline {
            break n.unwrap_or(0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        monitor_tls > 0,
        "no monitor connection over TLS on the primary"
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_with_an_untrusted_certificate_is_refused_clearly() {
    let certs = Certs::new("foreign");
    let section = backend_section("verify_ca", Some(&certs.files.ca));
    let proxy = support::start_proxy_with(|t| t + &section).await;
    // the login's backend connection is refused already
    let e = mysql_async::Conn::new(proxy.opts("app", "apppw"))
        .await
        .expect_err("the primary's certificate is not trusted");
    let msg = e.to_string();
    assert!(msg.contains("2003"), "{msg}");
    assert!(
        msg.contains("TLS") && msg.contains("certificate") && msg.contains("verify_ca"),
        "{msg}"
    );
    println!("untrusted backend: {msg}");
    // the proxy lives on; nothing reached the server
    let e = mysql_async::Conn::new(proxy.opts("app", "apppw")).await;
    assert!(e.unwrap_err().to_string().contains("UnknownIssuer"));
    let mut direct = support::direct_conn().await;
    let n: Option<u64> = direct
        .query_first("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'never_created_tls'")
        .await
        .unwrap();
    assert_eq!(n, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_serves_the_new_certificate_and_keeps_sessions() {
    let certs = Certs::new("reload");
    let section = certs.section(false);
    let proxy = support::external::ExternalProxy::start(|t| t + &section).await;
    let old = certs.cert_der();
    let (tls, _) = raw_tls(proxy.port, &certs.files.ca).await;
    assert_eq!(peer_cert(&tls), old);
    drop(tls);
    let mut established = mysql_async::Conn::new(tls_opts(proxy.port, &certs.files.ca))
        .await
        .unwrap();
    let v: Option<i64> = established.query_first("SELECT 1").await.unwrap();
    assert_eq!(v, Some(1));
    // new certificate and key, same CA, then SIGHUP
    let (cert, key) = certs.ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
    std::fs::write(&certs.files.key, key).unwrap();
    std::fs::write(&certs.files.cert, cert).unwrap();
    let new = certs.cert_der();
    assert_ne!(new, old);
    proxy.reload();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (tls, _) = raw_tls(proxy.port, &certs.files.ca).await;
        if peer_cert(&tls) == new {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate never served:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the established TLS session goes on
    let v: Option<String> = established
        .query_first(format!("SELECT REPEAT('y', {BIG})"))
        .await
        .unwrap();
    assert_eq!(v.map(|s| s.len()), Some(BIG));
    let mut fresh = mysql_async::Conn::new(tls_opts(proxy.port, &certs.files.ca))
        .await
        .unwrap();
    let v: Option<i64> = fresh.query_first("SELECT 2").await.unwrap();
    assert_eq!(v, Some(2));
    proxy.assert_no_panic();
}

/// A backend whose caching_sha2_password cache is cold (FLUSH PRIVILEGES)
/// needs full authentication: over TLS the password goes inside TLS, on a
/// plaintext link (mode = "disabled") through the server's RSA key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_full_authentication_over_tls_and_plaintext() {
    for (mode, want_tls) in [("required", true), ("disabled", false)] {
        let mut root = support::topology().primary().conn().await.unwrap();
        root.query_drop("FLUSH PRIVILEGES").await.unwrap();
        let section = backend_section(mode, None);
        let proxy = support::start_proxy_with(|t| t + &section).await;
        let mut c = proxy.conn().await;
        c.query_drop("START TRANSACTION").await.unwrap();
        let v: Option<(String, String)> = c
            .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
            .await
            .unwrap();
        c.query_drop("COMMIT").await.unwrap();
        let version = v.unwrap().1;
        assert_eq!(
            version.starts_with("TLSv1."),
            want_tls,
            "{mode}: {version:?}"
        );
        let who: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
        assert_eq!(who.as_deref(), Some("app@%"), "{mode}");
    }
}

/// A reload whose certificate files do not load changes nothing: the error
/// names the file, and the old certificate is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_unreadable_certificate_keeps_the_old_one() {
    let certs = Certs::new("badreload");
    let section = certs.section(false);
    let text = support::config_text(support::topology()) + &section;
    let proxy = support::start_proxy_with(|_| text.clone()).await;
    let dir = certs.files.ca.parent().unwrap().join("cfg");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("causeway.toml");
    let missing = certs.files.cert.with_file_name("missing.pem");
    let bad = text.replace(
        &certs.files.cert.display().to_string(),
        &missing.display().to_string(),
    );
    std::fs::write(&path, bad).unwrap();
    let e = proxy.proxy.reload_from(&path).unwrap_err().to_string();
    assert!(
        e.contains("keeping the running configuration")
            && e.contains("tls.cert")
            && e.contains("missing.pem"),
        "{e}"
    );
    // a key that does not belong to the certificate is refused too
    let other = Certs::new("badreload-key");
    let mismatched = text.replace(
        &certs.files.key.display().to_string(),
        &other.files.key.display().to_string(),
    );
    std::fs::write(&path, mismatched).unwrap();
    let e = proxy.proxy.reload_from(&path).unwrap_err().to_string();
    assert!(e.contains("tls.cert/tls.key"), "{e}");
    let (tls, _) = raw_tls(proxy.port(), &certs.files.ca).await;
    assert_eq!(peer_cert(&tls), certs.cert_der());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_over_tls_matches_direct() {
    let certs = Certs::new("compressed");
    let section = certs.section(true);
    let proxy = support::start_proxy_with(|t| t + &section).await;
    let mut direct = support::direct_conn().await;
    for c in [
        mysql_async::Compression::fast(),
        mysql_async::Compression::best(),
    ] {
        let opts = OptsBuilder::from_opts(tls_opts(proxy.port(), &certs.files.ca)).compression(c);
        let mut proxied = mysql_async::Conn::new(opts)
            .await
            .expect("TLS and compression through causeway");
        let q = format!("SELECT REPEAT('x', {BIG}) AS big, 1 AS one, 'héllo' AS s");
        let a: Reply = dump::text(&mut direct, &q).await;
        let b: Reply = dump::text(&mut proxied, &q).await;
        assert_eq!(a, b, "compressed COM_QUERY over TLS differs");
        let sql = "SELECT ? AS p, REPEAT('y', ?) AS r";
        let params = vec![
            mysql_async::Value::from("x"),
            mysql_async::Value::from(100_000),
        ];
        let a = dump::binary(&mut direct, sql, params.clone()).await;
        let b = dump::binary(&mut proxied, sql, params).await;
        assert_eq!(a, b, "compressed COM_STMT_EXECUTE over TLS differs");
        assert_eq!(b.unwrap()[0].rows.len(), 1);
        proxied.disconnect().await.unwrap();
    }
}
