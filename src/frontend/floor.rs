//! The floor of monotonic reads, fetched from the primary when the monitor
//! has not yet probed since the session's last read and that read's server
//! cannot be read again (see `crate::monotonic`).

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
        let Ok(idx) = self.conn_for(&primary).await else {
            return;
        };
        let Some(h) = self.held.get_mut(idx) else {
            return;
        };
        match h.conn.query_value("SELECT @@GLOBAL.gtid_executed").await {
            Ok(Ok(Some(v))) => {
                if let Some(set) = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|t| GtidSet::parse(t).ok())
                {
                    self.cursor.set_bound(Arc::new(set));
                }
            }
            Ok(_) => {}
            Err(_) => self.drop_conn(idx),
        }
    }
}
