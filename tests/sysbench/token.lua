-- sysbench script: write on one connection, hand the causeway token to a
-- second connection, read there; counts reads that miss the write.
function thread_init()
  drv = sysbench.sql.driver()
  w = drv:connect()
  r = drv:connect()
  w:query("CREATE TABLE IF NOT EXISTS tok" .. sysbench.tid .. " (id INT PRIMARY KEY, v INT)")
  n = 0
  missed = 0
end
function event()
  n = n + 1
  w:query(string.format("REPLACE INTO tok%d VALUES (1, %d)", sysbench.tid, n))
  local rs = w:query("SELECT @@causeway.token")
  local token = rs:fetch_row()[1]
  r:query(string.format("SET @@causeway.token = '%s'", token))
  rs = r:query(string.format("SELECT v FROM tok%d WHERE id = 1", sysbench.tid))
  if tonumber(rs:fetch_row()[1]) ~= n then missed = missed + 1 end
end
function thread_done()
  -- one write per thread: print() writes text and newline separately,
  -- so two threads' lines could interleave
  io.stdout:write(string.format("token-reads %d missed %d\n", n, missed))
end
