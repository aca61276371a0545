//! The monitor's one connection to one backend and the queries it runs,
//! each bounded by a timeout. No decisions here: callers interpret
//! [`ProbeError::privilege_refusal`] (the server refused the monitor's
//! account: fail open), [`ProbeError::overloaded`] (it answered but cannot
//! serve: not healthy) and everything else (unreachable or unusable: not
//! healthy).

use causeway_gtid::{GtidError, GtidSet};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};
use std::time::Duration;

use super::eval::service_state_from_show;
use super::settings::Settings;

/// Errors of one probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connecting took longer than the connect timeout.
    #[error("connect to {address} timed out after {timeout:?}")]
    ConnectTimeout {
        /// host:port.
        address: String,
        /// The bound.
        timeout: Duration,
    },
    /// A query took longer than its bound.
    #[error("{what} timed out after {timeout:?}")]
    QueryTimeout {
        /// Which query.
        what: &'static str,
        /// The bound.
        timeout: Duration,
    },
    /// The driver or the server reported an error.
    #[error("{0}")]
    Mysql(#[from] mysql_async::Error),
    /// `@@gtid_executed` could not be parsed.
    #[error("unparsable gtid_executed {text:?}: {source}")]
    Gtid {
        /// The text.
        text: String,
        /// Why.
        #[source]
        source: GtidError,
    },
    /// A query returned no row.
    #[error("{0} returned no row")]
    NoRow(&'static str),
}

impl ProbeError {
    /// The server is up and answered, but refused or returned something
    /// unusable (e.g. missing privileges): the connection itself is fine.
    pub fn server_answered(&self) -> bool {
        matches!(
            self,
            ProbeError::Mysql(mysql_async::Error::Server(_))
                | ProbeError::Gtid { .. }
                | ProbeError::NoRow(_)
        )
    }

    /// The MySQL error code, when the server sent one.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            ProbeError::Mysql(mysql_async::Error::Server(e)) => Some(e.code),
            _ => None,
        }
    }

    /// The code of a refusal of the monitor's account or queries for lack of
    /// privileges (1044, 1045, 1142, 1143, 1227, 1370, 3118 account
    /// locked): the server works, the monitor just may not look. The only
    /// case where health fails open.
    pub fn privilege_refusal(&self) -> Option<u16> {
        self.server_code()
            .filter(|c| matches!(c, 1044 | 1045 | 1142 | 1143 | 1227 | 1370 | 3118))
    }

    /// The server answered, but as an overloaded one: too many connections
    /// (1040, 1203), out of threads or memory (1135, 1041, 1037, 1038), or
    /// it is shutting down (1053); or it did not answer in time.
    pub fn overloaded(&self) -> bool {
        matches!(
            self,
            ProbeError::ConnectTimeout { .. } | ProbeError::QueryTimeout { .. }
        ) || self
            .server_code()
            .is_some_and(|c| matches!(c, 1040 | 1203 | 1135 | 1041 | 1037 | 1038 | 1053))
    }

    /// Which case of the health rule this failure is, for logs and the view.
    pub fn health_case(&self) -> &'static str {
        if self.privilege_refusal().is_some() {
            "refused by privileges; failing open"
        } else if self.overloaded() {
            "overloaded (too many connections, out of resources or timed out); not healthy"
        } else if self.server_answered() {
            "answered but cannot be measured; not healthy"
        } else {
            "unreachable; not healthy"
        }
    }

    /// The established connection failed (I/O or protocol error, e.g. the
    /// server closed it), as opposed to a timeout or a refusal.
    pub fn connection_broke(&self) -> bool {
        matches!(
            self,
            ProbeError::Mysql(mysql_async::Error::Io(_) | mysql_async::Error::Driver(_))
        ) || self.connection_ended_by_server()
    }

    /// The server ended the session itself and said so before closing it
    /// (1927 connection killed, 4031 idle timeout, 1053 shutdown): the
    /// connection is gone, the server may well be fine.
    pub fn connection_ended_by_server(&self) -> bool {
        self.server_code()
            .is_some_and(|c| matches!(c, 1927 | 4031 | 1053))
    }
}

/// Opens a monitor connection (TCP, no statement cache, TLS as
/// `[backend_tls] mode` says), bounded by the connect timeout.
pub async fn connect(s: &Settings) -> Result<Conn, ProbeError> {
    let ssl = crate::tls::client::monitor_opts(&s.tls);
    let fallback = s.tls.mode == causeway_config::TlsMode::Preferred;
    let opts = OptsBuilder::default()
        .ip_or_hostname(s.host.clone())
        .tcp_port(s.port)
        .user(Some(s.user.clone()))
        .pass(Some(s.password.clone()))
        .prefer_socket(false)
        .stmt_cache_size(0)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(10_000u32));
    let connect = async {
        match Conn::new(opts.clone().ssl_opts(ssl)).await {
            // preferred: plaintext when the server offers no TLS
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if fallback => Conn::new(opts).await,
            r => r,
        }
    };
    match tokio::time::timeout(s.connect_timeout, connect).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ProbeError::ConnectTimeout {
            address: s.address.clone(),
            timeout: s.connect_timeout,
        }),
    }
}

/// Closes a connection without ever waiting longer than `timeout` (the
/// driver's implicit close on drop could wait on a hung server forever).
pub async fn close(conn: Conn, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, conn.disconnect()).await;
}

/// `fut` within `timeout`; its error or the timeout as a [`ProbeError`].
pub(super) async fn bounded<T>(
    what: &'static str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, ProbeError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ProbeError::QueryTimeout { what, timeout }),
    }
}

fn parse_gtid(text: String) -> Result<GtidSet, ProbeError> {
    GtidSet::parse(&text).map_err(|source| ProbeError::Gtid { text, source })
}

/// `@@GLOBAL.gtid_executed`: the cheap query run every GTID interval.
pub async fn gtid_executed(conn: &mut Conn, timeout: Duration) -> Result<GtidSet, ProbeError> {
    const WHAT: &str = "SELECT @@GLOBAL.gtid_executed";
    let text: Option<String> = bounded(WHAT, timeout, conn.query_first(WHAT)).await?;
    parse_gtid(text.ok_or(ProbeError::NoRow(WHAT))?)
}

/// A pool's `watermark_query`: its first column of its first row is the
/// primary GTID set the store reflects (NULL: nothing yet), parsed within
/// the bounds of a client token.
pub async fn watermark(
    conn: &mut Conn,
    query: &str,
    timeout: Duration,
) -> Result<GtidSet, ProbeError> {
    const WHAT: &str = "watermark_query";
    let row: Option<Row> = bounded(WHAT, timeout, conn.query_first(query)).await?;
    let row = row.ok_or(ProbeError::NoRow(WHAT))?;
    let text: Option<String> = row
        .get_opt::<Option<String>, _>(0)
        .and_then(Result::ok)
        .flatten();
    let text = text.unwrap_or_default();
    causeway_gtid::parse_token(&text, &causeway_gtid::Limits::TOKEN)
        .map_err(|source| ProbeError::Gtid { text, source })
}

/// What the health check's first query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRow {
    /// `@@GLOBAL.gtid_executed`.
    pub gtid: GtidSet,
    /// `read_only || super_read_only`.
    pub read_only: bool,
    /// `@@GLOBAL.server_uuid`.
    pub server_uuid: String,
}

/// `gtid_executed`, `read_only || super_read_only` and `server_uuid`, in
/// one round trip (the health check's first query).
pub async fn gtid_and_read_only(
    conn: &mut Conn,
    timeout: Duration,
) -> Result<HealthRow, ProbeError> {
    const WHAT: &str = "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.read_only, \
        @@GLOBAL.super_read_only, @@GLOBAL.server_uuid";
    let row: Option<(String, i64, i64, String)> =
        bounded(WHAT, timeout, conn.query_first(WHAT)).await?;
    let (text, ro, sro, server_uuid) = row.ok_or(ProbeError::NoRow(WHAT))?;
    Ok(HealthRow {
        gtid: parse_gtid(text)?,
        read_only: ro != 0 || sro != 0,
        server_uuid,
    })
}

/// The UUIDs of the sources a replica's receivers are connected to (one
/// per channel; empty ones, of receivers that never connected, are left
/// out), from performance_schema. `None` when the server refuses the
/// query (privileges): the check is then skipped, not failed.
pub async fn source_uuids(
    conn: &mut Conn,
    timeout: Duration,
) -> Result<Option<Vec<String>>, ProbeError> {
    const WHAT: &str = "SELECT SOURCE_UUID FROM performance_schema.replication_connection_status";
    match bounded(WHAT, timeout, conn.query::<Option<String>, _>(WHAT)).await {
        Ok(rows) => Ok(Some(
            rows.into_iter()
                .flatten()
                .filter(|u| !u.is_empty())
                .collect(),
        )),
        Err(e) if e.server_answered() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replication `(receiver, applier)` SERVICE_STATE per channel, from
/// performance_schema, falling back to `SHOW REPLICA STATUS` when that is
/// refused (e.g. no SELECT on performance_schema).
pub async fn replication_states(
    conn: &mut Conn,
    timeout: Duration,
) -> Result<Vec<(String, String)>, ProbeError> {
    const PS: &str = "SELECT c.SERVICE_STATE, a.SERVICE_STATE \
        FROM performance_schema.replication_connection_status c \
        JOIN performance_schema.replication_applier_status a USING (CHANNEL_NAME)";
    match bounded("replication status", timeout, conn.query(PS)).await {
        Ok(rows) => Ok(rows),
        Err(e) if e.server_answered() => {
            let rows: Vec<Row> = bounded(
                "SHOW REPLICA STATUS",
                timeout,
                conn.query("SHOW REPLICA STATUS"),
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let col = |name: &str| {
                        r.get_opt::<Option<String>, _>(name)
                            .and_then(Result::ok)
                            .flatten()
                            .unwrap_or_default()
                    };
                    (
                        service_state_from_show(&col("Replica_IO_Running")).to_string(),
                        service_state_from_show(&col("Replica_SQL_Running")).to_string(),
                    )
                })
                .collect())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> ProbeError {
        ProbeError::Mysql(mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: format!("error {code}"),
            state: "HY000".into(),
        }))
    }

    #[test]
    fn only_privilege_refusals_fail_open() {
        for code in [1044, 1045, 1142, 1143, 1227, 1370, 3118] {
            let e = server(code);
            assert_eq!(e.privilege_refusal(), Some(code));
            assert!(!e.overloaded());
            assert!(e.health_case().contains("privileges"), "{code}");
        }
        for code in [1040, 1203, 1135, 1041, 1053] {
            let e = server(code);
            assert_eq!(e.privilege_refusal(), None, "{code}");
            assert!(e.overloaded(), "{code}");
            assert!(e.health_case().contains("overloaded"), "{code}");
        }
        let t = ProbeError::QueryTimeout {
            what: "q",
            timeout: Duration::from_secs(1),
        };
        assert!(t.overloaded() && t.privilege_refusal().is_none());
        let c = ProbeError::ConnectTimeout {
            address: "x:1".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(c.overloaded());
        // answered, but neither a refusal nor overload: still not healthy
        let odd = server(1064);
        assert!(odd.privilege_refusal().is_none() && !odd.overloaded());
        assert!(odd.health_case().contains("not healthy"));
        assert!(ProbeError::NoRow("q").health_case().contains("not healthy"));
        // a server that ends the monitor's session: reconnect, no verdict yet
        for code in [1927, 4031] {
            assert!(server(code).connection_broke() && server(code).connection_ended_by_server());
        }
        assert!(!server(1040).connection_broke());
    }
}
