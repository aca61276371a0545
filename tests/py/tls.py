#!/usr/bin/env python3
"""PyMySQL over TLS, run by tests/tls.rs against causeway.

Usage: tls.py HOST PORT USER PASSWORD CA_FILE

Connects with an ssl.SSLContext that verifies the server's certificate
against CA_FILE (and its name against HOST), then runs a query, an SQL
prepared statement, a parameterized query and a 6 MiB result. Prints one
line per observation; exits non-zero on any error.
"""

import hashlib
import ssl
import sys

try:
    import pymysql
except ImportError:  # the Rust test turns this into a failure
    print("PYMYSQL_MISSING: python3 cannot import pymysql", file=sys.stderr)
    sys.exit(3)


def main():
    host, port, user, password, ca = sys.argv[1:6]
    ctx = ssl.create_default_context(cafile=ca)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    conn = pymysql.connect(host=host, port=int(port), user=user, password=password, ssl=ctx)
    print("tls:", conn._sock.version())
    der = conn._sock.getpeercert(binary_form=True)
    print("peer sha256:", hashlib.sha256(der).hexdigest())
    cur = conn.cursor()
    cur.execute("SELECT 1 + 1")
    print("sum:", cur.fetchone()[0])
    cur.execute("PREPARE s FROM 'SELECT ? * 2'")
    cur.execute("SET @a = 21")
    cur.execute("EXECUTE s USING @a")
    print("prepared:", cur.fetchone()[0])
    cur.execute("SELECT %s", ("h\u00e9llo",))
    print("param:", cur.fetchone()[0])
    cur.execute("SELECT REPEAT('x', 6291456)")
    big = cur.fetchone()[0]
    print("big:", len(big), hashlib.sha256(big.encode()).hexdigest()[:16])
    conn.close()


if __name__ == "__main__":
    main()
