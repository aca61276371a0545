//! What the monitor reads on a MariaDB backend (the flavour is detected
//! once per monitor connection with `SELECT VERSION()`).
//!
//! - **Position.** A replica publishes `@@gtid_slave_pos`: what it applied
//!   from its source, and exactly what `MASTER_GTID_WAIT` waits on, so a
//!   token "contained in the view" and "the wait returned 0" agree (a
//!   replica's own local writes, in `gtid_binlog_pos`, are not the
//!   primary's and must not satisfy a token). The primary publishes
//!   `@@gtid_binlog_pos`: its own writes are there and never in
//!   `gtid_slave_pos`. (`gtid_current_pos` mixes the two per domain by
//!   recency, which is right for neither.)
//! - **Writer test.** `@@read_only` (MariaDB has no `super_read_only`).
//! - **Identity.** MariaDB has no `server_uuid`: a server is
//!   `server_id:<@@server_id>`, its sources `server_id:<Master_Server_Id>`
//!   from `SHOW ALL SLAVES STATUS` (every named connection), which also
//!   gives the IO/SQL thread states.
//! - **Lag** is measured as on MySQL, from the primary's position history:
//!   the time since the primary first showed the position the replica has
//!   now (`Seconds_Behind_Master` is only a relay-log timestamp difference
//!   and reads 0 while the IO thread is behind).
//!
//! Errors are [`ProbeError`]s, as for every probe.

use causeway_gtid::{Flavor, GtidSet, MariadbPos};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use std::time::{Duration, Instant};

use super::eval::{self, service_state_from_show};
use super::probe::{bounded, ProbeError};
use super::settings::Settings;
use super::task::Reading;
use crate::topology::Role;

/// The flavour of the server behind `conn`.
pub(super) async fn flavor(conn: &mut Conn, timeout: Duration) -> Result<Flavor, ProbeError> {
    const WHAT: &str = "SELECT VERSION()";
    let v: Option<String> = bounded(WHAT, timeout, conn.query_first(WHAT)).await?;
    Ok(Flavor::from_version(&v.ok_or(ProbeError::NoRow(WHAT))?))
}

fn parse_pos(text: String) -> Result<GtidSet, ProbeError> {
    MariadbPos::parse(&text)
        .map(|p| p.to_gtid_set())
        .map_err(|source| ProbeError::Gtid { text, source })
}

/// One reading of a MariaDB backend (see the module docs).
pub(super) async fn read(
    conn: &mut Conn,
    s: &Settings,
    health: bool,
) -> Result<Reading, ProbeError> {
    let t = s.connect_timeout;
    let sent = Instant::now();
    let pos_var = match s.role {
        Role::Primary => "@@GLOBAL.gtid_binlog_pos",
        Role::Replica => "@@GLOBAL.gtid_slave_pos",
    };
    if !health {
        let sql = format!("SELECT {pos_var}");
        let text: Option<String> = bounded("MariaDB position", t, conn.query_first(sql)).await?;
        let gtid = parse_pos(text.ok_or(ProbeError::NoRow("MariaDB position"))?)?;
        return Ok(Reading::gtid_only(gtid, sent));
    }
    let sql = format!("SELECT {pos_var}, @@GLOBAL.read_only, @@GLOBAL.server_id");
    let row: Option<(String, i64, u64)> =
        bounded("MariaDB health", t, conn.query_first(sql)).await?;
    let (text, ro, id) = row.ok_or(ProbeError::NoRow("MariaDB health"))?;
    let gtid = parse_pos(text)?;
    let at = Instant::now();
    let mut reading = Reading::gtid_only(gtid, sent);
    reading.health = true;
    reading.at = at;
    reading.read_only = Some(ro != 0);
    reading.server_uuid = Some(format!("server_id:{id}"));
    if s.role == Role::Replica || s.follow {
        match slaves(conn, t).await {
            Ok((states, sources)) => {
                if s.role == Role::Replica {
                    reading.replication = Some(Ok(eval::replicating_from(&states)));
                }
                reading.source_uuids = Some(sources);
            }
            Err(e) if e.server_answered() && s.role == Role::Replica => {
                reading.replication = Some(Err(e));
            }
            Err(e) if e.server_answered() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(reading)
}

/// `(IO, SQL)` thread states and source ids of every replication
/// connection, from `SHOW ALL SLAVES STATUS`.
async fn slaves(
    conn: &mut Conn,
    timeout: Duration,
) -> Result<(Vec<(String, String)>, Vec<String>), ProbeError> {
    const WHAT: &str = "SHOW ALL SLAVES STATUS";
    let rows: Vec<Row> = bounded(WHAT, timeout, conn.query(WHAT)).await?;
    let mut states = Vec::with_capacity(rows.len());
    let mut sources = Vec::new();
    for r in &rows {
        let col = |name: &str| {
            r.get_opt::<Option<String>, _>(name)
                .and_then(Result::ok)
                .flatten()
                .unwrap_or_default()
        };
        states.push((
            service_state_from_show(&col("Slave_IO_Running")).to_string(),
            service_state_from_show(&col("Slave_SQL_Running")).to_string(),
        ));
        let id = col("Master_Server_Id");
        if !id.is_empty() && id != "0" {
            sources.push(format!("server_id:{id}"));
        }
    }
    Ok((states, sources))
}

/// Records the primary's flavour (primary task) and, on a replica whose
/// flavour `mine` differs from the primary's, returns the refusal (logged
/// once per change, remembered in `refused`).
pub(super) fn mixed_flavor(
    primary_flavor: &std::sync::Mutex<Option<Flavor>>,
    s: &Settings,
    mine: Flavor,
    refused: &mut Option<Flavor>,
) -> Option<String> {
    let mut g = primary_flavor.lock().unwrap_or_else(|e| e.into_inner());
    if s.role == Role::Primary {
        *g = Some(mine);
        return None;
    }
    let primary = (*g)?;
    drop(g);
    if primary == mine {
        *refused = None;
        return None;
    }
    let msg = mixed(&s.name, mine, primary);
    if *refused != Some(mine) {
        tracing::error!(backend = %s.name, "{msg}");
        *refused = Some(mine);
    }
    Some(msg)
}

/// The error a backend of another flavour than the primary's gets.
fn mixed(name: &str, mine: Flavor, primary: Flavor) -> String {
    format!(
        "backend '{name}' runs {mine} but the primary runs {primary}: a topology that mixes \
         MySQL and MariaDB is refused (their GTIDs cannot be compared); this backend serves \
         no reads"
    )
}
