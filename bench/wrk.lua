-- wrk script for the benchmark: POSTs the event in $BENCH_BODY (default
-- bench/event.json) and prints one machine-readable summary line.
local path = os.getenv("BENCH_BODY") or "bench/event.json"
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
-- BENCH_METHOD=GET: no body, the event is in the URL's query (Snowplow's
-- GET /i, as its browser tracker sends it by default).
if os.getenv("BENCH_METHOD") == "GET" then
  wrk.method = "GET"
  wrk.body = nil
  wrk.headers["Content-Type"] = nil
end

-- BENCH_UNIQUE_IDS=1: every request's events get ids no request had
-- before (each "bench-" in the body becomes "bench-<thread>.<n>-"), so a
-- gateway that drops duplicates (DEDUPE_WINDOW_SECONDS) meets new events
-- only, as from real users.
if os.getenv("BENCH_UNIQUE_IDS") == "1" then
  local parts, at = {}, 1
  while true do
    local from, to = string.find(wrk.body, "bench-", at, true)
    if not from then break end
    parts[#parts + 1] = string.sub(wrk.body, at, to)
    at = to + 1
  end
  parts[#parts + 1] = string.sub(wrk.body, at)
  local threads = 0
  setup = function(thread)
    threads = threads + 1
    thread:set("tid", threads)
  end
  local n = 0
  request = function()
    n = n + 1
    local prefix = tostring(tid) .. "." .. tostring(n) .. "-"
    local pieces = {}
    for i = 1, #parts - 1 do
      pieces[#pieces + 1] = parts[i]
      pieces[#pieces + 1] = prefix
    end
    pieces[#pieces + 1] = parts[#parts]
    return wrk.format(nil, nil, nil, table.concat(pieces))
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
