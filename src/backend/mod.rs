//! The proxy's side towards MySQL servers: authenticated connections and
//! their pools.

pub mod conn;
pub mod flavor;
pub mod pipeline;
pub mod pool;
pub mod reply;
pub mod stmt_cache;

pub use conn::{BackendConn, BackendError, LinkKey, Login};
pub use pool::{Pool, PoolConfig};
