//! GTID replication between sandbox servers: pointing a replica at a source,
//! reading replication status, and waiting for a replica to catch up.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::flavor::Flavor;
use crate::mariadb;
use crate::server::{Server, ServerError};
use crate::users;

/// Errors while configuring or waiting for replication.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// Connecting or querying failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The replica did not catch up (or its threads did not run) in time.
    #[error(
        "replica {replica} did not catch up within {timeout:?}: wanted {wanted:?}, \
         has {has:?}; {status}"
    )]
    Timeout {
        /// Replica name.
        replica: String,
        /// The bound.
        timeout: Duration,
        /// GTID set the replica should contain.
        wanted: String,
        /// The replica's gtid_executed when giving up.
        has: String,
        /// Thread states and last errors.
        status: String,
    },
}

/// Replication thread states and last errors of one replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Receiver (IO) thread state: "ON", "OFF" or "CONNECTING".
    pub receiver: String,
    /// Applier (SQL) thread state: "ON" or "OFF".
    pub applier: String,
    /// Last receiver error, if any.
    pub receiver_error: String,
    /// Last applier/worker error, if any.
    pub applier_error: String,
}

impl ReplicaStatus {
    /// Both threads are running and connected.
    pub fn running(&self) -> bool {
        self.receiver == "ON" && self.applier == "ON"
    }
}

impl std::fmt::Display for ReplicaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "receiver={} applier={} receiver_error={:?} applier_error={:?}",
            self.receiver, self.applier, self.receiver_error, self.applier_error
        )
    }
}

/// Runs CHANGE REPLICATION SOURCE TO + START REPLICA on `replica`.
pub async fn configure(replica: &Server, source: &Server) -> Result<(), ReplicationError> {
    let mut conn = replica.conn().await?;
    if replica.flavor() == Flavor::Mariadb {
        let r = mariadb::configure(&mut conn, source.port()).await;
        let _ = conn.disconnect().await;
        return r.map_err(|e| replica.mysql_err(e).into());
    }
    let sql = format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, \
         SOURCE_USER='{}', SOURCE_PASSWORD='{}', SOURCE_AUTO_POSITION=1, \
         GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=1, SOURCE_RETRY_COUNT=100000",
        source.port(),
        users::REPL_USER,
        users::REPL_PASSWORD
    );
    let r = async {
        conn.query_drop(sql).await?;
        conn.query_drop("START REPLICA").await
    }
    .await;
    let _ = conn.disconnect().await;
    r.map_err(|e| replica.mysql_err(e).into())
}

async fn query_status(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
) -> Result<ReplicaStatus, mysql_async::Error> {
    if flavor == Flavor::Mariadb {
        return mariadb::status(conn).await;
    }
    let recv: Option<(String, String)> = conn
        .query_first(
            "SELECT SERVICE_STATE, LAST_ERROR_MESSAGE \
             FROM performance_schema.replication_connection_status LIMIT 1",
        )
        .await?;
    let applier: Option<String> = conn
        .query_first(
            "SELECT SERVICE_STATE FROM performance_schema.replication_applier_status LIMIT 1",
        )
        .await?;
    let applier_error: Option<String> = conn
        .query_first(
            "SELECT LAST_ERROR_MESSAGE FROM performance_schema.replication_applier_status_by_worker \
             WHERE LAST_ERROR_NUMBER <> 0 LIMIT 1",
        )
        .await?;
    let (receiver, receiver_error) = recv.unwrap_or_default();
    Ok(ReplicaStatus {
        receiver,
        applier: applier.unwrap_or_default(),
        receiver_error,
        applier_error: applier_error.unwrap_or_default(),
    })
}

/// Reads replication thread states of `replica`.
pub async fn status(replica: &Server) -> Result<ReplicaStatus, ReplicationError> {
    let mut conn = replica.conn().await?;
    let r = query_status(&mut conn, replica.flavor()).await;
    let _ = conn.disconnect().await;
    r.map_err(|e| replica.mysql_err(e).into())
}

/// `@@GLOBAL.gtid_executed` of `server` (on MariaDB `@@gtid_binlog_pos`).
pub async fn gtid_executed(server: &Server) -> Result<String, ReplicationError> {
    let mut conn = server.conn().await?;
    let sql = match server.flavor() {
        Flavor::Mysql => "SELECT @@GLOBAL.gtid_executed",
        Flavor::Mariadb => mariadb::POSITION_SQL,
    };
    let r: Result<Option<String>, _> = conn.query_first(sql).await;
    let _ = conn.disconnect().await;
    Ok(r.map_err(|e| server.mysql_err(e))?.unwrap_or_default())
}

/// Waits until `replica`'s gtid_executed contains `wanted` and, if
/// `require_threads`, both replication threads run. Connection errors are
/// retried until the deadline (the replica may be restarting).
pub async fn wait_caught_up(
    replica: &Server,
    wanted: &str,
    require_threads: bool,
    timeout: Duration,
) -> Result<(), ReplicationError> {
    let deadline = Instant::now() + timeout;
    let mut has = String::new();
    let mut status: String;
    loop {
        match replica.conn().await {
            Ok(mut conn) => {
                let flavor = replica.flavor();
                let r = async {
                    let row = if flavor == Flavor::Mariadb {
                        mariadb::contains(&mut conn, wanted).await?
                    } else {
                        let row: Option<(i64, String)> = conn
                            .exec_first(
                                "SELECT GTID_SUBSET(?, @@GLOBAL.gtid_executed), \
                                 @@GLOBAL.gtid_executed",
                                (wanted,),
                            )
                            .await?;
                        let (subset, executed) = row.unwrap_or_default();
                        (subset == 1, executed)
                    };
                    let st = query_status(&mut conn, flavor).await?;
                    Ok::<_, mysql_async::Error>((row, st))
                }
                .await;
                let _ = conn.disconnect().await;
                match r {
                    Ok(((subset, executed), st)) => {
                        has = executed;
                        status = st.to_string();
                        if subset && (!require_threads || st.running()) {
                            return Ok(());
                        }
                    }
                    Err(e) => status = format!("query failed: {e}"),
                }
            }
            Err(e) => status = format!("connect failed: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(ReplicationError::Timeout {
                replica: replica.name().to_string(),
                timeout,
                wanted: wanted.to_string(),
                has,
                status,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Promotes `server` by hand, as an operator does after its source died:
/// `STOP REPLICA; RESET REPLICA ALL;` then makes it writable
/// (`super_read_only` and `read_only` off).
pub async fn promote(server: &Server) -> Result<(), ReplicationError> {
    if server.flavor() == Flavor::Mariadb {
        return run_all(server, mariadb::PROMOTE).await;
    }
    run_all(
        server,
        &[
            "STOP REPLICA",
            "RESET REPLICA ALL",
            "SET GLOBAL super_read_only = OFF",
            "SET GLOBAL read_only = OFF",
        ],
    )
    .await
}

/// Makes `server` read-only (`read_only` and `super_read_only` on).
pub async fn demote(server: &Server) -> Result<(), ReplicationError> {
    if server.flavor() == Flavor::Mariadb {
        return run_all(server, mariadb::DEMOTE).await;
    }
    run_all(
        server,
        &[
            "SET GLOBAL read_only = ON",
            "SET GLOBAL super_read_only = ON",
        ],
    )
    .await
}

/// Re-points `replica` to `source` with `SOURCE_AUTO_POSITION = 1`
/// (stops replication first, then [`configure`]).
pub async fn repoint(replica: &Server, source: &Server) -> Result<(), ReplicationError> {
    let stop: &[&str] = match replica.flavor() {
        Flavor::Mysql => &["STOP REPLICA"],
        Flavor::Mariadb => mariadb::STOP,
    };
    run_all(replica, stop).await?;
    configure(replica, source).await
}

async fn run_all(server: &Server, sql: &[&str]) -> Result<(), ReplicationError> {
    let mut conn = server.conn().await?;
    let r = async {
        for s in sql {
            conn.query_drop(*s).await?;
        }
        Ok::<_, mysql_async::Error>(())
    }
    .await;
    let _ = conn.disconnect().await;
    r.map_err(|e| server.mysql_err(e).into())
}
