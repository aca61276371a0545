//! The accounts every sandbox server has.
//!
//! On MySQL all are `@'%'` with `caching_sha2_password` (MySQL 9 has no
//! `mysql_native_password`); on MariaDB with `mysql_native_password`. They are created while the template datadir is
//! initialized, so the primary and every replica have them from the start
//! and `gtid_executed` begins empty everywhere.

use crate::flavor::Flavor;

/// Superuser: empty password, ALL + GRANT OPTION.
pub const ROOT_USER: &str = "root";
/// Password of [`ROOT_USER`].
pub const ROOT_PASSWORD: &str = "";
/// Application user with ALL PRIVILEGES ON *.*.
pub const APP_USER: &str = "app";
/// Password of [`APP_USER`].
pub const APP_PASSWORD: &str = "apppw";
/// User with an empty password and ALL ON *.*.
pub const NOPW_USER: &str = "nopw";
/// Password of [`NOPW_USER`] (empty).
pub const NOPW_PASSWORD: &str = "";
/// Monitoring user: REPLICATION CLIENT, PROCESS, SELECT on performance_schema.
pub const MONITOR_USER: &str = "monitor";
/// Password of [`MONITOR_USER`].
pub const MONITOR_PASSWORD: &str = "monitorpw";
/// Replication user: REPLICATION SLAVE.
pub const REPL_USER: &str = "repl";
/// Password of [`REPL_USER`].
pub const REPL_PASSWORD: &str = "replpw";

/// Errors in this module (none today; kept for the one-enum-per-module rule).
#[derive(Debug, thiserror::Error)]
pub enum UsersError {}

/// The accounts' SQL for `flavor`'s template.
pub fn bootstrap_sql_for(flavor: Flavor) -> String {
    match flavor {
        Flavor::Mysql => bootstrap_sql(),
        Flavor::Mariadb => bootstrap_sql_mariadb(),
    }
}

/// MariaDB's accounts: `mysql_native_password` (MariaDB's default); the
/// monitor gets `SLAVE MONITOR` for `SHOW SLAVE STATUS` (10.5+ split it
/// from `REPLICATION CLIENT`). Run by `mariadbd --bootstrap`.
fn bootstrap_sql_mariadb() -> String {
    let mut s = String::from("USE mysql;\nFLUSH PRIVILEGES;\n");
    let mut user = |name: &str, pw: &str, grants: &str, suffix: &str| {
        s.push_str(&format!(
            "CREATE OR REPLACE USER '{name}'@'%' IDENTIFIED BY '{pw}';\n\
             GRANT {grants} TO '{name}'@'%'{suffix};\n"
        ));
    };
    let all = "ALL PRIVILEGES ON *.*";
    user(ROOT_USER, ROOT_PASSWORD, all, " WITH GRANT OPTION");
    user(APP_USER, APP_PASSWORD, all, "");
    user(NOPW_USER, NOPW_PASSWORD, all, "");
    user(
        MONITOR_USER,
        MONITOR_PASSWORD,
        "REPLICATION CLIENT, SLAVE MONITOR, PROCESS, SELECT ON *.*",
        "",
    );
    user(REPL_USER, REPL_PASSWORD, "REPLICATION SLAVE ON *.*", "");
    s
}

/// SQL run by `mysqld --initialize-insecure --init-file` (one statement per line).
pub fn bootstrap_sql() -> String {
    let mut s = String::new();
    let mut user = |name: &str, pw: &str, grants: &[&str]| {
        s.push_str(&format!(
            "CREATE USER '{name}'@'%' IDENTIFIED WITH caching_sha2_password BY '{pw}';\n"
        ));
        for g in grants {
            let who = format!("'{name}'@'%'");
            s.push_str(&format!("GRANT {};\n", g.replace("{who}", &who)));
        }
    };
    user(
        ROOT_USER,
        ROOT_PASSWORD,
        &["ALL PRIVILEGES ON *.* TO {who} WITH GRANT OPTION"],
    );
    user(APP_USER, APP_PASSWORD, &["ALL PRIVILEGES ON *.* TO {who}"]);
    user(
        NOPW_USER,
        NOPW_PASSWORD,
        &["ALL PRIVILEGES ON *.* TO {who}"],
    );
    user(
        MONITOR_USER,
        MONITOR_PASSWORD,
        &[
            "REPLICATION CLIENT, PROCESS ON *.* TO {who}",
            "SELECT ON performance_schema.* TO {who}",
        ],
    );
    user(
        REPL_USER,
        REPL_PASSWORD,
        &["REPLICATION SLAVE ON *.* TO {who}"],
    );
    s
}
