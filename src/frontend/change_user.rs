//! COM_CHANGE_USER and COM_RESET_CONNECTION: the session forgets its state
//! (backend connections, prepared statements, replayed SETs, routing state,
//! causeway settings, `LAST_INSERT_ID()`), as the server would.

use mysql_common::constants::StatusFlags;
use std::sync::Arc;

use super::login::{self, ChangeUser};
use super::session::{Flow, Session};
use crate::consistency::Settings;
use crate::protocol::ErrPacket;
use crate::router::RouteState;
use causeway_config::User;

impl Session {
    /// COM_CHANGE_USER: authenticates the new user, then forgets the
    /// session state.
    pub(super) async fn change_user(&mut self, payload: &[u8]) -> Flow {
        let Some(req) = login::parse_change_user(payload, self.caps) else {
            let err = ErrPacket::new(1043, "08S01", "Bad handshake");
            self.reply_err(&err).await;
            return Flow::Quit;
        };
        let mut seq = 1;
        let cfg = Arc::clone(&self.topo.config);
        let user = match login::change_user(
            &mut self.client,
            &mut seq,
            &cfg,
            &req,
            &mut self.nonce,
            &self.peer_host,
        )
        .await
        {
            Ok(u) => u,
            Err(_) => return Flow::Quit,
        };
        self.apply_change_user(user, &req);
        if let Err(err) = self.check_initial_db().await {
            let _ = self.client.send(&mut seq, &err.encode()).await;
            return Flow::Quit;
        }
        match self
            .client
            .send(&mut seq, &login::login_ok(self.caps))
            .await
        {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }

    fn apply_change_user(&mut self, user: User, req: &ChangeUser) {
        self.reset_state();
        self.shared
            .set_user(&user.name, login::backend_login(&user));
        self.user = user;
        self.link_identity = None;
        self.db = req.db.clone();
        if let Some(c) = req.collation {
            self.collation = c;
        }
    }

    /// Forgets all session state (COM_RESET_CONNECTION, COM_CHANGE_USER):
    /// backend connections go back to their pools (reset there).
    pub(super) fn reset_state(&mut self) {
        self.release_all();
        self.stmts.clear();
        self.stmt_holds.clear();
        self.sets.clear();
        self.route = RouteState::default();
        self.settings = Settings::from_config(&self.topo.config);
        self.cursor.set_sticky(None);
        self.status = StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits();
        self.insert_id = 0;
    }
}
