//! causeway: a MySQL-protocol proxy that splits reads to GTID replicas and
//! writes to a primary, with portable consistency tokens.

pub mod admin;
pub mod backend;
pub mod balance;
pub mod cache;
pub mod consistency;
pub mod frontend;
pub mod metrics;
pub mod monitor;
pub mod monotonic;
pub mod protocol;
pub mod proxy;
pub mod relay;
pub mod reload;
pub mod router;
pub mod rules;
pub mod sandbox_cmd;
pub mod shared;
pub mod tls;
pub mod topology;
pub mod workers;
