//! Criterion micro-benchmark of the routing classifier on a realistic
//! statement mix: sysbench's OLTP statements, ORM-style reads and writes,
//! transaction control, session settings, connector chatter (`SELECT
//! @@...`, `SHOW`), causeway hints and a few that need the full parser.
//!
//! Reports time per statement for each statement and for the whole mix
//! (criterion's throughput is set to the number of statements).
//!
//! Run: `CARGO_TARGET_DIR=/tmp/target-bench cargo bench -p causeway-classify`.

use causeway_classify::{classify, digest_into};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// (label, SQL). Weighted roughly like an OLTP application's traffic.
const MIX: &[(&str, &str)] = &[
    ("point_select", "SELECT c FROM sbtest1 WHERE id=5012"),
    ("range_select", "SELECT c FROM sbtest3 WHERE id BETWEEN 100 AND 199"),
    ("sum_range", "SELECT SUM(k) FROM sbtest2 WHERE id BETWEEN 100 AND 199"),
    ("order_range", "SELECT c FROM sbtest4 WHERE id BETWEEN 100 AND 199 ORDER BY c"),
    ("distinct_range", "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 100 AND 199 ORDER BY c"),
    ("update_index", "UPDATE sbtest1 SET k=k+1 WHERE id=4999"),
    ("update_nonindex", "UPDATE sbtest2 SET c='0123-4567-89' WHERE id=17"),
    ("delete", "DELETE FROM sbtest3 WHERE id=8812"),
    ("insert", "INSERT INTO sbtest3 (id, k, c, pad) VALUES (8812, 4990, '2345-6789', '9876-5432')"),
    ("begin", "BEGIN"),
    ("commit", "COMMIT"),
    ("orm_select", "SELECT `users`.`id`, `users`.`email`, `users`.`created_at` FROM `users` WHERE `users`.`account_id` = 42 AND `users`.`deleted_at` IS NULL ORDER BY `users`.`id` DESC LIMIT 20 OFFSET 40"),
    ("join_select", "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > '2024-01-01' AND c.country IN ('DE', 'FR', 'NL')"),
    ("select_for_update", "SELECT balance FROM accounts WHERE id = 7 FOR UPDATE"),
    ("set_names", "SET NAMES utf8mb4"),
    ("set_autocommit", "SET autocommit=1"),
    ("sysvar", "SELECT @@session.transaction_isolation, @@version_comment"),
    ("show", "SHOW WARNINGS"),
    ("hint", "/* causeway consistency=strong */ SELECT * FROM orders WHERE id = 9"),
    ("comment_select", "/* app:checkout,line:88 */ SELECT status FROM orders WHERE id = 12345"),
    ("subquery", "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = 3) AND d > (SELECT MAX(e) FROM v)"),
    ("cte", "WITH r AS (SELECT id FROM t WHERE x = 1) SELECT * FROM r JOIN u USING (id)"),
    ("user_var", "SELECT @rank := @rank + 1 AS rank, name FROM players ORDER BY score DESC"),
    ("call", "CALL refresh_stats(42)"),
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify_mix");
    g.throughput(Throughput::Elements(MIX.len() as u64));
    g.bench_function("whole_mix", |b| {
        b.iter(|| {
            for (_, sql) in MIX {
                black_box(classify(black_box(sql)));
            }
        })
    });
    g.finish();
    let mut g = c.benchmark_group("classify");
    for (label, sql) in MIX {
        g.bench_function(*label, |b| b.iter(|| classify(black_box(sql))));
    }
    g.finish();
    // the digest of each statement (issue 27), into a reused buffer as the
    // proxy does
    let mut g = c.benchmark_group("digest_mix");
    g.throughput(Throughput::Elements(MIX.len() as u64));
    let mut buf = String::with_capacity(1024);
    g.bench_function("whole_mix", |b| {
        b.iter(|| {
            for (_, sql) in MIX {
                black_box(digest_into(black_box(sql), false, &mut buf));
            }
        })
    });
    g.finish();
    let mut g = c.benchmark_group("digest");
    for (label, sql) in MIX {
        g.bench_function(*label, |b| {
            b.iter(|| digest_into(black_box(sql), false, &mut buf))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
