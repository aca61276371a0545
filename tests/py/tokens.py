"""Token contract through causeway with PyMySQL: a write's token is read on
one connection and handed to another; the SQL comment form; consistency
modes; a malformed token's error. Prints one line per check; exits non-zero
on the first failure."""
import sys

import pymysql

host, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def connect():
    return pymysql.connect(host=host, port=port, user="app", password="apppw",
                           database=db, autocommit=True)


a, b = connect(), connect()
ca, cb = a.cursor(), b.cursor()
ca.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
ca.execute("INSERT INTO t VALUES (1, 'written')")
ca.execute("SELECT @@causeway.token")
token = ca.fetchone()[0]
assert token and ":" in token, token
print("token after write: ok")

cb.execute("SET @@causeway.token = %s", (token,))
cb.execute("SELECT @@causeway.token")
assert cb.fetchone()[0] == token
cb.execute("SELECT v FROM t WHERE id = 1")
assert cb.fetchone() == ("written",), "read with a passed token must see the write"
cb.execute("SELECT @@causeway.last_route")
route = cb.fetchone()[0]
assert route.startswith("replica:") or route == "primary:fallback", route
print("token on another connection: ok", route.split(":")[0])

c = connect().cursor()
c.execute("/* causeway token=%s */ SELECT v FROM t WHERE id = 1" % token)
assert c.fetchone() == ("written",)
print("token in a comment: ok")

c.execute("SET @@causeway.consistency = 'strong'")
c.execute("SELECT @@causeway.consistency")
assert c.fetchone()[0] == "strong"
c.execute("SELECT v FROM t WHERE id = 1")
c.execute("SELECT @@causeway.last_route")
assert c.fetchone()[0] == "primary"
print("strong: ok")

try:
    c.execute("SET @@causeway.token = 'not-a-uuid:1-2'")
    raise SystemExit("malformed token accepted")
except pymysql.err.MySQLError as e:
    code, msg = e.args
    assert code == 1231 and "not-a-uuid" in msg, e.args
print("malformed token: 1231 ok")
c.execute("SELECT @@causeway.consistency")
assert c.fetchone()[0] == "strong", "session unchanged after an error"
print("all token checks passed")
