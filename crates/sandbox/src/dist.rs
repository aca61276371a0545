//! Locating a MySQL distribution (mysqld + mysql client) on this machine.
//!
//! The search order matches `integration/provide-mysql.sh`:
//! 1. `$CAUSEWAY_MYSQLD` (client: `$CAUSEWAY_MYSQL`, else `mysql` beside it, else PATH);
//! 2. `mysqld` on `PATH`;
//! 3. a Debian sid chroot at `${CAUSEWAY_MYSQL_ROOT:-/var/tmp/causeway/sid-root}`;
//! 4. otherwise the script is run to build that chroot.
//!
//! In chroot mode every path handed to mysqld is a path *inside* the chroot;
//! [`MysqlDist::inner_path`] maps host paths to those.
//!
//! MariaDB ([`MysqlDist::locate_flavor`] with [`Flavor::Mariadb`]) is found
//! the same way: `$CAUSEWAY_MARIADBD`, `mariadbd` on PATH, else a Debian
//! bookworm root at `${CAUSEWAY_MARIADB_ROOT:-/var/tmp/causeway/mariadb-root}`
//! built by `integration/provide-mariadb.sh` (never installed on the host:
//! Debian's package puts a MariaDB `mysqld` on PATH). The MySQL search
//! refuses a `mysqld` whose `--version` says MariaDB, and the reverse.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::flavor::Flavor;

/// Default location of the Debian sid chroot.
pub const DEFAULT_CHROOT: &str = "/var/tmp/causeway/sid-root";

/// Errors while locating or probing a MySQL distribution.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A binary named by an environment variable does not exist.
    #[error("{var}={path} does not exist or is not a file")]
    BadEnvPath {
        /// The environment variable.
        var: &'static str,
        /// Its value.
        path: PathBuf,
    },
    /// Running a helper process failed.
    #[error("running {what}: {source}")]
    Spawn {
        /// What was being run.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `integration/provide-mysql.sh` failed or printed something unusable.
    #[error("integration/provide-mysql.sh failed ({status}): {detail}")]
    Provide {
        /// Exit status description.
        status: String,
        /// Stderr tail or the unparsable line.
        detail: String,
    },
    /// `mysqld --version` did not print a version.
    #[error("cannot determine mysqld version from {output:?}")]
    Version {
        /// What mysqld printed.
        output: String,
    },
    /// The binary found is not of the flavour asked for (e.g. a MariaDB
    /// `mysqld` on PATH where MySQL is wanted).
    #[error(
        "{path} is {found}, not {wanted} (its --version: {version:?}); set {var} \
         to a {wanted} server binary or remove it from PATH"
    )]
    WrongFlavor {
        /// The binary.
        path: PathBuf,
        /// What it is.
        found: Flavor,
        /// What was asked for.
        wanted: Flavor,
        /// Its version text.
        version: String,
        /// The environment variable that selects the binary.
        var: &'static str,
    },
    /// Chroot mode needs root.
    #[error("the MySQL chroot at {root} needs root privileges to use (or set CAUSEWAY_MYSQLD)")]
    NotRoot {
        /// The chroot.
        root: PathBuf,
    },
}

/// A usable MySQL installation: either plain binaries or a chroot.
#[derive(Debug, Clone)]
pub struct MysqlDist {
    /// `Some(root)` when binaries run via `chroot root ...`.
    root: Option<PathBuf>,
    /// mysqld path (inside the chroot in chroot mode).
    mysqld: PathBuf,
    /// mysql client path (inside the chroot in chroot mode).
    mysql: PathBuf,
    /// e.g. `9.7.4-2`.
    version: String,
    /// MySQL or MariaDB, from `--version`.
    flavor: Flavor,
}

static SHARED: Mutex<Option<Arc<MysqlDist>>> = Mutex::new(None);
static SHARED_MARIADB: Mutex<Option<Arc<MysqlDist>>> = Mutex::new(None);

impl MysqlDist {
    /// Locates MySQL (see the module docs), building the chroot if nothing is
    /// found. Blocking: may take minutes the very first time on a machine.
    pub fn locate() -> Result<MysqlDist, DistError> {
        Self::locate_flavor(Flavor::Mysql)
    }

    /// Locates a server of `flavor` (see the module docs).
    pub fn locate_flavor(flavor: Flavor) -> Result<MysqlDist, DistError> {
        if let Some(d) = Self::find_existing(flavor)? {
            return Ok(d);
        }
        Self::provide(flavor)
    }

    /// Like [`MysqlDist::locate`] but cached for the whole process.
    pub fn shared() -> Result<Arc<MysqlDist>, DistError> {
        Self::shared_flavor(Flavor::Mysql)
    }

    /// Like [`MysqlDist::locate_flavor`] but cached for the whole process.
    pub fn shared_flavor(flavor: Flavor) -> Result<Arc<MysqlDist>, DistError> {
        let cell = match flavor {
            Flavor::Mysql => &SHARED,
            Flavor::Mariadb => &SHARED_MARIADB,
        };
        let mut guard = cell.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = guard.as_ref() {
            return Ok(Arc::clone(d));
        }
        let d = Arc::new(Self::locate_flavor(flavor)?);
        *guard = Some(Arc::clone(&d));
        Ok(d)
    }

    /// Uses explicit host binaries (the flavour comes from `--version`).
    pub fn from_binaries(mysqld: PathBuf, mysql: PathBuf) -> Result<MysqlDist, DistError> {
        let mut d = MysqlDist {
            root: None,
            mysqld,
            mysql,
            version: String::new(),
            flavor: Flavor::Mysql,
        };
        d.probe_version()?;
        Ok(d)
    }

    /// Uses a chroot whose `/usr/sbin/mysqld` and `/usr/bin/mysql` are used.
    pub fn from_chroot(root: PathBuf) -> Result<MysqlDist, DistError> {
        Self::from_chroot_bins(root, Flavor::Mysql)
    }

    /// Uses a chroot holding `flavor`'s server and client binaries.
    pub fn from_chroot_bins(root: PathBuf, flavor: Flavor) -> Result<MysqlDist, DistError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(DistError::NotRoot { root });
        }
        let mut d = MysqlDist {
            root: Some(root),
            mysqld: Path::new("/usr/sbin").join(flavor.server_bin()),
            mysql: Path::new("/usr/bin").join(flavor.client_bin()),
            version: String::new(),
            flavor,
        };
        d.probe_version()?;
        Ok(d)
    }

    /// Refuses a distribution of another flavour than `wanted`.
    fn expect_flavor(self, wanted: Flavor) -> Result<MysqlDist, DistError> {
        if self.flavor == wanted {
            return Ok(self);
        }
        Err(DistError::WrongFlavor {
            path: self.mysqld.clone(),
            found: self.flavor,
            wanted,
            version: self.version.clone(),
            var: wanted.server_env(),
        })
    }

    fn find_existing(flavor: Flavor) -> Result<Option<MysqlDist>, DistError> {
        let var = flavor.server_env();
        if let Some(m) = std::env::var_os(var) {
            let mysqld = PathBuf::from(m);
            if !mysqld.is_file() {
                return Err(DistError::BadEnvPath { var, path: mysqld });
            }
            let mysql = client_beside(&mysqld, flavor);
            return Self::from_binaries(mysqld, mysql)?
                .expect_flavor(flavor)
                .map(Some);
        }
        if let Some(mysqld) = which(flavor.server_bin()) {
            let mysql = client_beside(&mysqld, flavor);
            return Self::from_binaries(mysqld, mysql)?
                .expect_flavor(flavor)
                .map(Some);
        }
        let root = flavor.chroot_root();
        if root.join("usr/sbin").join(flavor.server_bin()).is_file() {
            return Self::from_chroot_bins(root, flavor)?
                .expect_flavor(flavor)
                .map(Some);
        }
        Ok(None)
    }

    /// Runs the flavour's provide script and parses its last line.
    fn provide(flavor: Flavor) -> Result<MysqlDist, DistError> {
        let script = Self::provide_script_for(flavor);
        tracing::info!(script = %script.display(), "no MySQL found; running provide script");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|source| DistError::Spawn {
                what: script.display().to_string(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or("").trim().to_string();
        if !out.status.success() {
            return Err(DistError::Provide {
                status: out.status.to_string(),
                detail: last,
            });
        }
        let detail = |d: String| DistError::Provide {
            status: out.status.to_string(),
            detail: d,
        };
        match parse_provide_line(&last) {
            Some(ProvideLine::Binaries { mysqld, mysql }) => {
                Self::from_binaries(mysqld, mysql)?.expect_flavor(flavor)
            }
            Some(ProvideLine::Chroot {
                root,
                mysqld,
                mysql,
            }) => {
                let mut d = Self::from_chroot_bins(root, flavor)?;
                d.mysqld = mysqld;
                d.mysql = mysql;
                d.expect_flavor(flavor)
            }
            None => Err(detail(format!("unparsable output line {last:?}"))),
        }
    }

    /// Path of `integration/provide-mysql.sh` in the source tree.
    pub fn provide_script() -> PathBuf {
        Self::provide_script_for(Flavor::Mysql)
    }

    /// Path of the provide script for `flavor` in the source tree.
    pub fn provide_script_for(flavor: Flavor) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../integration")
            .join(flavor.script())
    }

    /// Sets `version` and `flavor` from `mysqld --version`.
    fn probe_version(&mut self) -> Result<(), DistError> {
        let out = self
            .mysqld_command()
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DistError::Spawn {
                what: format!("{} --version", self.mysqld.display()),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "Ver" {
                if let Some(v) = words.next() {
                    self.version = v.to_string();
                    self.flavor = Flavor::from_version_text(&text);
                    return Ok(());
                }
            }
        }
        Err(DistError::Version { output: text })
    }

    /// MySQL or MariaDB.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The chroot root, when running from a chroot.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// mysqld version string, e.g. `9.7.4-2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The mysqld binary (inside the chroot in chroot mode).
    pub fn mysqld_path(&self) -> &Path {
        &self.mysqld
    }

    /// A command that runs mysqld (chroot-wrapped when needed). Arguments
    /// given to it are seen by mysqld; paths must be [`inner_path`](Self::inner_path)s.
    pub fn mysqld_command(&self) -> Command {
        self.wrapped(&self.mysqld)
    }

    /// A command that runs the `mysql` CLI client (chroot-wrapped when
    /// needed). Connect with e.g. `-h127.0.0.1 -P<port> -uroot`.
    pub fn mysql_client_command(&self) -> Command {
        self.wrapped(&self.mysql)
    }

    /// A command running `name` from the client's directory (e.g.
    /// `mariadb-install-db`), chroot-wrapped when needed.
    pub fn tool_command(&self, name: &str) -> Command {
        let dir = self.mysql.parent().unwrap_or(Path::new("/usr/bin"));
        self.wrapped(&dir.join(name))
    }

    /// [`mysql_client_command`](Self::mysql_client_command) as a tokio command.
    pub fn mysql_client_tokio_command(&self) -> tokio::process::Command {
        tokio::process::Command::from(self.mysql_client_command())
    }

    fn wrapped(&self, bin: &Path) -> Command {
        match &self.root {
            Some(root) => {
                let mut c = Command::new("chroot");
                c.arg(root).arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    /// Host directory under which sandboxes and the template live; it is
    /// visible to mysqld (inside the chroot in chroot mode).
    pub fn work_dir(&self) -> PathBuf {
        if let Some(d) = std::env::var_os("CAUSEWAY_SANDBOX_DIR") {
            return PathBuf::from(d);
        }
        match &self.root {
            Some(root) => root.join("tmp/causeway"),
            None => PathBuf::from("/var/tmp/causeway/sandbox"),
        }
    }

    /// Maps a host path to the path mysqld sees (strips the chroot prefix).
    pub fn inner_path(&self, host: &Path) -> PathBuf {
        match &self.root {
            Some(root) => match host.strip_prefix(root) {
                Ok(rest) => Path::new("/").join(rest),
                Err(_) => host.to_path_buf(),
            },
            None => host.to_path_buf(),
        }
    }
}

/// The last line printed by `integration/provide-mysql.sh`.
#[derive(Debug, PartialEq, Eq)]
enum ProvideLine {
    Binaries {
        mysqld: PathBuf,
        mysql: PathBuf,
    },
    Chroot {
        root: PathBuf,
        mysqld: PathBuf,
        mysql: PathBuf,
    },
}

fn parse_provide_line(line: &str) -> Option<ProvideLine> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["mysqld", mysqld, "mysql", mysql] => Some(ProvideLine::Binaries {
            mysqld: PathBuf::from(mysqld),
            mysql: PathBuf::from(mysql),
        }),
        ["chroot", root, "mysqld", mysqld, "mysql", mysql] => Some(ProvideLine::Chroot {
            root: PathBuf::from(root),
            mysqld: PathBuf::from(mysqld),
            mysql: PathBuf::from(mysql),
        }),
        _ => None,
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn client_beside(mysqld: &Path, flavor: Flavor) -> PathBuf {
    if let Some(c) = std::env::var_os(flavor.client_env()) {
        return PathBuf::from(c);
    }
    let name = flavor.client_bin();
    if let Some(dir) = mysqld.parent() {
        for cand in [dir.join(name), dir.join("../bin").join(name)] {
            if cand.is_file() {
                return cand;
            }
        }
    }
    which(name).unwrap_or_else(|| PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_provide_output() {
        assert_eq!(
            parse_provide_line("chroot /r mysqld /usr/sbin/mysqld mysql /usr/bin/mysql"),
            Some(ProvideLine::Chroot {
                root: "/r".into(),
                mysqld: "/usr/sbin/mysqld".into(),
                mysql: "/usr/bin/mysql".into(),
            })
        );
        assert_eq!(
            parse_provide_line("mysqld /opt/m/bin/mysqld mysql mysql"),
            Some(ProvideLine::Binaries {
                mysqld: "/opt/m/bin/mysqld".into(),
                mysql: "mysql".into(),
            })
        );
        assert_eq!(parse_provide_line("garbage"), None);
    }

    #[test]
    fn inner_path_strips_chroot() {
        let d = MysqlDist {
            root: Some("/var/tmp/r".into()),
            mysqld: "/usr/sbin/mysqld".into(),
            mysql: "/usr/bin/mysql".into(),
            version: "9.7.4".into(),
            flavor: Flavor::Mysql,
        };
        assert_eq!(
            d.inner_path(Path::new("/var/tmp/r/tmp/causeway/x")),
            PathBuf::from("/tmp/causeway/x")
        );
        assert_eq!(d.work_dir(), PathBuf::from("/var/tmp/r/tmp/causeway"));
    }
}
