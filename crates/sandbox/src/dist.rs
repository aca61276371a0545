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

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

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
}

static SHARED: Mutex<Option<Arc<MysqlDist>>> = Mutex::new(None);

impl MysqlDist {
    /// Locates MySQL (see the module docs), building the chroot if nothing is
    /// found. Blocking: may take minutes the very first time on a machine.
    pub fn locate() -> Result<MysqlDist, DistError> {
        if let Some(d) = Self::find_existing()? {
            return Ok(d);
        }
        Self::provide()
    }

    /// Like [`MysqlDist::locate`] but cached for the whole process.
    pub fn shared() -> Result<Arc<MysqlDist>, DistError> {
        let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = guard.as_ref() {
            return Ok(Arc::clone(d));
        }
        let d = Arc::new(Self::locate()?);
        *guard = Some(Arc::clone(&d));
        Ok(d)
    }

    /// Uses explicit host binaries.
    pub fn from_binaries(mysqld: PathBuf, mysql: PathBuf) -> Result<MysqlDist, DistError> {
        let mut d = MysqlDist {
            root: None,
            mysqld,
            mysql,
            version: String::new(),
        };
        d.version = d.probe_version()?;
        Ok(d)
    }

    /// Uses a chroot whose `/usr/sbin/mysqld` and `/usr/bin/mysql` are used.
    pub fn from_chroot(root: PathBuf) -> Result<MysqlDist, DistError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(DistError::NotRoot { root });
        }
        let mut d = MysqlDist {
            root: Some(root),
            mysqld: PathBuf::from("/usr/sbin/mysqld"),
            mysql: PathBuf::from("/usr/bin/mysql"),
            version: String::new(),
        };
        d.version = d.probe_version()?;
        Ok(d)
    }

    fn find_existing() -> Result<Option<MysqlDist>, DistError> {
        if let Some(m) = std::env::var_os("CAUSEWAY_MYSQLD") {
            let mysqld = PathBuf::from(m);
            if !mysqld.is_file() {
                return Err(DistError::BadEnvPath {
                    var: "CAUSEWAY_MYSQLD",
                    path: mysqld,
                });
            }
            let mysql = client_beside(&mysqld);
            return Self::from_binaries(mysqld, mysql).map(Some);
        }
        if let Some(mysqld) = which("mysqld") {
            let mysql = client_beside(&mysqld);
            return Self::from_binaries(mysqld, mysql).map(Some);
        }
        let root = chroot_root();
        if root.join("usr/sbin/mysqld").is_file() {
            return Self::from_chroot(root).map(Some);
        }
        Ok(None)
    }

    /// Runs `integration/provide-mysql.sh` and parses its last line.
    fn provide() -> Result<MysqlDist, DistError> {
        let script = Self::provide_script();
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
            Some(ProvideLine::Binaries { mysqld, mysql }) => Self::from_binaries(mysqld, mysql),
            Some(ProvideLine::Chroot {
                root,
                mysqld,
                mysql,
            }) => {
                let mut d = Self::from_chroot(root)?;
                d.mysqld = mysqld;
                d.mysql = mysql;
                Ok(d)
            }
            None => Err(detail(format!("unparsable output line {last:?}"))),
        }
    }

    /// Path of `integration/provide-mysql.sh` in the source tree.
    pub fn provide_script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integration/provide-mysql.sh")
    }

    fn probe_version(&self) -> Result<String, DistError> {
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
                    return Ok(v.to_string());
                }
            }
        }
        Err(DistError::Version { output: text })
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

fn chroot_root() -> PathBuf {
    std::env::var_os("CAUSEWAY_MYSQL_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROOT))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn client_beside(mysqld: &Path) -> PathBuf {
    if let Some(c) = std::env::var_os("CAUSEWAY_MYSQL") {
        return PathBuf::from(c);
    }
    if let Some(dir) = mysqld.parent() {
        for cand in [dir.join("mysql"), dir.join("../bin/mysql")] {
            if cand.is_file() {
                return cand;
            }
        }
    }
    which("mysql").unwrap_or_else(|| PathBuf::from("mysql"))
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
        };
        assert_eq!(
            d.inner_path(Path::new("/var/tmp/r/tmp/causeway/x")),
            PathBuf::from("/tmp/causeway/x")
        );
        assert_eq!(d.work_dir(), PathBuf::from("/var/tmp/r/tmp/causeway"));
    }
}
