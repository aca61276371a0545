//! `causeway sandbox` setup (`causeway::sandbox_cmd::start`): it starts real
//! MySQL servers and an in-process causeway; clients connect through it as
//! `app` and `admin`, writes go to the primary, token reads see them, the
//! printed instructions name the real port, and `stop` removes the servers.

use causeway::sandbox_cmd::{self, SandboxOpts};
use mysql_async::prelude::*;

fn opts(port: u16, user: &str, password: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .into()
}

/// The printed mysql command line works as printed (minus the shell).
async fn printed_cli_works(dist: &causeway_sandbox::MysqlDist, port: u16, ca: &str) {
    let mut cli = dist.mysql_client_tokio_command();
    cli.args([
        "--no-defaults",
        "--protocol=TCP",
        "-h127.0.0.1",
        &format!("-P{port}"),
        "-uapp",
        "-papppw",
        "--ssl-mode=VERIFY_IDENTITY",
        &format!("--ssl-ca={ca}"),
        "--batch",
        "-e",
        "SELECT 40 + 2",
    ]);
    let out = cli.output().await.expect("running mysql");
    assert!(
        out.status.success(),
        "mysql CLI: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_start_serves_clients_and_stop_cleans_up() {
    let handle = sandbox_cmd::start(SandboxOpts {
        listen: "127.0.0.1:0".into(),
        admin_listen: Some("127.0.0.1:0".into()),
        replicas: 2,
        progress: true,
        tls: true,
        ..SandboxOpts::default()
    })
    .await
    .unwrap_or_else(|e| panic!("sandbox start: {e}"));
    let port = handle.addr().port();
    assert_ne!(port, 0);
    assert_eq!(handle.topology().replicas().len(), 2);
    assert_eq!(handle.config().replicas.len(), 2);
    // the sandbox follows the writer (README: rehearse a failover)
    assert_eq!(
        handle.config().failover.mode,
        causeway_config::FailoverMode::Follow
    );

    let text = handle.instructions();
    println!("{text}");
    assert!(text.contains(&format!("-P{port}")), "{text}");
    assert!(
        text.contains(&format!("mysql://app:apppw@127.0.0.1:{port}/")),
        "{text}"
    );
    assert!(text.contains("/metrics"), "{text}");
    // TLS is on: the printed command line verifies the certificate
    let ca = handle.ssl_ca().expect("TLS on by default");
    assert!(
        text.contains("--ssl-mode=VERIFY_IDENTITY") && text.contains(&format!("--ssl-ca={ca}")),
        "{text}"
    );

    printed_cli_works(handle.topology().dist(), port, &ca).await;

    // app: a write, its token, a causal read on another connection.
    let mut a = mysql_async::Conn::new(opts(port, "app", "apppw"))
        .await
        .expect("app connects through the sandbox");
    a.query_drop("CREATE DATABASE IF NOT EXISTS sbx")
        .await
        .unwrap();
    a.query_drop("CREATE TABLE sbx.t (id INT PRIMARY KEY, v VARCHAR(10))")
        .await
        .unwrap();
    a.query_drop("INSERT INTO sbx.t VALUES (1, 'one')")
        .await
        .unwrap();
    let token: String = a
        .query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .expect("a token row");
    assert!(token.contains(':'), "token {token:?}");

    let mut b = mysql_async::Conn::new(opts(port, "app", "apppw"))
        .await
        .unwrap();
    b.query_drop(format!("SET @@causeway.token = '{token}'"))
        .await
        .unwrap();
    let v: Option<String> = b
        .query_first("SELECT v FROM sbx.t WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("one"));
    let route: String = b
        .query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap();
    assert!(
        route.starts_with("replica:") || route.starts_with("primary"),
        "route {route}"
    );

    // admin maps to the backend root account and may list backends.
    let mut adm = mysql_async::Conn::new(opts(port, "admin", "adminpw"))
        .await
        .expect("admin connects through the sandbox");
    let user: String = adm
        .query_first("SELECT CURRENT_USER()")
        .await
        .unwrap()
        .unwrap();
    assert!(user.starts_with("root@"), "backend user {user}");
    let rows: Vec<mysql_async::Row> = adm.query("SHOW CAUSEWAY BACKENDS").await.unwrap();
    assert_eq!(rows.len(), 3, "primary + 2 replicas");

    for c in [a, b, adm] {
        c.disconnect().await.unwrap();
    }
    let dir = handle.topology().dir().to_path_buf();
    assert!(dir.is_dir());
    handle.stop().await;
    assert!(!dir.exists(), "{} still exists after stop", dir.display());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the listener is closed after stop"
    );
}
