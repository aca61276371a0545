//! Criterion micro-benchmarks of the GTID set operations on causeway's hot
//! path: `contains` (is a token covered by a replica's executed set?),
//! `unioned` / `union` (token bookkeeping) and `parse` (tokens and monitor
//! snapshots arrive as text).
//!
//! Shapes: 1 UUID with 1 interval (a plain primary), 5 UUIDs (a primary with
//! a failover history), and 1 UUID with 10,000 intervals (a pathological,
//! fragmented set).
//!
//! Run: `CARGO_TARGET_DIR=/tmp/target-bench cargo bench -p causeway-gtid`.

use causeway_gtid::GtidSet;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const U: [&str; 5] = [
    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
    "4f22ab58-82db-22f2-8f44-d91bb8530673",
    "5a33bc69-93ec-33a3-9a55-ea2cc9641784",
    "6b44cd7a-a4fd-44b4-8b66-fb3dd0752895",
    "7c55de8b-b50e-55c5-9c77-0c4ee18639a6",
];

struct Shape {
    name: &'static str,
    /// A replica's executed set.
    executed: String,
    /// A token the executed set contains (the common, positive case).
    token: String,
    /// A newer token (one more transaction on the first UUID).
    newer: String,
}

fn shapes() -> Vec<Shape> {
    let five = |end: u64| -> String {
        U.iter()
            .enumerate()
            .map(|(i, u)| format!("{u}:1-{}", end + i as u64 * 1000))
            .collect::<Vec<_>>()
            .join(",")
    };
    // 10,000 intervals: 1:3:5:...:19999 (every other transaction).
    let frag = |last: u64| -> String {
        let mut s = String::from(U[0]);
        let mut g = 1;
        while g <= last {
            s.push(':');
            s.push_str(&g.to_string());
            g += 2;
        }
        s
    };
    vec![
        Shape {
            name: "1uuid_1interval",
            executed: format!("{}:1-1000000", U[0]),
            token: format!("{}:1-999999", U[0]),
            newer: format!("{}:1-1000001", U[0]),
        },
        Shape {
            name: "5uuids",
            executed: five(1_000_000),
            token: five(999_999),
            newer: five(1_000_001),
        },
        Shape {
            name: "1uuid_10000intervals",
            executed: frag(19_999),
            token: frag(19_997),
            newer: frag(20_001),
        },
    ]
}

fn bench(c: &mut Criterion) {
    for s in shapes() {
        let executed = GtidSet::parse(&s.executed).unwrap();
        let token = GtidSet::parse(&s.token).unwrap();
        let newer = GtidSet::parse(&s.newer).unwrap();
        assert!(executed.contains(&token));
        assert!(!executed.contains(&newer));
        let mut g = c.benchmark_group(s.name);
        g.bench_function("contains_true", |b| {
            b.iter(|| black_box(&executed).contains(black_box(&token)))
        });
        g.bench_function("contains_false", |b| {
            b.iter(|| black_box(&executed).contains(black_box(&newer)))
        });
        g.bench_function("unioned", |b| {
            b.iter(|| black_box(&executed).unioned(black_box(&newer)))
        });
        g.bench_function("union_in_place", |b| {
            b.iter_batched_ref(
                || executed.clone(),
                |e| e.union(black_box(&newer)),
                criterion::BatchSize::SmallInput,
            )
        });
        g.bench_function("parse", |b| {
            b.iter(|| GtidSet::parse(black_box(&s.executed)).unwrap())
        });
        g.bench_function("to_string", |b| b.iter(|| black_box(&executed).to_string()));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
