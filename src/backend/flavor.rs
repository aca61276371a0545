//! A backend's flavour (MySQL or MariaDB), detected from its greeting, and
//! what a backend link does differently on MariaDB: the session setup
//! (`session_track_system_variables` with `last_gtid` instead of
//! `session_track_gtids`) and the character set replay (MariaDB 10.11 has
//! no `utf8mb4_0900_*` collations).

use causeway_gtid::Flavor;
use mysql_common::constants::CapabilityFlags;

/// Errors of this module (none: detection always answers).
#[derive(Debug, thiserror::Error)]
pub enum FlavorError {}

/// The flavour of a server from its greeting: the version string names
/// MariaDB, or the server clears `CLIENT_MYSQL` (bit 0,
/// `CLIENT_LONG_PASSWORD` to MySQL), as MariaDB ≥ 10.2 does. The `5.5.5-`
/// version prefix is not used (MariaDB 11 dropped it).
pub fn detect(version: &str, server_caps: CapabilityFlags) -> Flavor {
    if Flavor::from_version(version) == Flavor::Mariadb
        || !server_caps.contains(CapabilityFlags::CLIENT_LONG_PASSWORD)
    {
        Flavor::Mariadb
    } else {
        Flavor::Mysql
    }
}

/// MariaDB's session setup: its `last_gtid` is reported in every OK that
/// committed a transaction (SESSION_TRACK_SYSTEM_VARIABLES), next to the
/// variables MariaDB tracks by default, and every state change is flagged.
pub const MARIADB_SETUP_SQL: &str = "SET SESSION session_track_system_variables = \
    'last_gtid,autocommit,character_set_client,character_set_connection,\
    character_set_results,time_zone', session_track_state_change = ON";

/// The setup SQL of a link to a server of `flavor`.
pub fn setup_sql(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mysql => super::conn::SETUP_SQL,
        Flavor::Mariadb => MARIADB_SETUP_SQL,
    }
}

/// The `SET NAMES` replaying collation `id` on a server of `flavor`.
/// MariaDB 10.11 knows no `*_0900_*` collation (MySQL 8's default, which
/// most clients ask for): it gets the character set's default collation.
pub fn set_names(flavor: Flavor, id: u8) -> Option<String> {
    let (charset, collation) = super::conn::collation_names(id)?;
    if flavor == Flavor::Mariadb && collation.contains("_0900_") {
        return Some(format!("SET NAMES {charset}"));
    }
    Some(format!("SET NAMES {charset} COLLATE {collation}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_mariadb_without_the_prefix() {
        let mysql_caps =
            CapabilityFlags::CLIENT_LONG_PASSWORD | CapabilityFlags::CLIENT_PROTOCOL_41;
        assert_eq!(detect("9.7.4", mysql_caps), Flavor::Mysql);
        assert_eq!(
            detect("5.5.5-10.11.6-MariaDB-0+deb12u1", mysql_caps),
            Flavor::Mariadb
        );
        // MariaDB 11 without the prefix, or any server clearing CLIENT_MYSQL
        assert_eq!(detect("11.4.2-MariaDB", mysql_caps), Flavor::Mariadb);
        assert_eq!(
            detect("11.4.2", CapabilityFlags::CLIENT_PROTOCOL_41),
            Flavor::Mariadb
        );
    }

    /// Neither side of causeway offers MariaDB's extended capabilities:
    /// they live in the last 4 bytes of the greeting's 10 reserved bytes
    /// and of the handshake response's 23-byte filler, both zero; the
    /// greeting sets CLIENT_MYSQL (bit 0), so MariaDB clients do not look.
    #[test]
    fn no_mariadb_extended_capabilities() {
        use crate::protocol::handshake;
        let g = handshake::greeting(
            "10.11.18-MariaDB",
            7,
            &[1; 20],
            45,
            "mysql_native_password",
            false,
        );
        let v_end = g.iter().position(|&b| b == 0).unwrap();
        // connection id 4, scramble 8, filler 1, caps 2, collation 1, status 2, caps 2, len 1
        let caps_lo = u16::from_le_bytes([g[v_end + 14], g[v_end + 15]]);
        assert_eq!(caps_lo & 1, 1, "CLIENT_MYSQL offered");
        let reserved = &g[v_end + 22..v_end + 32];
        assert_eq!(reserved, &[0u8; 10]);
        let caps = crate::backend::conn::base_capabilities();
        let hello = handshake::client_hello(caps, 45, "app", b"x", None, "mysql_native_password");
        assert_eq!(&hello[9..32], &[0u8; 23], "MARIADB_CLIENT_* all zero");
    }

    #[test]
    fn set_names_avoids_0900_on_mariadb() {
        assert_eq!(
            set_names(Flavor::Mariadb, 255).as_deref(),
            Some("SET NAMES utf8mb4")
        );
        assert_eq!(
            set_names(Flavor::Mysql, 255).as_deref(),
            Some("SET NAMES utf8mb4 COLLATE utf8mb4_0900_ai_ci")
        );
        assert_eq!(
            set_names(Flavor::Mariadb, 45).as_deref(),
            Some("SET NAMES utf8mb4 COLLATE utf8mb4_general_ci")
        );
    }
}
