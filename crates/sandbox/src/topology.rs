//! A GTID primary with N replicas, started together and torn down on drop.
//!
//! Each topology lives in `<work_dir>/sb-<pid>-<seq>/`; dropping the
//! [`Topology`] kills every mysqld and removes that directory. Directories of
//! dead processes are swept when a new topology starts.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dist::{DistError, MysqlDist};
use crate::flavor::Flavor;
use crate::process;
use crate::replication::{self, ReplicaStatus, ReplicationError};
use crate::server::{Server, ServerError, ServerSpec};
use crate::template::{self, TemplateError};

/// Errors starting or operating a topology.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// No usable MySQL.
    #[error(transparent)]
    Dist(#[from] DistError),
    /// Template datadir problem.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Replication failed.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// Filesystem error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("sandbox task failed: {0}")]
    Task(String),
}

/// How to build a topology.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of replicas (default 2).
    pub replicas: usize,
    /// Bound for each server to accept connections and for replicas to catch
    /// up during [`Topology::start`] (default 120 s).
    pub ready_timeout: Duration,
    /// Set `read_only=ON` on replicas (default true; `SUPER`/ALL users bypass it).
    pub replica_read_only: bool,
    /// Extra `[mysqld]` option lines for every server, e.g. `"binlog-format=ROW"`.
    pub extra_mysqld_options: Vec<String>,
    /// Use this distribution instead of [`MysqlDist::shared_flavor`].
    pub dist: Option<Arc<MysqlDist>>,
    /// MySQL (default) or MariaDB (primary + GTID replicas with
    /// `MASTER_USE_GTID = slave_pos`, `gtid_strict_mode`, ROW binlog).
    pub flavor: Flavor,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            replicas: 2,
            ready_timeout: Duration::from_secs(120),
            replica_read_only: true,
            extra_mysqld_options: Vec::new(),
            dist: None,
            flavor: Flavor::Mysql,
        }
    }
}

impl Options {
    /// Default options with `n` replicas.
    pub fn with_replicas(n: usize) -> Self {
        Options {
            replicas: n,
            ..Options::default()
        }
    }
}

/// A running primary + replicas. Dropping it kills all servers and removes
/// their directories.
#[derive(Debug)]
pub struct Topology {
    dist: Arc<MysqlDist>,
    dir: PathBuf,
    primary: Server,
    replicas: Vec<Server>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TopologyError {
    let path = path.to_path_buf();
    move |source| TopologyError::Io { what, path, source }
}

/// Removes the topology directory on drop (servers are dropped first).
#[derive(Debug)]
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TopologyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TopologyError::Task(e.to_string()))
}

/// Removes `sb-<pid>-*` directories whose pid is dead.
fn sweep_stale(work: &Path) {
    let Ok(entries) = fs::read_dir(work) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("sb-") else {
            continue;
        };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
            continue;
        };
        if !process::pid_alive(pid) {
            tracing::debug!(dir = %e.path().display(), "removing stale sandbox dir");
            let _ = fs::remove_dir_all(e.path());
        }
    }
    template::sweep_stale_builds(work);
}

fn make_topology_dir(work: &Path) -> Result<PathBuf, TopologyError> {
    fs::create_dir_all(work).map_err(io_err("creating", work))?;
    loop {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = work.join(format!("sb-{}-{seq}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &dir)(e)),
        }
    }
}

impl Topology {
    /// Starts a primary and `opts.replicas` replicas with GTID replication
    /// running and all replicas caught up.
    pub async fn start(opts: Options) -> Result<Topology, TopologyError> {
        let started = Instant::now();
        let dist = match opts.dist.clone() {
            Some(d) => d,
            None => {
                let flavor = opts.flavor;
                blocking(move || MysqlDist::shared_flavor(flavor)).await??
            }
        };
        let work = dist.work_dir();
        let (tpl, dir) = {
            let dist = Arc::clone(&dist);
            blocking(move || -> Result<_, TopologyError> {
                fs::create_dir_all(&work).map_err(io_err("creating", &work))?;
                sweep_stale(&work);
                let tpl = template::ensure_template(&dist)?;
                let dir = make_topology_dir(&work)?;
                Ok((tpl, dir))
            })
            .await??
        };
        let guard = DirGuard(dir.clone());

        let mut set = tokio::task::JoinSet::new();
        for i in 0..=opts.replicas {
            let mut extra = Vec::new();
            if i > 0 && opts.replica_read_only {
                extra.push("read-only=ON".to_string());
            }
            extra.extend(opts.extra_mysqld_options.iter().cloned());
            let spec = ServerSpec {
                name: if i == 0 {
                    "primary".into()
                } else {
                    format!("r{i}")
                },
                server_id: i as u32 + 1,
                extra,
                ready_timeout: opts.ready_timeout,
            };
            let (dist, tpl, dir) = (Arc::clone(&dist), tpl.clone(), dir.clone());
            set.spawn(async move {
                let server = blocking(move || Server::create(dist, &tpl, &dir, spec)).await??;
                server.start_initial().await?;
                Ok::<_, TopologyError>((i, server))
            });
        }
        let mut servers: Vec<Option<Server>> = (0..=opts.replicas).map(|_| None).collect();
        let mut first_err = None;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok((i, s))) => servers[i] = Some(s),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(TopologyError::Task(e.to_string()));
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let mut servers = servers.into_iter().flatten();
        let primary = servers
            .next()
            .ok_or_else(|| TopologyError::Task("no primary".into()))?;
        let mut guard = guard;
        let topo = Topology {
            dist,
            // The topology's Drop now owns cleanup.
            dir: std::mem::take(&mut guard.0),
            primary,
            replicas: servers.collect(),
        };
        for r in &topo.replicas {
            replication::configure(r, &topo.primary).await?;
        }
        let wanted = replication::gtid_executed(&topo.primary).await?;
        for r in &topo.replicas {
            replication::wait_caught_up(r, &wanted, true, opts.ready_timeout).await?;
        }
        tracing::info!(
            dir = %topo.dir.display(),
            primary = topo.primary.port(),
            elapsed = ?started.elapsed(),
            "sandbox topology ready"
        );
        Ok(topo)
    }

    /// The primary.
    pub fn primary(&self) -> &Server {
        &self.primary
    }

    /// The replicas, named r1, r2, ...
    pub fn replicas(&self) -> &[Server] {
        &self.replicas
    }

    /// Primary first, then replicas.
    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    /// The MySQL distribution in use.
    pub fn dist(&self) -> &Arc<MysqlDist> {
        &self.dist
    }

    /// Host directory holding all servers' directories.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until every running replica contains the primary's current
    /// `gtid_executed`.
    pub async fn wait_replicated(&self, timeout: Duration) -> Result<(), TopologyError> {
        let wanted = replication::gtid_executed(&self.primary).await?;
        let deadline = Instant::now() + timeout;
        for r in self.replicas.iter().filter(|r| r.is_running()) {
            let left = deadline.saturating_duration_since(Instant::now());
            replication::wait_caught_up(r, &wanted, false, left).await?;
        }
        Ok(())
    }

    /// Replication thread states of `replica`.
    pub async fn replica_status(&self, replica: &Server) -> Result<ReplicaStatus, TopologyError> {
        Ok(replication::status(replica).await?)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for s in self.servers() {
            s.kill();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
