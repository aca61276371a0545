"""Token contract through causeway with PyMySQL, run by tests/token_clients.rs
while the replicas' appliers are held back (SOURCE_DELAY), so a read that
ignored its token would read stale.

Usage: tokens.py HOST PORT DB (table t exists, replicated, empty)

1. A write on a connection with autocommit off (the PEP 249 default) gives
   its token only at COMMIT; the token is handed to another connection,
   whose read (wait_timeout_ms = 300) must see the write from the primary
   ("primary:fallback"): no replica has it.
2. Control: an eventual read of the same row in the same run reads stale
   (no row) from a replica: the check above can fail.
3. The token in a SQL comment; strong mode; a malformed token's error.
4. A second write's token with wait_timeout_ms = 20000: the read waits on a
   replica; the harness releases the replicas once it sees that wait, and
   the read must end "replica:NAME:waited" and see the write.

Prints one line per check; exits non-zero on the first failure."""
import sys

import pymysql

host, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def connect(autocommit=True):
    return pymysql.connect(host=host, port=port, user="app", password="apppw",
                           database=db, autocommit=autocommit)


def one(cur, sql, args=None):
    cur.execute(sql, args)
    return cur.fetchone()


def route(cur):
    return one(cur, "SELECT @@causeway.last_route")[0]


# 1. the writer runs with autocommit off, as every PEP 249 driver does
a = connect(autocommit=False)
ca = a.cursor()
before = one(ca, "SELECT @@causeway.token")[0]
ca.execute("INSERT INTO t VALUES (1, 'written')")
assert one(ca, "SELECT @@causeway.token")[0] == before, "no token before COMMIT"
a.commit()
token = one(ca, "SELECT @@causeway.token")[0]
assert token and ":" in token and token != before, (before, token)
print("token after COMMIT (autocommit off): ok", flush=True)

b = connect()
cb = b.cursor()
cb.execute("SET @@causeway.token = %s", (token,))
assert one(cb, "SELECT @@causeway.token")[0] == token
cb.execute("SET @@causeway.wait_timeout_ms = 300")
assert one(cb, "SELECT v FROM t WHERE id = 1") == ("written",), \
    "read with a passed token must see the write"
r = route(cb)
assert r == "primary:fallback", "replicas are held back: %s" % r
print("token on another connection, replicas held: ok", r, flush=True)

# 2. the control: the same read, eventual, reads stale on a replica
e = connect().cursor()
e.execute("SET @@causeway.consistency = 'eventual'")
stale = one(e, "SELECT v FROM t WHERE id = 1")
r = route(e)
assert r.startswith("replica:"), r
assert stale is None, "an eventual read on a held replica is stale: %r" % (stale,)
print("eventual control reads stale: ok", r, flush=True)

# 3. the comment form, strong mode, a malformed token
c = connect().cursor()
c.execute("SET @@causeway.wait_timeout_ms = 300")
assert one(c, "/* causeway token=%s */ SELECT v FROM t WHERE id = 1" % token) == ("written",)
r = route(c)
assert r == "primary:fallback", r
print("token in a comment: ok", r, flush=True)

c.execute("SET @@causeway.consistency = 'strong'")
assert one(c, "SELECT @@causeway.consistency")[0] == "strong"
c.execute("SELECT v FROM t WHERE id = 1")
assert route(c) == "primary"
print("strong: ok", flush=True)

try:
    c.execute("SET @@causeway.token = 'not-a-uuid:1-2'")
    raise SystemExit("malformed token accepted")
except pymysql.err.MySQLError as err:
    code, msg = err.args
    assert code == 1231 and "not-a-uuid" in msg, err.args
print("malformed token: 1231 ok", flush=True)
assert one(c, "SELECT @@causeway.consistency")[0] == "strong", \
    "session unchanged after an error"

# 4. a long wait, released by the harness while it runs
ca.execute("INSERT INTO t VALUES (2, 'second')")
a.commit()
token2 = one(ca, "SELECT @@causeway.token")[0]
cb.execute("SET @@causeway.token = %s", (token2,))
cb.execute("SET @@causeway.wait_timeout_ms = 20000")
print("waiting read: starts", flush=True)
assert one(cb, "SELECT v FROM t WHERE id = 2") == ("second",)
r = route(cb)
assert r.startswith("replica:") and r.endswith(":waited"), r
print("token read waited for the replica: ok", r, flush=True)
print("all token checks passed", flush=True)
