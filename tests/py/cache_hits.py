"""Repeated reads through causeway's cache with PyMySQL (no
CLIENT_DEPRECATE_EOF): 50 back-to-back reads of one row in the given
consistency mode; prints how many were served from the cache
(@@causeway.last_route = 'cache') and checks every value read."""
import sys

import pymysql

host, port, db, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = pymysql.connect(host=host, port=port, user="app", password="apppw",
                    database=db, autocommit=True).cursor()
c.execute("SET @@causeway.consistency = %s", (mode,))
hits = 0
routes = {}
for _ in range(50):
    c.execute("SELECT name FROM products WHERE id = 1")
    assert c.fetchall() == (("one",),), "wrong value"
    c.execute("SELECT @@causeway.last_route")
    route = c.fetchone()[0]
    routes[route] = routes.get(route, 0) + 1
    hits += route == "cache"
print("mode=%s hits=%d routes=%s" % (mode, hits, sorted(routes.items())))
