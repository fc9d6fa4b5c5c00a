-- wrk script for benchmarks/generators.py: POST one body read from a file, print a JSON summary.
-- The body file, its content type and any extra headers come from the environment, so one script
-- serves every scenario. io.open(..., "rb") and Lua strings are binary-safe: v2 binary bodies
-- reach the server byte for byte (wrk.format adds Content-Length from #wrk.body).
local file = assert(io.open(assert(os.getenv("WRK_BODY_FILE"), "WRK_BODY_FILE unset"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/octet-stream"
-- Extra headers, one "Name: value" per line.
for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

-- Runs once after the run. Durations and latencies are in microseconds; errors.status counts
-- responses with a status above 399 (wrk's "Non-2xx or 3xx responses"). %.0f, not %d: LuaJIT
-- numbers are doubles.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_SUMMARY {"duration_us": %.0f, "requests": %.0f, "status": %.0f, "connect": %.0f, "read": %.0f, '
      .. '"write": %.0f, "timeout": %.0f, "p50_us": %.0f, "p99_us": %.0f}\n',
    summary.duration, summary.requests, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
