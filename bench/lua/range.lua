-- Range select for bench/run.sh: every event is ONE prepared statement
--   SELECT c FROM sbtest<t> WHERE id BETWEEN ? AND ?
-- returning exactly --range_size rows (the start id is uniform over
-- [1, table_size - range_size + 1], so no range runs off the end of the table),
-- with no BEGIN/COMMIT around it. One event = one query = range_size rows of
-- ~120 bytes, so QPS and latency are per 1000-row result set.
-- Tables are the standard sysbench oltp ones (oltp_read_only prepare).

sysbench.cmdline.options = {
   table_size = {"Number of rows per table", 10000},
   tables = {"Number of tables", 1},
   range_size = {"Rows returned by each range select", 1000},
}

function thread_init()
   drv = sysbench.sql.driver()
   con = drv:connect()
   assert(sysbench.opt.range_size >= 1 and
             sysbench.opt.range_size <= sysbench.opt.table_size,
          "range_size must be in [1, table_size]")
   stmt, param = {}, {}
   for t = 1, sysbench.opt.tables do
      stmt[t] = con:prepare(string.format(
         "SELECT c FROM sbtest%d WHERE id BETWEEN ? AND ?", t))
      param[t] = {stmt[t]:bind_create(sysbench.sql.type.INT),
                  stmt[t]:bind_create(sysbench.sql.type.INT)}
      stmt[t]:bind_param(unpack(param[t]))
   end
   max_start = sysbench.opt.table_size - sysbench.opt.range_size + 1
end

function thread_done()
   for t = 1, sysbench.opt.tables do
      stmt[t]:close()
   end
   con:disconnect()
end

function event()
   local t = sysbench.rand.uniform(1, sysbench.opt.tables)
   local lo = sysbench.rand.uniform(1, max_start)
   param[t][1]:set(lo)
   param[t][2]:set(lo + sysbench.opt.range_size - 1)
   stmt[t]:execute()
end
