//! The fast path does not allocate: a counting global allocator checks that
//! classifying common statements performs zero heap allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use causeway_classify::classify;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn fast_path_is_allocation_free() {
    let queries = [
        "SELECT * FROM users WHERE id = 42",
        "/* causeway token=abc:1-5 */ SELECT a, COUNT(*) FROM t GROUP BY a",
        "SELECT * FROM t FOR UPDATE",
        "SELECT 'it''s', `update` FROM t -- x",
        "INSERT INTO t VALUES (1, 'a')",
        "UPDATE t SET a = 1",
        "BEGIN",
        "START TRANSACTION READ ONLY",
        "COMMIT",
        "SET autocommit = 0",
        "SET NAMES utf8mb4",
        "SHOW TABLES",
        "SELECT 1; SELECT 2",
        "SELECT GET_LOCK('a', 1)",
        "SELECT /*!40001 SQL_NO_CACHE */ * FROM t",
    ];
    for q in queries {
        let before = ALLOCS.load(Ordering::Relaxed);
        let c = classify(q);
        let after = ALLOCS.load(Ordering::Relaxed);
        assert_eq!(after - before, 0, "{q} allocated ({c:?})");
    }
}
