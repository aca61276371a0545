"""Token checker through causeway's cache with PyMySQL: a writer updates a
row and hands its token to a causal reader on another connection, which
must never read an older value; eventual reads past the cache (tokens
ignored, a new session each time) are the control: they show the
replicas were behind. Runs for the given seconds (the test stops the replicas'
appliers for part of the run); prints the counts."""
import sys
import time

import pymysql

host, port, db, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])


def connect(mode):
    c = pymysql.connect(host=host, port=port, user="app", password="apppw",
                        database=db, autocommit=True).cursor()
    c.execute("SET @@causeway.consistency = %s", (mode,))
    return c


w, r = connect("causal"), connect("causal")
# short waits while the replicas are held back (then the primary answers)
r.execute("SET @@causeway.wait_timeout_ms = 100")
n, reads, stale, hits, ev_reads, ev_stale = 0, 0, 0, 0, 0, 0
ev_routes = {}
end = time.time() + secs
i = 0
while time.time() < end:
    if i % 3 == 0:
        w.execute("UPDATE products SET v = v + 1 WHERE id = 1")
        n += 1
        w.execute("SELECT @@causeway.token")
        r.execute("SET @@causeway.token = %s", (w.fetchone()[0],))
    i += 1
    for _ in range(2):
        r.execute("SELECT v FROM products WHERE id = 1")
        v = r.fetchone()[0]
        reads += 1
        stale += v < n
        r.execute("SELECT @@causeway.last_route")
        hits += r.fetchone()[0] == "cache"
    # the control: what the replicas hold (eventual, past the cache, a new
    # session each time: a session's own monotonic-reads floor would keep
    # it from going back)
    e = connect("eventual")
    e.execute("/* causeway cache=off */ SELECT v FROM products WHERE id = 1")
    ev_reads += 1
    ev_v = e.fetchone()[0]
    ev_stale += ev_v < n
    e.execute("SELECT @@causeway.last_route")
    route = e.fetchone()[0].split(":")[0]
    ev_routes[route] = ev_routes.get(route, 0) + 1
    e.connection.close()
    time.sleep(0.005)
print("eventual routes:", sorted(ev_routes.items()))
print("writes=%d causal_reads=%d causal_stale=%d causal_hits=%d eventual_reads=%d eventual_stale=%d"
      % (n, reads, stale, hits, ev_reads, ev_stale))
