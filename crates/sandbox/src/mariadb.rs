//! What a MariaDB sandbox server does differently from MySQL: its option
//! file (MariaDB GTIDs are always on; `gtid_strict_mode`, `log_slave_updates`,
//! ROW binlog) and its replication statements (`CHANGE MASTER TO ...
//! MASTER_USE_GTID = slave_pos`, `SHOW SLAVE STATUS`, `MASTER_GTID_WAIT`).
//! [`crate::replication`] calls in here when the server's flavour is MariaDB.

use mysql_async::prelude::Queryable;

use crate::replication::ReplicaStatus;
use crate::users;

/// Errors of this module (none of its own: callers map driver errors).
#[derive(Debug, thiserror::Error)]
pub enum MariadbError {}

/// The `[mysqld]` lines of a MariaDB sandbox server.
pub(crate) fn config_lines(datadir: &str, dir: &str, port: u16, server_id: u32) -> Vec<String> {
    let mut v = vec![
        format!("datadir={datadir}"),
        format!("socket={datadir}/mysqld.sock"),
        format!("pid-file={dir}/mysqld.pid"),
        format!("log-error={dir}/error.log"),
        format!("port={port}"),
        "bind-address=127.0.0.1".into(),
        format!("server-id={server_id}"),
        "report-host=127.0.0.1".into(),
        format!("report-port={port}"),
        "log-bin=binlog".into(),
        "relay-log=relay-bin".into(),
        "log-slave-updates=ON".into(),
        "binlog-format=ROW".into(),
        "gtid-strict-mode=ON".into(),
        "relay-log-recovery=ON".into(),
        "master-retry-count=100000".into(),
        "skip-name-resolve".into(),
        "secure-file-priv=".into(),
        "max_allowed_packet=1G".into(),
        "innodb-log-file-size=32M".into(),
        "innodb-buffer-pool-size=64M".into(),
        "innodb-flush-log-at-trx-commit=2".into(),
        "innodb-doublewrite=OFF".into(),
        "sync-binlog=0".into(),
        "performance-schema=OFF".into(),
        "table-open-cache=400".into(),
        "character-set-server=utf8mb4".into(),
        "collation-server=utf8mb4_general_ci".into(),
    ];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        v.insert(0, "user=root".into());
    }
    v
}

/// `CHANGE MASTER TO ... MASTER_USE_GTID = slave_pos` + `START SLAVE`.
pub(crate) async fn configure(
    conn: &mut mysql_async::Conn,
    source_port: u16,
) -> Result<(), mysql_async::Error> {
    let sql = format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={source_port}, \
         MASTER_USER='{}', MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos, \
         MASTER_CONNECT_RETRY=1",
        users::REPL_USER,
        users::REPL_PASSWORD
    );
    conn.query_drop(sql).await?;
    conn.query_drop("START SLAVE").await
}

/// Thread states from `SHOW SLAVE STATUS`, mapped to MySQL's words
/// (`Yes` → ON, `No` → OFF, `Connecting` → CONNECTING).
pub(crate) async fn status(
    conn: &mut mysql_async::Conn,
) -> Result<ReplicaStatus, mysql_async::Error> {
    let row: Option<mysql_async::Row> = conn.query_first("SHOW SLAVE STATUS").await?;
    let Some(row) = row else {
        return Ok(ReplicaStatus::default());
    };
    let text = |name: &str| -> String {
        row.get_opt::<Option<String>, _>(name)
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_default()
    };
    let word = |v: String| match v.as_str() {
        "Yes" => "ON".to_string(),
        "No" => "OFF".to_string(),
        "Connecting" => "CONNECTING".to_string(),
        _ => v,
    };
    Ok(ReplicaStatus {
        receiver: word(text("Slave_IO_Running")),
        applier: word(text("Slave_SQL_Running")),
        receiver_error: text("Last_IO_Error"),
        applier_error: text("Last_SQL_Error"),
    })
}

/// The position a primary has written: `@@gtid_binlog_pos` (its own
/// writes are not in `gtid_slave_pos`).
pub(crate) const POSITION_SQL: &str = "SELECT @@GLOBAL.gtid_binlog_pos";

/// Whether the replica has applied `wanted` (what `MASTER_GTID_WAIT`
/// waits on: `gtid_slave_pos`, per domain seq ≥), and its position.
pub(crate) async fn contains(
    conn: &mut mysql_async::Conn,
    wanted: &str,
) -> Result<(bool, String), mysql_async::Error> {
    let row: Option<(i64, String)> = conn
        .exec_first(
            "SELECT MASTER_GTID_WAIT(?, 0), @@GLOBAL.gtid_slave_pos",
            (wanted,),
        )
        .await?;
    let (r, pos) = row.unwrap_or((-1, String::new()));
    Ok((r == 0, pos))
}

/// Statements of promote / demote / stop on MariaDB.
pub(crate) const PROMOTE: &[&str] = &[
    "STOP SLAVE",
    "RESET SLAVE ALL",
    "SET GLOBAL read_only = OFF",
];
/// Makes a server read-only (MariaDB has no `super_read_only`).
pub(crate) const DEMOTE: &[&str] = &["SET GLOBAL read_only = ON"];
/// Stops replication.
pub(crate) const STOP: &[&str] = &["STOP SLAVE"];
