//! Prepared statements of one session: client-facing ids mapped to the
//! backend and backend statement id where each was prepared.

use std::collections::HashMap;

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// Backend it was prepared on.
    pub backend: String,
    /// Its id on that backend.
    pub backend_id: u32,
    /// Result columns.
    pub columns: u16,
    /// Parameters.
    pub params: u16,
}

/// Client statement id → statement.
#[derive(Debug, Default)]
pub struct StmtMap {
    next: u32,
    map: HashMap<u32, Stmt>,
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

    /// Forgets a statement.
    pub fn remove(&mut self, id: u32) {
        self.map.remove(&id);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Forgets statements prepared on a backend connection that is gone.
    pub fn forget_backend(&mut self, backend: &str) {
        self.map.retain(|_, s| s.backend != backend);
    }

    /// For a statement command payload: the statement and the payload with
    /// the backend's statement id in place of the client's.
    pub fn rewrite(&self, payload: &[u8]) -> Option<(Stmt, Vec<u8>)> {
        let id = u32::from_le_bytes(payload.get(1..5)?.try_into().ok()?);
        let stmt = self.map.get(&id)?.clone();
        let mut p = payload.to_vec();
        p[1..5].copy_from_slice(&stmt.backend_id.to_le_bytes());
        Some((stmt, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_ids() {
        let mut m = StmtMap::default();
        let id = m.next_id();
        m.insert(
            id,
            Stmt {
                backend: "primary".into(),
                backend_id: 77,
                columns: 1,
                params: 0,
            },
        );
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0);
        let (s, r) = m.rewrite(&p).unwrap();
        assert_eq!(s.backend_id, 77);
        assert_eq!(&r[1..5], &77u32.to_le_bytes());
        m.forget_backend("primary");
        assert!(m.rewrite(&p).is_none());
    }
}
