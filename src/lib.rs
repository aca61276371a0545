//! causeway: a MySQL-protocol proxy that splits reads to GTID replicas and
//! writes to a primary, with portable consistency tokens.

pub mod admin;
pub mod backend;
pub mod balance;
pub mod binlog;
pub(crate) mod cache;
pub(crate) mod consistency;
pub mod digest;
pub mod failover;
pub mod frontend;
pub(crate) mod metrics;
pub mod monitor;
pub(crate) mod monotonic;
pub mod protocol;
pub mod proxy;
pub(crate) mod relay;
pub mod reload;
pub(crate) mod router;
pub mod rules;
pub mod sandbox_cmd;
pub(crate) mod shared;
pub mod tls;
pub mod topology;
pub(crate) mod workers;
pub(crate) mod zone;
