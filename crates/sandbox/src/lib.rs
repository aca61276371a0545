//! causeway-sandbox: throwaway MySQL topologies (one GTID primary and N GTID
//! replicas on free 127.0.0.1 ports) for tests and `causeway sandbox`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), causeway_sandbox::TopologyError> {
//! let topo = causeway_sandbox::Topology::start(causeway_sandbox::Options::default()).await?;
//! println!("primary at {}", topo.primary().addr());
//! println!("r1 on port {}", topo.replicas()[0].port());
//! # Ok(()) }
//! ```
//!
//! MySQL is found by [`MysqlDist::locate`] (`$CAUSEWAY_MYSQLD`, `mysqld` on
//! PATH, or a Debian sid chroot built by `integration/provide-mysql.sh`).
//! Datadirs are copied from a template initialized once per machine. Every
//! mysqld dies with the process that started it (`PR_SET_PDEATHSIG`) and is
//! killed, with its directory removed, when the [`Topology`] is dropped.
//! Throwaway TLS certificates for the proxy come from [`certs`].

pub mod certs;
pub mod dist;
pub mod flavor;
pub mod mariadb;
pub mod process;
pub mod replication;
pub mod server;
pub mod template;
pub mod topology;
pub mod users;

pub use certs::{Ca, CertError, CertFiles};
pub use dist::{DistError, MysqlDist};
pub use flavor::{Flavor, FlavorError};
pub use replication::{ReplicaStatus, ReplicationError};
pub use server::{Server, ServerError};
pub use topology::{Options, Topology, TopologyError};
pub use users::{
    APP_PASSWORD, APP_USER, MONITOR_PASSWORD, MONITOR_USER, NOPW_PASSWORD, NOPW_USER,
    REPL_PASSWORD, REPL_USER, ROOT_PASSWORD, ROOT_USER,
};
