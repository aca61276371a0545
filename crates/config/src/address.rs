//! `host:port` address parsing shared by listeners and backends.
//!
//! Accepted forms: `1.2.3.4:3306`, `[::1]:3306`, `db-1.example.com:3306`.
//! A bare IPv6 address without brackets is rejected (the port would be
//! ambiguous).

/// Split `host:port` into `(host, port)`; IPv6 brackets are stripped from
/// the host. Returns a human-readable reason on failure.
pub fn split_host_port(s: &str) -> Result<(&str, u16), String> {
    if s.is_empty() {
        return Err("address is empty (expected host:port)".to_string());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("'{s}': missing ']' after IPv6 address"))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("'{s}': missing :port after ']'"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{s}': '{host}' is not an IPv6 address"));
        }
        (host, port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}' is missing a port (expected host:port)"))?;
        if host.contains(':') {
            return Err(format!(
                "'{s}': IPv6 addresses must be written in brackets, e.g. [::1]:3306"
            ));
        }
        if host.is_empty() {
            return Err(format!("'{s}' has an empty host (expected host:port)"));
        }
        if !valid_hostname(host) {
            return Err(format!(
                "'{s}': '{host}' is not a valid IP address or hostname"
            ));
        }
        (host, port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}': port '{port}' is not a number"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{s}': port {port} is out of range (1-65535)"))?;
    Ok((host, port))
}

/// Validate an address the proxy connects to: port must be 1..=65535.
pub fn check_connect_addr(s: &str) -> Result<(), String> {
    let (_, port) = split_host_port(s)?;
    if port == 0 {
        return Err(format!("'{s}': port 0 is not valid for a server address"));
    }
    Ok(())
}

/// Validate an address the proxy listens on: port 0 (ephemeral) is allowed.
pub fn check_listen_addr(s: &str) -> Result<(), String> {
    split_host_port(s).map(|_| ())
}

/// RFC 1123-ish hostname (also accepts dotted IPv4 literals): labels of
/// `[A-Za-z0-9_-]`, 1..=63 chars, not starting or ending with '-'.
fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_forms() {
        assert_eq!(split_host_port("127.0.0.1:3306"), Ok(("127.0.0.1", 3306)));
        assert_eq!(split_host_port("[::1]:3307"), Ok(("::1", 3307)));
        assert_eq!(
            split_host_port("db-1.example.com:1"),
            Ok(("db-1.example.com", 1))
        );
        assert_eq!(split_host_port("localhost:65535"), Ok(("localhost", 65535)));
        assert!(check_listen_addr("0.0.0.0:0").is_ok());
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "localhost",
            ":3306",
            "host:",
            "host:abc",
            "host:65536",
            "host:-1",
            "::1:3306",
            "[::1]",
            "[nope]:3306",
            "bad host:3306",
            "a..b:3306",
            "-x:3306",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_connect_addr("127.0.0.1:0").is_err());
    }
}
