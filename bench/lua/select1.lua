-- SELECT 1 for bench/run.sh: every event is one text-protocol COM_QUERY
-- "SELECT 1" (no prepared statement, no table access), i.e. the pure per-query
-- cost of the path through a proxy. Optional workload (BENCH_WORKLOADS=select1).

function thread_init()
   drv = sysbench.sql.driver()
   con = drv:connect()
end

function thread_done()
   con:disconnect()
end

function event()
   con:query("SELECT 1")
end
