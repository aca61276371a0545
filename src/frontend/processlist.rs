//! The process list causeway shows its clients: what each session is doing
//! (its [`Activity`], updated around every command), and the answers to
//! `SHOW [FULL] PROCESSLIST` and to the subset of `SELECT ... FROM
//! information_schema.PROCESSLIST` / `performance_schema.processlist` that
//! `causeway_classify::processlist_query` recognises.
//!
//! Rows are causeway's sessions, not backend threads: `Id` is causeway's
//! connection id (what `CONNECTION_ID()` returns and `KILL` takes), `User`
//! the causeway user, `Host` the client's `address:port`. A user sees their
//! own sessions; an admin (`admin = true`, causeway's stand-in for MySQL's
//! `PROCESS` privilege) sees every session. Column names, types, lengths
//! and flags are MySQL 9's for each form (string lengths follow the
//! client's character set as the server's do).

use causeway_classify::{
    like, numeric_column, PlTest, PlValue, ProcesslistQuery, ProcesslistSource,
};
use mysql_common::constants::CapabilityFlags;
use std::cmp::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use super::local;
use super::session::{stmt_id_of, Flow, Session};
use crate::protocol::messages::put_lenenc_str;
use crate::protocol::query_attrs;

/// `SHOW PROCESSLIST` cuts `Info` to this many characters (FULL does not).
const SHOW_INFO_CHARS: usize = 100;
/// An idle session keeps at most this much of its last statement's buffer.
const KEPT_INFO_BYTES: usize = 16 * 1024;

/// MySQL's command names, by command byte (`Command` column).
const COMMANDS: [&str; 32] = [
    "Sleep",
    "Quit",
    "Init DB",
    "Query",
    "Field List",
    "Create DB",
    "Drop DB",
    "Refresh",
    "Shutdown",
    "Statistics",
    "Processlist",
    "Connect",
    "Kill",
    "Debug",
    "Ping",
    "Time",
    "Delayed insert",
    "Change user",
    "Binlog Dump",
    "Table Dump",
    "Connect Out",
    "Register Replica",
    "Prepare",
    "Execute",
    "Long Data",
    "Close stmt",
    "Reset stmt",
    "Set option",
    "Fetch",
    "Daemon",
    "Binlog Dump GTID",
    "Reset Connection",
];

/// What one session is doing, for other sessions' process lists.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<ActivityState>,
}

#[derive(Debug)]
struct ActivityState {
    host: String,
    db: Option<String>,
    /// Command byte running now; 0 (COM_SLEEP) when idle.
    command: u8,
    since: Instant,
    /// Text of the statement running now (valid while `has_info`).
    info: String,
    has_info: bool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            state: Mutex::new(ActivityState {
                host: String::new(),
                db: None,
                command: 0,
                since: Instant::now(),
                info: String::new(),
                has_info: false,
            }),
        }
    }
}

/// One process-list row before filtering.
#[derive(Debug, Clone)]
struct Proc {
    id: u32,
    user: String,
    host: String,
    db: Option<String>,
    command: &'static str,
    time: u64,
    state: &'static str,
    info: Option<String>,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // a poisoned lock is recovered: every field is written whole
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the client's `address:port` and schema at login.
    pub fn start(&self, host: String, db: Option<&str>) {
        let mut s = self.lock();
        s.host = host;
        s.db = db.map(str::to_string);
        s.since = Instant::now();
    }

    /// A command starts; `info` is its statement text, if it has one. The
    /// text is copied into a buffer the session reuses.
    pub fn begin(&self, command: u8, info: Option<&[u8]>) {
        let mut s = self.lock();
        s.command = command;
        s.since = Instant::now();
        s.info.clear();
        s.has_info = info.is_some();
        if let Some(text) = info {
            s.info.push_str(&String::from_utf8_lossy(text));
        }
    }

    /// The command ended; the session's schema is now `db`.
    pub fn end(&self, db: Option<&str>) {
        let mut s = self.lock();
        s.command = 0;
        s.since = Instant::now();
        s.has_info = false;
        if s.info.capacity() > KEPT_INFO_BYTES {
            s.info = String::new();
        }
        if s.db.as_deref() != db {
            s.db = db.map(str::to_string);
        }
    }

    fn row(&self, id: u32, user: String, now: Instant) -> Proc {
        let s = self.lock();
        let sleeping = s.command == 0;
        Proc {
            id,
            user,
            host: s.host.clone(),
            db: s.db.clone(),
            command: COMMANDS
                .get(usize::from(s.command))
                .copied()
                .unwrap_or("Error"),
            time: now.saturating_duration_since(s.since).as_secs(),
            state: if sleeping { "" } else { "executing" },
            info: s.has_info.then(|| s.info.clone()),
        }
    }
}

/// One column definition of a process-list form, as MySQL 9 sends it.
struct Col {
    name: &'static str,
    ty: u8,
    flags: u16,
    /// Characters for text columns, bytes for binary ones.
    len: u32,
    decimals: u8,
    text: bool,
}

const fn col(name: &'static str, ty: u8, flags: u16, len: u32, decimals: u8, text: bool) -> Col {
    Col {
        name,
        ty,
        flags,
        len,
        decimals,
        text,
    }
}

const LONGLONG: u8 = 0x08;
const LONG: u8 = 0x03;
const VARCHAR: u8 = 0xFD;
const STRING: u8 = 0xFE;
const BLOB: u8 = 0xFC;
const LONG_BLOB: u8 = 0xFB;

/// `SHOW [FULL] PROCESSLIST` (the last is `Info` of the non-FULL form).
const SHOW_COLS: [Col; 8] = [
    col("Id", LONGLONG, 129, 22, 0, false),
    col("User", VARCHAR, 1, 32, 31, true),
    col("Host", VARCHAR, 1, 255, 31, true),
    col("db", VARCHAR, 0, 64, 31, true),
    col("Command", VARCHAR, 1, 16, 31, true),
    col("Time", LONG, 129, 8, 0, false),
    col("State", VARCHAR, 0, 30, 31, true),
    col("Info", VARCHAR, 0, 100, 31, true),
];
const SHOW_FULL_INFO: Col = col("Info", LONG_BLOB, 0, u32::MAX, 31, true);

const INFORMATION_SCHEMA_COLS: [Col; 8] = [
    col("ID", LONGLONG, 33, 22, 0, false),
    col("USER", VARCHAR, 1, 32, 0, true),
    col("HOST", VARCHAR, 1, 261, 0, true),
    col("DB", VARCHAR, 0, 64, 0, true),
    col("COMMAND", VARCHAR, 1, 16, 0, true),
    col("TIME", LONG, 1, 8, 0, false),
    col("STATE", VARCHAR, 0, 64, 0, true),
    col("INFO", BLOB, 16, 196_605, 0, true),
];

const PERFORMANCE_SCHEMA_COLS: [Col; 9] = [
    col("ID", LONGLONG, 20515, 20, 0, false),
    col("USER", VARCHAR, 0, 32, 0, true),
    col("HOST", VARCHAR, 0, 261, 0, true),
    col("DB", VARCHAR, 0, 64, 0, true),
    col("COMMAND", VARCHAR, 0, 16, 0, true),
    col("TIME", LONGLONG, 0, 20, 0, false),
    col("STATE", VARCHAR, 0, 64, 0, true),
    col("INFO", BLOB, 16, u32::MAX, 0, true),
    col("EXECUTION_ENGINE", STRING, 256, 9, 0, true),
];

/// Bytes per character of the client's character set (by collation id),
/// which scales text column lengths as the server scales them.
fn mbmaxlen(collation: u8) -> u32 {
    match collation {
        63 => 1,
        // latin1, ascii and the other single-byte sets MySQL ships
        1..=32 | 34..=44 | 47..=61 | 64..=75 | 77..=82 | 84..=94 => 1,
        33 | 76 | 83 | 192..=223 => 3,
        _ => 4,
    }
}

/// Encodes one column definition: `names` = (schema, table, org_table,
/// name, org_name).
fn column_def(c: &Col, names: [&str; 5], collation: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    put_lenenc_str(&mut p, b"def");
    for n in names {
        put_lenenc_str(&mut p, n.as_bytes());
    }
    p.push(0x0C);
    let (charset, len) = if c.text {
        let len = u64::from(c.len) * u64::from(mbmaxlen(collation));
        (u16::from(collation), u32::try_from(len).unwrap_or(u32::MAX))
    } else {
        (63, c.len)
    };
    p.extend_from_slice(&charset.to_le_bytes());
    p.extend_from_slice(&len.to_le_bytes());
    p.push(c.ty);
    p.extend_from_slice(&c.flags.to_le_bytes());
    p.push(c.decimals);
    p.extend_from_slice(&[0, 0]);
    p
}

impl Proc {
    /// Cell `i` in the information_schema column order (EXECUTION_ENGINE 8).
    fn cell(&self, i: usize) -> Option<String> {
        match i {
            0 => Some(self.id.to_string()),
            1 => Some(self.user.clone()),
            2 => Some(self.host.clone()),
            3 => self.db.clone(),
            4 => Some(self.command.to_string()),
            5 => Some(self.time.to_string()),
            6 => Some(self.state.to_string()),
            7 => self.info.clone(),
            _ => Some("PRIMARY".to_string()),
        }
    }

    fn number(&self, i: usize) -> u64 {
        if i == 0 {
            u64::from(self.id)
        } else {
            self.time
        }
    }

    /// Whether the row passes every condition (SQL semantics: a NULL
    /// compared with anything is not true, negated or not).
    fn passes(&self, q: &ProcesslistQuery, me: u32) -> bool {
        q.filters.iter().all(|f| {
            let cell = self.cell(f.column);
            let hit = match (&f.test, cell) {
                (PlTest::IsNull, c) => Some(c.is_none()),
                (_, None) => None,
                (PlTest::Like(p), Some(v)) => Some(like(&v, p)),
                (PlTest::Eq(PlValue::Str(s)), Some(v)) => Some(ci_eq(&v, s)),
                (PlTest::Eq(PlValue::Int(n)), Some(_)) => Some(self.number(f.column) == *n),
                (PlTest::Eq(PlValue::ConnectionId), Some(_)) => {
                    Some(self.number(f.column) == u64::from(me))
                }
            };
            hit.is_some_and(|h| h != f.negated)
        })
    }

    fn compare(&self, other: &Proc, i: usize) -> Ordering {
        if numeric_column(i) {
            return self.number(i).cmp(&other.number(i));
        }
        // NULL first, then case-insensitively, as the server's collation
        match (self.cell(i), other.cell(i)) {
            (Some(a), Some(b)) => a.to_lowercase().cmp(&b.to_lowercase()),
            (a, b) => a.is_some().cmp(&b.is_some()),
        }
    }
}

/// `utf8mb3_general_ci` equality, near enough: case-insensitive, trailing
/// spaces ignored.
fn ci_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches(' '), b.trim_end_matches(' '));
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

impl Session {
    /// Records the command starting now for the process list.
    pub(super) fn note_command(&self, payload: &[u8]) {
        let Some(&cmd) = payload.first() else {
            return;
        };
        let qa = self.caps.contains(CapabilityFlags::CLIENT_QUERY_ATTRIBUTES);
        let info = match cmd {
            0x03 => query_attrs::query_sql(payload, qa).ok().map(|s| s.sql),
            0x16 => payload.get(1..),
            0x17 => self
                .stmts
                .get(stmt_id_of(payload))
                .and_then(|s| s.prepare.get(1..)),
            _ => None,
        };
        self.shared.activity.begin(cmd, info);
    }

    /// Records that the session is idle again (before the reply's last
    /// bytes are flushed, so whoever sees the reply sees it idle).
    pub(super) fn note_idle(&self) {
        self.shared.activity.end(self.db.as_deref());
    }

    /// Answers a process-list statement from causeway's own sessions.
    pub(super) async fn processlist(&mut self, q: &ProcesslistQuery) -> Flow {
        let now = Instant::now();
        let mut rows = Vec::new();
        let (me, admin, name) = (self.id, self.user.admin, self.user.name.as_str());
        self.ctx.sessions.for_each(|id, s| {
            let user = s.user();
            if admin || user == name {
                rows.push(s.activity.row(id, user, now));
            }
        });
        rows.retain(|r| r.passes(q, me));
        match q.order {
            Some((i, desc)) => rows.sort_by(|a, b| {
                let o = a.compare(b, i).then(a.id.cmp(&b.id));
                if desc {
                    o.reverse()
                } else {
                    o
                }
            }),
            None => rows.sort_by_key(|r| r.id),
        }
        if let Some(n) = q.limit {
            rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        }
        let (defs, picks) = self.processlist_columns(q);
        let cut = matches!(q.source, ProcesslistSource::Show { full: false });
        let rows: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| {
                let mut p = Vec::new();
                for &i in &picks {
                    let mut cell = r.cell(i);
                    if cut && i == 7 {
                        cell = cell.map(|s| s.chars().take(SHOW_INFO_CHARS).collect());
                    }
                    match cell {
                        Some(v) => put_lenenc_str(&mut p, v.as_bytes()),
                        None => p.push(0xFB),
                    }
                }
                p
            })
            .collect();
        let payloads = local::framed_result_set(self.caps, self.status & 0x0003, defs, rows);
        let mut seq = 1;
        for p in &payloads {
            self.client.queue(&mut seq, p);
        }
        Flow::Continue
    }

    /// Column definitions of the answer, and which cell each column shows.
    fn processlist_columns(&self, q: &ProcesslistQuery) -> (Vec<Vec<u8>>, Vec<usize>) {
        let collation = self.collation;
        let (cols, schema, org_table): (&[Col], &str, &str) = match q.source {
            ProcesslistSource::Show { full } => {
                let defs = SHOW_COLS
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let c = if full && i == 7 { &SHOW_FULL_INFO } else { c };
                        column_def(c, ["", "", "", c.name, ""], collation)
                    })
                    .collect();
                return (defs, (0..8).collect());
            }
            ProcesslistSource::InformationSchema => (
                &INFORMATION_SCHEMA_COLS,
                "information_schema",
                "PROCESSLIST",
            ),
            ProcesslistSource::PerformanceSchema => (
                &PERFORMANCE_SCHEMA_COLS,
                "performance_schema",
                "processlist",
            ),
        };
        let picks: Vec<(usize, &str)> = match &q.columns {
            None => cols.iter().enumerate().map(|(i, c)| (i, c.name)).collect(),
            Some(list) => list.iter().map(|c| (c.column, c.name.as_str())).collect(),
        };
        let mut defs = Vec::with_capacity(picks.len());
        for &(i, name) in &picks {
            if let Some(c) = cols.get(i) {
                let names = [schema, q.table.as_str(), org_table, name, c.name];
                defs.push(column_def(c, names, collation));
            }
        }
        (defs, picks.into_iter().map(|(i, _)| i).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_classify::processlist_query;

    fn proc(id: u32, user: &str, info: Option<&str>) -> Proc {
        Proc {
            id,
            user: user.into(),
            host: "127.0.0.1:5000".into(),
            db: None,
            command: if info.is_some() { "Query" } else { "Sleep" },
            time: 3,
            state: "",
            info: info.map(str::to_string),
        }
    }

    fn passes(p: &Proc, sql: &str) -> bool {
        p.passes(&processlist_query(sql).unwrap(), 7)
    }

    #[test]
    fn filters_follow_sql_semantics() {
        let idle = proc(7, "app", None);
        let busy = proc(8, "App", Some("SELECT SLEEP(2)"));
        let from = "SELECT * FROM information_schema.PROCESSLIST WHERE ";
        assert!(passes(&idle, &format!("{from}ID = CONNECTION_ID()")));
        assert!(!passes(&busy, &format!("{from}ID = CONNECTION_ID()")));
        assert!(passes(&busy, &format!("{from}ID <> 7 AND user = 'APP '")));
        assert!(passes(&idle, &format!("{from}INFO IS NULL")));
        assert!(!passes(&idle, &format!("{from}INFO LIKE '%'")));
        assert!(!passes(&idle, &format!("{from}INFO NOT LIKE '%'")));
        assert!(passes(
            &busy,
            &format!("{from}INFO LIKE '%sleep(%' AND COMMAND != 'Sleep'")
        ));
        assert!(!passes(&idle, &format!("{from}DB = 'x'")));
        assert!(!passes(&idle, &format!("{from}DB <> 'x'")));
    }

    #[test]
    fn activity_tracks_commands() {
        let a = Activity::default();
        a.start("127.0.0.1:1".into(), Some("d"));
        a.begin(3, Some(b"SELECT 1"));
        let r = a.row(1, "app".into(), Instant::now());
        assert_eq!(
            (r.command, r.state, r.info.as_deref()),
            ("Query", "executing", Some("SELECT 1"))
        );
        a.end(Some("e"));
        let r = a.row(1, "app".into(), Instant::now());
        assert_eq!(
            (r.command, r.state, r.info, r.db.as_deref()),
            ("Sleep", "", None, Some("e"))
        );
    }

    #[test]
    fn lengths_follow_the_client_character_set() {
        let d = column_def(&SHOW_COLS[1], ["", "", "", "User", ""], 45);
        // ... 0x0C, charset 45, length 128, type, flags, decimals, filler
        let at = d.len() - 13;
        assert_eq!(&d[at..at + 7], &[0x0C, 45, 0, 128, 0, 0, 0]);
        let d = column_def(&SHOW_FULL_INFO, ["", "", "", "Info", ""], 255);
        assert_eq!(&d[d.len() - 10..d.len() - 6], &u32::MAX.to_le_bytes());
    }
}
