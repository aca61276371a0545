//! The binlog reader: follows the primary's replication stream (GTID auto-
//! positioned, from the primary's executed set at connect time) and keeps
//! the cache's freshness state: for each transaction it bumps the tables its
//! row events touched, adds its GTID to P, and treats any other statement
//! (DDL, account changes) as touching everything. It reconnects after a
//! second when the stream fails; while it is down, causal reads bypass the
//! cache, and its restart drops every entry (writes may have been missed).

use causeway_gtid::{GtidSet, Tag, Uuid};
use mysql_async::binlog::events::{Event, EventData};
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{Cache, INVALIDATIONS, READER_LAG_SECONDS};
use crate::shared::Shared;

/// Errors of the binlog reader.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// Connecting or reading failed.
    #[error("{0}")]
    Mysql(#[from] mysql_async::Error),
    /// Decoding an event failed.
    #[error("bad event: {0}")]
    Event(#[from] std::io::Error),
    /// The primary's address cannot be used.
    #[error("primary address: {0}")]
    Address(String),
    /// The primary's executed set could not be read or used.
    #[error("gtid_executed: {0}")]
    Gtid(String),
    /// No event (not even a heartbeat) for too long.
    #[error("no event for {0:?}")]
    Silent(Duration),
    /// The primary ended the stream.
    #[error("the primary ended the stream")]
    Ended,
    /// The configured primary changed.
    #[error("the configured primary changed")]
    PrimaryChanged,
    /// The primary runs MariaDB, whose replication stream (COM_BINLOG_DUMP
    /// with `@slave_connect_state`, MariaDB GTID events) mysql_async's
    /// binlog client cannot follow.
    #[error(
        "[cache] invalidation = \"binlog\" is not supported on MariaDB (the primary runs \
         {0}): causeway's binlog reader cannot follow MariaDB's GTID stream; use \
         invalidation = \"ttl\". The cache serves no entry until then"
    )]
    MariadbUnsupported(String),
}

/// Heartbeat period asked of the primary.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which the stream counts as dead.
const SILENT: Duration = Duration::from_secs(5);

/// Starts the reader of `proxy`'s cache (binlog mode); it ends with the
/// proxy.
pub fn spawn(shared: &Arc<Shared>, cache: Arc<Cache>) {
    let weak = Arc::downgrade(shared);
    let mut shutdown = shared.shutdown_signal();
    tokio::spawn(async move {
        loop {
            let run = follow(&weak, &cache);
            let err = tokio::select! {
                r = run => match r {
                    Ok(()) => ReaderError::Ended,
                    Err(e) => e,
                },
                _ = shutdown.changed() => return,
            };
            cache.with_fresh(|f| f.stop());
            if let ReaderError::MariadbUnsupported(_) = err {
                tracing::error!(error = %err, "cache binlog reader refused");
                cache.set_reader(|s| {
                    s.state = "refused";
                    s.error = Some(err.to_string());
                });
                return;
            }
            tracing::warn!(error = %err, "cache binlog reader stopped; causal reads bypass the cache until it follows again");
            cache.set_reader(|s| {
                s.state = "disconnected";
                s.error = Some(err.to_string());
            });
            if weak.upgrade().is_none() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

fn uuid_of(sid: [u8; 16]) -> Uuid {
    Uuid(sid)
}

/// The request's start set, for an untagged executed set.
fn sids(set: &GtidSet) -> Result<Vec<mysql_async::Sid<'static>>, ReaderError> {
    let mut out = Vec::new();
    for (tsid, intervals) in set.iter() {
        if !tsid.tag.is_untagged() {
            return Err(ReaderError::Gtid(
                "tagged GTIDs are not supported by the cache's binlog reader".into(),
            ));
        }
        let ivs = intervals
            .iter()
            .map(|i| mysql_async::GnoInterval::new(i.start, i.end.saturating_add(1)))
            .collect();
        out.push(mysql_async::Sid::new(*tsid.uuid.as_bytes()).with_intervals(ivs));
    }
    Ok(out)
}

async fn follow(shared: &Weak<Shared>, cache: &Arc<Cache>) -> Result<(), ReaderError> {
    let (addr, primary_state) = {
        let p = shared.upgrade().ok_or(ReaderError::Ended)?;
        let topo = p.topology.load();
        (
            topo.primary.config.address.clone(),
            Arc::clone(&topo.primary.state),
        )
    };
    cache.set_reader(|s| s.state = "connecting");
    let (host, port) = causeway_config::split_host_port(&addr).map_err(ReaderError::Address)?;
    let cfg = cache.config();
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(cfg.user.clone()))
        .pass(Some(cfg.password.clone()));
    let mut conn = mysql_async::Conn::new(opts).await?;
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    let version = version.unwrap_or_default();
    if causeway_gtid::Flavor::from_version(&version) == causeway_gtid::Flavor::Mariadb {
        return Err(ReaderError::MariadbUnsupported(version));
    }
    let period = HEARTBEAT.as_nanos().to_string();
    conn.query_drop(format!(
        "SET @master_heartbeat_period = {period}, @source_heartbeat_period = {period}"
    ))
    .await?;
    let executed: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_executed").await?;
    let start = GtidSet::parse(&executed.unwrap_or_default().replace('\n', ""))
        .map_err(|e| ReaderError::Gtid(e.to_string()))?;
    let server_id = 0x4000_0000 | (rand::random::<u32>() >> 2);
    let request = mysql_async::BinlogStreamRequest::new(server_id)
        .with_gtid()
        .with_gtid_set(sids(&start)?);
    let mut stream = conn.get_binlog_stream(request).await?;
    cache.with_fresh(|f| f.restart(start));
    metrics::counter!(INVALIDATIONS, "reason" => "restart").increment(1);
    cache.set_reader(|s| {
        s.state = "following";
        s.error = None;
    });
    tracing::info!(primary = %addr, server_id, "cache binlog reader following the primary");
    let mut tx = Txn::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_event = Instant::now();
    loop {
        let next =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut stream), cx));
        tokio::select! {
            ev = next => {
                let ev = match ev {
                    Some(ev) => ev?,
                    None => return Err(ReaderError::Ended),
                };
                last_event = Instant::now();
                tx.event(&ev, cache, &stream)?;
            }
            _ = tick.tick() => {
                if last_event.elapsed() > SILENT {
                    return Err(ReaderError::Silent(SILENT));
                }
                // a reload or failover named another primary: follow it
                // (the restart drops every entry)
                let moved = shared
                    .upgrade()
                    .map_or(true, |p| p.topology.load().primary.config.address != addr);
                if moved {
                    return Err(ReaderError::PrimaryChanged);
                }
                let view = Arc::clone(&primary_state.view.load().gtid_executed);
                let (p, _) = cache.processed();
                let now = Instant::now();
                cache.set_reader(|s| {
                    if p.contains(&view) {
                        s.caught_up_at = Some(now);
                    }
                    let lag = s.caught_up_at.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
                    metrics::gauge!(READER_LAG_SECONDS).set(lag);
                });
            }
        }
    }
}

/// The transaction being read.
#[derive(Default)]
struct Txn {
    gtid: Option<GtidSet>,
    tables: Vec<String>,
    unknown_table: bool,
    /// table id → `db.table` (lowercase)
    map: HashMap<u64, String>,
    file: String,
}

impl Txn {
    fn event(
        &mut self,
        ev: &Event,
        cache: &Cache,
        stream: &mysql_async::BinlogStream,
    ) -> Result<(), ReaderError> {
        let pos = ev.header().log_pos();
        let Some(data) = ev.read_data()? else {
            return Ok(());
        };
        match data {
            EventData::GtidEvent(g) => {
                let mut set = GtidSet::new();
                set.add(uuid_of(g.sid()), Tag::UNTAGGED, g.gno())
                    .map_err(|e| ReaderError::Gtid(e.to_string()))?;
                self.gtid = Some(set);
                self.tables.clear();
                self.unknown_table = false;
            }
            EventData::TableMapEvent(t) => {
                let name = format!("{}.{}", t.database_name(), t.table_name()).to_lowercase();
                self.map.insert(t.table_id(), name);
            }
            EventData::RowsEvent(r) => {
                let id = r.table_id();
                match self.map.get(&id).cloned().or_else(|| {
                    stream
                        .get_tme(id)
                        .map(|t| format!("{}.{}", t.database_name(), t.table_name()).to_lowercase())
                }) {
                    Some(name) => {
                        if !self.tables.contains(&name) {
                            self.tables.push(name);
                        }
                    }
                    None => self.unknown_table = true,
                }
            }
            EventData::XidEvent(_) => self.commit(cache, false),
            EventData::QueryEvent(q) => {
                let sql = q.query();
                let t = sql.trim();
                if t.eq_ignore_ascii_case("BEGIN") {
                } else if t.eq_ignore_ascii_case("COMMIT") {
                    self.commit(cache, false);
                } else {
                    // DDL, account management, anything else: all entries
                    self.commit(cache, true);
                }
            }
            EventData::RotateEvent(r) => {
                self.file = r.name().into_owned();
            }
            _ => {}
        }
        if pos > 0 {
            let at = format!("{}:{pos}", self.file);
            cache.set_reader(|s| s.position = at);
        }
        Ok(())
    }

    fn commit(&mut self, cache: &Cache, everything: bool) {
        let gtid = self.gtid.take();
        let tables = std::mem::take(&mut self.tables);
        let all = everything || std::mem::take(&mut self.unknown_table);
        cache.with_fresh(|f| {
            f.commit(gtid.as_ref(), &tables);
            if all {
                // new entries must come from backends that have it
                let p = f.processed().clone();
                f.invalidate_all(Some(&p));
            }
        });
        if all {
            metrics::counter!(INVALIDATIONS, "reason" => "binlog_ddl").increment(1);
        } else if !tables.is_empty() {
            metrics::counter!(INVALIDATIONS, "reason" => "binlog_rows")
                .increment(tables.len() as u64);
        }
        cache.set_reader(|s| s.transactions += 1);
    }
}
