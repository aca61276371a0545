//! What a failed backend command tells the session to do next.
//!
//! The send and prepare paths return a [`Failure`] instead of parking an
//! error on the session: the client-facing error, and why it happened,
//! classified where it happened (as pingora's errors carry their retry
//! flag). Whether a statement may then run on another backend is
//! [`Failure::may_retry`] *and* the caller's rule: only a read whose first
//! attempt was on a replica (outside a transaction, or a read-only
//! transaction's first statement) goes elsewhere; a command that reached a
//! backend where it may have committed is never sent again.

use crate::backend::BackendError;
use crate::protocol::ErrPacket;
use crate::topology::Backend;

/// Why a command got no reply from its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// No free connection slot (causeway's pool, or the server's own "too
    /// many connections" at login): nothing was sent. Not a backend error.
    Full,
    /// No usable connection could be made or readied (connect, TLS, login
    /// timeout, reset, schema or SET replay i/o): nothing of the command was
    /// sent.
    Unreachable,
    /// The connection broke after the command was written, before any byte
    /// of its reply reached the client.
    Lost,
    /// The backend answered with its own error, or the command cannot go
    /// there as it is: final wherever it would run.
    Refused,
}

/// A command that did not run to a reply: the error for the client and
/// its [`Cause`].
#[derive(Debug, Clone)]
pub(super) struct Failure {
    /// What the client is told if the statement goes nowhere else.
    pub err: ErrPacket,
    /// Why.
    pub cause: Cause,
}

impl Failure {
    /// A failure of `cause` told to the client as `err`.
    pub fn new(cause: Cause, err: ErrPacket) -> Failure {
        Failure { err, cause }
    }

    /// The backend's (or causeway's) final answer.
    pub fn refused(err: ErrPacket) -> Failure {
        Failure::new(Cause::Refused, err)
    }

    /// The connection to backend `name` broke before any reply.
    pub fn lost(name: &str) -> Failure {
        Failure::new(Cause::Lost, lost_backend(name))
    }

    /// The held connection of a command vanished (cannot happen: callers
    /// pass the index they were just given).
    pub fn vanished() -> Failure {
        Failure::new(
            Cause::Lost,
            ErrPacket::new(
                2013,
                "HY000",
                "causeway: lost the backend connection of the command",
            ),
        )
    }

    /// A failure to get a connection to `backend` ready.
    pub fn from_backend(e: &BackendError, backend: &Backend) -> Failure {
        let err = backend_error(e, backend);
        let cause = match e {
            BackendError::PoolExhausted { .. } => Cause::Full,
            // MySQL's own ER_CON_COUNT_ERROR at login: full as well
            BackendError::Server { err, .. } if err.code == ER_CON_COUNT => Cause::Full,
            BackendError::Server { .. } => Cause::Refused,
            _ => Cause::Unreachable,
        };
        Failure::new(cause, err)
    }

    /// Whether nothing reached the client, so a read may run on another
    /// backend instead (the caller decides whether the statement is one).
    pub fn may_retry(&self) -> bool {
        self.cause != Cause::Refused
    }

    /// Whether it counts in `causeway_backend_errors_total` (a full pool
    /// is not a backend failure).
    pub fn is_backend_error(&self) -> bool {
        matches!(self.cause, Cause::Unreachable | Cause::Lost)
    }
}

/// MySQL's ER_CON_COUNT_ERROR (too many connections).
const ER_CON_COUNT: u16 = 1040;

/// 2013 / HY000: the connection to backend `name` broke during a command.
pub(super) fn lost_backend(name: &str) -> ErrPacket {
    ErrPacket::new(
        2013,
        "HY000",
        format!("Lost connection to backend '{name}' during query (causeway)"),
    )
}

/// The client-facing error for a failure to get a backend connection.
pub(super) fn backend_error(e: &BackendError, backend: &Backend) -> ErrPacket {
    match e {
        BackendError::Server { err, .. } => err.clone(),
        BackendError::PoolExhausted { .. } => ErrPacket::new(
            ER_CON_COUNT,
            "08004",
            format!(
                "Too many connections (causeway pool for backend '{}' is full)",
                backend.name()
            ),
        ),
        other => ErrPacket::new(
            2003,
            "HY000",
            format!(
                "Can't connect to backend '{}' ({}) (causeway: {other})",
                backend.name(),
                backend.config.address
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PacketError;
    use crate::topology::Topology;
    use std::sync::Arc;

    fn backend() -> Arc<Backend> {
        let cfg = causeway_config::Config::from_str_named(
            "[[users]]\nname='a'\npassword=''\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n",
            "t",
        )
        .unwrap();
        Arc::clone(&Topology::build(Arc::new(cfg), None).unwrap().primary)
    }

    #[test]
    fn causes_are_classified_where_they_happen() {
        let b = backend();
        let server = |code| BackendError::Server {
            server: "p".into(),
            err: ErrPacket::new(code, "HY000", "x"),
        };
        let full = Failure::from_backend(
            &BackendError::PoolExhausted {
                server: "p".into(),
                max: 1,
            },
            &b,
        );
        assert_eq!((full.cause, full.err.code), (Cause::Full, 1040));
        assert!(full.may_retry() && !full.is_backend_error());
        let mysql_full = Failure::from_backend(&server(1040), &b);
        assert_eq!(mysql_full.cause, Cause::Full);
        // the server's own answer is final and passed on as is
        let denied = Failure::from_backend(&server(1045), &b);
        assert_eq!((denied.cause, denied.err.code), (Cause::Refused, 1045));
        assert!(!denied.may_retry() && !denied.is_backend_error());
        let down = Failure::from_backend(
            &BackendError::Io {
                server: "p".into(),
                source: PacketError::Closed,
            },
            &b,
        );
        assert_eq!((down.cause, down.err.code), (Cause::Unreachable, 2003));
        assert!(down.may_retry() && down.is_backend_error());
        assert!(
            down.err.message.contains("'p' (127.0.0.1:1)"),
            "{}",
            down.err
        );
        let lost = Failure::lost("r1");
        assert_eq!((lost.cause, lost.err.code), (Cause::Lost, 2013));
        assert!(lost.may_retry() && lost.is_backend_error());
    }
}
