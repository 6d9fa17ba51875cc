-- wrk script for bench/run: POSTs one JSON body over and over, set up from the environment.
--
--   BENCH_BODY_FILE     file holding the request body (required)
--   BENCH_AUTH          credential for "Authorization: Bearer ..." (optional)
--   BENCH_IDEMPOTENCY   "1": every request carries its own Idempotency-Key
--   BENCH_KEY_PREFIX    prefix of those keys, to keep them unique across runs (default "k")
--   BENCH_CHANGING      "1": every request changes its item instead of sending the body
--                       file again: {"id":"<n mod 1000>","n":<n>,"t":<thread>}, n counting
--                       the thread's requests (not with BENCH_IDEMPOTENCY)
--
-- Every request has "Content-Type: application/json" and "X-Item-Key: id".
-- done() prints one machine-readable line, "BENCH key=value ...", with latencies in
-- microseconds; status_errors is wrk's count of answers with a status >= 400.

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file == nil or body_file == "" then
   error("BENCH_BODY_FILE is not set")
end
local f = assert(io.open(body_file, "rb"))
local body = f:read("*a")
f:close()

local auth = os.getenv("BENCH_AUTH") or ""
local idempotency = os.getenv("BENCH_IDEMPOTENCY") == "1"
local prefix = os.getenv("BENCH_KEY_PREFIX") or "k"
local changing = os.getenv("BENCH_CHANGING") == "1"
if changing and idempotency then
   error("BENCH_CHANGING and BENCH_IDEMPOTENCY cannot be combined")
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Item-Key"] = "id"
if auth ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. auth
end

-- Each thread gets a number, so keys from different threads never collide.
local next_thread = 1
function setup(thread)
   thread:set("thread_number", next_thread)
   next_thread = next_thread + 1
end

if idempotency then
   -- Defining request() makes wrk ask for each request; without it, wrk sends one
   -- prebuilt request. To keep the client's cost low, the request is formatted once
   -- around a placeholder key, and each call only joins the two halves with a new key.
   local placeholder = "@@IDEMPOTENCY_KEY@@"
   local before, after
   local sent = 0

   function init(args)
      wrk.headers["Idempotency-Key"] = placeholder
      local template = wrk.format()
      local at = assert(string.find(template, placeholder, 1, true))
      before = string.sub(template, 1, at - 1)
      after = string.sub(template, at + #placeholder)
      wrk.headers["Idempotency-Key"] = nil
   end

   function request()
      sent = sent + 1
      return before .. prefix .. "-" .. thread_number .. "-" .. sent .. after
   end
end

if changing then
   -- Equal data makes no change (and no event): each request carries its own numbers.
   local sent = 0

   function request()
      sent = sent + 1
      local body = string.format('{"id":"%d","n":%d,"t":%d}', sent % 1000, sent, thread_number)
      return wrk.format(nil, nil, nil, body)
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d bytes=%d status_errors=%d connect_errors=%d"
         .. " read_errors=%d write_errors=%d timeouts=%d"
         .. " p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.status, e.connect,
      e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
