//! Parsing hostile text allocates no more than what it validated: a
//! per-thread counting allocator measures the peak heap growth of
//! `GtidSet::parse_limited` and `GtidSet::parse` on megabytes of text built
//! to make a careless parser reserve per `:` (or per byte).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use causeway_gtid::{GtidSet, Limits};
use proptest::prelude::*;

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(n: usize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get().saturating_add(n);
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn shrink(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
}

// SAFETY: delegates to the system allocator; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grow(new_size);
        shrink(layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap growth (bytes) on this thread while `f` runs.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get).saturating_sub(base))
}

const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

/// One UUID followed by `n` disjoint intervals: `U:1:3:5:...`.
fn many_intervals(n: usize) -> String {
    let mut s = String::from(U);
    for i in 0..n {
        s.push_str(&format!(":{}", 2 * i + 1));
    }
    s
}

#[test]
fn hostile_tokens_are_refused_before_allocating() {
    // 10 MB of text: refused on its length, nothing allocated but the error
    let ten_mb = many_intervals(1_319_440);
    assert!(ten_mb.len() > 10_000_000);
    let (r, peak) = peak_of(|| GtidSet::parse_limited(&ten_mb, &Limits::TOKEN));
    assert!(r.is_err());
    assert!(peak < 4096, "peak {peak} bytes");
    // just under 64 KiB but over the interval limit: refused after at most
    // 4096 validated intervals
    let many = many_intervals(9_000);
    assert!(many.len() < Limits::TOKEN.max_len);
    let (r, peak) = peak_of(|| GtidSet::parse_limited(&many, &Limits::TOKEN));
    let e = r.unwrap_err();
    assert!(e.to_string().contains("4096 intervals"), "{e}");
    assert!(e.to_string().len() < 300, "{e}");
    assert!(peak < 1 << 20, "peak {peak} bytes");
    // a megabyte of colons: a syntax error, no reservation per ':'
    let colons = format!("{U}{}", ":".repeat(1 << 20));
    let (r, peak) = peak_of(|| GtidSet::parse(&colons));
    assert!(r.is_err());
    assert!(peak < 4096, "peak {peak} bytes");
    // unlimited parsing of a set with a bad tail grows only with what it
    // validated, not with the number of ':' in the text
    let tail = format!("{U}:1:x{}", ":".repeat(1 << 20));
    let (r, peak) = peak_of(|| GtidSet::parse(&tail));
    assert!(r.is_err());
    assert!(peak < 4096, "peak {peak} bytes");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the bytes, a limited parse never holds more than the
    /// bounded set (a few hundred KiB for `Limits::TOKEN`).
    #[test]
    fn arbitrary_bytes_never_over_allocate(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        repeat in 1usize..200,
    ) {
        let text = String::from_utf8_lossy(&bytes).repeat(repeat);
        let (_, peak) = peak_of(|| GtidSet::parse_limited(&text, &Limits::TOKEN));
        prop_assert!(peak < 1 << 20, "peak {} bytes for {} bytes of text", peak, text.len());
    }

    /// Valid token-shaped text under the limits: memory is proportional to
    /// the intervals it holds.
    #[test]
    fn valid_tokens_cost_what_they_hold(n in 0usize..4096) {
        let text = many_intervals(n);
        let (r, peak) = peak_of(|| GtidSet::parse_limited(&text, &Limits::TOKEN));
        prop_assert_eq!(r.unwrap().num_intervals(), n);
        prop_assert!(peak <= 4096 + n * 256, "peak {} bytes for {} intervals", peak, n);
    }
}
