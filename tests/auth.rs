//! Client authentication through causeway against real MySQL: the
//! `caching_sha2_password` fast path, empty passwords, the auth switch to
//! `mysql_native_password`, MySQL's exact access-denied errors, and
//! COM_CHANGE_USER (who the session runs as afterwards, and that no session
//! state survives it). Clients are mysql_async and the real `mysql` CLI.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use mysql_async::{ChangeUserOpts, Conn, Value};

/// `SELECT CURRENT_USER()` on `conn`.
async fn current_user(conn: &mut Conn) -> String {
    conn.query_first::<String, _>("SELECT CURRENT_USER()")
        .await
        .expect("SELECT CURRENT_USER()")
        .expect("one row")
}

/// Connects through the proxy and expects a server error; returns
/// (code, sqlstate, message).
async fn refused(
    proxy: &support::TestProxy,
    user: &str,
    pass: Option<&str>,
) -> (u16, String, String) {
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(proxy.opts(user, ""))
        .pass(pass)
        .into();
    match Conn::new(opts).await {
        Ok(_) => panic!("login as {user} with {pass:?} was accepted"),
        Err(mysql_async::Error::Server(e)) => (e.code, e.state, e.message),
        Err(other) => panic!("login as {user}: expected a server error, got {other}"),
    }
}

/// The proxy still serves a fresh, correct login.
async fn still_serves(proxy: &support::TestProxy) {
    let mut c = proxy.conn().await;
    assert_eq!(current_user(&mut c).await, "app@%");
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_empty_password_and_native_switch_log_in() {
    let proxy = support::start_proxy().await;

    let mut app = proxy.conn().await;
    assert_eq!(current_user(&mut app).await, "app@%");
    app.disconnect().await.unwrap();

    let mut nopw = Conn::new(proxy.opts("nopw", "")).await.expect("nopw login");
    assert_eq!(current_user(&mut nopw).await, "nopw@%");
    nopw.disconnect().await.unwrap();

    // `native` is configured with mysql_native_password: causeway sends an
    // AuthSwitchRequest to mysql_async (which starts with caching_sha2) and
    // logs in to MySQL as its backend user `app`.
    let mut native = Conn::new(proxy.opts("native", "nativepw"))
        .await
        .expect("native login through the auth switch");
    assert_eq!(current_user(&mut native).await, "app@%");
    let one: Option<i64> = native.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    native.disconnect().await.unwrap();

    let (code, state, msg) = refused(&proxy, "native", Some("wrong")).await;
    assert_eq!((code, state.as_str()), (1045, "28000"));
    assert_eq!(
        msg,
        "Access denied for user 'native'@'127.0.0.1' (using password: YES)"
    );
    still_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_missing_password_and_unknown_user_get_mysqls_1045() {
    let proxy = support::start_proxy().await;

    let (code, state, msg) = refused(&proxy, "app", Some("wrong")).await;
    assert_eq!(code, 1045);
    assert_eq!(state, "28000");
    assert_eq!(
        msg,
        "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
    );

    let (code, state, msg) = refused(&proxy, "app", None).await;
    assert_eq!((code, state.as_str()), (1045, "28000"));
    assert_eq!(
        msg,
        "Access denied for user 'app'@'127.0.0.1' (using password: NO)"
    );

    let (code, state, msg) = refused(&proxy, "nosuchuser", Some("x")).await;
    assert_eq!((code, state.as_str()), (1045, "28000"));
    assert_eq!(
        msg,
        "Access denied for user 'nosuchuser'@'127.0.0.1' (using password: YES)"
    );

    // a password for a user whose password is empty is wrong too
    let (code, _, msg) = refused(&proxy, "nopw", Some("something")).await;
    assert_eq!(code, 1045);
    assert!(msg.ends_with("(using password: YES)"), "{msg}");

    // MySQL itself answers a wrong password with the same code and state
    let direct: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(support::opts(
        support::topology().primary().port(),
        "app",
        "wrong",
        None,
    ))
    .into();
    match Conn::new(direct).await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!((e.code, e.state.as_str()), (1045, "28000"));
            assert!(
                e.message.ends_with("(using password: YES)"),
                "{}",
                e.message
            );
        }
        other => panic!("direct wrong password: {:?}", other.map(|_| ())),
    }

    // after all these failures the proxy serves new clients, many of them
    for _ in 0..3 {
        still_serves(&proxy).await;
    }
    assert!(
        proxy.proxy.topology.load().primary.pool.open_connections() <= 3,
        "refused logins must not open backend connections"
    );
}

/// COM_CHANGE_USER to `user` / `pass`, and to schema `db` when given.
async fn change_user(
    c: &mut mysql_async::Conn,
    user: &str,
    pass: &str,
    db: Option<&str>,
) -> mysql_async::Result<()> {
    let mut opts = ChangeUserOpts::default()
        .with_user(Some(user.into()))
        .with_pass(Some(pass.into()));
    if let Some(db) = db {
        opts = opts.with_db_name(Some(db.into()));
    }
    c.change_user(opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_switches_identity_and_drops_session_state() {
    let db = support::unique_db("chuser");
    let proxy = support::start_proxy().await;
    let mut direct = support::direct_conn().await;
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();

    let mut c = proxy.conn().await;
    assert_eq!(current_user(&mut c).await, "app@%");
    c.query_drop("SET @before = 42").await.unwrap();
    c.query_drop(format!("CREATE TEMPORARY TABLE {db}.tmp (x INT)"))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO {db}.tmp VALUES (1)"))
        .await
        .unwrap();
    let n: Option<i64> = c
        .query_first(format!("SELECT COUNT(*) FROM {db}.tmp"))
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    let before: Option<i64> = c.query_first("SELECT @before").await.unwrap();
    assert_eq!(before, Some(42));

    change_user(&mut c, "nopw", "", None)
        .await
        .expect("change_user to nopw");
    assert_eq!(current_user(&mut c).await, "nopw@%");
    let v: Value = c
        .query_first("SELECT @before")
        .await
        .unwrap()
        .expect("a row");
    assert_eq!(v, Value::NULL, "user variables do not survive change_user");
    let err = c
        .query_drop(format!("SELECT COUNT(*) FROM {db}.tmp"))
        .await
        .expect_err("temporary table must be gone after change_user");
    match err {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 1146, "{}", e.message),
        other => panic!("unexpected error {other}"),
    }
    c.query_drop("SET @as_nopw = 'n'").await.unwrap();

    change_user(&mut c, "app", "apppw", None)
        .await
        .expect("change_user back to app");
    assert_eq!(current_user(&mut c).await, "app@%");
    let v: Value = c
        .query_first("SELECT @as_nopw")
        .await
        .unwrap()
        .expect("a row");
    assert_eq!(v, Value::NULL);

    // to a user with mysql_native_password: causeway switches the plugin
    change_user(&mut c, "native", "nativepw", None)
        .await
        .expect("change_user to native through the auth switch");
    assert_eq!(current_user(&mut c).await, "app@%");

    // change_user with a schema makes it the default schema
    change_user(&mut c, "app", "apppw", Some(&db))
        .await
        .expect("change_user with a schema");
    let cur: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(cur.as_deref(), Some(db.as_str()));

    // a wrong password: refused (MySQL closes the connection; so may causeway)
    let r = c
        .change_user(
            ChangeUserOpts::default()
                .with_user(Some("app".into()))
                .with_pass(Some("wrong".into())),
        )
        .await;
    match r {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!((e.code, e.state.as_str()), (1045, "28000"));
            assert_eq!(
                e.message,
                "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
            );
        }
        Err(other) => panic!("change_user with a wrong password: {other}"),
        Ok(()) => panic!("change_user with a wrong password was accepted"),
    }
    drop(c);

    still_serves(&proxy).await;
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

/// Runs the real `mysql` CLI against the proxy; returns (exit ok, stdout, stderr).
async fn cli(port: u16, args: &[&str]) -> (bool, String, String) {
    let mut cmd = support::topology().dist().mysql_client_tokio_command();
    cmd.arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("-h127.0.0.1")
        .arg(format!("-P{port}"))
        .args(args);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("mysql CLI timed out")
        .expect("running the mysql CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cli_logs_in_with_caching_sha2_and_through_the_auth_switch() {
    let proxy = support::start_proxy().await;
    let q = [
        "--batch",
        "--skip-column-names",
        "-e",
        "SELECT CURRENT_USER()",
    ];

    let (ok, out, err) = cli(proxy.port(), &[&["-uapp", "-papppw"][..], &q].concat()).await;
    assert!(ok, "mysql CLI as app: {err}");
    assert_eq!(out, "app@%\n");

    // the CLI starts with caching_sha2 and is switched to mysql_native_password
    let (ok, out, err) = cli(
        proxy.port(),
        &[&["-unative", "-pnativepw"][..], &q].concat(),
    )
    .await;
    assert!(ok, "mysql CLI as native through the auth switch: {err}");
    assert_eq!(out, "app@%\n");

    let (ok, out, err) = cli(proxy.port(), &[&["-unopw"][..], &q].concat()).await;
    assert!(ok, "mysql CLI as nopw: {err}");
    assert_eq!(out, "nopw@%\n");

    let (ok, out, err) = cli(proxy.port(), &[&["-uapp", "-pwrong"][..], &q].concat()).await;
    assert!(!ok, "wrong password accepted: {out}");
    assert!(
        err.contains(
            "ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' (using password: YES)"
        ),
        "stderr: {err}"
    );

    let (ok, _, err) = cli(proxy.port(), &[&["-unative", "-pwrong"][..], &q].concat()).await;
    assert!(!ok);
    assert!(
        err.contains(
            "ERROR 1045 (28000): Access denied for user 'native'@'127.0.0.1' (using password: YES)"
        ),
        "stderr: {err}"
    );
}

/// `mysql --default-auth=mysql_native_password` answers the greeting (which
/// names caching_sha2_password) with an EMPTY response tagged
/// mysql_native_password and waits for an AuthSwitchRequest carrying the
/// nonce for its plugin, exactly what MySQL sends whenever the client's
/// plugin differs from the greeting's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn mysql_cli_default_auth_native_password_logs_in() {
    let proxy = support::start_proxy().await;
    let q = [
        "--batch",
        "--skip-column-names",
        "-e",
        "SELECT CURRENT_USER()",
    ];
    // MySQL itself accepts a caching_sha2 user from a client defaulting to
    // mysql_native_password (it answers with an AuthSwitchRequest)
    let app = ["-uapp", "-papppw", "--default-auth=mysql_native_password"];
    let primary = support::topology().primary().port();
    let (ok, out, err) = cli(primary, &[&app[..], &q].concat()).await;
    assert!(ok, "direct mysql CLI with default-auth native: {err}");
    assert_eq!(out, "app@%\n");

    let native = [
        "-unative",
        "-pnativepw",
        "--default-auth=mysql_native_password",
    ];
    let (ok, out, err) = cli(proxy.port(), &[&native[..], &q].concat()).await;
    assert!(ok, "mysql CLI as native with mysql_native_password: {err}");
    assert_eq!(out, "app@%\n");

    // a caching_sha2 user with a client defaulting to native works too
    let (ok, out, err) = cli(proxy.port(), &[&app[..], &q].concat()).await;
    assert!(ok, "mysql CLI as app with default-auth native: {err}");
    assert_eq!(out, "app@%\n");
}

/// A backend whose caching_sha2_password cache is cold (after FLUSH
/// PRIVILEGES) makes causeway do full authentication (RSA key exchange).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_full_authentication_after_flush_privileges() {
    let mut root = support::topology().primary().conn().await.unwrap();
    root.query_drop("FLUSH PRIVILEGES").await.unwrap();
    let proxy = support::start_proxy().await;
    let mut c = proxy.conn().await;
    c.query_drop("SET @@causeway.consistency = 'strong'")
        .await
        .unwrap();
    let who: String = c
        .query_first("SELECT CURRENT_USER()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, "app@%");
}
