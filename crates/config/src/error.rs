//! `ConfigError` and the translation of toml's span-carrying errors into
//! one-line `file:line: message` errors that name the offending key.
//!
//! Also owns key-path lookup in the spanned document (`toml::de::DeTable`),
//! which lets semantic validation report the line of the key it rejects.

use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

/// Everything that can go wrong loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Io {
        /// The path given to `Config::from_file`.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, missing key or wrongly typed value.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// File name used in messages.
        file: String,
        /// 1-based line number.
        line: usize,
        /// Human-readable description, naming the key.
        message: String,
    },
    /// The file parsed but a value is semantically invalid.
    #[error("{file}:{} {key}: {message}", line.map(|l| format!("{l}:")).unwrap_or_default())]
    Invalid {
        /// File name used in messages.
        file: String,
        /// 1-based line number of the key, when it appears in the file.
        line: Option<usize>,
        /// Dotted key path, e.g. `replicas[1].weight` (0-based index).
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// 1-based line of the error, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { line, .. } => Some(*line),
            ConfigError::Invalid { line, .. } => *line,
        }
    }
}

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Render a key path as `replicas[1].weight`.
pub(crate) fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Name the table a path points into: `in [server]`, `in [[replicas]]`,
/// or `at the top level`.
fn section_string(path: &[Seg]) -> String {
    if path.is_empty() {
        return "at the top level".to_string();
    }
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    if matches!(path.last(), Some(Seg::Index(_))) {
        format!("in [[{}]]", keys.join("."))
    } else {
        format!("in [{}]", keys.join("."))
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Find the key path at byte offset `pos`: an exact key match wins,
/// otherwise the deepest value (table header, array element) containing it.
fn locate(root: &DeTable<'_>, pos: usize) -> Option<Vec<Seg>> {
    fn keys(t: &DeTable<'_>, pos: usize, path: &mut Vec<Seg>) -> bool {
        for (k, v) in t.iter() {
            path.push(Seg::Key(k.get_ref().to_string()));
            if k.span().contains(&pos) || keys_in(v.get_ref(), pos, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    fn keys_in(v: &DeValue<'_>, pos: usize, path: &mut Vec<Seg>) -> bool {
        match v {
            DeValue::Table(t) => keys(t, pos, path),
            DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    if keys_in(e.get_ref(), pos, path) {
                        return true;
                    }
                    path.pop();
                }
                false
            }
            _ => false,
        }
    }
    fn values(t: &DeTable<'_>, pos: usize, path: &mut Vec<Seg>) -> bool {
        for (k, v) in t.iter() {
            path.push(Seg::Key(k.get_ref().to_string()));
            if values_in(v.get_ref(), pos, path) || v.span().contains(&pos) {
                return true;
            }
            path.pop();
        }
        false
    }
    fn values_in(v: &DeValue<'_>, pos: usize, path: &mut Vec<Seg>) -> bool {
        match v {
            DeValue::Table(t) => values(t, pos, path),
            DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    if values_in(e.get_ref(), pos, path) || e.span().contains(&pos) {
                        return true;
                    }
                    path.pop();
                }
                false
            }
            _ => false,
        }
    }
    let mut path = Vec::new();
    if keys(root, pos, &mut path) {
        return Some(path);
    }
    path.clear();
    if values(root, pos, &mut path) {
        return Some(path);
    }
    None
}

/// Span of the key (or, for an index, the array element) at `path`.
pub(crate) fn span_of(root: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let mut table = root;
    let mut value: Option<&DeValue<'_>> = None;
    let mut span = None;
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if let Some(v) = value {
                    table = v.as_table()?;
                }
                let (key, v) = table.get_key_value(k.as_str())?;
                span = Some(key.span());
                value = Some(v.get_ref());
            }
            Seg::Index(i) => {
                let e = value?.as_array()?.get(*i)?;
                span = Some(e.span());
                value = Some(e.get_ref());
            }
        }
    }
    span
}

/// Strip serde's backticks: "`a`, `b`" → "a, b".
fn unquote_list(s: &str) -> String {
    s.replace('`', "")
}

/// Translate a toml deserialization error into `ConfigError::Parse`.
pub(crate) fn from_toml(file: &str, text: &str, err: &toml::de::Error) -> ConfigError {
    let span = err.span();
    let line = span.as_ref().map(|s| line_of(text, s.start)).unwrap_or(1);
    let raw = err.message().trim_end().to_string();
    // Key paths need a syntactically valid document; if even that fails the
    // error is a syntax error and the raw message is the best we have.
    let doc = DeTable::parse(text).ok();
    let path = match (&doc, &span) {
        (Some(doc), Some(s)) if !(s.start == 0 && s.end == 0) => locate(doc.get_ref(), s.start),
        (Some(_), Some(_)) => Some(Vec::new()),
        _ => None,
    };
    let message = match (path, &span) {
        (Some(path), _) => rewrite(&raw, &path),
        (None, Some(s)) if raw == "duplicate key" => match text.get(s.clone()) {
            Some(key) if !key.is_empty() => format!("duplicate key '{key}'"),
            _ => raw,
        },
        (None, _) => raw,
    };
    ConfigError::Parse {
        file: file.to_string(),
        line,
        message,
    }
}

/// Rephrase serde's messages in terms of TOML keys and sections.
fn rewrite(raw: &str, path: &[Seg]) -> String {
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        // path ends with the unknown key itself.
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let section = section_string(&path[..path.len().saturating_sub(1)]);
        let expected = if tail.contains("there are no fields") {
            " (no keys are allowed here)".to_string()
        } else if let Some(list) = tail.strip_prefix(", expected ") {
            let list = list
                .strip_prefix("one of ")
                .unwrap_or(list)
                .replace(" or ", ", ");
            let list = unquote_list(&list);
            if list.contains(", ") {
                format!(" (expected one of {list})")
            } else {
                format!(" (expected {list})")
            }
        } else {
            String::new()
        };
        return format!("unknown key '{name}' {section}{expected}");
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        // path points at the table that lacks the key.
        let name = rest.split('`').next().unwrap_or(rest);
        if path.is_empty() {
            return match name {
                "primary" | "monitor" => format!("missing required section [{name}]"),
                _ => format!("missing required key '{name}'"),
            };
        }
        return format!("missing key '{name}' {}", section_string(path));
    }
    if path.is_empty() {
        return raw.to_string();
    }
    format!("{}: {raw}", path_string(path))
}
