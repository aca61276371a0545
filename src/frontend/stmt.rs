//! Prepared statements of one session.
//!
//! A statement is prepared where it will run: a plain read on a replica, a
//! write on the primary, and again, lazily, on any other backend an
//! execution is routed to (a transaction on the primary, another replica).
//! Clients see one statement id; each backend has its own. Parameter types
//! the client bound once are remembered, so the first execution on another
//! backend can carry them even when the client omits them.

use causeway_classify::Classification;

/// One backend's copy of a statement.
#[derive(Debug, Clone)]
pub struct Copy {
    /// Backend name.
    pub backend: String,
    /// Statement id there.
    pub id: u32,
    /// Whether it has been executed there (so the server knows the types).
    pub executed: bool,
}

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// The COM_STMT_PREPARE payload, to prepare it elsewhere.
    pub prepare: Vec<u8>,
    /// How its SQL classifies.
    pub class: Classification,
    /// Parameter count.
    pub params: u16,
    /// Copies on backends.
    pub copies: Vec<Copy>,
    /// Last parameter types the client bound (2 bytes per parameter).
    pub types: Option<Vec<u8>>,
    /// Backend holding pending SEND_LONG_DATA, where it must execute.
    pub long_data_on: Option<String>,
    /// Backend of the last execution (FETCH and RESET go there).
    pub last_backend: Option<String>,
}

impl Stmt {
    /// The copy on `backend`.
    pub fn copy_on(&self, backend: &str) -> Option<&Copy> {
        self.copies.iter().find(|c| c.backend == backend)
    }

    /// Backend the statement was first prepared on.
    pub fn home(&self) -> Option<&str> {
        self.copies.first().map(|c| c.backend.as_str())
    }

    /// Rewrites a COM_STMT_EXECUTE payload for `backend`: its statement id,
    /// and the remembered types when the client omitted them but this copy
    /// has never seen them. Also remembers types the client sent.
    pub fn execute_payload(&mut self, payload: &[u8], backend: &str) -> Option<Vec<u8>> {
        let params = self.params as usize;
        let nb = params.div_ceil(8);
        let bound_at = 10 + nb;
        if params > 0 && payload.get(bound_at) == Some(&1) {
            if let Some(t) = payload.get(bound_at + 1..bound_at + 1 + 2 * params) {
                self.types = Some(t.to_vec());
            }
        }
        let copy = self.copies.iter_mut().find(|c| c.backend == backend)?;
        let mut out = payload.to_vec();
        out[1..5].copy_from_slice(&copy.id.to_le_bytes());
        if params > 0 && !copy.executed && payload.get(bound_at) == Some(&0) {
            if let Some(types) = &self.types {
                out[bound_at] = 1;
                out.splice(bound_at + 1..bound_at + 1, types.iter().copied());
            }
        }
        copy.executed = true;
        Some(out)
    }
}

/// Client statement id → statement.
#[derive(Debug, Default)]
pub struct StmtMap {
    next: u32,
    map: std::collections::HashMap<u32, Stmt>,
}

impl StmtMap {
    /// The id the next prepare will get.
    pub fn next_id(&mut self) -> u32 {
        self.next = self.next.wrapping_add(1).max(1);
        self.next
    }

    /// Records a statement.
    pub fn insert(&mut self, id: u32, stmt: Stmt) {
        self.map.insert(id, stmt);
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
        self.map.remove(&id)
    }

    /// Whether a statement was prepared from `prepare` (the same text).
    pub fn has_text(&self, prepare: &[u8]) -> bool {
        self.map.values().any(|s| s.prepare == prepare)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Forgets copies on a backend connection that is gone.
    pub fn forget_backend(&mut self, backend: &str) {
        for s in self.map.values_mut() {
            s.copies.retain(|c| c.backend != backend);
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
            copies: vec![
                Copy {
                    backend: "r1".into(),
                    id: 7,
                    executed: false,
                },
                Copy {
                    backend: "primary".into(),
                    id: 9,
                    executed: false,
                },
            ],
            types: None,
            long_data_on: None,
            last_backend: None,
        }
    }

    #[test]
    fn rewrites_id_and_replays_types_on_first_execution_elsewhere() {
        let mut s = stmt(1);
        // id=1, flags=0, iter=1, null bitmap 0, bound=1, type LONGLONG, value
        let mut with_types = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0];
        with_types.extend_from_slice(&5i64.to_le_bytes());
        let out = s.execute_payload(&with_types, "r1").unwrap();
        assert_eq!(&out[1..5], &7u32.to_le_bytes());
        // the client omits types next time; the primary copy never saw them
        let mut without = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        without.extend_from_slice(&6i64.to_le_bytes());
        let out = s.execute_payload(&without, "primary").unwrap();
        assert_eq!(&out[1..5], &9u32.to_le_bytes());
        assert_eq!(out[11], 1, "types bound again");
        assert_eq!(&out[12..14], &[8, 0]);
        assert_eq!(&out[14..], &6i64.to_le_bytes());
        // the replica copy already knows them: passed through unchanged
        let out = s.execute_payload(&without, "r1").unwrap();
        assert_eq!(out.len(), without.len());
    }

    #[test]
    fn forgetting_a_backend_drops_its_copies() {
        let mut m = StmtMap::default();
        let id = m.next_id();
        m.insert(id, stmt(0));
        m.forget_backend("r1");
        assert_eq!(m.get(id).unwrap().home(), Some("primary"));
    }
}
