//! The floor of monotonic reads, fetched from the primary when the monitor
//! has not yet probed since the session's last read and that read's server
//! cannot be read again (see `crate::monotonic`). When the primary does not
//! answer, its last set the monitor read is the floor: a dead primary never
//! blocks a read.

use causeway_gtid::GtidSet;
use std::sync::Arc;

use super::session::Session;
use crate::consistency;

impl Session {
    /// When the session's last read ran where it cannot read again (the
    /// primary, or a replica that left) and no bound of what it read is
    /// known yet, asks the primary for its executed GTID set (one round
    /// trip): that contains everything the last read could see.
    pub(super) async fn fetch_floor(&mut self, exclude: &[&str]) {
        if !consistency::stranded(&self.topo, &self.cursor, self.settings.max_lag_ms, exclude) {
            return;
        }
        let primary = Arc::clone(&self.topo.primary);
        if let Some(set) = self.ask_primary(&primary).await {
            self.cursor.set_bound(Arc::new(set));
            return;
        }
        // The primary does not answer (it died, or is dying): reads must
        // not wait for it. The last set the monitor read there is the
        // bound (older than the read by at most one GTID interval).
        let last = Arc::clone(&primary.state.view.load().gtid_executed);
        self.cursor.set_bound(last);
    }

    /// The primary's executed GTID set, asked over a session connection
    /// (None when it cannot be asked).
    pub(super) async fn ask_primary(
        &mut self,
        primary: &Arc<crate::topology::Backend>,
    ) -> Option<GtidSet> {
        let idx = self.conn_for(primary).await.ok()?;
        let h = self.held.get_mut(idx)?;
        let mariadb = h.conn.flavor == causeway_gtid::Flavor::Mariadb;
        let sql = if mariadb {
            // its own writes: the primary's binlog position
            "SELECT @@GLOBAL.gtid_binlog_pos"
        } else {
            "SELECT @@GLOBAL.gtid_executed"
        };
        match h.conn.query_value(sql).await {
            Ok(Ok(Some(v))) => std::str::from_utf8(&v).ok().and_then(|t| {
                if mariadb {
                    causeway_gtid::MariadbPos::parse(t)
                        .ok()
                        .map(|p| p.to_gtid_set())
                } else {
                    GtidSet::parse(t).ok()
                }
            }),
            Ok(_) => None,
            Err(_) => {
                self.drop_conn(idx);
                None
            }
        }
    }
}
