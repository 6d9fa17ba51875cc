-- wrk script for bench/bulk-import: reads random items of one stream by id, as a
-- display looking items up would, spread over the whole store rather than its recent
-- part.
--
--   BENCH_STREAM   the stream (required)
--   BENCH_ITEMS    ids are "i0" ... "i<BENCH_ITEMS - 1>" (required), less every 1,000th
--                  ("i999", "i1999", ...: bench/bulk-import's bad lines, never stored)
--   BENCH_AUTH     credential for "Authorization: Bearer ..." (required)

local stream = assert(os.getenv("BENCH_STREAM"), "BENCH_STREAM is not set")
local items = tonumber(os.getenv("BENCH_ITEMS") or "")
assert(items and items > 0, "BENCH_ITEMS is not a positive number")
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_AUTH"), "BENCH_AUTH is not set")

function request()
   local n = math.random(0, items - 1)
   if n % 1000 == 999 then
      n = n - 1
   end
   return wrk.format("GET", "/api/streams/" .. stream .. "/items/i" .. n)
end

function done(summary, latency, requests)
   io.write(string.format("BENCH requests=%d seconds=%.2f non2xx=%d p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration / 1e6, summary.errors.status,
      latency:percentile(50), latency:percentile(99)))
end
