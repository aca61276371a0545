//! The binlog reader task: follows the primary's replication stream from
//! the primary's executed set at connect time (GTID auto-positioned; by
//! file and position when that set holds tagged GTIDs, which the dump
//! request of `mysql_async` cannot carry) and, for each transaction,
//! records in [`Binlog`] the tables its row events (or its DDL) wrote and
//! its GTID, untagged or tagged ([`super::tagged`]). With a binlog cache it
//! also drives the cache's freshness state as before: tables' entries die,
//! any other statement kills every entry. It reconnects after a second
//! when the stream fails; while it is down, causal reads bypass the cache
//! and fresh reads need the primary's whole executed set.

use causeway_gtid::{GtidSet, Tag, Uuid};
use mysql_async::binlog::events::{Event, EventData};
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Binlog;
use crate::cache::{Cache, INVALIDATIONS, READER_LAG_SECONDS};
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
        "the binlog reader is not supported on MariaDB (the primary runs {0}): use [cache] \
         invalidation = \"ttl\"; the cache serves no entry and fresh reads need the \
         primary's whole executed set until then"
    )]
    MariadbUnsupported(String),
}

/// Heartbeat period asked of the primary.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which the stream counts as dead.
const SILENT: Duration = Duration::from_secs(5);

/// Starts the reader of `shared`'s [`Binlog`] (and of `cache`, when its
/// invalidation is `binlog`); it connects once wanted and ends with the
/// proxy.
pub fn spawn(shared: &Arc<Shared>, binlog: Arc<Binlog>, cache: Option<Arc<Cache>>) {
    let weak = Arc::downgrade(shared);
    let mut shutdown = shared.shutdown_signal();
    tokio::spawn(async move {
        tokio::select! {
            _ = binlog.wanted() => {}
            _ = shutdown.changed() => return,
        }
        let sink = Sink { binlog, cache };
        loop {
            let run = follow(&weak, &sink);
            let err = tokio::select! {
                r = run => match r {
                    Ok(()) => ReaderError::Ended,
                    Err(e) => e,
                },
                _ = shutdown.changed() => return,
            };
            let refused = matches!(err, ReaderError::MariadbUnsupported(_));
            let state = if refused { "refused" } else { "disconnected" };
            sink.binlog.with(|v| v.stop());
            sink.binlog.set_state(state);
            sink.binlog.set_error(Some(err.to_string()));
            if let Some(cache) = &sink.cache {
                cache.with_fresh(|f| f.stop());
                cache.set_reader(|s| {
                    s.state = state;
                    s.error = Some(err.to_string());
                });
            }
            if refused {
                tracing::error!(error = %err, "binlog reader refused");
                return;
            }
            tracing::warn!(error = %err, "binlog reader stopped; causal reads bypass the cache and fresh reads need the primary's whole executed set until it follows again");
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

/// Where the reader's findings go.
struct Sink {
    binlog: Arc<Binlog>,
    cache: Option<Arc<Cache>>,
}

impl Sink {
    fn reader_status(&self, f: impl FnOnce(&mut crate::cache::ReaderStatus)) {
        if let Some(c) = &self.cache {
            c.set_reader(f);
        }
    }
}

/// The request's start set, for an untagged executed set (None: tagged).
fn sids(set: &GtidSet) -> Option<Vec<mysql_async::Sid<'static>>> {
    let mut out = Vec::new();
    for (tsid, intervals) in set.iter() {
        if !tsid.tag.is_untagged() {
            return None;
        }
        let ivs = intervals
            .iter()
            .map(|i| mysql_async::GnoInterval::new(i.start, i.end.saturating_add(1)))
            .collect();
        out.push(mysql_async::Sid::new(*tsid.uuid.as_bytes()).with_intervals(ivs));
    }
    Some(out)
}

fn parse_set(s: Option<String>) -> Result<GtidSet, ReaderError> {
    GtidSet::parse(&s.unwrap_or_default().replace('\n', ""))
        .map_err(|e| ReaderError::Gtid(e.to_string()))
}

/// Where the stream starts.
enum From {
    /// After this (untagged) executed set.
    Gtids(Vec<mysql_async::Sid<'static>>),
    /// At this binlog file and position.
    Position(Vec<u8>, u64),
}

/// Where the stream starts: the primary's executed set, and the position.
async fn start_at(conn: &mut mysql_async::Conn) -> Result<(GtidSet, From), ReaderError> {
    let executed: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_executed").await?;
    let start = parse_set(executed)?;
    if let Some(sids) = sids(&start) {
        return Ok((start, From::Gtids(sids)));
    }
    // tagged GTIDs: by file and position, then the executed set read after
    // it (a superset of what precedes the position, once the transactions
    // flushed before it have committed)
    let row: Option<mysql_async::Row> = conn.query_first("SHOW BINARY LOG STATUS").await?;
    let row = row.ok_or_else(|| ReaderError::Gtid("binary logging is off".into()))?;
    let file: Option<String> = row.get("File");
    let pos: Option<u64> = row.get("Position");
    let (Some(file), Some(pos)) = (file, pos) else {
        return Err(ReaderError::Gtid(
            "SHOW BINARY LOG STATUS: no position".into(),
        ));
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let executed: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_executed").await?;
    let start = parse_set(executed)?;
    Ok((start, From::Position(file.into_bytes(), pos)))
}

async fn follow(shared: &Weak<Shared>, sink: &Sink) -> Result<(), ReaderError> {
    let (addr, primary_state, (user, password)) = {
        let p = shared.upgrade().ok_or(ReaderError::Ended)?;
        let topo = p.topology.load();
        (
            topo.primary.config.address.clone(),
            Arc::clone(&topo.primary.state),
            topo.config.binlog_credentials(),
        )
    };
    sink.binlog.set_state("connecting");
    sink.reader_status(|s| s.state = "connecting");
    let (host, port) = causeway_config::split_host_port(&addr).map_err(ReaderError::Address)?;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password));
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
    let server_id = 0x4000_0000 | (rand::random::<u32>() >> 2);
    // views the account may see (a read of one needs every table)
    let views: Vec<String> = conn
        .query("SELECT LOWER(CONCAT(TABLE_SCHEMA, '.', TABLE_NAME)) FROM information_schema.VIEWS")
        .await
        .unwrap_or_default();
    sink.binlog.with(|v| v.add_views(views));
    let (start, from) = start_at(&mut conn).await?;
    let request = mysql_async::BinlogStreamRequest::new(server_id);
    let request = match &from {
        From::Gtids(sids) => request.with_gtid().with_gtid_set(sids.iter().cloned()),
        From::Position(file, pos) => request.with_filename(file).with_pos(*pos),
    };
    let mut stream = conn.get_binlog_stream(request).await?;
    sink.binlog.with(|v| v.restart(&start));
    sink.binlog.set_state("following");
    if let Some(cache) = &sink.cache {
        cache.with_fresh(|f| f.restart(start));
        metrics::counter!(INVALIDATIONS, "reason" => "restart").increment(1);
    }
    sink.reader_status(|s| {
        s.state = "following";
        s.error = None;
    });
    tracing::info!(primary = %addr, server_id, "binlog reader following the primary");
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
                tx.event(&ev, sink, &stream)?;
            }
            _ = tick.tick() => {
                if last_event.elapsed() > SILENT {
                    return Err(ReaderError::Silent(SILENT));
                }
                // a reload or failover named another primary: follow it
                let moved = shared
                    .upgrade()
                    .map_or(true, |p| p.topology.load().primary.config.address != addr);
                if moved {
                    return Err(ReaderError::PrimaryChanged);
                }
                caught_up(sink, &primary_state);
            }
        }
    }
}

/// Updates the cache's "caught up" gauge from the monitor's view.
fn caught_up(sink: &Sink, primary: &crate::topology::BackendState) {
    let Some(cache) = &sink.cache else {
        return;
    };
    let view = Arc::clone(&primary.view.load().gtid_executed);
    let (p, _) = sink.binlog.processed();
    let now = Instant::now();
    cache.set_reader(|s| {
        if p.contains(&view) {
            s.caught_up_at = Some(now);
        }
        let lag = s
            .caught_up_at
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        metrics::gauge!(READER_LAG_SECONDS).set(lag);
    });
}

/// The transaction being read.
#[derive(Default)]
struct Txn {
    gtid: Option<GtidSet>,
    /// Commit time on the primary, microseconds since the epoch (0: unknown).
    commit_us: u64,
    tables: Vec<String>,
    unknown_table: bool,
    /// table id → `db.table` (lowercase)
    map: HashMap<u64, String>,
    file: String,
}

fn table_name(t: &mysql_async::binlog::events::TableMapEvent<'_>) -> String {
    format!("{}.{}", t.database_name(), t.table_name()).to_lowercase()
}

impl Txn {
    fn begin(&mut self, gtid: GtidSet, commit_us: u64) {
        self.gtid = Some(gtid);
        self.commit_us = commit_us;
        self.tables.clear();
        self.unknown_table = false;
    }

    fn event(
        &mut self,
        ev: &Event,
        sink: &Sink,
        stream: &mysql_async::BinlogStream,
    ) -> Result<(), ReaderError> {
        let pos = ev.header().log_pos();
        if ev.header().event_type_raw() == super::tagged::GTID_TAGGED_LOG_EVENT {
            let g = super::tagged::decode(ev.data())
                .ok_or_else(|| ReaderError::Gtid("undecodable tagged GTID event".into()))?;
            let set = g.set().map_err(ReaderError::Gtid)?;
            self.begin(set, g.commit_us);
            return Ok(());
        }
        let Some(data) = ev.read_data()? else {
            return Ok(());
        };
        match data {
            EventData::GtidEvent(g) => {
                let mut set = GtidSet::new();
                set.add(Uuid(g.sid()), Tag::UNTAGGED, g.gno())
                    .map_err(|e| ReaderError::Gtid(e.to_string()))?;
                self.begin(set, g.immediate_commit_timestamp());
            }
            EventData::TableMapEvent(t) => {
                self.map.insert(t.table_id(), table_name(&t));
            }
            EventData::RowsEvent(r) => {
                let id = r.table_id();
                match self
                    .map
                    .get(&id)
                    .cloned()
                    .or_else(|| stream.get_tme(id).map(table_name))
                {
                    Some(name) => {
                        if !self.tables.contains(&name) {
                            self.tables.push(name);
                        }
                    }
                    None => self.unknown_table = true,
                }
            }
            EventData::XidEvent(_) => self.commit(sink, None),
            EventData::QueryEvent(q) => {
                let sql = q.query();
                let t = sql.trim();
                if t.eq_ignore_ascii_case("BEGIN") {
                } else if t.eq_ignore_ascii_case("COMMIT") {
                    self.commit(sink, None);
                } else {
                    // DDL, account management, statement-format DML
                    let schema = q.schema();
                    let db = (!schema.is_empty()).then_some(schema.as_ref());
                    if let Some(v) = super::ddl::view(t, db) {
                        sink.binlog.with(|s| s.add_views([v]));
                    }
                    self.commit(sink, Some(statement_tables(t, db)));
                }
            }
            EventData::RotateEvent(r) => {
                self.file = r.name().into_owned();
            }
            _ => {}
        }
        if pos > 0 && sink.cache.is_some() {
            let at = format!("{}:{pos}", self.file);
            sink.reader_status(|s| s.position = at);
        }
        Ok(())
    }

    /// The transaction ended. `statement`: it was one statement (DDL and
    /// the like), with the tables it wrote when known.
    fn commit(&mut self, sink: &Sink, statement: Option<Option<Vec<String>>>) {
        let gtid = self.gtid.take();
        let rows = std::mem::take(&mut self.tables);
        let unknown = std::mem::take(&mut self.unknown_table);
        let (tables, everything) = match statement {
            Some(Some(mut t)) => {
                t.extend(rows);
                (Some(t), true)
            }
            Some(None) => (None, true),
            None if unknown => (None, true),
            None => (Some(rows), false),
        };
        sink.binlog
            .with(|v| v.commit(gtid.as_ref(), tables.as_deref()));
        if self.commit_us > 0 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
            sink.binlog
                .record_lag(Duration::from_micros(now.saturating_sub(self.commit_us)));
            self.commit_us = 0;
        }
        if let Some(cache) = &sink.cache {
            cache_commit(cache, gtid.as_ref(), tables.as_deref(), everything);
        }
    }
}

/// The tables a one-statement transaction wrote: DDL by name
/// ([`super::ddl`]), DML in statement format by the classifier.
fn statement_tables(sql: &str, db: Option<&str>) -> Option<Vec<String>> {
    let sql = sql
        .strip_suffix("/* generated by server */")
        .unwrap_or(sql)
        .trim_end();
    if let Some(t) = super::ddl::tables(sql, db) {
        return Some(t);
    }
    match causeway_classify::tables(sql) {
        causeway_classify::Tables::Known(list)
            if causeway_classify::classify(sql).route != causeway_classify::Route::Replica =>
        {
            list.iter()
                .map(|t| {
                    t.resolve(db)
                        .map(|(d, n)| format!("{d}.{n}").to_lowercase())
                })
                .collect()
        }
        _ => None,
    }
}

/// The cache's side of a processed transaction: its tables' entries die;
/// a statement (DDL, grants) or unknown tables kill every entry.
fn cache_commit(cache: &Cache, gtid: Option<&GtidSet>, tables: Option<&[String]>, all: bool) {
    let rows = tables.unwrap_or_default();
    cache.with_fresh(|f| {
        f.commit(gtid, rows);
        if all {
            // new entries must come from backends that have it
            let p = f.processed().clone();
            f.invalidate_all(Some(&p));
        }
    });
    if all {
        metrics::counter!(INVALIDATIONS, "reason" => "binlog_ddl").increment(1);
    } else if !rows.is_empty() {
        metrics::counter!(INVALIDATIONS, "reason" => "binlog_rows").increment(rows.len() as u64);
    }
    cache.set_reader(|s| s.transactions += 1);
}
