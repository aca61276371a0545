#!/usr/bin/env node
// mysql2 through causeway, run by tests/node_mysql2.rs.
//
// Usage: node mysql2_roundtrip.js HOST PORT USER PASSWORD DB
//
// Exercises query() (text protocol), execute() (prepared statements: the
// same statement twice, NULL parameters, several types), a write whose
// consistency token is read on one connection with `SELECT @@causeway.token`
// and handed to another with `SET @@causeway.token = ?`, after which a read
// on the second connection must see the write. Every check is an assertion;
// the last line printed is "mysql2: all checks passed" (exit status 0).
//
// tests/node_mysql2.rs holds the replicas back (SOURCE_DELAY) while this
// runs, and creates the empty table `seen` on every server first. So a read
// with the token must fall back to the primary (wait_timeout_ms = 300), an
// eventual read of `seen` after a write reads stale (the control: the token
// checks can fail), and a last read with wait_timeout_ms = 20000 waits on a
// replica until the harness, seeing that wait, releases the replicas: its
// route must end ":waited".

'use strict';

const assert = require('node:assert/strict');

let mysql;
try {
  mysql = require('mysql2/promise');
} catch (e) {
  console.error(`MYSQL2_MISSING: cannot load mysql2 (${e.message})`);
  process.exit(3);
}

function step(msg) {
  console.log(`mysql2: ${msg}`);
}

async function main() {
  const [host, port, user, password, db] = process.argv.slice(2);
  const cfg = { host, port: Number(port), user, password, database: db };
  const a = await mysql.createConnection(cfg);
  const b = await mysql.createConnection(cfg);
  const c = await mysql.createConnection(cfg);
  try {
    // query(): text protocol, client-side placeholders.
    const [ver] = await a.query('SELECT VERSION() AS v');
    assert.match(ver[0].v, /^\d+\.\d+/, 'VERSION() answered');
    step(`connected, VERSION() ${ver[0].v}`);

    await a.query(
      'CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(8,2), note TEXT NULL)'
    );
    const [ins] = await a.query('INSERT INTO items VALUES (?, ?, ?, ?), (?, ?, ?, ?)', [
      1, 'apple', '1.50', null,
      2, 'pear', '2.25', 'ripe',
    ]);
    assert.equal(ins.affectedRows, 2);
    step('query() insert: 2 rows');

    // execute(): prepared statements; mysql2 caches them per connection,
    // so the second identical execute reuses the prepared statement id.
    const ins2 = 'INSERT INTO items (id, name, price, note) VALUES (?, ?, ?, ?)';
    const [r3] = await a.execute(ins2, [3, 'plum', 0.75, null]);
    const [r4] = await a.execute(ins2, [4, 'fig', 3, 'dried']);
    assert.equal(r3.affectedRows, 1);
    assert.equal(r4.affectedRows, 1);
    step('execute() same INSERT twice, NULL parameter');

    // The token after the last write, read on connection a.
    const [tok] = await a.query('SELECT @@causeway.token AS t');
    const token = tok[0].t;
    assert.equal(typeof token, 'string');
    assert.match(token, /^[0-9a-f-]{36}:\d+(-\d+)?/, `token looks like a GTID set: ${token}`);
    step('token read with SELECT @@causeway.token');

    // Connection b: adopt the token, then a read must see every write;
    // no replica has it (held back), so it falls back to the primary.
    await b.query('SET @@causeway.wait_timeout_ms = 300');
    await b.query('SET @@causeway.token = ?', [token]);
    const [tokB] = await b.query('SELECT @@causeway.token AS t');
    assert.equal(tokB[0].t, token, 'the token was adopted');
    const sel = 'SELECT id, name, price, note FROM items WHERE id >= ? ORDER BY id';
    const [rows] = await b.execute(sel, [1]);
    assert.deepEqual(
      rows.map((r) => [r.id, r.name, r.price, r.note]),
      [
        [1, 'apple', '1.50', null],
        [2, 'pear', '2.25', 'ripe'],
        [3, 'plum', '0.75', null],
        [4, 'fig', '3.00', 'dried'],
      ]
    );
    const [route] = await b.query('SELECT @@causeway.last_route AS r');
    assert.equal(route[0].r, 'primary:fallback', 'replicas are held back');
    step(`token passed to another connection; read sees the write (route ${route[0].r})`);

    // The control: an eventual read after a write reads stale on a replica.
    await c.query("SET @@causeway.consistency = 'eventual'");
    await a.query("INSERT INTO seen VALUES (1, 'one')");
    const [stale] = await c.query('SELECT v FROM seen WHERE id = 1');
    const [croute] = await c.query('SELECT @@causeway.last_route AS r');
    assert.match(croute[0].r, /^replica:/);
    assert.equal(stale.length, 0, 'an eventual read on a held replica is stale');
    step(`eventual control read stale (route ${croute[0].r})`);

    // The same prepared SELECT again, and with a NULL parameter.
    const [rows2] = await b.execute(sel, [3]);
    assert.deepEqual(rows2.map((r) => r.id), [3, 4]);
    const [none] = await b.execute(sel, [null]);
    assert.equal(none.length, 0, 'id >= NULL matches nothing');
    const [isnull] = await b.execute('SELECT ? IS NULL AS n, ? AS s', [null, 'x']);
    assert.deepEqual([isnull[0].n, isnull[0].s], [1, 'x']);
    step('execute() same SELECT twice, NULL parameters');

    // A prepared write inside a transaction on b, read back in it.
    await b.beginTransaction();
    await b.execute('UPDATE items SET note = ? WHERE id = ?', [null, 2]);
    const [inTx] = await b.execute('SELECT note FROM items WHERE id = ?', [2]);
    assert.equal(inTx[0].note, null);
    await b.commit();
    const [tok2] = await b.query('SELECT @@causeway.token AS t');
    assert.notEqual(tok2[0].t, token, 'COMMIT advanced the token');
    step('transaction with execute(), COMMIT advanced the token');

    // A server error keeps its code and the connection stays usable.
    await assert.rejects(a.query('SELECT * FROM no_such_table'), (e) => e.errno === 1146);
    await assert.rejects(a.execute('SELECT nope FROM items WHERE id = ?', [1]), (e) => e.errno === 1054);
    const [one] = await a.execute('SELECT COUNT(*) AS c FROM items WHERE price > ?', [1]);
    assert.equal(Number(one[0].c), 3);
    step('errors 1146/1054 relayed; connection still usable');

    // The reverse direction: b's token (client-side escaped) adopted on a.
    await a.query(`SET @@causeway.token = ${a.escape(tok2[0].t)}`);
    const [seen] = await a.query('SELECT note FROM items WHERE id = 2');
    assert.equal(seen[0].note, null, 'a read with b\'s token sees b\'s commit');
    step('token from b adopted on a; read sees b\'s commit');

    // A long wait on a replica, released by the harness while it runs.
    await a.query("INSERT INTO seen VALUES (2, 'two')");
    const [tok3] = await a.query('SELECT @@causeway.token AS t');
    await b.query('SET @@causeway.token = ?', [tok3[0].t]);
    await b.query('SET @@causeway.wait_timeout_ms = 20000');
    step('waiting read: starts');
    const [two] = await b.execute('SELECT v FROM seen WHERE id = ?', [2]);
    assert.deepEqual(two.map((r) => r.v), ['two']);
    const [wroute] = await b.query('SELECT @@causeway.last_route AS r');
    assert.match(wroute[0].r, /^replica:.*:waited$/, 'the read waited on a replica');
    step(`token read waited for the replica (route ${wroute[0].r})`);
  } finally {
    await a.end();
    await b.end();
    await c.end();
  }
  step('all checks passed');
}

main().catch((e) => {
  console.error(`mysql2: FAILED: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
