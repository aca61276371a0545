//! The proxy's side towards clients: login and the per-connection session.

mod admin_rows;
mod cached;
mod causal;
mod causal_sql;
mod change_user;
mod connection;
mod failure;
mod floor;
mod fresh;
pub(crate) mod local;
pub mod login;
mod multiplex;
mod observe;
mod pipelined;
mod prepared;
mod processlist;
mod query;
pub(crate) mod registry;
mod route;
pub(crate) mod rules;
pub(crate) mod session;
mod sets;
pub mod stmt;
mod writer;
