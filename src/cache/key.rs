//! The cache key: every input that can change the bytes of an answer.
//!
//! Length-prefixed fields, compared byte for byte (no hash collisions can
//! mix two answers): the protocol (text or binary), the client capabilities
//! that shape replies, the connection collation, the backend user
//! (privileges), the default database, the session's replayed `SET`
//! statements (time_zone, sql_mode, character sets, ...), and the statement
//! (for COM_STMT_EXECUTE: the prepared text, the bound parameter types and
//! the execute payload with the parameter values).

use std::sync::Arc;

/// A cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Arc<[u8]>);

impl Key {
    /// Its size in bytes (counted against the memory budget).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Its bytes (hashed for the shared level's key).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether it is empty (never, for a built key).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How the statement arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// COM_QUERY.
    Text,
    /// COM_STMT_EXECUTE.
    Binary,
}

/// The session side of a key.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Reply-shaping client capability bits.
    pub caps: u32,
    /// Connection collation id.
    pub collation: u8,
    /// The backend account the session runs as.
    pub backend_user: &'a str,
    /// Default database.
    pub db: Option<&'a str>,
    /// Replayed session `SET` statements, in order.
    pub sets: &'a [String],
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The key of `statement` (the SQL text, or for `Binary` the prepared text)
/// with `params` (for `Binary`: parameter types and the execute payload
/// after the statement id; empty for `Text`).
pub fn build(ctx: &Context<'_>, proto: Protocol, statement: &[u8], params: &[&[u8]]) -> Key {
    let sets: usize = ctx.sets.iter().map(|s| s.len() + 8).sum();
    let mut out = Vec::with_capacity(
        64 + ctx.backend_user.len()
            + ctx.db.map_or(0, str::len)
            + sets
            + statement.len()
            + params.iter().map(|p| p.len() + 8).sum::<usize>(),
    );
    out.push(match proto {
        Protocol::Text => 1,
        Protocol::Binary => 2,
    });
    out.extend_from_slice(&ctx.caps.to_le_bytes());
    out.push(ctx.collation);
    field(&mut out, ctx.backend_user.as_bytes());
    match ctx.db {
        Some(db) => {
            out.push(1);
            field(&mut out, db.as_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(ctx.sets.len() as u64).to_le_bytes());
    for s in ctx.sets {
        field(&mut out, s.as_bytes());
    }
    field(&mut out, statement);
    out.extend_from_slice(&(params.len() as u64).to_le_bytes());
    for p in params {
        field(&mut out, p);
    }
    Key(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx<'a>(user: &'a str, db: Option<&'a str>, sets: &'a [String]) -> Context<'a> {
        Context {
            caps: 0x0100_0000,
            collation: 255,
            backend_user: user,
            db,
            sets,
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let none: &[String] = &[];
        let tz = vec!["SET time_zone = '+01:00'".to_string()];
        let base = build(
            &ctx("app", Some("shop"), none),
            Protocol::Text,
            b"SELECT 1",
            &[],
        );
        let variants = [
            build(
                &ctx("other", Some("shop"), none),
                Protocol::Text,
                b"SELECT 1",
                &[],
            ),
            build(
                &ctx("app", Some("shop2"), none),
                Protocol::Text,
                b"SELECT 1",
                &[],
            ),
            build(&ctx("app", None, none), Protocol::Text, b"SELECT 1", &[]),
            build(
                &ctx("app", Some("shop"), &tz),
                Protocol::Text,
                b"SELECT 1",
                &[],
            ),
            build(
                &ctx("app", Some("shop"), none),
                Protocol::Binary,
                b"SELECT 1",
                &[],
            ),
            build(
                &ctx("app", Some("shop"), none),
                Protocol::Text,
                b"SELECT 2",
                &[],
            ),
            build(
                &ctx("app", Some("shop"), none),
                Protocol::Text,
                b"SELECT 1",
                &[b""],
            ),
            build(
                &Context {
                    caps: 0,
                    ..ctx("app", Some("shop"), none)
                },
                Protocol::Text,
                b"SELECT 1",
                &[],
            ),
            build(
                &Context {
                    collation: 33,
                    ..ctx("app", Some("shop"), none)
                },
                Protocol::Text,
                b"SELECT 1",
                &[],
            ),
        ];
        for v in &variants {
            assert_ne!(&base, v);
        }
        assert_eq!(
            base,
            build(
                &ctx("app", Some("shop"), none),
                Protocol::Text,
                b"SELECT 1",
                &[]
            )
        );
    }

    proptest! {
        /// Field boundaries cannot be moved: splitting the same bytes
        /// differently between fields gives different keys.
        #[test]
        fn fields_do_not_run_together(a in ".{0,8}", b in ".{0,8}", c in ".{0,8}") {
            let none: &[String] = &[];
            let k1 = build(&ctx(&a, Some(&b), none), Protocol::Text, c.as_bytes(), &[]);
            let ab = format!("{a}{b}");
            let k2 = build(&ctx(&ab, Some(""), none), Protocol::Text, c.as_bytes(), &[]);
            prop_assert!(b.is_empty() || k1 != k2);
        }
    }
}
