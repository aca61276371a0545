//! Backend accounts on an authentication plugin causeway cannot speak
//! (`sha256_password`, still built into MySQL 9.7) are refused at login
//! with ER_NOT_SUPPORTED_AUTH_MODE (1251) naming the account and the
//! plugin, not a "protocol violation"; the proxy serves others on.

use mysql_async::prelude::*;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha256_password_backend_account_is_refused_by_name() {
    let account = support::unique_db("sha");
    let mut root = support::root_conn().await;
    let status: Option<String> = root
        .query_first(
            "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS \
             WHERE PLUGIN_NAME = 'sha256_password'",
        )
        .await
        .unwrap();
    assert_eq!(
        status.as_deref(),
        Some("ACTIVE"),
        "MySQL 9.7 still has sha256_password"
    );
    root.query_drop(format!(
        "CREATE USER '{account}'@'%' IDENTIFIED WITH sha256_password BY 'shapw'"
    ))
    .await
    .unwrap();
    support::sync_replicas().await;
    let tp = support::start_proxy_with(|t| {
        t.replacen(
            "[[users]]",
            &format!(
                "[[users]]\nname = \"shauser\"\npassword = \"clientpw\"\n\
                 backend_user = \"{account}\"\nbackend_password = \"shapw\"\n[[users]]"
            ),
            1,
        )
    })
    .await;
    let attempt = async {
        let mut c = mysql_async::Conn::new(tp.opts("shauser", "clientpw")).await?;
        c.query_drop("SELECT 1").await?;
        c.query_drop("INSERT INTO nowhere.t VALUES (1)").await
    };
    let err = attempt
        .await
        .expect_err("a sha256_password backend account is refused");
    let mysql_async::Error::Server(e) = err else {
        panic!("a server error, not {err:?}");
    };
    assert_eq!((e.code, e.state.as_str()), (1251, "08004"), "{e:?}");
    assert!(
        e.message.contains(&format!("'{account}'"))
            && e.message.contains("sha256_password")
            && e.message.contains("caching_sha2_password")
            && !e.message.contains("protocol violation"),
        "{}",
        e.message
    );
    // the proxy and other accounts are unaffected
    let mut app = tp.conn().await;
    let one: Option<i64> = app.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    root.query_drop(format!("DROP USER '{account}'@'%'"))
        .await
        .unwrap();
}
