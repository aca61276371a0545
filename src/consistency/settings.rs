//! Per-session consistency settings (`@@causeway.*`): parsing and bounds
//! of each value (a token, a wait, a lag budget), their MySQL errors, and
//! the length check that refuses hostile-sized options before any parser
//! runs over them.

use causeway_config::{Consistency, OnTimeout};
use causeway_gtid::{GtidSet, Limits};
use std::time::Duration;

/// Largest `wait_timeout_ms` (session or config): a causal wait never
/// holds a replica-side `WAIT_FOR_EXECUTED_GTID_SET` longer than this.
pub const MAX_WAIT_TIMEOUT_MS: u64 = 60_000;

/// Bounds of a client token (`@@causeway.token`, `/* causeway token=... */`).
pub const TOKEN_LIMITS: Limits = Limits::TOKEN;

/// Longest sticky key (`@@causeway.sticky_key`), in bytes.
pub const MAX_STICKY_KEY_LEN: usize = 256;

/// How many characters of a refused value an error message shows.
const VALUE_CLIP_CHARS: usize = 100;

/// `value` cut to [`VALUE_CLIP_CHARS`] characters, with `...` when cut.
pub fn clip_value(value: &str) -> String {
    clip_value_to(value, VALUE_CLIP_CHARS)
}

fn clip_value_to(value: &str, chars: usize) -> String {
    match value.char_indices().nth(chars) {
        Some((i, _)) => format!("{}...", value.get(..i).unwrap_or_default()),
        None => value.to_string(),
    }
}

/// Errors setting consistency variables.
#[derive(Debug, thiserror::Error)]
pub enum ConsistencyError {
    /// A variable was given a value it cannot take.
    #[error("Variable '{name}' can't be set to the value of '{value}'{detail}")]
    BadValue {
        /// Variable (`causeway.x`).
        name: String,
        /// The value, clipped to 100 characters.
        value: String,
        /// Why, with a leading separator.
        detail: String,
    },
    /// Unknown variable.
    #[error("Unknown system variable '{0}'")]
    Unknown(String),
    /// A statement setting causeway variables (or carrying a causeway
    /// comment) too long to hold a valid token: refused before parsing.
    #[error("Variable 'causeway.token' can't be set from a statement of {len} bytes (the limit is {max} bytes; a token may have {limits})", limits = TOKEN_LIMITS)]
    TooLong {
        /// Statement (or comment) length in bytes.
        len: usize,
        /// [`MAX_OPTIONS_LEN`].
        max: usize,
    },
}

/// Longest statement setting `@@causeway.*`, and longest leading
/// `/* causeway ... */` comment: a maximal token plus room for the rest.
pub const MAX_OPTIONS_LEN: usize = TOKEN_LIMITS.max_len + 4096;

/// Refuses, before any parser runs over it, a statement that sets causeway
/// variables (`causeway_var`) or starts with a `/* causeway ... */` comment
/// and is longer than [`MAX_OPTIONS_LEN`]. Cheap: one scan for `*/`.
pub fn check_options_len(sql: &str, causeway_var: bool) -> Result<(), ConsistencyError> {
    let len = if causeway_var {
        sql.len()
    } else {
        let rest = sql.trim_start();
        let Some(body) = rest.strip_prefix("/*") else {
            return Ok(());
        };
        let word = body.trim_start().as_bytes();
        if !word
            .get(..8)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"causeway"))
        {
            return Ok(());
        }
        body.find("*/").map_or(body.len(), |end| end + 4)
    };
    if len > MAX_OPTIONS_LEN {
        return Err(ConsistencyError::TooLong {
            len,
            max: MAX_OPTIONS_LEN,
        });
    }
    Ok(())
}

impl ConsistencyError {
    /// MySQL error code and SQLSTATE.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            ConsistencyError::BadValue { .. } | ConsistencyError::TooLong { .. } => (1231, "42000"),
            ConsistencyError::Unknown(_) => (1193, "HY000"),
        }
    }
}

/// Per-session consistency settings (`@@causeway.*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Mode.
    pub mode: Consistency,
    /// The session's token.
    pub token: GtidSet,
    /// How long a causal read waits for a replica.
    pub wait_timeout: Duration,
    /// What a causal read does when the wait times out.
    pub on_timeout: OnTimeout,
    /// Session lag budget (bounded staleness), if set.
    pub max_lag_ms: Option<u64>,
    /// The session's sticky key (`@@causeway.sticky_key`), if set.
    pub sticky_key: Option<std::sync::Arc<str>>,
}

impl Settings {
    /// Defaults from the config.
    pub fn from_config(cfg: &causeway_config::Config) -> Settings {
        Settings {
            mode: cfg.routing.consistency,
            token: GtidSet::new(),
            wait_timeout: cfg.routing.wait_timeout(),
            on_timeout: cfg.routing.on_timeout,
            max_lag_ms: None,
            sticky_key: None,
        }
    }

    /// Sets `causeway.<name>` from a string value; on error nothing changes.
    /// A token is bounded by [`TOKEN_LIMITS`] (checked while parsing), a
    /// wait by [`MAX_WAIT_TIMEOUT_MS`]; larger values are refused, never
    /// clamped.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConsistencyError> {
        let bad = |detail: String| ConsistencyError::BadValue {
            name: format!("causeway.{name}"),
            value: clip_value(value),
            // a parser's message may quote the value again
            detail: clip_value_to(&detail, 2 * VALUE_CLIP_CHARS),
        };
        match name {
            "token" => {
                self.token = causeway_gtid::parse_token(value, &TOKEN_LIMITS)
                    .map_err(|e| bad(format!(": {e}")))?;
            }
            "consistency" => {
                self.mode = value.parse().map_err(|e| bad(format!(": {e}")))?;
            }
            "on_timeout" => {
                self.on_timeout = value.parse().map_err(|e| bad(format!(": {e}")))?;
            }
            "wait_timeout_ms" => {
                let ms: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(": expected milliseconds".into()))?;
                if ms > MAX_WAIT_TIMEOUT_MS {
                    return Err(bad(format!(": the maximum is {MAX_WAIT_TIMEOUT_MS}")));
                }
                self.wait_timeout = Duration::from_millis(ms);
            }
            "max_lag_ms" => {
                let v = value.trim();
                self.max_lag_ms = if v.is_empty() || v.eq_ignore_ascii_case("default") {
                    None
                } else {
                    Some(
                        v.parse()
                            .map_err(|_| bad(": expected milliseconds".into()))?,
                    )
                };
            }
            "sticky_key" => {
                if value.len() > MAX_STICKY_KEY_LEN {
                    return Err(bad(format!(
                        ": a sticky key has at most {MAX_STICKY_KEY_LEN} bytes"
                    )));
                }
                self.sticky_key = (!value.is_empty()).then(|| value.into());
            }
            "last_route" => return Err(bad(": it is read-only".into())),
            _ => return Err(ConsistencyError::Unknown(format!("causeway.{name}"))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_leave_settings_unchanged() {
        let cfg = causeway_config::Config::from_str_named(
            "[[users]]\nname='a'\npassword=''\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n",
            "t",
        )
        .unwrap();
        let mut s = Settings::from_config(&cfg);
        let e = s.set("token", "not-a-gtid:1").unwrap_err();
        assert_eq!(e.code(), (1231, "42000"));
        assert!(e.to_string().contains("not-a-gtid"), "{e}");
        assert!(s.token.is_empty());
        assert!(s.set("consistency", "strong").is_ok());
        assert_eq!(s.mode, Consistency::Strong);
        assert!(matches!(
            s.set("nope", "1"),
            Err(ConsistencyError::Unknown(_))
        ));
    }

    fn settings() -> Settings {
        let cfg = causeway_config::Config::from_str_named(
            "[[users]]\nname='a'\npassword=''\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n",
            "t",
        )
        .unwrap();
        Settings::from_config(&cfg)
    }

    #[test]
    fn huge_tokens_are_refused_with_a_short_message() {
        let mut s = settings();
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut huge = String::from(uuid);
        for i in 0..200_000u64 {
            huge.push_str(&format!(":{}", 2 * i + 1));
        }
        let e = s.set("token", &huge).unwrap_err();
        assert_eq!(e.code(), (1231, "42000"));
        let msg = e.to_string();
        assert!(msg.len() < 400, "{msg}");
        assert!(msg.contains("65536 bytes"), "{msg}");
        assert!(msg.contains("4096 intervals"), "{msg}");
        assert!(s.token.is_empty());
        // under the byte limit, over the interval limit
        let many: String = std::iter::once(uuid.to_string())
            .chain((0..5000u64).map(|i| format!("{}", 2 * i + 1)))
            .collect::<Vec<_>>()
            .join(":");
        let e = s.set("token", &many).unwrap_err();
        assert!(e.to_string().contains("more than 4096 intervals"), "{e}");
        // many UUIDs
        let uuids: String = (0..300u32)
            .map(|i| format!("{i:08x}-71ca-11e1-9e33-c80aa9429562:1"))
            .collect::<Vec<_>>()
            .join(",");
        let e = s.set("token", &uuids).unwrap_err();
        assert!(e.to_string().contains("more than 256 UUIDs/tags"), "{e}");
        // a real token is fine
        s.set("token", &format!("{uuid}:1-100:tag1:5")).unwrap();
        assert_eq!(s.token.num_intervals(), 2);
    }

    #[test]
    fn wait_timeout_is_capped_not_clamped() {
        let mut s = settings();
        let e = s.set("wait_timeout_ms", "999999999").unwrap_err();
        assert_eq!(e.code(), (1231, "42000"));
        assert!(e.to_string().contains("maximum is 60000"), "{e}");
        assert_eq!(s.wait_timeout, Duration::from_millis(1000));
        s.set("wait_timeout_ms", "60000").unwrap();
        assert_eq!(s.wait_timeout, Duration::from_secs(60));
        let cfg = causeway_config::Config::from_str_named(
            "[[users]]\nname='a'\npassword=''\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n[routing]\nwait_timeout_ms = 60001\n",
            "t",
        );
        let e = cfg.unwrap_err().to_string();
        assert!(e.contains("wait_timeout_ms") && e.contains("60000"), "{e}");
    }

    #[test]
    fn long_option_statements_are_refused_before_parsing() {
        let long = "1".repeat(MAX_OPTIONS_LEN);
        assert!(check_options_len(&format!("SET @@causeway.token = '{long}'"), true).is_err());
        assert!(check_options_len("SET @@causeway.token = 'x'", true).is_ok());
        let e = check_options_len(&format!(" /* Causeway token={long} */ SELECT 1"), false)
            .unwrap_err();
        assert_eq!(e.code(), (1231, "42000"));
        assert!(e.to_string().contains("65536 bytes"), "{e}");
        assert!(e.to_string().len() < 300, "{e}");
        // unterminated comment: its whole length counts
        assert!(check_options_len(&format!("/* causeway token={long}"), false).is_err());
        // other comments and ordinary long statements are not this check's business
        assert!(check_options_len(&format!("/* other {long} */ SELECT 1"), false).is_ok());
        assert!(check_options_len(&format!("SELECT '{long}'"), false).is_ok());
        assert!(check_options_len("/* causeway token=a */ SELECT 1", false).is_ok());
        assert!(check_options_len("/* caus", false).is_ok());
    }

    #[test]
    fn sticky_keys_are_bounded() {
        let mut s = settings();
        s.set("sticky_key", "user-42").unwrap();
        assert_eq!(s.sticky_key.as_deref(), Some("user-42"));
        let e = s
            .set("sticky_key", &"k".repeat(MAX_STICKY_KEY_LEN + 1))
            .unwrap_err();
        assert_eq!(e.code(), (1231, "42000"));
        assert!(e.to_string().contains("at most 256 bytes"), "{e}");
        assert_eq!(s.sticky_key.as_deref(), Some("user-42"));
        s.set("sticky_key", "").unwrap();
        assert_eq!(s.sticky_key, None);
    }

    #[test]
    fn error_values_are_clipped() {
        let long = "é".repeat(500);
        assert_eq!(clip_value(&long).chars().count(), 103);
        assert!(clip_value(&long).ends_with("..."));
        assert_eq!(clip_value("short"), "short");
        let mut s = settings();
        let e = s.set("consistency", &"x".repeat(10_000)).unwrap_err();
        assert!(e.to_string().len() < 400, "{e}");
    }
}
