//! Rough timing of `contains` (run with
//! `cargo test --release -p causeway-gtid --test timing -- --ignored --nocapture`);
//! the real benchmark lives elsewhere.

use std::hint::black_box;
use std::time::Instant;

use causeway_gtid::GtidSet;

fn time_contains(label: &str, big: &GtidSet, small: &GtidSet) -> f64 {
    let iters = 2_000_000u32;
    let start = Instant::now();
    let mut hits = 0u32;
    for _ in 0..iters {
        hits += u32::from(black_box(big).contains(black_box(small)));
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("{label}: {ns:.1} ns/contains (hits {hits})");
    ns
}

#[test]
#[ignore = "timing; run with --release --ignored"]
fn contains_timing() {
    let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let big = GtidSet::parse(&format!("{u}:1-1000000")).unwrap();
    let small = GtidSet::parse(&format!("{u}:999999")).unwrap();
    let one = time_contains("1 uuid, 1 interval", &big, &small);

    let multi: Vec<String> = (0..10_000u64)
        .map(|k| format!("{}-{}", k * 10 + 1, k * 10 + 5))
        .collect();
    let large = GtidSet::parse(&format!("{u}:{}", multi.join(":"))).unwrap();
    let probe = GtidSet::parse(&format!("{u}:99992")).unwrap();
    time_contains("1 uuid, 10000 intervals vs 1", &large, &probe);

    let start = Instant::now();
    assert!(large.contains(&large.clone()));
    println!("10000 vs 10000 intervals: {:?}", start.elapsed());
    if !cfg!(debug_assertions) {
        assert!(one < 100.0, "{one} ns");
    }
}
