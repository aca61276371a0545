//! Prepared statements of one session.
//!
//! A statement is prepared where it will run: a plain read on a replica, a
//! write on the primary, and again, lazily, on any other backend an
//! execution is routed to (a transaction on the primary, another replica).
//! Clients see one statement id; each backend has its own. Parameter types
//! the client bound once are remembered, so the first execution on another
//! backend can carry them even when the client omits them.

use causeway_classify::Classification;

use crate::protocol::messages::{read_lenenc, read_lenenc_str};

/// Most prepared statements one session may hold: MySQL's default
/// `max_prepared_stmt_count`. The next COM_STMT_PREPARE gets 1461.
pub const MAX_PREPARED_STMTS: usize = 16382;

/// Most bytes of statement text (COM_STMT_PREPARE payloads, kept to prepare
/// again on other backends) one session may hold.
pub const MAX_PREPARED_BYTES: usize = 16 << 20;

pub use crate::protocol::messages::with_stmt_id;

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// The COM_STMT_PREPARE payload, to prepare it elsewhere.
    pub prepare: Vec<u8>,
    /// How its SQL classifies.
    pub class: Classification,
    /// Parameter count.
    pub params: u16,
    /// Last parameter types the client bound (2 bytes per parameter, each
    /// followed by its name with query attributes).
    pub types: Option<Vec<u8>>,
    /// Backend holding pending SEND_LONG_DATA, where it must execute.
    pub long_data_on: Option<String>,
    /// Backend of the last execution (FETCH and RESET go there).
    pub last_backend: Option<String>,
}

impl Stmt {
    /// Rewrites a COM_STMT_EXECUTE payload for the backend statement `bid`:
    /// its statement id, and the types the client bound last when it omits
    /// them (the backend copy may never have seen them). Remembers types the
    /// client sent. With CLIENT_QUERY_ATTRIBUTES (`qa`) a parameter count may
    /// follow the iteration count and each type its name
    /// ([`ExecuteLayout::of_qa`]); the remembered types are added in that
    /// layout, as many as the payload counts (the parameters come first,
    /// attributes after them), or not at all when fewer were bound. `None`
    /// when the payload is too short to hold a statement id; any other shape
    /// is passed on for the server to judge, nothing here indexes past it.
    pub fn execute_payload(&mut self, payload: &[u8], bid: u32, qa: bool) -> Option<Vec<u8>> {
        let layout = ExecuteLayout::of_qa(payload, self.params, qa);
        if let Some(t) = layout.types {
            self.types = Some(t.to_vec());
        }
        let mut out = with_stmt_id(payload, bid)?;
        let types = self
            .types
            .as_deref()
            .and_then(|t| types_blob(t, layout.count, qa));
        if let (Some(at), Some(types)) = (layout.unbound_flag_at, types) {
            if let Some(flag) = out.get_mut(at) {
                *flag = 1;
                let after = at.saturating_add(1).min(out.len());
                out.splice(after..after, types.iter().copied());
            }
        }
        Some(out)
    }
}

/// Where the parameter types sit in a COM_STMT_EXECUTE payload: status
/// byte, statement id (4), flags (1), iteration count (4), NULL bitmap
/// (`(params + 7) / 8` bytes), new-params-bound flag (1), then 2 bytes of
/// type per parameter when the flag is 1.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExecuteLayout<'a> {
    /// The types the client bound (flag 1, all `2 * params` bytes present).
    pub types: Option<&'a [u8]>,
    /// Offset of a new-params-bound flag that is 0 (types omitted).
    pub unbound_flag_at: Option<usize>,
    /// How many types the payload has or omits: the parameters, plus the
    /// query attributes when it carries a parameter count.
    pub count: usize,
}

impl<'a> ExecuteLayout<'a> {
    /// Parses `payload` for a statement with `params` parameters. Total:
    /// short or malformed payloads yield empty fields.
    pub fn of(payload: &'a [u8], params: u16) -> Self {
        Self::of_qa(payload, params, false)
    }

    /// [`Self::of`] for a client with CLIENT_QUERY_ATTRIBUTES (`qa`): when
    /// the flags byte has PARAMETER_COUNT_AVAILABLE (0x08), a lenenc count
    /// of parameters and query attributes follows the iteration count, and
    /// each bound type is followed by a lenenc name (kept with the types).
    pub fn of_qa(payload: &'a [u8], params: u16, qa: bool) -> Self {
        let mut count = usize::from(params);
        let mut at = 10;
        if qa && payload.get(5).is_some_and(|f| f & 0x08 != 0) {
            let Some((n, used)) = payload.get(10..).and_then(read_lenenc) else {
                return ExecuteLayout::default();
            };
            // the NULL bitmap alone takes count / 8 bytes
            let Some(n) = usize::try_from(n)
                .ok()
                .filter(|&n| n <= payload.len().saturating_mul(8))
            else {
                return ExecuteLayout::default();
            };
            count = n;
            at += used;
        }
        if count == 0 {
            return ExecuteLayout::default();
        }
        let flag_at = at + count.div_ceil(8);
        match payload.get(flag_at) {
            Some(1) => ExecuteLayout {
                types: types_blob(payload.get(flag_at + 1..).unwrap_or_default(), count, qa),
                unbound_flag_at: None,
                count,
            },
            Some(0) => ExecuteLayout {
                types: None,
                unbound_flag_at: Some(flag_at),
                count,
            },
            _ => ExecuteLayout::default(),
        }
    }
}

/// The bound types at the start of `rest`: 2 bytes per parameter, each
/// followed by a lenenc name with query attributes. None when short.
pub fn types_blob(rest: &[u8], count: usize, qa: bool) -> Option<&[u8]> {
    if !qa {
        return rest.get(..count.checked_mul(2)?);
    }
    let mut used = 0usize;
    // bounded: every round consumes at least 3 bytes or ends
    for _ in 0..count {
        used = used.checked_add(2)?;
        let (_, n) = read_lenenc_str(rest.get(used..)?)?;
        used = used.checked_add(n)?;
    }
    rest.get(..used)
}

/// Client statement id → statement.
#[derive(Debug, Default)]
pub struct StmtMap {
    next: u32,
    map: std::collections::HashMap<u32, Stmt>,
    /// Sum of the `prepare` payload lengths held.
    bytes: usize,
}

impl StmtMap {
    /// The id the next prepare will get.
    pub fn next_id(&mut self) -> u32 {
        self.next = self.next.wrapping_add(1).max(1);
        self.next
    }

    /// Records a statement.
    pub fn insert(&mut self, id: u32, stmt: Stmt) {
        self.bytes = self.bytes.saturating_add(stmt.prepare.len());
        if let Some(old) = self.map.insert(id, stmt) {
            self.bytes = self.bytes.saturating_sub(old.prepare.len());
        }
    }

    /// Number of statements held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no statement is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether one more statement of `prepare_len` payload bytes would
    /// exceed [`MAX_PREPARED_STMTS`] or [`MAX_PREPARED_BYTES`].
    pub fn is_full(&self, prepare_len: usize) -> bool {
        self.map.len() >= MAX_PREPARED_STMTS
            || self.bytes.saturating_add(prepare_len) > MAX_PREPARED_BYTES
    }

    /// A statement.
    pub fn get(&self, id: u32) -> Option<&Stmt> {
        self.map.get(&id)
    }

    /// A statement, mutably.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut Stmt> {
        self.map.get_mut(&id)
    }

    /// Forgets a statement.
    pub fn remove(&mut self, id: u32) -> Option<Stmt> {
        let old = self.map.remove(&id)?;
        self.bytes = self.bytes.saturating_sub(old.prepare.len());
        Some(old)
    }

    /// Whether a statement was prepared from `prepare` (the same text).
    pub fn has_text(&self, prepare: &[u8]) -> bool {
        self.map.values().any(|s| s.prepare == prepare)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    /// Forgets pending long data on a backend connection that is gone.
    pub fn forget_backend(&mut self, backend: &str) {
        for s in self.map.values_mut() {
            if s.long_data_on.as_deref() == Some(backend) {
                s.long_data_on = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(params: u16) -> Stmt {
        Stmt {
            prepare: vec![0x16],
            class: causeway_classify::classify("SELECT ?"),
            params,
            types: None,
            long_data_on: None,
            last_backend: None,
        }
    }

    #[test]
    fn query_attribute_layouts_keep_names_with_types() {
        // flags PARAMETER_COUNT_AVAILABLE, count 2 (1 parameter + 1
        // attribute), bitmap, bound=1, LONGLONG "" and STRING "n1", values
        let mut with_types = vec![0x17, 1, 0, 0, 0, 0x08, 1, 0, 0, 0, 2, 0, 1];
        let blob = [8, 0, 0, 0xFE, 0, 2, b'n', b'1'];
        with_types.extend_from_slice(&blob);
        with_types.extend_from_slice(&5i64.to_le_bytes());
        with_types.extend_from_slice(b"\x02v1");
        let layout = ExecuteLayout::of_qa(&with_types, 1, true);
        assert_eq!(layout.types, Some(&blob[..]));
        // without qa the same bytes read differently
        assert_ne!(ExecuteLayout::of(&with_types, 1).types, Some(&blob[..]));
        // hostile counts and truncated names yield nothing, never a panic
        for p in [
            &[
                0x17, 1, 0, 0, 0, 0x08, 1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF,
            ][..],
            &[0x17, 1, 0, 0, 0, 0x08, 1, 0, 0, 0, 2, 0, 1, 8, 0, 5, b'a'],
            &[0x17, 1, 0, 0, 0, 0x08, 1, 0, 0, 0, 0],
        ] {
            let l = ExecuteLayout::of_qa(p, 1, true);
            assert_eq!((l.types, l.unbound_flag_at), (None, None), "{p:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn query_attribute_layouts_never_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            params in 0u16..20,
        ) {
            let l = ExecuteLayout::of_qa(&bytes, params, true);
            if let Some(t) = l.types {
                proptest::prop_assert!(t.len() <= bytes.len());
            }
            let _ = stmt(params).execute_payload(&bytes, 1, true);
        }
    }

    #[test]
    fn short_and_malformed_execute_payloads_never_panic() {
        let mut s = stmt(3);
        for p in [
            &[][..],
            &[0x17],
            &[0x17, 1, 0],
            &[0x17, 1, 0, 0, 0],
            &[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0],
            &[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
            &[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8],
            &[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
        ] {
            let out = s.execute_payload(p, 9, false);
            assert_eq!(out.is_none(), p.len() < 5, "{p:?}");
        }
        assert_eq!(with_stmt_id(&[0x19, 1, 2], 5), None);
        assert_eq!(
            with_stmt_id(&[0x19, 1, 2, 3, 4], 5),
            Some(vec![0x19, 5, 0, 0, 0])
        );
    }

    #[test]
    fn the_map_counts_statements_and_bytes() {
        let mut m = StmtMap::default();
        assert!(m.is_empty() && !m.is_full(100));
        let id = m.next_id();
        let mut s = stmt(0);
        s.prepare = vec![0; 1000];
        m.insert(id, s.clone());
        m.insert(id, s);
        assert_eq!(m.len(), 1);
        assert!(m.is_full(MAX_PREPARED_BYTES - 999));
        assert!(!m.is_full(MAX_PREPARED_BYTES - 1000));
        m.remove(id);
        assert!(!m.is_full(MAX_PREPARED_BYTES));
    }

    #[test]
    fn forgetting_a_backend_drops_its_long_data() {
        let mut m = StmtMap::default();
        let id = m.next_id();
        let mut s = stmt(0);
        s.long_data_on = Some("r1".into());
        m.insert(id, s);
        m.forget_backend("primary");
        assert_eq!(m.get(id).unwrap().long_data_on.as_deref(), Some("r1"));
        m.forget_backend("r1");
        assert_eq!(m.get(id).unwrap().long_data_on, None);
    }

    #[test]
    fn executions_carry_the_clients_own_types() {
        let mut s = stmt(1);
        // id=1, flags=0, iter=1, null bitmap 0, bound=1, LONGLONG, value
        let mut with_types = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0];
        with_types.extend_from_slice(&5i64.to_le_bytes());
        let out = s.execute_payload(&with_types, 7, false).unwrap();
        assert_eq!(&out[1..5], &7u32.to_le_bytes());
        assert_eq!(&out[5..], &with_types[5..]);
        // types omitted: this client's types are added (the backend
        // statement may have seen another client's)
        let mut without = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        without.extend_from_slice(&6i64.to_le_bytes());
        let out = s.execute_payload(&without, 9, false).unwrap();
        assert_eq!(&out[1..5], &9u32.to_le_bytes());
        assert_eq!(out[11], 1);
        assert_eq!(&out[12..14], &[8, 0]);
        assert_eq!(&out[14..], &6i64.to_le_bytes());
    }

    #[test]
    fn short_payloads_never_panic() {
        let mut s = stmt(3);
        for len in 0..16 {
            let p: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for qa in [false, true] {
                let out = s.execute_payload(&p, 1, qa);
                assert_eq!(out.is_none(), len < 5, "{len}");
            }
        }
    }

    #[test]
    fn query_attribute_executions_carry_types_with_names() {
        let mut s = stmt(1);
        // flags PARAMETER_COUNT_AVAILABLE, count 2 (1 parameter + 1
        // attribute), bitmap, bound=1, LONGLONG "" and STRING "n1", values
        let mut with_types = vec![0x17, 1, 0, 0, 0, 0x08, 1, 0, 0, 0, 2, 0, 1];
        let blob = [8, 0, 0, 0xFE, 0, 2, b'n', b'1'];
        with_types.extend_from_slice(&blob);
        with_types.extend_from_slice(&5i64.to_le_bytes());
        with_types.extend_from_slice(b"\x02v1");
        let out = s.execute_payload(&with_types, 7, true).unwrap();
        assert_eq!(&out[1..5], &7u32.to_le_bytes());
        assert_eq!(&out[5..], &with_types[5..]);
        assert_eq!(s.types.as_deref(), Some(&blob[..]));
        // types omitted, one entry (the parameter): its type and name
        let mut without = vec![0x17, 1, 0, 0, 0, 0x08, 1, 0, 0, 0, 1, 0, 0];
        without.extend_from_slice(&6i64.to_le_bytes());
        let out = s.execute_payload(&without, 9, true).unwrap();
        assert_eq!(&out[1..5], &9u32.to_le_bytes());
        assert_eq!(out[12], 1, "types bound again");
        assert_eq!(&out[13..16], &blob[..3]);
        assert_eq!(&out[16..], &6i64.to_le_bytes());
        // omitted with both entries: the whole blob
        let mut two = vec![0x17, 1, 0, 0, 0, 0x08, 1, 0, 0, 0, 2, 0, 0];
        two.extend_from_slice(&6i64.to_le_bytes());
        two.extend_from_slice(b"\x02v2");
        let out = s.execute_payload(&two, 9, true).unwrap();
        assert_eq!(&out[13..21], &blob[..]);
        assert_eq!(&out[21..], &two[13..]);
        // more entries than were bound: forwarded as it is
        let mut three = two.clone();
        three[10] = 3;
        let out = s.execute_payload(&three, 9, true).unwrap();
        assert_eq!(&out[5..], &three[5..]);
    }
}
