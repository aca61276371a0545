//! The proxy's side towards clients: login and the per-connection session.

pub mod login;
pub mod session;
pub mod stmt;
