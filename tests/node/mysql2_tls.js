// mysql2 over TLS, run by tests/tls.rs against causeway.
// Usage: node mysql2_tls.js HOST PORT USER PASSWORD CA_FILE
// Connects with ssl: { ca } (the certificate and its name are verified),
// runs query(), execute() (a binary prepared statement) and a 6 MiB result.
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const mysql = require('mysql2/promise');

async function main() {
  const [host, port, user, password, ca] = process.argv.slice(2);
  const c = await mysql.createConnection({
    host, port: Number(port), user, password, ssl: { ca: fs.readFileSync(ca) },
  });
  const stream = c.connection.stream;
  console.log('tls:', typeof stream.getProtocol === 'function' ? stream.getProtocol() : 'none');
  const [[a]] = await c.query('SELECT 1 + 1 AS s');
  console.log('sum:', String(a.s));
  const [[b]] = await c.execute('SELECT ? * 2 AS d', [21]);
  console.log('prepared:', String(b.d));
  const [[d]] = await c.execute('SELECT CONCAT(?, ?) AS t', ['h\u00e9', 'llo']);
  console.log('param:', d.t);
  const [[e]] = await c.query("SELECT REPEAT('x', 6291456) AS big");
  const big = String(e.big);
  console.log('big:', big.length, crypto.createHash('sha256').update(big).digest('hex').slice(0, 16));
  await c.end();
}

main().catch((e) => {
  console.error('ERROR', e.code, e.message);
  process.exit(1);
});
