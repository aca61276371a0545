//! Which server family a sandbox runs: MySQL 9 or MariaDB (10.11 from
//! Debian bookworm), and what differs between them at the distribution
//! level (binary names, provide script, chroot location, version check).

use std::path::PathBuf;

/// Errors of this module: an unknown flavour name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown server flavour {0:?} (expected \"mysql\" or \"mariadb\")")]
pub struct FlavorError(pub String);

/// The server family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Oracle MySQL (9.x).
    #[default]
    Mysql,
    /// MariaDB (10.11 and later).
    Mariadb,
}

impl Flavor {
    /// Lower-case name: `mysql` or `mariadb`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Mysql => "mysql",
            Flavor::Mariadb => "mariadb",
        }
    }

    /// The flavour a `mysqld --version` / `SELECT VERSION()` text names.
    pub fn from_version_text(text: &str) -> Flavor {
        if text.to_ascii_lowercase().contains("mariadb") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        }
    }

    /// Environment variable naming the server binary.
    pub(crate) fn server_env(self) -> &'static str {
        match self {
            Flavor::Mysql => "CAUSEWAY_MYSQLD",
            Flavor::Mariadb => "CAUSEWAY_MARIADBD",
        }
    }

    /// Environment variable naming the CLI client.
    pub(crate) fn client_env(self) -> &'static str {
        match self {
            Flavor::Mysql => "CAUSEWAY_MYSQL",
            Flavor::Mariadb => "CAUSEWAY_MARIADB_CLIENT",
        }
    }

    /// Server binary name looked up on PATH.
    pub(crate) fn server_bin(self) -> &'static str {
        match self {
            Flavor::Mysql => "mysqld",
            Flavor::Mariadb => "mariadbd",
        }
    }

    /// CLI client binary name.
    pub(crate) fn client_bin(self) -> &'static str {
        match self {
            Flavor::Mysql => "mysql",
            Flavor::Mariadb => "mariadb",
        }
    }

    /// The provide script (in `integration/`).
    pub(crate) fn script(self) -> &'static str {
        match self {
            Flavor::Mysql => "provide-mysql.sh",
            Flavor::Mariadb => "provide-mariadb.sh",
        }
    }

    /// The Debian root holding this flavour's packages.
    pub(crate) fn chroot_root(self) -> PathBuf {
        let (var, default) = match self {
            Flavor::Mysql => ("CAUSEWAY_MYSQL_ROOT", crate::dist::DEFAULT_CHROOT),
            Flavor::Mariadb => ("CAUSEWAY_MARIADB_ROOT", DEFAULT_MARIADB_CHROOT),
        };
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    }
}

/// Default location of the Debian bookworm root holding MariaDB.
pub const DEFAULT_MARIADB_CHROOT: &str = "/var/tmp/causeway/mariadb-root";

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Flavor {
    type Err = FlavorError;
    fn from_str(s: &str) -> Result<Flavor, FlavorError> {
        match s.to_ascii_lowercase().as_str() {
            "mysql" => Ok(Flavor::Mysql),
            "mariadb" => Ok(Flavor::Mariadb),
            _ => Err(FlavorError(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_from_version_text() {
        assert_eq!(
            Flavor::from_version_text(
                "/usr/sbin/mariadbd  Ver 10.11.18-MariaDB-0+deb12u1 for debian-linux-gnu"
            ),
            Flavor::Mariadb
        );
        assert_eq!(
            Flavor::from_version_text("/usr/sbin/mysqld  Ver 9.7.4-2 for Linux"),
            Flavor::Mysql
        );
        assert_eq!("MariaDB".parse::<Flavor>(), Ok(Flavor::Mariadb));
        assert!("postgres".parse::<Flavor>().is_err());
    }
}
