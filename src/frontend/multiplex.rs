//! `transaction` pool mode: when a session gives its backend connections
//! back, what pins it to one, and the answers that must not depend on
//! which connection serves a statement (`CONNECTION_ID()`).
//!
//! After every client command the session gives back each held connection
//! it does not need: it keeps the one holding an open transaction (the
//! backend's `SERVER_STATUS_IN_TRANS`, and with autocommit off everything
//! from the first statement to the end of the transaction, tracked by
//! `crate::router`), the
//! primary's while the session is pinned (state causeway cannot replay:
//! user variables, temporary tables, locks, SQL `PREPARE`, XA, HANDLER, an
//! unexplained session-state change), and one a prepared statement needs
//! (long data before its execution, an open cursor). A connection goes
//! back as is, its schema and replayed `SET`s recorded on it
//! (`Pool::release_kept`); one that carried a pinned session's state is
//! reset first. A connection a KILL may still be on its way to is closed
//! instead, so the KILL can never reach another client's statement.

use causeway_classify::Classification;
use causeway_config::PoolMode;
use mysql_common::constants::CapabilityFlags;
use std::sync::Arc;

use super::session::{Flow, Session};
use crate::metrics as m;
use crate::protocol::messages::{eof, put_lenenc, put_lenenc_str};
use crate::protocol::OkPacket;

impl Session {
    /// Gives back, in `transaction` pool mode, every held connection the
    /// session does not need for its next statement (see the module doc).
    pub(super) fn end_of_command(&mut self) {
        self.state_changed = false;
        self.warned = false;
        if self.mode != PoolMode::Transaction || self.held.is_empty() {
            return;
        }
        let epoch = self.shared.kill_epoch();
        let killed = epoch != self.kill_seen;
        self.kill_seen = epoch;
        let primary = Arc::clone(&self.topo.primary);
        let mut i = 0;
        while let Some(h) = self.held.get(i) {
            let name = h.conn.server.as_str();
            let keep = self.route.trx.as_deref() == Some(name)
                || (self.route.pinned.is_some() && name == primary.name())
                || self.stmt_holds.iter().any(|(_, b)| b == name)
                || self.diag_hold.as_deref() == Some(name);
            if keep {
                i += 1;
                continue;
            }
            let h = self.held.swap_remove(i);
            if killed {
                // a KILL QUERY may still arrive for its thread: closed
                drop(h);
            } else {
                h.pool.release_kept(h.conn);
            }
        }
    }

    /// After COM_SET_OPTION changed multi-statements on the primary's
    /// connection: in `transaction` pool mode that connection no longer
    /// matches the link key it is pooled under, so it is closed, or, inside
    /// a transaction, re-keyed to what it now is.
    pub(super) fn option_changed(&mut self, multi_statements: bool) {
        if self.mode != PoolMode::Transaction {
            return;
        }
        let primary = self.topo.primary.name();
        let Some(i) = self.held.iter().position(|h| h.conn.server == primary) else {
            return;
        };
        if self.route.trx.as_deref() == Some(primary) {
            if let Some(h) = self.held.get_mut(i) {
                let mut caps = CapabilityFlags::from_bits_truncate(h.conn.key.caps);
                caps.set(CapabilityFlags::CLIENT_MULTI_STATEMENTS, multi_statements);
                h.conn.key.caps = caps.bits();
            }
        } else {
            self.drop_conn(i);
        }
    }

    /// Keeps, in `transaction` pool mode, the connection of a statement
    /// that left warnings or failed for the next command, so `SHOW
    /// WARNINGS` / `GET DIAGNOSTICS` read them there. (Warnings counted
    /// only in EOF packets, without CLIENT_DEPRECATE_EOF, are not seen.)
    pub(super) fn keep_diagnostics(&mut self, failed: bool, backend: &str) {
        if self.mode == PoolMode::Transaction && (failed || self.warned) {
            self.diag_hold = Some(backend.to_string());
        }
    }

    /// Pins the session when a reply reported a session-state change the
    /// statement does not explain, counts a new pin in
    /// `causeway_session_pins_total{reason}`, and marks the connection that
    /// ran it (its state must be reset before another client uses it).
    pub(super) fn note_pin(&mut self, c: &Classification, was_pinned: bool, backend: &str) {
        // session mode keeps its connection anyway: routing stays as it was
        let multiplexed = self.mode == PoolMode::Transaction;
        if multiplexed && self.state_changed && !explains_state_change(c) {
            self.route.pin("untracked session state");
        }
        let Some(reason) = self.route.pinned else {
            return;
        };
        if let Some(h) = self.held.iter_mut().find(|h| h.conn.server == backend) {
            if !was_pinned || self.state_changed {
                h.conn.tainted = true;
            }
        }
        if !was_pinned {
            metrics::counter!(m::SESSION_PINS, "reason" => reason).increment(1);
        }
    }

    /// Answers `SELECT CONNECTION_ID()` with causeway's connection id.
    pub(super) async fn reply_connection_id(&mut self, column: &str) -> Flow {
        let status = self.status & 0x0003;
        let payloads = bigint_result(self.caps, status, column, u64::from(self.id));
        let mut seq = 1;
        for p in &payloads {
            self.client.queue(&mut seq, p);
        }
        match self.client.flush().await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }
}

/// Whether statement `c` accounts for a session-state change the server
/// reported (a replayed SET, a schema change, a transaction statement, or
/// state that pins anyway).
fn explains_state_change(c: &Classification) -> bool {
    let e = &c.effects;
    e.set_session
        || e.set_autocommit.is_some()
        || e.use_db.is_some()
        || e.begin.is_some()
        || e.commit
        || e.rollback
        || e.savepoint
        || e.unlock_tables
        || crate::router::pin_reason(c).is_some()
}

/// The column name of `SELECT CONNECTION_ID()` (with an optional alias,
/// `AS` optional, and a trailing `;`), or None for any other statement.
/// Only this exact form is answered locally; `CONNECTION_ID()` inside a
/// larger statement runs on the backend and returns its thread id.
pub fn connection_id_query(sql: &str) -> Option<String> {
    let t = sql.trim().trim_end_matches(';').trim_end();
    let rest = strip_word(t, "select")?;
    let rest = rest.trim_start();
    let name = "connection_id";
    let head = rest.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name) {
        return None;
    }
    let after = rest.get(name.len()..)?.trim_start();
    let after = after.strip_prefix('(')?.trim_start();
    let after = after.strip_prefix(')')?;
    let column = rest.get(..rest.len() - after.len())?.to_string();
    let after = after.trim();
    if after.is_empty() {
        return Some(column);
    }
    let alias = strip_word(after, "as").map_or(after, str::trim_start);
    parse_alias(alias)
}

/// `s` without the leading keyword `kw` (case-insensitive), which must be
/// followed by whitespace.
fn strip_word<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    let rest = s.get(kw.len()..)?;
    (head.eq_ignore_ascii_case(kw) && rest.starts_with(|c: char| c.is_ascii_whitespace()))
        .then_some(rest)
}

/// A whole alias: a plain identifier, or one quoted with backticks,
/// single or double quotes (no escapes).
fn parse_alias(s: &str) -> Option<String> {
    let mut chars = s.chars();
    match chars.next()? {
        q @ ('`' | '\'' | '"') => {
            let inner = s.get(1..)?.strip_suffix(q)?;
            (!inner.contains(q)).then(|| inner.to_string())
        }
        _ => s
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
            .then(|| s.to_string()),
    }
}

/// A one-row, one-column result set with a BIGINT UNSIGNED value, as
/// MySQL answers `SELECT CONNECTION_ID()`.
pub fn bigint_result(caps: CapabilityFlags, status: u16, column: &str, v: u64) -> Vec<Vec<u8>> {
    let deprecate_eof = caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
    let mut out = Vec::with_capacity(5);
    out.push(vec![1]);
    let mut def = Vec::with_capacity(32 + column.len());
    put_lenenc_str(&mut def, b"def");
    for _ in 0..3 {
        put_lenenc_str(&mut def, b"");
    }
    put_lenenc_str(&mut def, column.as_bytes());
    put_lenenc_str(&mut def, b"");
    def.push(0x0C);
    def.extend_from_slice(&63u16.to_le_bytes()); // binary
    def.extend_from_slice(&21u32.to_le_bytes());
    def.push(0x08); // LONGLONG
                    // NOT NULL | UNSIGNED | BINARY
    def.extend_from_slice(&(0x0001u16 | 0x0020 | 0x0080).to_le_bytes());
    def.push(0);
    def.extend_from_slice(&[0, 0]);
    out.push(def);
    if !deprecate_eof {
        out.push(eof(0, status));
    }
    let mut row = Vec::new();
    let text = v.to_string();
    put_lenenc(&mut row, text.len() as u64);
    row.extend_from_slice(text.as_bytes());
    out.push(row);
    if deprecate_eof {
        let ok = OkPacket {
            status,
            ..OkPacket::default()
        };
        out.push(ok.encode(0xFE, caps));
    } else {
        out.push(eof(0, status));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_id_forms() {
        let col = |s: &str| connection_id_query(s);
        assert_eq!(
            col("SELECT CONNECTION_ID()").as_deref(),
            Some("CONNECTION_ID()")
        );
        assert_eq!(
            col(" select connection_id( ) ;").as_deref(),
            Some("connection_id( )")
        );
        assert_eq!(col("SELECT CONNECTION_ID() AS id").as_deref(), Some("id"));
        assert_eq!(col("SELECT CONNECTION_ID() cid").as_deref(), Some("cid"));
        assert_eq!(
            col("SELECT CONNECTION_ID() AS `my id`").as_deref(),
            Some("my id")
        );
        for other in [
            "SELECT CONNECTION_ID(), 1",
            "SELECT CONNECTION_ID() + 1",
            "SELECT CONNECTION_IDX()",
            "SELECT CONNECTION_ID() FROM t",
            "SELECT 1",
            "SELECTCONNECTION_ID()",
            "SELECT CONNECTION_ID() AS `x",
            "",
            "SELECT \u{e9}",
        ] {
            assert_eq!(col(other), None, "{other}");
        }
    }

    #[test]
    fn bigint_result_shapes() {
        let r = bigint_result(CapabilityFlags::empty(), 2, "id", 42);
        assert_eq!(r.len(), 5);
        assert_eq!(r[3], b"\x0242".to_vec());
        let r = bigint_result(CapabilityFlags::CLIENT_DEPRECATE_EOF, 2, "id", 42);
        assert_eq!(r.len(), 4);
    }
}
