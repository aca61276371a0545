-- sysbench script, run by tests/sysbench.rs while the replicas are held back
-- (SOURCE_DELAY): each event writes on one connection, hands the causeway
-- token to a second connection and reads there, and reads the same row on a
-- third connection in eventual mode (the control, which must read stale
-- while the replicas are held). The first 5 events read with
-- wait_timeout_ms = 300 (they must fall back to the primary); later ones
-- with 20000, so a read waits on a replica until the harness, seeing that
-- wait, releases the replicas. The harness creates tok<tid> with row (1, 0).
-- Counts: reads that missed their write, routes, stale eventual reads.
function thread_init()
  drv = sysbench.sql.driver()
  w = drv:connect()
  r = drv:connect()
  e = drv:connect()
  r:query("SET @@causeway.wait_timeout_ms = 300")
  e:query("SET @@causeway.consistency = 'eventual'")
  n = 0
  missed = 0
  fallback = 0
  waited = 0
  stale = 0
end
function event()
  n = n + 1
  if n == 6 then r:query("SET @@causeway.wait_timeout_ms = 20000") end
  w:query(string.format("REPLACE INTO tok%d VALUES (1, %d)", sysbench.tid, n))
  local rs = w:query("SELECT @@causeway.token")
  local token = rs:fetch_row()[1]
  r:query(string.format("SET @@causeway.token = '%s'", token))
  rs = r:query(string.format("SELECT v FROM tok%d WHERE id = 1", sysbench.tid))
  if tonumber(rs:fetch_row()[1]) ~= n then missed = missed + 1 end
  local route = r:query("SELECT @@causeway.last_route"):fetch_row()[1]
  if route == "primary:fallback" then fallback = fallback + 1 end
  if string.sub(route, -7) == ":waited" then waited = waited + 1 end
  rs = e:query(string.format("SELECT v FROM tok%d WHERE id = 1", sysbench.tid))
  if tonumber(rs:fetch_row()[1]) ~= n then stale = stale + 1 end
end
function thread_done()
  -- one write per thread: print() writes text and newline separately,
  -- so two threads' lines could interleave
  io.stdout:write(string.format(
    "token-reads %d missed %d fallback %d waited %d eventual-stale %d\n",
    n, missed, fallback, waited, stale))
end
